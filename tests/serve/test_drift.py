"""Drift detection: PSI and KS on their own, then the monitor on confidences and embeddings."""

from __future__ import annotations

import json
import math
import threading

import numpy as np
import pytest
from numpy.typing import NDArray
from pydantic import ValidationError
from scipy.stats import ks_2samp

from crossview.serve.drift import (
    DriftConfig,
    DriftMonitor,
    DriftReport,
    KsResult,
    _EmbeddingSeries,  # its held vectors are the memory bound under test
    ks,
    psi,
)

STREAM = "c1/yolox-nano"


# --- psi -------------------------------------------------------------------------------------------


def test_psi_is_zero_for_identical_samples() -> None:
    sample = np.random.default_rng(0).normal(size=1000)
    assert psi(sample, sample) == 0.0
    assert psi(sample, sample.copy()[::-1]) == 0.0


def test_psi_matches_a_hand_computed_value() -> None:
    # Two bins split at the reference median 4.5: reference 5 | 5 -> p = (0.5, 0.5);
    # recent 3 | 5 -> q = (0.375, 0.625). PSI = -0.125 ln(0.75) + 0.125 ln(1.25) = 0.125 ln(5/3).
    value = psi(np.arange(10), [0, 1, 2, 7, 8, 9, 9, 9], bins=2)
    assert value == pytest.approx(0.125 * math.log(5 / 3), rel=1e-12)
    assert value == pytest.approx(0.0638532, abs=1e-7)


def test_psi_counts_out_of_range_recent_values_in_the_open_end_bins() -> None:
    # Everything recent falls beyond the reference's range: into the last (or first) bin, whose
    # proportion becomes 1 while the other bin is floored at eps.
    eps = 1e-4
    expected = (eps - 0.5) * math.log(eps / 0.5) + (1 - 0.5) * math.log(1 / 0.5)
    assert psi(np.arange(10), [100.0] * 4, bins=2, eps=eps) == pytest.approx(expected, rel=1e-12)
    assert psi(np.arange(10), [-100.0] * 4, bins=2, eps=eps) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(4.6043, abs=1e-4)


def test_psi_is_large_for_a_shift_of_one_standard_deviation() -> None:
    rng = np.random.default_rng(1)
    value = psi(rng.normal(0, 1, 5000), rng.normal(1, 1, 5000))
    assert value > 0.25
    assert 0.6 < value < 1.6  # about 1.0 for a 1-sd shift with 10 decile bins


def test_psi_is_small_for_two_samples_of_one_distribution() -> None:
    rng = np.random.default_rng(2)
    value = psi(rng.normal(0, 1, 5000), rng.normal(0, 1, 5000))
    assert 0.0 < value < 0.1
    assert value < 0.02  # sampling noise is about (bins - 1) * (1/n + 1/m) = 0.0036


def test_psi_handles_a_constant_reference() -> None:
    # All quantile edges coincide: deduplicated to one edge, two bins (below / at-or-above it).
    assert psi([0.5] * 20, [0.5] * 7) == 0.0
    assert psi([0.5] * 20, [0.1] * 7) > 4.0


def test_psi_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="reference is empty"):
        psi([], [1.0])
    with pytest.raises(ValueError, match="recent is empty"):
        psi([1.0], [])
    with pytest.raises(ValueError, match="bins must be at least 2"):
        psi([1.0, 2.0], [1.0], bins=1)
    with pytest.raises(ValueError, match=r"reference must be a 1-D array.*\(2, 2\)"):
        psi([[1.0, 2.0], [3.0, 4.0]], [1.0])
    with pytest.raises(ValueError, match="recent contains 1 non-finite"):
        psi([1.0, 2.0], [1.0, math.nan])
    with pytest.raises(ValueError, match="eps must be positive"):
        psi([1.0, 2.0], [1.0], eps=0.0)


# --- ks --------------------------------------------------------------------------------------------


def test_ks_agrees_with_scipy() -> None:
    rng = np.random.default_rng(3)
    reference, recent = rng.normal(0, 1, 300), rng.normal(0.3, 1.2, 200)
    expected = ks_2samp(reference, recent)
    result = ks(reference, recent)
    assert isinstance(result, KsResult)
    assert result.statistic == pytest.approx(float(expected.statistic), rel=1e-12)
    assert result.pvalue == pytest.approx(float(expected.pvalue), rel=1e-12)
    assert isinstance(result.statistic, float) and isinstance(result.pvalue, float)


