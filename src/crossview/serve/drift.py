"""Drift detection for the perception service: is what the models see now what they saw before?

A *stream* is one source of model outputs, usually one model on one camera (``"c1/yolox-nano"``).
For each stream two *signals* are monitored independently:

``confidence``
    the detection confidences the detector emits, each in ``[0, 1]``;
``embedding``
    the appearance embeddings the re-identification model emits, one ``D``-vector per crop.

Windows
    The first ``reference_size`` samples of a signal form its *reference*, which is then frozen.
    Samples that come after it go to the *recent window*, a ring buffer that keeps the latest
    ``window_size`` samples, so memory stays bounded however long the service runs. While the
    reference is filling nothing is collected for the recent window: the reference comes first.
    ``DriftMonitor.reset_reference`` drops both and starts a new reference, e.g. after a model
    rollout or a camera being moved on purpose.

Comparison
    Each report compares the recent window with the reference with two statistics:

    * the **Population Stability Index**, ``PSI = sum_i (q_i - p_i) * ln(q_i / p_i)``, where ``p_i``
      and ``q_i`` are the proportions of the reference and of the recent samples in bin ``i``. The
      bins are the reference's quantiles (``bins`` of them, equal-frequency, edges deduplicated when
      the reference has ties), with open-ended first and last bins so that recent values outside
      the reference's range are counted, not dropped. Proportions are floored at ``eps`` so that an
      empty bin gives a large but finite term. The usual reading is: PSI < 0.1 stable,
      0.1 - 0.25 moderate shift, > 0.25 large shift. With ``n`` reference and ``m`` recent samples
      of one distribution the PSI is not 0 but about ``(bins - 1) * (1/n + 1/m)`` (sampling noise),
      e.g. 0.02 for the default 2000 / 500 samples and 10 bins, well below the thresholds; with
      small windows it is not (0.14 on average for 200 / 100 samples, often above 0.25), so keep
      the windows at several hundred samples or use fewer bins.
    * the **two-sample Kolmogorov-Smirnov test** (``scipy.stats.ks_2samp``): the statistic is the
      largest gap between the two empirical CDFs, the p-value the chance of a gap that large if
      both windows came from one distribution. It is sensitive to shifts PSI's coarse bins blur,
      but with large windows it also flags shifts too small to matter, hence a low ``ks_pvalue_alert``.

    A signal is reported ``drifted`` when ``psi > psi_alert`` (default 0.25, "large") or
    ``ks_pvalue < ks_pvalue_alert`` (default 0.01). With fewer than ``min_samples`` samples in
    either window there is no verdict: the values are NaN and ``drifted`` is False.

Embeddings
    PSI and KS compare one-dimensional samples, so each embedding is reduced to one number: the
    cosine distance ``1 - <v, c>`` of the L2-normalised vector ``v`` to the reference *centroid*
    ``c``, the normalised mean of the first ``centroid_size`` normalised vectors (256 by default,
    at most ``reference_size``), fixed once they have come. Those vectors then become their
    distances to ``c``, and the rest of the reference (up to ``reference_size`` samples) is stored
    only as distances, so the reference sample is ``reference_size`` distances as before. Fixing
    the centroid early bounds memory: a stream holds ``centroid_size x D`` floats while its
    centroid forms (0.5 MB at D = 480), never ``reference_size x D`` (3.8 MB), which matters when
    a service keeps a stream per camera and model, or a client invents stream names; 256 unit
    vectors place a mode's mean well within the spread of the distances. This detects
    changes of how far embeddings lie from the reference mode: a lighting change, a camera moved
    or refocused, a new kind of scene or a different model all spread embeddings away from (or
    pull them towards) where they used to be. It does not see every change: a distribution that
    moves *along a sphere around the centroid* keeps its distances (e.g. one population replaced
    by another equally far from the centroid), and with a very diverse reference (no clear mode,
    the mean of the vectors near zero) the centroid says little. If the first normalised vectors
    sum exactly to zero the first of them serves as the centroid.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> monitor = DriftMonitor(DriftConfig(reference_size=500, window_size=200, min_samples=50))
>>> monitor.observe_confidences("c1/yolox-nano", rng.beta(8, 2, 500))
>>> monitor.observe_confidences("c1/yolox-nano", rng.beta(4, 4, 200))
>>> report = monitor.report()[0]
>>> report.signal, report.reference_count, report.recent_count, report.drifted, report.psi > 0.25
('confidence', 500, 200, True, True)
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.stats import ks_2samp

Signal = Literal["confidence", "embedding"]
"""What a drift report is about: detection confidences or appearance embeddings."""

CONFIDENCE: Final[Signal] = "confidence"
EMBEDDING: Final[Signal] = "embedding"

FloatArray = NDArray[np.float64]


def _samples(values: ArrayLike, name: str) -> FloatArray:
    """``values`` as a 1-D float64 array of finite samples (possibly empty); ValueError otherwise."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be numeric samples: {error}") from error
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of samples, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")
    return array


