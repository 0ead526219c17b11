"""The vector index protocol every backend implements, and the types it speaks.

Conventions follow FAISS: float32 ``(n, d)`` in, ``(distances, ids)`` of shape ``(n, k)`` out,
``-1`` ids (and ``inf`` distances) padding rows with fewer than ``k`` hits. Vectors are compared by
cosine distance ``1 - cos`` (smaller is closer), so they are L2-normalised on the way in. Wrong
shapes and non-finite values raise ``ValueError`` naming the expected and actual shape or value.

Each entry carries typed metadata (``Entry``); ``Filter`` restricts a search to entries matching
it and is applied *inside* the engine, so a search returns exactly ``k`` hits whenever at least
``k`` entries match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

FILTERABLE = ("camera_id", "track_id", "global_id", "class_id", "t_start", "t_end")


class Entry(BaseModel):
    """Metadata of one gallery entry (one track of one camera, usually).

    ``t_start``/``t_end`` are seconds (the track's first and last timestamps); ``x``/``y`` its
    ground position in metres when known; ``crop`` a reference to a representative image.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    camera_id: str = Field(min_length=1)
    track_id: int = -1
    global_id: int = -1
    class_id: int = 0
    t_start: float = 0.0
    t_end: float = 0.0
    x: float | None = None
    y: float | None = None
    crop: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> Entry:
        if self.t_end < self.t_start:
            raise ValueError(f"t_end ({self.t_end}) is before t_start ({self.t_start})")
        return self


class Filter(BaseModel):
    """Which entries a search may return; every given condition must hold.

    ``cameras`` and ``classes``: membership; ``time_range``: the entry's ``[t_start, t_end]``
    overlaps ``[start, end]``; ``equals``: exact values of filterable fields (``FILTERABLE``).

    >>> Filter(cameras={"gate"}, time_range=(0.0, 60.0)).is_empty()
    False
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    cameras: frozenset[str] | None = None
    classes: frozenset[int] | None = None
    time_range: tuple[float, float] | None = None
    equals: Mapping[str, str | int | float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_fields(self) -> Filter:
        unknown = sorted(set(self.equals) - set(FILTERABLE))
        if unknown:
            raise ValueError(f"unknown filter field(s) {unknown}; filterable fields are {list(FILTERABLE)}")
        if self.time_range is not None and self.time_range[1] < self.time_range[0]:
            raise ValueError(f"time_range end is before its start: {self.time_range}")
        return self

    def is_empty(self) -> bool:
        return self.cameras is None and self.classes is None and self.time_range is None and not self.equals

    def matches(self, entry: Entry) -> bool:
        """The reference semantics every backend must reproduce inside its engine."""
        if self.cameras is not None and entry.camera_id not in self.cameras:
            return False
        if self.classes is not None and entry.class_id not in self.classes:
            return False
        if self.time_range is not None:
            start, end = self.time_range
            if entry.t_end < start or entry.t_start > end:
                return False
        return all(getattr(entry, name) == value for name, value in self.equals.items())


@dataclass(frozen=True, slots=True)
class SearchHits:
    """``k`` nearest entries per query: ``(n, k)`` distances (``1 - cos``) and ids, -1 padded,
    and the hit entries' metadata (``None`` for padding)."""

    distances: NDArray[np.float32]
    ids: NDArray[np.int64]
    entries: list[list[Entry | None]]


@runtime_checkable
class VectorIndex(Protocol):
    """A persistent vector index with metadata, filters inside the engine, add/search/delete."""

    @property
    def dim(self) -> int: ...

    def add(self, ids: ArrayLike, vectors: ArrayLike, entries: Sequence[Entry]) -> None:
        """Insert (or replace) entries; durable once this returns."""
        ...

    def search(self, vectors: ArrayLike, k: int, filter: Filter | None = None) -> SearchHits: ...

    def delete(self, ids: ArrayLike) -> int:
        """Remove entries by id; returns how many existed."""
        ...

    def count(self) -> int: ...

    def largest_ids(self) -> tuple[int, int]:
        """The largest stored id and the largest stored ``global_id`` (-1 where there is none):
        where a writer that appends starts its ids, and its identities, so as not to reuse them."""
        ...

    def get(self, ids: ArrayLike) -> tuple[NDArray[np.float32], list[Entry | None]]:
        """Stored vectors (zero rows for unknown ids) and entries (``None`` for unknown ids)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
        /,
    ) -> None: ...


def check_vectors(vectors: ArrayLike, dim: int, what: str = "vectors") -> NDArray[np.float32]:
    """``(n, dim)`` finite float32, L2-normalised; ``ValueError`` naming expected and actual."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != dim:
        raise ValueError(f"{what} must have shape (n, {dim}), got {array.shape}")
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        raise ValueError(f"{what} rows {np.flatnonzero(~finite)[:10].tolist()} contain NaN or inf")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"{what} rows {np.flatnonzero(norms[:, 0] == 0)[:10].tolist()} are all zero")
    normalised: NDArray[np.float32] = np.ascontiguousarray(array / norms, dtype=np.float32)
    return normalised


def check_ids(ids: ArrayLike, n: int | None = None) -> NDArray[np.int64]:
    """``(n,)`` non-negative int64 ids, unique within the call."""
    array = np.asarray(ids)
    if array.ndim != 1 or (n is not None and array.shape[0] != n):
        raise ValueError(f"ids must have shape ({n if n is not None else 'n'},), got {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"ids must be integers, got {array.dtype}")
    result = array.astype(np.int64)
    if (result < 0).any():
        raise ValueError("ids must be >= 0 (-1 marks padding in results)")
    if len(np.unique(result)) != len(result):
        raise ValueError("ids must be unique within one call")
    return result


def open_index(spec: str | Path, dim: int, **options: Any) -> VectorIndex:
    """An index by URI: ``faiss://PATH?factory=HNSW32`` (default, in-process), ``milvus://PATH`` (Milvus
    Lite on a local file) or ``http(s)://host:port`` (a Milvus server or cluster)."""
    text = str(spec)
    if text.startswith(("http://", "https://", "milvus://")):
        from crossview.search.milvus import MilvusIndex

        return MilvusIndex(text.removeprefix("milvus://"), dim, **options)
    from crossview.search.faiss_index import FaissIndex

    return FaissIndex(text.removeprefix("faiss://"), dim, **options)