def test_ks_of_disjoint_samples() -> None:
    result = ks([0.0, 0.1, 0.2, 0.3], [0.6, 0.7, 0.8, 0.9])
    assert result.statistic == 1.0
    assert result.pvalue == pytest.approx(2 / 70, rel=1e-9)  # exact: 2 of C(8, 4) orderings


def test_ks_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="reference is empty"):
        ks([], [1.0])
    with pytest.raises(ValueError, match="recent contains 1 non-finite"):
        ks([1.0], [math.inf])


# --- config ----------------------------------------------------------------------------------------


def test_config_defaults_and_validation() -> None:
    config = DriftConfig()
    assert (config.reference_size, config.window_size, config.min_samples) == (2000, 500, 100)
    assert (config.bins, config.psi_alert, config.ks_pvalue_alert) == (10, 0.25, 0.01)
    with pytest.raises(ValidationError):
        DriftConfig(reference_size=5)
    with pytest.raises(ValidationError):
        DriftConfig(surprise=1)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="min_samples"):
        DriftConfig(window_size=50, min_samples=100)
    with pytest.raises(ValidationError):
        config.bins = 5


def test_centroid_size_defaults_and_validation() -> None:
    assert DriftConfig().centroid_size == 256
    # a reference smaller than the default takes all of itself as the centroid's vectors
    small = {"reference_size": 100, "window_size": 100, "min_samples": 50}
    assert DriftConfig.model_validate(small).centroid_size == 100
    assert DriftConfig.model_validate({**small, "centroid_size": 10}).centroid_size == 10
    with pytest.raises(ValueError, match=r"centroid_size \(101\) exceeds reference_size \(100\)"):
        DriftConfig.model_validate({**small, "centroid_size": 101})
    with pytest.raises(ValidationError):
        DriftConfig(centroid_size=0)


# --- monitor: confidences --------------------------------------------------------------------------


def _only(monitor: DriftMonitor) -> DriftReport:
    reports = monitor.report()
    assert len(reports) == 1
    return reports[0]


def test_no_verdict_below_min_samples() -> None:
    rng = np.random.default_rng(4)
    monitor = DriftMonitor()
    assert monitor.report() == []
    monitor.observe_confidences(STREAM, rng.beta(8, 2, 1500))
    report = _only(monitor)
    assert (report.reference_count, report.recent_count, report.drifted) == (1500, 0, False)
    assert math.isnan(report.psi) and math.isnan(report.ks_statistic) and math.isnan(report.ks_pvalue)

    # The reference fills first; then 99 recent samples of a very different distribution: still no verdict.
    monitor.observe_confidences(STREAM, np.concatenate([rng.beta(8, 2, 500), np.full(99, 0.05)]))
    report = _only(monitor)
    assert (report.reference_count, report.recent_count, report.drifted) == (2000, 99, False)
    assert math.isnan(report.psi)

    monitor.observe_confidences(STREAM, [0.05])
    report = _only(monitor)
    assert report.recent_count == 100 and report.drifted and report.psi > 0.25


def test_no_drift_for_confidences_of_one_distribution() -> None:
    rng = np.random.default_rng(5)
    monitor = DriftMonitor()
    for _ in range(50):
        monitor.observe_confidences(STREAM, rng.beta(8, 2, 50))
    report = _only(monitor)
    assert (report.stream, report.signal) == (STREAM, "confidence")
    assert (report.reference_count, report.recent_count) == (2000, 500)
    assert report.psi < 0.1
    assert report.ks_pvalue > 0.01
    assert not report.drifted


def test_drift_when_confidences_drop() -> None:
    rng = np.random.default_rng(6)
    monitor = DriftMonitor()
    monitor.observe_confidences(STREAM, rng.beta(8, 2, 2000))
    monitor.observe_confidences(STREAM, rng.beta(4, 4, 500))
    report = _only(monitor)
    assert report.drifted
    assert report.psi > 0.25
    assert report.ks_pvalue < 1e-10
    assert report.ks_statistic > 0.4  # mean 0.8 -> 0.5


