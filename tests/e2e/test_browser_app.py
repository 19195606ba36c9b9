"""The browser app in Debian's headless chromium, its camera a fake one playing the patient clip: the
page creates a session, streams the camera over WebRTC and shows live scores. A screenshot of the
running page is saved to artifacts/browser_app_{cloud,device}.png."""
import json
import time
from pathlib import Path

import pytest

from rehab.scoring.offline import verdict
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


def _wait_for_status(browser, text: str, timeout_s: float) -> str:
    """The page's status line once it holds ``text`` (or as it is when ``timeout_s`` is up)."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = browser.evaluate("document.getElementById('status').textContent")
        if text in status or time.monotonic() > deadline:
            return status
        time.sleep(0.3)


@pytest.mark.parametrize("mode", ["cloud", "device"])
def test_scores_reach_the_page(live_stack, fake_camera, tmp_path, mode):
    """cloud: the camera's video goes over WebRTC; device: BlazePose runs in the page (the npm package's
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
        shown = browser.evaluate("JSON.stringify([document.getElementById('similarity').dataset.value, "
                                 "document.getElementById('verdict').textContent])")
        hints = browser.evaluate("document.getElementById('latency').textContent")
    finally:
        browser.close()
    assert count >= 8, f"scores shown on the page: {count}; status: {status!r}; on-device model: {device}"
    assert ("Streaming your camera" if mode == "cloud" else "runs on this device") in status, status
    assert reps.isdigit() and "after capture" in hints
    value, shown_verdict = json.loads(shown)  # the last score's verdict, in the scorer's words
    assert shown_verdict == verdict(float(value)), (value, shown_verdict)
    assert shot.stat().st_size > 10_000


def _self_signed(folder) -> tuple[Path, Path, str]:
    """A self-signed certificate for 127.0.0.1 (cert file, key file, the base64 SHA-256 of its public key)."""
    import base64
    import datetime
    import hashlib
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rehab-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "gateway.crt", folder / "gateway.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert_file, key_file, base64.b64encode(hashlib.sha256(spki).digest()).decode()


def test_the_app_runs_over_https_with_a_self_signed_certificate(live_stack, fake_camera, tmp_path):
    """A gateway with REHAB_TLS_CERT_FILE / REHAB_TLS_KEY_FILE serves the app over HTTPS and the scores
    over WSS; chromium trusts exactly this certificate's key (--ignore-certificate-errors-spki-list),
    the page is a secure context (the camera is granted there off localhost too), and scores arrive."""
    import httpx

    from rehab.stack.services import Services
    from tests.conftest import free_port

    cert, key, spki = _self_signed(tmp_path)
    port = free_port()
    settings = live_stack.with_(gateway_port=port, gateway_url=f"https://127.0.0.1:{port}", tls_cert_file=str(cert),
                                tls_key_file=str(key))
    with Services(settings, tmp_path / "tls-gateway", names=("gateway",)):
        with pytest.raises(httpx.TransportError):  # no plain HTTP on that port (the server hangs up)
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        browser = Browser(fake_camera, tmp_path / "chromium.log", (f"--ignore-certificate-errors-spki-list={spki}",))
        try:
            browser.goto(f"{settings.gateway_url}/?reference=guide&patient=browser-tls&mode=cloud&autostart=1")
            count = _wait_for_scores(browser, 5, 90)
            secure = browser.evaluate("window.isSecureContext && location.protocol")
            status = browser.evaluate("document.getElementById('status').textContent")
        finally:
            browser.close()
    assert secure == "https:", secure
    assert count >= 5, f"scores shown on the HTTPS page: {count}; status: {status!r}"


def test_behind_a_tls_proxy_the_https_origin_is_the_gateways_own(live_stack):
    """A TLS proxy on a trusted address (REHAB_FORWARDED_ALLOW_IPS, 127.0.0.1 here) forwards the browser's
    https:// page: the gateway takes the scheme from X-Forwarded-Proto, so the page's origin is its own;
    without the header the same origin is a foreign one and refused."""
    import httpx

    origin = live_stack.gateway_url.replace("http://", "https://")
    body = {"reference_id": "guide", "patient_id": "proxied", "mode": "device"}
    with httpx.Client(base_url=live_stack.gateway_url, timeout=10) as http:
        proxied = http.post("/sessions", json=body, headers={"Origin": origin, "X-Forwarded-Proto": "https"})
        direct = http.post("/sessions", json=body, headers={"Origin": origin})
        if proxied.status_code == 201:
            grant = proxied.json()
            http.delete(f"/sessions/{grant['session_id']}", headers={"Authorization": f"Bearer {grant['token']}",
                                                                     "X-Forwarded-Proto": "https", "Origin": origin})
    assert proxied.status_code == 201, proxied.text
    assert direct.status_code == 403 and "origin" in direct.text, direct.text


