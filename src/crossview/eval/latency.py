"""Latency statistics: exact summaries of samples, and a mergeable log-bucket histogram.

Samples are recorded in seconds (the unit of ``time.perf_counter``); summaries report milliseconds.

``LatencySummary.from_seconds`` is exact: percentiles use numpy's default ``"linear"`` method
(``np.percentile(samples, q)``: linear interpolation between the two nearest order statistics at
rank ``q/100 · (n - 1)``).

``LatencyHistogram`` keeps counts in fixed logarithmic buckets (DDSketch's mapping, the idea behind
HDR histograms): bucket ``i >= 1`` holds values in ``(lowest·γ^(i-1), lowest·γ^i]`` with
``γ = (1 + α) / (1 - α)`` for a relative error ``α``, and is represented by ``2·lowest·γ^i / (γ + 1)``,
which lies within ``α`` (relatively) of every value in the bucket. ``quantile`` interpolates linearly
between the represented neighbouring order statistics exactly as ``np.percentile`` does between the
true ones, so for samples within ``[lowest, highest]``

    ``|histogram.quantile(q) - np.percentile(samples, 100 q)| <= α · np.percentile(samples, 100 q)``

(up to floating-point rounding at bucket edges). Samples below ``lowest`` share one bucket and are
answered within ``lowest / 2`` absolutely; samples above ``highest`` share one bucket represented by
the exact maximum. The smallest and largest samples are kept exactly (``quantile(0)`` and
``quantile(1)`` are exact) and every estimate is clamped to them, which only moves it closer.

Histograms with the same layout merge by adding counts, so per-worker histograms combine into
the histogram of all samples; ``to_dict``/``from_dict`` carry them between processes. A histogram
owns a lock, so threads may record into one histogram concurrently.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

_MILLISECONDS: Final = 1000.0
_FORMAT_VERSION: Final = 1


def _samples(values: ArrayLike) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size and not (np.isfinite(array).all() and (array >= 0).all()):
        bad = array[~(np.isfinite(array) & (array >= 0))][0]
        raise ValueError(f"latency samples must be finite and non-negative seconds, got {bad!r}")
    return array


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Count and milliseconds statistics of latency samples.

    ``mean``, ``p50``, ``p90``, ``p99`` and ``max`` are in milliseconds; with no samples they are
    ``NaN`` and ``count`` is 0.

    >>> s = LatencySummary.from_seconds([0.010, 0.020, 0.030])
    >>> s.count, s.p50, s.max
    (3, 20.0, 30.0)
    """

    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def from_seconds(cls, samples: ArrayLike) -> Self:
        """Exact statistics of samples in seconds (percentiles by linear interpolation)."""
        values = _samples(samples)
        if values.size == 0:
            return cls.empty()
        p50, p90, p99 = np.percentile(values, [50.0, 90.0, 99.0]) * _MILLISECONDS
        return cls(
            count=int(values.size),
            mean=float(np.mean(values) * _MILLISECONDS),
            p50=float(p50),
            p90=float(p90),
            p99=float(p99),
            max=float(np.max(values) * _MILLISECONDS),
        )

    @classmethod
    def empty(cls) -> Self:
        return cls(count=0, mean=math.nan, p50=math.nan, p90=math.nan, p99=math.nan, max=math.nan)

    def to_dict(self) -> dict[str, float]:
        """The fields by name (``count`` as a number, the rest in milliseconds)."""
        return asdict(self)


