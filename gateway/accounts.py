"""Enrolment, invitations, credentials, logout and patient removal: the gateway's account routes.

  POST   /clinicians                      [API key] {clinician_id} -> a clinician credential (shown once)
  POST   /tokens                          {credential} -> a token (patient or clinician, REHAB_TOKEN_TTL_S)
  POST   /patients                        [API key | clinician token] {patient_id} -> an invitation code + link
  POST   /invitations/accept              {code} -> {patient_id, credential}, once per code
  POST   /logout                          [token] revokes the credential the token came from
  GET    /patients/{id}/sessions          [API key | the patient's token | their clinician's token]
  DELETE /patients/{id}                   [API key | their clinician's token] removes the patient
  POST   /patients/{id}/erase             [API key | their clinician's token] erases everything of theirs

Who may do what, and how revocation reaches open WebSockets and live sessions: gateway/auth.py.
The rows behind it: rehab/adapters/storage/identity.py.
"""
from __future__ import annotations

from typing import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.auth import AuthError, Claims, TokenSigner, bearer, check_api_key, origin_allowed
from gateway.http import error, read_json
from gateway.offer import OfferError
from rehab.reference import _ID as ID_PATTERN
from rehab.settings import Settings
from rehab.adapters.storage.identity import Conflict, Gone, Identity

MAX_SECRET_CHARS = 200  # credentials and invitation codes are far shorter: longer input is not one

ACCOUNT_SCHEMAS = {
    "NewClinician": {"type": "object", "required": ["clinician_id"], "additionalProperties": False,
                     "properties": {"clinician_id": {"type": "string", "pattern": ID_PATTERN.pattern}}},
    "NewPatient": {"type": "object", "required": ["patient_id"], "additionalProperties": False,
                   "properties": {"patient_id": {"type": "string", "pattern": ID_PATTERN.pattern}}},
    "Credential": {"type": "object", "required": ["credential"], "additionalProperties": False,
                   "properties": {"credential": {"type": "string", "maxLength": MAX_SECRET_CHARS}}},
    "Invitation": {"type": "object", "required": ["code"], "additionalProperties": False,
                   "properties": {"code": {"type": "string", "maxLength": MAX_SECRET_CHARS}}},
}


class BadBody(OfferError):
    """A body that is JSON but not what the route takes (the gateway answers refusals: gateway/app.py)."""

    status = 422


def field(body, name: str, pattern=None) -> str:
    """``body[name]``, a string (matching ``pattern``), from a JSON object with no other fields."""
    if not isinstance(body, dict) or set(body) != {name} or not isinstance(body[name], str):
        raise BadBody(f"body must be a JSON object with exactly one string field {name!r}")
    value = body[name]
    if pattern is not None and not pattern.match(value):
        raise BadBody(f"{name} must be 1-64 letters, digits, '_', '.', '-'")
    if not value or len(value) > MAX_SECRET_CHARS:
        raise BadBody(f"{name} must be 1-{MAX_SECRET_CHARS} characters")
    return value


