"""How a revocation (a logout, a patient removed) reaches what is open: this gateway's score WebSockets
and live sessions of the revoked credentials and patients are closed at once; revocations made through
other gateways (or the CLI) are found by polling MySQL (``Identity.changes_since``). REST calls check
each token on every call (gateway/accounts.py), so only what stays open needs this."""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from gateway.sessions import LiveSessions
from gateway.streams import ScoreStreams
from rehab.adapters import metrics

log = logging.getLogger("rehab.gateway")
REVOCATION_POLL_S = 2.0  # how often a gateway looks for revocations made elsewhere


class Revocations:
    def __init__(self, streams: ScoreStreams, sessions: LiveSessions):
        self.streams, self.sessions = streams, sessions

    async def close_revoked(self, credential_ids: set, patient_ids: set) -> None:
        """Closes this gateway's WebSockets and ends its live sessions that a revocation ended."""
        self.streams.close_where(lambda c: c.credential_id in credential_ids or c.patient_id in patient_ids,
                                 "the token was revoked (logged out, or the patient was removed)")
        await self.sessions.end_where(lambda s: s.credential_id in credential_ids or s.patient_id in patient_ids,
                                      "revoked")

    async def watch(self, identity: Callable, poll_s: float = REVOCATION_POLL_S) -> None:
        """Polls ``identity()`` (the open Identity) forever; MySQL away: counted, and tried next round."""
        since = None
        while True:
            try:
                since, credential_ids, patient_ids = await identity().changes_since(since)
                if credential_ids or patient_ids:
                    await self.close_revoked(credential_ids, patient_ids)
            except Exception:
                metrics.ERRORS.labels("gateway", "revocations").inc()
                log.exception("could not read revocations; retrying")
            await asyncio.sleep(poll_s)