def test_psi_alone_or_ks_alone_triggers_drift() -> None:
    rng = np.random.default_rng(7)
    reference, recent = rng.beta(8, 2, 2000), rng.beta(7, 2, 500)  # a small shift
    strict_psi = DriftMonitor(DriftConfig(psi_alert=1e-6, ks_pvalue_alert=1e-300))
    lenient = DriftMonitor(DriftConfig(psi_alert=100.0, ks_pvalue_alert=1e-300))
    for monitor in (strict_psi, lenient):
        monitor.observe_confidences(STREAM, reference)
        monitor.observe_confidences(STREAM, recent)
    assert _only(strict_psi).drifted
    assert not _only(lenient).drifted
    strict_ks = DriftMonitor(DriftConfig(psi_alert=100.0, ks_pvalue_alert=0.999))
    strict_ks.observe_confidences(STREAM, reference)
    strict_ks.observe_confidences(STREAM, recent)
    assert _only(strict_ks).drifted


def test_recent_window_is_bounded_and_keeps_the_latest_samples() -> None:
    rng = np.random.default_rng(8)
    config = DriftConfig(reference_size=1000, window_size=300, min_samples=100)
    monitor = DriftMonitor(config)
    monitor.observe_confidences(STREAM, rng.beta(8, 2, 1000))
    # A drifted burst, bigger than the window, in one batch ...
    monitor.observe_confidences(STREAM, rng.beta(2, 8, 1000))
    report = _only(monitor)
    assert report.recent_count == 300 and report.drifted
    # ... then healthy samples in odd-sized batches that wrap around the ring buffer.
    for size in (37, 101, 59, 3, 64, 13, 23):  # 300 in total
        monitor.observe_confidences(STREAM, rng.beta(8, 2, size))
        assert _only(monitor).recent_count <= 300
    report = _only(monitor)
    assert report.recent_count == 300
    assert report.reference_count == 1000
    assert not report.drifted  # every drifted sample has been pushed out
    for _ in range(100):
        monitor.observe_confidences(STREAM, rng.beta(8, 2, 77))
    assert _only(monitor).recent_count == 300


def test_one_batch_straddling_the_end_of_the_reference() -> None:
    rng = np.random.default_rng(9)
    monitor = DriftMonitor()
    monitor.observe_confidences(STREAM, rng.beta(8, 2, 2150))
    report = _only(monitor)
    assert (report.reference_count, report.recent_count) == (2000, 150)
    monitor.observe_confidences(STREAM, [])  # a frame without detections
    assert _only(monitor).recent_count == 150


def test_reports_are_sorted_and_streams_independent() -> None:
    rng = np.random.default_rng(10)
    monitor = DriftMonitor(DriftConfig(reference_size=1000, window_size=400, min_samples=50))
    monitor.observe_embeddings("c2/osnet", rng.normal(size=(10, 8)))
    monitor.observe_confidences("c2/osnet", rng.beta(8, 2, 1400))
    monitor.observe_confidences("c1/yolo", rng.beta(8, 2, 1000))
    monitor.observe_confidences("c1/yolo", rng.beta(2, 8, 400))
    reports = monitor.report()
    assert [(r.stream, r.signal) for r in reports] == [
        ("c1/yolo", "confidence"),
        ("c2/osnet", "confidence"),
        ("c2/osnet", "embedding"),
    ]
    assert [r.drifted for r in reports] == [True, False, False]
    assert reports[2].reference_count == 10 and reports[2].recent_count == 0


def test_reset_reference_starts_over() -> None:
    rng = np.random.default_rng(11)
    config = DriftConfig(reference_size=500, window_size=200, min_samples=50)
    monitor = DriftMonitor(config)
    for stream in ("a", "b"):
        monitor.observe_confidences(stream, rng.beta(8, 2, 500))
        monitor.observe_confidences(stream, rng.beta(4, 4, 200))
    assert all(r.drifted for r in monitor.report())

    monitor.reset_reference("a")  # e.g. a new model rolled out on stream "a"
    a, b = monitor.report()
    assert (a.stream, a.reference_count, a.recent_count, a.drifted) == ("a", 0, 0, False)
    assert math.isnan(a.psi)
    assert (b.stream, b.reference_count, b.recent_count, b.drifted) == ("b", 500, 200, True)

    # The new model's confidences become the reference: the same distribution is no longer drift.
    monitor.observe_confidences("a", rng.beta(4, 4, 500))
    assert monitor.report()[0].recent_count == 0
    monitor.observe_confidences("a", rng.beta(4, 4, 200))
    a = monitor.report()[0]
    assert (a.reference_count, a.recent_count, a.drifted) == (500, 200, False)

    monitor.reset_reference()
    assert [(r.reference_count, r.recent_count) for r in monitor.report()] == [(0, 0), (0, 0)]
    monitor.reset_reference("never-seen")  # nothing to reset: no error, no new stream
    assert len(monitor.report()) == 2


