"""The guide as the scorer holds it (``ReferenceModel``): its first take resampled to ``RATE_HZ``,
normalised, played cyclically, with the movement along it; and the form model of all its takes and
recorded mistakes (form.py). Built once per guide, shared by every session scoring against it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rehab.coco import MIRROR
from rehab.reference import Reference
from rehab.scoring.form import FormModel, angle_features
from rehab.scoring.pose import limb_directions, normalize, resample, to_array

RATE_HZ = 30.0
JITTER_PER_STEP = 0.008  # torso lengths per joint and 1/RATE_HZ step: what a still person's joints wobble


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


# Body parts whose shares of the movement are compared (COCO-17, left and right together: the same for a
# mirrored patient or one using the other arm): head, shoulders, elbows, wrists, hips, knees, ankles.
PARTS = ((0, 1, 2, 3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
PART_NAMES = ("head", "shoulders", "elbows", "wrists", "hips", "knees", "ankles")
_PART_OF = np.zeros((17, len(PARTS)))
for _p, _joints in enumerate(PARTS):
    _PART_OF[list(_joints), _p] = 1.0


def movement_steps(norm: np.ndarray, w: np.ndarray, prev_norm: np.ndarray,
                   prev_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Movement of the visible joints from each previous pose to each pose (N,), in torso lengths
    (mean over the joints seen in both), and each body part's (``PARTS``) movement, the mean over its
    joints seen in both (N, len(PARTS)).

    Each joint's step counts above ``JITTER_PER_STEP`` only, so a still person's keypoint jitter adds
    up to little however long the window, while a slow single-limb movement still counts. A frame
    whose left and right labels are swapped against the previous one is not movement: each step is the
    smaller of the step as labelled and the step with the labels swapped, and the parts' steps are
    those of the labelling that gave it (so the steps are the same for every labelling and for the
    mirror image)."""
    def steps(cur, cur_w):
        both = (cur_w > 0) & (prev_w > 0)
        step = np.maximum(np.linalg.norm(cur - prev_norm, axis=2) - JITTER_PER_STEP, 0.0) * both
        return step.sum(axis=1) / np.maximum(both.sum(axis=1), 1), step, both

    idx = list(MIRROR)
    (a, a_step, a_both), (b, b_step, b_both) = steps(norm, w), steps(norm[:, idx], w[:, idx])
    move = np.minimum(a, b)
    swapped = b < a
    step = np.where(swapped[:, None], b_step, a_step)
    both = np.where(swapped[:, None], b_both, a_both)
    return move, (step @ _PART_OF) / np.maximum(both @ _PART_OF, 1.0)


def _on_grid(frames: list, fps: float) -> np.ndarray:
    """A recording's keypoints (frames at ``fps``) resampled to RATE_HZ, (T, 17, 3)."""
    kps = to_array(frames)
    ts = np.arange(len(kps)) * 1000.0 / fps
    return resample(ts, kps, RATE_HZ, 0.0, ts[-1])


@dataclass(frozen=True)
class ReferenceModel:
    reference_id: str
    poses: Poses  # one repetition, resampled
    cyclic: Poses  # two repetitions back to back
    cyclic_travel: np.ndarray  # movement from the cyclic reference's start to each sample (2L,)
    # each body part's (PARTS) movement from the cyclic reference's start to each sample (2L, len(PARTS)):
    # how the guide's movement is shared among head, arms and legs
    cyclic_part_travel: np.ndarray
    form: FormModel  # the guide's range of motion per joint angle (rehab/scoring/form.py)

    @classmethod
    def build(cls, ref: Reference) -> "ReferenceModel":
        """The first take is what windows are aligned with; every take and recorded mistake shapes the
        form model (rehab/scoring/form.py)."""
        kps = _on_grid(ref.frames, ref.fps)
        poses = Poses.of(*normalize(kps))
        double = Poses.of(np.concatenate([poses.norm] * 2), np.concatenate([poses.w] * 2))
        steps, part_steps = movement_steps(double.norm[1:], double.w[1:], double.norm[:-1], double.w[:-1])
        form = FormModel.of(angle_features(kps), [angle_features(_on_grid(t.frames, t.fps)) for t in ref.more_takes],
                            [(t.label, angle_features(_on_grid(t.frames, t.fps))) for t in ref.mistakes])
        return cls(ref.id, poses, double, np.concatenate([[0.0], np.cumsum(steps)]),
                   np.concatenate([np.zeros((1, len(PARTS))), np.cumsum(part_steps, axis=0)]), form)

    @property
    def length(self) -> int:
        return len(self.poses.norm)

    @property
    def sample_dirs(self) -> np.ndarray:
        """The limbs of one repetition (R, L, 2), as the cyclic reference has them (taken from it: numpy's
        vectorised square root may round a last bit differently for an array of another length)."""
        return self.cyclic.dirs[: self.length]

    @property
    def sample_lw(self) -> np.ndarray:
        return self.cyclic.lw[: self.length]
