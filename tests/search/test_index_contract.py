"""Contract tests every ``VectorIndex`` backend must pass.

To run a new backend through the same cases, append one ``Backend`` to ``BACKENDS``: a name, a
constructor ``make(directory, dim)`` (``directory`` is an empty folder the backend may use for its
files; calling ``make`` again with the same folder must reopen the same index), whether its
results are exact, and the recall it must reach on clustered data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pytest
from numpy.typing import NDArray

from crossview.search.faiss_index import FaissIndex
from crossview.search.index import Entry, Filter, SearchHits, VectorIndex
from crossview.search.milvus import MilvusIndex

DIM = 32


@dataclass(frozen=True)
class Backend:
    """One implementation under test."""

    name: str
    make: Callable[[Path, int], VectorIndex]
    exact: bool
    min_recall: float = 1.0


BACKENDS: list[Backend] = [
    Backend("faiss-flat", lambda path, dim: FaissIndex(path, dim, factory="Flat"), exact=True),
    # exact_below=0 sends every search through the engine with its ID selector (not the numpy scan)
    Backend(
        "faiss-hnsw",
        lambda path, dim: FaissIndex(path, dim, factory="HNSW32", exact_below=0),
        exact=False,
        min_recall=0.95,
    ),
    Backend(
        "faiss-ivf",
        lambda path, dim: FaissIndex(path, dim, factory="IVF8,Flat", nprobe=4, exact_below=0),
        exact=False,
        min_recall=0.9,
    ),
    # Milvus Lite on a local file; scalar indexes are skipped here only because each costs ~0.5 s to
    # build in Lite (tests/search/test_milvus_index.py covers them)
    Backend(
        "milvus-lite-flat",
        lambda path, dim: MilvusIndex(str(path / "milvus.db"), dim, index_type="FLAT", scalar_indexes=False),
        exact=True,
    ),
]


@pytest.fixture(autouse=True)
def single_faiss_thread() -> Iterator[None]:
    """FAISS's OpenMP threads only add contention at these sizes (and on busy test machines)."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


