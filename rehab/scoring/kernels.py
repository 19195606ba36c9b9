"""The scorer's inner loops, compiled with numba: the limb similarity of patient rows to every guide
sample (four labellings at once), the accumulation of subsequence DTW, the form's per-angle quantiles
and jitter, and what a window's alignment says per limb and about the joints' motion.

Written as numpy they make temporaries of (rows x samples x limbs) elements for every operation (eight
passes over memory for what is one pass of arithmetic), and the DTW's row loop runs in Python; here
each is one pass (``docs/benchmarks.md``: the processor's time per score). The arithmetic is the same,
operation for operation and in the same order, as the numpy it replaced, so scores do not change
(``tests/unit/rehab/scoring/test_kernels.py`` checks equality to the bit).

Compiled on first use (~2 s) and cached next to this file (``cache=True``), or in ``NUMBA_CACHE_DIR``
when set (the image sets it: its package folder is not the services' to write); a service compiles or
loads them before it reports ready (``warm_up``).
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def similarity4(dirs, lw, sdirs, slw, r_dirs, r_lw, out):  # pragma: no cover - compiled
    """``out`` (4, N, R): for N poses' limbs as seen (``dirs`` (N, L, 2), weights ``lw`` (N, L)) and with
    the labels swapped (``sdirs``, ``slw``), against R guide samples (``r_dirs``, ``r_lw``): the
    weighted mean over the limbs of the cosine clipped to [0, 1], for the four labellings (as seen,
    swapped, swapped and x flipped, x flipped)."""
    n, n_limbs = lw.shape
    r = r_lw.shape[0]
    for i in range(n):
        for j in range(r):
            num0 = num1 = num2 = num3 = 0.0
            den0 = den1 = 0.0
            for li in range(n_limbs):
                rx, ry = r_dirs[j, li, 0], r_dirs[j, li, 1]
                px, py = dirs[i, li, 0] * rx, dirs[i, li, 1] * ry
                sx, sy = sdirs[i, li, 0] * rx, sdirs[i, li, 1] * ry
                w = lw[i, li] * r_lw[j, li]
                sw = slw[i, li] * r_lw[j, li]
                num0 += min(max(px + py, 0.0), 1.0) * w
                num1 += min(max(sx + sy, 0.0), 1.0) * sw
                num2 += min(max(sy - sx, 0.0), 1.0) * sw
                num3 += min(max(py - px, 0.0), 1.0) * w
                den0 += w
                den1 += sw
            den0 = max(den0, 1e-9)
            den1 = max(den1, 1e-9)
            out[0, i, j] = num0 / den0
            out[1, i, j] = num1 / den1
            out[2, i, j] = num2 / den1
            out[3, i, j] = num3 / den0


@njit(cache=True, nogil=True)
def accumulate(cost, move):  # pragma: no cover - compiled
    """Subsequence DTW over B cost matrices (B, n, m) with steps (1,1), (1,2) and (2,1), each patient
    row charged once: fills ``move`` (B, n, m) with the move into every cell (1 diagonal, 2 skip a
    guide sample, 3 repeat one; ties to the first) and returns the accumulated cost of the last row
    (B, m). Open begin: row 0 starts at any column.

    ``move`` may have twice the columns of ``cost`` (B, n, r), m = 2r: the DTW then runs against the
    guide played twice (column j costs ``cost[..., j % r]``), with no doubled copy of the costs."""
    b, n, r = cost.shape
    m = move.shape[2]
    inf = np.inf
    last = np.empty((b, m))
    prev = np.empty(m)
    prev2 = np.empty(m)
    cur = np.empty(m)
    c_prev = np.empty(m)  # the rows' costs over all m columns (column j: sample j % r)
    c_cur = np.empty(m)
    for k in range(b):
        for j in range(m):
            c_cur[j] = cost[k, 0, j % r]
            prev[j] = c_cur[j]
        for i in range(1, n):
            for j in range(m):
                c_prev[j] = c_cur[j]
                c_cur[j] = cost[k, i, j % r]
            for j in range(m):
                s0 = prev[j - 1] if j >= 1 else inf
                s1 = prev[j - 2] if j >= 2 else inf
                s2 = prev2[j - 1] + c_prev[j] if (i >= 2 and j >= 1) else inf
                best, mv = s0, 1
                if s1 < best:
                    best, mv = s1, 2
                if s2 < best:
                    best, mv = s2, 3
                move[k, i, j] = mv
                cur[j] = best + c_cur[j]
            for j in range(m):
                prev2[j] = prev[j]
                prev[j] = cur[j]
        for j in range(m):
            last[k, j] = prev[j]
    return last


@njit(cache=True, nogil=True)
def _two_ranks(hist, first, last, k1, k2):  # pragma: no cover - compiled
    """The bins holding the ``k1``-th and ``k2``-th smallest (from 0, k1 <= k2) of the values counted in
    ``hist`` (all in bins ``first``..``last``), and the rank of each among its bin's values."""
    acc = 0
    b1, r1 = last, 0
    found = False
    for b in range(first, last + 1):
        n = hist[b]
        if not found and acc + n > k1:
            b1, r1, found = b, k1 - acc, True
        if acc + n > k2:
            return b1, r1, b, k2 - acc
        acc += n
    return b1, r1, last, 0


