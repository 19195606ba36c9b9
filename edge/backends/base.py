"""The small interface every pose backend implements, and what a record may carry of what it finds."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import numpy as np


class BackendError(RuntimeError):
    """A backend cannot be built or run; the message tells the user what to do."""


@dataclass(frozen=True)
class Person:
    """One detected person: COCO-17 ``[x, y, confidence]`` in pixels of the input image."""

    keypoints: np.ndarray  # (17, 3) float32
    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    score: float
    region: object = None  # where a tracking backend looks for this person next frame (its own type)

    @classmethod
    def from_keypoints(cls, keypoints: np.ndarray, score: float, min_conf: float = 0.2,
                       region: object = None) -> "Person":
        kps = np.asarray(keypoints, dtype=np.float32).reshape(17, 3)
        seen = kps[kps[:, 2] >= min_conf] if (kps[:, 2] >= min_conf).any() else kps
        x1, y1 = seen[:, :2].min(axis=0)
        x2, y2 = seen[:, :2].max(axis=0)
        return cls(kps, (float(x1), float(y1), float(x2), float(y2)), float(score), region)


def publishable_keypoints(kps: np.ndarray, width: int, height: int) -> list[list[float]]:
    """A backend's (17, 3) keypoints as a record accepts them. Models extrapolate joints of a patient
    close to the camera far outside the image (a worker used to exit on such a frame): a joint
    beyond the records' margin (one image size around it) or not finite is kept at the nearest point
    of that margin with confidence 0, so the scorer ignores it."""
    k = np.array(kps, dtype=np.float64).reshape(-1, 3)
    finite = np.isfinite(k).all(axis=1)
    k[~finite] = 0.0
    x, y = k[:, 0].copy(), k[:, 1].copy()
    outside = (x < -width) | (x > 2 * width) | (y < -height) | (y > 2 * height)
    k[:, 0] = np.clip(x, -width, 2 * width)
    k[:, 1] = np.clip(y, -height, 2 * height)
    k[:, 2] = np.clip(k[:, 2], 0.0, 1.0)
    k[outside | ~finite, 2] = 0.0
    return k.round(2).tolist()


def publishable_box(box) -> list[float]:
    return [round(float(v), 2) if np.isfinite(v) else 0.0 for v in box]


def box_area(a: Sequence[float]) -> float:
    return (a[2] - a[0]) * (a[3] - a[1])


def box_intersection(a: Sequence[float], b: Sequence[float]) -> float:
    """The area two ``x1, y1, x2, y2`` boxes share."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``x1, y1, x2, y2`` boxes."""
    inter = box_intersection(a, b)
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


class PoseBackend(ABC):
    name: str
    version: str
    multi_person: bool = False  # True: infer() returns everyone in view; False: the most prominent only
    batched: bool = False  # True: one infer() call over many sessions' frames is cheaper than one each
    can_track: bool = False  # True: track() follows given people from their last pose without a search
    output_filter: dict | None = None  # OneEuroFilter settings the model's reported keypoints need

    def track(self, image: np.ndarray, people: Sequence[Person], ts_ms: float) -> list[Person | None]:
        """Each of ``people`` in ``image`` (taken at ``ts_ms``), found from where they were (None where
        lost)."""
        raise NotImplementedError(f"{self.name} cannot track")

    @abstractmethod
    def infer(self, images: Sequence[np.ndarray], streams: Sequence[str | None]) -> list[list[Person]]:
        """People found in each BGR image. ``streams[i]`` names the session an image belongs to, so a
        tracking backend keeps state per session; ``None`` treats the image as a still."""

    def end_stream(self, stream: str) -> None:
        """Forget a session's tracking state."""

    def close(self) -> None:
        pass
