"""The scorer: a window of the patient's keypoints against the guide's, on a common clock.

Per window: resample to ``RATE_HZ``; normalise poses; compare limb directions (invariant to position
and body size) weighted by confidence; align in time with slope-bounded subsequence DTW against the
reference (played cyclically, so a window may span the end of one repetition and the start of the
next); multiply by a movement factor (the patient's path length against the matched stretch of the
reference), so that holding a posture, or nobody in view, scores low.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rehab.coco import LIMBS, MIRROR
from rehab.reference import Reference
from rehab.scoring.align import subsequence_dtw_batch
from rehab.scoring.pose import limb_directions, mirror, normalize, resample, to_array

SCORER_VERSION = "limbdtw-2.0.0"
RATE_HZ = 30.0
COS_FLOOR = 0.0  # limb cosine at or below this counts as 0 similarity, 1.0 as 1
MIN_VALID_FRACTION = 0.5
MOVE_TAU = 0.7
VEL_OFFSET, VEL_GAIN = 0.5, 1.0
PHASE_SLACK, PHASE_PENALTY = 6.0, 0.2
PHASE_ANCHOR_MIN = 0.6
LABEL_TOLERANT = True
JITTER_PER_STEP = 0.008  # torso lengths per joint and 1/RATE_HZ step: what a still person's joints wobble
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

    def relabelled(self) -> "Poses":
        """Left and right labels swapped, positions kept: what a detector's left/right confusion gives."""
        idx = list(MIRROR)
        return Poses.of(self.norm[:, idx], self.w[:, idx])

    def pick(self, other: "Poses", rows: np.ndarray) -> "Poses":
        """These poses with the frames where ``rows`` is True taken from ``other``."""
        def sel(a, b):
            return np.where(rows.reshape(-1, *([1] * (a.ndim - 1))), b, a)
        return Poses(sel(self.norm, other.norm), sel(self.w, other.w), sel(self.dirs, other.dirs), sel(self.lw, other.lw))

    @property
    def valid(self) -> np.ndarray:
        return self.lw.sum(axis=1) > 0


def path_length(norm: np.ndarray, w: np.ndarray) -> float:
    """Total movement of the visible joints along a sequence, in torso lengths (mean over joints).

    Each joint's step counts above ``JITTER_PER_STEP`` only, so a still person's keypoint jitter adds
    up to little however long the window, while a slow single-limb movement still counts. A frame
    whose left and right labels are swapped against the previous one is not movement: each step is the
    smaller of the step as labelled and the step with the labels swapped."""
    if len(norm) < 2:
        return 0.0

    def steps(cur, cur_w):
        both = (cur_w > 0) & (w[:-1] > 0)
        step = np.maximum(np.linalg.norm(cur - norm[:-1], axis=2) - JITTER_PER_STEP, 0.0)
        return (step * both).sum(axis=1) / np.maximum(both.sum(axis=1), 1)

    idx = list(MIRROR)
    per_frame = np.minimum(steps(norm[1:], w[1:]), steps(norm[1:, idx], w[1:, idx]))
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
    """(Tp, Tr) confidence-weighted mean limb cosine, mapped to [0, 1] (the hot loop of scoring:
    written with in-place operations and matrix products instead of (Tp, Tr, L) temporaries)."""
    cos = p.dirs[:, None, :, 0] * r.dirs[None, :, :, 0]
    cos += p.dirs[:, None, :, 1] * r.dirs[None, :, :, 1]
    if COS_FLOOR:
        cos -= COS_FLOOR
        cos /= 1.0 - COS_FLOOR
    np.clip(cos, 0.0, 1.0, out=cos)
    cos *= p.lw[:, None, :]
    num = np.einsum("ijl,jl->ij", cos, r.lw)
    return num / np.maximum(p.lw @ r.lw.T, 1e-9)


def _corrections(p: Poses, r: Poses, path: np.ndarray, limbs: dict[str, float]) -> list[dict]:
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
    valid = p.valid  # the same frames are valid in every candidate
    costs, picks = [], []
    for cand, _ in candidates:
        sim = _similarity_matrix(cand, ref.cyclic)
        alt = sim_alt = None
        if LABEL_TOLERANT:
            alt = cand.relabelled()
            sim_alt = _similarity_matrix(alt, ref.cyclic)
        picks.append((sim, alt, sim_alt))
        # frames where nobody was seen are left out of the mean (cost 0, not counted), never scored as 0
        both = sim if sim_alt is None else np.maximum(sim, sim_alt)
        costs.append(np.where(valid[:, None], 1.0 - both, 0.0))
    totals, paths = subsequence_dtw_batch(np.stack(costs), prior)
    k = int(np.argmin(totals))
    cost, path = totals[k] * len(valid) / valid.sum(), paths[k]
    (cand, is_mirror), (sim, alt, sim_alt) = candidates[k], picks[k]
    if alt is not None:  # per frame, the labelling the alignment used
        rows = np.arange(len(path))
        cand = cand.pick(alt, sim_alt[rows, path] > sim[rows, path])
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
    corrections = _corrections(cand, r, path, limbs)
    if movement < 0.5:
        corrections.insert(0, {"joint": "body", "direction": "move", "message": "follow the guide's movement"})
    phase = (j1 % ref.length) / max(ref.length - 1, 1)
    return WindowResult(round(similarity, 4), round(pose_sim, 4), round(movement, 4), limbs, corrections,
                        round(float(phase), 4), is_mirror, (j0, j1))
