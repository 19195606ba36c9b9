"""The processor's MySQL side: the pool (opened on first use), guide lookups and score rows, every call
retried while MySQL is away so that nothing accepted is lost and nothing crashes."""
from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncmy

from rehab.adapters import metrics
from rehab.records import Score
from rehab.settings import Settings
from rehab.adapters.storage.repository import Database

log = logging.getLogger("rehab.stream_processor")
OUTAGE = (OSError, asyncmy.errors.OperationalError, asyncio.TimeoutError)


class ScoreStore:
    def __init__(self, settings: Settings, connect=Database.connect):
        self._settings = settings
        self._connect = connect
        self._pool: Database | None = None
        self._lock = asyncio.Lock()

    async def db(self) -> Database:
        """The connection pool, opened on first use (agents may start before any service hook)."""
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    self._pool = await self._connect(self._settings)
        return self._pool

    async def until_done(self, call, what: str, where: str):
        """``call(db)``, retried while MySQL is away (backoff to 10 s, counted as
        ``rehab_errors_total{where=...}``) on a fresh pool each time: the old pool's connections died
        with the server. The caller waits rather than crash or lose anything."""
        delay = 0.5
        while True:
            try:
                return await call(await self.db())
            except OUTAGE as exc:
                metrics.ERRORS.labels("processor", where).inc()
                pool, self._pool = self._pool, None
                if pool is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(pool.close(), 2.0)
                log.warning("MySQL unavailable (%s); %s wait, retrying in %.1fs", exc, what, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def load_reference(self, reference_id: str):
        """The guide from MySQL (the agent waits while MySQL is away rather than dead-letter a good frame)."""
        return await self.until_done(lambda db: db.get_reference(reference_id),
                                     f"frames for reference {reference_id}", "reference_lookup")

    async def store(self, batch: list[Score]) -> None:
        """Upserts scores in one statement; a database outage is retried, never turned into lost rows. A
        batch MySQL refuses for its content (not an outage) is stored row by row, and a row it refuses
        alone is logged and counted, never allowed to stop the writer."""
        try:
            await self.until_done(lambda db: db.upsert_scores(batch), f"{len(batch)} score rows", "mysql_store")
        except asyncmy.errors.MySQLError:  # not an outage (those are retried): this batch's content
            if len(batch) == 1:
                metrics.ERRORS.labels("processor", "score_row_refused").inc()
                log.exception("MySQL refused the score row of session %s window %d", batch[0].session_id,
                              batch[0].window_end_seq)
                return
            for score in batch:
                await self.store([score])

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
