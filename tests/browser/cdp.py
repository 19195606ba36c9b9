"""Just enough of the Chrome DevTools Protocol to drive Debian's headless chromium from a test: open a
page, evaluate JavaScript, take a screenshot. The camera is a fake one fed from a .y4m clip."""
from __future__ import annotations

import base64
import itertools
import json
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import httpx
from websockets.sync.client import connect


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def write_y4m(video: Path, out: Path, max_side: int = 640) -> Path:
    """The clip as raw I420 frames in a YUV4MPEG2 file (the format chromium's fake camera reads), at
    the clip's own frame rate so the movement keeps its speed."""
    from edge.video import frames, probe

    fps = round(probe(video).fps)
    images = [im for im in frames(video, max_side)]
    h, w = (images[0].shape[0] // 2) * 2, (images[0].shape[1] // 2) * 2
    with open(out, "wb") as fh:
        fh.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for im in images:
            fh.write(b"FRAME\n")
            fh.write(cv2.cvtColor(im[:h, :w], cv2.COLOR_BGR2YUV_I420).tobytes())
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    def __init__(self, fake_camera: Path, log: Path, extra_args: tuple[str, ...] = ()):
        exe = chromium_path()
        if exe is None:
            raise RuntimeError("chromium is not installed (apt-get install chromium)")
        self.port = _free_port()
        self.profile = tempfile.TemporaryDirectory(prefix="rehab-chromium-")
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(
            [exe, "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--enable-unsafe-swiftshader",
             "--use-angle=swiftshader",
             "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
             f"--use-file-for-fake-video-capture={fake_camera}", f"--remote-debugging-port={self.port}",
             "--remote-allow-origins=*", f"--user-data-dir={self.profile.name}", "--window-size=1280,900",
             *extra_args, "about:blank"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.ids = itertools.count(1)
        self.ws = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                pages = httpx.get(f"http://127.0.0.1:{self.port}/json/list", timeout=2).json()
                page = next(p for p in pages if p.get("type") == "page")
                self._conn = connect(page["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024)
                self.ws = self._conn.__enter__()
                break
            except (httpx.HTTPError, StopIteration, OSError, ValueError):
                time.sleep(0.3)
        if self.ws is None:
            self.close()
            raise RuntimeError(f"chromium did not start its DevTools endpoint (see {log})")

    def call(self, method: str, **params):
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def goto(self, url: str) -> None:
        self.call("Page.enable")
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        if self.ws is not None:
            self._conn.__exit__(None, None, None)
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        for _ in range(10):  # chromium's helper processes may still flush the profile (localStorage) as they exit
            try:
                self.profile.cleanup()
                return
            except OSError:
                time.sleep(0.5)
        shutil.rmtree(self.profile.name, ignore_errors=True)
