"""Latency summaries and the mergeable log-bucket histogram."""

from __future__ import annotations

import copy
import json
import math
import pickle
import threading

import numpy as np
import pytest

from crossview.eval.latency import LatencyHistogram, LatencySummary

ROUNDING = 1e-9  # slack for floating-point rounding at bucket edges, relative to the bound


def lognormal(seed: int, n: int, median: float = 0.02, sigma: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(math.log(median), sigma, n)


# ------------------------------------------------------------------------------ summary
def test_summary_is_exact_with_linear_percentiles() -> None:
    samples = lognormal(0, 1001)
    summary = LatencySummary.from_seconds(samples)
    assert summary.count == 1001
    assert summary.mean == pytest.approx(np.mean(samples) * 1000, rel=1e-12)
    assert summary.p50 == pytest.approx(np.percentile(samples, 50) * 1000, rel=1e-12)
    assert summary.p90 == pytest.approx(np.percentile(samples, 90, method="linear") * 1000, rel=1e-12)
    assert summary.p99 == pytest.approx(np.percentile(samples, 99) * 1000, rel=1e-12)
    assert summary.max == pytest.approx(samples.max() * 1000, rel=1e-12)
    assert set(summary.to_dict()) == {"count", "mean", "p50", "p90", "p99", "max"}


def test_summary_interpolates_between_samples() -> None:
    summary = LatencySummary.from_seconds([0.001, 0.002, 0.003, 0.004])
    assert summary.p50 == pytest.approx(2.5)
    assert summary.p90 == pytest.approx(3.7)


def test_summary_of_nothing_is_nan() -> None:
    summary = LatencySummary.from_seconds([])
    assert summary.count == 0
    assert all(math.isnan(value) for key, value in summary.to_dict().items() if key != "count")


@pytest.mark.parametrize("bad", [-0.001, math.nan, math.inf])
def test_summary_rejects_impossible_samples(bad: float) -> None:
    with pytest.raises(ValueError, match="finite and non-negative"):
        LatencySummary.from_seconds([0.01, bad])


# ------------------------------------------------------------------------------ histogram
@pytest.mark.parametrize("relative_error", [0.001, 0.01, 0.05])
@pytest.mark.parametrize("seed", range(8))
def test_quantile_error_is_within_the_documented_bound(relative_error: float, seed: int) -> None:
    n = [1, 2, 7, 100, 1000, 20000, 3, 50000][seed]
    samples = lognormal(seed, n, median=[0.001, 0.02, 0.5][seed % 3], sigma=[0.3, 1.0, 2.0][seed % 3])
    samples = np.clip(samples, 1e-6, 3600.0)
    histogram = LatencyHistogram(relative_error=relative_error)
    histogram.record_many(samples)
    levels = np.r_[0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0]
    estimates = histogram.quantiles(levels)
    truth = np.percentile(samples, levels * 100)
    error = np.abs(estimates - truth) / truth
    assert error.max() <= relative_error * (1 + ROUNDING)
    for level, estimate in zip(levels, estimates, strict=True):
        assert histogram.quantile(float(level)) == estimate
    assert histogram.quantile(0.0) == samples.min()  # clamped to the exact extremes
    assert histogram.quantile(1.0) == samples.max()


def test_summary_from_histogram_matches_exact_summary_within_bound() -> None:
    samples = lognormal(1, 5000)
    histogram = LatencyHistogram(relative_error=0.01)
    histogram.record_many(samples)
    estimated, exact = histogram.summary(), LatencySummary.from_seconds(samples)
    assert estimated.count == exact.count
    assert estimated.mean == pytest.approx(exact.mean, rel=1e-12)
    assert estimated.max == exact.max
    for name in ("p50", "p90", "p99"):
        assert getattr(estimated, name) == pytest.approx(getattr(exact, name), rel=0.01 * (1 + ROUNDING))


def test_record_one_by_one_equals_record_many() -> None:
    samples = lognormal(2, 300)
    one, many = LatencyHistogram(), LatencyHistogram()
    for sample in samples:
        one.record(float(sample))
    many.record_many(samples)
    assert one.to_dict()["bucket_counts"] == many.to_dict()["bucket_counts"]
    assert one.to_dict()["bucket_indices"] == many.to_dict()["bucket_indices"]
    assert one.summary().p99 == many.summary().p99


def test_merge_equals_recording_everything_into_one() -> None:
    parts = [lognormal(seed, size) for seed, size in enumerate([10, 0, 2500, 700, 1])]
    whole = LatencyHistogram(relative_error=0.02)
    whole.record_many(np.concatenate(parts))
    merged = LatencyHistogram(relative_error=0.02)
    for part in parts:
        worker = LatencyHistogram(relative_error=0.02)
        worker.record_many(part)
        merged.merge(worker)
    merged_dict, whole_dict = merged.to_dict(), whole.to_dict()
    assert merged_dict.pop("sum") == pytest.approx(whole_dict.pop("sum"), rel=1e-12)
    assert merged_dict == whole_dict
    levels = np.linspace(0, 1, 101)
    np.testing.assert_array_equal(merged.quantiles(levels), whole.quantiles(levels))
    assert merged.count == whole.count == sum(len(part) for part in parts)


def test_merge_refuses_different_layouts() -> None:
    histogram = LatencyHistogram(relative_error=0.01)
    for other in (
        LatencyHistogram(relative_error=0.02),
        LatencyHistogram(relative_error=0.01, lowest=1e-5),
        LatencyHistogram(relative_error=0.01, highest=60.0),
    ):
        with pytest.raises(ValueError, match="different bucket layouts"):
            histogram.merge(other)


def test_dict_round_trip_through_json() -> None:
    histogram = LatencyHistogram(relative_error=0.005)
    histogram.record_many(lognormal(3, 1234))
    histogram.record_many([0.0, 5e-7, 7200.0])  # underflow and overflow buckets
    data = json.loads(json.dumps(histogram.to_dict()))
    restored = LatencyHistogram.from_dict(data)
    assert restored.to_dict() == histogram.to_dict()
    assert restored.layout == histogram.layout
    assert restored.summary() == histogram.summary()
    empty = LatencyHistogram.from_dict(json.loads(json.dumps(LatencyHistogram().to_dict())))
    assert empty.count == 0 and math.isnan(empty.max)


def test_from_dict_rejects_malformed_dicts() -> None:
    good = LatencyHistogram()
    good.record(0.01)
    data = good.to_dict()
    with pytest.raises(ValueError, match="version"):
        LatencyHistogram.from_dict({**data, "version": 99})
    with pytest.raises(ValueError, match="malformed"):
        LatencyHistogram.from_dict({key: value for key, value in data.items() if key != "lowest"})
    with pytest.raises(ValueError, match="equally long"):
        LatencyHistogram.from_dict({**data, "bucket_counts": [1, 2]})
    with pytest.raises(ValueError, match="bucket indices"):
        LatencyHistogram.from_dict({**data, "bucket_indices": [10**6]})
    with pytest.raises(ValueError, match="min and max"):
        LatencyHistogram.from_dict({**data, "min": None})


def test_extremes_below_lowest_and_above_highest() -> None:
    histogram = LatencyHistogram(relative_error=0.01)
    histogram.record_many([0.0, 0.0, 2e-7, 5000.0])
    assert histogram.quantile(0.0) == 0.0
    assert abs(histogram.quantile(1 / 3) - 0.0) <= histogram.lowest / 2
    assert abs(histogram.quantile(2 / 3) - 2e-7) <= histogram.lowest / 2
    assert histogram.quantile(1.0) == 5000.0
    assert histogram.max == 5000.0
    assert histogram.min == 0.0


def test_empty_histogram() -> None:
    histogram = LatencyHistogram()
    assert histogram.count == 0
    assert math.isnan(histogram.quantile(0.5))
    assert math.isnan(histogram.max) and math.isnan(histogram.mean)
    assert histogram.summary().count == 0
    histogram.record_many([])
    assert histogram.count == 0


def test_bucket_count_follows_relative_error() -> None:
    histogram = LatencyHistogram(relative_error=0.01)
    gamma = 1.01 / 0.99
    assert histogram.num_buckets == math.ceil(math.log(3600.0 / 1e-6) / math.log(gamma)) + 2
    assert histogram.num_buckets < 1200


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="relative_error"):
        LatencyHistogram(relative_error=0.0)
    with pytest.raises(ValueError, match="lowest < highest"):
        LatencyHistogram(lowest=1.0, highest=0.5)
    histogram = LatencyHistogram()
    with pytest.raises(ValueError, match="finite and non-negative"):
        histogram.record(-1.0)
    with pytest.raises(ValueError, match="finite and non-negative"):
        histogram.record_many([0.1, math.nan])
    with pytest.raises(ValueError, match="between 0 and 1"):
        histogram.quantile(1.5)
    assert histogram.count == 0  # a rejected batch records nothing


def test_copy_and_pickle_keep_the_samples() -> None:
    histogram = LatencyHistogram(relative_error=0.02)
    histogram.record_many(lognormal(4, 100))
    for clone in (copy.deepcopy(histogram), pickle.loads(pickle.dumps(histogram))):
        assert clone.to_dict() == histogram.to_dict()
        clone.record(1.0)
        assert clone.count == histogram.count + 1


def test_concurrent_recording_loses_nothing() -> None:
    histogram = LatencyHistogram()
    samples = lognormal(5, 500)

    def work() -> None:
        for sample in samples:
            histogram.record(float(sample))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert histogram.count == 2000
    assert histogram.mean == pytest.approx(samples.mean(), rel=1e-9)


def test_independent_instances_share_nothing() -> None:
    first, second = LatencyHistogram(), LatencyHistogram()
    first.record(0.5)
    assert second.count == 0
