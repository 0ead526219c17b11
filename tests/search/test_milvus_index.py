"""``MilvusIndex`` against a real Milvus Lite (no mocks): one ``.db`` file per module, one collection
per test, results compared with brute-force numpy over the same vectors and ``Filter.matches``."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("milvus_lite")

from crossview.search.index import Entry, Filter, VectorIndex, open_index
from crossview.search.milvus import MAX_TOP_K, MilvusIndex, filter_expression

DIM = 16
CAMERAS = ("gate", 'dock "B"', "yard\\2", "lobby\né", "north")

Factory = Callable[..., MilvusIndex]


def _unit(rows: np.ndarray) -> np.ndarray:
    unit: np.ndarray = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    return unit


def _gallery(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[Entry]]:
    rng = np.random.default_rng(seed)
    vectors = _unit(rng.normal(size=(n, DIM)))
    ids = rng.permutation(np.arange(10, 10 + 3 * n))[:n].astype(np.int64)
    entries = []
    for row in range(n):
        start = float(rng.uniform(0, 100))
        entries.append(
            Entry(
                camera_id=CAMERAS[row % len(CAMERAS)],
                track_id=int(rng.integers(0, 20)),
                global_id=int(rng.integers(-1, 5)),
                class_id=int(rng.integers(0, 3)),
                t_start=start,
                t_end=start + float(rng.uniform(0, 10)),
                x=float(rng.normal()) if row % 2 else None,
                y=float(rng.normal()) if row % 3 else None,
                crop=f"crops/{row}.jpg",
            )
        )
    return ids, vectors, entries


def _brute_force(
    ids: np.ndarray, vectors: np.ndarray, entries: list[Entry], queries: np.ndarray, k: int, filter: Filter
) -> tuple[np.ndarray, np.ndarray]:
    keep = np.array([filter.matches(entry) for entry in entries], dtype=bool)
    distances = 1.0 - _unit(queries) @ vectors[keep].T
    order = np.argsort(distances, axis=1)[:, :k]
    found = np.full((len(queries), k), -1, dtype=np.int64)
    found_distances = np.full((len(queries), k), np.inf, dtype=np.float32)
    found[:, : order.shape[1]] = ids[keep][order]
    found_distances[:, : order.shape[1]] = np.take_along_axis(distances, order, axis=1)
    return found, found_distances


@pytest.fixture(scope="module")
def lite_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("milvus") / "gallery.db"


@pytest.fixture
def make(lite_path: Path, request: pytest.FixtureRequest) -> Iterator[Factory]:
    """Opens indexes on the module's Lite file, one collection per test by default; closes them."""
    opened: list[MilvusIndex] = []
    default = "t_" + "".join(ch if ch.isalnum() else "_" for ch in request.node.name)[:200]

    def factory(collection: str = default, *, dim: int = DIM, **options: Any) -> MilvusIndex:
        options.setdefault("index_type", "FLAT")
        options.setdefault("scalar_indexes", False)  # each INVERTED index costs ~0.5 s in Lite
        index = MilvusIndex(str(lite_path), dim, collection=collection, **options)
        opened.append(index)
        return index

    yield factory
    for index in opened:
        index.close()


@pytest.fixture(scope="module")
def gallery(lite_path: Path) -> Iterator[tuple[MilvusIndex, np.ndarray, np.ndarray, list[Entry]]]:
    """A read-only gallery of 300 entries with scalar indexes (the default)."""
    ids, vectors, entries = _gallery(300, seed=1)
    index = MilvusIndex(str(lite_path), DIM, collection="shared_gallery", index_type="FLAT")
    index.add(ids, vectors, entries)
    yield index, ids, vectors, entries
    index.close()


def test_is_a_vector_index_and_open_index_builds_it(tmp_path: Path) -> None:
    index = open_index(f"milvus://{tmp_path / 'opened.db'}", 8, index_type="FLAT", scalar_indexes=False)
    try:
        assert isinstance(index, MilvusIndex)
        assert isinstance(index, VectorIndex)
        assert index.dim == 8
        assert index.count() == 0
    finally:
        index.close()


def test_search_equals_brute_force(gallery: tuple[MilvusIndex, np.ndarray, np.ndarray, list[Entry]]) -> None:
    index, ids, vectors, entries = gallery
    queries = np.random.default_rng(2).normal(size=(7, DIM)).astype(np.float32)  # not normalised
    hits = index.search(queries, k=10)
    expected_ids, expected_distances = _brute_force(ids, vectors, entries, queries, 10, Filter())
    np.testing.assert_array_equal(hits.ids, expected_ids)
    np.testing.assert_allclose(hits.distances, expected_distances, atol=1e-5)
    assert hits.distances.dtype == np.float32 and hits.ids.dtype == np.int64
    by_id = dict(zip(ids.tolist(), entries, strict=True))
    assert [[by_id[i] for i in row] for row in hits.ids.tolist()] == hits.entries
    assert index.count() == 300


