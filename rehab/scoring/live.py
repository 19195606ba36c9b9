"""Per-session scoring over time: the sliding window, the phase tracked from window to window,
repetitions, and the running session similarity. The live processor and the offline CLI both use
``LiveScorer``, so the same keypoints always give the same scores."""
from __future__ import annotations

import base64
from collections import deque
from dataclasses import dataclass, field
from itertools import chain

import numpy as np

from rehab.records import KeypointFrame, Score, now_ms
from rehab.scoring.form import NEUTRAL, UNSEEN, FormResult, N_FEATURES
from rehab.scoring.pose import nearest
from rehab.scoring.reps import RepCounter
from rehab.scoring.model import RATE_HZ, ReferenceModel
from rehab.scoring.scorer import (
    EMPTY, GOOD, LIMB_NAMES, MIN_WINDOW_FRACTION, PHASE_ANCHOR_MIN, SCORER_VERSION, Rows, RowStore, WindowResult,
    calibrate,
    session_weight, score_windows,
)

RATE = int(RATE_HZ)  # grid rows per second
_NOBODY = np.zeros((17, 3)).tolist()  # a frame without anybody: zero confidence everywhere (as ``to_array``)
FORM_HINT_BELOW = 0.8  # the form's hints lead the corrections when it costs more than 20 %


def _keypoints(f: KeypointFrame) -> list:
    """A frame's keypoints, (17, 3) as lists (nobody: zero confidence)."""
    return _NOBODY if f.keypoints is None else f.keypoints


