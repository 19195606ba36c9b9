"""What the processor does with keypoint messages, independent of Faust (so tests can drive it).

Decodes a message (malformed ones go to the dead-letter topic), finds the session's scorer (built
from the reference stored in MySQL on first sight, its counters restored from the last snapshot),
and returns the Score, if any. ``flush_due`` gives the scores a timer owes to sessions whose newest
frame is still unscored.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from rehab.records import KeypointFrame, MessageError, Score, decode_keypoint_frames, now_ms
from rehab.reference import Reference
from rehab.scoring import LiveScorer, ReferenceModel, score_jobs

log = logging.getLogger("rehab.stream_processor")


LATE_SCORE_SPACING_MS = 250
GUIDE_REFRESH_S = 30.0  # a new session reloads its guide when the cached one is older (takes added, replaced)


class UnusableMessage(Exception):
    """The message is well-formed but cannot be scored (e.g. its reference is unknown)."""


@dataclass
class ScoringState:
    """Scorers per session and reference models by id.

    ``load_reference(id)`` is async (MySQL); ``load_snapshot(session_id)`` returns the last saved
    ``LiveScorer.snapshot()`` or None (a Faust table)."""

    load_reference: Callable[[str], Awaitable[Reference | None]]
    load_snapshot: Callable[[str], dict | None] = lambda _sid: None
    load_window: Callable[[str], dict | list | None] = lambda _sid: None
    window_ms: int = 1000
    min_interval_ms: int = 50
    idle_evict_s: float = 300.0
    scorers: dict[str, LiveScorer] = field(default_factory=dict)
    models: dict[str, ReferenceModel] = field(default_factory=dict)
    models_loaded: dict[str, float] = field(default_factory=dict)  # monotonic time each model was loaded
    last_seen: dict[str, float] = field(default_factory=dict)
    scored_at: dict[str, int] = field(default_factory=dict)  # our wall clock at each session's last score
    failed_windows: int = 0  # windows that raised while scored (a bug), skipped
    evicted: list[str] = field(default_factory=list)  # sessions forgotten since the caller last took them
    coalesced: int = 0  # frames added to a window without being scored, because their session was behind

    async def _model(self, reference_id: str) -> ReferenceModel:
        """The guide's model for a new session: cached, and reloaded when the cached one is older than
        GUIDE_REFRESH_S, so a guide replaced or given more takes scores sessions started after that
        (running sessions keep the model they started with)."""
        model = self.models.get(reference_id)
        if model is None or time.monotonic() - self.models_loaded[reference_id] > GUIDE_REFRESH_S:
            ref = await self.load_reference(reference_id)
            if ref is None:
                raise UnusableMessage(f"unknown reference {reference_id!r}")
            model = self.models[reference_id] = ReferenceModel.build(ref)
            self.models_loaded[reference_id] = time.monotonic()
        return model

    async def scorer_for(self, frame: KeypointFrame) -> LiveScorer:
        scorer = self.scorers.get(frame.session_id)
        if scorer is None:
            if frame.reference_id is None:
                raise UnusableMessage("keypoint frame names no reference_id")
            scorer = LiveScorer(await self._model(frame.reference_id), frame.session_id,
                                window_ms=self.window_ms, min_interval_ms=self.min_interval_ms)
            snap = self.load_snapshot(frame.session_id)
            if snap is not None:
                scorer.restore(snap)
                scorer.restore_window(self.load_window(frame.session_id) or [], frame)
                log.info("session %s resumed at seq %d, %d reps", frame.session_id, scorer.last_seq, scorer.reps.count)
            self.scorers[frame.session_id] = scorer
        return scorer

    def release(self, sessions) -> None:
        """Forgets sessions in this process only (no tombstones: they live on elsewhere). A rebalance
        moved their partitions to another processor, which resumes them from the saved state; were a
        partition to come back here, the session must resume from what was saved meanwhile, not from
        this process's stale copy (nor would an idle eviction here delete the new owner's state)."""
        for sid in sessions:
            self.scorers.pop(sid, None)
            self.last_seen.pop(sid, None)
            self.scored_at.pop(sid, None)

    async def handle(self, raw: bytes) -> tuple[LiveScorer, Score | None]:
        """Raises MessageError / UnusableMessage for the dead-letter topic."""
        frame = KeypointFrame.from_json(raw)
        scorer = await self.scorer_for(frame)
        self.last_seen[frame.session_id] = time.monotonic()
        return scorer, scorer.update(frame)

    async def handle_batch(self, raws: list[bytes], coalesce_after: int = 8, late_ms: int = 300):
        """A batch of messages: ([(scorer, score)], [(index, error)] for the dead-letter topic).

        Load shedding (``coalesce_after`` 0 turns it off: every due window is scored, as offline):
        - a session with more than ``coalesce_after`` frames in the batch is behind (a backlog): its
          frames all enter the window but only the newest is scored;
        - a frame that reached us more than ``late_ms`` after the gateway or worker stamped it means this
          processor has more sessions than it can score at full rate: the session is then scored at
          most once per how late its frames are (and at most 4 times a second), so the lag settles
          where the scoring fits instead of growing. (An overloaded processor's score rate is set by
          its capacity whatever the rule; the rule sets the lag: with 100 edge sessions on the shared
          2-core machine, p50 1.2 s at 1.6 scores/s per session, against 2.0 s at 1.4 with the
          earlier rule of 4 a second until 2 s late.)
        At live pace a batch holds a frame or two per session, nothing is late, and every due window is
        scored exactly as ``handle`` would."""
        failures = []
        queues: dict[str, list[tuple[int, KeypointFrame]]] = {}  # session -> (position in raws, frame)
        for i, f in enumerate(decode_keypoint_frames(raws)):  # the batch decoded together
            if type(f) is not KeypointFrame:
                failures.append((i, f))
                continue
            try:
                await self.scorer_for(f)
            except UnusableMessage as exc:
                failures.append((i, exc))
                continue
            queues.setdefault(f.session_id, []).append((i, f))
        now, wall = time.monotonic(), now_ms()
        for sid in queues:
            self.last_seen[sid] = now
        # Rounds: each session advances to its next due window, and the windows of all sessions in a
        # round are scored together (one vectorised call); a session's windows stay in order, since
        # each window's phase prior depends on the one before.
        pos = dict.fromkeys(queues, 0)
        results = []
        while pos:
            jobs = []
            for sid in list(pos):
                queue, scorer = queues[sid], self.scorers.get(sid)
                if scorer is None:  # released meanwhile (its partition moved): the new owner reads these frames
                    del pos[sid]
                    continue
                n = len(queue)
                behind = bool(coalesce_after) and n > coalesce_after
                while pos[sid] < n:
                    k = pos[sid]
                    i, f = queue[k]
                    pos[sid] = k + 1
                    late = bool(coalesce_after) and self.held_back(sid, f, wall, late_ms)
                    defer = (behind and k < n - 1) or late
                    try:
                        due = scorer.add(f, defer=defer)
                    except Exception as exc:  # one session's frame must never stop the shared agent
                        log.exception("session %s: frame %d could not be added", sid, f.seq)
                        failures.append((i, UnusableMessage(
                            f"frame could not be scored ({type(exc).__name__}: {exc})")))
                        continue
                    if defer:
                        self.coalesced += 1
                    if due or (behind and k == n - 1 and not late and scorer.pending):
                        jobs.append(scorer.job())
                        break
                if pos[sid] >= n:
                    del pos[sid]
            for job, score in self._score(jobs):
                self.scored_at[job.scorer.session_id] = wall
                results.append((job.scorer, score))
            await asyncio.sleep(0)  # let the consumer's fetcher run between rounds: the next events
            # arrive while this batch is scored, instead of after it
        return results, failures

    def held_back(self, sid: str, f: KeypointFrame, wall: int, late_ms: int, drain: bool = True) -> bool:
        """A late frame (more than ``late_ms`` after the gateway or worker stamped it) is not scored if
        its session was scored too recently: with ``drain``, once per how late it is (at least 250 ms
        apart: a backlog drains instead of being scored), without, at most 4 scores a second.
        The timer does not drain: a quiet session's last frame is scored within 250 ms, however old its
        stamps (frames replayed into the topic, say)."""
        lateness = wall - max(f.gateway_ts_ms, f.infer_ts_ms)
        spacing = max(lateness, LATE_SCORE_SPACING_MS) if drain else LATE_SCORE_SPACING_MS
        return lateness > late_ms and wall - self.scored_at.get(sid, 0) < spacing

    def flush_due(self, quiet_s: float, late_ms: int = 300) -> list[tuple[LiveScorer, Score]]:
        """Scores for sessions whose newest frame is unscored and who sent nothing for ``quiet_s``
        (a late frame waits for the session's score spacing: ``held_back``); forgets sessions
        idle for ``idle_evict_s`` (``evicted`` lists them, so the caller can release their saved state:
        the gateway ends a session idle for far less, so nothing resumes it)."""
        now, wall, out, jobs = time.monotonic(), now_ms(), [], []
        for sid, scorer in list(self.scorers.items()):
            seen = self.last_seen.get(sid, now)
            if now - seen >= self.idle_evict_s:
                self.release([sid])
                self.evicted.append(sid)
                continue
            if now - seen < quiet_s or not scorer.pending:
                continue
            if self.held_back(sid, scorer.frames[-1], wall, late_ms, drain=False):
                continue
            jobs.append(scorer.job())
        for job, score in self._score(jobs):
            self.scored_at[job.scorer.session_id] = wall
            out.append((job.scorer, score))
        return out

    def _score(self, jobs: list) -> list[tuple]:
        """(job, score) for the jobs, scored together; if that fails, each alone, and a job that fails
        alone is skipped and counted (``failed_windows``): one session's failure stays its own."""
        try:
            return list(zip(jobs, score_jobs(jobs)))
        except Exception:
            log.exception("a batch of %d windows could not be scored together; scoring them one by one", len(jobs))
        out = []
        for job in jobs:
            try:
                out.append((job, score_jobs([job])[0]))
            except Exception:
                self.failed_windows += 1
                log.exception("session %s: a window could not be scored", job.scorer.session_id)
        return out


__all__ = ["MessageError", "ScoringState", "UnusableMessage"]