def test_one_dimensional_query_is_one_row(
    gallery: tuple[MilvusIndex, np.ndarray, np.ndarray, list[Entry]],
) -> None:
    index, ids, vectors, _ = gallery
    hits = index.search(vectors[5], k=1)
    assert hits.ids.shape == (1, 1) and hits.ids[0, 0] == ids[5]
    assert hits.distances[0, 0] == pytest.approx(0.0, abs=1e-5)


FILTERS = [
    Filter(cameras=frozenset({"gate"})),
    Filter(cameras=frozenset({'dock "B"', "yard\\2"})),
    Filter(cameras=frozenset({"lobby\né"})),
    Filter(classes=frozenset({1})),
    Filter(classes=frozenset({0, 2}), cameras=frozenset({"north", "gate"})),
    Filter(time_range=(20.0, 40.0)),
    Filter(time_range=(50.0, math.inf)),
    Filter(time_range=(-math.inf, 10.0)),
    Filter(equals={"track_id": 3}),
    Filter(equals={"camera_id": 'dock "B"', "class_id": 1}),
    Filter(equals={"global_id": -1}, time_range=(0.0, 60.0)),
    Filter(equals={"track_id": 3.0}),
    Filter(equals={"track_id": "3"}),
    Filter(equals={"class_id": 1.5}),
    Filter(cameras=frozenset({"nowhere"})),
    Filter(cameras=frozenset()),
    Filter(classes=frozenset()),
    Filter(time_range=(math.inf, math.inf)),
]


@pytest.mark.parametrize("filter", FILTERS, ids=[str(i) for i in range(len(FILTERS))])
def test_filters_run_inside_milvus(
    gallery: tuple[MilvusIndex, np.ndarray, np.ndarray, list[Entry]], filter: Filter
) -> None:
    index, ids, vectors, entries = gallery
    queries = np.random.default_rng(3).normal(size=(4, DIM)).astype(np.float32)
    k = 20
    hits = index.search(queries, k, filter)
    expected_ids, expected_distances = _brute_force(ids, vectors, entries, queries, k, filter)
    matching = sum(filter.matches(entry) for entry in entries)
    np.testing.assert_array_equal(hits.ids, expected_ids)
    np.testing.assert_allclose(hits.distances, expected_distances, atol=1e-5)
    assert ((hits.ids >= 0).sum(axis=1) == min(k, matching)).all()
    for row in hits.entries:
        assert all(entry is None or filter.matches(entry) for entry in row)
        assert all(entry is None for entry in row[min(k, matching) :])


def test_padding_when_fewer_match(gallery: tuple[MilvusIndex, np.ndarray, np.ndarray, list[Entry]]) -> None:
    index, ids, _, entries = gallery
    filter = Filter(equals={"track_id": 3}, classes=frozenset({1}))
    matching = {int(key) for key, entry in zip(ids, entries, strict=True) if filter.matches(entry)}
    assert 0 < len(matching) < 50
    hits = index.search(np.ones(DIM), k=50, filter=filter)
    assert set(hits.ids[0, : len(matching)].tolist()) == matching
    assert (hits.ids[0, len(matching) :] == -1).all()
    assert np.isinf(hits.distances[0, len(matching) :]).all()


def test_empty_index_and_empty_queries_pad(make: Factory) -> None:
    index = make()
    hits = index.search(np.eye(DIM)[:2], k=3)
    assert hits.ids.tolist() == [[-1, -1, -1]] * 2
    assert np.isinf(hits.distances).all()
    assert hits.entries == [[None] * 3] * 2
    none = index.search(np.zeros((0, DIM)), k=3)
    assert none.ids.shape == (0, 3) and none.distances.shape == (0, 3)


def test_add_upserts_and_delete_counts_existing(make: Factory) -> None:
    index = make()
    eye = np.eye(DIM, dtype=np.float32)
    index.add([1, 2, 3], eye[:3], [Entry(camera_id=name) for name in "abc"])
    index.add([2], eye[5:6] * 3, [Entry(camera_id="moved", x=1.5, t_start=1, t_end=2)])
    assert index.count() == 3
    hits = index.search(eye[5], k=1)
    assert hits.ids[0, 0] == 2 and hits.distances[0, 0] == pytest.approx(0.0, abs=1e-6)
    assert hits.entries[0][0] == Entry(camera_id="moved", x=1.5, t_start=1, t_end=2)
    assert index.search(eye[1], k=3).ids[0].tolist().count(2) == 1

    assert index.delete([3, 99]) == 1
    assert index.delete([3]) == 0
    assert index.delete(np.zeros(0, dtype=np.int64)) == 0
    assert index.count() == 2
    assert 3 not in index.search(eye[2], k=5).ids

    vectors, entries = index.get([2, 3, 1, 2, -1])
    np.testing.assert_allclose(vectors, np.stack([eye[5], eye[9] * 0, eye[0], eye[5], eye[9] * 0]), atol=1e-6)
    moved = Entry(camera_id="moved", x=1.5, t_start=1, t_end=2)
    assert entries == [moved, None, Entry(camera_id="a"), moved, None]
    with pytest.raises(ValueError, match="ids must have shape"):
        index.get([[1]])
    index.add([], np.zeros((0, DIM)), [])
    assert index.count() == 2


