"""FaissIndex persistence: a real SIGKILL in the middle of adds, snapshot catch-up and rebuild,
the untrained IVF buffer, tombstones and compaction."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
import pytest
from numpy.typing import NDArray

from crossview.search.faiss_index import FaissIndex
from crossview.search.index import Entry, Filter, check_vectors

DIM = 16
BATCH = 10
REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def single_faiss_thread() -> Iterator[None]:
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


def batch_data(batch: int) -> tuple[NDArray[np.int64], NDArray[np.float32], list[Entry]]:
    """The deterministic contents of batch number ``batch`` (ids ``10 * batch ...``)."""
    ids = np.arange(batch * BATCH, (batch + 1) * BATCH, dtype=np.int64)
    vectors = np.random.default_rng(batch).standard_normal((BATCH, DIM)).astype(np.float32)
    entries = [
        Entry(camera_id=f"cam{i % 3}", track_id=int(i), class_id=batch % 4, t_start=float(i), t_end=i + 1.0)
        for i in ids
    ]
    return ids, vectors, entries


def writer(path: str, factory: str, first_batch: int) -> None:
    """Run in a child process: add batches forever, acknowledging each on stdout once it returned."""
    faiss.omp_set_num_threads(1)
    index = FaissIndex(path, DIM, factory=factory, save_every=3 * BATCH, train_size=25)
    batch = first_batch
    while True:
        index.add(*batch_data(batch))
        print(batch, flush=True)
        batch += 1


def present_batches(index: FaissIndex, upto: int) -> set[int]:
    """Batches wholly present; fails on a batch present in part or stored wrongly."""
    present = set()
    for batch in range(upto):
        ids, vectors, entries = batch_data(batch)
        stored, stored_entries = index.get(ids)
        found = [entry is not None for entry in stored_entries]
        assert all(found) or not any(found), f"batch {batch} is half-written: {found}"
        if all(found):
            np.testing.assert_array_equal(stored, check_vectors(vectors, DIM))
            assert stored_entries == entries
            present.add(batch)
    return present


@pytest.mark.parametrize("factory", ["HNSW32", "IVF4,Flat"])
def test_sigkill_keeps_every_acknowledged_add(tmp_path: Path, factory: str) -> None:
    path = tmp_path / "index"
    acknowledged: set[int] = set()
    next_batch = 0
    for stop_after in (4, 13):
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from tests.search.test_faiss_durability import writer; "
                "writer(sys.argv[1], sys.argv[2], int(sys.argv[3]))",
                str(path),
                factory,
                str(next_batch),
            ],
            cwd=REPOSITORY,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        assert child.stdout is not None
        try:
            for _ in range(stop_after):
                line = child.stdout.readline()
                assert line, f"writer exited early with {child.wait()}"
                acknowledged.add(int(line))
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
            child.stdout.close()
        assert child.returncode == -signal.SIGKILL

        with FaissIndex(path, DIM, factory=factory, train_size=25) as index:
            present = present_batches(index, max(acknowledged) + 20)
            assert acknowledged <= present
            # batches are added in order: nothing beyond one unacknowledged batch per crash
            assert present == set(range(max(present) + 1))
            assert index.count() == BATCH * len(present)
            ids, vectors, _ = batch_data(max(acknowledged))
            hits = index.search(vectors, k=1)
            np.testing.assert_array_equal(hits.ids[:, 0], ids)
            filtered = index.search(vectors[:2], k=5, filter=Filter(cameras=frozenset({"cam1"})))
            assert all(entry is not None and entry.camera_id == "cam1" for entry in filtered.entries[0])
            next_batch = max(present) + 1
    assert not list(path.glob("*.tmp"))


def fill(index: FaissIndex, batches: range) -> None:
    for batch in batches:
        index.add(*batch_data(batch))


def all_vectors(batches: range) -> NDArray[np.float32]:
    return check_vectors(np.concatenate([batch_data(b)[1] for b in batches]), DIM)


def test_reopen_catches_up_from_sqlite_after_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "index"
    crashed = FaissIndex(path, DIM, factory="HNSW32")
    fill(crashed, range(20))
    crashed.flush()
    snapshots = sorted(p.name for p in path.glob("index.*.faiss"))
    assert len(snapshots) == 1
    # after the snapshot: more adds, a replacement and deletes, then "crash" (never closed)
    fill(crashed, range(20, 30))
    replacement = check_vectors(np.random.default_rng(99).standard_normal((1, DIM)), DIM)
    crashed.add([5], replacement, [Entry(camera_id="moved", track_id=5)])
    assert crashed.delete(np.arange(100, 120)) == 20
    queries = all_vectors(range(0, 30, 3))
    expected = crashed.search(queries, k=8)
    with FaissIndex(path, DIM, factory="HNSW32") as reopened:
        assert sorted(p.name for p in path.glob("index.*.faiss")) == snapshots  # caught up, not rebuilt
        assert reopened.count() == crashed.count() == 280
        got = reopened.search(queries, k=8)
        np.testing.assert_array_equal(got.ids, expected.ids)
        np.testing.assert_allclose(got.distances, expected.distances, atol=1e-6)
        assert reopened.search(replacement, k=1).entries[0][0] == Entry(camera_id="moved", track_id=5)
        assert not np.isin(got.ids, np.arange(100, 120)).any()


def test_unusable_snapshot_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "index"
    with FaissIndex(path, DIM, factory="Flat") as index:
        fill(index, range(10))
        expected = index.search(all_vectors(range(3)), k=4)
    (snapshot,) = path.glob("index.*.faiss")
    snapshot.write_bytes(b"not a faiss index")
    (path / "index.0.faiss.tmp").write_bytes(b"half")
    with FaissIndex(path, DIM, factory="Flat") as index:
        assert index.count() == 100
        np.testing.assert_array_equal(index.search(all_vectors(range(3)), k=4).ids, expected.ids)
    assert not list(path.glob("*.tmp"))
    # a different factory reuses the vectors in SQLite and builds its own index
    with FaissIndex(path, DIM, factory="HNSW16") as index:
        assert index.count() == 100
        np.testing.assert_array_equal(index.search(all_vectors(range(3)), k=1).ids[:, 0], np.arange(30))


def test_reopening_with_another_dimension_names_both(tmp_path: Path) -> None:
    FaissIndex(tmp_path, DIM, factory="Flat").close()
    with pytest.raises(ValueError, match=r"\(n, 16\).*\(n, 8\)"):
        FaissIndex(tmp_path, 8, factory="Flat")


def trained(index: FaissIndex) -> bool:
    return index.is_trained


def test_ivf_buffers_exactly_until_trained(tmp_path: Path) -> None:
    index = FaissIndex(tmp_path / "ivf", DIM, factory="IVF4,Flat", train_size=60, nprobe=1, exact_below=0)
    fill(index, range(5))
    assert not trained(index) and index.count() == 50
    queries = all_vectors(range(5))[::7]
    exact = 1.0 - queries @ all_vectors(range(5)).T
    hits = index.search(queries, k=5)
    np.testing.assert_array_equal(hits.ids, np.argsort(exact, axis=1, kind="stable")[:, :5])
    index.close()
    index = FaissIndex(tmp_path / "ivf", DIM, factory="IVF4,Flat", train_size=60, nprobe=1, exact_below=0)
    assert not trained(index) and index.count() == 50
    fill(index, range(5, 12))
    assert trained(index) and index.count() == 120
    # nprobe=1 misses lists, but a filter still gets exactly k hits (exact fallback for short rows)
    hits = index.search(queries, k=40, filter=Filter(classes=frozenset({1, 2})))
    assert np.all((hits.ids >= 0).sum(axis=1) == 40)
    assert all(entry is not None and entry.class_id in {1, 2} for row in hits.entries for entry in row)
    index.close()


def test_hnsw_tombstones_then_compaction(tmp_path: Path) -> None:
    path = tmp_path / "hnsw"
    index = FaissIndex(path, DIM, factory="HNSW32", exact_below=0, compact_ratio=0.3)
    fill(index, range(30))
    vectors = all_vectors(range(30))
    assert index.delete(np.arange(0, 300, 2)) == 150
    before = index.search(vectors[:40], k=10)
    assert np.all(before.ids % 2 == 1)
    index.flush()  # half the labels are dead: rebuilt without them
    labels = np.load(next(path.glob("index.*.labels.npz")))["label_ids"]
    assert labels.size == 150 and np.all(labels >= 0)
    after = index.search(vectors[:40], k=10)
    np.testing.assert_array_equal(np.sort(after.ids, axis=1), np.sort(before.ids, axis=1))
    index.add([0], vectors[:1], [batch_data(0)[2][0]])
    assert index.search(vectors[:1], k=1).ids[0, 0] == 0
    index.close()


def test_in_memory_index_leaves_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with FaissIndex(None, DIM, factory="Flat") as index:
        fill(index, range(3))
        index.flush()
        assert index.count() == 30
    assert not list(tmp_path.iterdir())


def private_modes(folder: Path) -> list[str]:
    """The names of every file under ``folder``, asserting directories 0700 and files 0600."""
    names = []
    for directory, _, files in os.walk(folder):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700, directory
        for name in files:
            assert stat.S_IMODE(os.stat(Path(directory) / name).st_mode) == 0o600, name
            names.append(name)
    return sorted(names)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_the_index_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    # The index holds appearance vectors of people: nobody but its owner may read them.
    folder = tmp_path / "index"
    previous = os.umask(0o022)
    try:
        index = FaissIndex(folder, DIM, factory="HNSW32", save_every=BATCH)
        for batch in range(3):
            index.add(*batch_data(batch))
        index.flush()
        open_names = private_modes(folder)  # while open: the SQLite -wal and -shm files exist
        assert {"meta.sqlite", "meta.sqlite-wal", "meta.sqlite-shm"} <= set(open_names)
        assert any(name.endswith(".faiss") for name in open_names)
        assert any(name.endswith(".labels.npz") for name in open_names)
        index.close()
        private_modes(folder)
        # reopened (snapshot loaded, caught up, written again) it stays private
        reopened = FaissIndex(folder, DIM, factory="HNSW32", save_every=BATCH)
        reopened.add(*batch_data(3))
        reopened.flush()
        assert reopened.count() == 4 * BATCH
        private_modes(folder)
        reopened.close()
    finally:
        os.umask(previous)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_an_existing_lax_index_directory_is_tightened(tmp_path: Path) -> None:
    folder = tmp_path / "index"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    with FaissIndex(folder, DIM, factory="Flat") as index:
        index.add(*batch_data(0))
        index.flush()
    private_modes(folder)
