"""Per-client limits: how many sessions and offers a client may start, how many score subscriptions it
may hold open, and how often it is answered with an error. A client is its address as the gateway
sees it (behind a proxy, the proxy's address: set the limits there or raise them here).

Token buckets per client, kept in a bounded LRU (``MAX_CLIENTS``): memory does not grow with the number
of addresses that ever called. ``rate_per_min`` 0 switches a limit off.
"""
from __future__ import annotations

import time
from collections import OrderedDict

MAX_CLIENTS = 10_000


class RateLimit:
    """At most ``rate_per_min`` events a minute per client on average, ``burst`` at once."""

    def __init__(self, rate_per_min: float, burst: float | None = None, clock=time.monotonic,
                 max_clients: int = MAX_CLIENTS):
        self.rate = rate_per_min / 60.0
        self.burst = burst if burst is not None else max(1.0, rate_per_min / 2)
        self.clock, self.max_clients = clock, max_clients
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def tokens(self, client: str, now: float) -> float:
        """The client's tokens at ``now`` (its bucket refilled since last seen), spending none."""
        tokens, at = self.buckets.get(client, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def allow(self, client: str) -> bool:
        if self.rate <= 0:
            return True
        now = self.clock()
        tokens = self.tokens(client, now)
        self.buckets.pop(client, None)
        ok = tokens >= 1.0
        self.buckets[client] = (tokens - 1.0 if ok else tokens, now)
        while len(self.buckets) > self.max_clients:
            self.buckets.popitem(last=False)  # the longest idle: a full bucket again by now, most likely
        return ok

    def retry_after_s(self, client: str) -> int:
        tokens, _ = self.buckets.get(client, (self.burst, 0.0))
        return max(1, int((1.0 - tokens) / self.rate) + 1) if self.rate > 0 else 0


class ConcurrencyLimit:
    """At most ``limit`` open things (WebSocket subscriptions) per client; 0 switches it off."""

    def __init__(self, limit: int):
        self.limit = limit
        self.open: dict[str, int] = {}

    def acquire(self, client: str) -> bool:
        if self.limit <= 0:
            return True
        n = self.open.get(client, 0)
        if n >= self.limit:
            return False
        self.open[client] = n + 1
        return True

    def release(self, client: str) -> None:
        if self.limit <= 0:
            return
        n = self.open.get(client, 0) - 1
        if n > 0:
            self.open[client] = n
        else:
            self.open.pop(client, None)


def client_of(conn) -> str:
    """The caller's address (Starlette Request or WebSocket)."""
    return conn.client.host if conn.client is not None else "unknown"


class ErrorThrottle:
    """ASGI middleware: error replies rate-limited per client. Every 4xx answer (and every WebSocket
    refused with a 4xxx close code) spends one of the client's ``limit`` tokens; a client with none left
    is answered 429 (WebSocket: closed with 4429) before its request reaches a handler, until its bucket
    refills. A client guessing tokens or replaying junk costs a bucket lookup, not a handler, a database
    query or a JSON parse, and cannot flood the logs; well-behaved clients never see it (their few
    mistakes are far under the burst)."""

    def __init__(self, app, limit: RateLimit, on_throttled=None):
        self.app, self.limit, self.on_throttled = app, limit, on_throttled

    def _exhausted(self, client: str) -> bool:
        if self.limit.rate <= 0:
            return False
        return self.limit.tokens(client, self.limit.clock()) < 1.0

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        client = scope["client"][0] if scope.get("client") else "unknown"
        if self._exhausted(client):
            if self.on_throttled is not None:
                self.on_throttled()
            retry = str(self.limit.retry_after_s(client)).encode()
            if scope["type"] == "http":
                body = b'{"error": "too many refused requests from this client: retry in ' + retry + b' s"}'
                await send({"type": "http.response.start", "status": 429,
                            "headers": [(b"content-type", b"application/json"), (b"retry-after", retry),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
            else:  # accepted first, as the gateway's own refusals, so that the client sees the close code
                if (await receive())["type"] == "websocket.connect":
                    await send({"type": "websocket.accept"})
                    await send({"type": "websocket.close", "code": 4429, "reason": "too many refused requests"})
            return

        async def watch(message):
            kind = message["type"]
            if (kind == "http.response.start" and 400 <= message["status"] < 500) or \
                    (kind == "websocket.close" and 4000 <= message.get("code", 1000) < 5000):
                self.limit.allow(client)  # spends a token
            await send(message)

        await self.app(scope, receive, watch)
