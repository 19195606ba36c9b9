"""Pose geometry: normalisation, mirroring, limb directions, resampling in time."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from rehab.coco import LEFT_HIP, LEFT_SHOULDER, LIMB_INDEX, MIRROR, N_KEYPOINTS, RIGHT_HIP, RIGHT_SHOULDER

MIN_CONF = 0.3  # joints below this confidence are left out, never zero-filled
MIN_JOINTS = 6  # a frame with fewer usable joints counts as "nobody visible"


def to_array(frames: Sequence[list | None]) -> np.ndarray:
    """(T, 17, 3) float64; a missing frame becomes all-zero confidence."""
    out = np.zeros((len(frames), N_KEYPOINTS, 3))
    for i, f in enumerate(frames):
        if f is not None:
            out[i] = np.asarray(f, dtype=np.float64)
    return out


def normalize(kps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Translation and body-scale normalised joints (T, 17, 2) and their weights (T, 17) in [0, 1].

    Centre: mid-hip (or mid-shoulder when hips are missing). Scale: torso length (shoulder centre to
    hip centre), or the spread of the visible joints when the torso is not visible.
    """
    xy, conf = kps[..., :2], kps[..., 2]
    w = np.where(conf >= MIN_CONF, conf, 0.0)
    ok = w > 0
    few = ok.sum(axis=1) < MIN_JOINTS
    w[few] = 0.0
    ok[few] = False

    def mid(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        both = ok[:, a] & ok[:, b]
        return (xy[:, a] + xy[:, b]) / 2.0, both

    hip, hip_ok = mid(LEFT_HIP, RIGHT_HIP)
    sho, sho_ok = mid(LEFT_SHOULDER, RIGHT_SHOULDER)
    n_ok = np.maximum(ok.sum(axis=1, keepdims=True), 1)
    centroid = (xy * ok[..., None]).sum(axis=1) / n_ok
    center = np.where(hip_ok[:, None], hip, np.where(sho_ok[:, None], sho, centroid))
    torso = np.linalg.norm(sho - hip, axis=1)
    spread = np.sqrt((((xy - centroid[:, None]) ** 2).sum(axis=2) * ok).sum(axis=1) / n_ok[:, 0])
    scale = np.where(hip_ok & sho_ok & (torso > 1e-6), torso, 2.0 * spread)
    scale = np.where(scale > 1e-6, scale, 1.0)
    norm = (xy - center[:, None]) / scale[:, None, None]
    return norm * ok[..., None], w


def mirror(norm: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same poses seen in a mirror: x flipped and left/right joints swapped."""
    idx = list(MIRROR)
    flipped = norm[:, idx].copy()
    flipped[..., 0] *= -1.0
    return flipped, w[:, idx].copy()


def limb_directions(norm: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit direction of each limb (T, L, 2) and its weight (T, L): the product of its joints' weights."""
    a = np.array([p for p, _ in LIMB_INDEX])
    b = np.array([c for _, c in LIMB_INDEX])
    vec = norm[:, b] - norm[:, a]
    length = np.linalg.norm(vec, axis=2)
    lw = w[:, a] * w[:, b] * (length > 1e-6)
    unit = np.divide(vec, length[..., None], out=np.zeros_like(vec), where=length[..., None] > 1e-6)
    # C-ordered (numpy's gather along the joint axis is not): the compiled kernels take them as they are,
    # and a guide's limbs are not copied again for every batch of windows scored against it
    return np.ascontiguousarray(unit), np.ascontiguousarray(lw)


def nearest(ts_ms: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Index of the frame nearest each grid time (the earlier one on a tie), for sorted ``ts_ms``."""
    if len(ts_ms) < 2:
        return np.zeros(len(grid), int)
    idx = np.clip(np.searchsorted(ts_ms, grid), 1, len(ts_ms) - 1)
    return np.where(grid - ts_ms[idx - 1] <= ts_ms[idx] - grid, idx - 1, idx)


def resample(ts_ms: np.ndarray, values: np.ndarray, rate_hz: float, start_ms: float, end_ms: float) -> np.ndarray:
    """Nearest-frame resampling onto a fixed clock (deterministic; never blends missing joints)."""
    n = int(np.floor((end_ms - start_ms) * rate_hz / 1000.0 + 1e-9)) + 1
    return values[nearest(ts_ms, start_ms + np.arange(max(n, 1)) * 1000.0 / rate_hz)]
