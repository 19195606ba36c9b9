"""Who may do what at the gateway.

* **Admin API key** (``REHAB_ADMIN_API_KEY``): references (upload, delete), scoring uploads, clinician
  credentials, enrolling and removing any patient. With no key configured those operations are
  switched off (503), never open.
* **Clinician credential** (``POST /clinicians``, admin): exchanged at ``POST /tokens`` for a clinician
  token (no patient in it): enrols patients (``POST /patients`` -> an invitation code and link), watches
  and reads the sessions of the patients they enrolled, removes them. An admin may also issue a
  clinician token for one patient (``POST /tokens/clinician``).
* **Patient credential**: the patient's app exchanges the invitation code for it, once
  (``POST /invitations/accept``), then for a patient token at ``POST /tokens``. Only a patient token
  creates sessions for its patient (``POST /sessions``) and reads that patient's sessions.
* **Session tokens** (role ``patient`` with a session id): returned by ``POST /sessions``, bound to that
  one session: its WebRTC offer, its score WebSocket, its token refresh and ending it.
* **Demo mode** (``REHAB_DEMO_MODE=true``, the local main job and the test suite only): sessions may be
  created without a token for any patient id, and the references read by anyone.
* **Revocation**: tokens carry the credential they came from (``cid``). ``POST /logout`` revokes it,
  removing a patient revokes all of theirs; a revoked credential's tokens are refused at once, and each
  gateway closes their WebSockets and ends their live sessions within ``REVOCATION_POLL_S``. A WebSocket
  is also closed (4401) when its token expires: the app reconnects with its refreshed token.
* **Origin**: a browser request's Origin must be the gateway's own or one of ``REHAB_ALLOWED_ORIGINS``;
  requests without an Origin (native apps, curl) pass this check and still need their token.

Tokens are ``base64url(claims JSON) "." base64url(HMAC-SHA256)`` with the gateway's secret
(``REHAB_AUTH_SECRET``; a random one per process when unset, so tokens die with the process).
Failures raise ``AuthError`` with the HTTP status (401: missing/expired/forged/revoked, 403: valid but
not for this) and the WebSocket close code (4401 / 4403) that the gateway answers with.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

ROLES = ("patient", "clinician")


class AuthError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status

    @property
    def ws_code(self) -> int:
        return 4000 + self.status  # 4401 / 4403


@dataclass(frozen=True)
class Claims:
    role: str
    patient_id: str
    session_id: str | None  # patient tokens: the one session
    expires_at: float
    subject: str  # who holds it: the patient, or the clinician's id
    credential_id: str | None = None  # the credential it came from (revocable); None: demo or admin-issued

    @property
    def is_clinician_account(self) -> bool:
        """A clinician's own token (from their credential): for every patient they enrolled."""
        return self.role == "clinician" and self.patient_id is None

    @property
    def is_patient_account(self) -> bool:
        """A patient's own token (from their credential): creates and reads their sessions."""
        return self.role == "patient" and self.session_id is None

    def may_watch(self, session_id: str, patient_id: str, clinician_of: str | None = None) -> bool:
        """``clinician_of``: who enrolled the session's patient (needed for clinician account tokens)."""
        if self.role == "patient":
            return self.session_id == session_id or (self.is_patient_account and self.patient_id == patient_id)
        if self.is_clinician_account:
            return clinician_of is not None and clinician_of == self.subject
        return self.patient_id == patient_id

    def may_send(self, session_id: str) -> bool:
        return self.role == "patient" and self.session_id == session_id


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    def __init__(self, secret: str | bytes | None, ttl_s: float = 900.0, clock=time.time):
        if not secret:
            secret = secrets.token_bytes(32)
        self.key = secret.encode() if isinstance(secret, str) else secret
        self.ttl_s, self.clock = ttl_s, clock

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self.key, body.encode(), hashlib.sha256).digest())

    def issue(self, role: str, patient_id: str | None, session_id: str | None = None, subject: str | None = None,
              ttl_s: float | None = None, credential_id: str | None = None) -> tuple[str, float]:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        if patient_id is None and role != "clinician":
            raise ValueError("only a clinician's own token has no patient")
        expires = self.clock() + (self.ttl_s if ttl_s is None else ttl_s)
        claims = {"role": role, "pid": patient_id, "sid": session_id, "exp": round(expires, 3),
                  "sub": subject or patient_id}
        if credential_id is not None:
            claims["cid"] = credential_id
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{body}.{self._mac(body)}", expires

    def verify(self, token: str | None) -> Claims:
        if not token:
            raise AuthError(401, "a token is required (Authorization: Bearer TOKEN, or ?token= on the WebSocket)")
        body, _, mac = token.partition(".")
        # compared as bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500)
        if not body or not mac or not hmac.compare_digest(mac.encode("utf-8", "surrogateescape"),
                                                          self._mac(body).encode()):
            raise AuthError(401, "the token is not valid (forged, truncated or from another gateway)")
        try:
            c = json.loads(_unb64(body))
            claims = Claims(c["role"], c["pid"], c["sid"], float(c["exp"]), c["sub"], c.get("cid"))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise AuthError(401, "the token is not valid (unreadable claims)") from None
        if claims.role not in ROLES:
            raise AuthError(401, "the token is not valid (unknown role)")
        if claims.expires_at <= self.clock():
            raise AuthError(401, "the token has expired: get a fresh one (POST /tokens, or the session's refresh)")
        return claims


def bearer(headers, query_params=None) -> str | None:
    """The token from ``Authorization: Bearer``, else from ``?token=`` (browsers cannot set headers
    on a WebSocket)."""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    if query_params is not None:
        return query_params.get("token") or None
    return None


def check_api_key(configured: str, headers) -> None:
    if not configured:
        raise AuthError(503, "admin operations are switched off: set REHAB_ADMIN_API_KEY on the gateway")
    given = headers.get("x-api-key") or bearer(headers)
    if not given:
        raise AuthError(401, "this operation needs the admin API key (X-API-Key header)")
    if not hmac.compare_digest(given.encode(), configured.encode()):
        raise AuthError(403, "wrong API key")


def origin_allowed(origin: str | None, host: str | None, scheme: str, allowed: tuple[str, ...]) -> bool:
    """No Origin (not a browser): allowed. Otherwise the gateway's own origin or a configured one."""
    if origin is None:
        return True
    origin = origin.rstrip("/")
    if "*" in allowed or origin in allowed:
        return True
    own_scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    return host is not None and origin == f"{own_scheme}://{host}"
