"""``FaissIndex``: an in-process FAISS vector index with SQLite metadata, filters inside the engine,
and crash-safe persistence.

How it works
------------
*Similarity.* Vectors are L2-normalised on the way in and searched by inner product
(``METRIC_INNER_PRODUCT``); distances are reported as ``1 - cos``. Every hit the engine returns is
re-scored against the exact stored vector, so distances are exact even for compressed (PQ) codes.

*Labels.* FAISS stores vectors under internal sequential labels ``0..n-1``; an ``int64`` array maps
each label to the user's id (``-1`` once the label is dead). This plays the role of
``IndexIDMap2`` but also lets an id be *replaced* on an index type that cannot remove vectors
(HNSW): re-adding an id kills its old label and appends a new one.

*Deletes.* ``delete`` (and replacement) only mark labels dead (tombstones); every search passes a
``faiss.IDSelectorBitmap`` over the live labels, so dead vectors are never returned. The FAISS
index is physically rebuilt (``reset`` + re-add of the live vectors, labels renumbered) by
``compact()``, and by ``flush()``/``close()`` once more than ``compact_ratio`` of labels are dead.

*Filters.* The filterable metadata of every label is also held in numpy columns
(``crossview.search.columns``), so a ``Filter`` becomes a boolean mask over the labels in a few
vectorised passes (a few milliseconds at a million entries); the mask, ANDed with the live
labels, is cached per filter until the next write, and passed to FAISS as an
``IDSelectorBitmap`` inside ``SearchParametersHNSW``/``SearchParametersIVF``. Exact hit counts are
guaranteed as follows: when the allowed set is small (``exact_below`` vectors) or the index is not
trained yet, the search is an exact numpy scan over the allowed vectors; otherwise HNSW's
``efSearch`` and IVF's ``nprobe`` grow with the filter's selectivity, and any query row that still
came back with fewer than ``min(k, allowed)`` hits is answered by the exact scan. So a search
returns exactly ``min(k, matching)`` hits, always. Unfiltered searches of an index without
deleted labels pass no selector at all.

*Training.* Index types that need training (``IVF...``, ``...PQ...``) are trained once
``train_size`` live vectors exist (default ``39 * nlist``, at least 9984 when PQ codes are used,
FAISS's own guidance). Until then vectors are buffered in memory (and in SQLite) and searched
exactly, so results are correct from the first add. Training uses all buffered vectors (a fixed
random sample of ``256 * nlist`` when there are more), which makes it deterministic.

*Durability.* With a ``path`` (a directory), SQLite (``path/meta.sqlite``, WAL,
``synchronous=FULL``) is the source of truth: each ``add``/``delete`` is one transaction holding
the float32 vectors as blobs, the metadata, and a bumped generation counter; once it returns it is
durable. The FAISS index is a cache, written atomically (temp file + fsync + ``os.replace``) as
``index.<generation>.faiss`` plus ``index.<generation>.labels.npz`` by ``flush()``, ``close()``
and every ``save_every`` added rows. On open the newest snapshot is loaded and caught up from
SQLite (rows with a newer generation are re-added, ids no longer in SQLite are tombstoned); a
missing or unusable snapshot is rebuilt from SQLite. A SIGKILL at any moment therefore loses no
acknowledged add and exposes no half-written one. The index holds appearance vectors of people,
so its directory is private (0700) and its files too (0600), whatever the umask.

Memory: the live vectors are also kept as a float32 matrix (exact re-scoring, exact fallback,
training, compaction), i.e. ``4 * dim`` bytes per entry beside whatever FAISS holds, plus 44 bytes of
filterable metadata columns.

>>> import numpy as np
>>> from crossview.search.index import Entry
>>> with FaissIndex(None, 4, factory="Flat") as index:
...     index.add([7], np.eye(4, dtype=np.float32)[:1], [Entry(camera_id="gate")])
...     hits = index.search(np.eye(4, dtype=np.float32)[:1], k=2)
>>> hits.ids.tolist()
[[7, -1]]
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import faiss
import numpy as np
from numpy.typing import ArrayLike, NDArray

from crossview.io.files import private_directory, private_file
from crossview.models.identity import ModelMismatch
from crossview.search.columns import RECORD_FIELDS, MetadataColumns, Record, record
from crossview.search.index import Entry, Filter, SearchHits, check_ids, check_vectors

_ENTRY_COLUMNS = ("camera_id", "track_id", "global_id", "class_id", "t_start", "t_end", "x", "y", "crop")
_ALLOWED_CACHE_SIZE = 8
_Allowed = tuple[NDArray[np.bool_], NDArray[np.uint8] | None]
_SNAPSHOT = re.compile(r"^index\.(\d+)\.faiss$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY,
    generation INTEGER NOT NULL,
    vector BLOB NOT NULL,
    camera_id TEXT NOT NULL,
    track_id INTEGER NOT NULL,
    global_id INTEGER NOT NULL,
    class_id INTEGER NOT NULL,
    t_start REAL NOT NULL,
    t_end REAL NOT NULL,
    x REAL,
    y REAL,
    crop TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_generation ON entries(generation);
"""


