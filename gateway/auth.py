"""Who may do what at the gateway.

* **Session tokens** (role ``patient``): returned by ``POST /sessions``, bound to that one session;
  needed for its WebRTC offer, its score WebSocket and ending it. Short-lived (``REHAB_TOKEN_TTL_S``).
* **Clinician tokens** (role ``clinician``): issued with the admin API key by ``POST /tokens/clinician``
  for one patient; they may watch (WebSocket) and read any session of that patient, never send video.
* **Admin API key** (``REHAB_ADMIN_API_KEY``): references (upload, delete), scoring uploads,
  clinician tokens. With no key configured those operations are switched off (503), never open.
* **Origin**: a browser request's Origin must be the gateway's own or one of ``REHAB_ALLOWED_ORIGINS``;
  requests without an Origin (native apps, curl) pass this check and still need their token.

Tokens are ``base64url(claims JSON) "." base64url(HMAC-SHA256)`` with the gateway's secret
(``REHAB_AUTH_SECRET``; a random one per process when unset, so tokens die with the process).
Failures raise ``AuthError`` with the HTTP status (401: missing/expired/forged, 403: valid but not for
this) and the WebSocket close code (4401 / 4403) that the gateway answers with.
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

    def may_watch(self, session_id: str, patient_id: str) -> bool:
        if self.role == "patient":
            return self.session_id == session_id
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

    def issue(self, role: str, patient_id: str, session_id: str | None = None, subject: str | None = None,
              ttl_s: float | None = None) -> tuple[str, float]:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        expires = self.clock() + (self.ttl_s if ttl_s is None else ttl_s)
        claims = {"role": role, "pid": patient_id, "sid": session_id, "exp": round(expires, 3),
                  "sub": subject or patient_id}
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
            claims = Claims(c["role"], c["pid"], c["sid"], float(c["exp"]), c["sub"])
        except (ValueError, KeyError, TypeError, AttributeError):
            raise AuthError(401, "the token is not valid (unreadable claims)") from None
        if claims.role not in ROLES:
            raise AuthError(401, "the token is not valid (unknown role)")
        if claims.expires_at <= self.clock():
            raise AuthError(401, "the token has expired; create a new session")
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