class LatencyHistogram:
    """Counts of latency samples in fixed log-spaced buckets, with bounded-relative-error quantiles.

    ``relative_error`` (α) bounds the error of ``quantile`` for samples in ``[lowest, highest]``
    seconds (by default 1 µs to one hour); the bucket count is about
    ``ln(highest / lowest) / ln((1 + α) / (1 - α))`` (1,100 for α = 1 %), stored densely.

    >>> h = LatencyHistogram(relative_error=0.01)
    >>> h.record_many([0.010, 0.020, 0.030])
    >>> abs(h.quantile(0.5) - 0.020) <= 0.01 * 0.020
    True
    """

    __slots__ = (
        "_counts",
        "_gamma",
        "_highest",
        "_lock",
        "_log_gamma",
        "_lowest",
        "_max",
        "_min",
        "_sum",
        "relative_error",
    )

    def __init__(
        self, relative_error: float = 0.01, *, lowest: float = 1e-6, highest: float = 3600.0
    ) -> None:
        if not 0.0 < relative_error < 1.0:
            raise ValueError(f"relative_error must be between 0 and 1 (exclusive), got {relative_error}")
        if not 0.0 < lowest < highest or not math.isfinite(highest):
            raise ValueError(f"need 0 < lowest < highest < inf, got lowest={lowest}, highest={highest}")
        self.relative_error = float(relative_error)
        self._lowest = float(lowest)
        self._highest = float(highest)
        self._gamma = (1.0 + relative_error) / (1.0 - relative_error)
        self._log_gamma = math.log(self._gamma)
        buckets = math.ceil(math.log(highest / lowest) / self._log_gamma)
        # Bucket 0: [0, lowest]; 1..buckets: log-spaced; buckets + 1: above highest.
        self._counts = np.zeros(buckets + 2, np.int64)
        self._sum = 0.0
        self._min = math.inf
        self._max = -math.inf
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ layout
    @property
    def lowest(self) -> float:
        return self._lowest

    @property
    def highest(self) -> float:
        return self._highest

    @property
    def layout(self) -> tuple[float, float, float]:
        """``(relative_error, lowest, highest)``: histograms merge only when these are equal."""
        return (self.relative_error, self._lowest, self._highest)

    @property
    def num_buckets(self) -> int:
        return int(self._counts.shape[0])

    def _bucket(self, seconds: NDArray[np.float64]) -> NDArray[np.int64]:
        overflow = self.num_buckets - 1
        index = np.zeros(seconds.shape, np.int64)
        above = seconds > self._lowest
        scaled = np.log(seconds[above] / self._lowest) / self._log_gamma
        index[above] = np.maximum(np.ceil(scaled), 1).astype(np.int64)
        index[seconds > self._highest] = overflow
        return np.clip(index, 0, overflow)

    def _representative(self, index: NDArray[np.int64], low: float, high: float) -> NDArray[np.float64]:
        upper = self._lowest * np.exp(index.astype(np.float64) * self._log_gamma)
        value = 2.0 * upper / (self._gamma + 1.0)
        value = np.where(index == 0, self._lowest / 2.0, value)
        value = np.where(index == self.num_buckets - 1, high, value)
        return np.clip(value, low, high)

    def _order_statistic(
        self, cumulative: NDArray[np.int64], rank: NDArray[np.float64], low: float, high: float
    ) -> NDArray[np.float64]:
        """Estimates of the samples at 0-based ``rank`` in sorted order; the extremes are known exactly."""
        value = self._representative(np.searchsorted(cumulative, rank, side="right"), low, high)
        value = np.where(rank == 0, low, value)
        return np.where(rank == cumulative[-1] - 1, high, value)

    def _snapshot(self) -> tuple[NDArray[np.int64], float, float, float]:
        with self._lock:
            return self._counts.copy(), self._sum, self._min, self._max

    # ------------------------------------------------------------------ recording
    def record(self, seconds: float) -> None:
        """Add one sample (seconds, finite and non-negative); cheap enough for every request."""
        value = float(seconds)
        if not (math.isfinite(value) and value >= 0.0):
            raise ValueError(f"latency samples must be finite and non-negative seconds, got {value!r}")
        overflow = self.num_buckets - 1
        if value <= self._lowest:
            index = 0
        elif value > self._highest:
            index = overflow
        else:
            index = min(max(math.ceil(math.log(value / self._lowest) / self._log_gamma), 1), overflow)
        with self._lock:
            self._counts[index] += 1
            self._sum += value
            self._min = min(self._min, value)
            self._max = max(self._max, value)

    def record_many(self, seconds: ArrayLike) -> None:
        """Add samples (seconds, finite and non-negative), any shape."""
        values = _samples(seconds)
        if values.size == 0:
            return
        counts = np.bincount(self._bucket(values), minlength=self.num_buckets)
        total, low, high = float(np.sum(values)), float(np.min(values)), float(np.max(values))
        with self._lock:
            self._counts += counts
            self._sum += total
            self._min = min(self._min, low)
            self._max = max(self._max, high)

    def merge(self, other: LatencyHistogram) -> None:
        """Add ``other``'s samples to this histogram; raises ``ValueError`` if the layouts differ."""
        if other.layout != self.layout:
            raise ValueError(
                f"cannot merge histograms with different bucket layouts "
                f"(relative_error, lowest, highest): {self.layout} and {other.layout}"
            )
        counts, total, low, high = other._snapshot()
        with self._lock:
            self._counts += counts
            self._sum += total
            self._min = min(self._min, low)
            self._max = max(self._max, high)

    # ------------------------------------------------------------------ reading
    @property
    def count(self) -> int:
        return int(self._counts.sum())

    @property
    def max(self) -> float:
        """The largest sample in seconds (exact); ``NaN`` when empty."""
        return self._max if self.count else math.nan

    @property
    def min(self) -> float:
        """The smallest sample in seconds (exact); ``NaN`` when empty."""
        return self._min if self.count else math.nan

    @property
    def mean(self) -> float:
        """Mean of the samples in seconds (exact up to summation rounding); ``NaN`` when empty."""
        count = self.count
        return self._sum / count if count else math.nan

    def quantile(self, q: float) -> float:
        """The ``q``-quantile (``0 <= q <= 1``) in seconds, within the module's bound; ``NaN`` when empty."""
        return float(self.quantiles([q])[0])

    def quantiles(self, qs: ArrayLike) -> NDArray[np.float64]:
        """Several quantiles at once, in seconds (same method as ``quantile``)."""
        levels = np.asarray(qs, dtype=np.float64).reshape(-1)
        if levels.size and not ((levels >= 0) & (levels <= 1)).all():
            raise ValueError(f"quantiles must be between 0 and 1, got {levels.tolist()}")
        counts, _, low, high = self._snapshot()
        count = int(counts.sum())
        if count == 0:
            return np.full(levels.shape, np.nan)
        cumulative = np.cumsum(counts)
        # np.percentile's "linear" method: interpolate between order statistics floor(h) and ceil(h).
        position = levels * (count - 1)
        below = np.floor(position)
        fraction = position - below
        above = np.minimum(below + 1, count - 1)
        lower = self._order_statistic(cumulative, below, low, high)
        upper = self._order_statistic(cumulative, above, low, high)
        return np.asarray(lower + fraction * (upper - lower), dtype=np.float64)

    def summary(self) -> LatencySummary:
        """Count, exact mean and max, and estimated p50/p90/p99, in milliseconds."""
        snapshot = LatencyHistogram.from_dict(self.to_dict())  # one consistent view while others record
        count = snapshot.count
        if count == 0:
            return LatencySummary.empty()
        p50, p90, p99 = snapshot.quantiles([0.5, 0.9, 0.99]) * _MILLISECONDS
        return LatencySummary(
            count=count,
            mean=snapshot.mean * _MILLISECONDS,
            p50=float(p50),
            p90=float(p90),
            p99=float(p99),
            max=snapshot.max * _MILLISECONDS,
        )

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the layout, exact sum/min/max and the non-empty buckets (sparse)."""
        counts, total, low, high = self._snapshot()
        occupied = np.flatnonzero(counts)
        empty = not occupied.size
        return {
            "version": _FORMAT_VERSION,
            "relative_error": self.relative_error,
            "lowest": self._lowest,
            "highest": self._highest,
            "sum": total,
            "min": None if empty else low,
            "max": None if empty else high,
            "bucket_indices": occupied.tolist(),
            "bucket_counts": counts[occupied].tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """The inverse of ``to_dict``; raises ``ValueError`` for an inconsistent dict."""
        if data.get("version") != _FORMAT_VERSION:
            raise ValueError(f"unsupported latency histogram version {data.get('version')!r}")
        try:
            histogram = cls(
                float(data["relative_error"]), lowest=float(data["lowest"]), highest=float(data["highest"])
            )
            indices = np.asarray(data["bucket_indices"], dtype=np.int64).reshape(-1)
            counts = np.asarray(data["bucket_counts"], dtype=np.int64).reshape(-1)
            total = float(data["sum"])
            low, high = data["min"], data["max"]
        except (KeyError, TypeError) as error:
            raise ValueError(f"malformed latency histogram dict: {error!r}") from error
        if indices.shape != counts.shape or (counts < 0).any():
            raise ValueError("bucket_indices and bucket_counts must be equally long, with counts >= 0")
        if indices.size and not ((indices >= 0) & (indices < histogram.num_buckets)).all():
            raise ValueError(f"bucket indices must be between 0 and {histogram.num_buckets - 1}")
        np.add.at(histogram._counts, indices, counts)
        if histogram.count:
            if low is None or high is None:
                raise ValueError("a non-empty latency histogram dict needs min and max")
            histogram._sum, histogram._min, histogram._max = total, float(low), float(high)
        return histogram

    def __reduce__(self) -> tuple[Any, ...]:
        # The lock cannot be pickled or deep-copied; the dict form carries everything else.
        return (_from_dict, (self.to_dict(),))

    def __repr__(self) -> str:
        return f"LatencyHistogram(relative_error={self.relative_error}, count={self.count})"


def _from_dict(data: Mapping[str, Any]) -> LatencyHistogram:
    return LatencyHistogram.from_dict(data)
