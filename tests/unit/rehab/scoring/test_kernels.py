"""The compiled kernels (rehab/scoring/kernels.py) give, to the bit, what they are defined to give: the
DTW accumulation as the numpy it replaced (kept here), the limb similarity as its definition in plain
Python floats, the form's statistics as ``form.ranges`` and ``form.jitter`` of the decoded angles. Bit
equality, not a tolerance: the scores must not change with the implementation."""
from __future__ import annotations

import numpy as np
import pytest

from rehab.scoring import kernels
from rehab.scoring.align import accumulate
from rehab.scoring.form import _STEP, PCT, UNSEEN, FormModel, angle_features, decode, encode, jitter, ranges
from rehab.scoring.scorer import SWAP_LIMB, SWAP_SIGN, _FLIP_X
from tests.unit.rehab.scoring.test_scoring import pose_at


def _similarity_reference(dirs, lw, r_dirs, r_lw):
    """The definition, one pose and one guide sample at a time in plain Python floats: the weighted mean
    over the limbs, added in limb order, of the cosine clipped to [0, 1]. (The numpy the kernel replaced
    added the limbs in this order too for the arrays the scorer passes: its reduction ran over the limb
    axis, the outermost in memory.)"""
    out = np.empty((len(dirs), len(r_dirs)))
    for i in range(len(dirs)):
        for j in range(len(r_dirs)):
            num = den = 0.0
            for li in range(dirs.shape[1]):
                cos = float(dirs[i, li, 0]) * float(r_dirs[j, li, 0]) + float(dirs[i, li, 1]) * float(r_dirs[j, li, 1])
                w = float(lw[i, li]) * float(r_lw[j, li])
                num += min(max(cos, 0.0), 1.0) * w
                den += w
            out[i, j] = num / max(den, 1e-9)
    return out


def _accumulate_numpy(cost):
    b, n, m = cost.shape
    prev2, prev = None, cost[:, 0].copy()
    move = np.zeros((b, n, m), dtype=np.int8)
    steps = np.full((3, b, m), np.inf)
    for i in range(1, n):
        steps[0, :, 1:] = prev[:, :-1]
        steps[1, :, 2:] = prev[:, :-2]
        if prev2 is not None:
            np.add(prev2[:, :-1], cost[:, i - 1, 1:], out=steps[2, :, 1:])
        move[:, i] = steps.argmin(axis=0) + 1
        prev2, prev = prev, steps.min(axis=0) + cost[:, i]
    return prev, move


def _limbs(rng, n):
    ang = rng.uniform(-np.pi, np.pi, (n, 12))
    dirs = np.stack([np.cos(ang), np.sin(ang)], axis=-1)
    lw = rng.uniform(0, 1, (n, 12)) * (rng.random((n, 12)) > 0.2)  # some limbs unseen
    dirs[lw == 0] = 0.0
    lw[rng.random(n) < 0.1] = 0.0  # some poses with nobody
    return dirs, lw


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_similarity4_is_the_numpy_similarity_of_each_labelling(seed):
    rng = np.random.default_rng(seed)
    dirs, lw = _limbs(rng, 40)
    r_dirs, r_lw = _limbs(rng, 23)
    sdirs, slw = dirs[:, SWAP_LIMB] * SWAP_SIGN[:, None], lw[:, SWAP_LIMB]
    out = np.empty((4, 40, 23))
    kernels.similarity4(dirs, lw, np.ascontiguousarray(sdirs), np.ascontiguousarray(slw), r_dirs, r_lw, out)
    expected = [(dirs, lw), (sdirs, slw), (sdirs * _FLIP_X, slw), (dirs * _FLIP_X, lw)]
    for v, (d, w) in enumerate(expected):
        assert np.array_equal(out[v], _similarity_reference(d, w, r_dirs, r_lw)), f"labelling {v}"
    assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("shape", [(5, 30, 100), (1, 2, 3), (3, 17, 1)])
def test_dtw_accumulation_is_the_numpy_one(shape):
    rng = np.random.default_rng(sum(shape))
    cost = rng.random(shape)
    cost[rng.random(shape) < 0.05] = 0.0  # ties between moves
    last, move = accumulate(cost)
    want_last, want_move = _accumulate_numpy(cost)
    assert np.array_equal(last, want_last) and np.array_equal(move[:, 1:], want_move[:, 1:])


