"""Recall of approximate nearest-neighbour search against exact search.

Both results follow FAISS's layout: ``(n, k)`` integer ids, nearest first, padded with ``-1``
(any negative id counts as padding) where fewer than ``k`` neighbours were found.

- ``recall_at_k``: ``|approx top-k ∩ exact top-k| / min(k, exact neighbours available)``,
  averaged over queries; the usual "k-recall@k" of ANN benchmarks. When the exact result has fewer
  than ``k`` neighbours for a query (a small or filtered database), the denominator shrinks to what
  exists, so a perfect search still scores 1. Repeated ids count once.
- ``recall_at_k_first``: the fraction of queries whose exact nearest neighbour is in the approximate
  top ``k`` (FAISS's "1-recall@k").

Queries whose exact result is empty (all padding) have no defined recall and are left out of the
averages; ``recall_per_query`` reports them as ``NaN``.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

# Cells of the (queries, k, k_exact) comparison built at once.
_CHUNK_ELEMENTS: Final = 1 << 22


def recall_per_query(
    approx_ids: ArrayLike, exact_ids: ArrayLike, k: int | None = None
) -> NDArray[np.float64]:
    """Per-query ``|approx top-k ∩ exact top-k| / min(k, exact neighbours)``; ``NaN`` where exact is empty.

    ``k`` defaults to the number of approximate columns and may not exceed it; the exact result
    may have fewer columns than ``k`` (its top ``k`` is then all of it).
    """
    approx, exact, k = _check(approx_ids, exact_ids, k)
    approx = _unique_rows(approx[:, :k])
    exact = _unique_rows(exact[:, :k])
    available = (exact >= 0).sum(axis=1)
    found = np.zeros(approx.shape[0], np.int64)
    width = max(exact.shape[1], 1)
    size = max(1, _CHUNK_ELEMENTS // max(k * width, 1))
    for start in range(0, approx.shape[0], size):
        rows = slice(start, start + size)
        same = approx[rows, :, None] == exact[rows, None, :]
        found[rows] = (same.any(axis=2) & (approx[rows] >= 0)).sum(axis=1)
    recall = np.full(approx.shape[0], np.nan)
    defined = available > 0
    recall[defined] = found[defined] / available[defined]
    return recall


def recall_at_k(approx_ids: ArrayLike, exact_ids: ArrayLike, k: int | None = None) -> float:
    """Mean of ``recall_per_query`` over queries that have exact neighbours.

    >>> recall_at_k([[3, 1, -1], [4, 5, 6]], [[1, 2, 3], [4, 5, 7]])
    0.6666666666666666
    """
    recall = recall_per_query(approx_ids, exact_ids, k)
    return _mean_defined(recall)


def recall_at_k_first(approx_ids: ArrayLike, exact_ids: ArrayLike, k: int | None = None) -> float:
    """Fraction of queries whose exact nearest neighbour (``exact_ids[:, 0]``) is in the approximate top k.

    >>> recall_at_k_first([[3, 1], [7, 8]], [[1, 2], [4, 5]], k=2)
    0.5
    """
    approx, exact, k = _check(approx_ids, exact_ids, k)
    if exact.shape[1] == 0:
        raise ValueError("exact_ids has no columns: no query has an exact nearest neighbour")
    nearest = exact[:, :1]
    hit = ((approx[:, :k] == nearest) & (nearest >= 0)).any(axis=1)
    recall = np.where(nearest[:, 0] >= 0, hit.astype(np.float64), np.nan)
    return _mean_defined(recall)


def _mean_defined(recall: NDArray[np.float64]) -> float:
    defined = ~np.isnan(recall)
    if not defined.any():
        raise ValueError(f"none of the {recall.shape[0]} queries has an exact neighbour; recall is undefined")
    return float(np.mean(recall[defined]))


def _ids(name: str, values: ArrayLike) -> NDArray[np.int64]:
    array = np.asarray(values)
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape (n, k), got {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integer ids, got {array.dtype}")
    return array.astype(np.int64, copy=False)


def _check(
    approx_ids: ArrayLike, exact_ids: ArrayLike, k: int | None
) -> tuple[NDArray[Any], NDArray[Any], int]:
    approx = _ids("approx_ids", approx_ids)
    exact = _ids("exact_ids", exact_ids)
    if approx.shape[0] != exact.shape[0]:
        raise ValueError(f"approx_ids has {approx.shape[0]} queries but exact_ids has {exact.shape[0]}")
    if k is None:
        k = approx.shape[1]
    if not 1 <= k <= approx.shape[1]:
        raise ValueError(f"k must be between 1 and {approx.shape[1]} (columns of approx_ids), got {k}")
    return approx, exact, k


def _unique_rows(ids: NDArray[np.int64]) -> NDArray[np.int64]:
    """Each row with repeated ids replaced by ``-1`` (order is irrelevant to set sizes)."""
    ordered = np.sort(ids, axis=1)
    if ordered.shape[1] > 1:
        repeated = np.zeros(ordered.shape, np.bool_)
        repeated[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
        ordered[repeated] = -1
    return ordered