@pytest.fixture(params=BACKENDS, ids=[backend.name for backend in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    result: Backend = request.param
    return result


@pytest.fixture
def open_index(backend: Backend, tmp_path: Path) -> Iterator[Callable[..., VectorIndex]]:
    """Opens (or reopens) an index in a folder under ``tmp_path``; closes them all afterwards."""
    opened: list[VectorIndex] = []

    def make(name: str = "index", dim: int = DIM) -> VectorIndex:
        index = backend.make(tmp_path / name, dim)
        opened.append(index)
        return index

    yield make
    for index in opened:
        index.close()


def unit(rows: NDArray[np.float64]) -> NDArray[np.float32]:
    return np.asarray(rows / np.linalg.norm(rows, axis=1, keepdims=True), dtype=np.float32)


def clustered(n: int, seed: int = 0, clusters: int = 200) -> NDArray[np.float32]:
    """Unit vectors around fixed centres (a re-id gallery: a few views of each identity)."""
    centers = np.random.default_rng(12345).standard_normal((clusters, DIM))
    rng = np.random.default_rng(seed)
    return unit(centers[rng.integers(0, clusters, n)] + 0.1 * rng.standard_normal((n, DIM)))


def entry_for(i: int) -> Entry:
    return Entry(
        camera_id="abcd"[i % 4],
        track_id=i,
        global_id=i // 10,
        class_id=i % 3,
        t_start=float(i),
        t_end=float(i) + 5.0,
        x=float(i) / 10 if i % 2 else None,
        crop=f"crops/{i}.jpg",
    )


@dataclass
class Gallery:
    ids: NDArray[np.int64]
    vectors: NDArray[np.float32]
    entries: list[Entry]


def gallery(n: int = 2000, seed: int = 0, first_id: int = 0) -> Gallery:
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    return Gallery(ids, clustered(n, seed), [entry_for(int(i)) for i in ids])


def fill(index: VectorIndex, data: Gallery, batch: int = 500) -> None:
    for start in range(0, len(data.ids), batch):
        stop = start + batch
        index.add(data.ids[start:stop], data.vectors[start:stop], data.entries[start:stop])


def brute_force(
    data: Gallery, queries: NDArray[np.float32], k: int, allowed: NDArray[np.bool_] | None = None
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    distances = 1.0 - queries.astype(np.float64) @ data.vectors.T.astype(np.float64)
    if allowed is not None:
        distances[:, ~allowed] = np.inf
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(distances, order, axis=1)
    ids = np.where(np.isfinite(top), data.ids[order], -1)
    return top.astype(np.float32), ids


def assert_well_formed(hits: SearchHits, n: int, k: int) -> None:
    assert hits.ids.shape == (n, k) and hits.ids.dtype == np.int64
    assert hits.distances.shape == (n, k) and hits.distances.dtype == np.float32
    assert len(hits.entries) == n and all(len(row) == k for row in hits.entries)
    padding = hits.ids < 0
    assert np.all(np.isinf(hits.distances[padding]))
    assert np.all(np.isfinite(hits.distances[~padding]))
    for row_ids, row_entries, row_distances in zip(hits.ids, hits.entries, hits.distances, strict=True):
        valid = row_ids >= 0
        # hits first, padding after; hits sorted by distance; no id twice
        assert not np.any(valid[1:] & ~valid[:-1])
        assert np.all(np.diff(row_distances[valid]) >= -1e-6)
        assert len(set(row_ids[valid].tolist())) == int(valid.sum())
        for i, entry in zip(row_ids, row_entries, strict=True):
            assert (entry is None) == (i < 0)


# ---------------------------------------------------------------- basics


def test_empty_index_returns_padding(open_index: Callable[..., VectorIndex]) -> None:
    index = open_index()
    assert index.count() == 0
    hits = index.search(clustered(3), k=4)
    assert_well_formed(hits, 3, 4)
    assert np.all(hits.ids == -1) and np.all(np.isinf(hits.distances))
    vectors, entries = index.get([1, 2])
    assert vectors.shape == (2, DIM) and not vectors.any() and entries == [None, None]
    assert index.delete([1]) == 0


def test_one_row(open_index: Callable[..., VectorIndex]) -> None:
    index = open_index()
    vector = clustered(1)
    index.add([42], vector, [entry_for(42)])
    assert index.count() == 1
    hits = index.search(vector[0], k=3)  # a 1-D query is one row
    assert_well_formed(hits, 1, 3)
    assert hits.ids.tolist() == [[42, -1, -1]]
    assert hits.distances[0, 0] == pytest.approx(0.0, abs=1e-5)
    assert hits.entries[0][0] == entry_for(42)


def test_get_aligns_rows_and_unknown_ids(open_index: Callable[..., VectorIndex]) -> None:
    index = open_index()
    data = gallery(50)
    fill(index, data)
    vectors, entries = index.get([7, 999, 3, 7])
    np.testing.assert_allclose(vectors[[0, 2, 3]], data.vectors[[7, 3, 7]], atol=1e-6)
    assert not vectors[1].any()
    assert entries == [data.entries[7], None, data.entries[3], data.entries[7]]


def test_vectors_are_normalised_on_the_way_in(open_index: Callable[..., VectorIndex]) -> None:
    index = open_index()
    index.add([1], 5.0 * clustered(1), [entry_for(1)])
    stored, _ = index.get([1])
    np.testing.assert_allclose(np.linalg.norm(stored, axis=1), 1.0, atol=1e-6)
    hits = index.search(3.0 * clustered(1), k=1)
    assert hits.distances[0, 0] == pytest.approx(0.0, abs=1e-5)


# ---------------------------------------------------------------- search quality


def test_search_against_brute_force(backend: Backend, open_index: Callable[..., VectorIndex]) -> None:
    index = open_index()
    data = gallery()
    fill(index, data)
    assert index.count() == len(data.ids)
    queries = clustered(40, seed=1)
    k = 10
    hits = index.search(queries, k)
    assert_well_formed(hits, 40, k)
    expected_distances, expected_ids = brute_force(data, queries, k)
    if backend.exact:
        np.testing.assert_array_equal(hits.ids, expected_ids)
        np.testing.assert_allclose(hits.distances, expected_distances, atol=1e-5)
    else:
        recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(hits.ids, expected_ids, strict=True)])
        assert recall >= backend.min_recall
    # whatever was found, its distance is the true 1 - cos
    true = 1.0 - np.einsum("nd,nkd->nk", queries, data.vectors[hits.ids])
    np.testing.assert_allclose(hits.distances, true, atol=1e-5)


def test_search_is_deterministic(open_index: Callable[..., VectorIndex]) -> None:
    index = open_index()
    fill(index, gallery(600))
    queries = clustered(10, seed=3)
    first, second = index.search(queries, 7), index.search(queries, 7)
    np.testing.assert_array_equal(first.ids, second.ids)
    np.testing.assert_array_equal(first.distances, second.distances)


FILTERS = [
    Filter(cameras=frozenset({"a"})),
    Filter(classes=frozenset({1, 2})),
    Filter(time_range=(100.0, 160.0)),
    Filter(equals={"global_id": 7}),
    Filter(equals={"camera_id": "b", "class_id": 2}),
    Filter(cameras=frozenset({"a", "c"}), classes=frozenset({0}), time_range=(0.0, 900.0)),
    Filter(equals={"track_id": 5}),
    Filter(cameras=frozenset({"nowhere"})),
    Filter(equals={"camera_id": 3}),  # wrong type never matches, as in Python
    Filter(equals={"t_start": 12}),  # an int equals the float 12.0, as in Python
]


@pytest.mark.parametrize("search_filter", FILTERS, ids=lambda f: repr(f.model_dump(exclude_defaults=True)))
def test_filters_inside_the_engine(
    backend: Backend, open_index: Callable[..., VectorIndex], search_filter: Filter
) -> None:
    index = open_index()
    data = gallery()
    fill(index, data)
    allowed = np.array([search_filter.matches(entry) for entry in data.entries])
    queries = clustered(20, seed=2)
    for k in (5, 30):
        hits = index.search(queries, k, filter=search_filter)
        assert_well_formed(hits, 20, k)
        wanted = min(k, int(allowed.sum()))
        assert np.all((hits.ids >= 0).sum(axis=1) == wanted)
        for row in hits.entries:
            assert all(search_filter.matches(entry) for entry in row if entry is not None)
        assert np.all(allowed[hits.ids[hits.ids >= 0]])
        if backend.exact:
            expected_distances, expected_ids = brute_force(data, queries, k, allowed)
            np.testing.assert_array_equal(hits.ids, expected_ids)
            np.testing.assert_allclose(hits.distances, expected_distances, atol=1e-5)


def test_fewer_matches_than_k_are_padded(open_index: Callable[..., VectorIndex]) -> None:
    index = open_index()
    data = gallery()
    fill(index, data)
    hits = index.search(clustered(4, seed=5), k=15, filter=Filter(equals={"global_id": 3}))
    assert_well_formed(hits, 4, 15)
    assert np.all((hits.ids >= 0).sum(axis=1) == 10)
    assert set(hits.ids[:, :10].ravel().tolist()) == set(range(30, 40))
    assert np.all(hits.ids[:, 10:] == -1) and np.all(np.isinf(hits.distances[:, 10:]))


# ---------------------------------------------------------------- mutation


def test_delete_then_search(open_index: Callable[..., VectorIndex]) -> None:
    index = open_index()
    data = gallery(1000)
    fill(index, data)
    gone = np.arange(0, 1000, 3)
    assert index.delete(np.concatenate([gone, [5000, 6000]])) == len(gone)
    assert index.delete(gone[:10]) == 0
    assert index.count() == 1000 - len(gone)
    hits = index.search(data.vectors[gone[:20]], k=10)
    assert_well_formed(hits, 20, 10)
    assert not np.isin(hits.ids, gone).any()
    assert np.all(hits.ids >= 0)
    filtered = index.search(data.vectors[:5], k=50, filter=Filter(cameras=frozenset({"a"})))
    assert not np.isin(filtered.ids, gone).any()
    assert np.all(filtered.ids >= 0)
    vectors, entries = index.get(gone[:3])
    assert not vectors.any() and entries == [None, None, None]


def test_largest_ids_follow_writes_deletes_and_reopen(open_index: Callable[..., VectorIndex]) -> None:
    index = open_index()
    assert index.largest_ids() == (-1, -1)
    index.add([3, 1], clustered(2), [Entry(camera_id="a"), Entry(camera_id="b")])  # no global id yet
    assert index.largest_ids() == (3, -1)
    data = gallery(30, first_id=10)  # ids 10..39, global ids 1..3
    fill(index, data, batch=7)
    assert index.largest_ids() == (39, 3)
    index.delete([39, 38])
    index.add([12], clustered(1, seed=4), [entry_for(12).model_copy(update={"global_id": 9})])
    assert index.largest_ids() == (37, 9)
    index.close()
    assert open_index().largest_ids() == (37, 9)


def test_add_replaces_existing_ids(open_index: Callable[..., VectorIndex]) -> None:
    index = open_index()
    data = gallery(500)
    fill(index, data)
    replaced = np.array([10, 20, 30], dtype=np.int64)
    new_vectors = clustered(3, seed=9)
    new_entries = [entry_for(1000 + int(i)).model_copy(update={"track_id": int(i)}) for i in replaced]
    index.add(replaced, new_vectors, new_entries)
    assert index.count() == 500
    vectors, entries = index.get(replaced)
    np.testing.assert_allclose(vectors, new_vectors, atol=1e-6)
    assert entries == new_entries
    hits = index.search(new_vectors, k=5)
    assert hits.ids[:, 0].tolist() == replaced.tolist()
    np.testing.assert_allclose(hits.distances[:, 0], 0.0, atol=1e-5)
    old = index.search(data.vectors[replaced], k=20)
    for row, i in zip(old.ids, replaced, strict=True):
        assert list(row).count(i) <= 1
    # the old metadata no longer matches a filter
    old_class = Filter(equals={"class_id": data.entries[10].class_id, "track_id": 10})
    assert not old_class.matches(new_entries[0])
    assert (index.search(new_vectors, k=3, filter=old_class).ids >= 0).sum() == 0


def test_filters_follow_every_write_and_reopen(
    backend: Backend, open_index: Callable[..., VectorIndex]
) -> None:
    """The same filter, asked again after deletes, replacements, a reopen and new adds, sees each change."""
    index = open_index("filtered")
    data = gallery(1200)
    fill(index, data)
    wanted = Filter(cameras=frozenset({"a", "b"}), time_range=(200.0, 900.0))
    queries = clustered(12, seed=8)

    def check(current: Gallery, index: VectorIndex) -> None:
        allowed = np.array([wanted.matches(entry) for entry in current.entries])
        hits = index.search(queries, 25, filter=wanted)
        assert np.all((hits.ids >= 0).sum(axis=1) == min(25, int(allowed.sum())))
        position = {int(i): n for n, i in enumerate(current.ids)}
        assert all(allowed[position[int(i)]] for i in hits.ids[hits.ids >= 0])
        if backend.exact:
            np.testing.assert_array_equal(hits.ids, brute_force(current, queries, 25, allowed)[1])

    check(data, index)
    gone = np.arange(200, 900, 2)  # half of the matching rows' ids, and others
    index.delete(gone)
    keep = ~np.isin(data.ids, gone)
    data = Gallery(
        data.ids[keep], data.vectors[keep], [e for e, k in zip(data.entries, keep, strict=True) if k]
    )
    check(data, index)
    moved = data.ids[(data.ids % 4 == 0) & (data.ids > 300)][:50]  # camera "a" rows now move to "d"
    new_entries = [entry_for(int(i)).model_copy(update={"camera_id": "d"}) for i in moved]
    index.add(moved, data.vectors[np.isin(data.ids, moved)], new_entries)
    replaced = dict(zip(moved.tolist(), new_entries, strict=True))
    data = Gallery(
        data.ids, data.vectors, [replaced.get(int(i), e) for i, e in zip(data.ids, data.entries, strict=True)]
    )
    check(data, index)
    index.close()
    index = open_index("filtered")
    check(data, index)
    more = gallery(300, seed=6, first_id=5000)
    more.entries[:] = [entry_for(400 + n).model_copy(update={"track_id": 5000 + n}) for n in range(300)]
    fill(index, more)
    data = Gallery(
        np.concatenate([data.ids, more.ids]),
        np.concatenate([data.vectors, more.vectors]),
        data.entries + more.entries,
    )
    check(data, index)


# ---------------------------------------------------------------- persistence and isolation


def test_close_and_reopen_gives_identical_results(open_index: Callable[..., VectorIndex]) -> None:
    index = open_index("persisted")
    data = gallery(1500)
    fill(index, data)
    index.delete(np.arange(0, 1500, 7))
    queries = clustered(25, seed=4)
    before = index.search(queries, 10)
    before_filtered = index.search(queries, 10, filter=Filter(classes=frozenset({2})))
    count = index.count()
    index.close()
    with pytest.raises(ValueError, match="closed"):
        index.count()
    reopened = open_index("persisted")
    assert reopened.count() == count
    after = reopened.search(queries, 10)
    after_filtered = reopened.search(queries, 10, filter=Filter(classes=frozenset({2})))
    np.testing.assert_array_equal(after.ids, before.ids)
    np.testing.assert_allclose(after.distances, before.distances, atol=1e-6)
    np.testing.assert_array_equal(after_filtered.ids, before_filtered.ids)
    assert after.entries == before.entries
    vectors, entries = reopened.get(data.ids[1:4])
    np.testing.assert_allclose(vectors, data.vectors[1:4], atol=1e-6)
    assert entries == data.entries[1:4]


def test_two_independent_instances(open_index: Callable[..., VectorIndex]) -> None:
    first, second = open_index("first"), open_index("second")
    one, two = gallery(300, seed=1), gallery(200, seed=2, first_id=10_000)
    fill(first, one)
    fill(second, two)
    assert (first.count(), second.count()) == (300, 200)
    assert np.isin(first.search(two.vectors[:5], 10).ids, one.ids).all()
    assert np.isin(second.search(one.vectors[:5], 10).ids, two.ids).all()
    first.delete(one.ids)
    assert (first.count(), second.count()) == (0, 200)


# ---------------------------------------------------------------- errors


def test_errors_name_expected_and_actual(open_index: Callable[..., VectorIndex]) -> None:
    index = open_index()
    index.add([1], clustered(1), [entry_for(1)])
    with pytest.raises(ValueError, match=r"\(n, 32\).*\(2, 31\)"):
        index.add([2, 3], np.ones((2, 31), dtype=np.float32), [entry_for(2), entry_for(3)])
    with pytest.raises(ValueError, match=r"\(n, 32\).*\(1, 33\)"):
        index.search(np.ones((1, 33), dtype=np.float32), k=1)
    bad = clustered(2)
    bad[1, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        index.add([2, 3], bad, [entry_for(2), entry_for(3)])
    with pytest.raises(ValueError, match="NaN"):
        index.search(bad, k=1)
    for k in (0, -3):
        with pytest.raises(ValueError, match="k"):
            index.search(clustered(1), k=k)
    with pytest.raises(ValueError, match="ids"):
        index.add([1, 2], clustered(1), [entry_for(1)])
    with pytest.raises(ValueError, match="entries"):
        index.add([5, 6], clustered(2), [entry_for(5)])
    assert index.count() == 1  # nothing half-applied


def test_unknown_filter_field() -> None:
    with pytest.raises(ValueError, match="unknown filter field"):
        Filter(equals={"colour": "red"})
