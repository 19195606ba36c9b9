"""One-Euro filter (Casiez et al., CHI 2012) over keypoints: little lag when a joint moves fast, strong
smoothing when it is nearly still. One filter per session; confidences pass through unchanged.

``strength`` in [0, 1] is the one setting users see: 0 turns smoothing off, 1 smooths hardest.
"""
from __future__ import annotations

import math

import numpy as np


def _alpha(cutoff_hz: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * cutoff_hz)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Filters (17, 3) keypoint arrays in pixels; timestamps in milliseconds."""

    def __init__(self, strength: float = 0.5, beta: float = 0.02, d_cutoff_hz: float = 1.0,
                 min_cutoff_hz: float | None = None):
        """``min_cutoff_hz`` given: that cutoff instead of the one ``strength`` sets (a model's own
        filter settings, e.g. MediaPipe's)."""
        if not 0.0 <= strength <= 1.0:
            raise ValueError("smoothing strength must be in [0, 1]")
        self.strength = strength
        # strength 0 -> cutoff 30 Hz (nearly raw), 1 -> 0.3 Hz (heavy)
        self.min_cutoff_hz = 30.0 * (0.01 ** strength) if min_cutoff_hz is None else min_cutoff_hz
        self.beta, self.d_cutoff_hz = beta, d_cutoff_hz
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t_ms: float | None = None

    def reset(self) -> None:
        self._x = self._dx = self._t_ms = None

    def __call__(self, keypoints: np.ndarray, t_ms: float, scale: float = 1.0) -> np.ndarray:
        """``scale``: the speeds that open the filter are measured in units of it (e.g. the body's size
        in pixels, so a near and a far person are smoothed alike); 1 measures them in pixels."""
        kps = np.asarray(keypoints, dtype=np.float64)
        if self.strength == 0.0:
            return kps.astype(np.float32)
        xy = kps[:, :2]
        if self._x is None or self._t_ms is None or t_ms <= self._t_ms:
            self._x, self._dx, self._t_ms = xy.copy(), np.zeros_like(xy), t_ms
            return kps.astype(np.float32)
        dt = (t_ms - self._t_ms) / 1000.0
        if dt > 1.0:  # a gap of more than a second: the old state is meaningless
            self._x, self._dx, self._t_ms = xy.copy(), np.zeros_like(xy), t_ms
            return kps.astype(np.float32)
        dx = (xy - self._x) / dt / scale
        a_d = _alpha(self.d_cutoff_hz, dt)
        self._dx = a_d * dx + (1.0 - a_d) * self._dx
        cutoff = self.min_cutoff_hz + self.beta * np.linalg.norm(self._dx, axis=1, keepdims=True)
        a = _alpha(cutoff, dt)
        self._x = a * xy + (1.0 - a) * self._x
        self._t_ms = t_ms
        out = kps.copy()
        out[:, :2] = self._x
        return out.astype(np.float32)