@dataclass
class LiveScorer:
    """Feed a session's keypoint frames in order. A frame is scored when it is the first of its
    ``min_interval_ms`` slot of capture time (so the cost per session is bounded however fast frames
    come, and which frames are scored depends only on the frames: a replay or a restarted processor
    scores the same windows); otherwise it is pending until ``flush()`` or the next frame."""

    ref: ReferenceModel
    session_id: str
    window_ms: int = 1000
    min_interval_ms: int = 0
    mirror_mode: str = "auto"
    frames: deque = field(default_factory=deque)
    reps: RepCounter = field(default_factory=RepCounter)
    total: float = 0.0  # the session's window similarities, each times its weight (session_weight)
    weight: float = 0.0  # the sum of those weights
    n_scores: int = 0
    seen_from_ms: int | None = None  # capture time of the session's first window with the patient in view
    last_phase_idx: int | None = None
    last_phase_spread: int = 0  # guide samples after it that fitted as well (WindowResult.phase_spread)
    last_ts_ms: int | None = None
    last_seq: int = -1
    last_scored_seq: int = -1
    last_scored_ts_ms: int | None = None
    last_frame_ts_ms: int | None = None
    rows: Rows | None = None  # the window's resampled rows, computed once each (grid rows rows_k0 ...)
    rows_k0: int = 0
    row_store: RowStore = field(default_factory=RowStore, repr=False, compare=False)  # what ``rows`` is a view of
    grid_origin_ms: int | None = None  # grid row k is at capture time origin + k / RATE_HZ: the session's
    # first frame, so a recording scores the same whatever its clock's origin
    angles: np.ndarray = field(default_factory=lambda: np.zeros((0, N_FEATURES), np.uint8))  # the joint
    # angles of the last grid rows (form.encode: one byte each, UNSEEN where not seen), for the form
    angles_k_last: int = -1  # the grid row of the newest entry in ``angles``
    kps: np.ndarray | None = None  # the keypoints of the last len(kps) frames read (``frame_array``)
    kps_last_seq: int = -1  # the seq of the newest frame in ``kps``
    kps_ts: np.ndarray | None = None  # their capture times (ms), int64

    # -- state that survives a restart (kept in a Faust table) --------------------------------
    def snapshot(self) -> dict:
        return {"reps": self.reps.count, "armed": self.reps.armed, "prev_phase": self.reps.prev_phase,
                "rep_sim": [self.reps.sim_sum, self.reps.sim_n], "rep_reach": self.reps.reach,
                "total": self.total, "weight": self.weight, "n_scores": self.n_scores, "seen_from_ms": self.seen_from_ms,
                "last_phase_idx": self.last_phase_idx, "last_phase_spread": self.last_phase_spread,
                "last_ts_ms": self.last_ts_ms,
                "last_seq": self.last_scored_seq, "last_scored_ts_ms": self.last_scored_ts_ms,
                "grid_origin_ms": self.grid_origin_ms}

    def window_snapshot(self) -> dict:
        """The frames of the current window, compactly: their seqs and capture times, their keypoints as
        float32 (base64, -1 confidence where nobody was seen), and the form history (one byte an
        angle, base64)."""
        kps = self.frame_array().astype(np.float32)
        kps[[f.keypoints is None for f in self.frames], :, 2] = -1.0
        return {"seq": [f.seq for f in self.frames], "ts": [f.capture_ts_ms for f in self.frames],
                "kps": base64.b64encode(kps.tobytes()).decode(),
                "angles": base64.b64encode(self.angles.tobytes()).decode(), "angles_k_last": self.angles_k_last}

    def restore_window(self, snap: dict | list, template: KeypointFrame) -> None:
        """Refills the window after a restart (frames older than the restored counters only) and the
        form history. Reads every format a processor has saved: a list (frames only, before the form
        existed) and ``frames`` as [seq, ts, keypoints or None] rows (before float32 keypoints)."""
        if isinstance(snap, list):
            rows = snap
        elif "kps" in snap:
            kps = np.frombuffer(base64.b64decode(snap["kps"]), np.float32).reshape(-1, 17, 3).astype(np.float64)
            rows = [(seq, ts, None if k[0, 2] < 0 else k.tolist()) for seq, ts, k in zip(snap["seq"], snap["ts"], kps)]
        else:
            rows = snap.get("frames", [])
        if isinstance(snap, dict) and snap.get("angles"):
            self.angles = np.frombuffer(base64.b64decode(snap["angles"]), np.uint8).reshape(-1, N_FEATURES).copy()
            self.angles_k_last = int(snap.get("angles_k_last", -1))
        restored = [KeypointFrame(self.session_id, int(seq), int(ts), template.gateway_ts_ms, template.infer_ts_ms,
                                  template.model, template.model_version, template.width, template.height, kps,
                                  reference_id=template.reference_id)
                    for seq, ts, kps in rows if int(seq) <= self.last_seq]
        newer = [f for f in self.frames if f.seq > (restored[-1].seq if restored else -1)]
        self.frames = deque(restored + newer)
        self.rows, self.kps = None, None

    def restore(self, snap: dict) -> None:
        self.reps.count, self.reps.armed = int(snap["reps"]), bool(snap["armed"])
        self.reps.prev_phase = snap.get("prev_phase")
        self.reps.sim_sum, self.reps.sim_n = snap.get("rep_sim", (0.0, 0))
        self.reps.reach = float(snap.get("rep_reach", 1.0))  # (snapshots before it: as before, no reach needed)
        self.total, self.n_scores = float(snap["total"]), int(snap["n_scores"])
        # (snapshots before the weights: every window weighed 1, from the session's first frame)
        self.weight = float(snap.get("weight", self.n_scores))
        self.seen_from_ms = snap.get("seen_from_ms", snap.get("grid_origin_ms"))
        self.last_phase_idx, self.last_ts_ms = snap["last_phase_idx"], snap["last_ts_ms"]
        self.last_phase_spread = int(snap.get("last_phase_spread", 0))  # (snapshots before limbdtw-3.4.0: 0)
        self.last_seq = self.last_scored_seq = int(snap["last_seq"])
        # frames after the last scored one are re-read after a restart: resume from that one
        self.last_scored_ts_ms = self.last_frame_ts_ms = snap["last_scored_ts_ms"]
        self.grid_origin_ms = snap.get("grid_origin_ms")

    # -- scoring ---------------------------------------------------------------------------
    @property
    def pending(self) -> bool:
        return bool(self.frames) and self.frames[-1].seq > self.last_scored_seq and self._window_ready()

    def frame_array(self) -> np.ndarray:
        """The window's keypoints, (len(frames), 17, 3) float64 aligned with ``frames`` (nobody: zeros);
        their capture times are left in ``kps_ts``.
        Each frame is read into an array once, the frames new since the last call together: numpy reads
        nested lists at ~2 us a frame, and a frame is in ~8 windows and ~2 window snapshots. (Frames
        leave ``frames`` on the left and arrive on the right in rising seq, so the frames read before
        are the last ones of ``kps``; ``restore_window`` replaces ``frames`` and drops ``kps``.)"""
        frames, n = self.frames, len(self.frames)
        new = 0
        if self.kps is None:
            new = n
        else:
            while new < n and frames[n - 1 - new].seq > self.kps_last_seq:
                new += 1
        old = self.kps[len(self.kps) - (n - new):] if n > new else np.zeros((0, 17, 3))
        old_ts = self.kps_ts[len(self.kps_ts) - (n - new):] if n > new else np.zeros(0, np.int64)
        if new:
            values = chain.from_iterable(chain.from_iterable(_keypoints(frames[i]) for i in range(n - new, n)))
            fresh = np.fromiter(values, np.float64, count=new * 51).reshape(new, 17, 3)
            fresh_ts = np.fromiter((frames[i].capture_ts_ms for i in range(n - new, n)), np.int64, count=new)
            old = np.concatenate([old, fresh]) if len(old) else fresh
            old_ts = np.concatenate([old_ts, fresh_ts]) if len(old_ts) else fresh_ts
            self.kps_last_seq = frames[-1].seq
        self.kps, self.kps_ts = old, old_ts
        return old

    def _window_ready(self) -> bool:
        span = self.frames[-1].capture_ts_ms - self.frames[0].capture_ts_ms
        return span >= self.window_ms * MIN_WINDOW_FRACTION

    def add(self, f: KeypointFrame, defer: bool = False) -> bool:
        """Adds a frame; True when this frame is due a score now (then ``job()``). ``defer``: add it
        without scoring (a processor catching up scores only the newest frame of a backlog)."""
        if f.seq <= self.last_seq:
            # a duplicate, re-delivered or out-of-order frame: never scored twice, but after a restart
            # the frames re-read before the last scored one refill the window
            if not self.frames or f.seq > self.frames[-1].seq:
                self.frames.append(f)
            return False
        prev_ts, self.last_seq, self.last_frame_ts_ms = self.last_frame_ts_ms, f.seq, f.capture_ts_ms
        if self.grid_origin_ms is None:
            self.grid_origin_ms = f.capture_ts_ms
        self.frames.append(f)
        while self.frames[0].capture_ts_ms < f.capture_ts_ms - self.window_ms:
            self.frames.popleft()
        if defer or not self._window_ready():
            return False
        if self.min_interval_ms and prev_ts is not None and \
                f.capture_ts_ms // self.min_interval_ms == prev_ts // self.min_interval_ms:
            return False  # not the first frame of its slot
        return True

    def update(self, f: KeypointFrame, score_ts_ms: int | None = None, defer: bool = False) -> Score | None:
        """Adds a frame; returns its window's score when this frame is due one."""
        return score_jobs([self.job()], score_ts_ms)[0] if self.add(f, defer) else None

    def flush(self, score_ts_ms: int | None = None) -> Score | None:
        """Scores the newest frame if it is pending (the processor's timer calls this)."""
        return score_jobs([self.job()], score_ts_ms)[0] if self.pending else None

    def job(self) -> "WindowJob":
        """The window ending at the newest frame, to be scored by ``score_jobs`` (at most one job per
        scorer at a time: the next window's phase prior depends on this one's result)."""
        f, first = self.frames[-1], self.frames[0]
        origin = self.grid_origin_ms if self.grid_origin_ms is not None else first.capture_ts_ms
        k_first = -((-(first.capture_ts_ms - origin) * RATE) // 1000)  # the grid rows inside the window
        k_last = ((f.capture_ts_ms - origin) * RATE) // 1000
        cached_end = self.rows_k0 + (len(self.rows) if self.rows is not None else 0)
        if self.rows is None or not self.rows_k0 <= k_first <= cached_end:
            keep, new_from, prev = None, k_first, None
        else:
            keep, new_from = k_first - self.rows_k0, cached_end
            prev = self.rows.last() if len(self.rows) else None
        kps = np.zeros((0, 17, 3))
        if new_from <= k_last:
            # times relative to the origin (small exact numbers: ties between two frames break the same
            # way whatever the clock's origin)
            window = self.frame_array()
            ts = (self.kps_ts - origin).astype(np.float64)  # (exact: integers far below 2**53)
            # the nearest frame (the earlier one on a tie): a row never changes once made
            idx = nearest(ts, np.arange(new_from, k_last + 1) * (1000.0 / RATE))
            kps = window[idx]
        prior = None
        if self.last_ts_ms is not None:
            advanced = (f.capture_ts_ms - self.last_ts_ms) * RATE_HZ / 1000.0
            prior = (self.last_phase_idx, advanced, self.last_phase_spread)  # (phase_prior's, for the whole group)
        return WindowJob(self, f, first, k_first, k_last, keep, kps, prev, prior)

    def _attach(self, job: "WindowJob", new: Rows | None) -> Rows:
        """Keeps the window's rows (cached from the last window, plus the new ones); returns the window's."""
        rows = self.row_store.extend(job.keep, new)
        self.rows, self.rows_k0 = rows, job.k_first
        if new is not None:  # each grid row enters the form history once, in order
            k0 = job.k_last - len(new) + 1
            keep_from = max(self.angles_k_last + 1 - k0, 0)
            gap = min(max(k0 - self.angles_k_last - 1, 0), self.ref.form.history_rows)  # rows nobody filled
            parts = [self.angles, np.full((gap, N_FEATURES), UNSEEN, np.uint8), new.angle_codes[keep_from:]]
            self.angles = np.concatenate(parts)[-self.ref.form.history_rows:]
            self.angles_k_last = max(self.angles_k_last, job.k_last)
        return rows[: job.k_last - job.k_first + 1]

    def form(self) -> FormResult:
        """The form over the last ``history_rows`` grid rows (rows without anybody are left out)."""
        if not len(self.angles):
            return NEUTRAL
        return self.ref.form.assess_codes(self.angles)

    def _complete(self, job: "WindowJob", result: WindowResult, form: FormResult, score_ts_ms: int | None) -> Score:
        """The window's score from its movement match ``result`` and its ``form`` (``score_jobs``
        assesses a group's windows together; NEUTRAL for a window without anybody)."""
        f, first = job.last, job.first
        if result.similarity >= PHASE_ANCHOR_MIN:  # only a confident match anchors the phase; a weak one
            # leaves the old anchor, whose band of reachable phases widens with time, so tracking recovers
            self.last_phase_idx, self.last_ts_ms = result.ref_span[1] % self.ref.length, f.capture_ts_ms
            self.last_phase_spread = result.phase_spread
        # a repetition is counted on the movement (done badly, it is still a repetition done), when it
        # reached far enough into the guide's range
        reps = self.reps.update(result.phase, calibrate(result.similarity), form.reach)
        if result is not EMPTY:
            hints = form.corrections() if form.factor < FORM_HINT_BELOW or form.mistake else []
            similarity = round(calibrate(result.similarity * form.factor), 4)
            # a limb's direction against the guide's pose at this point is left out of a `good` window's
            # hints: on other people's repetitions it came as often with correct ones as with incorrect
            # ones (docs/scoring.md, limbdtw-3.3.1), and at a good score it only contradicts the verdict
            matched = result.corrections
            if similarity >= GOOD:
                matched = [c for c in matched if c["joint"] not in LIMB_NAMES]
            result = WindowResult(**{**result.__dict__, "similarity": similarity, "corrections": (hints + matched)[:4]})
        if result is not EMPTY or self.n_scores:  # the session starts when the patient is first in view:
            if self.seen_from_ms is None:  # nobody in the windows before that is no score against them
                self.seen_from_ms = first.capture_ts_ms
            w = session_weight(f.capture_ts_ms - self.seen_from_ms, self.ref.length)
            self.total += w * result.similarity
            self.weight += w
            self.n_scores += 1
        self.last_scored_seq, self.last_scored_ts_ms = f.seq, f.capture_ts_ms
        return Score(
            session_id=self.session_id, window_start_seq=first.seq, window_end_seq=f.seq,
            window_start_ts_ms=first.capture_ts_ms, window_end_ts_ms=f.capture_ts_ms,
            similarity=result.similarity, joints=result.limbs, corrections=result.corrections,
            phase=result.phase, reps=reps, scorer_version=SCORER_VERSION,
            gateway_ts_ms=f.gateway_ts_ms, infer_ts_ms=f.infer_ts_ms,
            score_ts_ms=now_ms() if score_ts_ms is None else score_ts_ms,
            reference_id=self.ref.reference_id,
            session_similarity=round(self.total / self.weight, 4) if self.weight > 0 else 0.0,
        )


@dataclass
class WindowJob:
    """One window of one session, waiting to be scored with others."""

    scorer: LiveScorer
    last: KeypointFrame
    first: KeypointFrame
    k_first: int
    k_last: int
    keep: int | None  # the scorer's cached rows from this index on are the window's first rows
    kps: np.ndarray  # (n, 17, 3) the window's new resampled rows, not yet computed
    prev: tuple | None  # the pose of the row before the new ones
    prior: tuple[int, float, int] | None  # the last anchored phase, the samples advanced since, its spread


def score_jobs(jobs: list[WindowJob], score_ts_ms: int | None = None) -> list[Score]:
    """Scores the windows of many sessions at once: the new rows of all windows against one reference
    in one ``Rows.compute``, and the windows in one ``score_windows`` per reference and mirror setting.
    A window's score is the same as when it is scored alone."""
    groups: dict[tuple[int, str], list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault((id(job.scorer.ref), job.scorer.mirror_mode), []).append(i)
    windows: list[Rows | None] = [None] * len(jobs)
    by_ref: dict[int, list[int]] = {}
    for (ref_id, _), idx in groups.items():
        by_ref.setdefault(ref_id, []).extend(idx)
    for idx in by_ref.values():
        ref = jobs[idx[0]].scorer.ref
        need = [i for i in idx if len(jobs[i].kps)]
        new: dict[int, Rows] = {}
        if need:
            sizes = [len(jobs[i].kps) for i in need]
            starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int).tolist()
            rows = Rows.compute(np.concatenate([jobs[i].kps for i in need]), ref, starts, [jobs[i].prev for i in need])
            new = {i: rows[s:s + n] for i, s, n in zip(need, starts, sizes)}
        for i in idx:
            windows[i] = jobs[i].scorer._attach(jobs[i], new.get(i))
    scores: list[Score | None] = [None] * len(jobs)
    for (_, mode), idx in groups.items():
        ref = jobs[idx[0]].scorer.ref
        results = score_windows(ref, [windows[i] for i in idx], [jobs[i].prior for i in idx], mode)
        judged = [n for n, result in enumerate(results) if result is not EMPTY]  # (nobody in view: no form)
        forms = [NEUTRAL] * len(idx)
        for n, form in zip(judged, ref.form.assess_codes_many([jobs[idx[n]].scorer.angles for n in judged])):
            forms[n] = form
        for i, result, form in zip(idx, results, forms):
            scores[i] = jobs[i].scorer._complete(jobs[i], result, form, score_ts_ms)
    return scores