class Accounts:
    """The account routes and the checks the gateway's other routes share (``authorize``).
    ``on_revoked(credential_ids, patient_ids)`` closes what a revocation in this gateway ended at once
    (other gateways find it by polling ``Identity.changes_since``)."""

    def __init__(self, settings: Settings, signer: TokenSigner,
                 on_revoked: Callable[[set, set], Awaitable[None]]):
        self.settings, self.signer, self.on_revoked = settings, signer, on_revoked
        self.identity: Identity | None = None  # set when the gateway's database pool is open

    # -- checks -----------------------------------------------------------------------------
    def check_origin(self, conn) -> None:
        if not origin_allowed(conn.headers.get("origin"), conn.headers.get("host"), conn.url.scheme,
                              self.settings.origins):
            raise AuthError(403, f"origin {conn.headers.get('origin')!r} is not allowed")

    async def authorize(self, conn) -> Claims:
        """The caller's claims: a valid token whose credential is not revoked and whose patient is not removed."""
        self.check_origin(conn)
        claims = self.signer.verify(bearer(conn.headers, conn.query_params))
        if await self.identity.revoked(claims.credential_id, claims.patient_id):
            raise AuthError(401, "the token was revoked (logged out, or the patient was removed)")
        return claims

    def admin(self, request: Request) -> None:
        self.check_origin(request)
        check_api_key(self.settings.admin_api_key, request.headers)

    async def staff(self, request: Request) -> tuple[str, str | None]:
        """(actor, clinician id) of an admin (API key; clinician None) or a clinician's own token."""
        if request.headers.get("x-api-key"):
            self.admin(request)
            return "admin", None
        claims = await self.authorize(request)
        if not claims.is_clinician_account:
            raise AuthError(403, "only a clinician's own token or the admin API key may do this")
        return f"clinician:{claims.subject}", claims.subject

    async def reference_scope(self, request: Request) -> set | None:
        """Whose guides the caller may see: None for all (demo mode, the admin API key), else a set of
        clinician ids with None for the clinic's shared guides: a clinician's own, a patient's clinician's."""
        if self.settings.demo_mode and not bearer(request.headers):
            self.check_origin(request)
            return None
        if request.headers.get("x-api-key"):
            self.admin(request)
            return None
        return await self.scope_of(await self.authorize(request))

    async def scope_of(self, claims: Claims) -> set:
        """Whose guides a token may see: the clinic's shared ones (None) and its clinician's."""
        return {None, claims.subject if claims.is_clinician_account else await self.clinician_of(claims.patient_id)}

    async def clinician_of(self, patient_id: str) -> str | None:
        return (await self.identity.patient(patient_id) or {}).get("clinician_id")

    async def may_watch(self, claims: Claims, session_id: str, patient_id: str) -> bool:
        clinician = await self.clinician_of(patient_id) if claims.is_clinician_account else None
        return claims.may_watch(session_id, patient_id, clinician)

    # -- routes -----------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        return [
            Route("/clinicians", self.add_clinician, methods=["POST"]),
            Route("/tokens", self.token, methods=["POST"]),
            Route("/patients", self.enrol, methods=["POST"]),
            Route("/invitations/accept", self.accept, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/patients/{patient_id}/sessions", self.sessions, methods=["GET"]),
            Route("/patients/{patient_id}", self.remove, methods=["DELETE"]),
            Route("/patients/{patient_id}/erase", self.erase, methods=["POST"]),
        ]

    async def add_clinician(self, request: Request):
        """
        summary: A new credential for a clinician (shown once; exchange it at POST /tokens).
        description: Needs the admin API key. A clinician may hold several credentials (one per device);
          each is revoked on its own (POST /logout with a token from it).
        security: [{api_key: []}]
        requestBody: {required: true, content: {application/json: {schema: {$ref: "#/components/schemas/NewClinician"}}}}
        responses:
          201: {description: "{clinician_id, credential}"}
          401: {description: no API key}
          403: {description: wrong API key}
          422: {description: bad body}
        """
        self.admin(request)
        clinician = field(await read_json(request), "clinician_id", ID_PATTERN)
        credential = await self.identity.new_credential("clinician", clinician)
        await self.identity.audit("admin", "clinician_credential_issued", None, clinician_id=clinician,
                                  credential_id=credential.partition(".")[0])
        return JSONResponse({"clinician_id": clinician, "credential": credential}, status_code=201)

    async def token(self, request: Request):
        """
        summary: A token for a patient's or a clinician's credential.
        description: Body {credential}. A patient token creates that patient's sessions and reads them; a
          clinician token enrols patients and watches the sessions of those they enrolled. Ask again
          before it expires (expires_in_s).
        requestBody: {required: true, content: {application/json: {schema: {$ref: "#/components/schemas/Credential"}}}}
        responses:
          201: {description: "{token, expires_at, expires_in_s, role, patient_id | clinician_id}"}
          401: {description: unknown, wrong or revoked credential}
          422: {description: bad body}
        """
        self.check_origin(request)
        credential = field(await read_json(request), "credential")
        try:
            kind, subject, cid = await self.identity.check_credential(credential)
        except LookupError:
            raise AuthError(401, "unknown, wrong or revoked credential") from None
        patient = subject if kind == "patient" else None
        token, expires = self.signer.issue(kind, patient, subject=subject, credential_id=cid)
        who = {"patient_id": subject} if kind == "patient" else {"clinician_id": subject}
        return JSONResponse({"token": token, "expires_at": expires, "expires_in_s": self.settings.token_ttl_s,
                             "role": kind, **who}, status_code=201)

    async def enrol(self, request: Request):
        """
        summary: Enrol a patient (or invite one of yours again) and get a single-use invitation.
        description: Needs the admin API key or a clinician's own token (the patient is then theirs).
          The patient opens invitation_url (the browser app) or enters invitation_code in their app,
          within REHAB_INVITATION_TTL_S.
        security: [{api_key: []}, {bearer: []}]
        requestBody: {required: true, content: {application/json: {schema: {$ref: "#/components/schemas/NewPatient"}}}}
        responses:
          201: {description: "{patient_id, invitation_code, invitation_url, expires_in_s}"}
          401: {description: no or a revoked token / API key}
          403: {description: not a clinician's own token}
          409: {description: the patient belongs to another clinician, or was removed}
          422: {description: bad body}
        """
        actor, clinician = await self.staff(request)
        patient = field(await read_json(request), "patient_id", ID_PATTERN)
        try:
            code, ttl = await self.identity.enrol(patient, clinician, actor, self.settings.invitation_ttl_s)
        except Conflict as exc:
            return error(409, str(exc))
        url = f"{str(request.base_url).rstrip('/')}/?invite={code}"
        return JSONResponse({"patient_id": patient, "invitation_code": code, "invitation_url": url,
                             "expires_in_s": ttl}, status_code=201)

    async def accept(self, request: Request):
        """
        summary: Exchange an invitation code for the patient's credential (once per code).
        description: The app keeps the credential (it is shown once) and exchanges it at POST /tokens.
        requestBody: {required: true, content: {application/json: {schema: {$ref: "#/components/schemas/Invitation"}}}}
        responses:
          201: {description: "{patient_id, credential}"}
          404: {description: unknown code}
          410: {description: the code was used or has expired, or the patient was removed}
          422: {description: bad body}
        """
        self.check_origin(request)
        code = field(await read_json(request), "code")
        try:
            patient, credential = await self.identity.accept(code)
        except LookupError as exc:
            return error(404, str(exc))
        except Gone as exc:
            return error(410, str(exc))
        return JSONResponse({"patient_id": patient, "credential": credential}, status_code=201)

    async def logout(self, request: Request):
        """
        summary: Revoke the credential this token came from (and with it every token from it).
        description: Its open WebSockets close (4401) and its live sessions end, in every gateway within
          a few seconds.
        security: [{bearer: []}]
        responses:
          200: {description: "{revoked: true}"}
          400: {description: the token has no credential (a demo session's, or one an admin issued)}
          401: {description: missing, expired, forged or already revoked token}
        """
        claims = await self.authorize(request)
        if claims.credential_id is None:
            return error(400, "this token comes from no credential (a demo session or an admin-issued token): "
                              "it simply expires")
        actor = f"{'patient' if claims.role == 'patient' else 'clinician'}:{claims.subject}"
        await self.identity.revoke_credential(claims.credential_id, actor)
        await self.on_revoked({claims.credential_id}, set())
        return JSONResponse({"revoked": True})

    async def _patient_for_staff(self, request: Request) -> tuple[str, str, dict | None]:
        """(actor, patient id, the patient's row) for an admin or the clinician who enrolled the patient;
        LookupError: a clinician asking for an unknown patient (an admin gets row None)."""
        actor, clinician = await self.staff(request)
        patient = request.path_params["patient_id"]
        row = await self.identity.patient(patient)
        if clinician is not None and row is None:
            raise LookupError("unknown patient")
        if clinician is not None and row["clinician_id"] != clinician:
            raise AuthError(403, "this patient was enrolled by another clinician")
        return actor, patient, row

    async def remove(self, request: Request):
        """
        summary: Remove a patient (their credentials are revoked, their live sessions end).
        description: Needs the admin API key or the token of the clinician who enrolled them. Their
          recorded sessions and scores stay (erasure is a separate operation).
        security: [{api_key: []}, {bearer: []}]
        parameters: [{name: patient_id, in: path, required: true, schema: {type: string}}]
        responses:
          200: {description: "{patient_id, removed: true}"}
          401: {description: no token or API key}
          403: {description: another clinician's patient}
          404: {description: unknown patient}
          409: {description: removed before}
        """
        try:
            actor, _, row = await self._patient_for_staff(request)
        except LookupError:
            row = None
        if row is None:
            return error(404, "unknown patient")
        if not await self.identity.remove(row["patient_id"], actor):
            return error(409, "this patient was removed before")
        await self.on_revoked(set(), {row["patient_id"]})
        return JSONResponse({"patient_id": row["patient_id"], "removed": True})

    async def sessions(self, request: Request):
        """
        summary: A patient's sessions (the patient's own token, their clinician's, or the admin API key).
        security: [{api_key: []}, {bearer: []}]
        parameters: [{name: patient_id, in: path, required: true, schema: {type: string}}]
        responses:
          200: {description: "[{session_id, reference_id, mode, started_at, ended_at}]"}
          401: {description: no, expired or revoked token}
          403: {description: another patient's token, or another clinician's}
        """
        patient = request.path_params["patient_id"]
        if request.headers.get("x-api-key"):
            self.admin(request)
        else:
            claims = await self.authorize(request)
            if claims.session_id is not None or not await self.may_watch(claims, "", patient):
                raise AuthError(403, "this token may not read this patient's sessions")
        return JSONResponse(await self.identity.sessions_of(patient))

    async def erase(self, request: Request):
        """
        summary: Erase a patient (rows, their sessions' records in the topics, the processor's state).
        description: Needs the admin API key or the token of the clinician who enrolled them (a patient
          known only from demo-mode sessions, the admin API key). Takes a few seconds (rehab/ops/erasure.py
          QUIESCE_S) and cannot be undone; an audit log entry records it. Same as `rehab patient erase`.
        security: [{api_key: []}, {bearer: []}]
        parameters: [{name: patient_id, in: path, required: true, schema: {type: string}}]
        responses:
          200: {description: "{patient_id, sessions, tombstones, rows_deleted}"}
          401: {description: no token or API key}
          403: {description: another clinician's patient}
          404: {description: nothing stored of this patient}
        """
        from rehab.ops.erasure import erase_patient

        try:
            actor, patient, _ = await self._patient_for_staff(request)
        except LookupError:
            return error(404, "unknown patient")
        try:
            report = await erase_patient(self.settings, patient, actor,
                                         on_removed=lambda: self.on_revoked(set(), {patient}))
        except LookupError as exc:
            return error(404, str(exc))
        return JSONResponse(report.as_dict())
