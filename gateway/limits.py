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

    def allow(self, client: str) -> bool:
        if self.rate <= 0:
            return True
        now = self.clock()
        tokens, at = self.buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
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
