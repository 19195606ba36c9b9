"""The scorer: a window of the patient's keypoints against the guide's, on a common clock.

Per window: resample to ``RATE_HZ``; normalise poses; compare limb directions (invariant to position
and body size) weighted by confidence; align in time with slope-bounded subsequence DTW against the
reference (played cyclically, so a window may span the end of one repetition and the start of the
next); multiply by a movement factor (the patient's path length against the matched stretch of the
reference), so that holding a posture, or nobody in view, scores low.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from rehab.coco import LIMBS
from rehab.records import KeypointFrame, Score, now_ms
from rehab.reference import Reference
from rehab.scoring.align import subsequence_dtw
from rehab.scoring.pose import limb_directions, mirror, normalize, resample, to_array

SCORER_VERSION = "limbdtw-1.0.0"
RATE_HZ = 30.0
COS_FLOOR = 0.0  # limb cosine at or below this counts as 0 similarity, 1.0 as 1
MIN_VALID_FRACTION = 0.5
MOVE_TAU = 0.5
VEL_OFFSET, VEL_GAIN = 0.7, 1.0
PHASE_SLACK, PHASE_PENALTY = 3.0, 1.0
MIN_WINDOW_FRACTION = 0.3  # the first score comes once 30% of a window has been seen
LIMB_NAMES = tuple(f"{b}" if a.split("_")[0] == b.split("_")[0] else f"{a}-{b}" for a, b in LIMBS)


@dataclass(frozen=True)
class Poses:
    """Resampled, normalised poses and their limb directions."""

    norm: np.ndarray  # (T, 17, 2)
    w: np.ndarray  # (T, 17)
    dirs: np.ndarray  # (T, L, 2)
    lw: np.ndarray  # (T, L)

    @classmethod
    def of(cls, norm: np.ndarray, w: np.ndarray) -> "Poses":
        dirs, lw = limb_directions(norm, w)
        return cls(norm, w, dirs, lw)

    def mirrored(self) -> "Poses":
        return Poses.of(*mirror(self.norm, self.w))

    @property
    def valid(self) -> np.ndarray:
        return self.lw.sum(axis=1) > 0


def path_length(norm: np.ndarray, w: np.ndarray) -> float:
    """Total movement of the visible joints along a sequence, in torso lengths."""
    if len(norm) < 2:
        return 0.0
    both = (w[1:] > 0) & (w[:-1] > 0)
    step = np.linalg.norm(norm[1:] - norm[:-1], axis=2)
    per_frame = (step * both).sum(axis=1) / np.maximum(both.sum(axis=1), 1)
    return float(per_frame.sum())


@dataclass(frozen=True)
class ReferenceModel:
    reference_id: str
    poses: Poses  # one repetition, resampled
    cyclic: Poses  # two repetitions back to back

    @classmethod
    def build(cls, ref: Reference) -> "ReferenceModel":
        kps = to_array(ref.frames)
        ts = np.arange(len(kps)) * 1000.0 / ref.fps
        kps = resample(ts, kps, RATE_HZ, 0.0, ts[-1])
        poses = Poses.of(*normalize(kps))
        double = Poses.of(np.concatenate([poses.norm] * 2), np.concatenate([poses.w] * 2))
        return cls(ref.id, poses, double)

    @property
    def length(self) -> int:
        return len(self.poses.norm)


def velocity_agreement(p: Poses, r: Poses, path: np.ndarray, chunk: int = 5) -> float:
    """How well the patient's joint motion points the same way as the guide's along the alignment:
    the cosine of joint displacements over short chunks, weighted by how much the guide moves there.
    Near 1 for the same movement, near 0 for an unrelated one (walking past), whatever the posture."""
    rn, rw = r.norm[path], r.w[path]
    dp, dr = np.diff(p.norm, axis=0), np.diff(rn, axis=0)
    w = p.w[1:] * p.w[:-1] * rw[1:] * rw[:-1]
    n = len(dp) // chunk
    if n == 0:
        return 0.0
    cp = (dp[:n * chunk] * w[:n * chunk, :, None]).reshape(n, chunk, *dp.shape[1:]).sum(axis=1)
    cr = (dr[:n * chunk] * w[:n * chunk, :, None]).reshape(n, chunk, *dr.shape[1:]).sum(axis=1)
    norm_p, norm_r = np.linalg.norm(cp, axis=-1), np.linalg.norm(cr, axis=-1)
    cos = np.divide((cp * cr).sum(axis=-1), norm_p * norm_r, out=np.zeros_like(norm_r), where=norm_p * norm_r > 1e-12)
    return float((cos * norm_r).sum() / norm_r.sum()) if norm_r.sum() > 1e-12 else 0.0


@dataclass(frozen=True)
class WindowResult:
    similarity: float
    pose_similarity: float
    movement: float
    limbs: dict[str, float]
    corrections: list[dict]
    phase: float
    mirrored: bool
    ref_span: tuple[int, int]


EMPTY = WindowResult(0.0, 0.0, 0.0, {}, [{"joint": "body", "direction": "visible",
                                         "message": "step into view of the camera"}], 0.0, False, (0, 0))


def _similarity_matrix(p: Poses, r: Poses) -> np.ndarray:
    """(Tp, Tr) confidence-weighted mean limb cosine, mapped to [0, 1]."""
    cos = np.einsum("ild,jld->ijl", p.dirs, r.dirs)
    sim = np.clip((cos - COS_FLOOR) / (1.0 - COS_FLOOR), 0.0, 1.0)
    w = p.lw[:, None, :] * r.lw[None, :, :]
    return (sim * w).sum(axis=2) / np.maximum(w.sum(axis=2), 1e-9)


def _corrections(p: Poses, r: Poses, path: np.ndarray, limbs: dict[str, float], mirrored: bool) -> list[dict]:
    out = []
    for li in np.argsort([limbs.get(n, 1.0) for n in LIMB_NAMES])[:3]:
        name = LIMB_NAMES[li]
        if name not in limbs or limbs[name] >= 0.8:
            continue
        w = p.lw[:, li] * r.lw[path, li]
        if w.sum() <= 0:
            continue
        # image y grows downwards: a reference limb pointing further up means "raise"
        dy = float(((r.dirs[path, li, 1] - p.dirs[:, li, 1]) * w).sum() / w.sum())
        dx = float(((r.dirs[path, li, 0] - p.dirs[:, li, 0]) * w).sum() / w.sum())
        if abs(dy) >= abs(dx):
            direction = "raise" if dy < 0 else "lower"
        else:
            direction = "move outwards" if dx * (1 if "left" in name else -1) > 0 else "move inwards"
        label = name.replace("_", " ")
        out.append({"joint": name, "direction": direction, "message": f"{label}: {direction}"})
    return out


def phase_prior(ref_len: int, prev_phase_idx: int | None, advanced: float) -> np.ndarray | None:
    """End penalty over the doubled reference's columns: after ``advanced`` samples at 0.5x-2x speed
    the phase should have moved on by 0.5*advanced .. 2*advanced (+ slack) from the last window's."""
    if prev_phase_idx is None:
        return None
    cols = np.arange(2 * ref_len)
    ahead = (cols - prev_phase_idx) % ref_len
    lo, hi = 0.5 * advanced - PHASE_SLACK, 2.0 * advanced + PHASE_SLACK
    outside = np.where(ahead < lo, np.minimum(lo - ahead, ref_len - ahead + lo), np.maximum(ahead - hi, 0))
    outside = np.minimum(outside, ref_len - outside)
    return PHASE_PENALTY * np.clip(outside, 0, None) / ref_len