@pytest.mark.parametrize("shape", [(5, 30, 100), (1, 2, 3), (3, 17, 1)])
def test_dtw_against_the_guide_played_twice_needs_no_doubled_copy(shape):
    rng = np.random.default_rng(sum(shape) + 1)
    cost = rng.random(shape)
    cost[rng.random(shape) < 0.05] = 0.0
    last, move = accumulate(cost, cyclic=True)
    want_last, want_move = accumulate(np.concatenate([cost, cost], axis=2))
    assert move.shape == want_move.shape == (shape[0], shape[1], 2 * shape[2])
    assert np.array_equal(last, want_last) and np.array_equal(move, want_move)


def test_form_statistics_from_codes_are_those_of_the_decoded_angles():
    feats = angle_features(np.array([pose_at(i / 40) for i in range(200)]))
    model = FormModel.of(feats[:40])
    rng = np.random.default_rng(3)
    judged = 0
    for trial in range(200):
        start, length = rng.integers(0, 150), rng.integers(0, 50)
        codes = encode(feats[start:start + length] + rng.normal(0, 0.05, (length, feats.shape[1])))
        codes[rng.random(codes.shape) < 0.15 * (trial % 3)] = UNSEEN  # angles unseen here and there
        if trial % 4 == 0 and length:
            codes[rng.integers(0, length, 3)] = UNSEEN  # whole rows without anybody
        angles = decode(codes)
        seen = ~np.isnan(angles).all(axis=1)
        lo, hi, jit = np.empty(15), np.empty(15), np.empty(15)
        n_seen = kernels.form_stats(codes, UNSEEN, _STEP, PCT[0] / 100, PCT[1] / 100, lo, hi, jit)
        assert n_seen == seen.sum()
        want_lo, want_hi = ranges(angles[seen])
        assert np.array_equal(lo, want_lo, equal_nan=True) and np.array_equal(hi, want_hi, equal_nan=True)
        assert np.array_equal(jit, jitter(angles[seen])), trial
        want, got = model.assess(decode(codes)), model.assess_codes(codes)
        assert got.factor == want.factor, trial
        assert np.array_equal(got.excess, want.excess) and np.array_equal(got.deficit, want.deficit), trial
        judged += got.factor < 1.0
    assert judged > 20  # the attempts differ from the guide often enough that the form costs points


@pytest.mark.parametrize("takes", ["one take", "takes and mistakes"])
def test_many_windows_judged_together_are_judged_as_each_alone(takes):
    """The live scorer assesses a group's windows together (``assess_codes_many``): every result is the
    one ``assess_codes`` gives that window alone, with several takes and recorded mistakes too."""
    feats = angle_features(np.array([pose_at(i / 40) for i in range(200)]))
    rng = np.random.default_rng(5)
    if takes == "one take":
        model = FormModel.of(feats[:40])
    else:
        model = FormModel.of(feats[:40], [feats[40:80] * 1.1],
                             [("too far", feats[80:120] * 1.6), ("too little", feats[120:160] * 0.4)])
    windows = []
    for trial in range(60):
        start, length = rng.integers(0, 150), rng.integers(0, 50)
        codes = encode(feats[start:start + length] * rng.uniform(0.3, 1.8) + rng.normal(0, 0.05, (length, 15)))
        codes[rng.random(codes.shape) < 0.1 * (trial % 3)] = UNSEEN
        windows.append(codes)
    together = model.assess_codes_many(windows)
    named = 0
    for trial, (codes, got) in enumerate(zip(windows, together)):
        want = model.assess_codes(codes)
        assert (got.factor, got.mistake, got.mistake_margin, got.reach) == (want.factor, want.mistake, want.mistake_margin, want.reach), trial
        assert np.array_equal(got.excess, want.excess) and np.array_equal(got.deficit, want.deficit), trial
        named += got.mistake is not None
    assert sum(r.factor < 1.0 for r in together) > 10
    if takes != "one take":
        assert named > 0  # the mistakes path is exercised


