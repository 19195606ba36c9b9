"""The sessions connected to this gateway (``LiveSession``, gateway/peer.py): ending one (its peer
connection closed, its end and ingest counters recorded in MySQL) and the reaper that ends those whose
peer hung up without reconnecting, or that sent nothing, within REHAB_SESSION_IDLE_S."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from gateway.peer import LiveSession
from rehab.adapters import metrics

log = logging.getLogger("rehab.gateway")


class LiveSessions:
    def __init__(self, idle_s: float, db: Callable):
        """``db()``: the gateway's database (opened by its lifespan)."""
        self.live: dict[str, LiveSession] = {}
        self.idle_s, self.db = idle_s, db

    async def finish(self, sid: str, reason: str) -> dict:
        """Ends a session: closes its peer connection (if connected here) and records the end."""
        session = self.live.pop(sid, None)
        summary = {"ended_by": reason}
        if session is not None:
            summary.update(session.summary())
            await session.close()
        await self.db().end_session(sid, summary)
        return summary

    async def end_where(self, which: Callable[[LiveSession], bool], reason: str) -> None:
        for sid, session in list(self.live.items()):
            if which(session):
                await self.finish(sid, reason)

    async def reap(self) -> None:
        while True:
            await asyncio.sleep(min(2.0, self.idle_s / 4))
            now = time.monotonic()
            for sid, session in list(self.live.items()):
                try:
                    if session.disconnected_at is not None and now - session.disconnected_at > self.idle_s:
                        await self.finish(sid, "hang-up")
                    elif now - session.last_activity > self.idle_s:
                        await self.finish(sid, "timeout")
                except Exception:  # MySQL away, a peer that fails to close: try again next round, never stop
                    metrics.ERRORS.labels("gateway", "reaper").inc()
                    log.exception("could not end idle session %s; retrying", sid)

    async def close_all(self) -> None:
        """At shutdown: every peer connection closed (the sessions stay open in MySQL: a client may
        reconnect to another gateway)."""
        await asyncio.gather(*(s.close() for s in list(self.live.values())), return_exceptions=True)
        self.live.clear()