def score_poses(p: Poses, ref: ReferenceModel, mirror_mode: str = "auto",
                prior: np.ndarray | None = None) -> WindowResult:
    """Scores one resampled window of patient poses against the cyclic reference."""
    if len(p.norm) < 4 or p.valid.mean() < MIN_VALID_FRACTION:
        return EMPTY
    candidates = [(p, False)] + ([(p.mirrored(), True)] if mirror_mode == "auto" else [])
    best = None
    for cand, is_mirror in candidates:
        sim = _similarity_matrix(cand, ref.cyclic)
        cost, path = subsequence_dtw(1.0 - sim, prior)
        if best is None or cost < best[0]:
            best = (cost, path, cand, is_mirror, sim)
    cost, path, cand, is_mirror, _ = best
    pose_sim = float(np.clip(1.0 - cost, 0.0, 1.0))
    j0, j1 = int(path[0]), int(path[-1])
    ref_len = path_length(ref.cyclic.norm[j0:j1 + 1], ref.cyclic.w[j0:j1 + 1])
    own_len = path_length(cand.norm, cand.w)
    # Moving at least MOVE_TAU as much as the matched stretch of the guide earns the full factor;
    # moving more is not rewarded here (it shows as a pose mismatch instead).
    movement = float(np.clip(own_len / max(MOVE_TAU * ref_len, 1e-6), 0.0, 1.0))
    r = ref.cyclic
    limb_cos = np.clip((np.einsum("tld,tld->tl", cand.dirs, r.dirs[path]) - COS_FLOOR) / (1 - COS_FLOOR), 0, 1)
    lw = cand.lw * r.lw[path]
    limbs = {LIMB_NAMES[i]: round(float((limb_cos[:, i] * lw[:, i]).sum() / lw[:, i].sum()), 4)
             for i in range(len(LIMB_NAMES)) if lw[:, i].sum() > 0}
    agreement = velocity_agreement(cand, r, path)
    similarity = pose_sim * movement * float(np.clip(VEL_OFFSET + VEL_GAIN * agreement, 0.0, 1.0))
    corrections = _corrections(cand, r, path, limbs, is_mirror)
    if movement < 0.5:
        corrections.insert(0, {"joint": "body", "direction": "move", "message": "follow the guide's movement"})
    phase = (j1 % ref.length) / max(ref.length - 1, 1)
    return WindowResult(round(similarity, 4), round(pose_sim, 4), round(movement, 4), limbs, corrections,
                        round(float(phase), 4), is_mirror, (j0, j1))


