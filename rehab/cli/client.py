"""A real WebRTC client: streams a video file to the gateway at the clip's frame rate (as a camera
would) and yields the session's scores as they arrive over the WebSocket. ``rehab stream`` uses it."""
from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import AsyncIterator

import httpx
import orjson
import websockets
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from rehab.adapters.webrtc import sctp
from gateway.turn import rtc_configuration
from rehab.cli.camera import EncodedCameraTrack, FileCameraTrack
from rehab.records import Score, now_ms

@dataclass
class Received:
    score: Score
    received_ms: int

    @property
    def latency_ms(self) -> int:
        """Glass to score: capture of the window's last frame to receipt here (same clock)."""
        return self.received_ms - self.score.window_end_ts_ms


@dataclass
class StreamResult:
    session_id: str
    frames_sent: int
    received: list[Received] = field(default_factory=list)


@dataclass(frozen=True)
class Grant:
    """A session as the gateway granted it: its id and the token that opens it."""

    session_id: str
    token: str
    mode: str = "cloud"
    ice_servers: tuple = ()  # the STUN/TURN servers the gateway hands out (REHAB_ICE_SERVERS); none: none

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def peer_connection(self) -> RTCPeerConnection:
        """A peer connection with the granted ICE servers only (never aiortc's default public STUN)."""
        return RTCPeerConnection(rtc_configuration(self.ice_servers))


async def patient_token(gateway: str, credential: str) -> str:
    """A patient token for the patient's credential (from their invitation: gateway/accounts.py)."""
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
        r = await http.post("/tokens", json={"credential": credential})
    if r.status_code != 201:
        raise RuntimeError(f"gateway refused the credential: {r.status_code} {r.text}")
    return r.json()["token"]


async def create_session(gateway: str, reference_id: str, patient_id: str | None = "demo-patient",
                         mode: str = "cloud", credential: str | None = None) -> Grant:
    """A new session. With the patient's ``credential`` the session is that patient's (``patient_id`` is
    not sent); without one the gateway must be in demo mode."""
    body = {"reference_id": reference_id, "mode": mode}
    headers = {}
    if credential:
        headers["Authorization"] = f"Bearer {await patient_token(gateway, credential)}"
    elif patient_id is not None:
        body["patient_id"] = patient_id
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
        r = await http.post("/sessions", json=body, headers=headers)
        if r.status_code != 201:
            raise RuntimeError(f"gateway refused the session: {r.status_code} {r.text}")
        body = r.json()
        return Grant(body["session_id"], body["token"], body["mode"], tuple(body.get("ice_servers", ())))


async def negotiate(pc: RTCPeerConnection, gateway: str, grant: Grant) -> None:
    """Offer ``pc``'s tracks and channels to the granted session and apply the gateway's answer
    (also what a reconnect does: a new offer for the same session)."""
    sctp.install()  # delayed SACKs on the data channel, as browsers do (rehab/adapters/webrtc/sctp.py)
    await pc.setLocalDescription(await pc.createOffer())
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
        r = await http.post(f"/sessions/{grant.session_id}/offer", headers=grant.headers,
                            json={"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})
    if r.status_code != 200:
        raise RuntimeError(f"gateway refused the offer: {r.status_code} {r.text}")
    await pc.setRemoteDescription(RTCSessionDescription(**r.json()))


async def stream_file(gateway: str, grant: Grant, path: str, loops: int = 1, max_side: int = 640,
                      tail_s: float = 3.0, fps: float | None = None, preencoded: bool = False
                      ) -> AsyncIterator[Received]:
    """Streams ``path`` into the granted session; yields scores until ``tail_s`` after the last frame.
    ``preencoded``: send the clip as H.264 encoded once up front (``EncodedCameraTrack``)."""
    session_id = grant.session_id
    ws_url = gateway.replace("http", "ws", 1) + f"/sessions/{session_id}/scores?token={grant.token}"
    camera = EncodedCameraTrack if preencoded else FileCameraTrack
    track = camera(path, max_side=max_side, loops=loops, fps=fps)
    pc = grant.peer_connection()
    channel = pc.createDataChannel("control")

    def send_clock() -> None:
        if track.t0_ms is not None and channel.readyState == "open":
            channel.send(json.dumps({"type": "clock", "t0_ms": track.t0_ms}))

    channel.on("open", send_clock)
    sender = pc.addTrack(track)
    if preencoded:  # the packets are H.264: offer only that
        transceiver = next(t for t in pc.getTransceivers() if t.sender is sender)
        transceiver.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                         if c.mimeType == "video/H264"])
    async with websockets.connect(ws_url, open_timeout=15) as ws:
        try:
            await negotiate(pc, gateway, grant)
            await asyncio.wait_for(track.first_frame.wait(), 30)
            send_clock()
            ended_at: float | None = None
            while True:
                if ended_at is None and track.readyState == "ended":
                    ended_at = time.monotonic()
                if ended_at is not None and time.monotonic() - ended_at > tail_s:
                    break
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.1)
                except asyncio.TimeoutError:
                    continue
                yield Received(Score.from_json(raw), now_ms())
        finally:
            await pc.close()
            with contextlib.suppress(Exception):
                async with httpx.AsyncClient(base_url=gateway, timeout=10) as http:
                    await http.delete(f"/sessions/{session_id}", headers=grant.headers)


