"""Form: how the patient's range of motion compares with the guide's, joint angle by joint angle.

The window score (``scorer.py``) says whether the patient does the guide's movement now. It cannot
see what a physiotherapist looks at over a whole repetition: a joint the exercise keeps still that
moves anyway (the trunk leaning, an elbow bending in a shoulder exercise: compensation), and a joint
the exercise moves that does not get as far (a squat not deep enough). This module measures both,
from angles only, so body proportions, height and camera distance drop out:

- ``angle_features``: per frame, 15 angles in radians, each the same under mirroring and under a
  detector's left/right label swap (for paired joints, the smaller and the larger of left and right):
  elbow and knee flexion, the unsigned inclination of upper arms, forearms, thighs and lower legs,
  the trunk's lean from vertical, and the tilt of the shoulder and hip lines.
- ``FormModel.of(guide features)``: the guide's range per angle (5th to 95th percentile over its
  repetition) and how much each angle *moves* in this exercise (``moving`` in [0, 1], range over
  ``MOVING_RAD``): learned from the guide, no parameter per exercise.
- ``FormModel.assess(recent features)``: over the patient's last ``HISTORY_FACTOR`` guide lengths,
  ``excess`` (range beyond the guide's, weighted by how still the guide keeps that angle),
  ``deficit`` (range short of the guide's, weighted by how much it moves; counted once a whole
  guide length has been seen) and ``lean`` (the trunk leaning further from upright than the guide
  ever does: a level, not a range, so a patient who leans the whole time is seen too).
  ``factor = exp(-(excess + DEFICIT_WEIGHT * deficit + LEAN_WEIGHT * lean) / TAU)``.

Constants were chosen on UI-PRMD across subjects (docs/scoring.md): the guide is one subject's
repetition, the attempts are the other subjects'.
"""
from __future__ import annotations

import functools

from dataclasses import dataclass

import numpy as np

from rehab.coco import INDEX
from rehab.scoring import kernels

FEATURES = ("elbows (the straighter)", "elbows (the more bent)", "knees (the straighter)", "knees (the more bent)",
            "upper arms (lower)", "upper arms (higher)", "forearms (lower)", "forearms (higher)",
            "thighs (lower)", "thighs (higher)", "lower legs (lower)", "lower legs (higher)",
            "trunk", "shoulder line", "hip line")
LABELS = ("elbows", "elbows", "knees", "knees", "upper arms", "upper arms", "forearms", "forearms",
          "thighs", "thighs", "lower legs", "lower legs", "trunk", "shoulders", "hips")
N_FEATURES = len(FEATURES)
TRUNK = FEATURES.index("trunk")
MIN_CONF = 0.3
MOVING_RAD = 1.0  # an angle whose guide range reaches this (57 degrees) counts fully as moving
DEFICIT_WEIGHT = 0.3
TAU = 2.0  # radians of summed range error that bring the factor to 1/e
NOISE_SLACK = 8.0  # excess range below this many times an angle's jitter is forgiven
DEFICIT_SLACK = 0.25  # a range down to 75 % of the guide's is not short (another camera angle foreshortens)
LEAN_WEIGHT = 8.0  # form cost per radian the trunk leans further than the guide's furthest (docs/scoring.md)
MISTAKE_WEIGHT = 3.0  # form cost per radian of form cost an attempt is nearer a recorded mistake than every correct take
MISTAKE_NAME_MIN = 0.5  # radians nearer a mistake than every correct take before the hint names it (across
# people a smaller margin names it for too many correct repetitions: docs/scoring.md)
HISTORY_FACTOR = 1.5  # the patient's range is measured over this many guide lengths
MIN_ROWS = 8  # fewer frames with a pose than this: no judgement yet (factor 1)
PCT = (5.0, 95.0)


