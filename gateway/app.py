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
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.schemas import SchemaGenerator
from starlette.staticfiles import StaticFiles

from rehab.adapters.webrtc import sctp
from gateway.accounts import ACCOUNT_SCHEMAS, Accounts
from gateway.auth import AuthError, TokenSigner
from gateway.fanout import ScoreFanout
from gateway.http import NotFound, error
from rehab.adapters.webrtc.jitter import install as install_marker_jitter_buffer
from gateway.limits import ErrorThrottle, RateLimit
from gateway.offer import OfferError
from gateway.references import References
from gateway.resources import Resources
from gateway.revocations import Revocations
from gateway.session_routes import SessionRoutes
from gateway.sessions import LiveSessions
from gateway.streams import ScoreStreams
from gateway.turn import IceServers
from rehab.adapters import metrics
from rehab.reference import _ID as ID_PATTERN
from rehab.settings import Settings
from rehab.adapters.storage.identity import Identity

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


def create_app(settings: Settings, make_backend=None) -> Starlette:
    """The gateway's one composition root: its parts built from ``settings``, its resources opened and
    closed by the lifespan. ``make_backend()`` builds the pose backend for uploads (default: the
    configured one)."""
    sctp.install()  # delayed SACKs on data channels (rehab/adapters/webrtc/sctp.py)
    res = Resources(settings, make_backend or (lambda: _default_backend(settings)))
    sessions = LiveSessions(settings.session_idle_s, lambda: res.db)
    # STUN/TURN from REHAB_ICE_SERVERS (and a TURN server with per-session credentials, REHAB_TURN_*), none
    # by default: aiortc would otherwise ask Google's public STUN server on every offer (a public server
    # contacted, and a delay where it cannot be reached)
    ice = IceServers(settings.ice_server_list, settings.turn_url_list, settings.turn_secret, settings.turn_ttl_s)
    fanout = ScoreFanout(open_keypoints=lambda: res.tail(settings.topics.keypoints))
    signer = TokenSigner(settings.auth_secret, ttl_s=settings.token_ttl_s)
    _warn_about(settings)
    streams = ScoreStreams(fanout, signer.clock)
    revocations = Revocations(streams, sessions)
    accounts = Accounts(settings, signer, on_revoked=revocations.close_revoked)
    references = References(settings, accounts, res)
    session_routes = SessionRoutes(settings, res, sessions, fanout, signer, accounts, references, ice, streams)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await res.open()
        accounts.identity = Identity(res.db)
        tasks = [asyncio.create_task(job) for job in (
            fanout.run(res.scores), sessions.reap(), revocations.watch(lambda: accounts.identity))]
        try:
            yield
        finally:
            for task in tasks[1:]:
                task.cancel()
            await sessions.close_all()
            tasks[0].cancel()
            await fanout.close()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await tasks[0]
            await res.close()

    metrics.SESSIONS.labels("gateway").set_function(lambda: len(sessions.live))
    metrics.SUBSCRIBERS.set_function(lambda: sum(len(v) for v in fanout.subscribers.values()))
    metrics.DEVICE_QUEUE.set_function(res.device_queue)
    routes = [*_service_routes(settings, sessions), *references.routes(), *session_routes.routes(),
              *accounts.routes()]
    throttle = Middleware(ErrorThrottle, limit=RateLimit(settings.client_errors_per_min),  # per client
                          on_throttled=lambda: metrics.DROPPED.labels("gateway", "limit_errors").inc())
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[throttle],
                    exception_handlers={AuthError: _refusal, OfferError: _refusal, NotFound: _refusal})
    app.state.live = sessions.live
    app.state.fanout = fanout
    app.state.signer = signer
    app.state.accounts = accounts
    app.state.resources = res
    return app


async def _refusal(request, exc: AuthError | OfferError | NotFound) -> JSONResponse:
    """Every refusal a route raises (auth: 401/403/503; a bad body: 400/413/422; unknown: 404) as
    ``{"error": ...}``."""
    return error(exc.status, str(exc))


def _default_backend(settings: Settings):
    from edge.backends import backend_from_settings

    return backend_from_settings(settings)


def _warn_about(settings: Settings) -> None:
    if not settings.auth_secret:
        log.warning("REHAB_AUTH_SECRET is not set: tokens are signed with a random key and die with this process")
    if settings.demo_mode:
        log.warning("REHAB_DEMO_MODE is on: anyone who reaches this gateway may start sessions for any patient")


def _service_routes(settings: Settings, sessions: LiveSessions) -> list:
    """The app, its vendored pose models, health, metrics and the OpenAPI schema."""
    schemas = SchemaGenerator({"openapi": "3.0.0", "info": {"title": "ReHab Live gateway", "version": "1.0.0"},
                               "components": OPENAPI_COMPONENTS})

    async def health(request: Request):
        """
        responses:
          200: {description: "{status: ok, live_sessions: N}"}
        """
        return JSONResponse({"status": "ok", "live_sessions": len(sessions.live)})

    async def prometheus(request: Request):
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request):
        schema = schemas.get_schema(routes=request.app.routes)
        return JSONResponse(json.loads(json.dumps(schema, default=str)))  # YAML's int status keys -> strings

    async def index(request: Request):
        return FileResponse(STATIC / "index.html")

    return [
        Route("/", index, include_in_schema=False),
        Mount("/app", StaticFiles(directory=STATIC), name="app"),
        Mount("/vendor/pose", StaticFiles(directory=settings.state_dir / "vendor" / "pose", check_dir=False),
              name="vendor-pose"),
        Route("/health", health),
        Route("/openapi.json", openapi, include_in_schema=False),
        Route("/metrics", prometheus, include_in_schema=False),
    ]
