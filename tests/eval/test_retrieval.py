"""Recall of approximate search against a set-based, loop-by-query reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from crossview.eval.retrieval import recall_at_k, recall_at_k_first, recall_per_query


def reference_recall(approx: NDArray[np.int64], exact: NDArray[np.int64], k: int) -> list[float]:
    recalls = []
    for approx_row, exact_row in zip(approx, exact, strict=True):
        found = {int(i) for i in approx_row[:k] if i >= 0}
        truth = {int(i) for i in exact_row[:k] if i >= 0}
        recalls.append(len(found & truth) / len(truth) if truth else math.nan)
    return recalls


def reference_first(approx: NDArray[np.int64], exact: NDArray[np.int64], k: int) -> float:
    hits = [
        int(row[0]) in set(approx_row[:k].tolist())
        for approx_row, row in zip(approx, exact, strict=True)
        if row[0] >= 0
    ]
    return sum(hits) / len(hits)


def random_ids(rng: np.random.Generator, n: int, k: int, universe: int) -> NDArray[np.int64]:
    ids = np.stack([rng.permutation(universe)[:k] for _ in range(n)]) if n else np.zeros((0, k), np.int64)
    padded = rng.random((n, 1)) < 0.3  # some rows found fewer than k neighbours: -1 at the tail
    lengths = rng.integers(0, k + 1, (n, 1))
    ids = np.where(padded & (np.arange(k)[None, :] >= lengths), -1, ids)
    return ids.astype(np.int64)


@pytest.mark.parametrize("seed", range(60))
def test_matches_reference_on_random_cases(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    k_approx = int(rng.integers(1, 12))
    k_exact = int(rng.integers(1, 15))  # may be fewer than k
    universe = int(rng.integers(max(k_approx, k_exact), 40))
    exact = random_ids(rng, n, k_exact, universe)
    approx = np.where(rng.random((n, k_approx)) < 0.5, random_ids(rng, n, k_approx, universe), -1)
    approx[:, : min(k_approx, k_exact)] = np.where(
        rng.random((n, min(k_approx, k_exact))) < 0.6,
        exact[:, : min(k_approx, k_exact)],
        approx[:, : min(k_approx, k_exact)],
    )
    if seed % 4 == 0:
        approx[:, -1] = approx[:, 0]  # a buggy index returning a duplicate
    for k in {1, k_approx, max(1, k_approx // 2)}:
        expected = reference_recall(approx, exact, k)
        per_query = recall_per_query(approx, exact, k)
        np.testing.assert_allclose(per_query, expected, rtol=0, atol=1e-12)
        defined = [value for value in expected if not math.isnan(value)]
        if defined:
            assert recall_at_k(approx, exact, k) == pytest.approx(sum(defined) / len(defined), abs=1e-12)
        else:
            with pytest.raises(ValueError, match="undefined"):
                recall_at_k(approx, exact, k)
        if (exact[:, 0] >= 0).any():
            assert recall_at_k_first(approx, exact, k) == pytest.approx(
                reference_first(approx, exact, k), abs=1e-12
            )


def test_perfect_search_scores_one_even_with_few_exact_neighbours() -> None:
    exact = np.array([[4, 2, -1, -1], [1, 3, 5, 7]])
    approx = np.array([[2, 4, -1, -1], [7, 5, 3, 1]])
    assert recall_at_k(approx, exact) == 1.0
    assert recall_at_k_first(approx, exact) == 1.0


def test_standard_example() -> None:
    approx = np.array([[3, 1, -1], [4, 5, 6], [9, 8, 0]])
    exact = np.array([[1, 2, 3], [4, 5, 7], [0, 1, 2]])
    np.testing.assert_allclose(recall_per_query(approx, exact), [2 / 3, 2 / 3, 1 / 3])
    assert recall_at_k(approx, exact, k=1) == pytest.approx(1 / 3)  # only row 1: 4 == 4
    assert recall_at_k_first(approx, exact, k=1) == pytest.approx(1 / 3)
    assert recall_at_k_first(approx, exact, k=3) == 1.0


def test_duplicates_and_padding_are_not_counted() -> None:
    assert recall_at_k([[1, 1, 1]], [[1, 2, 3]]) == pytest.approx(1 / 3)
    assert recall_at_k([[-1, -1, -1]], [[1, 2, 3]]) == 0.0
    assert recall_at_k([[-1, 2]], [[-1, 2]]) == 1.0


def test_queries_without_exact_neighbours_are_left_out() -> None:
    approx = np.array([[1, 2], [5, 6]])
    exact = np.array([[1, 9], [-1, -1]])
    per_query = recall_per_query(approx, exact)
    assert per_query[0] == 0.5 and math.isnan(per_query[1])
    assert recall_at_k(approx, exact) == 0.5
    assert recall_at_k_first(approx, exact) == 1.0
    with pytest.raises(ValueError, match="undefined"):
        recall_at_k_first(approx, np.full((2, 2), -1))


def test_large_input_is_processed_in_chunks() -> None:
    rng = np.random.default_rng(0)
    exact = np.argsort(rng.random((2000, 1000)), axis=1)[:, :100]
    approx = exact.copy()
    approx[:, 50:] = -1
    assert recall_at_k(approx, exact) == pytest.approx(0.5)
    assert recall_at_k(approx, exact, k=50) == 1.0


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"approx_ids must have shape \(n, k\)"):
        recall_at_k([1, 2], [[1, 2]])
    with pytest.raises(ValueError, match="2 queries but exact_ids has 1"):
        recall_at_k([[1], [2]], [[1]])
    with pytest.raises(ValueError, match="k must be between 1 and 2"):
        recall_at_k([[1, 2]], [[1, 2]], k=3)
    with pytest.raises(ValueError, match="integer ids"):
        recall_at_k([[1.0, 2.0]], [[1, 2]])
    with pytest.raises(ValueError, match="no columns"):
        recall_at_k_first([[1, 2]], np.zeros((1, 0), np.int64))
