"""A ``VectorIndex`` on Milvus: Milvus Lite on a local ``.db`` file, or a Milvus server or cluster.

The same ``pymilvus.MilvusClient`` code talks to both; only the URI differs:

- ``/data/gallery.db`` (``milvus://`` stripped by ``open_index``): Milvus Lite, embedded, one process
  at a time per file. It accepts the vector index types ``FLAT``, ``IVF_FLAT``, ``IVF_SQ8``, ``IVF_PQ``,
  ``HNSW``, ``DISKANN`` and ``AUTOINDEX``, and only ``INVERTED`` scalar indexes (``STL_SORT`` and
  the like are refused). It does not support filter templating (``filter_params``), so filters are
  written as literal expressions with escaped strings.
- ``http(s)://host:port``: a Milvus server or cluster (``token`` and ``db_name`` for auth/database).

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

>>> index = MilvusIndex("/tmp/gallery.db", 128, index_type="FLAT")  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from crossview.search.index import Entry, Filter, SearchHits, check_ids, check_vectors

VECTOR_INDEX_TYPES: Final = ("AUTOINDEX", "FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW", "DISKANN")
MAX_TOP_K: Final = 16384  # Milvus' limit on ``limit`` (topk) per search
_STRING_FIELDS: Final = {"camera_id": 1024, "crop": 65535}  # VARCHAR max_length, in UTF-8 bytes
_INT_FIELDS: Final = ("track_id", "global_id", "class_id")
_FLOAT_FIELDS: Final = ("t_start", "t_end")
_NULLABLE_FIELDS: Final = ("x", "y")
_ENTRY_FIELDS: Final = ("camera_id", *_INT_FIELDS, *_FLOAT_FIELDS, *_NULLABLE_FIELDS, "crop")
_INDEXED_SCALARS: Final = ("camera_id", *_INT_FIELDS, *_FLOAT_FIELDS)
_NOTHING: Final = "id < 0"  # ids are >= 0, so this matches no entry
_MAX_DOUBLE: Final = repr(float(np.finfo(np.float64).max))


class MilvusIndex:
    """A persistent vector index with metadata in one Milvus collection.

    ``uri``: a local path ending in ``.db`` (Milvus Lite; parent folders are created) or
    ``http(s)://host:port``. ``collection`` is created on first use (with ``index_type``, COSINE,
    Strong consistency) and reopened afterwards; reopening with another ``dim`` raises ``ValueError``.
    ``index_params`` go to the vector index (e.g. ``{"M": 16, "efConstruction": 200}`` for HNSW);
    ``search_params`` to every search (for HNSW, ``ef`` is raised to at least ``k``).
    ``flush``: flush after each write; ``None`` means yes for Milvus Lite, no for a server.
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
    ) -> None:
        from pymilvus import MilvusClient, MilvusException

        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if index_type.upper() not in VECTOR_INDEX_TYPES:
            raise ValueError(f"index_type must be one of {list(VECTOR_INDEX_TYPES)}, got {index_type!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._uri = uri
        self._dim = dim
        self._collection = collection
        self._index_type = index_type.upper()
        self._search_params = dict(search_params or {})
        self._timeout = timeout
        self._batch_size = batch_size
        remote = uri.startswith(("http://", "https://", "tcp://", "unix:"))
        self._flush = (not remote) if flush is None else flush
        if not remote:
            path = Path(uri).expanduser()
            if path.suffix != ".db":
                raise ValueError(f"a Milvus Lite index needs a local path ending in .db, got {uri!r}")
            path.parent.mkdir(parents=True, exist_ok=True)
            uri = str(path)
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
        params: dict[str, Any] = {"metric_type": "COSINE", "params": dict(self._search_params)}
        if self._index_type == "HNSW":
            params["params"]["ef"] = max(int(params["params"].get("ef", 64)), k)
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

    def _after_write(self) -> None:
        if self._flush:
            self._open_client().flush(self._collection, timeout=self._timeout)

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
