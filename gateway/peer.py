"""A session's live peer connection (``PeerConnector`` creates it for a checked offer): its video track
(cloud mode), its keypoints data channel (on-device mode) with the scores sent back on it, the control
channel's messages, and the connection's state for the reaper. Also the record the gateway keeps of a
connected session (``LiveSession``)."""
from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Callable

from aiortc import RTCPeerConnection, RTCSessionDescription
from starlette.responses import JSONResponse

from gateway.device_ingest import DeviceIngest, DeviceMessageError
from gateway.fanout import ScoreFanout
from gateway.ingest import VideoIngest
from gateway.auth import Claims
from gateway.http import NotFound, error
from gateway.limits import RateLimit
from gateway.offer import Offer
from gateway.resources import Resources
from gateway.turn import IceServers, rtc_configuration
from rehab.adapters import metrics
from rehab.records import check_client_ts
from rehab.settings import MAX_SESSION_FPS, Settings

MAX_CHANNELS_PER_SESSION = 4  # data channels one peer connection may open (clients use 1: keypoints or control)


@dataclass
class LiveSession:
    session_id: str
    reference_id: str
    pc: RTCPeerConnection
    ingest: VideoIngest | DeviceIngest
    patient_id: str = ""
    credential_id: str | None = None  # of the token that connected it: revoking it ends the session
    tasks: list[asyncio.Task] = field(default_factory=list)
    last_activity: float = field(default_factory=time.monotonic)
    disconnected_at: float | None = None  # the peer connection failed or closed: waiting for a reconnect
    channels: int = 0  # data channels the peer opened

    def summary(self) -> dict:
        out = dict(self.ingest.counters)
        if isinstance(self.ingest, VideoIngest):
            out["dropped_latest"] = self.ingest.slot.dropped
        return out

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.pc.close()


class ChannelErrors:
    """Error replies on a data channel, per session: a burst, then 5 a second; the rest are counted,
    unanswered (a hostile peer cannot make the gateway talk as fast as it sends)."""

    def __init__(self):
        self.replies = RateLimit(300, burst=60)

    def __call__(self, channel, sid: str, ingest, reason: str) -> None:
        if channel.readyState != "open":
            return
        if self.replies.allow(sid):
            channel.send(json.dumps({"type": "error", "reason": reason}))
        else:
            ingest.counters["errors_unanswered"] += 1
            metrics.DROPPED.labels("gateway", "error_reply_limit").inc()


def wire(session: LiveSession, on_device: bool, fanout: ScoreFanout, reply_error: ChannelErrors,
         is_current: Callable[[], bool]) -> None:
    """Attaches the session's handlers to its peer connection (before the offer is applied).
    ``is_current()``: whether this is still the session's connection (a reconnect replaces it)."""
    pc, ingest, sid = session.pc, session.ingest, session.session_id

    def on_keypoints(channel, message) -> None:
        session.last_activity = time.monotonic()
        try:
            frame = ingest.accept(message)
        except DeviceMessageError as exc:
            ingest.counters["bad_messages"] += 1
            metrics.DROPPED.labels("gateway", "device_refused").inc()
            reply_error(channel, sid, ingest, str(exc))
            return
        ingest.publish(frame)

    async def scores_to_channel(channel) -> None:
        q = fanout.subscribe(sid)
        try:
            while True:
                payload = await q.get()
                if channel.readyState != "open":
                    return
                channel.send('{"type":"score","score":' + payload + "}")
        finally:
            fanout.unsubscribe(sid, q)

    @pc.on("datachannel")
    def on_datachannel(channel):
        session.channels += 1
        if session.channels > MAX_CHANNELS_PER_SESSION:  # a client needs one or two: no more
            ingest.counters["refused_channels"] += 1
            metrics.DROPPED.labels("gateway", "channel_limit").inc()
            channel.close()
            return
        if channel.label == "keypoints":
            if not on_device:
                channel.send(json.dumps({"type": "error", "reason": "this is a cloud-mode session: send video"}))
                return
            channel.on("message", lambda m: on_keypoints(channel, m))
            session.tasks.append(asyncio.create_task(scores_to_channel(channel)))
            return

        @channel.on("message")
        def on_message(message):
            try:
                msg = json.loads(message)
                if msg.get("type") == "clock" and not on_device:
                    ingest.clock_t0_ms = check_client_ts("t0_ms", msg.get("t0_ms"))
            except (ValueError, AttributeError, RecursionError) as exc:  # MessageError is a ValueError
                ingest.counters["bad_channel_messages"] += 1
                reply_error(channel, sid, ingest, str(exc)[:200])

    @pc.on("track")
    def on_track(track):
        if track.kind == "video" and not on_device:
            async def read():
                await ingest.read_track(track, on_frame=lambda: setattr(session, "last_activity", time.monotonic()))
            session.tasks.append(asyncio.create_task(read()))
            session.tasks.append(asyncio.create_task(ingest.publish()))
        else:
            ingest.counters["ignored_tracks"] += 1

    @pc.on("connectionstatechange")
    async def on_state():
        if not is_current():
            return
        if pc.connectionState in ("failed", "closed"):
            session.disconnected_at = time.monotonic()  # the reaper ends it unless the client reconnects
        elif pc.connectionState == "connected":
            session.disconnected_at = None