class FaissIndex:
    """A ``VectorIndex`` on FAISS (index type by factory string) with metadata in SQLite.

    ``path`` is a directory (created if missing) holding ``meta.sqlite`` and the FAISS snapshot;
    ``None`` keeps everything in memory. ``factory`` is any FAISS factory string (``"Flat"``,
    ``"HNSW32"``, ``"IVF1024,Flat"``, ``"IVF1024,PQ64"``). See the module docstring for training,
    deletes, filters and durability. ``model`` is the identity key of the embedder whose vectors
    the index holds (``crossview.models.identity``): recorded on first use, and an index of another
    model is refused with ``ModelMismatch`` rather than mixed with it.

    >>> import numpy as np
    >>> index = FaissIndex(None, 3, factory="HNSW32")
    >>> index.add([1, 2], np.eye(3)[:2], [Entry(camera_id="a"), Entry(camera_id="b")])
    >>> index.search(np.eye(3)[:1], k=1, filter=Filter(cameras={"b"})).ids.tolist()
    [[2]]
    >>> index.close()
    """

    def __init__(
        self,
        path: str | Path | None,
        dim: int,
        *,
        factory: str = "HNSW32",
        train_size: int | None = None,
        ef_search: int = 384,
        nprobe: int = 16,
        exact_below: int = 10_000,
        save_every: int = 50_000,
        compact_ratio: float = 0.2,
        model: str | None = None,
    ) -> None:
        if int(dim) <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        if ef_search <= 0 or nprobe <= 0 or exact_below < 0 or save_every <= 0:
            raise ValueError(
                f"ef_search, nprobe, save_every must be positive and exact_below >= 0, got "
                f"{ef_search}, {nprobe}, {save_every}, {exact_below}"
            )
        if not 0.0 <= compact_ratio <= 1.0:
            raise ValueError(f"compact_ratio must be in [0, 1], got {compact_ratio}")
        self._dim = int(dim)
        self._factory = factory
        self._ef_search = int(ef_search)
        self._nprobe = int(nprobe)
        self._exact_below = int(exact_below)
        self._save_every = int(save_every)
        self._compact_ratio = float(compact_ratio)
        self._lock = threading.RLock()
        self._closed = False

        self._index = self._new_index()  # fails early on a bad factory string
        self._ivf = _ivf_of(self._index)
        self._train_size = int(train_size) if train_size is not None else self._default_train_size()
        # label -> user id (-1: dead) and label -> vector; the first ``_size`` rows are in use
        self._label_ids: NDArray[np.int64] = np.empty(0, dtype=np.int64)
        self._vectors: NDArray[np.float32] = np.empty((0, self._dim), dtype=np.float32)
        self._columns = MetadataColumns()  # filterable metadata per label, for filters in numpy
        # (filter, generation, size) -> allowed labels as a mask and a packed bitmap (see _allowed)
        self._allowed_cache: OrderedDict[tuple[Any, ...], _Allowed] = OrderedDict()
        self._size = 0
        self._live = 0
        self._rows_since_save = 0
        self._saved_generation = -1

        self._model = model
        self._directory: Path | None = None
        if path is None:
            self._db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        else:
            self._directory = Path(path)
            if self._directory.exists() and not self._directory.is_dir():
                raise ValueError(f"path must be a directory (or not exist yet), got the file {path}")
            private_directory(self._directory)
            self._db = sqlite3.connect(
                private_file(self._directory / "meta.sqlite"), isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
        try:
            self._db.executescript(_SCHEMA)
            self._generation = self._init_meta()
            self._load()
        except BaseException:
            self._db.close()
            raise

    # ------------------------------------------------------------------ protocol

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return self._dim

    @property
    def factory(self) -> str:
        """The FAISS factory string of the index type."""
        return self._factory

    @property
    def ef_search(self) -> int:
        """HNSW ``efSearch`` of unfiltered searches (filtered ones raise it with selectivity)."""
        return self._ef_search

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        if int(value) <= 0:
            raise ValueError(f"ef_search must be positive, got {value}")
        self._ef_search = int(value)

    @property
    def nprobe(self) -> int:
        """IVF lists probed by unfiltered searches (filtered ones raise it with selectivity)."""
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if int(value) <= 0:
            raise ValueError(f"nprobe must be positive, got {value}")
        self._nprobe = int(value)

    @property
    def is_trained(self) -> bool:
        """Whether the FAISS index is trained (always true for types that need no training)."""
        return bool(self._index.is_trained)

    def add(self, ids: ArrayLike, vectors: ArrayLike, entries: Sequence[Entry]) -> None:
        """Insert or replace entries; durable (with a path) once this returns."""
        with self._lock:
            self._check_open()
            matrix = check_vectors(vectors, self._dim)
            id_array = check_ids(ids, matrix.shape[0])
            if len(entries) != matrix.shape[0]:
                raise ValueError(f"entries must have length {matrix.shape[0]}, got {len(entries)}")
            for entry in entries:
                if not isinstance(entry, Entry):
                    raise ValueError(f"entries must be Entry objects, got {type(entry).__name__}")
                if math.isnan(entry.t_start) or math.isnan(entry.t_end):
                    raise ValueError(f"entry times must not be NaN, got {entry.t_start}, {entry.t_end}")
            if matrix.shape[0] == 0:
                return
            generation = self._generation + 1
            rows = [
                (int(i), generation, vector.tobytes(), *(getattr(entry, name) for name in _ENTRY_COLUMNS))
                for i, vector, entry in zip(id_array, matrix, entries, strict=True)
            ]
            placeholders = ",".join("?" * (3 + len(_ENTRY_COLUMNS)))
            with self._transaction(generation):
                self._db.executemany(
                    f"INSERT OR REPLACE INTO entries (id, generation, vector, {', '.join(_ENTRY_COLUMNS)}) "
                    f"VALUES ({placeholders})",
                    rows,
                )
            self._apply_add(id_array, matrix, [record(entry) for entry in entries])
            self._rows_since_save += len(rows)
            if self._rows_since_save >= self._save_every:
                self.flush()

    def search(self, vectors: ArrayLike, k: int, filter: Filter | None = None) -> SearchHits:
        """The ``k`` nearest entries of each query (``1 - cos``), restricted by ``filter``."""
        with self._lock:
            self._check_open()
            if isinstance(k, bool) or not isinstance(k, int | np.integer) or k <= 0:
                raise ValueError(f"k must be a positive integer, got {k!r}")
            k = int(k)
            queries = check_vectors(vectors, self._dim, "queries")
            labels, distances = self._search_labels(queries, k, *self._allowed(filter))
            ids = np.full(labels.shape, -1, dtype=np.int64)
            ids[labels >= 0] = self._label_ids[labels[labels >= 0]]
            found = self._read_entries(np.unique(ids[ids >= 0]))
            hit_entries = [[found.get(int(i)) if i >= 0 else None for i in row] for row in ids]
            return SearchHits(distances=distances, ids=ids, entries=hit_entries)

    def delete(self, ids: ArrayLike) -> int:
        """Remove entries by id; returns how many existed. Durable once this returns."""
        with self._lock:
            self._check_open()
            id_array = np.unique(_as_ids(ids))
            id_array = id_array[id_array >= 0]
            if id_array.size == 0:
                return 0
            existing = np.intersect1d(id_array, self._label_ids[: self._size])
            if existing.size == 0:
                return 0
            generation = self._generation + 1
            with self._transaction(generation):
                self._db.execute(
                    "DELETE FROM entries WHERE id IN (SELECT value FROM json_each(?))",
                    (json.dumps(existing.tolist()),),
                )
            self._kill(existing)
            return int(existing.size)

    def count(self) -> int:
        """Number of live entries."""
        with self._lock:
            self._check_open()
            return self._live

    def largest_ids(self) -> tuple[int, int]:
        """The largest stored id and ``global_id`` (-1 where there is none)."""
        with self._lock:
            self._check_open()
            largest_id, largest_global = self._db.execute(
                "SELECT COALESCE(MAX(id), -1), COALESCE(MAX(global_id), -1) FROM entries"
            ).fetchone()
            return int(largest_id), int(largest_global)

    def get(self, ids: ArrayLike) -> tuple[NDArray[np.float32], list[Entry | None]]:
        """Stored (normalised) vectors, zero rows for unknown ids, and entries (``None`` if unknown)."""
        with self._lock:
            self._check_open()
            id_array = _as_ids(ids)
            vectors = np.zeros((id_array.size, self._dim), dtype=np.float32)
            unique = np.unique(id_array)
            rows = self._db.execute(
                f"SELECT id, vector, {', '.join(_ENTRY_COLUMNS)} FROM entries "
                "WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(unique.tolist()),),
            ).fetchall()
            found: dict[int, tuple[NDArray[np.float32], Entry]] = {
                int(row[0]): (np.frombuffer(row[1], dtype=np.float32), _entry(row[2:])) for row in rows
            }
            entries: list[Entry | None] = []
            for position, i in enumerate(id_array.tolist()):
                hit = found.get(i)
                if hit is None:
                    entries.append(None)
                else:
                    vectors[position] = hit[0]
                    entries.append(hit[1])
            return vectors, entries

    def flush(self) -> None:
        """Write the FAISS snapshot atomically (compacting first when many labels are dead)."""
        with self._lock:
            self._check_open()
            dead = self._size - self._live
            if dead and dead > self._compact_ratio * self._size:
                self._compact()
            self._rows_since_save = 0
            if self._directory is None or self._saved_generation == self._generation:
                return
            self._write_snapshot()

    def compact(self) -> None:
        """Physically drop deleted and replaced vectors from the FAISS index (renumbers labels)."""
        with self._lock:
            self._check_open()
            self._compact()

    def close(self) -> None:
        """Flush and release the index; idempotent."""
        with self._lock:
            if self._closed:
                return
            try:
                if self._directory is not None:
                    self.flush()
            finally:
                self._closed = True
                self._db.close()

    def __enter__(self) -> FaissIndex:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = str(self._directory) if self._directory is not None else "memory"
        return f"FaissIndex({where!r}, dim={self._dim}, factory={self._factory!r}, count={self._live})"

    # ------------------------------------------------------------------ FAISS side

    def _new_index(self) -> Any:
        try:
            return faiss.index_factory(self._dim, self._factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as error:
            raise ValueError(f"invalid FAISS factory string {self._factory!r}: {error}") from error

    def _default_train_size(self) -> int:
        if self._index.is_trained:
            return 0
        size = 39 * self._ivf.nlist if self._ivf is not None else 0
        if "PQ" in self._factory.upper():
            size = max(size, 39 * 256)
        return max(size, 1)

    def _apply_add(
        self, ids: NDArray[np.int64], vectors: NDArray[np.float32], records: Sequence[Record]
    ) -> None:
        """Kill the labels of replaced ids, append new labels, feed FAISS (training when due)."""
        self._kill(ids)
        start, stop = self._size, self._size + ids.size
        if stop > self._label_ids.size:
            capacity = max(stop, 2 * self._label_ids.size, 1024)
            self._label_ids = np.resize(self._label_ids, capacity)
            grown = np.empty((capacity, self._dim), dtype=np.float32)
            grown[:start] = self._vectors[:start]
            self._vectors = grown
        self._label_ids[start:stop] = ids
        self._vectors[start:stop] = vectors
        self._columns.write(np.arange(start, stop), records)
        self._size = stop
        self._live += ids.size
        if self._index.is_trained:
            self._index.add(vectors)
        elif self._live >= self._train_size:
            self._train()

    def _kill(self, ids: NDArray[np.int64]) -> None:
        if ids.size == 0 or self._size == 0:
            return
        hit = np.isin(self._label_ids[: self._size], ids)
        self._live -= int(np.count_nonzero(hit))
        self._label_ids[: self._size][hit] = -1

    def _train(self) -> None:
        """Train on the live buffered vectors, then add them all (labels renumbered)."""
        self._compact_arrays()
        sample = self._vectors[: self._size]
        limit = 256 * (self._ivf.nlist if self._ivf is not None else 256)
        if sample.shape[0] > limit:
            chosen = np.sort(np.random.default_rng(0).choice(sample.shape[0], limit, replace=False))
            sample = sample[chosen]
        self._index.train(np.ascontiguousarray(sample))
        self._index.add(self._vectors[: self._size])

    def _compact(self) -> None:
        if self._live == self._size:
            return
        self._compact_arrays()
        if self._index.is_trained:
            self._index.reset()
            if self._size:
                self._index.add(self._vectors[: self._size])

    def _compact_arrays(self) -> None:
        keep = np.flatnonzero(self._label_ids[: self._size] >= 0)
        self._label_ids[: keep.size] = self._label_ids[keep]
        self._vectors[: keep.size] = self._vectors[keep]
        self._columns.keep(keep)
        self._size = keep.size

    def _allowed(self, filter: Filter | None) -> _Allowed:
        """Labels a search may return (live, matching ``filter``) as a mask and a packed bitmap.

        The bitmap is ``None`` when every label is allowed (no selector needed). Results are
        cached per filter until the next write (the generation changes on every add and delete).
        """
        active = filter if filter is not None and not filter.is_empty() else None
        key = (_filter_key(active), self._generation, self._size)
        cached = self._allowed_cache.get(key)
        if cached is not None:
            self._allowed_cache.move_to_end(key)
            return cached
        allowed = self._label_ids[: self._size] >= 0
        if active is not None:
            allowed &= self._columns.mask(active, self._size)
        everything = active is None and self._live == self._size
        value: _Allowed = (allowed, None if everything else np.packbits(allowed, bitorder="little"))
        self._allowed_cache[key] = value
        while len(self._allowed_cache) > _ALLOWED_CACHE_SIZE:
            self._allowed_cache.popitem(last=False)
        return value

    def _search_labels(
        self,
        queries: NDArray[np.float32],
        k: int,
        allowed: NDArray[np.bool_],
        bitmap: NDArray[np.uint8] | None,
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Labels ``(n, k)`` (-1 padded) and exact ``1 - cos`` distances among ``allowed`` labels."""
        n = queries.shape[0]
        candidates = np.flatnonzero(allowed)
        wanted = min(k, candidates.size)
        labels = np.full((n, k), -1, dtype=np.int64)
        distances = np.full((n, k), np.inf, dtype=np.float32)
        if wanted == 0:
            return labels, distances
        if not self._index.is_trained or candidates.size <= self._exact_below:
            return self._exact(queries, k, candidates)
        selector = None if bitmap is None else faiss.IDSelectorBitmap(allowed.size, faiss.swig_ptr(bitmap))
        selectivity = self._size / candidates.size
        params = self._search_parameters(self._index, selector, k, selectivity)
        _, found = self._index.search(queries, k, params=params)
        found = found.astype(np.int64)
        valid = found >= 0
        safe = np.where(valid, found, 0)
        scores = np.einsum("nd,nkd->nk", queries, self._vectors[safe])
        exact = np.where(valid, 1.0 - scores, np.inf).astype(np.float32)
        order = np.argsort(exact, axis=1, kind="stable")
        labels = np.take_along_axis(np.where(valid, found, -1), order, axis=1)
        distances = np.take_along_axis(exact, order, axis=1)
        short = np.flatnonzero(valid.sum(axis=1) < wanted)
        if short.size:
            labels[short], distances[short] = self._exact(queries[short], k, candidates)
        return labels, distances

    def _search_parameters(self, index: Any, selector: Any, k: int, selectivity: float) -> Any:
        # through ``Any``: faiss's bundled stubs lack the keyword constructors its Python layer adds
        # (which also keep ``sel`` and ``index_params`` referenced while the parameters live)
        engine: Any = faiss
        if isinstance(index, engine.IndexPreTransform):
            inner = self._search_parameters(engine.downcast_index(index.index), selector, k, selectivity)
            return engine.SearchParametersPreTransform(sel=selector, index_params=inner)
        if isinstance(index, engine.IndexHNSW):
            ef = int(min(max(self._ef_search, k, k * selectivity), max(4096, k)))
            return engine.SearchParametersHNSW(sel=selector, efSearch=ef)
        ivf = _ivf_of(index)
        if ivf is not None:
            nprobe = int(min(ivf.nlist, math.ceil(self._nprobe * selectivity)))
            return engine.SearchParametersIVF(sel=selector, nprobe=max(nprobe, 1))
        return engine.SearchParameters(sel=selector)

    def _exact(
        self, queries: NDArray[np.float32], k: int, candidates: NDArray[np.int64]
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Brute-force top ``k`` among ``candidates`` labels, in chunks of queries."""
        n = queries.shape[0]
        labels = np.full((n, k), -1, dtype=np.int64)
        distances = np.full((n, k), np.inf, dtype=np.float32)
        take = min(k, candidates.size)
        if take == 0:
            return labels, distances
        pool = self._vectors[candidates]
        step = max(1, (1 << 24) // max(candidates.size, 1))
        for begin in range(0, n, step):
            block = (1.0 - queries[begin : begin + step] @ pool.T).astype(np.float32)
            if take < candidates.size:
                part = np.argpartition(block, take - 1, axis=1)[:, :take]
            else:
                part = np.broadcast_to(np.arange(candidates.size), (block.shape[0], candidates.size))
            part_distances = np.take_along_axis(block, part, axis=1)
            order = np.argsort(part_distances, axis=1, kind="stable")
            labels[begin : begin + step, :take] = candidates[np.take_along_axis(part, order, axis=1)]
            distances[begin : begin + step, :take] = np.take_along_axis(part_distances, order, axis=1)
        return labels, distances

    # ------------------------------------------------------------------ SQLite side

    def _init_meta(self) -> int:
        stored = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if "dim" in stored and int(stored["dim"]) != self._dim:
            raise ValueError(
                f"index at {self._directory} holds vectors of shape (n, {stored['dim']}), "
                f"expected (n, {self._dim})"
            )
        if self._model is not None and stored.get("model", self._model) != self._model:
            raise ModelMismatch(f"index at {self._directory}", stored["model"], self._model)
        if self._model is not None and "model" not in stored:
            self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('model', ?)", (self._model,))
        if not stored:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                [("dim", str(self._dim)), ("generation", "0")],
            )
            self._db.execute("COMMIT")
        return int(self._db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])

    @contextlib.contextmanager
    def _transaction(self, generation: int) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(generation),))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._generation = generation

    def _read_entries(self, ids: NDArray[np.int64]) -> dict[int, Entry]:
        if ids.size == 0:
            return {}
        rows = self._db.execute(
            f"SELECT id, {', '.join(_ENTRY_COLUMNS)} FROM entries "
            "WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(ids.tolist()),),
        ).fetchall()
        return {int(row[0]): _entry(row[1:]) for row in rows}

    # ------------------------------------------------------------------ persistence

    def _load(self) -> None:
        """Bring the FAISS side up to the SQLite generation: snapshot + catch-up, or full rebuild."""
        rows = self._db.execute(
            f"SELECT id, generation, vector, {', '.join(RECORD_FIELDS)} FROM entries ORDER BY id"
        ).fetchall()
        records: list[Record] = [row[3:] for row in rows]
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        row_generations = np.fromiter((row[1] for row in rows), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(row[2] for row in rows), dtype=np.float32).reshape(-1, self._dim)
        pending = np.ones(ids.size, dtype=bool)
        snapshot = self._read_snapshot()
        if snapshot is not None:
            index, label_ids, snapshot_generation = snapshot
            current = np.isin(label_ids, ids[row_generations <= snapshot_generation])
            label_ids = np.where(current, label_ids, -1)
            self._index = index
            self._ivf = _ivf_of(index)
            self._label_ids = label_ids.copy()
            self._vectors = np.zeros((label_ids.size, self._dim), dtype=np.float32)
            self._size = label_ids.size
            self._live = int(np.count_nonzero(current))
            position = np.searchsorted(ids, label_ids[current])
            self._vectors[current] = vectors[position]
            self._columns.write(np.flatnonzero(current), [records[i] for i in position.tolist()])
            pending[position] = False
            self._saved_generation = snapshot_generation
        if pending.any():
            waiting = np.flatnonzero(pending)
            self._apply_add(
                ids[waiting], np.ascontiguousarray(vectors[waiting]), [records[i] for i in waiting.tolist()]
            )
        elif not self._index.is_trained and self._live >= self._train_size:
            self._train()
        self._rows_since_save = int(np.count_nonzero(pending))

    def _read_snapshot(self) -> tuple[Any, NDArray[np.int64], int] | None:
        """The newest usable snapshot not newer than SQLite; stale files and temp files removed."""
        if self._directory is None:
            return None
        for stale in self._directory.glob("*.tmp"):
            stale.unlink(missing_ok=True)
        generations = sorted(
            (int(match.group(1)) for p in self._directory.iterdir() if (match := _SNAPSHOT.match(p.name))),
            reverse=True,
        )
        for generation in generations:
            if generation > self._generation:
                continue
            try:
                with np.load(self._directory / f"index.{generation}.labels.npz", allow_pickle=False) as data:
                    label_ids = np.asarray(data["label_ids"], dtype=np.int64)
                    factory = str(data["factory"])
                    dim = int(data["dim"])
                if factory != self._factory or dim != self._dim:
                    continue
                index = faiss.read_index(str(self._directory / f"index.{generation}.faiss"))
            except (OSError, ValueError, KeyError, RuntimeError):
                continue
            expected = label_ids.size if index.is_trained else 0
            if index.ntotal != expected or index.d != self._dim:
                continue
            return index, label_ids, generation
        return None

    def _write_snapshot(self) -> None:
        assert self._directory is not None
        generation = self._generation
        labels_path = self._directory / f"index.{generation}.labels.npz"
        index_path = self._directory / f"index.{generation}.faiss"
        with _atomic(labels_path) as temporary, temporary.open("wb") as handle:
            np.savez(
                handle,
                label_ids=self._label_ids[: self._size],
                factory=np.array(self._factory),
                dim=np.array(self._dim),
                generation=np.array(generation),
            )
        # the .faiss file is written last: its presence marks a complete snapshot
        with _atomic(index_path) as temporary:
            faiss.write_index(self._index, str(temporary))
        self._saved_generation = generation
        for old in self._directory.iterdir():
            match = _SNAPSHOT.match(old.name)
            if match and int(match.group(1)) != generation:
                old.unlink(missing_ok=True)
                (self._directory / f"index.{match.group(1)}.labels.npz").unlink(missing_ok=True)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("this FaissIndex is closed")


