"""Re-ranking: k-reciprocal against a loop-by-loop reading of the reference code, top-K, QE/DBA, context."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from crossview.embed.onnx import OnnxReidEmbedder
from crossview.eval.reid import cosine_distance, reid_metrics
from crossview.io.formats.reid import read_reid_manifest
from crossview.search.rerank import (
    PLAUSIBLE,
    SAME_CAMERA,
    TOO_FAST,
    TOO_SLOW,
    UNKNOWN,
    KReciprocalIndex,
    alpha_query_expansion,
    context_rerank,
    database_augmentation,
    k_reciprocal_distances,
    k_reciprocal_topk,
)
from tests.conftest import shared_path

SHARED = Path(__file__).resolve().parents[2].parent / "shared"  # real data; tests skip without it

Array = NDArray[np.float64]


# ------------------------------------------------------------------------------ loop reference
def reference_graph(
    features: Array, k1: int, k2: int, power: float = 4.0
) -> tuple[Array, list[list[int]], Array, Array]:
    """Steps 1-5 of Zhong et al. (CVPR 2017) over unit ``features``, as the reference code does them.

    The distance-matrix reference ``re_ranking(q_g_dist, q_q_dist, g_g_dist, ...)`` squares the
    distances it is given, then divides each column by its maximum and transposes. Given squared
    Euclidean distances (or ``1 - cos``, the same up to the factor 2 the normalisation removes) that
    is ``|a - b|^4``: ``power=4``, which reproduces the published figures; ``power=2`` is the feature
    reference (Euclidean distances, squared). Deliberately plain: Python sets and loops over items,
    float64 throughout. Returns the normalised distances, each item's ranking, ``V`` and ``V`` after
    local query expansion.
    """
    n = len(features)
    given = np.array([[float(np.sum((a - b) ** 2)) for b in features] for a in features])
    original = given ** (power / 2)  # power 4: the reference's np.power(original_dist, 2)
    original = (original / original.max(axis=0)).T
    ranking = [list(np.argsort(original[i], kind="stable")) for i in range(n)]

    def reciprocal_set(i: int, k: int) -> set[int]:
        forward = ranking[i][: k + 1]
        return {int(j) for j in forward if i in ranking[j][: k + 1]}

    half = int(np.around(k1 / 2))
    weights = np.zeros((n, n))
    for i in range(n):
        core = reciprocal_set(i, k1)
        expansion = set(core)
        for candidate in core:
            candidate_set = reciprocal_set(candidate, half)
            if len(candidate_set & core) > 2.0 / 3.0 * len(candidate_set):
                expansion |= candidate_set
        for j in expansion:
            weights[i, j] = np.exp(-original[i, j])
        weights[i] /= weights[i].sum()
    expanded = weights
    if k2 != 1:
        expanded = np.zeros_like(weights)
        for i in range(n):
            for j in ranking[i][:k2]:
                expanded[i] += weights[j]
            expanded[i] /= len(ranking[i][:k2])
    return original, ranking, weights, expanded


def unit(features: Array) -> Array:
    features = np.asarray(features, np.float64)
    return features / np.linalg.norm(features, axis=1, keepdims=True)


def reference_final(own: Array, other: Array, original: float, lambda_value: float) -> float:
    """Step 6-7 for one pair: Jaccard distance of two weight rows, mixed with the original distance."""
    shared_mass = float(np.minimum(own, other).sum())
    jaccard = 1.0 - shared_mass / (2.0 - shared_mass)
    return (1.0 - lambda_value) * jaccard + lambda_value * original


def reference_k_reciprocal(
    query: Array, gallery: Array, k1: int, k2: int, lambda_value: float, power: float = 4.0
) -> Array:
    """The full, transductive method: queries and gallery ranked together."""
    features = unit(np.concatenate([query, gallery]))
    q = len(query)
    original, _, _, weights = reference_graph(features, k1, k2, power)
    final = np.zeros((q, len(features) - q))
    for i in range(q):
        for j in range(q, len(features)):
            final[i, j - q] = reference_final(weights[i], weights[j], original[i, j], lambda_value)
    return final


def reference_online(
    query: Array, gallery: Array, k1: int, k2: int, lambda_value: float, power: float = 4.0
) -> Array:
    """The online form, as ``KReciprocalIndex`` states it, built from the loops above.

    Gallery rows of ``V`` come from the gallery alone; a query's own row from the query inserted
    alone in front of the gallery; its local expansion averages that row with the gallery-only rows
    of its nearest; column 0 (the query) is empty in every gallery row.
    """
    gallery = unit(gallery)
    g = len(gallery)
    _, _, gallery_weights, gallery_expanded = reference_graph(gallery, k1, k2, power)
    padded_weights = np.pad(gallery_weights, ((0, 0), (1, 0)))  # the query's column in front
    padded_expanded = np.pad(gallery_expanded, ((0, 0), (1, 0)))
    final = np.zeros((len(query), g))
    for i, row in enumerate(unit(query)):
        original, ranking, weights, _ = reference_graph(np.concatenate([row[None], gallery]), k1, k2, power)
        own = weights[0]
        if k2 != 1:
            nearest = ranking[0][:k2]
            own = sum(weights[0] if j == 0 else padded_weights[j - 1] for j in nearest) / len(nearest)
        for c in range(g):
            final[i, c] = reference_final(own, padded_expanded[c], original[0, c + 1], lambda_value)
    return final


@pytest.fixture(scope="module")
def random_features() -> tuple[Array, Array]:
    # Clustered, like identities with several views each, so neighbourhoods are non-trivial.
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(12, 16))
    query = centres[rng.integers(0, 12, 15)] + 0.6 * rng.normal(size=(15, 16))
    gallery = centres[rng.integers(0, 12, 60)] + 0.6 * rng.normal(size=(60, 16))
    return query, gallery


@pytest.mark.parametrize(("k1", "k2", "lambda_value"), [(20, 6, 0.3), (7, 3, 0.5), (5, 1, 0.0)])
def test_k_reciprocal_equals_loop_reference(
    random_features: tuple[Array, Array], k1: int, k2: int, lambda_value: float
) -> None:
    query, gallery = random_features
    got = k_reciprocal_distances(query, gallery, k1, k2, lambda_value)
    assert got.dtype == np.float32 and got.shape == (15, 60)
    np.testing.assert_allclose(got, reference_k_reciprocal(query, gallery, k1, k2, lambda_value), atol=1e-6)


@pytest.mark.parametrize("power", [2.0, 1.0, 3.0])
def test_k_reciprocal_distance_power_equals_loop_reference(
    random_features: tuple[Array, Array], power: float
) -> None:
    # 2: the feature reference (squared Euclidean); 1 and 3 take the general np.power path.
    query, gallery = random_features
    expected = reference_k_reciprocal(query, gallery, 20, 6, 0.3, power)
    got = k_reciprocal_distances(query, gallery, distance_power=power)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    sparse = k_reciprocal_topk(query, gallery, top_k=len(gallery), distance_power=power)
    np.testing.assert_allclose(sparse, expected, atol=1e-6)
    online = KReciprocalIndex(gallery, distance_power=power).distances(query)
    np.testing.assert_allclose(online, reference_online(query, gallery, 20, 6, 0.3, power), atol=1e-6)
    # The power never moves a neighbour rank, only the weights and the original-distance term.
    assert not np.allclose(got, k_reciprocal_distances(query, gallery), atol=1e-3)


def test_k_reciprocal_on_pure_noise_equals_loop_reference() -> None:
    rng = np.random.default_rng(3)
    query, gallery = rng.normal(size=(15, 16)), rng.normal(size=(60, 16))
    np.testing.assert_allclose(
        k_reciprocal_distances(query, gallery), reference_k_reciprocal(query, gallery, 20, 6, 0.3), atol=1e-6
    )


def test_k_reciprocal_edges() -> None:
    rng = np.random.default_rng(0)
    assert k_reciprocal_distances(np.zeros((0, 4)), rng.normal(size=(5, 4))).shape == (0, 5)
    assert k_reciprocal_distances(rng.normal(size=(2, 4)), np.zeros((0, 4))).shape == (2, 0)
    small = k_reciprocal_distances(rng.normal(size=(2, 4)), rng.normal(size=(3, 4)))  # k1 > N
    assert small.shape == (2, 3) and np.isfinite(small).all()
    with pytest.raises(ValueError, match="dimension"):
        k_reciprocal_distances(rng.normal(size=(2, 4)), rng.normal(size=(3, 5)))
    with pytest.raises(ValueError, match="lambda_value"):
        k_reciprocal_distances(rng.normal(size=(2, 4)), rng.normal(size=(3, 4)), lambda_value=2.0)
    with pytest.raises(ValueError, match="top_k"):
        k_reciprocal_topk(rng.normal(size=(2, 4)), rng.normal(size=(3, 4)), top_k=0)
    for power in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="distance_power"):
            k_reciprocal_distances(rng.normal(size=(2, 4)), rng.normal(size=(3, 4)), distance_power=power)
        with pytest.raises(ValueError, match="distance_power"):
            KReciprocalIndex(rng.normal(size=(3, 4)), distance_power=power)


# ------------------------------------------------------------------------------ top-K / index
PARAMETERS = [(20, 6, 0.3), (7, 3, 0.5), (5, 1, 0.0), (1, 2, 0.3)]


@pytest.mark.parametrize(("k1", "k2", "lambda_value"), PARAMETERS)
def test_topk_transductive_equals_full(
    random_features: tuple[Array, Array], k1: int, k2: int, lambda_value: float
) -> None:
    # The same float32 steps over the same item set, sparse instead of dense: only summation order
    # differs, so 1e-6.
    query, gallery = random_features
    full = k_reciprocal_distances(query, gallery, k1, k2, lambda_value)
    sparse = k_reciprocal_topk(query, gallery, k1, k2, lambda_value, top_k=len(gallery))
    assert sparse.dtype == np.float32 and sparse.shape == full.shape
    np.testing.assert_allclose(sparse, full, atol=1e-6)


@pytest.mark.parametrize(("k1", "k2", "lambda_value"), PARAMETERS)
def test_online_equals_loop_reference(
    random_features: tuple[Array, Array], k1: int, k2: int, lambda_value: float
) -> None:
    query, gallery = random_features
    expected = reference_online(query, gallery, k1, k2, lambda_value)
    index = KReciprocalIndex(gallery, k1, k2, lambda_value)
    np.testing.assert_allclose(index.distances(query), expected, atol=1e-6)
    online = k_reciprocal_topk(
        query, gallery, k1, k2, lambda_value, top_k=len(gallery), include_queries=False
    )
    np.testing.assert_allclose(online, expected, atol=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_online_equals_loop_reference_on_small_random_sets(seed: int) -> None:
    # Pure noise, tiny galleries: neighbour lists that hold every item (k1 >= G), k2 > G + 1, k1 = 1.
    rng = np.random.default_rng(100 + seed)
    num_gallery = int(rng.choice([1, 2, 4, 9, 25]))
    query, gallery = rng.normal(size=(3, 5)), rng.normal(size=(num_gallery, 5))
    k1, k2 = int(rng.integers(1, 12)), int(rng.integers(1, 8))
    lambda_value = float(rng.uniform(0.0, 1.0))
    got = KReciprocalIndex(gallery, k1, k2, lambda_value).distances(query)
    np.testing.assert_allclose(got, reference_online(query, gallery, k1, k2, lambda_value), atol=1e-6)
    got = k_reciprocal_topk(query, gallery, k1, k2, lambda_value, top_k=num_gallery)
    np.testing.assert_allclose(got, reference_k_reciprocal(query, gallery, k1, k2, lambda_value), atol=1e-6)


def test_online_single_query_is_close_to_full(random_features: tuple[Array, Array]) -> None:
    """One query at a time, the online form differs from the full one only in the gallery rows.

    The full form inserts the query into the gallery's neighbour lists, so each of its reciprocal
    neighbours puts weight on it (about 1 / |R*| of the row), their lists lose their last member and
    their expansions may change; the online form keeps the gallery rows as built. That moves the
    distances of the query's close neighbours, here by up to 0.126 (mean 0.013 over all pairs) at
    the default parameters, hence tolerances 0.15 and 0.02; the rankings stay nearly the same.
    """
    query, gallery = random_features
    online = KReciprocalIndex(gallery).distances(query)
    single = np.concatenate([k_reciprocal_distances(query[i : i + 1], gallery) for i in range(len(query))])
    difference = np.abs(online - single)
    assert difference.max() < 0.15 and difference.mean() < 0.02
    for got, expected in zip(online, single, strict=True):
        assert np.corrcoef(np.argsort(np.argsort(got)), np.argsort(np.argsort(expected)))[0, 1] > 0.97
    top_online = np.argsort(online, axis=1, kind="stable")[:, :5]
    top_single = np.argsort(single, axis=1, kind="stable")[:, :5]
    assert np.mean([len(set(a) & set(b)) / 5 for a, b in zip(top_online, top_single, strict=True)]) > 0.9


def test_online_queries_do_not_see_one_another(random_features: tuple[Array, Array]) -> None:
    query, gallery = random_features
    index = KReciprocalIndex(gallery, k1=7, k2=3)
    together = index.distances(query)
    for row in range(len(query)):  # 1e-6: a one-row product rounds differently from the batch's
        np.testing.assert_allclose(index.distances(query[row : row + 1])[0], together[row], atol=1e-6)
    # and a second call reuses the graph unchanged
    np.testing.assert_array_equal(index.distances(query), together)


@pytest.mark.parametrize("include_queries", [True, False])
def test_topk_keeps_the_best_and_puts_the_rest_behind(
    random_features: tuple[Array, Array], include_queries: bool
) -> None:
    query, gallery = random_features
    top_k, lambda_value = 10, 0.3
    exact = k_reciprocal_topk(query, gallery, top_k=len(gallery), include_queries=include_queries)
    kept = k_reciprocal_topk(query, gallery, top_k=top_k, include_queries=include_queries)
    # 1 - cos = |a - b|^2 / 2 for unit rows; the original distance is its square, up to a factor.
    original = cosine_distance(unit(query), unit(gallery)).astype(np.float64) ** 2
    for row in range(len(query)):
        best = np.argsort(exact[row], kind="stable")[:top_k]
        rest = np.setdiff1d(np.arange(len(gallery)), best)
        np.testing.assert_allclose(kept[row, best], exact[row, best], atol=1e-7)
        # The rest: Jaccard distance 1, (1 - lambda) + lambda * d / max(d), behind the best ones.
        scale = original[row].max()
        expected = (1 - lambda_value) + lambda_value * original[row, rest] / scale
        if include_queries:  # the row maximum runs over the other queries too
            assert np.all(kept[row, rest] <= expected + 1e-6)
        else:
            np.testing.assert_allclose(kept[row, rest], expected, atol=1e-5)
        assert kept[row, best].max() <= kept[row, rest].min() + 1e-6
        order = rest[np.argsort(original[row, rest], kind="stable")]
        assert np.all(np.diff(kept[row, order]) >= -1e-6)


def test_index_rerank_and_edges(random_features: tuple[Array, Array]) -> None:
    query, gallery = random_features
    index = KReciprocalIndex(gallery, k1=7, k2=3, lambda_value=0.4)
    assert len(index) == len(gallery)
    distances = index.distances(query)
    hits = index.rerank(query, k=7)
    assert hits.indices.shape == hits.distances.shape == (len(query), 7)
    np.testing.assert_array_equal(hits.indices, np.argsort(distances, axis=1, kind="stable")[:, :7])
    np.testing.assert_array_equal(hits.distances, np.take_along_axis(distances, hits.indices, axis=1))
    assert index.rerank(query, k=1000).indices.shape == (len(query), len(gallery))
    assert index.rerank(np.zeros((0, 16)), k=3).indices.shape == (0, 3)
    empty = KReciprocalIndex(np.zeros((0, 16)))
    assert empty.distances(query).shape == (len(query), 0)
    assert empty.rerank(query, k=3).indices.shape == (len(query), 0)
    single = KReciprocalIndex(gallery[:1])
    assert single.distances(query).shape == (len(query), 1) and np.isfinite(single.distances(query)).all()
    with pytest.raises(ValueError, match="k must"):
        index.rerank(query, k=0)
    with pytest.raises(ValueError, match="dimension"):
        index.distances(np.ones((2, 5)))
    with pytest.raises(ValueError, match="k1 and k2"):
        KReciprocalIndex(gallery, k1=0)


# ------------------------------------------------------------------------------ QE / DBA
def test_query_expansion_properties() -> None:
    rng = np.random.default_rng(1)
    query, gallery = rng.normal(size=(6, 8)), rng.normal(size=(30, 8))
    unit_query = query / np.linalg.norm(query, axis=1, keepdims=True)
    unit_gallery = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    np.testing.assert_allclose(alpha_query_expansion(query, gallery, k=0), unit_query, atol=1e-6)
    np.testing.assert_allclose(database_augmentation(gallery, k=0), unit_gallery, atol=1e-6)
    expanded = alpha_query_expansion(query, gallery, k=5, alpha=3.0)
    augmented = database_augmentation(gallery, k=5, alpha=3.0)
    assert expanded.dtype == np.float32 and expanded.shape == (6, 8)
    np.testing.assert_allclose(np.linalg.norm(expanded, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(augmented, axis=1), 1.0, atol=1e-6)
    # Written out for query 0: itself plus its 5 most similar gallery rows weighted by sim^3.
    similarity = unit_gallery @ unit_query[0]
    top = np.argsort(-similarity)[:5]
    manual = unit_query[0] + (np.maximum(similarity[top], 0) ** 3) @ unit_gallery[top]
    np.testing.assert_allclose(expanded[0], manual / np.linalg.norm(manual), atol=1e-5)
    # DBA never counts an item as its own neighbour: with k=1, the nearest *other* item.
    gallery_similarity = unit_gallery @ unit_gallery[0]
    gallery_similarity[0] = -np.inf
    other = int(np.argmax(gallery_similarity))
    manual = unit_gallery[0] + max(gallery_similarity[other], 0) ** 3 * unit_gallery[other]
    np.testing.assert_allclose(
        database_augmentation(gallery, k=1)[0], manual / np.linalg.norm(manual), atol=1e-5
    )
    with pytest.raises(ValueError, match="k must"):
        alpha_query_expansion(query, gallery, k=-1)


def test_query_expansion_pulls_towards_the_neighbourhood() -> None:
    query = np.array([[1.0, 0.2, 0.0]])
    gallery = np.array([[1.0, 0.5, 0.0], [1.0, 0.6, 0.0], [0.0, 0.0, 1.0]])
    expanded = alpha_query_expansion(query, gallery, k=2, alpha=1.0)
    assert expanded[0, 1] / expanded[0, 0] > 0.2  # towards the two close gallery rows
    assert expanded[0, 2] == pytest.approx(0.0)  # the far one is not among the top 2


# ------------------------------------------------------------------------------ context
TOPOLOGY = {("c1", "c2"): (10.0, 60.0), ("c2", "c3"): (20.0, 90.0)}


def test_context_terms_follow_the_documented_rules() -> None:
    cameras = ["c1", "c2", "c2", "c2", "c3", "c3", "c9"]
    times = [500.0, 30.0, 3.0, 400.0, 10.0, 200.0, 1.0]
    result = context_rerank([0.3] * 7, cameras, times, "c1", 0.0, TOPOLOGY, penalty=0.5, bonus=0.05)
    assert result.verdict.tolist() == [SAME_CAMERA, PLAUSIBLE, TOO_FAST, TOO_SLOW, TOO_FAST, UNKNOWN, UNKNOWN]
    np.testing.assert_allclose(result.context, [0.0, -0.05, 0.5, 0.0, 0.5, 0.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(result.distances, result.appearance + result.rerank + result.context)
    assert result.order[0] == 1 and set(result.order[-2:].tolist()) == {2, 4}


def test_context_rerank_term_time_symmetry_and_direction() -> None:
    result = context_rerank([0.2, 0.4], ["c2", "c2"], [-30.0, 30.0], "c1", 0.0, TOPOLOGY, reranked=[0.5, 0.1])
    np.testing.assert_allclose(result.rerank, [0.3, -0.3], atol=1e-6)
    assert result.verdict.tolist() == [PLAUSIBLE, PLAUSIBLE]  # |dt| counts, before or after the query
    assert result.order.tolist() == [1, 0]
    # c2 -> c1 is served by the c1 -> c2 window unless symmetric=False.
    assert context_rerank([0.2], ["c1"], [30.0], "c2", 0.0, TOPOLOGY).verdict.tolist() == [PLAUSIBLE]
    one_way = context_rerank([0.2], ["c1"], [30.0], "c2", 0.0, TOPOLOGY, symmetric=False)
    assert one_way.verdict.tolist() == [UNKNOWN] and one_way.context.tolist() == [0.0]
    with pytest.raises(ValueError, match="timestamps"):
        context_rerank([0.2], ["c1"], [1.0, 2.0], "c2", 0.0, TOPOLOGY)
    with pytest.raises(ValueError, match="transit window"):
        context_rerank([0.2], ["c1"], [1.0], "c2", 0.0, {("a", "b"): (5.0, 1.0)})


# ------------------------------------------------------------------------------ real data
def test_market1501_osnet_quality() -> None:
    """Runs by default (under 60 s on 2 cores: ~15 s embedding, ~3 s for each of the two full
    re-rankings, ~2 s each for the transductive sparse form and the gallery index, ~0.2 s for the
    online queries)."""
    if not SHARED.is_dir():
        pytest.skip(f"real sample data not available: {SHARED} is missing")
    manifest = read_reid_manifest(shared_path("data", "market1501", "manifest.csv"))
    embedder = OnnxReidEmbedder(shared_path("models", "osnet_x0_25_msmt17.onnx"))
    query_set, gallery_set = manifest.query, manifest.gallery

    def embed(files: NDArray[np.str_]) -> NDArray[np.float32]:
        images = [cv2.imread(file, cv2.IMREAD_COLOR) for file in files.tolist()]
        assert all(image is not None for image in images)
        return embedder.embed_images([np.asarray(image, np.uint8) for image in images])

    query, gallery = embed(query_set.files), embed(gallery_set.files)
    labels = (query_set.pids, gallery_set.pids, query_set.camids, gallery_set.camids)

    cosine = reid_metrics(cosine_distance(query, gallery), *labels)
    full = reid_metrics(k_reciprocal_distances(query, gallery), *labels)
    feature_form = reid_metrics(k_reciprocal_distances(query, gallery, distance_power=2), *labels)
    topk = reid_metrics(k_reciprocal_topk(query, gallery, top_k=200), *labels)
    index = KReciprocalIndex(gallery)
    online_distances = index.distances(query, top_k=200)
    online = reid_metrics(online_distances, *labels)

    assert cosine.mAP == pytest.approx(0.4302, abs=0.002)
    assert cosine.rank1 == pytest.approx(0.6569, abs=0.003)
    # The published reference figures (BASELINES.md: 71.28 / 79.52 / 84.84, mAP 58.88); ranks are
    # multiples of 1/376, so 0.001 means the same count of queries.
    assert full.mAP == pytest.approx(0.5888, abs=0.0005), f"full k-reciprocal mAP {full.mAP:.4f}"
    assert full.rank1 == pytest.approx(0.7128, abs=0.001)
    assert full.rank5 == pytest.approx(0.7952, abs=0.001)
    assert full.rank10 == pytest.approx(0.8484, abs=0.001)
    # The feature reference's convention (squared Euclidean, distance_power=2): 58.73, rank-5 79.79.
    assert feature_form.mAP == pytest.approx(0.5873, abs=0.0005), f"power-2 mAP {feature_form.mAP:.4f}"
    assert feature_form.rank5 == pytest.approx(0.7979, abs=0.001)
    # Transductive sparse form: the full form's distances, the top 200 of each query kept (58.83).
    assert topk.mAP == pytest.approx(full.mAP, abs=0.002), f"top-200 mAP {topk.mAP:.4f} vs {full.mAP:.4f}"
    # Online form (gallery-only graph, queries attached one by one): 58.48 against 58.88.
    assert full.mAP - 0.01 < online.mAP <= full.mAP, f"online top-200 mAP {online.mAP:.4f} vs {full.mAP:.4f}"
    assert online.rank1 > full.rank1 - 0.02
    # speed is measured by benchmarks/bench_rerank.py, never asserted here
