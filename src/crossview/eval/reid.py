"""Re-identification metrics under the Market-1501 protocol: CMC, mAP and mINP.

Every query ranks the whole gallery by distance (smaller = more similar). Gallery items with the
query's identity *and* camera are junk: they are removed from that query's ranking (an easy match
from the same camera says nothing about cross-camera re-identification). Items whose identity is in
``junk_pids`` are removed for every query (the official Market-1501 code does so for ``-1``, its
"junk" label; pass ``junk_pids=(-1,)`` to match it). A query with no correct match left in the
gallery is skipped and counted in ``ReidResult.num_queries - num_valid_queries``.

Over the remaining ranking of a query with ``P`` correct matches at (1-based) ranks ``r_1 < ... < r_P``:

- CMC at rank ``k``: 1 if ``r_1 <= k``, averaged over valid queries;
- AP: ``mean_i(i / r_i)``, the mean precision at each correct match; mAP averages AP;
- INP: ``P / r_P`` (Zheng et al.'s inverse negative penalty: how deep the hardest match lies);
  mINP averages INP.

Ties in distance are broken by gallery order (a stable argsort), so results are deterministic and
an item earlier in the gallery ranks first among equals.

The computation is vectorised over queries and runs in chunks of queries whose working set is
bounded (about ``_CHUNK_ELEMENTS`` query×gallery cells at a time), so a 10k×100k problem needs a few
hundred megabytes beyond the distance matrix itself, which may be a ``numpy.memmap``.
``reid_metrics_from_features`` never builds the full matrix at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

# Query×gallery cells processed at once: the argsort order, a few boolean masks and two running
# counts per cell, about 30 bytes each, so roughly 120 MB at peak.
_CHUNK_ELEMENTS: Final = 1 << 22
_MIN_MAX_RANK: Final = 10


@dataclass(frozen=True, eq=False, slots=True)
class ReidResult:
    """Ranking metrics of one query set against one gallery.

    ``cmc[k - 1]`` is the fraction of valid queries whose first correct match lies within the top
    ``k``. ``average_precision`` and ``inverse_negative_penalty`` are per query (``NaN`` for skipped
    queries, which have no correct match). All values are fractions in ``[0, 1]``.
    """

    cmc: NDArray[np.float64]
    mAP: float
    mINP: float
    num_valid_queries: int
    num_queries: int
    average_precision: NDArray[np.float64]
    inverse_negative_penalty: NDArray[np.float64]

    def rank(self, k: int) -> float:
        """CMC at rank ``k`` (1-based, at most ``len(cmc)``)."""
        if not 1 <= k <= len(self.cmc):
            raise ValueError(f"rank must be between 1 and {len(self.cmc)} (max_rank), got {k}")
        return float(self.cmc[k - 1])

    @property
    def rank1(self) -> float:
        return self.rank(1)

    @property
    def rank5(self) -> float:
        return self.rank(5)

    @property
    def rank10(self) -> float:
        return self.rank(10)

    @property
    def num_skipped_queries(self) -> int:
        """Queries without any correct match in the gallery (after removing junk)."""
        return self.num_queries - self.num_valid_queries

    def to_dict(self) -> dict[str, float]:
        """``rank1``, ``rank5``, ``rank10``, ``mAP`` and ``mINP`` as fractions."""
        return {
            "rank1": self.rank1,
            "rank5": self.rank5,
            "rank10": self.rank10,
            "mAP": self.mAP,
            "mINP": self.mINP,
        }


def reid_metrics(
    distances: ArrayLike,
    query_pids: ArrayLike,
    gallery_pids: ArrayLike,
    query_camids: ArrayLike,
    gallery_camids: ArrayLike,
    *,
    max_rank: int = 50,
    junk_pids: Iterable[int] = (),
    chunk_size: int | None = None,
) -> ReidResult:
    """CMC, mAP and mINP from a ``(Q, G)`` distance matrix (smaller = more similar).

    ``max_rank`` (at least 10) is the length of the CMC curve. ``chunk_size`` is the number of
    queries ranked at once; by default it keeps each chunk near ``_CHUNK_ELEMENTS`` cells. Raises
    ``ValueError`` for mismatched shapes, ``NaN`` distances, or when no query has a correct match.

    >>> import numpy as np
    >>> d = np.array([[0.1, 0.5, 0.2], [0.9, 0.3, 0.4]])
    >>> r = reid_metrics(d, [1, 2], [1, 2, 2], [0, 0], [1, 1, 1])
    >>> r.rank1, r.mAP
    (1.0, 1.0)
    """
    matrix = np.asarray(distances)
    if matrix.ndim != 2:
        raise ValueError(f"distances must have shape (Q, G), got {matrix.shape}")
    if matrix.size and not np.issubdtype(matrix.dtype, np.number):
        raise ValueError(f"distances must be numeric, got {matrix.dtype}")
    num_queries, num_gallery = matrix.shape
    labels = _Labels.check(
        query_pids, gallery_pids, query_camids, gallery_camids, junk_pids, num_queries, num_gallery
    )
    size = _chunk_size(chunk_size, num_gallery)
    accumulator = _Accumulator(num_queries, max_rank)
    for start in range(0, num_queries, size):
        stop = min(start + size, num_queries)
        chunk = np.asarray(matrix[start:stop])
        if np.issubdtype(chunk.dtype, np.floating) and np.isnan(chunk).any():
            row = start + int(np.flatnonzero(np.isnan(chunk).any(axis=1))[0])
            raise ValueError(f"distances row {row} holds NaN; rankings would be undefined")
        accumulator.add(start, chunk, labels)
    return accumulator.result()


def cosine_distance(query_features: ArrayLike, gallery_features: ArrayLike) -> NDArray[np.float32]:
    """``1 - q·g`` for every pair of L2-normalised rows: a ``(Q, G)`` float32 matrix in ``[0, 2]``.

    The features are assumed normalised already (``Detections.embedding`` is); for unnormalised
    rows the result is not a cosine distance.
    """
    query = _features("query_features", query_features)
    gallery = _features("gallery_features", gallery_features)
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"query_features have dimension {query.shape[1]} but gallery_features have {gallery.shape[1]}"
        )
    distances = query @ gallery.T
    np.subtract(np.float32(1.0), distances, out=distances)
    return distances


def reid_metrics_from_features(
    query_features: ArrayLike,
    gallery_features: ArrayLike,
    query_pids: ArrayLike,
    gallery_pids: ArrayLike,
    query_camids: ArrayLike,
    gallery_camids: ArrayLike,
    *,
    max_rank: int = 50,
    junk_pids: Iterable[int] = (),
    chunk_size: int | None = None,
) -> ReidResult:
    """Like ``reid_metrics`` with ``cosine_distance`` between L2-normalised float32 features.

    Distances are computed one chunk of queries at a time, so the ``(Q, G)`` matrix never exists
    whole. (Matrix products may round differently with the chunk size, so exact ties between
    near-equal distances can, rarely, resolve differently from ``reid_metrics(cosine_distance(...))``.)
    """
    query = _features("query_features", query_features)
    gallery = _features("gallery_features", gallery_features)
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"query_features have dimension {query.shape[1]} but gallery_features have {gallery.shape[1]}"
        )
    num_queries, num_gallery = query.shape[0], gallery.shape[0]
    labels = _Labels.check(
        query_pids, gallery_pids, query_camids, gallery_camids, junk_pids, num_queries, num_gallery
    )
    size = _chunk_size(chunk_size, num_gallery)
    accumulator = _Accumulator(num_queries, max_rank)
    for start in range(0, num_queries, size):
        chunk = cosine_distance(query[start : start + size], gallery)
        if np.isnan(chunk).any():
            raise ValueError("features hold NaN; rankings would be undefined")
        accumulator.add(start, chunk, labels)
    return accumulator.result()


# ------------------------------------------------------------------------------ internals
def _features(name: str, values: ArrayLike) -> NDArray[np.float32]:
    array = np.asarray(values, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape (N, D), got {array.shape}")
    return array


def _chunk_size(chunk_size: int | None, num_gallery: int) -> int:
    if chunk_size is None:
        return max(1, _CHUNK_ELEMENTS // max(num_gallery, 1))
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    return chunk_size


def _ids(name: str, values: ArrayLike, n: int) -> NDArray[np.int64]:
    array = np.asarray(values)
    if array.ndim != 1 or array.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), got {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got {array.dtype}")
    return array.astype(np.int64, copy=False)


@dataclass(frozen=True, slots=True)
class _Labels:
    query_pids: NDArray[np.int64]
    gallery_pids: NDArray[np.int64]
    query_camids: NDArray[np.int64]
    gallery_camids: NDArray[np.int64]
    gallery_junk: NDArray[np.bool_] | None

    @classmethod
    def check(
        cls,
        query_pids: ArrayLike,
        gallery_pids: ArrayLike,
        query_camids: ArrayLike,
        gallery_camids: ArrayLike,
        junk_pids: Iterable[int],
        num_queries: int,
        num_gallery: int,
    ) -> _Labels:
        gallery = _ids("gallery_pids", gallery_pids, num_gallery)
        junk = np.fromiter(junk_pids, np.int64)
        return cls(
            _ids("query_pids", query_pids, num_queries),
            gallery,
            _ids("query_camids", query_camids, num_queries),
            _ids("gallery_camids", gallery_camids, num_gallery),
            np.isin(gallery, junk) if junk.size else None,
        )


class _Accumulator:
    """Per-query first-hit rank, AP and INP, filled chunk by chunk."""

    def __init__(self, num_queries: int, max_rank: int) -> None:
        if max_rank < _MIN_MAX_RANK:
            raise ValueError(
                f"max_rank must be at least {_MIN_MAX_RANK} (rank10 is reported), got {max_rank}"
            )
        self.max_rank = max_rank
        self.first_rank = np.zeros(num_queries, np.int64)
        self.average_precision = np.full(num_queries, np.nan)
        self.inverse_negative_penalty = np.full(num_queries, np.nan)

    def add(self, start: int, distances: NDArray[Any], labels: _Labels) -> None:
        count, num_gallery = distances.shape
        if count == 0 or num_gallery == 0:
            return
        stop = start + count
        order = np.argsort(distances, axis=1, kind="stable")
        matches = labels.gallery_pids[order] == labels.query_pids[start:stop, None]
        keep = ~(matches & (labels.gallery_camids[order] == labels.query_camids[start:stop, None]))
        if labels.gallery_junk is not None:
            keep &= ~labels.gallery_junk[order]
        del order
        hits = matches
        hits &= keep
        counter = np.int32 if num_gallery < np.iinfo(np.int32).max else np.int64
        # 1-based rank of each item among the kept ones; only read at hits, which are kept.
        kept_rank = np.cumsum(keep, axis=1, dtype=counter)
        del keep
        hit_rows, hit_columns = np.nonzero(hits)
        positives = np.bincount(hit_rows, minlength=count)
        valid = positives > 0
        if not valid.any():
            return
        hit_ranks = kept_rank[hit_rows, hit_columns].astype(np.float64)
        # i-th hit of a row: its position among that row's hits, from the (row-major) nonzero order.
        row_starts = np.cumsum(positives) - positives
        hit_number = np.arange(1, hit_rows.size + 1) - row_starts[hit_rows]
        precision_sum = np.bincount(hit_rows, weights=hit_number / hit_ranks, minlength=count)
        last_hit = np.cumsum(positives)[valid] - 1
        first_hit = row_starts[valid]

        rows = np.arange(start, stop)[valid]
        self.first_rank[rows] = hit_ranks[first_hit].astype(np.int64)
        self.average_precision[rows] = precision_sum[valid] / positives[valid]
        self.inverse_negative_penalty[rows] = positives[valid] / hit_ranks[last_hit]

    def result(self) -> ReidResult:
        valid = self.first_rank > 0
        num_valid = int(valid.sum())
        if num_valid == 0:
            raise ValueError(
                f"none of the {len(valid)} queries has a correct match in the gallery "
                "(after removing same-camera matches and junk identities)"
            )
        first = np.minimum(self.first_rank[valid], self.max_rank + 1)
        found = np.bincount(first, minlength=self.max_rank + 2)[1 : self.max_rank + 1]
        cmc = np.cumsum(found) / num_valid
        return ReidResult(
            cmc=cmc.astype(np.float64),
            mAP=float(np.mean(self.average_precision[valid])),
            mINP=float(np.mean(self.inverse_negative_penalty[valid])),
            num_valid_queries=num_valid,
            num_queries=len(valid),
            average_precision=self.average_precision,
            inverse_negative_penalty=self.inverse_negative_penalty,
        )
