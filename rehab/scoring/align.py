"""Subsequence dynamic time warping with a bounded slope (the patient may be 2x slower or faster)."""
from __future__ import annotations

import numpy as np


def subsequence_dtw(cost: np.ndarray, end_penalty: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Aligns every row (patient samples) to a contiguous stretch of columns (reference samples).

    Steps: (1,1) same speed; (1,2) the patient is faster (one reference sample skipped); (2,1) the
    patient is slower (two patient samples on one reference sample). Each patient sample is charged
    once, so ``total / rows`` is the mean cost. Open begin and end on the reference; ``end_penalty``
    (per column, in mean-cost units) makes some ends less likely, e.g. phases the patient cannot
    have reached since the last window.
    Returns (mean cost, matched reference column of each row); the penalty is not in the cost.
    """
    (total,), (path,) = subsequence_dtw_batch(cost[None], end_penalty)
    return total, path


def subsequence_dtw_batch(cost: np.ndarray, end_penalty: np.ndarray | None = None) -> tuple[list[float], list]:
    """``subsequence_dtw`` for B cost matrices of one shape (B, n, m) at once (one Python loop over
    rows for all of them: the mirror candidates of a window, or many windows)."""
    b, n, m = cost.shape
    inf = np.inf
    acc = np.empty((b, n, m))
    move = np.zeros((b, n, m), dtype=np.int8)  # 0 start, 1 diag, 2 skip-ref, 3 repeat-ref
    acc[:, 0] = cost[:, 0]
    steps = np.full((3, b, m), inf)  # cells never written stay inf (no predecessor there)
    for i in range(1, n):
        steps[0, :, 1:] = acc[:, i - 1, :-1]
        steps[1, :, 2:] = acc[:, i - 1, :-2]
        if i >= 2:
            steps[2, :, 1:] = acc[:, i - 2, :-1] + cost[:, i - 1, 1:]
        best = steps.argmin(axis=0)
        acc[:, i] = np.take_along_axis(steps, best[None], axis=0)[0] + cost[:, i]
        move[:, i] = best + 1
    ranked = acc[:, -1] / n if end_penalty is None else acc[:, -1] / n + end_penalty
    totals, paths = [], []
    for k in range(b):
        end = int(np.argmin(ranked[k]))
        total = float(acc[k, -1, end])
        if not np.isfinite(total):
            totals.append(inf)
            paths.append(np.zeros(n, dtype=int))
            continue
        path = np.zeros(n, dtype=int)
        i, j = n - 1, end
        mv_k = move[k]
        while i >= 0:
            path[i] = j
            mv = mv_k[i, j]
            if i == 0 or mv == 0:
                break
            if mv == 1:
                i, j = i - 1, j - 1
            elif mv == 2:
                i, j = i - 1, j - 2
            else:
                path[i - 1] = j
                i, j = i - 2, j - 1
        totals.append(total / n)
        paths.append(path)
    return totals, paths
