"""The small interface every pose backend implements."""
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

    @classmethod
    def from_keypoints(cls, keypoints: np.ndarray, score: float, min_conf: float = 0.2) -> "Person":
        kps = np.asarray(keypoints, dtype=np.float32).reshape(17, 3)
        seen = kps[kps[:, 2] >= min_conf] if (kps[:, 2] >= min_conf).any() else kps
        x1, y1 = seen[:, :2].min(axis=0)
        x2, y2 = seen[:, :2].max(axis=0)
        return cls(kps, (float(x1), float(y1), float(x2), float(y2)), float(score))


class PoseBackend(ABC):
    name: str
    version: str
    multi_person: bool = False  # True: infer() returns everyone in view; False: the most prominent only

    @abstractmethod
    def infer(self, images: Sequence[np.ndarray], streams: Sequence[str | None]) -> list[list[Person]]:
        """People found in each BGR image. ``streams[i]`` names the session an image belongs to, so a
        tracking backend keeps state per session; ``None`` treats the image as a still."""

    def end_stream(self, stream: str) -> None:
        """Forget a session's tracking state."""

    def close(self) -> None:
        pass