def _nonempty_samples(values: ArrayLike, name: str) -> FloatArray:
    array = _samples(values, name)
    if array.size == 0:
        raise ValueError(f"{name} is empty: at least one sample is needed")
    return array


def psi(reference: ArrayLike, recent: ArrayLike, *, bins: int = 10, eps: float = 1e-4) -> float:
    """Population Stability Index of ``recent`` against ``reference`` (0 when they are alike).

    The bin edges are the reference's quantiles (deduplicated), the first and last bins are
    open-ended so out-of-range recent values count, and proportions are floored at ``eps``.

    >>> round(psi([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [0, 1, 2, 7, 8, 9, 9, 9], bins=2), 6)  # 0.125 ln(5/3)
    0.063853
    """
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    ref = _nonempty_samples(reference, "reference")
    rec = _nonempty_samples(recent, "recent")
    inner = np.unique(np.quantile(ref, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    n_bins = inner.size + 1
    p = np.bincount(np.searchsorted(inner, ref, side="right"), minlength=n_bins) / ref.size
    q = np.bincount(np.searchsorted(inner, rec, side="right"), minlength=n_bins) / rec.size
    p = np.maximum(p, eps)
    q = np.maximum(q, eps)
    return float(np.sum((q - p) * np.log(q / p)))


@dataclass(frozen=True, slots=True)
class KsResult:
    """Two-sample Kolmogorov-Smirnov test: the largest CDF gap and its two-sided p-value."""

    statistic: float
    pvalue: float


def ks(reference: ArrayLike, recent: ArrayLike) -> KsResult:
    """Two-sample Kolmogorov-Smirnov test of ``recent`` against ``reference`` (``scipy.stats.ks_2samp``).

    >>> result = ks([0.0, 0.1, 0.2, 0.3], [0.6, 0.7, 0.8, 0.9])
    >>> result.statistic, round(result.pvalue, 4)
    (1.0, 0.0286)
    """
    ref = _nonempty_samples(reference, "reference")
    rec = _nonempty_samples(recent, "recent")
    result = ks_2samp(ref, rec)
    return KsResult(statistic=float(result.statistic), pvalue=float(result.pvalue))


_CENTROID_SIZE: Final = 256
"""Default number of embeddings that fix a stream's centroid (see the module docstring)."""


class DriftConfig(BaseModel):
    """Window sizes and alert thresholds of a ``DriftMonitor`` (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reference_size: int = Field(default=2000, ge=10)
    """The first samples of a signal that form its reference (then frozen)."""
    window_size: int = Field(default=500, ge=10)
    """How many of the most recent samples the recent window keeps."""
    centroid_size: int = Field(default=_CENTROID_SIZE, ge=1)
    """The first embeddings of a stream that fix its reference centroid: at most this many vectors
    are ever held per stream, the rest of the reference is kept as distances. At most
    ``reference_size``; left out, it is 256 or ``reference_size`` when that is smaller."""
    min_samples: int = Field(default=100, ge=2)
    """Below this many samples in either window there is no verdict."""
    bins: int = Field(default=10, ge=2)
    """Quantile bins of the PSI."""
    psi_alert: float = Field(default=0.25, gt=0.0)
    """Drifted when the PSI is above this (0.25: a large shift)."""
    ks_pvalue_alert: float = Field(default=0.01, gt=0.0, lt=1.0)
    """Drifted when the KS p-value is below this."""

    @model_validator(mode="before")
    @classmethod
    def _default_centroid_size(cls, data: Any) -> Any:
        """A small ``reference_size`` without a ``centroid_size`` takes the whole reference as centroid."""
        if isinstance(data, dict) and "centroid_size" not in data and "reference_size" in data:
            try:
                reference_size = int(data["reference_size"])
            except (TypeError, ValueError):
                return data  # the field's own validation reports it
            if 1 <= reference_size < _CENTROID_SIZE:
                return {**data, "centroid_size": reference_size}
        return data

    @model_validator(mode="after")
    def _reachable(self) -> DriftConfig:
        if self.min_samples > min(self.reference_size, self.window_size):
            raise ValueError(
                f"min_samples ({self.min_samples}) exceeds reference_size ({self.reference_size}) or "
                f"window_size ({self.window_size}): no verdict could ever be given"
            )
        if self.centroid_size > self.reference_size:
            raise ValueError(
                f"centroid_size ({self.centroid_size}) exceeds reference_size ({self.reference_size}): "
                "the centroid is fixed from the first reference embeddings"
            )
        return self


@dataclass(frozen=True, slots=True)
class DriftReport:
    """The drift verdict of one signal of one stream; the values are NaN when there is no verdict."""

    stream: str
    signal: Signal
    reference_count: int
    recent_count: int
    psi: float
    ks_statistic: float
    ks_pvalue: float
    drifted: bool

    def to_dict(self) -> dict[str, object]:
        """The report as JSON-ready values: NaN (no verdict) becomes ``None``.

        >>> nan = math.nan
        >>> DriftReport("c1/m", "confidence", 5, 0, nan, nan, nan, False).to_dict()["psi"] is None
        True
        """
        return {
            "stream": self.stream,
            "signal": self.signal,
            "reference_count": self.reference_count,
            "recent_count": self.recent_count,
            "psi": _finite_or_none(self.psi),
            "ks_statistic": _finite_or_none(self.ks_statistic),
            "ks_pvalue": _finite_or_none(self.ks_pvalue),
            "drifted": self.drifted,
        }


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


class _Series:
    """Scalar samples of one signal: a reference filled first, then a ring buffer of recent ones.

    Not thread-safe by itself: the monitor's lock guards it. The reference array is never written
    again once full, so a report may read it without copying.
    """

    def __init__(self, reference_size: int, window_size: int) -> None:
        self.reference = np.empty(reference_size, dtype=np.float64)
        self.reference_count = 0
        self._recent = np.empty(window_size, dtype=np.float64)
        self._position = 0
        self.recent_count = 0

    @property
    def reference_full(self) -> bool:
        return self.reference_count == self.reference.size

    def add(self, values: FloatArray) -> None:
        take = min(values.size, self.reference.size - self.reference_count)
        if take:
            self.reference[self.reference_count : self.reference_count + take] = values[:take]
            self.reference_count += take
        rest = values[take:]
        if rest.size == 0:
            return
        window = self._recent.size
        if rest.size >= window:
            self._recent[:] = rest[-window:]
            self._position = 0
            self.recent_count = window
            return
        slots = (self._position + np.arange(rest.size)) % window
        self._recent[slots] = rest
        self._position = (self._position + rest.size) % window
        self.recent_count = min(window, self.recent_count + rest.size)

    def snapshot(self) -> tuple[FloatArray, FloatArray]:
        """The reference (frozen when full, copied otherwise) and a copy of the recent window."""
        reference = self.reference if self.reference_full else self.reference[: self.reference_count].copy()
        return reference, self._recent[: self.recent_count].copy()


class _EmbeddingSeries:
    """Embeddings reduced to their cosine distance to the reference centroid (see module docstring).

    The first ``centroid_size`` normalised vectors are kept; once they have come the centroid is
    fixed, they are replaced by their distances, and every later vector is stored only as its
    distance (first to complete the reference, then in the recent window).
    """

    def __init__(self, reference_size: int, window_size: int, centroid_size: int) -> None:
        self.series = _Series(reference_size, window_size)
        self.centroid_size = min(centroid_size, reference_size)
        self.dim: int | None = None
        self._pending: NDArray[np.float32] | None = None
        self._pending_count = 0
        self._centroid: FloatArray | None = None

    @property
    def reference_count(self) -> int:
        return self.series.reference_count if self._centroid is not None else self._pending_count

    def add(self, unit_vectors: FloatArray) -> None:
        rest = unit_vectors
        if self._centroid is None:
            size = self.centroid_size
            if self._pending is None:
                self._pending = np.empty((size, unit_vectors.shape[1]), dtype=np.float32)
            take = min(rest.shape[0], size - self._pending_count)
            self._pending[self._pending_count : self._pending_count + take] = rest[:take]
            self._pending_count += take
            rest = rest[take:]
            if self._pending_count < size:
                return
            reference = self._pending.astype(np.float64)
            mean = reference.mean(axis=0)
            norm = float(np.linalg.norm(mean))
            self._centroid = mean / norm if norm > 0 else reference[0]
            self._pending = None
            self.series.add(self._distances(reference))
        if rest.shape[0]:
            self.series.add(self._distances(rest))

    def _distances(self, unit_vectors: FloatArray) -> FloatArray:
        assert self._centroid is not None
        return np.clip(1.0 - unit_vectors @ self._centroid, 0.0, 2.0)


def _check_stream(stream: str) -> None:
    if not isinstance(stream, str) or not stream.strip():
        raise ValueError(f"stream name must be a non-empty string, got {stream!r}")


class DriftMonitor:
    """Collects confidences and embeddings per stream and reports drift against each reference.

    Thread-safe: observations and reports may come from any thread. Memory per stream is bounded
    by ``reference_size + window_size`` floats per signal, plus ``centroid_size x D`` floats while
    its embedding centroid forms. Streams are kept until forgotten: ``forget`` and ``forget_where``
    free them (a camera removed, a model retired, names a client should not have been able to mint).
    """

    def __init__(self, config: DriftConfig | None = None) -> None:
        self._config = config if config is not None else DriftConfig()
        self._lock = threading.Lock()
        self._confidences: dict[str, _Series] = {}
        self._embeddings: dict[str, _EmbeddingSeries] = {}

    @property
    def config(self) -> DriftConfig:
        return self._config

    def observe_confidences(self, stream: str, values: ArrayLike) -> None:
        """Adds detection confidences (1-D, each in ``[0, 1]``) of ``stream``, e.g. ``"c1/yolox-nano"``."""
        _check_stream(stream)
        confidences = _samples(values, "confidences")
        if confidences.size and (confidences.min() < 0.0 or confidences.max() > 1.0):
            low, high = float(confidences.min()), float(confidences.max())
            raise ValueError(f"confidences must lie in [0, 1], got values in [{low:g}, {high:g}]")
        with self._lock:
            series = self._confidences.get(stream)
            if series is None:
                series = self._confidences[stream] = self._new_series()
            series.add(confidences)

    def observe_embeddings(self, stream: str, vectors: ArrayLike) -> None:
        """Adds appearance embeddings (an ``(N, D)`` array, any non-zero norm) of ``stream``.

        ``D`` must stay the same within a stream until ``reset_reference``.
        """
        _check_stream(stream)
        try:
            array = np.asarray(vectors, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"embeddings must be numeric: {error}") from error
        if array.ndim == 1 and array.size == 0:
            return
        if array.ndim != 2 or array.shape[1] == 0:
            raise ValueError(f"embeddings must be an (N, D) array with D >= 1, got shape {array.shape}")
        if not np.all(np.isfinite(array)):
            bad = int(np.count_nonzero(~np.all(np.isfinite(array), axis=1)))
            raise ValueError(f"embeddings contain non-finite values (NaN or inf) in {bad} vector(s)")
        norms = np.linalg.norm(array, axis=1)
        if np.any(norms == 0):
            zero = np.flatnonzero(norms == 0)
            raise ValueError(f"embeddings must have a non-zero norm; rows {zero[:10].tolist()} are zero")
        unit = array / norms[:, None]
        with self._lock:
            series = self._embeddings.get(stream)
            if series is None:
                series = self._embeddings[stream] = self._new_embedding_series()
            if series.dim is not None and series.dim != array.shape[1]:
                raise ValueError(
                    f"embedding dimension changed in stream {stream!r}: it was {series.dim}, got "
                    f"{array.shape[1]} (call reset_reference after switching models)"
                )
            series.dim = array.shape[1]
            if unit.shape[0]:
                series.add(unit)

    def report(self) -> list[DriftReport]:
        """One report per (stream, signal) seen, sorted by stream then signal."""
        with self._lock:
            snapshots: list[tuple[str, Signal, int, FloatArray, FloatArray]] = []
            for stream, series in self._confidences.items():
                snapshots.append((stream, CONFIDENCE, series.reference_count, *series.snapshot()))
            for stream, embedding in self._embeddings.items():
                reference, recent = embedding.series.snapshot()
                snapshots.append((stream, EMBEDDING, embedding.reference_count, reference, recent))
        snapshots.sort(key=lambda item: (item[0], item[1]))
        return [self._verdict(*item) for item in snapshots]

    def reset_reference(self, stream: str | None = None) -> None:
        """Starts a new reference for both signals of ``stream`` (all streams when None).

        The recent windows are dropped too (and an embedding stream may change dimension); the
        streams stay in the report, without a verdict until the new reference is full. Resetting a
        stream never seen does nothing.
        """
        if stream is not None:
            _check_stream(stream)
        with self._lock:
            for name in list(self._confidences):
                if stream is None or name == stream:
                    self._confidences[name] = self._new_series()
            for name in list(self._embeddings):
                if stream is None or name == stream:
                    self._embeddings[name] = self._new_embedding_series()

    def forget(self, stream: str) -> bool:
        """Drop both signals of ``stream`` (its memory is freed; a later sample starts it afresh).

        True when there was anything to drop.
        """
        _check_stream(stream)
        with self._lock:
            confidences = self._confidences.pop(stream, None)
            embeddings = self._embeddings.pop(stream, None)
        return confidences is not None or embeddings is not None

    def forget_where(self, predicate: Callable[[str], bool]) -> list[str]:
        """Drop every stream whose name satisfies ``predicate``; their names, sorted.

        ``predicate`` runs under the monitor's lock: keep it quick, and do not call the monitor from it.
        """
        with self._lock:
            names = {n for n in (*self._confidences, *self._embeddings) if predicate(n)}
            for name in names:
                self._confidences.pop(name, None)
                self._embeddings.pop(name, None)
        return sorted(names)

    def streams(self) -> list[str]:
        """The streams held now, sorted."""
        with self._lock:
            return sorted({*self._confidences, *self._embeddings})

    def _new_series(self) -> _Series:
        return _Series(self._config.reference_size, self._config.window_size)

    def _new_embedding_series(self) -> _EmbeddingSeries:
        config = self._config
        return _EmbeddingSeries(config.reference_size, config.window_size, config.centroid_size)

    def _verdict(
        self, stream: str, signal: Signal, reference_count: int, reference: FloatArray, recent: FloatArray
    ) -> DriftReport:
        config = self._config
        if reference.size < config.min_samples or recent.size < config.min_samples:
            return DriftReport(
                stream, signal, reference_count, recent.size, math.nan, math.nan, math.nan, False
            )
        value = psi(reference, recent, bins=config.bins)
        test = ks(reference, recent)
        drifted = value > config.psi_alert or test.pvalue < config.ks_pvalue_alert
        return DriftReport(
            stream, signal, reference_count, recent.size, value, test.statistic, test.pvalue, drifted
        )