async def open_keypoint_channel(gateway: str, grant: Grant, on_message):
    """A peer connection with the ``keypoints`` data channel, negotiated and open; ``on_message(raw)``
    is attached before negotiation so no early message (an error, a score) is missed."""
    pc = grant.peer_connection()
    channel = pc.createDataChannel("keypoints")
    channel.on("message", on_message)
    opened = asyncio.Event()
    channel.on("open", opened.set)
    try:
        await negotiate(pc, gateway, grant)
    except RuntimeError:
        await pc.close()
        raise
    await asyncio.wait_for(opened.wait(), 30)
    return pc, channel


async def _aiter(items):
    if hasattr(items, "__aiter__"):
        async for x in items:
            yield x
    else:
        for x in items:
            yield x


async def stream_keypoints(gateway: str, grant: Grant, frames, fps: float, tail_s: float = 3.0,
                           errors: list | None = None, model: str = "blazepose",
                           send_lag_ms: list | None = None) -> AsyncIterator[Received]:
    """On-device mode: sends keypoints (an iterable or async iterable of (width, height, keypoints or None))
    over the data channel, frame i at t0 + i / fps (its capture time), and yields the scores that come
    back on it. ``send_lag_ms`` collects how late each frame left after its capture time (a busy
    device or load generator shows here, not as the gateway's latency)."""
    inbox: asyncio.Queue = asyncio.Queue()

    def on_message(raw):
        msg = orjson.loads(raw)
        if msg.get("type") == "score":
            inbox.put_nowait(Received(Score.from_json(orjson.dumps(msg["score"])), now_ms()))
        elif msg.get("type") == "error" and errors is not None:
            errors.append(msg["reason"])

    pc, channel = await open_keypoint_channel(gateway, grant, on_message)

    async def send_all():
        t0_mono, t0_ms = time.monotonic(), now_ms()
        seq = 0
        async for w, h, kps in _aiter(frames):
            delay = t0_mono + seq / fps - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif send_lag_ms is not None:
                send_lag_ms.append(-delay * 1000)
            channel.send(orjson.dumps({"type": "keypoints", "seq": seq, "capture_ts_ms": t0_ms + round(seq * 1000 / fps),
                                       "width": w, "height": h, "keypoints": kps, "model": model}).decode())
            seq += 1

    sender = asyncio.create_task(send_all())
    getter = asyncio.ensure_future(inbox.get())
    try:
        deadline = None  # tail_s after the last frame
        while True:
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                break
            waiting = {getter} if sender.done() else {getter, sender}
            await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if deadline is None and sender.done():
                sender.result()
                deadline = time.monotonic() + tail_s
            if getter.done():
                yield getter.result()
                getter = asyncio.ensure_future(inbox.get())
    finally:
        getter.cancel()
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
        await pc.close()
        with contextlib.suppress(Exception):
            async with httpx.AsyncClient(base_url=gateway, timeout=10) as http:
                await http.delete(f"/sessions/{grant.session_id}", headers=grant.headers)


async def device_keypoints(path: str, backend, max_side: int = 640):
    """What a device in on-device mode does: the pose model on each camera frame, here on a video file's frames
    (in a thread, frame by frame, so inference overlaps sending)."""
    from edge.extract import extract

    loop = asyncio.get_running_loop()
    it = extract(path, backend, max_side)
    while True:
        f = await loop.run_in_executor(None, next, it, None)
        if f is None:
            return
        yield f.width, f.height, f.keypoints
