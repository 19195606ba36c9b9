"""The browser app in Debian's headless chromium, its camera a fake one playing the patient clip: the
page creates a session, streams the camera over WebRTC and shows live scores. A screenshot of the
running page is saved to artifacts/browser_app_{cloud,edge}.png."""
import time

import pytest

from rehab.settings import REPO_ROOT
from tests.browser.cdp import Browser, chromium_path, write_y4m

ARTIFACTS = REPO_ROOT / "artifacts"


@pytest.fixture(scope="module")
def fake_camera(tmp_path_factory, data_dir):
    if chromium_path() is None:
        pytest.fail("chromium is not installed: ./dev test installs it (apt-get install chromium)")
    return write_y4m(data_dir / "pose2sim_single_cam02.mp4", tmp_path_factory.mktemp("camera") / "patient.y4m")


def _wait_for_scores(browser, n: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    count = 0
    while time.monotonic() < deadline:
        count = int(browser.evaluate("Number(document.getElementById('similarity').dataset.count || 0)") or 0)
        if count >= n:
            break
        time.sleep(0.5)
    return count


@pytest.mark.parametrize("mode", ["cloud", "edge"])
def test_scores_reach_the_page(live_stack, fake_camera, tmp_path, mode):
    """cloud: the camera's video goes over WebRTC; edge: BlazePose runs in the page (the npm package's
    browser build, served by the gateway) and only keypoints go over a data channel."""
    browser = Browser(fake_camera, tmp_path / "chromium.log")
    try:
        browser.goto(f"{live_stack.gateway_url}/?reference=guide&patient=browser-test&mode={mode}&autostart=1")
        count = _wait_for_scores(browser, 8, 90)
        status = browser.evaluate("document.getElementById('status').textContent")
        device = browser.evaluate("JSON.stringify(document.getElementById('camera').dataset)")
        time.sleep(1.0)  # let the overlay draw a few more frames for the screenshot
        shot = browser.screenshot(ARTIFACTS / f"browser_app_{mode}.png")
        reps = browser.evaluate("document.getElementById('reps').textContent")
        hints = browser.evaluate("document.getElementById('latency').textContent")
    finally:
        browser.close()
    assert count >= 8, f"scores shown on the page: {count}; status: {status!r}; on-device model: {device}"
    assert ("Streaming your camera" if mode == "cloud" else "runs on this device") in status, status
    assert reps.isdigit() and "after capture" in hints
    assert shot.stat().st_size > 10_000
