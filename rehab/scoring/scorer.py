"""The scorer: a window of the patient's keypoints against the guide's, on a common clock.

Per window: resample to ``RATE_HZ`` (on a clock anchored at the session's first frame, so a frame's row is the
same in every window that holds it); normalise poses; compare limb directions (invariant to position
and body size) weighted by confidence; align in time with slope-bounded subsequence DTW against the
reference (played cyclically, so a window may span the end of one repetition and the start of the
next); multiply by a movement factor (the patient's path length against the matched stretch of the
reference), so that holding a posture, or nobody in view, scores low.

Everything about one resampled frame (its four labellings, limb directions, similarity to every
reference sample, movement since the previous frame) is computed once (``Rows``) and kept by the
session's ``LiveScorer`` while the frame is in its window; ``score_windows`` then scores the windows of
many sessions in one vectorised call. A window's result does not depend on which others share the call.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from rehab.coco import LIMB_INDEX, LIMBS, MIRROR
from rehab.scoring.align import backtrack, ends_as_good_ahead, ranked_ends
from rehab.scoring.form import angle_features, encode
from rehab.scoring.kernels import similarity4, window_match
from rehab.scoring.model import PART_NAMES, RATE_HZ, Poses, ReferenceModel, movement_steps
from rehab.scoring.pose import limb_directions, normalize

SCORER_VERSION = "limbdtw-3.4.0"  # 3.1: takes and named mistakes (single-take scores as 3.0.0); 3.1.1: a
# phase step over half the cycle no longer passes the middle of a repetition (scores as 3.1.0); 3.2.0: the
# form costs a trunk leaning further than the guide's furthest (form.LEAN_WEIGHT); 3.3.0: the session
# similarity weighs each window by how much of the movement it has seen (session_weight), the window score
# by how alike the body parts share the movement with the guide (_share_agreement), the knee at equal error;
# 3.3.1: a `good` window's hints leave out the limbs' directions (LiveScorer._complete; scores as 3.3.0);
# 3.4.0: a phase matched at the start of a stretch of the guide that fits as well lets the next window's
# phase move on by that stretch (PHASE_TIE, phase_prior's ``spread``)
COS_FLOOR = 0.0  # limb cosine at or below this counts as 0 similarity, 1.0 as 1
MIN_VALID_FRACTION = 0.5
MOVE_TAU = 0.7
SHARE_POWER = 1.0  # the body parts' movement shares against the guide's (_share_agreement; docs/scoring.md)
SHARE_HINT_BELOW = 0.6  # below this agreement the hint names the body part moving most beyond its share
VEL_OFFSET, VEL_GAIN = 0.5, 1.0
PHASE_SLACK, PHASE_PENALTY = 6.0, 0.2
PHASE_TIE = 0.005  # ends of the alignment within this mean cost of the best are as likely (ends_as_good_ahead)
PHASE_ANCHOR_MIN = 0.6
LABEL_TOLERANT = True
MIN_WINDOW_FRACTION = 0.3  # the first score comes once 30% of a window has been seen
# Calibration (docs/scoring.md): the raw window similarity (movement match x form) is mapped piecewise
# linearly through (0, 0), (CALIBRATION_KNEE, GOOD) and (1, 1), so that GOOD means the same everywhere:
# the knee is where, pooled over every UI-PRMD movement, view and guide, correct repetitions by other
# people are told from incorrect ones with equal error rates. One map for every exercise.
GOOD = 0.75
CALIBRATION_KNEE = 0.30


# The session similarity is the mean of the window scores, each weighted by how much of the patient's
# movement it could judge: (the time seen since the patient came into view / one guide length) **
# SESSION_WEIGHT_POWER, capped at 1 and floored at SESSION_WEIGHT_FLOOR ** power. A window scored 0.3 s in
# has seen a fraction of one repetition: its form has seen little of the range and none of what comes
# later, so it counts for little; from one guide length on every window counts fully (a live session of
# many repetitions is the plain mean after its first one). The power was chosen by leaving one subject out
# (docs/scoring.md).
SESSION_WEIGHT_POWER = 2.0
SESSION_WEIGHT_FLOOR = 0.1


def session_weight(seen_ms: float, ref_length: int) -> float:
    """The weight of a window in the session similarity: ``seen_ms`` of capture time since the
    patient came into view, against a guide of ``ref_length`` grid rows (RATE_HZ)."""
    seen = seen_ms / (1000.0 * max(ref_length, 1) / RATE_HZ)
    return min(max(seen, SESSION_WEIGHT_FLOOR), 1.0) ** SESSION_WEIGHT_POWER


def calibrate(raw: float) -> float:
    raw = min(max(raw, 0.0), 1.0)
    if raw <= CALIBRATION_KNEE:
        return GOOD * raw / CALIBRATION_KNEE
    return GOOD + (1.0 - GOOD) * (raw - CALIBRATION_KNEE) / (1.0 - CALIBRATION_KNEE)


LIMB_NAMES = tuple(f"{b}" if a.split("_")[0] == b.split("_")[0] else f"{a}-{b}" for a, b in LIMBS)


# The four ways a patient frame is compared, variants 0-3: as labelled, with left/right labels swapped in
# place (a detector's confusion), mirrored (x flipped and labels swapped: the patient mirrors the guide),
# and mirrored with the labels swapped back (x flipped only). Candidate c uses variants 2c and 2c + 1.
_FLIP_X = np.array([-1.0, 1.0])


def _swapped_limbs() -> tuple[list[int], np.ndarray]:
    """For each limb, the limb it becomes when left and right labels are swapped, and +1/-1 for its
    direction (the limbs across the body, shoulder to shoulder and hip to hip, reverse)."""
    index, sign = [], []
    for a, b in LIMB_INDEX:
        ma, mb = MIRROR[a], MIRROR[b]
        if (ma, mb) in LIMB_INDEX:
            index.append(LIMB_INDEX.index((ma, mb)))
            sign.append(1.0)
        else:
            index.append(LIMB_INDEX.index((mb, ma)))
            sign.append(-1.0)
    return index, np.array(sign)


SWAP_LIMB, SWAP_SIGN = _swapped_limbs()


# Candidate c's two labellings as a permutation of the seen joints (limbs) and signs: variant v's joints
# are the seen ones at JOINT_PERM[v] with x times JOINT_FLIP[v]; its limbs the seen ones at LIMB_PERM[v]
# times LIMB_SIGN[v] (and the x flip). Negations and permutations are exact, so a variant made from the
# seen pose when it is needed is the same to the bit as one made and kept for every row.
_IDENTITY_J, _IDENTITY_L = np.arange(len(MIRROR)), np.arange(len(LIMB_INDEX))
JOINT_PERM = np.stack([_IDENTITY_J, list(MIRROR), list(MIRROR), _IDENTITY_J])
JOINT_FLIP = np.stack([np.ones(2), np.ones(2), _FLIP_X, _FLIP_X])
LIMB_PERM = np.stack([_IDENTITY_L, SWAP_LIMB, SWAP_LIMB, _IDENTITY_L])
LIMB_SIGN = np.stack([np.ones(len(LIMB_INDEX)), SWAP_SIGN, SWAP_SIGN, np.ones(len(LIMB_INDEX))])


@dataclass(frozen=True)
class Rows:
    """Resampled patient frames, everything the scorer needs about each of them, computed once."""

    norm: np.ndarray  # (T, 17, 2) normalised joints as seen (the other labellings: JOINT_PERM, JOINT_FLIP)
    w: np.ndarray  # (T, 17)
    dirs: np.ndarray  # (T, L, 2) limb directions as seen (the others: LIMB_PERM, LIMB_SIGN, JOINT_FLIP)
    lw: np.ndarray  # (T, L)
    # Per candidate c (as seen / mirrored) and guide sample j: the alignment's cost, 1 - the similarity
    # of c's better labelling, 0 where nobody was seen, (2, T, R); and whether that labelling is c's
    # second one, (2, T, R). (The alignment runs against the guide played twice, column j being sample
    # j % R: ``best_ends(..., cyclic=True)``.)
    cost: np.ndarray
    pick: np.ndarray
    step: np.ndarray  # (T,) movement from the previous frame (0 for the first one seen)
    parts: np.ndarray  # (T, len(PARTS)) each body part's movement from the previous frame (model.PARTS)
    valid: np.ndarray  # (T,) somebody was seen
    angle_codes: np.ndarray  # (T, F) uint8 joint angles for the form assessment (form.angle_features, encoded)

    def __len__(self) -> int:
        return self.step.shape[0]

    def __getitem__(self, sl: slice) -> "Rows":
        return Rows(self.norm[sl], self.w[sl], self.dirs[sl], self.lw[sl], self.cost[:, sl], self.pick[:, sl],
                    self.step[sl], self.parts[sl], self.valid[sl], self.angle_codes[sl])

    def last(self) -> tuple[np.ndarray, np.ndarray]:
        """The newest row's pose as seen (what the next row's movement is measured from)."""
        return self.norm[-1], self.w[-1]

    @staticmethod
    def concat(parts: list["Rows"]) -> "Rows":
        if len(parts) == 1:
            return parts[0]
        return Rows(*(np.concatenate([getattr(p, f) for p in parts], axis=_ROW_AXIS.get(f, 0)) for f in _ROW_FIELDS))

    @classmethod
    def compute(cls, kps: np.ndarray, ref: ReferenceModel, starts: list[int] | None = None,
                start_prev: list[tuple[np.ndarray, np.ndarray] | None] | None = None) -> "Rows":
        """Rows for resampled keypoints (N, 17, 3). The N rows may be several sessions' new rows
        back to back: ``starts`` are where each session's rows begin and ``start_prev`` the pose
        before each start (a session's last row, or None), so that every row's movement is from its
        own session's previous frame."""
        n = len(kps)
        norm, w = normalize(kps)
        dirs, lw = limb_directions(norm, w)
        # The other three labellings' limbs are the seen ones exactly (IEEE negation and a permutation
        # are exact): swapping the labels makes limb l the seen limb SWAP_LIMB[l] (reversed for the
        # limbs across the body), flipping x negates the x component, which a cosine with the guide's
        # limbs shares with the variant it was flipped from (similarity4 scores the four from two).
        sdirs = dirs[:, SWAP_LIMB] * SWAP_SIGN[:, None]
        slw = lw[:, SWAP_LIMB]
        sim = np.empty((4, n, ref.length))
        c = np.ascontiguousarray  # (the kernel is compiled for C-ordered arrays: one signature, cached)
        similarity4(c(dirs), c(lw), c(sdirs), c(slw), c(ref.sample_dirs), c(ref.sample_lw), sim)
        valid = lw.sum(axis=1) > 0
        cost = np.where(valid[None, :, None], 1.0 - np.maximum(sim[0::2], sim[1::2]), 0.0)
        prev_n, prev_w = np.zeros_like(norm), np.zeros_like(w)
        prev_n[1:], prev_w[1:] = norm[:-1], w[:-1]
        for s, prev in zip(starts or [0], start_prev or [None]):
            prev_n[s], prev_w[s] = prev if prev is not None else (0.0, 0.0)
        step, parts = movement_steps(norm, w, prev_n, prev_w)
        return cls(norm, w, dirs, lw, cost, sim[1::2] > sim[0::2], step, parts, valid, encode(angle_features(kps)))


_ROW_FIELDS = tuple(f.name for f in fields(Rows))
_ROW_AXIS = {"cost": 1, "pick": 1}  # (the rows' axis of each field: 0 for the others)


def _spare(like: Rows, n: int) -> Rows:
    """``n`` rows shaped like ``like``'s, not filled in."""
    def empty(a: np.ndarray, axis: int) -> np.ndarray:
        return np.empty(a.shape[:axis] + (n,) + a.shape[axis + 1:], a.dtype)

    return Rows(*(empty(getattr(like, f), _ROW_AXIS.get(f, 0)) for f in _ROW_FIELDS))


class RowStore:
    """One session's rows in arrays with room at the end: the rows held are a view of them, and each
    new row is copied in once, not again with the whole window at every score as ``Rows.concat``
    would (a window is ~30 rows, a score adds ~3-8). Rows a view handed out holds are never written
    again: rows are added after them, and a store that runs out of room moves to new arrays."""

    __slots__ = ("buf", "lo", "hi")

    def __init__(self) -> None:
        self.buf: Rows | None = None  # rows lo..hi are held, the ones after them are room
        self.lo = self.hi = 0

    def extend(self, keep_from: int | None, new: Rows | None) -> Rows | None:
        """Drops the rows before ``keep_from`` (an index into the rows held; None drops them all), adds
        ``new`` after the others, and returns the rows now held (None if there never were any)."""
        self.lo = self.hi if keep_from is None else min(self.lo + keep_from, self.hi)
        n = len(new) if new is not None else 0
        if n and (self.buf is None or self.hi + n > len(self.buf)):
            held = self.buf[self.lo:self.hi] if self.buf is not None else new[:0]
            size = len(held) + n
            self.buf = Rows.concat([held, new, _spare(new, max(2 * size, 64) - size)])
            self.lo, self.hi = 0, size
        elif n:
            room = self.buf[self.hi:self.hi + n]
            for name in _ROW_FIELDS:
                getattr(room, name)[...] = getattr(new, name)
            self.hi += n
        return None if self.buf is None else self.buf[self.lo:self.hi]


VEL_CHUNK = 5  # rows a joint's displacement is measured over (velocity agreement)


def _velocity_agreement(pn: np.ndarray, pw: np.ndarray, rn: np.ndarray, rw: np.ndarray,
                        chunk: int = VEL_CHUNK) -> np.ndarray:
    """Batched ``velocity_agreement``: patient and aligned guide joints (B, T, 17, 2), weights (B, T, 17).
    (The definition: ``_score_group`` computes it with ``kernels.window_match``, to the bit.)"""
    b, t = pn.shape[:2]
    dp, dr = np.diff(pn, axis=1), np.diff(rn, axis=1)
    w = pw[:, 1:] * pw[:, :-1] * rw[:, 1:] * rw[:, :-1]
    n = (t - 1) // chunk
    if n == 0:
        return np.zeros(b)
    cut = n * chunk
    cp = (dp[:, :cut] * w[:, :cut, :, None]).reshape(b, n, chunk, *dp.shape[2:]).sum(axis=2)
    cr = (dr[:, :cut] * w[:, :cut, :, None]).reshape(b, n, chunk, *dr.shape[2:]).sum(axis=2)
    norm_p, norm_r = np.linalg.norm(cp, axis=-1), np.linalg.norm(cr, axis=-1)
    cos = np.divide((cp * cr).sum(axis=-1), norm_p * norm_r, out=np.zeros_like(norm_r), where=norm_p * norm_r > 1e-12)
    num, den = (cos * norm_r).reshape(b, -1).sum(axis=1), norm_r.reshape(b, -1).sum(axis=1)
    return np.divide(num, den, out=np.zeros(b), where=den > 1e-12)


def velocity_agreement(p: Poses, r: Poses, path: np.ndarray, chunk: int = VEL_CHUNK) -> float:
    """How well the patient's joint motion points the same way as the guide's along the alignment:
    the cosine of joint displacements over short chunks, weighted by how much the guide moves there.
    Near 1 for the same movement, near 0 for an unrelated one (walking past), whatever the posture."""
    return float(_velocity_agreement(p.norm[None], p.w[None], r.norm[path][None], r.w[path][None], chunk)[0])


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
    phase_spread: int = 0  # guide samples after the matched end that fit as well (ends_as_good_ahead)


EMPTY = WindowResult(0.0, 0.0, 0.0, {}, [{"joint": "body", "direction": "visible",
                                         "message": "step into view of the camera"}], 0.0, False, (0, 0))


def _corrections(limbs: dict[str, float], dx, dy) -> list[dict]:
    """The (up to) three worst limbs below 0.8, with the direction the guide's limb points away from
    the patient's (``dx``, ``dy`` per limb: weighted mean of guide minus patient direction)."""
    out = []
    worst = [limbs.get(n, 1.0) for n in LIMB_NAMES]
    for li in sorted(range(len(LIMB_NAMES)), key=worst.__getitem__)[:3]:  # (a stable sort: ties by limb order)
        name = LIMB_NAMES[li]
        if name not in limbs or limbs[name] >= 0.8:
            continue
        # image y grows downwards: a reference limb pointing further up means "raise"
        if abs(dy[li]) >= abs(dx[li]):
            direction = "raise" if dy[li] < 0 else "lower"
        else:
            direction = "move outwards" if dx[li] * (1 if "left" in name else -1) > 0 else "move inwards"
        label = name.replace("_", " ")
        out.append({"joint": name, "direction": direction, "message": f"{label}: {direction}"})
    return out


def phase_prior(ref_len: int, prev_phase_idx, advanced, spread=0) -> np.ndarray | None:
    """End penalty over the doubled reference's columns: after ``advanced`` samples at 0.5x-2x speed
    the phase should have moved on by 0.5*advanced .. 2*advanced (+ slack) from the last window's, or
    by up to ``spread`` samples more where the last window's phase was the start of a stretch of the guide
    that fitted as well (its ``phase_spread``: the patient may have been anywhere in it; without it a
    patient faster than the guide through a middle whose poses look alike fell behind for good, and the
    repetition's end was never reached). Scalars give (2R,); arrays of B windows' phases, advances and
    spreads give (B, 2R) in one pass."""
    if prev_phase_idx is None:
        return None
    cols = np.arange(2 * ref_len)
    prev, advanced = np.asarray(prev_phase_idx)[..., None], np.asarray(advanced, dtype=np.float64)[..., None]
    ahead = (cols - prev) % ref_len
    lo, hi = 0.5 * advanced - PHASE_SLACK, 2.0 * advanced + PHASE_SLACK
    outside = np.where(ahead < lo, np.minimum(lo - ahead, ref_len - ahead + lo), np.maximum(ahead - hi, 0))
    outside = np.minimum(outside, ref_len - outside)
    # the spread moves the band's far edge only: phases ahead of it are that much nearer, those behind
    # the last phase as far as before
    fwd = ahead - hi
    outside = np.where((fwd > 0) & (fwd <= ref_len - fwd),
                       np.maximum(fwd - np.asarray(spread, dtype=np.float64)[..., None], 0), outside)
    return PHASE_PENALTY * np.clip(outside, 0, None) / ref_len


def _share_agreement(own: np.ndarray, guide: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How alike the patient's movement over each window is shared among the body parts and the
    guide's over the stretch it was matched to, own and guide (B, len(PARTS)) travel per part:
    (1 - the total variation distance of the two shares) ** SHARE_POWER, 1 where either hardly moves
    (the movement factor judges that); and the patient's share of each part less the guide's (B,
    len(PARTS)). Somebody waving their arms where the guide lunges moves the wrong parts however well
    single poses match; the shares are the same for any body size, camera distance, speed and range of
    motion (docs/scoring.md)."""
    own_t, guide_t = own.sum(axis=1), guide.sum(axis=1)
    moved = (own_t > 1e-6) & (guide_t > 1e-6)
    diff = own / np.where(moved, own_t, 1.0)[:, None] - guide / np.where(moved, guide_t, 1.0)[:, None]
    tv = 0.5 * np.abs(diff).sum(axis=1)
    return np.where(moved, np.clip(1.0 - tv, 0.0, 1.0) ** SHARE_POWER, 1.0), diff


def score_windows(ref: ReferenceModel, windows: list[Rows], priors: list[np.ndarray | None],
                  mirror_mode: str = "auto") -> list[WindowResult]:
    """Scores windows of patient rows against the cyclic reference, many at once (windows with the
    same number of rows share every numpy call). ``priors``: for each window, None or the last anchored
    phase and the reference samples advanced since (``phase_prior``'s arguments)."""
    out: list[WindowResult] = [EMPTY] * len(windows)
    groups: dict[int, list[int]] = {}
    for i, rows in enumerate(windows):
        if len(rows) >= 4 and rows.valid.mean() >= MIN_VALID_FRACTION:
            groups.setdefault(len(rows), []).append(i)
    for idx in groups.values():
        for i, result in zip(idx, _score_group(ref, [windows[i] for i in idx], [priors[i] for i in idx], mirror_mode)):
            out[i] = result
    return out


def _score_group(ref: ReferenceModel, ws: list[Rows], priors: list, mirror_mode: str) -> list[WindowResult]:
    b, t = len(ws), len(ws[0])
    n_cand = 2 if mirror_mode == "auto" else 1
    valid = np.stack([w.valid for w in ws])  # (B, T)
    # per frame the better labelling; frames where nobody was seen cost 0 and are not counted in the mean
    cost = np.stack([w.cost[:n_cand] for w in ws]).reshape(b * n_cand, t, -1)
    penalty = None
    have = [i for i, p in enumerate(priors) if p is not None]
    if have:
        penalty = np.zeros((b, 2 * ref.length))
        penalty[have] = phase_prior(ref.length, [priors[i][0] for i in have], [priors[i][1] for i in have],
                                    [priors[i][2] for i in have])
        penalty = np.repeat(penalty, n_cand, axis=0)
    total, end, move, ranked = ranked_ends(cost, penalty, cyclic=True)  # against the cyclic reference
    totals = total.reshape(b, n_cand)
    k = np.argmin(totals, axis=1)  # the candidate (as seen / mirrored) with the lower cost
    chosen = np.arange(b) * n_cand + k
    spread = ends_as_good_ahead(ranked[chosen], end[chosen], PHASE_TIE)
    path = backtrack(move[chosen], end[chosen])  # (B, T)
    finite = np.isfinite(totals[np.arange(b), k])
    path[~finite] = 0
    bb, tt = np.arange(b)[:, None], np.arange(t)[None, :]
    col = path % ref.length
    var = 2 * k[:, None] + np.stack([w.pick for w in ws])[bb, k[:, None], tt, col]  # per frame, the labelling used
    cost_mean = totals[np.arange(b), k] * t / valid.sum(axis=1)
    pose_sim = np.clip(1.0 - cost_mean, 0.0, 1.0)
    j0, j1 = path[:, 0], path[:, -1]
    ref_travel = ref.cyclic_travel[j1] - ref.cyclic_travel[j0]
    own_travel = np.stack([w.step[1:] for w in ws]).sum(axis=1)
    # Moving at least MOVE_TAU as much as the matched stretch of the guide earns the full factor;
    # moving more is not rewarded here (it shows as a pose mismatch instead).
    movement = np.clip(own_travel / np.maximum(MOVE_TAU * ref_travel, 1e-6), 0.0, 1.0)
    # per limb and the joints' motion, each row in the labelling the alignment chose (one compiled pass)
    r = ref.cyclic
    n_limbs = len(LIMB_NAMES)
    limb_sim, dx, dy = np.empty((b, n_limbs)), np.empty((b, n_limbs)), np.empty((b, n_limbs))
    limb_seen = np.empty((b, n_limbs), np.bool_)
    num, den = np.empty((2, b, (t - 1) // VEL_CHUNK * 17))
    c = np.ascontiguousarray  # (one compiled signature: kernels.warm_up's)
    window_match(c(np.stack([w.norm for w in ws])), c(np.stack([w.w for w in ws])), c(np.stack([w.dirs for w in ws])),
                 c(np.stack([w.lw for w in ws])), c(var), c(path), JOINT_PERM, JOINT_FLIP, LIMB_PERM, LIMB_SIGN,
                 c(r.norm), c(r.w), c(r.dirs), c(r.lw), COS_FLOOR, VEL_CHUNK, limb_sim, dx, dy, limb_seen, num, den)
    num, den = num.sum(axis=1), den.sum(axis=1)  # (as _velocity_agreement: numpy's sums, to the bit)
    agreement = np.divide(num, den, out=np.zeros(b), where=den > 1e-12)
    shares, share_diff = _share_agreement(np.stack([w.parts[1:] for w in ws]).sum(axis=1),
                                          ref.cyclic_part_travel[j1] - ref.cyclic_part_travel[j0])
    # the body part moving most beyond its share of the guide's movement (named when the shares differ)
    excess = np.argmax(share_diff, axis=1)
    similarity = pose_sim * movement * np.clip(VEL_OFFSET + VEL_GAIN * agreement, 0.0, 1.0) * shares
    results = []
    limb_rows, seen_rows, dx, dy = limb_sim.tolist(), limb_seen.tolist(), dx.tolist(), dy.tolist()
    for i in range(b):
        limbs = {name: round(v, 4) for name, v, seen in zip(LIMB_NAMES, limb_rows[i], seen_rows[i]) if seen}
        corrections = _corrections(limbs, dx[i], dy[i])
        if movement[i] < 0.5:
            corrections.insert(0, {"joint": "body", "direction": "move", "message": "follow the guide's movement"})
        elif shares[i] < SHARE_HINT_BELOW:
            part = PART_NAMES[excess[i]]
            corrections.insert(0, {"joint": part, "direction": "steadier",
                                   "message": f"follow the guide's movement: it moves the {part} less"})
        phase = (int(j1[i]) % ref.length) / max(ref.length - 1, 1)
        results.append(WindowResult(round(float(similarity[i]), 4), round(float(pose_sim[i]), 4),
                                    round(float(movement[i]), 4), limbs, corrections, round(float(phase), 4),
                                    bool(k[i] == 1), (int(j0[i]), int(j1[i])), int(spread[i])))
    return results