def resumed_seq(elapsed_s: float, clock_margin_s: float = 60.0) -> int:
    """The first frame number for a session that earlier connections (in another gateway process) fed:
    above any they can have used, as no session gets more than MAX_SESSION_FPS frames a second (plus a
    burst) from any gateway. (A device's own numbers are added to it: one that skips numbers
    ahead of its frame rate can still overlap its earlier frames after a gateway restart.)"""
    return int((elapsed_s + clock_margin_s) * MAX_SESSION_FPS) + 1


class PeerConnector:
    """Creates (or replaces) a session's peer connection for a checked offer and answers it: the ingest
    for its mode, the wiring above, the session registered in ``live`` once the answer is made."""

    def __init__(self, settings: Settings, res: Resources, live: dict, fanout: ScoreFanout, ice: IceServers):
        self.settings, self.res, self.live, self.fanout, self.ice = settings, res, live, fanout, ice
        self.reply_error = ChannelErrors()
        self.offer_locks: dict[str, list] = {}

    async def connect(self, sid: str, row: dict, offer: Offer, claims: Claims) -> JSONResponse:
        # one offer at a time per session: two concurrent offers each made a peer connection, and the one
        # replaced in ``live`` before it was registered was never closed (a leak per race)
        entry = self.offer_locks.setdefault(sid, [asyncio.Lock(), 0])  # [lock, offers using it]
        entry[1] += 1
        try:
            async with entry[0]:
                return await self._connect(sid, row, offer, claims)
        finally:
            entry[1] -= 1
            if not entry[1]:
                self.offer_locks.pop(sid, None)

    async def _connect(self, sid: str, row: dict, offer: Offer, claims: Claims) -> JSONResponse:
        try:
            earlier, elapsed_s = await self.res.db.connect_session(sid)
        except LookupError:
            raise NotFound("unknown session") from None
        first_seq = 0  # the session's frame numbers go on across connections, so no frame looks like a repeat
        if sid in self.live:  # a reconnecting client (or an ICE restart) replaces its old peer connection
            old = self.live.pop(sid)
            first_seq = old.ingest.next_seq + 1
            await old.close()
        elif earlier:  # connected before, through a gateway that restarted since or another one
            first_seq = resumed_seq(elapsed_s)
        pc = RTCPeerConnection(rtc_configuration(self.ice.for_session(sid)))
        s = self.settings
        on_device = row["mode"] == "device"
        if on_device:
            ingest = DeviceIngest(sid, row["reference_id"], self.res.keypoints, s.session_max_fps, first_seq)
        else:
            ingest = VideoIngest(sid, row["reference_id"], self.res.producer, s.topics.frames,
                                 s.frame_max_side, s.jpeg_quality, s.session_max_fps, first_seq)
        session = LiveSession(sid, row["reference_id"], pc, ingest, row["patient_id"], claims.credential_id)

        wire(session, on_device, self.fanout, self.reply_error, is_current=lambda: self.live.get(sid) is session)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type=offer.type))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc raises ValueError & co. on SDP it cannot use
            await pc.close()
            return error(400, f"bad offer: the SDP could not be used ({type(exc).__name__}: {exc})")
        self.live[sid] = session
        return JSONResponse({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})
