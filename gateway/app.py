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
Modules: the guide routes gateway/references.py, the account routes gateway/accounts.py, the session
routes (and clinician tokens, per-client limits) gateway/session_routes.py, a live
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
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import JSONResponse, Response
from starlette.responses import FileResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.schemas import SchemaGenerator

from gateway import sctp
from gateway.accounts import ACCOUNT_SCHEMAS, Accounts
from gateway.auth import AuthError, TokenSigner
from gateway.device_ingest import KeypointPublisher
from gateway.fanout import ScoreFanout
from gateway.http import error
from gateway.jitter import install as install_marker_jitter_buffer
from gateway.limits import ErrorThrottle, RateLimit
from gateway.offer import OfferError
from gateway.references import References
from gateway.session_routes import SessionRoutes
from gateway.sessions import LiveSessions
from gateway.streams import ScoreStreams
from gateway.turn import IceServers
from gateway.uploads import Extractor
from rehab import metrics
from rehab.reference import _ID as ID_PATTERN
from rehab.settings import Settings
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

    error_limit = RateLimit(settings.client_errors_per_min)  # per client (gateway/limits.py)
    session_routes = SessionRoutes(settings, res, sessions, fanout, signer, accounts, references, ice, streams)

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
        *session_routes.routes(),
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
