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
    n, m = cost.shape
    inf = np.inf
    acc = np.full((n, m), inf)
    move = np.zeros((n, m), dtype=np.int8)  # 0 start, 1 diag, 2 skip-ref, 3 repeat-ref
    acc[0] = cost[0]
    for i in range(1, n):
        diag = np.full(m, inf)
        diag[1:] = acc[i - 1, :-1]
        skip = np.full(m, inf)
        skip[2:] = acc[i - 1, :-2]
        rep = np.full(m, inf)
        if i >= 2:
            rep[1:] = acc[i - 2, :-1] + cost[i - 1, 1:]
        stacked = np.stack([diag, skip, rep])
        best = np.argmin(stacked, axis=0)
        acc[i] = stacked[best, np.arange(m)] + cost[i]
        move[i] = best + 1
    ranked = acc[-1] / n if end_penalty is None else acc[-1] / n + end_penalty
    end = int(np.argmin(ranked))
    total = float(acc[-1, end])
    if not np.isfinite(total):
        return inf, np.zeros(n, dtype=int)
    path = np.zeros(n, dtype=int)
    i, j = n - 1, end
    while i >= 0:
        path[i] = j
        mv = move[i, j]
        if i == 0 or mv == 0:
            break
        if mv == 1:
            i, j = i - 1, j - 1
        elif mv == 2:
            i, j = i - 1, j - 2
        else:
            path[i - 1] = j
            i, j = i - 2, j - 1
    return total / n, path