def _window_match_numpy(norm, w, dirs, lw, var, path, r_norm, r_w, r_dirs, r_lw):
    """``scorer._score_group``'s numpy before ``kernels.window_match`` (kept as the definition)."""
    from rehab.scoring.scorer import COS_FLOOR, JOINT_FLIP, JOINT_PERM, LIMB_PERM, LIMB_SIGN, _velocity_agreement

    b, t = var.shape
    b3, t3 = np.arange(b)[:, None, None], np.arange(t)[None, :, None]
    joints, limbs = JOINT_PERM[var], LIMB_PERM[var]
    flip = JOINT_FLIP[var][:, :, None, :]
    pn = norm[b3, t3, joints] * flip
    jw = w[b3, t3, joints]
    pd = dirs[b3, t3, limbs] * (LIMB_SIGN[var][..., None] * flip)
    lw_p = lw[b3, t3, limbs]
    rd, lwt = r_dirs[path], lw_p * r_lw[path]
    limb_cos = np.clip(((pd * rd).sum(axis=-1) - COS_FLOOR) / (1 - COS_FLOOR), 0.0, 1.0)
    lw_sum = lwt.sum(axis=1)
    safe = np.maximum(lw_sum, 1e-300)
    return ((limb_cos * lwt).sum(axis=1) / safe, ((rd[..., 0] - pd[..., 0]) * lwt).sum(axis=1) / safe,
            ((rd[..., 1] - pd[..., 1]) * lwt).sum(axis=1) / safe, lw_sum > 0,
            _velocity_agreement(pn, jw, r_norm[path], r_w[path]))


@pytest.mark.parametrize("b,t", [(1, 30), (7, 31), (50, 30), (3, 4), (4, 200), (2, 1300)])
def test_window_match_is_the_numpy_it_replaced(b, t):
    """Bit equality with the gathers and sums it replaced (the velocity agreement's last sums stay
    numpy's, as in the scorer), over windows of several lengths (4 rows: no whole velocity chunk)."""
    from rehab.scoring.scorer import COS_FLOOR, JOINT_FLIP, JOINT_PERM, LIMB_PERM, LIMB_SIGN, VEL_CHUNK

    rng = np.random.default_rng(b * 1000 + t)
    norm = rng.normal(0, 1, (b, t, 17, 2))
    w = rng.uniform(0, 1, (b, t, 17)) * (rng.random((b, t, 17)) > 0.15)
    dirs, lw = _limbs(rng, b * t)
    dirs, lw = dirs.reshape(b, t, 12, 2), lw.reshape(b, t, 12)
    lw[0, :, 3] = lw[0, :, SWAP_LIMB[3]] = 0.0  # a limb never seen in a window (under any labelling)
    var = rng.integers(0, 4, (b, t))
    r = 40
    r_norm, r_w = rng.normal(0, 1, (2 * r, 17, 2)), rng.uniform(0, 1, (2 * r, 17))
    r_dirs, r_lw = _limbs(rng, 2 * r)
    path = np.sort(rng.integers(0, 2 * r, (b, t)), axis=1)
    path[-1] = path[-1, 0]  # a window aligned with one guide sample: no guide motion
    out = (np.empty((b, 12)), np.empty((b, 12)), np.empty((b, 12)), np.empty((b, 12), np.bool_))
    num, den = np.empty((2, b, (t - 1) // VEL_CHUNK * 17))
    kernels.window_match(norm, w, dirs, lw, var, path, JOINT_PERM, JOINT_FLIP, LIMB_PERM, LIMB_SIGN,
                         r_norm, r_w, r_dirs, r_lw, COS_FLOOR, VEL_CHUNK, *out, num, den)
    num, den = num.sum(axis=1), den.sum(axis=1)
    out += (np.divide(num, den, out=np.zeros(b), where=den > 1e-12),)
    for got, want in zip(out, _window_match_numpy(norm, w, dirs, lw, var, path, r_norm, r_w, r_dirs, r_lw)):
        assert np.array_equal(got, want)
    assert not out[3][0, 3] and out[4][-1] == 0.0


def test_after_warm_up_scoring_compiles_nothing():
    """``warm_up`` compiles every kernel with the argument types the scorer passes, so a service's first
    patient does not wait ~1 s for numba: scoring afterwards adds no compiled signature."""
    from tests.unit.rehab.scoring.test_scoring import frames, reference, score_attempt

    kernels.warm_up()
    compiled = {name: len(getattr(kernels, name).signatures)
                for name in ("similarity4", "accumulate", "form_stats", "window_match")}
    score_attempt(reference(), frames([pose_at(i / 60) for i in range(150)]))
    assert {name: len(getattr(kernels, name).signatures) for name in compiled} == compiled