@contextlib.contextmanager
def _atomic(target: Path) -> Iterator[Path]:
    """Yield a temporary path to write; then fsync it, rename it over ``target``, fsync the folder.

    The temporary is created private (0600) before it is yielded, and set 0600 again before the
    rename, since a writer that replaces the file rather than truncating it gets the umask's mode.
    """
    temporary = target.with_name(target.name + ".tmp")
    try:
        private_file(temporary)
        yield temporary
        with temporary.open("rb+") as handle:
            os.fchmod(handle.fileno(), 0o600)
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _ivf_of(index: Any) -> Any:
    """The ``IndexIVF`` inside ``index``, or ``None``."""
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def _filter_key(filter: Filter | None) -> tuple[Any, ...] | None:
    """A hashable, order-independent key of a filter's conditions."""
    if filter is None:
        return None
    return (
        None if filter.cameras is None else tuple(sorted(filter.cameras)),
        None if filter.classes is None else tuple(sorted(filter.classes)),
        filter.time_range,
        tuple(sorted((name, type(value).__name__, value) for name, value in filter.equals.items())),
    )


def _entry(values: Sequence[Any]) -> Entry:
    return Entry(**dict(zip(_ENTRY_COLUMNS, values, strict=True)))


def _as_ids(ids: ArrayLike) -> NDArray[np.int64]:
    """A 1-D int64 array of ids (duplicates and unknown ids allowed: for lookups)."""
    array = np.asarray(ids)
    if array.ndim != 1:
        raise ValueError(f"ids must have shape (n,), got {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"ids must be integers, got {array.dtype}")
    return array.astype(np.int64)