def test_many_rows_are_batched(make: Factory) -> None:
    index = make(batch_size=64)
    ids, vectors, entries = _gallery(200, seed=4)
    index.add(ids, vectors, entries)
    assert index.count() == 200
    queries = vectors[:130]
    hits = index.search(queries, k=1)
    np.testing.assert_array_equal(hits.ids[:, 0], ids[:130])
    got, got_entries = index.get(ids)
    np.testing.assert_allclose(got, vectors, atol=1e-6)
    assert got_entries == entries
    assert index.delete(ids[:100]) == 100 and index.count() == 100


def test_approximate_default_index_finds_near_duplicates(make: Factory) -> None:
    index = make(index_type="AUTOINDEX")
    ids, vectors, entries = _gallery(200, seed=5)
    index.add(ids, vectors, entries)
    hits = index.search(vectors[:50], k=5)
    np.testing.assert_array_equal(hits.ids[:, 0], ids[:50])
    hnsw = make("hnsw_approx", index_type="HNSW", index_params={"M": 8})
    hnsw.add(ids, vectors, entries)
    assert (hnsw.search(vectors[:50], k=30).ids[:, 0] == ids[:50]).all()


def test_filtered_hnsw_returns_min_k_matching(make: Factory) -> None:
    """Lite's HNSW applies filters as a selector in the graph walk; selective filters must still give
    min(k, matching) hits (a tiny filtered_ef forces the exact fallback)."""
    ids, vectors, entries = _gallery(3000, seed=8)
    for index_type in ("HNSW", "AUTOINDEX"):
        index = make(f"filtered_{index_type.lower()}", index_type=index_type, filtered_ef=1)
        index.add(ids, vectors, entries)
        index.flush()  # waits for Lite's background index build, so the HNSW path is taken
        queries = np.random.default_rng(9).normal(size=(6, DIM)).astype(np.float32)
        for filter in (
            Filter(time_range=(0.0, 0.5)),
            Filter(equals={"track_id": 3}, classes=frozenset({1}), cameras=frozenset({"gate"})),
            Filter(cameras=frozenset({"north"}), time_range=(10.0, 12.0)),
        ):
            matching = sum(filter.matches(entry) for entry in entries)
            assert 0 < matching < 60
            hits = index.search(queries, 10, filter)
            assert ((hits.ids >= 0).sum(axis=1) == min(10, matching)).all()
            for row in hits.entries:
                assert all(entry is None or filter.matches(entry) for entry in row)
            if matching <= 10:
                expected_ids, expected_distances = _brute_force(ids, vectors, entries, queries, 10, filter)
                np.testing.assert_array_equal(np.sort(hits.ids, axis=1), np.sort(expected_ids, axis=1))
                np.testing.assert_allclose(hits.distances, expected_distances, atol=1e-5)


def test_unflushed_writes_are_flushed_before_search_and_flush_waits_for_the_index(make: Factory) -> None:
    index = make(index_type="HNSW", flush=False)
    lite = index._lite_collection()
    if lite is None:
        pytest.skip("not Milvus Lite 3.x: its memtable and segments cannot be inspected")
    ids, vectors, entries = _gallery(500, seed=10)
    index.add(ids[:300], vectors[:300], entries[:300])
    assert lite._memtable.size() == 300  # not flushed by add
    hits = index.search(vectors[:5], k=1)
    np.testing.assert_array_equal(hits.ids[:, 0], ids[:5])
    assert lite._memtable.size() == 0  # flushed by the search, so a sealed segment serves it
    index.add(ids[300:], vectors[300:], entries[300:])
    index.flush()
    assert lite._memtable.size() == 0
    segments = lite._segments_snapshot()
    assert sum(segment.num_rows for segment in segments) == 500
    assert all("vector" in segment.indexes for segment in segments)
    assert index.count() == 500


def test_lite_refuses_index_types_it_cannot_build(tmp_path: Path) -> None:
    for index_type in ("IVF_PQ", "DISKANN"):
        with pytest.raises(ValueError, match="with Milvus Lite"):
            MilvusIndex(str(tmp_path / "g.db"), DIM, index_type=index_type)


