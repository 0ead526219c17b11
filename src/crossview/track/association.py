"""Cost matrices and thresholded optimal assignment shared by the trackers."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment

Array = NDArray[np.float64]
Index = NDArray[np.int64]
_INADMISSIBLE = 1e6


def iou_matrix(a: Array, b: Array) -> Array:
    """Pairwise IoU ``(len(a), len(b))`` of ``xyxy`` boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    # Outer operations on columns: several times faster than 3-D broadcasting at tracker sizes.
    width = np.minimum.outer(a[:, 2], b[:, 2]) - np.maximum.outer(a[:, 0], b[:, 0])
    height = np.minimum.outer(a[:, 3], b[:, 3]) - np.maximum.outer(a[:, 1], b[:, 1])
    np.maximum(width, 0, out=width)
    np.maximum(height, 0, out=height)
    intersection = width * height
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = np.add.outer(area_a, area_b) - intersection
    result: Array = intersection / np.maximum(union, 1e-9)
    return result


def cosine_distance(a: NDArray[np.floating], b: NDArray[np.floating]) -> Array:
    """``1 - a.b`` for unit rows, in ``[0, 2]``."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    result: Array = 1.0 - (a @ b.T).astype(np.float64)
    return result


def assign(
    cost: Array, max_cost: float | None = None, *, admissible: NDArray[np.bool_] | None = None
) -> tuple[Index, Index, Index, Index]:
    """Minimum-cost matching over admissible pairs: ``cost <= max_cost`` and/or a mask.

    Returns matched rows, matched columns, unmatched rows, unmatched columns.
    """
    rows_n, cols_n = cost.shape
    if rows_n == 0 or cols_n == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.arange(rows_n), np.arange(cols_n)
    if admissible is None:
        if max_cost is None:
            raise ValueError("assign needs max_cost, admissible, or both")
        allowed = cost <= max_cost
    else:
        allowed = admissible if max_cost is None else admissible & (cost <= max_cost)
    per_row, per_col = allowed.sum(axis=1), allowed.sum(axis=0)
    if per_row.max() <= 1 and per_col.max() <= 1:
        # Each row and column has at most one admissible partner: the matching is forced.
        rows, cols = np.nonzero(allowed)
        return rows, cols, np.flatnonzero(per_row == 0), np.flatnonzero(per_col == 0)
    # Inadmissible pairs are made unattractive rather than removed, so they never displace
    # an admissible pair (tracker costs lie within a few units of zero); dropped after.
    rows, cols = linear_sum_assignment(np.where(allowed, cost, _INADMISSIBLE))
    keep = allowed[rows, cols]
    rows, cols = rows[keep], cols[keep]
    free_rows = np.ones(rows_n, bool)
    free_rows[rows] = False
    free_cols = np.ones(cols_n, bool)
    free_cols[cols] = False
    return rows, cols, np.flatnonzero(free_rows), np.flatnonzero(free_cols)