def test_a_session_outlives_its_first_token_and_still_reconnects(live_stack, fake_camera, tmp_path):
    """Tokens live 12 s on this gateway: the page asks for a fresh one at 80 % of its life; the gateway
    closes the score stream when the token it was opened with expires and the page opens it again with
    the fresh one; once the first token has expired a reconnect (a new offer) still succeeds."""
    from rehab.stack.services import Services
    from tests.conftest import free_port

    port = free_port()
    settings = live_stack.with_(gateway_port=port, gateway_url=f"http://127.0.0.1:{port}", token_ttl_s=12)
    with Services(settings, tmp_path / "short-tokens", names=("gateway",)):
        browser = Browser(fake_camera, tmp_path / "chromium.log")
        try:
            browser.goto(f"{settings.gateway_url}/?reference=guide&patient=browser-ttl&mode=cloud&autostart=1")
            assert _wait_for_scores(browser, 1, 60) >= 1
            first = browser.evaluate("state.session.token")
            started = time.monotonic()
            time.sleep(max(0.0, 14.0 - (time.monotonic() - started)))  # the first token has expired by now
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not browser.evaluate("state.tokenRefreshes || 0"):
                time.sleep(0.5)
            refreshes = browser.evaluate("state.tokenRefreshes || 0")
            changed = browser.evaluate("state.session.token") != first
            browser.evaluate("reconnect()")
            status = _wait_for_status(browser, "Reconnect", 20)
            before = int(browser.evaluate("Number(document.getElementById('similarity').dataset.count || 0)"))
            after = _wait_for_scores(browser, before + 3, 30)
            reopens = browser.evaluate("state.streamReopens || 0")
        finally:
            browser.close()
    assert refreshes >= 1 and changed, (refreshes, changed)
    assert reopens >= 1, "the score stream was not closed at its token's expiry, or not opened again"
    assert status == "Reconnected.", status
    assert after >= before + 3, f"scores after the reconnect: {after - before}"


def test_a_patient_joins_by_the_invitation_link_and_signs_out(live_stack, fake_camera, tmp_path):
    """Demo mode off, as in a deployment: a clinician's invitation link opens the app, the page exchanges
    the code for the patient's credential (kept in the browser, the code gone from the address bar),
    starts a session that is that patient's, and scores arrive; signing out revokes the credential."""
    import httpx

    from rehab.stack.services import Services
    from tests.conftest import free_port

    port = free_port()
    settings = live_stack.with_(gateway_port=port, gateway_url=f"http://127.0.0.1:{port}", demo_mode=False)
    admin = {"X-API-Key": live_stack.admin_api_key}
    with Services(settings, tmp_path / "invited", names=("gateway",)):
        refused = httpx.post(f"{settings.gateway_url}/sessions", json={"reference_id": "guide"})
        invitation = httpx.post(f"{settings.gateway_url}/patients", json={"patient_id": "invited-patient"},
                                headers=admin).json()
        browser = Browser(fake_camera, tmp_path / "chromium.log")
        try:
            browser.goto(f"{invitation['invitation_url']}&reference=guide&mode=cloud&autostart=1")
            scores = _wait_for_scores(browser, 2, 60)
            stored = browser.evaluate("JSON.parse(localStorage.getItem('rehab.credential'))")
            search = browser.evaluate("location.search")
            sid = browser.evaluate("state.session && state.session.session_id")
            sessions = httpx.get(f"{settings.gateway_url}/patients/invited-patient/sessions", headers=admin).json()
            browser.evaluate("signOut()")
            signed_out = _wait_for_status(browser, "Signed out", 15)
        finally:
            browser.close()
        again = httpx.post(f"{settings.gateway_url}/tokens", json={"credential": stored["credential"]})
    assert refused.status_code == 401, refused.text
    assert scores >= 2, scores
    assert stored["patient_id"] == "invited-patient" and "invite" not in search, (stored, search)
    assert [row["session_id"] for row in sessions] == [sid]
    assert "Signed out" in signed_out and again.status_code == 401, (signed_out, again.text)