class RepCounter:
    """Counts repetitions from the phase reached: armed in the middle of the movement, counted near
    its end; hysteresis means jitter around a threshold never counts twice."""

    def __init__(self, arm: tuple[float, float] = (0.35, 0.65), done: float = 0.85, min_similarity: float = 0.55):
        self.arm, self.done, self.min_similarity = arm, done, min_similarity
        self.count = 0
        self.armed = False

    def update(self, phase: float, similarity: float) -> int:
        if similarity < self.min_similarity:
            return self.count
        if self.arm[0] <= phase <= self.arm[1]:
            self.armed = True
        elif self.armed and phase >= self.done:
            self.count += 1
            self.armed = False
        return self.count


@dataclass
class LiveScorer:
    """Per-session scorer: feed keypoint frames in order; every frame after the first window yields a Score."""

    ref: ReferenceModel
    session_id: str
    window_ms: int = 1000
    mirror_mode: str = "auto"
    frames: deque = field(default_factory=deque)
    reps: RepCounter = field(default_factory=RepCounter)
    total: float = 0.0
    n_scores: int = 0
    last_phase_idx: int | None = None
    last_ts_ms: int | None = None

    def update(self, f: KeypointFrame, score_ts_ms: int | None = None) -> Score | None:
        if self.frames and f.seq <= self.frames[-1].seq:
            return None  # a duplicate or out-of-order frame: already accounted for
        self.frames.append(f)
        while self.frames and self.frames[0].capture_ts_ms < f.capture_ts_ms - self.window_ms:
            self.frames.popleft()
        first = self.frames[0]
        if f.capture_ts_ms - first.capture_ts_ms < self.window_ms * MIN_WINDOW_FRACTION:
            return None
        ts = np.array([x.capture_ts_ms for x in self.frames], dtype=np.float64)
        kps = resample(ts, to_array([x.keypoints for x in self.frames]), RATE_HZ, ts[0], ts[-1])
        prior = None
        if self.last_ts_ms is not None:
            advanced = (f.capture_ts_ms - self.last_ts_ms) * RATE_HZ / 1000.0
            prior = phase_prior(self.ref.length, self.last_phase_idx, advanced)
        result = score_poses(Poses.of(*normalize(kps)), self.ref, self.mirror_mode, prior)
        if result.similarity > 0:
            self.last_phase_idx, self.last_ts_ms = result.ref_span[1] % self.ref.length, f.capture_ts_ms
        reps = self.reps.update(result.phase, result.similarity)
        self.total += result.similarity
        self.n_scores += 1
        return Score(
            session_id=self.session_id, window_start_seq=first.seq, window_end_seq=f.seq,
            window_start_ts_ms=first.capture_ts_ms, window_end_ts_ms=f.capture_ts_ms,
            similarity=result.similarity, joints=result.limbs, corrections=result.corrections,
            phase=result.phase, reps=reps, scorer_version=SCORER_VERSION,
            gateway_ts_ms=f.gateway_ts_ms, infer_ts_ms=f.infer_ts_ms,
            score_ts_ms=now_ms() if score_ts_ms is None else score_ts_ms,
            reference_id=self.ref.reference_id, session_similarity=round(self.total / self.n_scores, 4),
        )


def score_attempt(ref: Reference, frames: list[KeypointFrame], mirror_mode: str = "auto") -> dict:
    """Offline: the same live scorer run over a whole recording; the session similarity is the mean of
    its window scores, exactly what the live pipeline reports last for the same frames."""
    scorer = LiveScorer(ReferenceModel.build(ref), frames[0].session_id if frames else "offline",
                        mirror_mode=mirror_mode)
    scores = [s for f in frames if (s := scorer.update(f, score_ts_ms=0)) is not None]
    last = scores[-1] if scores else None
    phases = sorted({round(s.phase, 1) for s in scores})
    return {
        "similarity": last.session_similarity if last else 0.0,
        "reps": last.reps if last else 0,
        "windows": len(scores),
        "phase_coverage": round(len(phases) / 11, 3),
        "joints": _mean_joints(scores),
        "corrections": last.corrections if last else EMPTY.corrections,
        "scorer_version": SCORER_VERSION,
        "reference_id": ref.id,
        "frames": len(frames),
        "frames_with_subject": sum(f.keypoints is not None for f in frames),
    }


def _mean_joints(scores: list[Score]) -> dict[str, float]:
    acc: dict[str, list[float]] = {}
    for s in scores:
        for k, v in s.joints.items():
            acc.setdefault(k, []).append(v)
    return {k: round(float(np.mean(v)), 4) for k, v in acc.items()}
