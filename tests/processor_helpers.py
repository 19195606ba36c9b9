"""Helpers for tests of the processor on the real stack: the database, and what the offline scorer says."""
from __future__ import annotations

import asyncio

from rehab.records import Score
from rehab.scoring import LiveScorer, ReferenceModel, replay_scores
from rehab.storage.repository import Database


def db_call(settings, fn):
    """``fn(db)`` on a database connection of its own, run to completion."""
    async def run():
        async with Database.opened(settings) as db:
            return await fn(db)

    return asyncio.run(run())


def offline_scores(settings, reference, frames) -> list[Score]:
    """What the offline scorer scores from a session's keypoint frames (the live processor must agree)."""
    scorer = LiveScorer(ReferenceModel.build(reference), frames[0].session_id,
                        window_ms=settings.processor_window_ms, min_interval_ms=settings.processor_min_interval_ms)
    return replay_scores(scorer, frames)