@njit(cache=True, nogil=True)
def form_stats(codes, unseen, step, q_lo, q_hi, lo, hi, jit):  # pragma: no cover - compiled
    """For the form's history of joint angles as one-byte codes (H, F) (``unseen`` where an angle was
    not seen; a code times ``step`` is radians), over the rows where any angle was seen: the ``q_lo``
    and ``q_hi`` quantiles of each angle (NaN where seen in fewer than 2 rows) into ``lo`` and ``hi``,
    and each angle's jitter (the median distance of a row from the midpoint of its neighbours; 0
    where none) into ``jit``. Returns how many rows were seen. (``form.ranges`` and ``form.jitter``
    of the decoded angles, to the bit.)

    Order statistics by counting, not sorting: an angle's value is its code times ``step``, so its
    k-th smallest is read from a histogram of the codes; a jitter value is ``step`` times |2b - a - c|
    / 2 for the codes a, b, c of three consecutive rows, so the values sort by that integer, and only
    the rows with the integer of the wanted rank are computed and sorted (floats with the same integer
    can differ in the last bit)."""
    h, f = codes.shape
    seen = np.empty((h, f), np.int64)  # the rows where any angle was seen, in order
    n_seen = 0
    for i in range(h):
        for k in range(f):
            if codes[i, k] != unseen:
                for j in range(f):
                    seen[n_seen, j] = codes[i, j]
                n_seen += 1
                break
    hist = np.zeros((f, 256), np.int64)
    dhist = np.zeros((f, 512), np.int64)
    count, dcount = np.zeros(f, np.int64), np.zeros(f, np.int64)
    first, last = np.full(f, 255, np.int64), np.zeros(f, np.int64)
    dlast = np.zeros(f, np.int64)
    for r in range(n_seen):
        for k in range(f):
            c = seen[r, k]
            if c == unseen:
                continue
            hist[k, c] += 1
            count[k] += 1
            first[k] = min(first[k], c)
            last[k] = max(last[k], c)
            if 0 < r < n_seen - 1:
                a, b = seen[r - 1, k], seen[r + 1, k]
                if a != unseen and b != unseen:
                    d = abs(2 * c - a - b)
                    dhist[k, d] += 1
                    dcount[k] += 1
                    dlast[k] = max(dlast[k], d)
    vals = np.empty(max(n_seen, 1))
    for k in range(f):
        n = count[k]
        if n < 2:
            lo[k] = np.nan
            hi[k] = np.nan
        else:
            lo[k] = _quantile_counted(hist[k], first[k], last[k], n, q_lo, step)
            hi[k] = _quantile_counted(hist[k], first[k], last[k], n, q_hi, step)
        n = dcount[k]
        if n == 0:
            jit[k] = 0.0
            continue
        pos = (n - 1) * 0.5
        i_lo = int(np.floor(pos))
        i_hi = min(i_lo + 1, n - 1)
        frac = pos - i_lo
        d_lo, r_lo, d_hi, r_hi = _two_ranks(dhist[k], 0, dlast[k], i_lo, i_hi)
        v_lo = _jitter_ranked(seen, n_seen, k, unseen, step, d_lo, r_lo, vals)
        v_hi = v_lo if (d_hi == d_lo and r_hi == r_lo) else _jitter_ranked(seen, n_seen, k, unseen, step, d_hi, r_hi, vals)
        jit[k] = v_lo * (1.0 - frac) + v_hi * frac
    return n_seen