def test_to_dict_is_json_ready() -> None:
    rng = np.random.default_rng(12)
    monitor = DriftMonitor(DriftConfig(reference_size=100, window_size=100, min_samples=50))
    monitor.observe_confidences(STREAM, rng.beta(8, 2, 100))
    empty = _only(monitor).to_dict()
    assert empty == {
        "stream": STREAM,
        "signal": "confidence",
        "reference_count": 100,
        "recent_count": 0,
        "psi": None,
        "ks_statistic": None,
        "ks_pvalue": None,
        "drifted": False,
    }
    monitor.observe_confidences(STREAM, rng.beta(8, 2, 100))
    report = _only(monitor)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["psi"] == report.psi and data["ks_pvalue"] == report.ks_pvalue
    assert data["drifted"] is report.drifted is False


def test_bad_confidences_are_refused() -> None:
    monitor = DriftMonitor()
    with pytest.raises(ValueError, match=r"confidences must lie in \[0, 1\].*1\.5"):
        monitor.observe_confidences(STREAM, [0.5, 1.5])
    with pytest.raises(ValueError, match=r"confidences must lie in \[0, 1\].*-0\.1"):
        monitor.observe_confidences(STREAM, [-0.1, 0.5])
    with pytest.raises(ValueError, match="confidences contains 2 non-finite"):
        monitor.observe_confidences(STREAM, [0.5, math.nan, math.inf])
    with pytest.raises(ValueError, match=r"confidences must be a 1-D array.*\(2, 1\)"):
        monitor.observe_confidences(STREAM, [[0.5], [0.6]])
    with pytest.raises(ValueError, match=r"confidences must be a 1-D array.*\(\)"):
        monitor.observe_confidences(STREAM, 0.5)
    with pytest.raises(ValueError, match="stream name must be a non-empty string"):
        monitor.observe_confidences("", [0.5])
    with pytest.raises(ValueError, match="stream name must be a non-empty string"):
        monitor.observe_confidences("   ", [0.5])
    with pytest.raises(ValueError, match="stream name must be a non-empty string"):
        monitor.reset_reference("")
    assert monitor.report() == []  # nothing refused was recorded


# --- monitor: embeddings ---------------------------------------------------------------------------

DIM = 32


def _cluster(rng: np.random.Generator, centre: NDArray[np.float64], n: int) -> NDArray[np.float64]:
    """``n`` embeddings around ``centre`` (norm 3) with unit Gaussian noise per dimension."""
    return centre + rng.normal(size=(n, DIM))


def _centre(rng: np.random.Generator) -> NDArray[np.float64]:
    direction = rng.normal(size=DIM)
    return 3.0 * direction / np.linalg.norm(direction)


def test_embeddings_of_one_distribution_do_not_drift() -> None:
    rng = np.random.default_rng(13)
    centre = _centre(rng)
    monitor = DriftMonitor()
    for _ in range(25):
        monitor.observe_embeddings("c1/osnet", _cluster(rng, centre, 100))
    report = _only(monitor)
    assert (report.signal, report.reference_count, report.recent_count) == ("embedding", 2000, 500)
    assert report.psi < 0.1 and report.ks_pvalue > 0.01
    assert not report.drifted


def test_embeddings_are_scale_invariant() -> None:
    rng = np.random.default_rng(14)
    centre = _centre(rng)
    monitor = DriftMonitor()
    monitor.observe_embeddings("c1/osnet", _cluster(rng, centre, 2000))
    monitor.observe_embeddings("c1/osnet", 7.5 * _cluster(rng, centre, 500))  # norms change, directions not
    assert not _only(monitor).drifted


def test_a_rotated_cluster_drifts() -> None:
    rng = np.random.default_rng(15)
    centre = _centre(rng)
    other = rng.normal(size=DIM)
    other -= (other @ centre) / (centre @ centre) * centre
    rotated = np.cos(0.8) * centre + np.sin(0.8) * 3.0 * other / np.linalg.norm(other)  # ~46 degrees
    assert np.linalg.norm(rotated) == pytest.approx(3.0)
    monitor = DriftMonitor()
    monitor.observe_embeddings("c1/osnet", _cluster(rng, centre, 2000))
    monitor.observe_embeddings("c1/osnet", _cluster(rng, rotated, 500))
    report = _only(monitor)
    assert report.drifted
    assert report.psi > 0.25 and report.ks_pvalue < 1e-6