def test_reopen_same_file_gives_same_results(tmp_path: Path) -> None:
    path = str(tmp_path / "reopen.db")
    ids, vectors, entries = _gallery(60, seed=6)
    queries = vectors[:5] + 0.1
    filter = Filter(cameras=frozenset({"gate", "north"}))
    with MilvusIndex(path, DIM, index_type="FLAT", scalar_indexes=False) as index:
        index.add(ids, vectors, entries)
        before = index.search(queries, k=8, filter=filter)
    with MilvusIndex(path, DIM, index_type="FLAT", scalar_indexes=False) as index:
        after = index.search(queries, k=8, filter=filter)
        assert index.count() == 60
    np.testing.assert_array_equal(before.ids, after.ids)
    np.testing.assert_allclose(before.distances, after.distances)
    assert before.entries == after.entries
    with pytest.raises(ValueError, match=r"has dim 16, expected 8"):
        MilvusIndex(path, 8)


def test_writes_survive_a_process_that_never_closes(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    script = textwrap.dedent(
        f"""
        import os
        import numpy as np
        from crossview.search.index import Entry
        from crossview.search.milvus import MilvusIndex
        index = MilvusIndex({str(path)!r}, 4, index_type="FLAT", scalar_indexes=False)
        index.add([1, 2], np.eye(4)[:2], [Entry(camera_id="a"), Entry(camera_id="b")])
        index.delete([1])
        os._exit(0)  # no close, no clean shutdown
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60, capture_output=True)
    with MilvusIndex(str(path), 4, scalar_indexes=False) as index:
        assert index.count() == 1
        assert index.get([1, 2])[1] == [None, Entry(camera_id="b")]


def test_invalid_input_raises_value_error(make: Factory) -> None:
    index = make()
    eye = np.eye(DIM, dtype=np.float32)
    with pytest.raises(ValueError, match=r"shape \(n, 16\), got \(2, 3\)"):
        index.add([1, 2], np.ones((2, 3)), [Entry(camera_id="a")] * 2)
    with pytest.raises(ValueError, match="NaN"):
        index.add([1], np.full((1, DIM), np.nan), [Entry(camera_id="a")])
    with pytest.raises(ValueError, match="all zero"):
        index.search(np.zeros((1, DIM)), k=1)
    with pytest.raises(ValueError, match="queries must have shape"):
        index.search(np.ones((1, DIM + 1)), k=1)
    with pytest.raises(ValueError, match="entries must have length 2"):
        index.add([1, 2], eye[:2], [Entry(camera_id="a")])
    with pytest.raises(ValueError, match=">= 0"):
        index.add([-1], eye[:1], [Entry(camera_id="a")])
    with pytest.raises(ValueError, match="unique"):
        index.add([4, 4], eye[:2], [Entry(camera_id="a")] * 2)
    with pytest.raises(ValueError, match="crop is 70000 bytes"):
        index.add([1], eye[:1], [Entry(camera_id="a", crop="x" * 70000)])
    for k in (0, MAX_TOP_K + 1):
        with pytest.raises(ValueError, match="k must be in"):
            index.search(eye[:1], k=k)
    assert index.count() == 0


def test_bad_configuration_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"ending in \.db"):
        MilvusIndex(str(tmp_path / "gallery.sqlite"), DIM)
    with pytest.raises(ValueError, match="index_type must be one of"):
        MilvusIndex(str(tmp_path / "g.db"), DIM, index_type="SCANN_PLUS")
    with pytest.raises(ValueError, match="dim must be >= 1"):
        MilvusIndex(str(tmp_path / "g.db"), 0)
    with pytest.raises(ValueError, match="filtered_ef must be >= 1"):
        MilvusIndex(str(tmp_path / "g.db"), DIM, filtered_ef=0)


def test_closed_index_refuses_work(make: Factory) -> None:
    index = make()
    index.close()
    index.close()
    with pytest.raises(ValueError, match="closed"):
        index.count()


def test_dead_server_names_the_uri() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with pytest.raises(ConnectionError, match=uri):
        MilvusIndex(uri, DIM, timeout=2.0)
    assert time.monotonic() - started < 10


def test_filter_expression_escapes_and_short_circuits() -> None:
    assert filter_expression(Filter()) == ""
    assert filter_expression(Filter(cameras=frozenset({'a"b\\c\n'}))) == 'camera_id in ["a\\"b\\\\c\\n"]'
    assert filter_expression(Filter(time_range=(1.0, 2.5))) == "t_end >= 1.0 and t_start <= 2.5"
    assert filter_expression(Filter(time_range=(-math.inf, math.inf))) == ""
    assert filter_expression(Filter(cameras=frozenset(), classes=frozenset({1}))) == "id < 0"
    assert filter_expression(Filter(equals={"class_id": 2.5})) == "id < 0"
    assert filter_expression(Filter(equals={"t_start": 3})) == "t_start == 3.0"
