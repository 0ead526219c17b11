"""A ``VectorIndex`` on Milvus: Milvus Lite on a local ``.db`` file, or a Milvus server or cluster.

The same ``pymilvus.MilvusClient`` code talks to both; only the URI differs:

- ``/data/gallery.db`` (``milvus://`` stripped by ``open_index``): Milvus Lite, embedded, one process
  at a time per file. Lite 3.x (pure Python, in-process) builds one vector index per sealed segment:
  ``FLAT`` (NumPy brute force), ``HNSW`` and ``AUTOINDEX`` (FAISS HNSW; brute force without
  faiss-cpu), ``IVF_FLAT`` and ``IVF_SQ8`` (FAISS); it accepts ``IVF_PQ`` and ``DISKANN`` at creation
  but fails to build them, so they are refused here. The older C++ Lite (2.4/2.5) documents only
  ``FLAT``, ``IVF_FLAT`` and ``AUTOINDEX``. Only ``INVERTED`` scalar indexes (``STL_SORT`` and the like
  are refused). No filter templating (``filter_params``), so filters are written as literal
  expressions with escaped strings. Consistency levels are ignored (every read sees every write).
- ``http(s)://host:port``: a Milvus server or cluster (``token`` and ``db_name`` for auth/database),
  with every index type of ``VECTOR_INDEX_TYPES`` (``HNSW``, ``IVF_*``, ``DISKANN``, ...).

One collection holds the primary key ``id`` (INT64), ``vector`` (FLOAT_VECTOR, ``dim``, COSINE metric)
and one scalar field per ``Entry`` field (``x``/``y`` nullable). Milvus reports COSINE *similarity*
(larger is closer); this index reports ``1 - similarity`` like every other backend.

Guarantees: the collection uses Strong consistency and every read asks for it, so a search, count
or get sees every completed ``add``/``delete``. ``add`` is an upsert (an existing id is replaced).
Durability: with Milvus Lite each ``add``/``delete`` is followed by ``flush`` (data sealed into the
file before the call returns; a fresh process reopening the file sees it, even after the writer
exits without closing). Lite 3.x already kept unflushed writes across such an exit when tried, so
the flush (~20 ms) is a guarantee rather than a necessity there; ``flush=False`` skips it.
A Milvus server makes writes durable in its write-ahead log once acknowledged, and rate-limits
``flush``, so by default no flush is issued there (``flush=True`` forces it).

Speed with Milvus Lite 3.x (30k x 512-d, 2 cores): writes not yet flushed sit in Lite's memtable,
which every search scans by brute force after rebuilding its vectors row by row from Arrow
(~2 s per search call at 30k rows, whatever ``index_type``); only flushed (sealed) segments get a
vector index, and a background thread builds it. So with ``flush=False`` pending writes are flushed
before the next search, and ``flush()`` (call it once after a bulk load) also waits for the
background index build (~1.5 ms per row for HNSW). Then a single-query search takes ~20 ms with
HNSW/AUTOINDEX and ~120 ms with FLAT (which re-normalises every stored vector per call). The
index lookup itself is ~1 ms: the rest is Lite's pure-Python per-call bookkeeping over every
stored row (upsert dedup, tombstones), ~0.7 us per row, i.e. ~0.7 s per call at 1M. Batch queries
into one ``search`` call; beyond ~100k entries use a Milvus server or ``FaissIndex``.

Filters with Lite's HNSW are applied as a selector during the graph walk, which for selective
filters returns fewer than k hits (and poor recall) at the default ``ef``; filtered searches
therefore run with ``ef >= filtered_ef`` (4096), and a query row still short of k hits is answered
exactly from the matching entries (fetched with a ``query``, when fewer than ``MAX_TOP_K`` match),
so a search returns ``min(k, matching)`` hits.

>>> index = MilvusIndex("/tmp/gallery.db", 128, index_type="FLAT")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from crossview.search.index import Entry, Filter, SearchHits, check_ids, check_vectors

VECTOR_INDEX_TYPES: Final = ("AUTOINDEX", "FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW", "DISKANN")
LITE_INDEX_TYPES: Final = ("AUTOINDEX", "FLAT", "IVF_FLAT", "IVF_SQ8", "HNSW")  # what Milvus Lite 3.x builds
MAX_TOP_K: Final = 16384  # Milvus' limit on ``limit`` (topk) per search
_STRING_FIELDS: Final = {"camera_id": 1024, "crop": 65535}  # VARCHAR max_length, in UTF-8 bytes
_INT_FIELDS: Final = ("track_id", "global_id", "class_id")
_FLOAT_FIELDS: Final = ("t_start", "t_end")
_NULLABLE_FIELDS: Final = ("x", "y")
_ENTRY_FIELDS: Final = ("camera_id", *_INT_FIELDS, *_FLOAT_FIELDS, *_NULLABLE_FIELDS, "crop")
_INDEXED_SCALARS: Final = ("camera_id", *_INT_FIELDS, *_FLOAT_FIELDS)
_NOTHING: Final = "id < 0"  # ids are >= 0, so this matches no entry
_MAX_DOUBLE: Final = repr(float(np.finfo(np.float64).max))
_LOG = logging.getLogger(__name__)


class MilvusIndex:
    """A persistent vector index with metadata in one Milvus collection.

    ``uri``: a local path ending in ``.db`` (Milvus Lite; parent folders are created) or
    ``http(s)://host:port``. ``collection`` is created on first use (with ``index_type``, COSINE,
    Strong consistency) and reopened afterwards; reopening with another ``dim`` raises ``ValueError``.
    ``index_type``: ``AUTOINDEX`` (the default) lets Milvus choose: FAISS HNSW (M=16,
    efConstruction=200, ef=64) in Lite 3.x, its own tuned index on a server. Milvus Lite builds
    ``LITE_INDEX_TYPES`` only (others raise ``ValueError``); ``FLAT`` there is exact and needs no
    build but is ~5x slower per search at 30k entries. A server (``http://host:port``) also takes
    ``IVF_PQ``, ``DISKANN``, etc. ``index_params`` go to the vector index (e.g. ``{"M": 16,
    "efConstruction": 200}`` for HNSW); ``search_params`` to every search (for HNSW, ``ef`` is raised
    to at least ``k``, and with Lite to at least ``filtered_ef`` for filtered searches).
    ``flush``: flush after each write; ``None`` means yes for Milvus Lite, no for a server. With
    Lite and ``flush=False`` (faster bulk loads) pending writes are still flushed before the next
    search, since Lite scans unflushed rows very slowly and indexes only flushed ones; call
    ``flush()`` after a bulk load to wait for the index.
    ``timeout``: seconds per call, connecting included.

    >>> with MilvusIndex("/tmp/gallery.db", 4, index_type="FLAT") as index:  # doctest: +SKIP
    ...     index.add([7], [[1, 0, 0, 0]], [Entry(camera_id="gate")])
    ...     index.search([[1, 0, 0, 0]], k=1).ids
    array([[7]])
    """

    def __init__(
        self,
        uri: str,
        dim: int,
        *,
        collection: str = "crossview_tracks",
        index_type: str = "AUTOINDEX",
        index_params: Mapping[str, Any] | None = None,
        search_params: Mapping[str, Any] | None = None,
        scalar_indexes: bool = True,
        flush: bool | None = None,
        timeout: float | None = 10.0,
        token: str = "",
        db_name: str = "",
        batch_size: int = 1000,
        filtered_ef: int = 4096,
    ) -> None:
        from pymilvus import MilvusClient, MilvusException

        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        remote = uri.startswith(("http://", "https://", "tcp://", "unix:"))
        supported = VECTOR_INDEX_TYPES if remote else LITE_INDEX_TYPES
        if index_type.upper() not in supported:
            where = "" if remote else " with Milvus Lite (a server URI http://host:port supports more)"
            raise ValueError(f"index_type must be one of {list(supported)}{where}, got {index_type!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if filtered_ef < 1:
            raise ValueError(f"filtered_ef must be >= 1, got {filtered_ef}")
        self._uri = uri
        self._dim = dim
        self._collection = collection
        self._index_type = index_type.upper()
        self._search_params = dict(search_params or {})
        self._timeout = timeout
        self._batch_size = batch_size
        self._filtered_ef = filtered_ef
        self._db_name = db_name
        self._lite = not remote
        self._flush = (not remote) if flush is None else flush
        self._unflushed = False  # Lite: writes not yet flushed into sealed, indexed segments
        if not remote:
            path = Path(uri).expanduser()
            if path.suffix != ".db":
                raise ValueError(f"a Milvus Lite index needs a local path ending in .db, got {uri!r}")
            path.parent.mkdir(parents=True, exist_ok=True)
            uri = os.path.abspath(path)
        self._client_uri = uri
        try:
            self._client: Any = MilvusClient(uri=uri, token=token, db_name=db_name, timeout=timeout)
        except MilvusException as error:
            raise ConnectionError(f"cannot connect to Milvus at {self._uri}: {error}") from error
        try:
            if self._client.has_collection(collection, timeout=timeout):
                self._check_schema()
            else:
                self._create(dict(index_params or {}), scalar_indexes)
            self._client.load_collection(collection, timeout=timeout)
        except BaseException:
            self._client.close()
            raise

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def uri(self) -> str:
        return self._uri

    def add(self, ids: ArrayLike, vectors: ArrayLike, entries: Sequence[Entry]) -> None:
        """Insert or replace (upsert) entries by id; flushed before returning (see module notes)."""
        client = self._open_client()
        array = check_vectors(vectors, self._dim)
        keys = check_ids(ids, array.shape[0])
        if len(entries) != len(keys):
            raise ValueError(f"entries must have length {len(keys)} (one per id), got {len(entries)}")
        for entry in entries:
            for name, limit in _STRING_FIELDS.items():
                size = len(getattr(entry, name).encode())
                if size > limit:
                    raise ValueError(f"{name} is {size} bytes in UTF-8; Milvus stores at most {limit}")
        if not len(keys):
            return
        rows = [
            {"id": int(key), "vector": vector.tolist(), **entry.model_dump()}
            for key, vector, entry in zip(keys, array, entries, strict=True)
        ]
        for start in range(0, len(rows), self._batch_size):
            client.upsert(self._collection, rows[start : start + self._batch_size], timeout=self._timeout)
        self._after_write()

    def search(self, vectors: ArrayLike, k: int, filter: Filter | None = None) -> SearchHits:
        """The ``k`` nearest entries per query (``1 - cos`` distances), filtered inside Milvus."""
        client = self._open_client()
        queries = check_vectors(vectors, self._dim, "queries")
        if not 1 <= k <= MAX_TOP_K:
            raise ValueError(f"k must be in [1, {MAX_TOP_K}] for Milvus, got {k}")
        n = queries.shape[0]
        distances = np.full((n, k), np.inf, dtype=np.float32)
        ids = np.full((n, k), -1, dtype=np.int64)
        entries: list[list[Entry | None]] = [[None] * k for _ in range(n)]
        expression = filter_expression(filter) if filter is not None else ""
        if not n or expression == _NOTHING:
            return SearchHits(distances, ids, entries)
        if self._unflushed:
            self._flush_now()  # Lite scans unflushed rows ~1000x slower than sealed segments
        params = self._params(k, filtered=bool(expression))
        for start in range(0, n, self._batch_size):
            batch = queries[start : start + self._batch_size]
            results = client.search(
                self._collection,
                data=batch.tolist(),
                anns_field="vector",
                limit=k,
                filter=expression,
                output_fields=list(_ENTRY_FIELDS),
                search_params=params,
                consistency_level="Strong",
                timeout=self._timeout,
            )
            for row, hits in enumerate(results, start=start):
                for column, hit in enumerate(hits):
                    ids[row, column] = int(hit["id"])
                    distances[row, column] = 1.0 - float(hit["distance"])
                    entries[row][column] = _entry(hit["entity"])
        short = np.flatnonzero(ids[:, -1] < 0)
        if self._lite and self._index_type != "FLAT" and short.size:
            self._exact_rows(queries, short, expression, SearchHits(distances, ids, entries))
        return SearchHits(distances, ids, entries)

    def delete(self, ids: ArrayLike) -> int:
        """Remove entries by id (unknown and repeated ids allowed); returns how many existed
        (Milvus itself does not say, so they are looked up first)."""
        client = self._open_client()
        existing = self._existing(np.unique(_lookup_ids(ids)))
        if existing:
            for chunk in _chunks(existing, self._batch_size):
                client.delete(self._collection, ids=chunk, timeout=self._timeout)
            self._after_write()
        return len(existing)

    def count(self) -> int:
        """Entries in the collection (a Strong-consistency ``count(*)`` query)."""
        client = self._open_client()
        result = client.query(
            self._collection,
            filter="",
            output_fields=["count(*)"],
            consistency_level="Strong",
            timeout=self._timeout,
        )
        return int(result[0]["count(*)"])

    def largest_ids(self) -> tuple[int, int]:
        """The largest stored id and ``global_id`` (-1 where there is none). Milvus has no ``max``
        aggregate, so every entry's two numbers are read, a batch at a time (a query iterator)."""
        largest_id = largest_global = -1
        if self.count() == 0:
            return largest_id, largest_global
        client = self._open_client()
        rows = client.query_iterator(
            self._collection,
            batch_size=self._batch_size,
            filter="id >= 0",
            output_fields=["id", "global_id"],
            consistency_level="Strong",
            timeout=self._timeout,
        )
        try:
            while batch := rows.next():
                largest_id = max(largest_id, max(int(row["id"]) for row in batch))
                largest_global = max(largest_global, max(int(row["global_id"]) for row in batch))
        finally:
            rows.close()
        return largest_id, largest_global

    def get(self, ids: ArrayLike) -> tuple[NDArray[np.float32], list[Entry | None]]:
        """Stored (L2-normalised) vectors, zero rows for unknown ids, and entries (``None`` if unknown);
        ids may repeat."""
        keys = _lookup_ids(ids)
        found: dict[int, tuple[NDArray[np.float32], Entry]] = {
            int(record["id"]): (np.asarray(record["vector"], dtype=np.float32), _entry(record))
            for record in self._query_ids(np.unique(keys), ["id", "vector", *_ENTRY_FIELDS])
        }
        vectors = np.zeros((len(keys), self._dim), dtype=np.float32)
        entries: list[Entry | None] = [None] * len(keys)
        for row, key in enumerate(keys.tolist()):
            if key in found:
                vectors[row], entries[row] = found[key]
        return vectors, entries

    def flush(self) -> None:
        """Seal pending writes into the file (Milvus ``flush``); with Milvus Lite also wait until its
        background thread has built the vector index of every sealed segment, so that searches use it
        rather than brute force (call once after a bulk load; minutes for HNSW on ~1M rows).

        The wait reaches into the in-process Lite server (no public API reports Lite's index
        progress); where that is not possible only the flush happens.
        """
        self._flush_now()
        if self._lite:
            collection = self._lite_collection()
            if collection is not None:
                collection._wait_for_bg(timeout=None)

    def close(self) -> None:
        """Release the client (Milvus Lite stops when its last client closes); safe to call twice."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self) -> MilvusIndex:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MilvusIndex({self._uri!r}, dim={self._dim}, collection={self._collection!r})"

    def _open_client(self) -> Any:
        if self._client is None:
            raise ValueError(f"{self!r} is closed")
        return self._client

    def _create(self, index_params: dict[str, Any], scalar_indexes: bool) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self._dim)
        for name, limit in _STRING_FIELDS.items():
            schema.add_field(name, DataType.VARCHAR, max_length=limit)
        for name in _INT_FIELDS:
            schema.add_field(name, DataType.INT64)
        for name in _FLOAT_FIELDS:
            schema.add_field(name, DataType.DOUBLE)
        for name in _NULLABLE_FIELDS:
            schema.add_field(name, DataType.DOUBLE, nullable=True)
        indexes = self._client.prepare_index_params()
        indexes.add_index(
            field_name="vector", index_type=self._index_type, metric_type="COSINE", params=index_params
        )
        if scalar_indexes:
            for name in _INDEXED_SCALARS:
                # INVERTED is the one scalar index Milvus Lite implements; servers support it too.
                indexes.add_index(field_name=name, index_type="INVERTED")
        self._client.create_collection(
            self._collection,
            schema=schema,
            index_params=indexes,
            consistency_level="Strong",
            timeout=self._timeout,
        )

    def _check_schema(self) -> None:
        description = self._client.describe_collection(self._collection, timeout=self._timeout)
        fields = {field["name"]: field for field in description["fields"]}
        missing = sorted({"id", "vector", *_ENTRY_FIELDS} - set(fields))
        if missing:
            raise ValueError(
                f"collection {self._collection!r} at {self._uri} is not a crossview index "
                f"(missing fields {missing})"
            )
        stored = int(fields["vector"]["params"]["dim"])
        if stored != self._dim:
            raise ValueError(
                f"collection {self._collection!r} at {self._uri} has dim {stored}, expected {self._dim}"
            )

    def _params(self, k: int, *, filtered: bool) -> dict[str, Any]:
        params: dict[str, Any] = {"metric_type": "COSINE", "params": dict(self._search_params)}
        hnsw = self._index_type == "HNSW" or (self._lite and self._index_type == "AUTOINDEX")
        if hnsw:
            floor = max(k, self._filtered_ef) if filtered and self._lite else k
            params["params"]["ef"] = max(int(params["params"].get("ef", 64)), floor)
        return params

    def _exact_rows(
        self, queries: NDArray[np.float32], rows: NDArray[np.intp], expression: str, hits: SearchHits
    ) -> None:
        """Answer ``rows`` (which came back with fewer than k hits) exactly, in place, from every
        matching entry, when there are at most ``MAX_TOP_K - 1`` of them.

        Milvus Lite's approximate indexes apply a filter (and its tombstones) as a selector during
        the graph or list traversal, which can end with fewer than k hits although k entries match.
        """
        records = self._open_client().query(
            self._collection,
            filter=expression,
            output_fields=["id", "vector", *_ENTRY_FIELDS],
            limit=MAX_TOP_K,
            consistency_level="Strong",
            timeout=self._timeout,
        )
        if not records or len(records) >= MAX_TOP_K:
            return  # nothing matches, or too many to scan: keep the engine's answer
        keys = np.array([int(record["id"]) for record in records], dtype=np.int64)
        matrix = np.asarray([record["vector"] for record in records], dtype=np.float32)
        k = hits.ids.shape[1]
        for row in rows.tolist():
            if int((hits.ids[row] >= 0).sum()) >= len(records):
                continue  # the engine already returned every match
            scores = 1.0 - matrix @ queries[row]
            order = np.lexsort((keys, scores))[:k]
            hits.ids[row] = -1
            hits.distances[row] = np.inf
            hits.ids[row, : len(order)] = keys[order]
            hits.distances[row, : len(order)] = scores[order]
            hits.entries[row][:] = [_entry(records[i]) for i in order.tolist()] + [None] * (k - len(order))

    def _after_write(self) -> None:
        if self._flush:
            self._flush_now()
        elif self._lite:
            self._unflushed = True

    def _flush_now(self) -> None:
        self._open_client().flush(self._collection, timeout=self._timeout)
        self._unflushed = False

    def _lite_collection(self) -> Any | None:
        """The Milvus Lite 3.x collection object serving this client in-process (private API), or
        ``None`` where it cannot be found (another Lite version)."""
        try:
            from milvus_lite import server_manager_instance

            _, database, _ = server_manager_instance._servers[self._client_uri]
            collection = database.get_collection(self._collection, database_name=self._db_name or "default")
        except Exception as error:  # best effort: a private API of a third-party package
            _LOG.debug("cannot reach the Milvus Lite collection behind %s: %r", self._uri, error)
            return None
        return collection if callable(getattr(collection, "_wait_for_bg", None)) else None

    def _query_ids(self, keys: NDArray[np.int64], fields: list[str]) -> Iterator[dict[str, Any]]:
        client = self._open_client()
        for chunk in _chunks([int(key) for key in keys if key >= 0], self._batch_size):
            yield from client.query(
                self._collection,
                filter=f"id in {chunk}",
                output_fields=fields,
                consistency_level="Strong",
                timeout=self._timeout,
            )

    def _existing(self, keys: NDArray[np.int64]) -> list[int]:
        return sorted(int(record["id"]) for record in self._query_ids(keys, ["id"]))


def filter_expression(filter: Filter) -> str:
    """``filter`` as a Milvus boolean expression reproducing ``Filter.matches`` ('' when empty).

    >>> filter_expression(Filter(cameras={"gate"}, classes={2}))
    'camera_id in ["gate"] and class_id in [2]'
    """
    clauses: list[str] = []
    if filter.cameras is not None:
        if not filter.cameras:
            return _NOTHING
        clauses.append(f"camera_id in [{', '.join(_string(name) for name in sorted(filter.cameras))}]")
    if filter.classes is not None:
        if not filter.classes:
            return _NOTHING
        clauses.append(f"class_id in [{', '.join(str(int(value)) for value in sorted(filter.classes))}]")
    if filter.time_range is not None:
        start, end = filter.time_range
        clauses.extend((_compare("t_end", ">=", start), _compare("t_start", "<=", end)))
    for name, value in sorted(filter.equals.items()):
        clauses.append(_equals(name, value))
    clauses = [clause for clause in clauses if clause]
    if _NOTHING in clauses:
        return _NOTHING
    return " and ".join(clauses)


def _string(text: str) -> str:
    """A double-quoted Milvus string literal (escapes backslash, quote and line breaks)."""
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def _compare(name: str, operator: str, value: float) -> str:
    """``name operator value`` for a DOUBLE field; Milvus has no ``inf`` literal, so infinities are
    rewritten against the largest finite double ('' means always true for finite fields)."""
    if math.isnan(value):
        return _NOTHING
    if math.isinf(value):
        if operator == ">=":
            return "" if value < 0 else f"{name} > {_MAX_DOUBLE}"
        return "" if value > 0 else f"{name} < -{_MAX_DOUBLE}"
    return f"{name} {operator} {float(value)!r}"


def _equals(name: str, value: str | int | float) -> str:
    """``name == value`` with Python's equality: a value of the wrong kind matches nothing."""
    if name == "camera_id":
        return f"camera_id == {_string(value)}" if isinstance(value, str) else _NOTHING
    if isinstance(value, str):
        return _NOTHING
    if name in _INT_FIELDS:
        if isinstance(value, float) and not value.is_integer():
            return _NOTHING
        return f"{name} == {int(value)}"
    number = float(value)
    if math.isnan(number):
        return _NOTHING
    if math.isinf(number):
        return f"{name} > {_MAX_DOUBLE}" if number > 0 else f"{name} < -{_MAX_DOUBLE}"
    return f"{name} == {number!r}"


def _lookup_ids(ids: ArrayLike) -> NDArray[np.int64]:
    """A 1-D int64 array of ids to look up (repeats and unknown or negative ids allowed)."""
    array = np.asarray(ids)
    if array.ndim != 1:
        raise ValueError(f"ids must have shape (n,), got {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"ids must be integers, got {array.dtype}")
    return array.astype(np.int64)


def _entry(record: Mapping[str, Any]) -> Entry:
    return Entry(**{name: record[name] for name in _ENTRY_FIELDS})


def _chunks(values: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
