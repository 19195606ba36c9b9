"""The gateway's HTTP surface (Starlette). Run with ``rehab serve gateway``.

Routes (the OpenAPI schema at /openapi.json describes each; who may call what: gateway/auth.py)
  GET    /health                          liveness
  GET    /openapi.json                    the schema
  GET    /references                      [token] the guide recordings the caller may see
  POST   /references?name=N[&id=I]        [API key | clinician token] body = a guide video -> 201 the reference
  GET    /references/{id}                 [token] one reference (?frames=true adds its keypoints)
  POST   /references/{id}/score           [API key | clinician token] body = an attempt video -> the score
  POST   /tokens/clinician                [API key] {clinician_id, patient_id} -> a clinician token
  ...                                     enrolment, credentials, logout, patient removal: gateway/accounts.py
  POST   /sessions                        [patient token; none in demo mode] {reference_id, mode} -> 201
                                          {session_id, token, ...}
  GET    /sessions/{id}                   [token] the session row
  POST   /sessions/{id}/offer             [patient token] WebRTC offer {sdp, type} -> answer {sdp, type}
  POST   /sessions/{id}/token             [patient token] a fresh token for a live session (long sessions)
  DELETE /sessions/{id}                   [patient token] ends the session, closes its peer connection
  WS     /sessions/{id}/scores?token=T    [token] the session's scores as JSON text messages
                                          (&keypoints=true: its KeypointFrames too, for drawing)
  GET    /                                the browser app (gateway/static)
Modules: the guide routes gateway/references.py, the account routes gateway/accounts.py, a live
session's peer connection gateway/peer.py, the live-session registry and reaper gateway/sessions.py,
the score WebSockets gateway/streams.py, refusals and bounded bodies gateway/http.py, ICE servers and
TURN credentials gateway/turn.py.
Settings: see rehab/settings.py (REHAB_KAFKA_BOOTSTRAP, REHAB_MYSQL_*, REHAB_FRAME_MAX_SIDE, ...).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
import uuid
from pathlib import Path

from aiortc import RTCPeerConnection, RTCSessionDescription
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import JSONResponse, Response
from starlette.responses import FileResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.schemas import SchemaGenerator
from starlette.websockets import WebSocket

from gateway import sctp
from gateway.accounts import ACCOUNT_SCHEMAS, Accounts
from gateway.auth import AuthError, Claims, TokenSigner, bearer
from gateway.device_ingest import MODE_ALIASES, DeviceIngest, KeypointPublisher
from gateway.fanout import ScoreFanout
from gateway.http import error, read_json
from gateway.jitter import install as install_marker_jitter_buffer
from gateway.limits import ConcurrencyLimit, ErrorThrottle, RateLimit, client_of
from gateway.ingest import VideoIngest
from gateway.offer import Offer, OfferError
from gateway.peer import ChannelErrors, LiveSession, wire
from gateway.references import References
from gateway.sessions import LiveSessions
from gateway.streams import ScoreStreams
from gateway.turn import IceServers, rtc_configuration
from gateway.uploads import Extractor
from rehab import metrics
from rehab.reference import _ID as ID_PATTERN
from rehab.settings import MAX_SESSION_FPS, Settings
from rehab.storage.identity import Identity
from rehab.storage.repository import Database
from rehab.kafka_clients import async_producer, async_tail

log = logging.getLogger("rehab.gateway")
install_marker_jitter_buffer()  # frames leave the jitter buffer on their last packet, not the next frame's first
STATIC = Path(__file__).resolve().parent / "static"




_ID_SCHEMA = {"type": "string", "pattern": ID_PATTERN.pattern}
# What /openapi.json declares beside the routes' docstrings: bodies, path parameters, credentials.
# (The API is fuzzed from this document: tests/e2e/test_api_fuzz.py.)
OPENAPI_COMPONENTS = {
    "schemas": {
        "NewSession": {"type": "object", "required": ["reference_id"], "additionalProperties": False,
                       "properties": {"reference_id": _ID_SCHEMA, "patient_id": _ID_SCHEMA,
                                      "mode": {"type": "string", "enum": ["cloud", "device", "edge"]}}},
        "ClinicianGrant": {"type": "object", "required": ["clinician_id", "patient_id"], "additionalProperties": False,
                           "properties": {"clinician_id": _ID_SCHEMA, "patient_id": _ID_SCHEMA}},
        **ACCOUNT_SCHEMAS,
        "Offer": {"type": "object", "required": ["sdp"], "additionalProperties": False,
                  "properties": {"sdp": {"type": "string"}, "type": {"type": "string", "enum": ["offer"]}}},
    },
    "parameters": {
        "session_id": {"name": "session_id", "in": "path", "required": True, "schema": {"type": "string"}},
        "reference_id": {"name": "reference_id", "in": "path", "required": True, "schema": {"type": "string"}},
    },
    "securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "a session's, a patient's or a clinician's token"},
        "api_key": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "the admin API key"},
    },
}


# On-device keypoints wait up to 5 ms to share a produce request with other sessions' (Kafka 4.0 made 5 ms
# the Java producer's default, KIP-1030): with 100 on-device sessions 0.56 -> 0.50 cores of gateway, capture ->
# in Kafka p50 6 -> 8 ms (./dev bench device_capacity). A partition's batch holds ~700 frames (aiokafka's
# 16 KB default held ~10), so a send waits for a full batch only when Kafka is far behind.
KEYPOINTS_LINGER_MS = 5
# A consumer's fetch waits at the broker until a record arrives or this long: records are handed over as
# soon as they arrive either way, so it only sets how often an idle gateway asks (20 ms: 50 fetches a
# second per consumer with no session at all).
IDLE_FETCH_WAIT_MS = 500
# How often a gateway looks for credentials revoked and patients removed (by any gateway or the CLI), to
# close their WebSockets and end their live sessions; REST calls check each token at once.
REVOCATION_POLL_S = 2.0
KEYPOINTS_BATCH_BYTES = 1 << 20


def resumed_seq(elapsed_s: float, clock_margin_s: float = 60.0) -> int:
    """The first frame number for a session that earlier connections (in another gateway process) fed:
    above any they can have used, as no session gets more than MAX_SESSION_FPS frames a second (plus a
    burst) from any gateway. (A device's own numbers are added to it: one that skips numbers
    ahead of its frame rate can still overlap its earlier frames after a gateway restart.)"""
    return int((elapsed_s + clock_margin_s) * MAX_SESSION_FPS) + 1


def create_app(settings: Settings, make_backend=None) -> Starlette:
    """``make_backend()`` builds the pose backend for uploads (default: the configured one)."""
    sctp.install()  # delayed SACKs on data channels (gateway/sctp.py)
    topics = settings.topics
    sessions = LiveSessions(settings.session_idle_s, lambda: res["db"])
    live = sessions.live
    # STUN/TURN from REHAB_ICE_SERVERS (and a TURN server with per-session credentials, REHAB_TURN_*), none
    # by default: aiortc would otherwise ask Google's public STUN server on every offer (a public server
    # contacted, and a delay where it cannot be reached)
    ice = IceServers(settings.ice_server_list, settings.turn_url_list, settings.turn_secret, settings.turn_ttl_s)

    async def open_keypoints():
        consumer = async_tail(topics.keypoints, settings.kafka_bootstrap, fetch_max_wait_ms=IDLE_FETCH_WAIT_MS)
        await consumer.start()
        return consumer

    fanout = ScoreFanout(open_keypoints=open_keypoints)
    res: dict = {}
    signer = TokenSigner(settings.auth_secret, ttl_s=settings.token_ttl_s)
    if not settings.auth_secret:
        log.warning("REHAB_AUTH_SECRET is not set: tokens are signed with a random key and die with this process")
    if settings.demo_mode:
        log.warning("REHAB_DEMO_MODE is on: anyone who reaches this gateway may start sessions for any patient")
    streams = ScoreStreams(fanout, signer.clock)

    async def revoke_local(credential_ids: set, patient_ids: set) -> None:
        """Closes this gateway's WebSockets and ends its live sessions that a revocation ended."""
        streams.close_where(lambda c: c.credential_id in credential_ids or c.patient_id in patient_ids,
                            "the token was revoked (logged out, or the patient was removed)")
        await sessions.end_where(lambda s: s.credential_id in credential_ids or s.patient_id in patient_ids,
                                 "revoked")

    accounts = Accounts(settings, signer, on_revoked=revoke_local)
    references = References(settings, accounts, res)

    async def watch_revocations() -> None:
        """Revocations made through other gateways (or the CLI) reach this one's streams and sessions."""
        since = None
        while True:
            try:
                since, credential_ids, patient_ids = await accounts.identity.changes_since(since)
                if credential_ids or patient_ids:
                    await revoke_local(credential_ids, patient_ids)
            except Exception:  # MySQL away: try again next round, never stop
                metrics.ERRORS.labels("gateway", "revocations").inc()
                log.exception("could not read revocations; retrying")
            await asyncio.sleep(REVOCATION_POLL_S)
    schemas = SchemaGenerator({"openapi": "3.0.0", "info": {"title": "ReHab Live gateway", "version": "1.0.0"},
                               "components": OPENAPI_COMPONENTS})

    def default_backend():
        from edge.backends import backend_from_settings

        return backend_from_settings(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        res["db"] = await Database.connect(settings, maxsize=10)
        accounts.identity = Identity(res["db"])
        # camera frames (cloud mode): a few sessions per gateway, each frame sent at once
        res["producer"] = async_producer(settings.kafka_bootstrap, linger_ms=0, max_request_size=8 * 1024 * 1024)
        await res["producer"].start()
        # keypoints (on-device mode): hundreds of sessions per gateway, batched
        res["keypoint_producer"] = async_producer(settings.kafka_bootstrap, linger_ms=KEYPOINTS_LINGER_MS,
                                                  max_batch_size=KEYPOINTS_BATCH_BYTES)
        await res["keypoint_producer"].start()
        res["keypoints"] = KeypointPublisher(res["keypoint_producer"], topics.keypoints)
        publisher = asyncio.create_task(res["keypoints"].run())
        consumer = async_tail(topics.scores, settings.kafka_bootstrap, fetch_max_wait_ms=IDLE_FETCH_WAIT_MS)
        await consumer.start()
        fan_task = asyncio.create_task(fanout.run(consumer))
        res["extractor"] = Extractor(make_backend or default_backend, settings.frame_max_side)
        res["uploads"] = tempfile.TemporaryDirectory(prefix="rehab-uploads-")
        reaper = asyncio.create_task(sessions.reap())
        revocations = asyncio.create_task(watch_revocations())
        try:
            yield
        finally:
            reaper.cancel()
            revocations.cancel()
            await sessions.close_all()
            fan_task.cancel()
            await fanout.close()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await fan_task
            await consumer.stop()
            await res["keypoints"].drain()  # frames accepted from devices reach Kafka before the producer stops
            publisher.cancel()
            await res["keypoint_producer"].stop()
            await res["producer"].stop()
            await res["db"].close()
            await asyncio.to_thread(res["extractor"].close)
            res["uploads"].cleanup()

    offer_locks: dict[str, list] = {}

    # -- per-client limits (gateway/limits.py) -------------------------------------------------
    session_limit = RateLimit(settings.client_sessions_per_min)
    offer_limit = RateLimit(settings.client_offers_per_min)
    ws_limit = ConcurrencyLimit(settings.client_max_websockets)
    error_limit = RateLimit(settings.client_errors_per_min)
    reply_error = ChannelErrors()

    def too_many(limit: RateLimit, request: Request, what: str) -> JSONResponse:
        metrics.DROPPED.labels("gateway", f"limit_{what}").inc()
        retry = limit.retry_after_s(client_of(request))
        return JSONResponse({"error": f"too many {what} from this client: retry in {retry} s"}, status_code=429,
                            headers={"Retry-After": str(retry)})

    # -- access ------------------------------------------------------------------------------
    check_origin, admin = accounts.check_origin, accounts.admin

    async def checked_json(request: Request, check):
        """The JSON body once ``check(request)`` passed (AuthError, OfferError: refusals, see ``refusal``)."""
        check(request)
        return await read_json(request)

    async def session_access(conn, sid: str, send: bool) -> tuple[dict, Claims]:
        """The session row and the caller's claims; AuthError / LookupError otherwise."""
        claims = await accounts.authorize(conn)
        row = await res["db"].get_session(sid)
        if row is None:
            # a valid token for another session learns nothing about which ids exist
            if claims.role == "patient" and claims.session_id != sid:
                raise AuthError(403, "this token is not for this session")
            raise LookupError("unknown session")
        allowed = claims.may_send(sid) if send else await accounts.may_watch(claims, sid, row["patient_id"])
        if not allowed:
            raise AuthError(403, "this token is not for this session" if claims.role == "patient"
                            else "clinician tokens may watch a patient's sessions, not send to them")
        return row, claims

    # -- endpoints ---------------------------------------------------------------------------
    async def health(request: Request):
        """
        responses:
          200: {description: "{status: ok, live_sessions: N}"}
        """
        return JSONResponse({"status": "ok", "live_sessions": len(live)})

    metrics.SESSIONS.labels("gateway").set_function(lambda: len(live))
    metrics.SUBSCRIBERS.set_function(lambda: sum(len(v) for v in fanout.subscribers.values()))
    metrics.DEVICE_QUEUE.set_function(lambda: len(res["keypoints"].queue) if "keypoints" in res else 0)

    async def prometheus(request: Request):
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request):
        schema = schemas.get_schema(routes=request.app.routes)
        return JSONResponse(json.loads(json.dumps(schema, default=str)))  # YAML's int status keys -> strings

    async def clinician_token(request: Request):
        """
        summary: A token with which a clinician watches one patient's sessions.
        description: Needs the admin API key. Body {clinician_id, patient_id}.
        security: [{api_key: []}]
        requestBody: {required: true, content: {application/json: {schema: {$ref: "#/components/schemas/ClinicianGrant"}}}}
        responses:
          201: {description: "{token, expires_at}"}
          401: {description: no API key}
          422: {description: bad body}
        """
        body = await checked_json(request, admin)
        ids = [body.get(k) if isinstance(body, dict) else None for k in ("clinician_id", "patient_id")]
        if not all(isinstance(i, str) and ID_PATTERN.match(i) for i in ids):
            return error(422, "body must be {clinician_id, patient_id}, each 1-64 letters, digits, '_', '.', '-'")
        token, expires = signer.issue("clinician", ids[1], subject=ids[0])
        return JSONResponse({"token": token, "expires_at": expires, "patient_id": ids[1]}, status_code=201)

    async def create_session(request: Request):
        """
        summary: Start a session; the answer carries the session's token.
        description: Needs the patient's own token (POST /tokens with the patient's credential); the
          session is theirs. In demo mode (REHAB_DEMO_MODE) no token is needed and patient_id names the
          patient. Body {reference_id, patient_id, mode} (mode cloud = video over WebRTC, device = keypoints
          computed on the device over a data channel, "edge" accepted as its older name; patient_id, if
          given with a token, must be the token's). The token
          (Authorization Bearer, or ?token= on the WebSocket) is needed for the offer, the score stream
          and ending the session; it expires after REHAB_TOKEN_TTL_S.
          ice_servers are the STUN/TURN servers to give the peer connection (RTCIceServer dictionaries,
          from REHAB_ICE_SERVERS, plus a TURN server with credentials of this session that expire when
          REHAB_TURN_URLS is set; empty when none are configured).
        requestBody: {required: true, content: {application/json: {schema: {$ref: "#/components/schemas/NewSession"}}}}
        responses:
          201: {description: "{session_id, token, expires_at, expires_in_s, reference_id, patient_id, mode, ice_servers}"}
          400: {description: body is not JSON}
          401: {description: no patient token (outside demo mode), or an expired, forged or revoked one}
          403: {description: origin not allowed, not a patient's own token, or another patient's id}
          404: {description: unknown reference}
          422: {description: bad fields}
        """
        if not session_limit.allow(client_of(request)):
            return too_many(session_limit, request, "sessions")
        body = await checked_json(request, check_origin)
        claims = None
        try:
            if bearer(request.headers) is not None or not settings.demo_mode:
                claims = await accounts.authorize(request)
                if not claims.is_patient_account:
                    raise AuthError(403, "only the patient's own token (POST /tokens with their credential) "
                                         "starts a session")
        except AuthError as exc:
            if exc.status == 401 and bearer(request.headers) is None:
                raise AuthError(401, "starting a session needs the patient's token: exchange the patient's "
                                     "credential at POST /tokens (the gateway is not in demo mode)") from None
            raise
        if not isinstance(body, dict) or not isinstance(body.get("reference_id"), str):
            return error(422, "body must be a JSON object with a string 'reference_id'")
        unknown = set(body) - {"reference_id", "patient_id", "mode"}
        if unknown:
            return error(422, f"unknown fields {sorted(unknown)[:5]}")
        if not ID_PATTERN.match(body["reference_id"]):
            return error(422, "reference_id must be 1-64 letters, digits, '_', '.', '-'")
        patient = body.get("patient_id", "anonymous" if claims is None else claims.patient_id)
        mode = body.get("mode", "cloud")
        if not isinstance(patient, str) or not ID_PATTERN.match(patient):
            return error(422, "patient_id must be 1-64 letters, digits, '_', '.', '-'")
        if claims is not None and patient != claims.patient_id:
            return error(403, "a patient's token starts sessions for that patient only")
        mode = MODE_ALIASES.get(mode, mode) if isinstance(mode, str) else mode
        if mode not in ("cloud", "device"):
            return error(422, "mode must be 'cloud' or 'device' (keypoints from the device; 'edge' is its older name)")
        ref = await res["db"].get_reference(body["reference_id"])
        if ref is None or (claims is not None and
                           not await references.visible(await accounts.scope_of(claims), ref.id)):
            return error(404, f"unknown reference {body['reference_id']!r}")
        session_id = uuid.uuid4().hex
        ice_servers = ice.for_session(session_id)
        await res["db"].create_session(session_id, patient, ref.id, mode)
        token, expires = signer.issue("patient", patient, session_id,
                                      credential_id=None if claims is None else claims.credential_id)
        return JSONResponse({"session_id": session_id, "token": token, "expires_at": expires,
                             "expires_in_s": settings.token_ttl_s, "reference_id": ref.id, "patient_id": patient,
                             "mode": mode, "ice_servers": ice_servers}, status_code=201)

    async def refresh_token(request: Request):
        """
        summary: A fresh token for a live session (needs the session's own token, still valid).
        description: A session may last longer than REHAB_TOKEN_TTL_S; the app asks for a new token before
          its token expires (reconnecting needs a valid one). The old token stays valid until its own
          expiry. An ended session gets no new token.
        parameters: [{$ref: "#/components/parameters/session_id"}]
        security: [{bearer: []}]
        responses:
          200: {description: "{session_id, token, expires_at, expires_in_s, ice_servers}"}
          401: {description: missing, expired or forged token}
          403: {description: token for another session, or a clinician token}
          404: {description: unknown session}
          409: {description: the session has ended}
        """
        sid = request.path_params["session_id"]
        try:
            row, claims = await session_access(request, sid, send=True)
        except LookupError:
            return error(404, "unknown session")
        if row["ended_at"] is not None:
            return error(409, "session has ended")
        token, expires = signer.issue("patient", row["patient_id"], sid, credential_id=claims.credential_id)
        return JSONResponse({"session_id": sid, "token": token, "expires_at": expires,
                             "expires_in_s": settings.token_ttl_s, "ice_servers": ice.for_session(sid)})

    async def get_session(request: Request):
        """
        summary: The session (needs its token, or a clinician token for its patient).
        parameters: [{$ref: "#/components/parameters/session_id"}]
        security: [{bearer: []}]
        responses:
          200: {description: "{id, patient_id, reference_id, mode, started_at, ended_at}"}
          401: {description: missing, expired or forged token}
          403: {description: token for another session}
          404: {description: unknown session}
        """
        try:
            row, _ = await session_access(request, request.path_params["session_id"], send=False)
        except LookupError:
            return error(404, "unknown session")
        return JSONResponse({k: (str(v) if v is not None and k.endswith("_at") else v) for k, v in row.items()})

    async def end_session(request: Request):
        """
        summary: End the session and close its peer connection (needs its token).
        parameters: [{$ref: "#/components/parameters/session_id"}]
        security: [{bearer: []}]
        responses:
          200: {description: "{session_id, ended, ingest}"}
          401: {description: missing, expired or forged token}
          403: {description: token for another session}
          404: {description: unknown session}
        """
        sid = request.path_params["session_id"]
        try:
            await session_access(request, sid, send=True)
        except LookupError:
            return error(404, "unknown session")
        summary = await sessions.finish(sid, "client")
        return JSONResponse({"session_id": sid, "ended": True, "ingest": summary})

    async def offer(request: Request):
        """
        summary: WebRTC offer/answer for the session's camera (needs the session's own token).
        description: Body {sdp, type "offer"}. A new offer for a live session replaces its peer connection
          (reconnect or ICE restart without losing the session).
        parameters: [{$ref: "#/components/parameters/session_id"}]
        security: [{bearer: []}]
        requestBody: {required: true, content: {application/json: {schema: {$ref: "#/components/schemas/Offer"}}}}
        responses:
          200: {description: "{sdp, type: answer}"}
          400: {description: malformed body or SDP}
          401: {description: missing, expired or forged token}
          403: {description: token for another session, or a clinician token}
          404: {description: unknown session}
          409: {description: the session has ended}
        """
        sid = request.path_params["session_id"]
        if not offer_limit.allow(client_of(request)):
            return too_many(offer_limit, request, "offers")
        try:
            row, claims = await session_access(request, sid, send=True)
            offer = Offer.from_json(await read_json(request))
        except LookupError:
            return error(404, "unknown session")
        except OfferError as exc:
            return error(exc.status, f"bad offer: {exc}")
        if row["ended_at"] is not None:
            return error(409, "session has ended")
        # one offer at a time per session: two concurrent offers each made a peer connection, and the one
        # replaced in ``live`` before it was registered was never closed (a leak per race)
        entry = offer_locks.setdefault(sid, [asyncio.Lock(), 0])  # [lock, offers using it]
        entry[1] += 1
        try:
            async with entry[0]:
                return await connect_peer(sid, row, offer, claims)
        finally:
            entry[1] -= 1
            if not entry[1]:
                offer_locks.pop(sid, None)

    async def connect_peer(sid: str, row: dict, offer: Offer, claims: Claims) -> JSONResponse:
        """Creates (or replaces) the session's peer connection for a checked offer; the answer."""
        try:
            earlier, elapsed_s = await res["db"].connect_session(sid)
        except LookupError:
            return error(404, "unknown session")
        first_seq = 0  # the session's frame numbers go on across connections, so no frame looks like a repeat
        if sid in live:  # a reconnecting client (or an ICE restart) replaces its old peer connection
            old = live.pop(sid)
            first_seq = old.ingest.next_seq + 1
            await old.close()
        elif earlier:  # connected before, through a gateway that restarted since or another one
            first_seq = resumed_seq(elapsed_s)
        pc = RTCPeerConnection(rtc_configuration(ice.for_session(sid)))
        on_device = row["mode"] == "device"
        if on_device:
            ingest = DeviceIngest(sid, row["reference_id"], res["keypoints"], settings.session_max_fps, first_seq)
        else:
            ingest = VideoIngest(sid, row["reference_id"], res["producer"], topics.frames,
                                 settings.frame_max_side, settings.jpeg_quality, settings.session_max_fps, first_seq)
        session = LiveSession(sid, row["reference_id"], pc, ingest, row["patient_id"], claims.credential_id)

        wire(session, on_device, fanout, reply_error, is_current=lambda: live.get(sid) is session)
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
        try:
            _, claims = await session_access(ws, sid, send=False)
        except AuthError as exc:
            await ws.close(code=exc.ws_code, reason=str(exc)[:120])
            return
        except LookupError:
            await ws.close(code=4404, reason="unknown session")
            return
        client = client_of(ws)
        if not ws_limit.acquire(client):
            await ws.close(code=4429, reason=f"more than {ws_limit.limit} open subscriptions from this client")
            return
        try:
            await streams.push(ws, sid, claims)
        finally:
            ws_limit.release(client)

    async def index(request: Request):
        return FileResponse(STATIC / "index.html")

    vendor = settings.state_dir / "vendor" / "pose"
    routes = [
        Route("/", index, include_in_schema=False),
        Mount("/app", StaticFiles(directory=STATIC), name="app"),
        Mount("/vendor/pose", StaticFiles(directory=vendor, check_dir=False), name="vendor-pose"),
        Route("/health", health),
        Route("/openapi.json", openapi, include_in_schema=False),
        Route("/metrics", prometheus, include_in_schema=False),
        *references.routes(),
        Route("/tokens/clinician", clinician_token, methods=["POST"]),
        Route("/sessions", create_session, methods=["POST"]),
        Route("/sessions/{session_id}", get_session, methods=["GET"]),
        Route("/sessions/{session_id}", end_session, methods=["DELETE"]),
        Route("/sessions/{session_id}/offer", offer, methods=["POST"]),
        Route("/sessions/{session_id}/token", refresh_token, methods=["POST"]),
        WebSocketRoute("/sessions/{session_id}/scores", scores_ws),
        *accounts.routes(),
    ]

    async def refusal(request, exc: AuthError | OfferError) -> JSONResponse:
        """Every refusal a route raises (auth: 401/403/503; a bad body: 400/413/422) as ``{"error": ...}``."""
        return error(exc.status, str(exc))

    throttle = Middleware(ErrorThrottle, limit=error_limit,
                          on_throttled=lambda: metrics.DROPPED.labels("gateway", "limit_errors").inc())
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[throttle],
                    exception_handlers={AuthError: refusal, OfferError: refusal})
    app.state.live = live
    app.state.fanout = fanout
    app.state.signer = signer
    app.state.accounts = accounts
    app.state.resources = res
    return app