@njit(cache=True, nogil=True)
def _quantile_counted(hist, first, last, n, q, step):  # pragma: no cover - compiled
    """The ``q`` quantile, with linear interpolation (numpy's default), of the n values code * ``step``
    counted in ``hist`` (codes ``first``..``last``)."""
    pos = (n - 1) * q
    i_lo = int(np.floor(pos))
    i_hi = min(i_lo + 1, n - 1)
    frac = pos - i_lo
    c_lo, _, c_hi, _ = _two_ranks(hist, first, last, i_lo, i_hi)
    return (c_lo * step) * (1.0 - frac) + (c_hi * step) * frac


@njit(cache=True, nogil=True)
def _jitter_ranked(seen, n_seen, k, unseen, step, key, rank, vals):  # pragma: no cover - compiled
    """The ``rank``-th smallest of angle ``k``'s jitter values whose |2b - a - c| is ``key``."""
    m = 0
    for r in range(1, n_seen - 1):
        a, b, c = seen[r - 1, k], seen[r, k], seen[r + 1, k]
        if a != unseen and b != unseen and c != unseen and abs(2 * b - a - c) == key:
            vals[m] = abs(b * step - (a * step + c * step) / 2)  # (the codes' values are exact as floats)
            m += 1
    return np.sort(vals[:m])[rank]


