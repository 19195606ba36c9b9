"""The session routes: start a session, its WebRTC offer, a fresh token, read and end it, its score
WebSocket, and clinician tokens to watch a patient's sessions (gateway/app.py mounts them; who may
do what: gateway/auth.py and ``Accounts``). Per-client limits (gateway/limits.py) guard the costly
ones: session creation, offers, open WebSockets."""
from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from gateway.accounts import Accounts
from gateway.auth import AuthError, Claims, TokenSigner, bearer
from gateway.device_ingest import MODE_ALIASES
from gateway.fanout import ScoreFanout
from gateway.http import NotFound, error, read_json
from gateway.limits import ConcurrencyLimit, RateLimit, client_of
from gateway.offer import Offer, OfferError
from gateway.peer import PeerConnector
from gateway.references import References
from gateway.resources import Resources
from gateway.sessions import LiveSessions
from gateway.streams import ScoreStreams
from gateway.turn import IceServers
from rehab.adapters import metrics
from rehab.reference import _ID as ID_PATTERN
from rehab.settings import Settings


class SessionRoutes:
    def __init__(self, settings: Settings, res: Resources, sessions: LiveSessions, fanout: ScoreFanout,
                 signer: TokenSigner, accounts: Accounts, references: References, ice: IceServers,
                 streams: ScoreStreams):
        """``res``: the gateway's resources (its database, producers, keypoint publisher), opened by its
        lifespan; ``sessions``: the live-session registry (``live``: session id -> LiveSession)."""
        self.settings, self.res, self.sessions, self.live = settings, res, sessions, sessions.live
        self.fanout, self.signer, self.accounts, self.references = fanout, signer, accounts, references
        self.ice, self.streams = ice, streams
        self.session_limit = RateLimit(settings.client_sessions_per_min)
        self.offer_limit = RateLimit(settings.client_offers_per_min)
        self.ws_limit = ConcurrencyLimit(settings.client_max_websockets)
        self.peers = PeerConnector(settings, res, sessions.live, fanout, ice)

    def routes(self) -> list:
        return [
            Route("/tokens/clinician", self.clinician_token, methods=["POST"]),
            Route("/sessions", self.create_session, methods=["POST"]),
            Route("/sessions/{session_id}", self.get_session, methods=["GET"]),
            Route("/sessions/{session_id}", self.end_session, methods=["DELETE"]),
            Route("/sessions/{session_id}/offer", self.offer, methods=["POST"]),
            Route("/sessions/{session_id}/token", self.refresh_token, methods=["POST"]),
            WebSocketRoute("/sessions/{session_id}/scores", self.scores_ws),
        ]

    def too_many(self, limit: RateLimit, request: Request, what: str) -> JSONResponse:
        metrics.DROPPED.labels("gateway", f"limit_{what}").inc()
        retry = limit.retry_after_s(client_of(request))
        return JSONResponse({"error": f"too many {what} from this client: retry in {retry} s"}, status_code=429,
                            headers={"Retry-After": str(retry)})

    async def checked_json(self, request: Request, check):
        """The JSON body once ``check(request)`` passed (AuthError, OfferError: refusals the app's exception
        handlers answer)."""
        check(request)
        return await read_json(request)

    async def session_access(self, conn, sid: str, send: bool) -> tuple[dict, Claims]:
        """The session row and the caller's claims; AuthError / NotFound otherwise (refusals the app
        answers: 401/403/404)."""
        claims = await self.accounts.authorize(conn)
        row = await self.res.db.get_session(sid)
        if row is None:
            # a valid token for another session learns nothing about which ids exist
            if claims.role == "patient" and claims.session_id != sid:
                raise AuthError(403, "this token is not for this session")
            raise NotFound("unknown session")
        allowed = claims.may_send(sid) if send else await self.accounts.may_watch(claims, sid, row["patient_id"])
        if not allowed:
            raise AuthError(403, "this token is not for this session" if claims.role == "patient"
                            else "clinician tokens may watch a patient's sessions, not send to them")
        return row, claims

    async def clinician_token(self, request: Request):
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
        body = await self.checked_json(request, self.accounts.admin)
        ids = [body.get(k) if isinstance(body, dict) else None for k in ("clinician_id", "patient_id")]
        if not all(isinstance(i, str) and ID_PATTERN.match(i) for i in ids):
            return error(422, "body must be {clinician_id, patient_id}, each 1-64 letters, digits, '_', '.', '-'")
        token, expires = self.signer.issue("clinician", ids[1], subject=ids[0])
        return JSONResponse({"token": token, "expires_at": expires, "patient_id": ids[1]}, status_code=201)

    async def create_session(self, request: Request):
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
        if not self.session_limit.allow(client_of(request)):
            return self.too_many(self.session_limit, request, "sessions")
        body = await self.checked_json(request, self.accounts.check_origin)
        claims = None
        try:
            if bearer(request.headers) is not None or not self.settings.demo_mode:
                claims = await self.accounts.authorize(request)
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
        ref = await self.res.db.get_reference(body["reference_id"])
        if ref is None or (claims is not None and
                           not await self.references.visible(await self.accounts.scope_of(claims), ref.id)):
            return error(404, f"unknown reference {body['reference_id']!r}")
        session_id = uuid.uuid4().hex
        ice_servers = self.ice.for_session(session_id)
        await self.res.db.create_session(session_id, patient, ref.id, mode)
        token, expires = self.signer.issue("patient", patient, session_id,
                                      credential_id=None if claims is None else claims.credential_id)
        return JSONResponse({"session_id": session_id, "token": token, "expires_at": expires,
                             "expires_in_s": self.settings.token_ttl_s, "reference_id": ref.id, "patient_id": patient,
                             "mode": mode, "ice_servers": ice_servers}, status_code=201)

    async def refresh_token(self, request: Request):
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
        row, claims = await self.session_access(request, sid, send=True)
        if row["ended_at"] is not None:
            return error(409, "session has ended")
        token, expires = self.signer.issue("patient", row["patient_id"], sid, credential_id=claims.credential_id)
        return JSONResponse({"session_id": sid, "token": token, "expires_at": expires,
                             "expires_in_s": self.settings.token_ttl_s, "ice_servers": self.ice.for_session(sid)})

    async def get_session(self, request: Request):
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
        row, _ = await self.session_access(request, request.path_params["session_id"], send=False)
        return JSONResponse({k: (str(v) if v is not None and k.endswith("_at") else v) for k, v in row.items()})

    async def end_session(self, request: Request):
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
        await self.session_access(request, sid, send=True)
        summary = await self.sessions.finish(sid, "client")
        return JSONResponse({"session_id": sid, "ended": True, "ingest": summary})

    async def offer(self, request: Request):
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
        if not self.offer_limit.allow(client_of(request)):
            return self.too_many(self.offer_limit, request, "offers")
        row, claims = await self.session_access(request, sid, send=True)
        try:
            offer = Offer.from_json(await read_json(request))
        except OfferError as exc:
            return error(exc.status, f"bad offer: {exc}")
        if row["ended_at"] is not None:
            return error(409, "session has ended")
        return await self.peers.connect(sid, row, offer, claims)

    async def scores_ws(self, ws: WebSocket):
        sid = ws.path_params["session_id"]
        await ws.accept()  # accept first, so the refusal carries a close code and a reason
        try:
            _, claims = await self.session_access(ws, sid, send=False)
        except AuthError as exc:
            await ws.close(code=exc.ws_code, reason=str(exc)[:120])
            return
        except NotFound:
            await ws.close(code=4404, reason="unknown session")
            return
        client = client_of(ws)
        if not self.ws_limit.acquire(client):
            await ws.close(code=4429, reason=f"more than {self.ws_limit.limit} open subscriptions from this client")
            return
        try:
            await self.streams.push(ws, sid, claims)
        finally:
            self.ws_limit.release(client)
