"""The session's guide recording, for the subject policy (edge/subject.py): who performs it is the patient.

Loaded once per reference id on a thread of its own, so the worker's loop never waits for MySQL; until it
is loaded (or when it cannot be: the database away, an unknown id) the policy runs without it, and a
failed load is tried again after ``retry_s``.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

from edge.subject import Matcher, reference_matcher
from rehab.reference import Reference

log = logging.getLogger("rehab.worker")


class Guides:
    def __init__(self, load: Callable[[str], Reference | None], retry_s: float = 30.0, keep: int = 256):
        self.load, self.retry_s, self.keep = load, retry_s, keep
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="guide-loader")
        self.ready: OrderedDict[str, Matcher] = OrderedDict()
        self.pending: dict[str, Future] = {}
        self.failed_at: dict[str, float] = {}

    def _build(self, reference_id: str) -> Matcher | None:
        from rehab.scoring import ReferenceModel

        ref = self.load(reference_id)
        return None if ref is None else reference_matcher(ReferenceModel.build(ref))

    def get(self, reference_id: str | None) -> Matcher | None:
        """The guide's matcher if loaded; starts loading it otherwise (never blocks)."""
        if reference_id is None:
            return None
        if reference_id in self.ready:
            self.ready.move_to_end(reference_id)
            return self.ready[reference_id]
        fut = self.pending.get(reference_id)
        if fut is None:
            if time.monotonic() - self.failed_at.get(reference_id, -1e9) >= self.retry_s:
                self.pending[reference_id] = self.pool.submit(self._build, reference_id)
            return None
        if not fut.done():
            return None
        del self.pending[reference_id]
        try:
            matcher = fut.result()
        except Exception as exc:  # the database away: the policy goes on without the guide for now
            log.warning("guide %s not loaded (%s); trying again in %.0f s", reference_id, exc, self.retry_s)
            matcher = None
        if matcher is None:
            self.failed_at[reference_id] = time.monotonic()
            return None
        self.ready[reference_id] = matcher
        while len(self.ready) > self.keep:
            self.ready.popitem(last=False)
        return matcher

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def mysql_loader(settings) -> Callable[[str], Reference | None]:
    """Reads a reference from MySQL (one short-lived connection per load: a guide is loaded once)."""
    from rehab.adapters.storage.repository import Database

    async def fetch(reference_id: str) -> Reference | None:
        async with Database.opened(settings, maxsize=1) as db:
            return await db.get_reference(reference_id)

    return lambda reference_id: asyncio.run(fetch(reference_id))
