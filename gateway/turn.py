"""The ICE servers a session is given: the configured STUN/TURN servers (``REHAB_ICE_SERVERS``) and, with
``REHAB_TURN_URLS`` and ``REHAB_TURN_SECRET``, a TURN server with credentials of its own that expire.

The time-limited credentials are the "TURN REST API" coturn implements (``use-auth-secret`` with
``static-auth-secret``): the username is ``EXPIRY:SESSION_ID`` (expiry in Unix seconds), the password
base64(HMAC-SHA1(secret, username)). The TURN server checks both without asking anyone, so no TURN
password is handed out that outlives its session's grant by more than ``REHAB_TURN_TTL_S``, and one
leaked from a patient's app is useless a day later (a static ``REHAB_ICE_SERVERS`` TURN password is
the same for everyone, forever).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import time

from aiortc import RTCConfiguration, RTCIceServer


def turn_credentials(secret: str, user: str, ttl_s: int, now: float | None = None) -> tuple[str, str]:
    """(username, credential) valid ``ttl_s`` from ``now`` for ``user``, as coturn's use-auth-secret checks them."""
    username = f"{int((time.time() if now is None else now) + ttl_s)}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


class IceServers:
    def __init__(self, static: list[dict], turn_urls: list[str], turn_secret: str, turn_ttl_s: int):
        self.static, self.turn_urls, self.turn_secret, self.turn_ttl_s = static, turn_urls, turn_secret, turn_ttl_s

    def for_session(self, session_id: str) -> list[dict]:
        """RTCIceServer dictionaries for one session's peer connections (the app's and the gateway's)."""
        if not self.turn_urls:
            return list(self.static)
        username, credential = turn_credentials(self.turn_secret, session_id, self.turn_ttl_s)
        return [*self.static, {"urls": list(self.turn_urls), "username": username, "credential": credential}]


def rtc_configuration(servers) -> RTCConfiguration:
    """An aiortc configuration with exactly these RTCIceServer dictionaries (none: none; never aiortc's
    default public STUN server). The gateway's peer connections and the Python client use it."""
    return RTCConfiguration(iceServers=[RTCIceServer(**server) for server in servers])
