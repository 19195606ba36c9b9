"""The gateway's HTTP surface (Starlette). Run with ``rehab serve gateway``.

Routes
  GET    /health                          liveness + Kafka/MySQL reachability
  GET    /references                      stored guide recordings
  POST   /sessions                        {reference_id, patient_id, mode} -> 201 {session_id, ...}
  GET    /sessions/{id}                   the session row
  POST   /sessions/{id}/offer             WebRTC offer {sdp, type} -> answer {sdp, type}
  DELETE /sessions/{id}                   ends the session, closes its peer connection
  WS     /sessions/{id}/scores            the session's scores as JSON text messages
Settings: see rehab/settings.py (REHAB_KAFKA_BOOTSTRAP, REHAB_MYSQL_*, REHAB_FRAME_MAX_SIDE, ...).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiortc import RTCPeerConnection, RTCSessionDescription
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.fanout import ScoreFanout
from gateway.ingest import VideoIngest
from gateway.offer import Offer, OfferError
from rehab.reference import _ID as ID_PATTERN
from rehab.settings import Settings
from rehab.storage.repository import Database

log = logging.getLogger("rehab.gateway")
MAX_BODY = 256 * 1024


@dataclass
class LiveSession:
    session_id: str
    reference_id: str
    pc: RTCPeerConnection
    ingest: VideoIngest
    tasks: list[asyncio.Task] = field(default_factory=list)

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.pc.close()


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def read_json(request: Request):
    body = await request.body()
    if len(body) > MAX_BODY:
        raise OfferError(f"request body larger than {MAX_BODY} bytes")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OfferError(f"body is not JSON: {exc}") from None


def create_app(settings: Settings) -> Starlette:
    topics = settings.topics
    live: dict[str, LiveSession] = {}
    fanout = ScoreFanout()
    res: dict = {}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        res["db"] = await Database.connect(settings, maxsize=10)
        res["producer"] = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=0,
                                           max_request_size=8 * 1024 * 1024)
        await res["producer"].start()
        consumer = AIOKafkaConsumer(topics.scores, bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                    auto_offset_reset="latest", fetch_max_wait_ms=20)
        await consumer.start()
        fan_task = asyncio.create_task(fanout.run(consumer))
        try:
            yield
        finally:
            await asyncio.gather(*(s.close() for s in list(live.values())), return_exceptions=True)
            live.clear()
            fan_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await fan_task
            await consumer.stop()
            await res["producer"].stop()
            await res["db"].close()

    async def health(request: Request):
        return JSONResponse({"status": "ok", "live_sessions": len(live)})

    async def references(request: Request):
        return JSONResponse(await res["db"].list_references())

    async def create_session(request: Request):
        try:
            body = await read_json(request)
        except OfferError as exc:
            return error(400, str(exc))
        if not isinstance(body, dict) or not isinstance(body.get("reference_id"), str):
            return error(422, "body must be a JSON object with a string 'reference_id'")
        patient = body.get("patient_id", "anonymous")
        mode = body.get("mode", "cloud")
        if not isinstance(patient, str) or not ID_PATTERN.match(patient):
            return error(422, "patient_id must be 1-64 letters, digits, '_', '.', '-'")
        if mode not in ("cloud", "edge"):
            return error(422, "mode must be 'cloud' or 'edge'")
        ref = await res["db"].get_reference(body["reference_id"])
        if ref is None:
            return error(404, f"unknown reference {body['reference_id']!r}")
        session_id = uuid.uuid4().hex
        await res["db"].create_session(session_id, patient, ref.id, mode)
        return JSONResponse({"session_id": session_id, "reference_id": ref.id, "patient_id": patient,
                             "mode": mode}, status_code=201)

    async def get_session(request: Request):
        row = await res["db"].get_session(request.path_params["session_id"])
        if row is None:
            return error(404, "unknown session")
        return JSONResponse({k: (str(v) if v is not None and k.endswith("_at") else v) for k, v in row.items()})

    async def end_session(request: Request):
        sid = request.path_params["session_id"]
        row = await res["db"].get_session(sid)
        if row is None:
            return error(404, "unknown session")
        session = live.pop(sid, None)
        summary = {}
        if session is not None:
            summary = dict(session.ingest.counters, dropped_latest=session.ingest.slot.dropped)
            await session.close()
        await res["db"].end_session(sid, summary)
        return JSONResponse({"session_id": sid, "ended": True, "ingest": summary})

    async def offer(request: Request):
        sid = request.path_params["session_id"]
        try:
            offer = Offer.from_json(await read_json(request))
        except OfferError as exc:
            return error(400, f"bad offer: {exc}")
        row = await res["db"].get_session(sid)
        if row is None:
            return error(404, "unknown session")
        if row["ended_at"] is not None:
            return error(409, "session has ended")
        if sid in live:
            await live.pop(sid).close()  # a reconnecting client replaces its old peer connection
        pc = RTCPeerConnection()
        ingest = VideoIngest(sid, row["reference_id"], res["producer"], topics.frames,
                             settings.frame_max_side, settings.jpeg_quality)
        session = LiveSession(sid, row["reference_id"], pc, ingest)

        @pc.on("datachannel")
        def on_datachannel(channel):
            @channel.on("message")
            def on_message(message):
                try:
                    msg = json.loads(message)
                    if msg.get("type") == "clock" and isinstance(msg.get("t0_ms"), int):
                        ingest.clock_t0_ms = msg["t0_ms"]
                except (ValueError, AttributeError):
                    ingest.counters["bad_channel_messages"] += 1

        @pc.on("track")
        def on_track(track):
            if track.kind == "video":
                session.tasks.append(asyncio.create_task(ingest.read_track(track)))
                session.tasks.append(asyncio.create_task(ingest.publish()))

        @pc.on("connectionstatechange")
        async def on_state():
            if pc.connectionState in ("failed", "closed") and live.get(sid) is session:
                live.pop(sid, None)
                await session.close()

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type=offer.type))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc raises ValueError & co. on SDP it cannot use
            await pc.close()
            return error(400, f"bad offer: the SDP could not be used ({type(exc).__name__}: {exc})")
        live[sid] = session
        return JSONResponse({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})

    async def scores_ws(ws: WebSocket):
        sid = ws.path_params["session_id"]
        await ws.accept()  # accept first, so the refusal carries a close code and a reason
        if await res["db"].get_session(sid) is None:
            await ws.close(code=4404, reason="unknown session")
            return
        q = fanout.subscribe(sid)
        try:
            receiver = asyncio.create_task(ws.receive_text())
            while True:
                getter = asyncio.create_task(q.get())
                done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
                if receiver in done:  # the client closed (or sent something: we only push)
                    getter.cancel()
                    break
                await ws.send_text(getter.result())
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            receiver.cancel()
            fanout.unsubscribe(sid, q)

    routes = [
        Route("/health", health),
        Route("/references", references),
        Route("/sessions", create_session, methods=["POST"]),
        Route("/sessions/{session_id}", get_session, methods=["GET"]),
        Route("/sessions/{session_id}", end_session, methods=["DELETE"]),
        Route("/sessions/{session_id}/offer", offer, methods=["POST"]),
        WebSocketRoute("/sessions/{session_id}/scores", scores_ws),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.live = live
    app.state.fanout = fanout
    return app
