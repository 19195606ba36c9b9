import numpy as np
import pytest

from edge.smoothing import OneEuroFilter


def _still_with_jitter(n=120, seed=0):
    rng = np.random.default_rng(seed)
    base = np.tile([[100.0, 200.0, 0.8]], (17, 1))
    return [base + np.c_[rng.normal(0, 3.0, (17, 2)), np.zeros(17)] for _ in range(n)]


def test_smoothing_reduces_jitter_of_a_still_joint_and_keeps_confidence():
    frames = _still_with_jitter()
    f = OneEuroFilter(strength=0.6)
    out = np.array([f(k, i * 33.3) for i, k in enumerate(frames)])
    raw = np.array(frames)
    assert out[20:, :, :2].std(axis=0).mean() < 0.5 * raw[20:, :, :2].std(axis=0).mean()
    assert np.allclose(out[:, :, 2], 0.8), "confidences pass through unchanged"


def test_strength_zero_is_the_identity():
    frames = _still_with_jitter(10)
    f = OneEuroFilter(strength=0.0)
    assert all(np.allclose(f(k, i * 33.3), k) for i, k in enumerate(frames))


def test_a_fast_movement_is_followed_with_little_lag():
    f = OneEuroFilter(strength=0.6)
    pos = [np.tile([[100.0 + 15.0 * i, 200.0, 0.9]], (17, 1)) for i in range(30)]  # 450 px/s
    out = [f(k, i * 33.3) for i, k in enumerate(pos)]
    lag_px = pos[-1][0, 0] - out[-1][0, 0]
    assert 0 <= lag_px < 15.0, f"lags {lag_px:.1f} px behind a joint moving 15 px per frame"


def test_strength_is_validated():
    with pytest.raises(ValueError):
        OneEuroFilter(strength=2.0)


def test_speeds_measured_in_body_sizes_smooth_a_near_and_a_far_person_alike():
    """With ``scale`` the filter opens on speed in body sizes (MediaPipe's value scaling): the same
    relative step of a person twice as large is smoothed by the same fraction."""
    import numpy as np

    from edge.smoothing import OneEuroFilter

    out = []
    for size in (100.0, 200.0):
        f = OneEuroFilter(min_cutoff_hz=0.05, beta=80.0)
        still = np.zeros((17, 3), np.float32)
        f(still, 0.0, size)
        moved = still.copy()
        moved[:, 0] = 0.05 * size  # a twentieth of the body in one 33 ms frame
        out.append(f(moved, 33.0, size)[0, 0] / (0.05 * size))
    assert 0.0 < out[0] < 1.0 and abs(out[0] - out[1]) < 1e-6
