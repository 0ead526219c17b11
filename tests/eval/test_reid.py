"""CMC, mAP and mINP against a direct, loop-based reading of the Market-1501 protocol."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from crossview.eval.reid import ReidResult, cosine_distance, reid_metrics, reid_metrics_from_features
from tests.conftest import shared_path

SHARED = Path(__file__).resolve().parents[2].parent / "shared"


@dataclass
class Reference:
    cmc: NDArray[np.float64]
    mAP: float
    mINP: float
    num_valid: int
    average_precision: list[float]


def reference_metrics(
    distances: NDArray[np.floating],
    query_pids: NDArray[np.int64],
    gallery_pids: NDArray[np.int64],
    query_camids: NDArray[np.int64],
    gallery_camids: NDArray[np.int64],
    max_rank: int = 50,
    junk_pids: tuple[int, ...] = (),
) -> Reference:
    """Per query: sort the gallery (ties by gallery index), drop junk, walk the ranking."""
    num_queries, num_gallery = distances.shape
    found_within = np.zeros(max_rank)
    average_precisions: list[float] = []
    inverse_penalties: list[float] = []
    per_query: list[float] = []
    for query in range(num_queries):
        order = sorted(range(num_gallery), key=lambda item: (float(distances[query, item]), item))
        ranked = [
            item
            for item in order
            if not (gallery_pids[item] == query_pids[query] and gallery_camids[item] == query_camids[query])
            and int(gallery_pids[item]) not in junk_pids
        ]
        hit_ranks = [
            rank for rank, item in enumerate(ranked, start=1) if gallery_pids[item] == query_pids[query]
        ]
        if not hit_ranks:
            per_query.append(float("nan"))
            continue
        for k in range(1, max_rank + 1):
            if hit_ranks[0] <= k:
                found_within[k - 1] += 1
        precision_sum = 0.0
        for number, rank in enumerate(hit_ranks, start=1):
            precision_sum += number / rank
        average_precisions.append(precision_sum / len(hit_ranks))
        inverse_penalties.append(len(hit_ranks) / hit_ranks[-1])
        per_query.append(average_precisions[-1])
    num_valid = len(average_precisions)
    return Reference(
        cmc=found_within / max(num_valid, 1),
        mAP=sum(average_precisions) / max(num_valid, 1),
        mINP=sum(inverse_penalties) / max(num_valid, 1),
        num_valid=num_valid,
        average_precision=per_query,
    )


Case = tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]


def random_case(seed: int) -> Case:
    rng = np.random.default_rng(seed)
    num_queries = int(rng.integers(1, 25))
    num_gallery = int(rng.integers(1, 70))
    num_pids = int(rng.integers(1, 12))
    num_cameras = 1 if seed % 10 == 0 else int(rng.integers(2, 6))  # one camera: every match is junk
    query_pids = rng.integers(0, num_pids + 2, num_queries)  # some pids absent from the gallery
    gallery_pids = rng.integers(0, num_pids, num_gallery)
    query_camids = rng.integers(0, num_cameras, num_queries)
    gallery_camids = rng.integers(0, num_cameras, num_gallery)
    if seed % 3 == 0:
        distances = rng.integers(0, 4, (num_queries, num_gallery)).astype(np.float64)  # many ties
    elif seed % 3 == 1:
        distances = np.round(rng.random((num_queries, num_gallery)), 1)
    else:
        distances = rng.random((num_queries, num_gallery)).astype(np.float32).astype(np.float64)
    return distances, query_pids, gallery_pids, query_camids, gallery_camids


def assert_matches_reference(result: ReidResult, expected: Reference) -> None:
    assert result.num_valid_queries == expected.num_valid
    np.testing.assert_allclose(result.cmc, expected.cmc, rtol=0, atol=1e-12)
    assert result.mAP == pytest.approx(expected.mAP, abs=1e-12)
    assert result.mINP == pytest.approx(expected.mINP, abs=1e-12)
    np.testing.assert_allclose(result.average_precision, expected.average_precision, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(150))
def test_matches_loop_reference_on_random_cases(seed: int) -> None:
    distances, query_pids, gallery_pids, query_camids, gallery_camids = random_case(seed)
    expected = reference_metrics(
        distances, query_pids, gallery_pids, query_camids, gallery_camids, max_rank=12
    )
    chunk_size = [None, 1, 4][seed % 3]
    if expected.num_valid == 0:
        with pytest.raises(ValueError, match="none of the"):
            reid_metrics(distances, query_pids, gallery_pids, query_camids, gallery_camids, max_rank=12)
        return
    result = reid_metrics(
        distances, query_pids, gallery_pids, query_camids, gallery_camids, max_rank=12, chunk_size=chunk_size
    )
    assert_matches_reference(result, expected)
    assert result.num_queries == len(query_pids)
    assert result.num_skipped_queries == len(query_pids) - expected.num_valid


@pytest.mark.parametrize("seed", range(40))
def test_matches_loop_reference_with_junk_pids(seed: int) -> None:
    distances, query_pids, gallery_pids, query_camids, gallery_camids = random_case(1000 + seed)
    junk = (0, 3)
    expected = reference_metrics(distances, query_pids, gallery_pids, query_camids, gallery_camids, 10, junk)
    if expected.num_valid == 0:
        with pytest.raises(ValueError, match="none of the"):
            reid_metrics(distances, query_pids, gallery_pids, query_camids, gallery_camids, junk_pids=junk)
        return
    result = reid_metrics(
        distances, query_pids, gallery_pids, query_camids, gallery_camids, max_rank=10, junk_pids=junk
    )
    assert_matches_reference(result, expected)


def test_hand_computed_example() -> None:
    # Query pid 1, camera 0. Gallery by ascending distance:
    #   g0 pid 1 cam 0 (junk), g1 pid 2, g2 pid 1 cam 1, g3 pid 3, g4 pid 1 cam 2.
    # Kept ranking: g1, g2 (hit at 2), g3, g4 (hit at 4): AP = (1/2 + 2/4) / 2 = 0.5, INP = 2/4.
    distances = np.array([[0.0, 0.1, 0.2, 0.3, 0.4]])
    result = reid_metrics(distances, [1], [1, 2, 1, 3, 1], [0], [0, 0, 1, 0, 2])
    assert result.rank1 == 0.0
    assert result.rank5 == 1.0
    assert result.cmc[1] == 1.0
    assert result.mAP == pytest.approx(0.5)
    assert result.mINP == pytest.approx(0.5)
    assert result.to_dict() == {"rank1": 0.0, "rank5": 1.0, "rank10": 1.0, "mAP": 0.5, "mINP": 0.5}


def test_ties_break_by_gallery_order() -> None:
    distances = np.zeros((1, 4))
    first = reid_metrics(distances, [1], [1, 2, 2, 2], [0], [1, 1, 1, 1])
    last = reid_metrics(distances, [1], [2, 2, 2, 1], [0], [1, 1, 1, 1])
    assert first.rank1 == 1.0 and first.mAP == 1.0
    assert last.rank1 == 0.0 and last.mAP == pytest.approx(0.25)


def test_skipped_queries_are_counted_and_have_nan_scores() -> None:
    distances = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    # Query 1 only matches in its own camera; query 2's identity is not in the gallery.
    result = reid_metrics(distances, [1, 2, 9], [1, 2], [0, 0, 0], [1, 0])
    assert result.num_valid_queries == 1
    assert result.num_queries == 3
    assert result.num_skipped_queries == 2
    assert np.isnan(result.average_precision[1:]).all()
    assert np.isnan(result.inverse_negative_penalty[1:]).all()
    assert result.rank1 == 1.0


def test_chunking_does_not_change_the_result() -> None:
    distances, query_pids, gallery_pids, query_camids, gallery_camids = random_case(7)
    whole = reid_metrics(distances, query_pids, gallery_pids, query_camids, gallery_camids)
    for chunk_size in (1, 2, 5, 1000):
        chunked = reid_metrics(
            distances, query_pids, gallery_pids, query_camids, gallery_camids, chunk_size=chunk_size
        )
        np.testing.assert_array_equal(chunked.cmc, whole.cmc)
        assert chunked.mAP == whole.mAP
        assert chunked.mINP == whole.mINP


def test_accepts_a_memory_mapped_matrix(tmp_path: Path) -> None:
    distances, query_pids, gallery_pids, query_camids, gallery_camids = random_case(11)
    mapped = np.lib.format.open_memmap(tmp_path / "d.npy", mode="w+", dtype=np.float64, shape=distances.shape)
    mapped[:] = distances
    mapped.flush()
    expected = reid_metrics(distances, query_pids, gallery_pids, query_camids, gallery_camids)
    result = reid_metrics(
        np.load(tmp_path / "d.npy", mmap_mode="r"), query_pids, gallery_pids, query_camids, gallery_camids
    )
    assert result.mAP == expected.mAP


def normalised(rng: np.random.Generator, n: int, dimension: int) -> NDArray[np.float32]:
    features = rng.normal(size=(n, dimension)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    return features


def test_cosine_distance_of_normalised_features() -> None:
    rng = np.random.default_rng(3)
    query, gallery = normalised(rng, 5, 16), normalised(rng, 8, 16)
    distances = cosine_distance(query, gallery)
    assert distances.dtype == np.float32
    assert distances.shape == (5, 8)
    expected = 1.0 - query.astype(np.float64) @ gallery.astype(np.float64).T
    np.testing.assert_allclose(distances, expected, atol=1e-6)
    np.testing.assert_allclose(np.diag(cosine_distance(query, query)), 0.0, atol=1e-6)
    with pytest.raises(ValueError, match="dimension"):
        cosine_distance(query, gallery[:, :8])
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        cosine_distance(query[0], gallery)


def test_metrics_from_features_match_metrics_from_distances() -> None:
    rng = np.random.default_rng(5)
    num_pids = 20
    centres = normalised(rng, num_pids, 32)
    query_pids = rng.integers(0, num_pids, 60)
    gallery_pids = rng.integers(0, num_pids, 400)
    query = centres[query_pids] + 0.4 * normalised(rng, 60, 32)
    gallery = centres[gallery_pids] + 0.4 * normalised(rng, 400, 32)
    query /= np.linalg.norm(query, axis=1, keepdims=True)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    query_camids, gallery_camids = rng.integers(0, 4, 60), rng.integers(0, 4, 400)
    labels = (query_pids, gallery_pids, query_camids, gallery_camids)
    from_features = reid_metrics_from_features(query, gallery, *labels, chunk_size=7)
    distances = cosine_distance(query, gallery).astype(np.float64)
    from_distances = reid_metrics(distances, *labels)
    assert_matches_reference(from_features, reference_metrics(distances, *labels))
    assert from_features.mAP == pytest.approx(from_distances.mAP, abs=1e-12)
    np.testing.assert_array_equal(from_features.cmc, from_distances.cmc)
    assert 0.0 < from_features.mAP <= 1.0


def test_result_values_are_fractions() -> None:
    distances, query_pids, gallery_pids, query_camids, gallery_camids = random_case(2)
    result = reid_metrics(distances, query_pids, gallery_pids, query_camids, gallery_camids)
    assert set(result.to_dict()) == {"rank1", "rank5", "rank10", "mAP", "mINP"}
    for value in result.to_dict().values():
        assert 0.0 <= value <= 1.0
    assert len(result.cmc) == 50
    assert np.all(np.diff(result.cmc) >= 0)
    with pytest.raises(ValueError, match="rank must be between 1 and 50"):
        result.rank(51)


def test_rejects_bad_input() -> None:
    distances = np.zeros((2, 3))
    labels = ([1, 2], [1, 2, 3], [0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match=r"shape \(Q, G\)"):
        reid_metrics(np.zeros(3), *labels)
    with pytest.raises(ValueError, match=r"query_pids must have shape \(2,\)"):
        reid_metrics(distances, [1], *labels[1:])
    with pytest.raises(ValueError, match=r"gallery_camids must have shape \(3,\)"):
        reid_metrics(distances, *labels[:3], [1, 1])
    with pytest.raises(ValueError, match="must hold integers"):
        reid_metrics(distances, [1.5, 2.0], *labels[1:])
    with pytest.raises(ValueError, match="NaN"):
        reid_metrics(np.array([[0.0, np.nan, 1.0], [0.0, 0.0, 0.0]]), *labels)
    with pytest.raises(ValueError, match="max_rank must be at least 10"):
        reid_metrics(distances, *labels, max_rank=5)
    with pytest.raises(ValueError, match="chunk_size"):
        reid_metrics(distances, *labels, chunk_size=0)
    with pytest.raises(ValueError, match="none of the 2 queries"):
        reid_metrics(np.zeros((2, 0)), [1, 2], np.zeros(0, np.int64), [0, 0], np.zeros(0, np.int64))


@pytest.fixture
def market_manifest() -> Path:
    return shared_path("data", "market1501", "manifest.csv")


def test_oracle_distances_on_market_labels_score_perfectly(market_manifest: Path) -> None:
    from crossview.io.formats.reid import read_reid_manifest

    manifest = read_reid_manifest(market_manifest)
    query, gallery = manifest.query, manifest.gallery
    distances = (query.pids[:, None] != gallery.pids[None, :]).astype(np.float32)
    result = reid_metrics(distances, query.pids, gallery.pids, query.camids, gallery.camids)
    cross_camera = (query.pids[:, None] == gallery.pids[None, :]) & (
        query.camids[:, None] != gallery.camids[None, :]
    )
    assert result.num_valid_queries == int(cross_camera.any(axis=1).sum())
    assert result.to_dict() == {"rank1": 1.0, "rank5": 1.0, "rank10": 1.0, "mAP": 1.0, "mINP": 1.0}
