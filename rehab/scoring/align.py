"""Subsequence dynamic time warping with a bounded slope (the patient may be 2x slower or faster).

Written for many cost matrices of one shape at once (B, n, m): one Python loop over the n rows serves
all of them, so the live processor aligns the windows of many sessions in one call."""
from __future__ import annotations

import numpy as np

from rehab.scoring import kernels

START, DIAG, SKIP_REF, REPEAT_REF = 0, 1, 2, 3


def accumulate(cost: np.ndarray, cyclic: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Accumulated cost of the last row (B, m) and the move into every cell (B, n, m).

    Steps: (1,1) same speed; (1,2) the patient is faster (one reference sample skipped); (2,1) the
    patient is slower (two patient samples on one reference sample). Each patient sample is charged
    once, so ``total / n`` is the mean cost. Open begin on the reference (row 0 starts anywhere).
    Ties go to the first of diagonal, skip, repeat. (The loop is compiled: ``kernels.accumulate``.)
    ``cyclic``: against the guide's columns played twice, (B, n, 2m) out, as ``np.concatenate([cost,
    cost], axis=2)`` would give, without making it."""
    cost = np.ascontiguousarray(cost, dtype=np.float64)
    b, n, m = cost.shape
    move = np.zeros((b, n, 2 * m if cyclic else m), dtype=np.int8)
    return kernels.accumulate(cost, move), move


def backtrack(move: np.ndarray, end: np.ndarray) -> np.ndarray:
    """The matched reference column of every row (B, n), walking back from column ``end`` (B,) of the
    last row; all B walks advance together, one row at a time."""
    b, n, _ = move.shape
    path = np.zeros((b, n), dtype=np.int64)
    rows = np.arange(b)
    j = end.astype(np.int64).copy()
    pending = np.zeros(b, dtype=bool)  # this row was covered by a repeat move from the row after it
    for i in range(n - 1, -1, -1):
        path[:, i] = j
        if i == 0:
            break
        mv = move[rows, i, j]
        back = np.where(pending | (mv == DIAG), 1, np.where(mv == SKIP_REF, 2, 0))
        pending = ~pending & (mv == REPEAT_REF)
        j = np.maximum(j - back, 0)
    return path


def best_ends(cost: np.ndarray, end_penalty: np.ndarray | None = None,
              cyclic: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For B cost matrices (B, n, m): the mean cost of the best alignment (B,), its end column (B,)
    and the moves (for ``backtrack``). ``end_penalty`` (m,) or (B, m), in mean-cost units, ranks the
    ends but is not in the returned cost. ``cyclic``: the columns played twice (``accumulate``), ends
    and ``end_penalty`` over 2m columns."""
    total, end, move, _ = ranked_ends(cost, end_penalty, cyclic)
    return total, end, move


def ranked_ends(cost: np.ndarray, end_penalty: np.ndarray | None = None,
                cyclic: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``best_ends`` and every end's rank (B, m): the mean cost plus ``end_penalty``."""
    b, n, _ = cost.shape
    last, move = accumulate(cost, cyclic)
    ranked = last / n if end_penalty is None else last / n + end_penalty
    end = np.argmin(ranked, axis=1)
    return last[np.arange(b), end] / n, end, move, ranked


def ends_as_good_ahead(ranked: np.ndarray, end: np.ndarray, within: float) -> np.ndarray:
    """How many columns right after each ``end`` (B,) rank within ``within`` of it, without a worse one
    between (B,): where the best end sits at the start of a stretch of the guide that fits as well (a
    pose held, or poses alike through the middle of a movement), how far the patient may really be."""
    b, m = ranked.shape
    rows = np.arange(b)
    cols = np.arange(m)[None, :]
    worse = (ranked > (ranked[rows, end] + within)[:, None]) | ~np.isfinite(ranked)
    after = worse & (cols > end[:, None])
    first_worse = np.where(after.any(axis=1), np.argmax(after, axis=1), m)
    return first_worse - end - 1


def subsequence_dtw_batch(cost: np.ndarray, end_penalty: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Aligns every row of each (n, m) cost matrix to a contiguous stretch of its columns.

    ``end_penalty`` (m,) or (B, m), in mean-cost units, makes some ends less likely (phases the patient
    cannot have reached since the last window); it ranks the ends but is not in the returned cost.
    Returns (mean cost (B,), inf where no path exists; matched column of each row (B, n))."""
    total, end, move = best_ends(cost, end_penalty)
    path = backtrack(move, end)
    path[~np.isfinite(total)] = 0
    return total, path


def subsequence_dtw(cost: np.ndarray, end_penalty: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """``subsequence_dtw_batch`` for one (n, m) cost matrix: (mean cost, matched column of each row)."""
    total, path = subsequence_dtw_batch(cost[None], end_penalty)
    return float(total[0]), path[0]