def test_a_spreading_cluster_drifts() -> None:
    # E.g. a lighting change blurring the appearance: embeddings wander further from the mode.
    rng = np.random.default_rng(16)
    centre = _centre(rng)
    monitor = DriftMonitor()
    monitor.observe_embeddings("c1/osnet", _cluster(rng, centre, 2000))
    monitor.observe_embeddings("c1/osnet", centre + 1.5 * rng.normal(size=(500, DIM)))
    assert _only(monitor).drifted


def test_embedding_reference_comes_first_and_reset_allows_a_new_dimension() -> None:
    rng = np.random.default_rng(17)
    config = DriftConfig(reference_size=100, window_size=50, min_samples=20)
    monitor = DriftMonitor(config)
    centre = _centre(rng)
    monitor.observe_embeddings("c1/osnet", _cluster(rng, centre, 60))
    monitor.observe_embeddings("c1/osnet", np.empty((0, DIM)))
    assert (_only(monitor).reference_count, _only(monitor).recent_count) == (60, 0)
    monitor.observe_embeddings("c1/osnet", _cluster(rng, centre, 70))  # 40 complete the reference
    report = _only(monitor)
    assert (report.reference_count, report.recent_count) == (100, 30)
    assert not report.drifted
    changed = r"embedding dimension changed in stream 'c1/osnet': it was 32, got 16"
    with pytest.raises(ValueError, match=changed):
        monitor.observe_embeddings("c1/osnet", rng.normal(size=(5, 16)))
    monitor.reset_reference("c1/osnet")
    monitor.observe_embeddings("c1/osnet", rng.normal(size=(5, 16)))
    assert _only(monitor).reference_count == 5