def _angle_at(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Unsigned angle at b between b->a and b->c, (T,)."""
    v1, v2 = a - b, c - b
    return np.abs(np.arctan2(v1[:, 0] * v2[:, 1] - v1[:, 1] * v2[:, 0], (v1 * v2).sum(axis=1)))


def _inclination(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Unsigned angle of a->b from straight down (image y grows downwards), (T,): the same mirrored."""
    v = b - a
    return np.abs(np.arctan2(v[:, 0], v[:, 1]))


def angle_features(kps: np.ndarray) -> np.ndarray:
    """(T, 17, 3) keypoints -> (T, N_FEATURES) angles in radians; NaN where a joint is not seen."""
    xy = kps[..., :2]
    seen = kps[..., 2] >= MIN_CONF
    t = len(kps)

    def j(name):
        return xy[:, INDEX[name]]

    def ok(*names):
        return np.logical_and.reduce([seen[:, INDEX[n]] for n in names])

    def pair(fn, a, b, c=None):
        out = []
        for side in ("left_", "right_"):
            names = [side + a, side + b] + ([side + c] if c else [])
            v = fn(*(j(n) for n in names))
            out.append(np.where(ok(*names), v, np.nan))
        lo, hi = np.fmin(out[0], out[1]), np.fmax(out[0], out[1])
        both = ~np.isnan(out[0]) & ~np.isnan(out[1])
        return np.where(both, lo, np.nan), np.where(both, hi, np.nan)

    cols = []
    elbow = pair(_angle_at, "shoulder", "elbow", "wrist")
    knee = pair(_angle_at, "hip", "knee", "ankle")
    # flexion: pi - interior angle, so "the more bent" is the larger number
    cols += [np.pi - elbow[1], np.pi - elbow[0], np.pi - knee[1], np.pi - knee[0]]
    for a, b in (("shoulder", "elbow"), ("elbow", "wrist"), ("hip", "knee"), ("knee", "ankle")):
        cols += list(pair(_inclination, a, b))
    hips_ok, sho_ok = ok("left_hip", "right_hip"), ok("left_shoulder", "right_shoulder")
    mid_hip = (j("left_hip") + j("right_hip")) / 2
    mid_sho = (j("left_shoulder") + j("right_shoulder")) / 2
    cols.append(np.where(hips_ok & sho_ok, np.pi - _inclination(mid_hip, mid_sho), np.nan))  # 0 = upright
    for a, b, good in (("left_shoulder", "right_shoulder", sho_ok), ("left_hip", "right_hip", hips_ok)):
        # tilt from horizontal, the same whichever side is labelled left
        cols.append(np.where(good, np.abs(np.abs(_inclination(j(b), j(a))) - np.pi / 2), np.nan))
    out = np.stack(cols, axis=1) if t else np.zeros((0, N_FEATURES))
    return out


# The patient's recent angles are kept as one byte each (0.7 degrees a step, 255 = not seen): a session's
# form history (~135 rows x 15 angles) fits in the window snapshot a restarted processor restores, and a
# restored scorer decodes exactly what an uninterrupted one holds.
_STEP = np.pi / 254
UNSEEN = 255


def encode(feats: np.ndarray) -> np.ndarray:
    """(T, F) radians (NaN = not seen) -> (T, F) uint8."""
    unseen = np.isnan(feats)
    codes = np.clip(np.round(np.where(unseen, 0.0, feats) / _STEP), 0, 254).astype(np.uint8)
    codes[unseen] = UNSEEN
    return codes


def decode(codes: np.ndarray) -> np.ndarray:
    return np.where(codes == UNSEEN, np.nan, codes.astype(np.float64) * _STEP)


def nanquantiles(x: np.ndarray, qs: tuple[float, ...]) -> np.ndarray:
    """Per column of ``x`` (T, F), the quantiles ``qs`` (fractions) of its non-NaN values with linear
    interpolation (``np.percentile``'s default), in one vectorised pass; NaN for a column with no value.
    (np.nanpercentile loops over columns in Python: 15 calls a score cost more than the scoring.)"""
    t, f = x.shape
    out = np.full((len(qs), f), np.nan)
    if t == 0:
        return out
    s = np.sort(x, axis=0)  # NaN sorts last
    n = (~np.isnan(x)).sum(axis=0)
    ok = n > 0
    cols = np.arange(f)
    for i, q in enumerate(qs):
        pos = (np.maximum(n, 1) - 1) * q
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
        frac = pos - lo
        v = s[lo, cols] * (1.0 - frac) + s[hi, cols] * frac
        out[i] = np.where(ok, v, np.nan)
    return out


def jitter(feats: np.ndarray) -> np.ndarray:
    """Per angle, the median distance of a frame from the midpoint of its neighbours, (F,): what a
    detector's frame-to-frame noise adds (a smooth movement at 30 Hz adds almost nothing)."""
    if len(feats) < 3:
        return np.zeros(feats.shape[1])
    d = np.abs(feats[1:-1] - (feats[:-2] + feats[2:]) / 2)
    return np.nan_to_num(nanquantiles(d, (0.5,))[0], nan=0.0)


def ranges(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Low and high (5th, 95th percentile) of each angle over the frames where it is seen; NaN where an
    angle was seen in fewer than 2 frames."""
    q = nanquantiles(feats, (PCT[0] / 100.0, PCT[1] / 100.0))
    few = (~np.isnan(feats)).sum(axis=0) < 2
    q[:, few] = np.nan
    return q[0], q[1]


@dataclass(frozen=True)
class FormResult:
    factor: float  # in (0, 1]; 1 when nothing is off or too little has been seen yet
    excess: np.ndarray  # (F,) radians of range beyond the guide's, weighted by how still the guide keeps it
    deficit: np.ndarray  # (F,) radians of range short of the guide's, weighted by how much it moves
    mistake: str | None = None  # the recorded mistake the attempt is nearer than every correct take, named
    # when it is by at least MISTAKE_NAME_MIN
    mistake_margin: float = 0.0  # how much nearer (radians of form cost, >= 0; it costs points from 0 on)
    reach: float = 1.0  # how far the patient's ranges reach the guide's in the angles it moves: sum over angles
    # of moving x min(range, guide's) / moving x guide's, in [0, 1] (a repetition needs REACH_MIN to count)
    lean: float = 0.0  # radians the trunk leans further from upright than the guide's furthest (beyond jitter)

    def corrections(self, limit: int = 2, min_rad: float = 0.12) -> list[dict]:
        """The worst angles as hints, e.g. 'trunk: keep it still, as the guide does'; a recorded mistake
        the attempt resembles first, by its name."""
        out = []
        if self.mistake is not None:
            out.append({"joint": "mistake", "direction": "avoid", "mistake": self.mistake,
                        "message": f"looks like a recorded mistake: {self.mistake}"})
        cost = self.excess + DEFICIT_WEIGHT * self.deficit
        cost[TRUNK] += LEAN_WEIGHT * self.lean
        named = set()
        for f in np.argsort(-cost, kind="stable"):
            if cost[f] < min_rad or len(out) >= limit:
                break
            label = LABELS[f]
            if label in named:
                continue
            named.add(label)
            if f == TRUNK and self.lean > 0 and self.lean >= self.excess[f]:  # (radians of level vs of range)
                out.append({"joint": label, "direction": "upright",
                            "message": "trunk: lean no further than the guide does"})
            elif self.excess[f] >= DEFICIT_WEIGHT * self.deficit[f]:
                out.append({"joint": label, "direction": "keep still",
                            "message": f"{label}: keep them steadier, as the guide does" if label.endswith("s")
                            and label not in ("shoulders", "hips") else f"{label}: keep it steadier, as the guide does"})
            else:
                out.append({"joint": label, "direction": "full range",
                            "message": f"{label}: move through the guide's full range"})
        return out


NEUTRAL = FormResult(1.0, np.zeros(N_FEATURES), np.zeros(N_FEATURES), reach=0.0)  # (nothing seen: no reach)


@dataclass(frozen=True)
class FormModel:
    """The guide's ranges of motion. ``lo``/``hi``/``length`` are the first take's; with several correct
    takes the range an attempt is held to is their mean (``rom``: measured on UI-PRMD, holding attempts
    to the widest and narrowest take's range instead lost AUC, docs/scoring.md), and their variation
    tells a recorded mistake from a correct execution: an attempt is judged a mistake only when nearer
    to it than to every correct take. ``takes``: each correct take's (lo, hi, moving); ``mistakes``: each recorded mistake's
    (label, lo, hi, moving), a label once per recording of it."""

    lo: np.ndarray
    hi: np.ndarray
    moving: np.ndarray  # (F,) in [0, 1]
    length: int  # the guide's repetition, in rows
    rom: np.ndarray | None = None  # (F,) the correct takes' mean range; None: one take (hi - lo)
    takes: tuple = ()
    mistakes: tuple = ()

    @functools.cached_property
    def _guide_range(self) -> np.ndarray:
        """The range an attempt is held to per angle (NaN where the guide never saw it: masked out)."""
        return self.hi - self.lo if self.rom is None else np.nan_to_num(self.rom, nan=0.0)

    @functools.cached_property
    def _lean_limit(self) -> float:
        """How far from upright the trunk may lean: the furthest any correct take leans (their natural
        variation is the tolerance); NaN where no take saw the trunk (then nothing is judged)."""
        his = [t[1][TRUNK] for t in self.takes] or [self.hi[TRUNK]]
        return float(np.nanmax(his)) if not np.isnan(his).all() else float("nan")

    @classmethod
    def of(cls, feats: np.ndarray, more_takes: list[np.ndarray] = (),
           mistakes: list[tuple[str, np.ndarray]] = ()) -> "FormModel":
        """From the first take's angles (T, F), more correct takes' and named mistakes' angles."""
        lo, hi = ranges(feats)
        rom = np.nan_to_num(hi - lo, nan=0.0)
        if not more_takes and not mistakes:
            return cls(lo, hi, np.clip(rom / MOVING_RAD, 0.0, 1.0), len(feats))
        takes = [(lo, hi)] + [ranges(f) for f in more_takes]
        roms = np.stack([h - lo_ for lo_, h in takes])  # NaN where a take never saw the angle
        seen = ~np.isnan(roms)
        rom = np.where(seen.any(axis=0), np.nansum(roms, axis=0) / np.maximum(seen.sum(axis=0), 1), np.nan)
        moving = np.clip(np.nan_to_num(rom, nan=0.0) / MOVING_RAD, 0.0, 1.0)

        def own(r):  # a recording's ranges with its own moving weights
            return (*r, np.clip(np.nan_to_num(r[1] - r[0], nan=0.0) / MOVING_RAD, 0.0, 1.0))

        return cls(lo, hi, moving, len(feats), rom, tuple(own(t) for t in takes),
                   tuple((label, *own(ranges(f))) for label, f in mistakes))

    @property
    def history_rows(self) -> int:
        return max(int(np.ceil(HISTORY_FACTOR * self.length)), 30)

    def assess(self, feats: np.ndarray) -> FormResult:
        """The patient's recent angles (H, F) in radians, oldest first, against the guide's ranges."""
        seen = ~np.isnan(feats).all(axis=1)
        if seen.sum() < MIN_ROWS:
            return NEUTRAL
        lo, hi = ranges(feats[seen])
        return self._judge(lo, hi, jitter(feats[seen]), int(seen.sum()))

    def assess_codes(self, codes: np.ndarray) -> FormResult:
        """``assess(decode(codes))`` for the angles as ``encode`` keeps them, (H, F) uint8 (what the live
        scorer holds), with the quantiles and jitter in one compiled pass (``kernels.form_stats``)."""
        return self.assess_codes_many([codes])[0]

    def assess_codes_many(self, windows: list[np.ndarray]) -> list[FormResult]:
        """``assess_codes`` of many windows' angle codes, the judgement vectorised over them (the live
        processor scores many sessions at once); a window's result does not depend on the others."""
        k = len(windows)
        lo, hi, jit = np.empty((k, N_FEATURES)), np.empty((k, N_FEATURES)), np.empty((k, N_FEATURES))
        n_seen = [kernels.form_stats(np.ascontiguousarray(codes, dtype=np.uint8), UNSEEN, _STEP,
                                     PCT[0] / 100.0, PCT[1] / 100.0, lo[i], hi[i], jit[i]) if len(codes) else 0
                  for i, codes in enumerate(windows)]
        out: list[FormResult] = [NEUTRAL] * k
        judged = [i for i, n in enumerate(n_seen) if n >= MIN_ROWS]
        if judged:
            for i, result in zip(judged, self._judge_many(lo[judged], hi[judged], jit[judged],
                                                          [n_seen[i] for i in judged])):
                out[i] = result
        return out

    def _judge_many(self, lo: np.ndarray, hi: np.ndarray, jit: np.ndarray, n_seen: list[int]) -> list[FormResult]:
        """B windows' angle ranges (``lo``, ``hi`` (B, F); NaN where unknown) and jitter (``jit``) over
        ``n_seen`` rows each, against the guide's (vectorised over the windows; each row's result is the
        same as alone)."""
        both = ~np.isnan(lo) & ~np.isnan(self.lo)
        g = np.where(both, self._guide_range, 0.0)
        # range the detector's own jitter explains is not movement (a clean sensor: ~0; a phone camera's
        # BlazePose: ~0.1 rad on the elbows); jit is finite or NaN (an angle not seen)
        slack = NOISE_SLACK * jit
        slack[np.isnan(slack)] = 0.0
        # a range is short only once (nearly) a whole repetition has been seen, and by more than a camera
        # at another angle foreshortens it
        coverage = [min(max((n / max(self.length, 1) - 0.5) / 0.5, 0.0), 1.0) for n in n_seen]
        a = np.where(both, hi - lo, 0.0)
        excess, deficit = _range_errors(a, g, self.moving, slack)
        deficit = deficit * np.array(coverage)[:, None]
        wanted = (self.moving * g).sum(axis=1)
        reached = (self.moving * np.minimum(a, g)).sum(axis=1)
        # the trunk leaning further than the guide ever does (a level: leaning the whole time shows no range)
        lean = np.maximum(np.nan_to_num(hi[:, TRUNK] - self._lean_limit, nan=0.0) - slack[:, TRUNK], 0.0)
        costs = excess.sum(axis=1) + DEFICIT_WEIGHT * deficit.sum(axis=1) + LEAN_WEIGHT * lean
        out = []
        for i, cov in enumerate(coverage):
            reach = float(reached[i] / wanted[i]) if wanted[i] > 0 else 1.0
            label, margin = None, 0.0
            if self.mistakes and cov > 0.0:
                label, margin = self._nearest_mistake(lo[i], hi[i], slack[i])
            factor = float(np.exp(-(costs[i] + MISTAKE_WEIGHT * margin * cov) / TAU))
            named = label if margin * cov >= MISTAKE_NAME_MIN else None
            out.append(FormResult(factor, excess[i], deficit[i], named, round(float(margin), 4), reach,
                                  float(lean[i])))
        return out

    def _judge(self, lo: np.ndarray, hi: np.ndarray, jit: np.ndarray, n_seen: int) -> FormResult:
        """The patient's angle ranges (``lo``, ``hi``; NaN where unknown) and jitter over ``n_seen`` rows
        against the guide's."""
        return self._judge_many(lo[None], hi[None], jit[None], [n_seen])[0]

    def _nearest_mistake(self, lo: np.ndarray, hi: np.ndarray, slack: np.ndarray) -> tuple[str | None, float]:
        """The recorded mistake the patient's ranges are nearest (the form cost against its recording, as
        against a guide), when nearer than to every correct take, and by how much (radians)."""
        d_ok = min(range_cost(lo, hi, take, slack) for take in self.takes)
        label, d_bad = min(((m[0], range_cost(lo, hi, m[1:], slack)) for m in self.mistakes), key=lambda x: x[1])
        return (label, d_ok - d_bad) if d_bad < d_ok else (None, 0.0)


def _range_errors(a: np.ndarray, g: np.ndarray, moving: np.ndarray, slack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per angle, range ``a`` beyond the guide's ``g`` (weighted by how still the guide keeps it) and
    short of it (weighted by how much it moves)."""
    excess = np.maximum(a - g - slack, 0.0) * (1.0 - moving)
    deficit = np.maximum(g * (1.0 - DEFICIT_SLACK) - a, 0.0) * moving
    return excess, deficit


def range_cost(lo: np.ndarray, hi: np.ndarray, take: tuple, slack: np.ndarray) -> float:
    """The form cost of angle ranges (``lo``, ``hi``) against one recording's (``take``: its lo, hi and
    moving weights), over the angles both saw."""
    t_lo, t_hi, moving = take
    both = ~np.isnan(lo) & ~np.isnan(t_lo)
    g = np.where(both, t_hi - t_lo, 0.0)
    excess, deficit = _range_errors(np.where(both, hi - lo, 0.0), g, moving, slack)
    return float(excess.sum() + DEFICIT_WEIGHT * deficit.sum())