@njit(cache=True, nogil=True)
def window_match(norm, w, dirs, lw, var, path, joint_perm, joint_flip, limb_perm, limb_sign,
                 r_norm, r_w, r_dirs, r_lw, cos_floor, chunk,
                 limb_sim, dx, dy, seen, num_terms, den_terms):  # pragma: no cover - compiled
    """What a window's alignment says, for B windows of T rows at once, each row in the labelling the
    alignment chose (``var`` (B, T): the pose as seen at ``joint_perm[v]`` with x times ``joint_flip[v]``,
    its limbs at ``limb_perm[v]`` times ``limb_sign[v]``) against the guide sample it is aligned with
    (``path`` (B, T), rows of the ``r_*`` arrays):

    - per limb (B, L): ``limb_sim``, the weighted mean over the rows of the limb's cosine to the guide's
      (``(cos - cos_floor) / (1 - cos_floor)`` clipped to [0, 1]); ``dx``, ``dy``, the weighted mean of
      guide minus patient direction; ``seen``, whether any row weighed it;
    - for ``velocity_agreement`` of the joints' displacements over ``chunk``-row chunks, its terms
      (B, chunks x 17): the cosine of patient and guide displacement times the guide's (``num_terms``)
      and the guide's (``den_terms``); the caller sums them (numpy's pairwise order) and divides.

    The numpy it replaced (``scorer._score_group`` before, kept in ``test_kernels.py``) gathered the
    rows' labellings into (B, T, 17, 2) and (B, T, L, 2) copies first; here each value is read where it
    is, with the same operations in the same order (sums over rows in row order), so the results are the
    same to the bit."""
    b, t, n_joints = w.shape
    n_limbs = lw.shape[2]
    n = (t - 1) // chunk
    scale = 1.0 - cos_floor
    pn = np.empty((t, n_joints, 2))
    pw = np.empty((t, n_joints))
    cp = np.empty((n_joints, 2))
    cr = np.empty((n_joints, 2))
    for k in range(b):
        # limbs
        for li in range(n_limbs):
            s = 0.0
            num = 0.0
            sx = 0.0
            sy = 0.0
            for i in range(t):
                v = var[k, i]
                p = path[k, i]
                src = limb_perm[v, li]
                sign = limb_sign[v, li]
                d0 = dirs[k, i, src, 0] * (sign * joint_flip[v, 0])
                d1 = dirs[k, i, src, 1] * (sign * joint_flip[v, 1])
                wt = lw[k, i, src] * r_lw[p, li]
                rx, ry = r_dirs[p, li, 0], r_dirs[p, li, 1]
                c = min(max((d0 * rx + d1 * ry - cos_floor) / scale, 0.0), 1.0)
                s += wt
                num += c * wt
                sx += (rx - d0) * wt
                sy += (ry - d1) * wt
            safe = max(s, 1e-300)
            limb_sim[k, li] = num / safe
            dx[k, li] = sx / safe
            dy[k, li] = sy / safe
            seen[k, li] = s > 0
        # joint motion
        if n == 0:
            continue
        for i in range(t):
            v = var[k, i]
            for j in range(n_joints):
                src = joint_perm[v, j]
                pn[i, j, 0] = norm[k, i, src, 0] * joint_flip[v, 0]
                pn[i, j, 1] = norm[k, i, src, 1] * joint_flip[v, 1]
                pw[i, j] = w[k, i, src]
        for c_i in range(n):
            for j in range(n_joints):
                for a in range(2):
                    cp[j, a] = 0.0
                    cr[j, a] = 0.0
                for q in range(chunk):
                    i = c_i * chunk + q
                    p0, p1 = path[k, i], path[k, i + 1]
                    wt = pw[i + 1, j] * pw[i, j] * r_w[p1, j] * r_w[p0, j]
                    for a in range(2):
                        tp = (pn[i + 1, j, a] - pn[i, j, a]) * wt
                        tr = (r_norm[p1, j, a] - r_norm[p0, j, a]) * wt
                        if q == 0:
                            cp[j, a] = tp
                            cr[j, a] = tr
                        else:
                            cp[j, a] += tp
                            cr[j, a] += tr
                norm_p = np.sqrt(cp[j, 0] * cp[j, 0] + cp[j, 1] * cp[j, 1])
                norm_r = np.sqrt(cr[j, 0] * cr[j, 0] + cr[j, 1] * cr[j, 1])
                prod = norm_p * norm_r
                cos = (cp[j, 0] * cr[j, 0] + cp[j, 1] * cr[j, 1]) / prod if prod > 1e-12 else 0.0
                num_terms[k, c_i * n_joints + j] = cos * norm_r
                den_terms[k, c_i * n_joints + j] = norm_r


def warm_up() -> None:
    """Compiles (or loads from the cache) every kernel with the argument types the scorer passes, so a
    service's first patient frame does not wait for it (a service calls this before it is ready)."""
    d, w = np.zeros((1, 12, 2)), np.zeros((1, 12))
    similarity4(d, w, d, w, d, w, np.empty((4, 1, 1)))
    accumulate(np.zeros((1, 2, 2)), np.zeros((1, 2, 2), np.int8))
    accumulate(np.zeros((1, 2, 2)), np.zeros((1, 2, 4), np.int8))  # (the cyclic guide: same signature)
    form_stats(np.zeros((3, 15), np.uint8), 255, 0.01, 0.05, 0.95, np.empty(15), np.empty(15), np.empty(15))
    i2, f2, f3, f4 = np.zeros((1, 2), np.int64), np.zeros((1, 2)), np.zeros((1, 2, 2)), np.zeros((1, 2, 2, 2))
    window_match(f4, f3, f4, f3, i2, i2, i2, f2, i2, f2, f3, f2, f3, f2, 0.0, 5, f2, f2, f2,
                 np.zeros((1, 2), np.bool_), f2, f2)