def test_bad_embeddings_are_refused() -> None:
    monitor = DriftMonitor()
    with pytest.raises(ValueError, match=r"embeddings must be an \(N, D\) array.*\(3,\)"):
        monitor.observe_embeddings("s", [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"embeddings must be an \(N, D\) array.*\(2, 2, 2\)"):
        monitor.observe_embeddings("s", np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match=r"embeddings must be an \(N, D\) array.*\(3, 0\)"):
        monitor.observe_embeddings("s", np.ones((3, 0)))
    with pytest.raises(ValueError, match=r"non-finite values \(NaN or inf\) in 1 vector"):
        monitor.observe_embeddings("s", [[1.0, math.nan], [1.0, 2.0]])
    with pytest.raises(ValueError, match=r"non-zero norm; rows \[1\]"):
        monitor.observe_embeddings("s", [[1.0, 0.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match="stream name must be a non-empty string"):
        monitor.observe_embeddings("", [[1.0, 0.0]])
    assert monitor.report() == []


# --- threads ---------------------------------------------------------------------------------------


def test_concurrent_observers_lose_nothing() -> None:
    config = DriftConfig(reference_size=2000, window_size=10_000, min_samples=100)
    monitor = DriftMonitor(config)
    threads_n, batches, batch = 8, 50, 20
    errors: list[BaseException] = []
    start = threading.Barrier(threads_n + 1)

    def observe(seed: int) -> None:
        try:
            rng = np.random.default_rng(seed)
            start.wait()
            for _ in range(batches):
                monitor.observe_confidences("shared", rng.beta(8, 2, batch))
                monitor.observe_confidences(f"own-{seed}", rng.beta(8, 2, batch))
                monitor.observe_embeddings("shared", rng.normal(1.0, 1.0, size=(batch, 8)))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    def read() -> None:
        try:
            start.wait()
            for _ in range(30):
                for report in monitor.report():
                    assert report.recent_count <= config.window_size
                    assert report.reference_count <= config.reference_size
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    workers = [threading.Thread(target=observe, args=(seed,)) for seed in range(threads_n)]
    reader = threading.Thread(target=read)
    for thread in [*workers, reader]:
        thread.start()
    for thread in [*workers, reader]:
        thread.join(timeout=60)
    assert not errors
    reports = {(r.stream, r.signal): r for r in monitor.report()}
    total = threads_n * batches * batch  # 8000 per shared signal
    for signal in ("confidence", "embedding"):
        shared = reports[("shared", signal)]
        assert (shared.reference_count, shared.recent_count) == (2000, total - 2000)
        assert not shared.drifted
    for seed in range(threads_n):
        own = reports[(f"own-{seed}", "confidence")]
        assert (own.reference_count, own.recent_count) == (batches * batch, 0)
    assert len(reports) == threads_n + 2


def _held_vectors(series: _EmbeddingSeries) -> tuple[int, ...] | None:
    """The shape of the vectors ``series`` holds (its pending buffer), None once it holds none."""
    return None if series._pending is None else series._pending.shape


def test_an_embedding_stream_holds_at_most_centroid_size_vectors() -> None:
    # The pending buffer is the only place vectors are held: 64 x 480 here, never 2000 x 480.
    rng = np.random.default_rng(5)
    series = _EmbeddingSeries(reference_size=2000, window_size=500, centroid_size=64)
    vectors = rng.normal(size=(2600, 480))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    series.add(vectors[:40])
    assert _held_vectors(series) == (64, 480)
    assert series.reference_count == 40
    series.add(vectors[40:1000])
    assert _held_vectors(series) is None and series.reference_count == 1000  # the rest as distances
    series.add(vectors[1000:])
    assert _held_vectors(series) is None
    assert (series.reference_count, series.series.recent_count) == (2000, 500)
    centroid = vectors[:64].mean(axis=0)
    centroid /= np.linalg.norm(centroid)
    reference, recent = series.series.snapshot()
    np.testing.assert_allclose(reference, 1 - vectors[:2000] @ centroid, atol=1e-5)
    np.testing.assert_allclose(recent, 1 - vectors[-500:] @ centroid, atol=1e-5)


def test_a_rotated_cluster_still_drifts_with_the_default_centroid() -> None:
    rng = np.random.default_rng(11)
    monitor = DriftMonitor()
    assert monitor.config.centroid_size == 256
    mode = np.zeros(64)
    mode[0] = 1.0
    monitor.observe_embeddings("c1/osnet", mode + 0.3 * rng.normal(size=(2000, 64)))
    elsewhere = np.zeros(64)
    elsewhere[1] = 1.0
    monitor.observe_embeddings("c1/osnet", elsewhere + 0.3 * rng.normal(size=(500, 64)))
    (report,) = monitor.report()
    assert (report.reference_count, report.recent_count) == (2000, 500)
    assert report.drifted and report.psi > 0.25 and report.ks_pvalue < 1e-6


def test_streams_forget_and_forget_where() -> None:
    monitor = DriftMonitor(DriftConfig(reference_size=50, window_size=20, min_samples=10))
    rng = np.random.default_rng(0)
    assert monitor.streams() == []
    for stream in ("gate/yolox", "yard/motion", "gate/motion"):
        monitor.observe_confidences(stream, rng.random(60))
    monitor.observe_embeddings("gate/motion", rng.random((5, 8)) + 0.1)
    monitor.observe_embeddings("yard/osnet", rng.random((5, 8)) + 0.1)  # embeddings only
    assert monitor.streams() == ["gate/motion", "gate/yolox", "yard/motion", "yard/osnet"]

    assert monitor.forget("gate/motion")  # both of its signals
    assert not monitor.forget("gate/motion")
    assert not monitor.forget("never-seen")
    assert "gate/motion" not in {r.stream for r in monitor.report()}

    assert monitor.forget_where(lambda name: name.startswith("yard/")) == ["yard/motion", "yard/osnet"]
    assert monitor.forget_where(lambda name: name.startswith("yard/")) == []
    assert monitor.streams() == ["gate/yolox"]
    assert [(r.stream, r.signal) for r in monitor.report()] == [("gate/yolox", "confidence")]
    with pytest.raises(ValueError, match="stream name must be a non-empty string"):
        monitor.forget("")


def test_a_forgotten_stream_starts_a_fresh_reference() -> None:
    config = DriftConfig(reference_size=50, window_size=20, min_samples=10)
    monitor = DriftMonitor(config)
    rng = np.random.default_rng(1)
    monitor.observe_confidences(STREAM, rng.random(70))
    monitor.observe_embeddings(STREAM, rng.random((70, 8)) + 0.1)
    assert [(r.reference_count, r.recent_count) for r in monitor.report()] == [(50, 20), (50, 20)]
    assert monitor.forget(STREAM)
    assert monitor.report() == [] and monitor.streams() == []
    monitor.observe_confidences(STREAM, rng.random(5))
    # a new embedding dimension is fine: nothing of the old stream is left
    monitor.observe_embeddings(STREAM, rng.random((7, 16)) + 0.1)
    assert [(r.signal, r.reference_count, r.recent_count) for r in monitor.report()] == [
        ("confidence", 5, 0),
        ("embedding", 7, 0),
    ]
