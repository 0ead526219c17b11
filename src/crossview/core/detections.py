"""The columnar detection table that flows through every stage."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

Index = slice | int | Sequence[int] | NDArray[np.bool_] | NDArray[np.integer[Any]]

_NO_ID = -1


def _column(
    name: str, values: ArrayLike | None, dtype: type[np.generic], n: int, fill: float
) -> NDArray[Any]:
    if values is None:
        return np.full(n, fill, dtype=dtype)
    array = np.asarray(values)
    if array.ndim == 0:
        raise ValueError(f"Detections.{name} must be 1-D, got a scalar")
    if array.ndim != 1:
        raise ValueError(f"Detections.{name} must have shape (N,), got {array.shape}")
    if array.shape[0] != n:
        raise ValueError(f"Detections.{name} has {array.shape[0]} rows, expected {n} (rows of xyxy)")
    fractional_input = array.size > 0 and not np.issubdtype(array.dtype, np.integer)
    needs_whole = np.issubdtype(dtype, np.integer) and fractional_input
    if needs_whole and (not np.all(np.isfinite(array)) or np.any(array != np.round(array))):
        raise ValueError(f"Detections.{name} must hold whole numbers, got {array.dtype} with fractions")
    return np.ascontiguousarray(array, dtype=dtype)


@dataclass(frozen=True, eq=False, slots=True, init=False)
class Detections:
    """Objects found in one frame, one row each, as aligned numpy columns.

    Every column has the same number of rows ``N``; that is checked on construction,
    so a filtered, concatenated or tracked table is always consistent. ``tracker_id``
    and ``global_id`` are ``-1`` where unknown. ``embedding`` rows are L2-normalised
    on construction. ``data`` holds extra per-row columns (``(N, ...)`` arrays).

    >>> import numpy as np
    >>> d = Detections(xyxy=[[0, 0, 10, 20], [5, 5, 8, 9]], confidence=[0.9, 0.3], class_id=[0, 2])
    >>> len(d[d.confidence > 0.5])
    1
    >>> Detections.empty().xyxy.shape
    (0, 4)
    """

    xyxy: NDArray[np.float32]
    confidence: NDArray[np.float32]
    class_id: NDArray[np.int64]
    tracker_id: NDArray[np.int64]
    global_id: NDArray[np.int64]
    embedding: NDArray[np.float32] | None
    data: Mapping[str, NDArray[Any]]
    camera_id: str | None
    frame_index: int | None
    timestamp: float | None

    def __init__(
        self,
        xyxy: ArrayLike,
        confidence: ArrayLike | None = None,
        class_id: ArrayLike | None = None,
        tracker_id: ArrayLike | None = None,
        global_id: ArrayLike | None = None,
        embedding: ArrayLike | None = None,
        data: Mapping[str, ArrayLike] | None = None,
        camera_id: str | None = None,
        frame_index: int | None = None,
        timestamp: float | None = None,
    ) -> None:
        boxes = np.asarray(xyxy, dtype=np.float32)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"Detections.xyxy must have shape (N, 4), got {boxes.shape}")
        if not np.all(np.isfinite(boxes)):
            bad = np.flatnonzero(~np.all(np.isfinite(boxes), axis=1))
            raise ValueError(f"Detections.xyxy has non-finite values in rows {bad[:10].tolist()}")
        inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
        if inverted.any():
            raise ValueError(
                f"Detections.xyxy rows {np.flatnonzero(inverted)[:10].tolist()} have x2 < x1 or y2 < y1"
            )
        n = boxes.shape[0]
        if frame_index is not None and frame_index < 0:
            raise ValueError(f"Detections.frame_index must be >= 0, got {frame_index}")
        extras: dict[str, NDArray[Any]] = {}
        for key, values in (data or {}).items():
            array = np.asarray(values)
            if array.ndim == 0 or array.shape[0] != n:
                raise ValueError(f"Detections.data[{key!r}] has shape {array.shape}, expected {n} rows")
            extras[key] = array
        set_ = object.__setattr__  # frozen: fields are set once, here
        set_(self, "xyxy", np.ascontiguousarray(boxes))
        set_(self, "confidence", _column("confidence", confidence, np.float32, n, 1.0))
        set_(self, "class_id", _column("class_id", class_id, np.int64, n, 0))
        set_(self, "tracker_id", _column("tracker_id", tracker_id, np.int64, n, _NO_ID))
        set_(self, "global_id", _column("global_id", global_id, np.int64, n, _NO_ID))
        set_(self, "embedding", None if embedding is None else _normalised_embedding(embedding, n))
        set_(self, "data", extras)
        set_(self, "camera_id", camera_id)
        set_(self, "frame_index", frame_index)
        set_(self, "timestamp", timestamp)

    # construction -------------------------------------------------------------------------------
    @classmethod
    def empty(cls, *, embedding_dim: int | None = None, **frame_fields: Any) -> Self:
        """A valid table with no rows (optionally with a ``(0, D)`` embedding column)."""
        embedding = None if embedding_dim is None else np.zeros((0, embedding_dim), np.float32)
        return cls(xyxy=np.zeros((0, 4), np.float32), embedding=embedding, **frame_fields)

    @classmethod
    def from_xywh(cls, xywh: ArrayLike, **columns: Any) -> Self:
        """Build from ``(x, y, width, height)`` boxes (MOTChallenge and COCO order)."""
        boxes = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
        xyxy = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
        return cls(xyxy=xyxy, **columns)

    @classmethod
    def concatenate(cls, parts: Iterable[Detections]) -> Self:
        """Stack tables row-wise.

        Frame fields (camera, frame index, timestamp) are kept where every part agrees and
        set to ``None`` otherwise. Parts must agree on having embeddings (and their width)
        and on the keys of ``data``.
        """
        items = list(parts)
        if not items:
            return cls.empty()
        with_embedding = {d.embedding is not None for d in items}
        if len(with_embedding) > 1:
            raise ValueError("cannot concatenate Detections with and without embeddings")
        keys = {frozenset(d.data) for d in items}
        if len(keys) > 1:
            raise ValueError(
                f"cannot concatenate Detections with different data keys: {sorted(map(sorted, keys))}"
            )

        def agreed(name: str) -> Any:
            values = {getattr(d, name) for d in items}
            return values.pop() if len(values) == 1 else None

        embedding = None
        if items[0].embedding is not None:
            embedding = np.concatenate([d.embedding for d in items if d.embedding is not None])
        return cls(
            xyxy=np.concatenate([d.xyxy for d in items]),
            confidence=np.concatenate([d.confidence for d in items]),
            class_id=np.concatenate([d.class_id for d in items]),
            tracker_id=np.concatenate([d.tracker_id for d in items]),
            global_id=np.concatenate([d.global_id for d in items]),
            embedding=embedding,
            data={k: np.concatenate([d.data[k] for d in items]) for k in items[0].data},
            camera_id=agreed("camera_id"),
            frame_index=agreed("frame_index"),
            timestamp=agreed("timestamp"),
        )

    def with_tracker_ids(self, tracker_id: NDArray[np.int64], **data: NDArray[Any]) -> Self:
        """The same rows with ``tracker_id`` set and ``data`` columns added or replaced.

        What a tracker returns, once per frame: only the new columns are checked, the rest are
        shared with ``self`` rather than validated again.
        """
        n = len(self)
        ids = np.asarray(tracker_id)
        if ids.shape != (n,) or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"tracker_id must be ({n},) integers, got {ids.shape} {ids.dtype}")
        for key, values in data.items():
            if values.ndim == 0 or values.shape[0] != n:
                raise ValueError(f"Detections.data[{key!r}] has shape {values.shape}, expected {n} rows")
        copy = object.__new__(type(self))
        for name in self.__slots__:
            object.__setattr__(copy, name, getattr(self, name))
        object.__setattr__(copy, "tracker_id", ids.astype(np.int64, copy=False))
        if data:
            object.__setattr__(copy, "data", {**self.data, **data})
        return copy

    def replace(self, **changes: Any) -> Self:
        """A copy with some columns or frame fields replaced (validated again)."""
        return dataclasses.replace(self, **changes)

    # access ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def __getitem__(self, index: Index) -> Self:
        """Rows selected by a boolean mask, integer indices or a slice; always a table."""
        if isinstance(index, int | np.integer):
            index = [int(index)]
        if isinstance(index, np.ndarray) and index.dtype == np.bool_ and index.shape != (len(self),):
            raise IndexError(f"boolean mask has shape {index.shape}, expected ({len(self)},)")
        rows: Any = index
        return dataclasses.replace(
            self,
            xyxy=self.xyxy[rows],
            confidence=self.confidence[rows],
            class_id=self.class_id[rows],
            tracker_id=self.tracker_id[rows],
            global_id=self.global_id[rows],
            embedding=None if self.embedding is None else self.embedding[rows],
            data={k: v[rows] for k, v in self.data.items()},
        )

    @property
    def is_empty(self) -> bool:
        return len(self) == 0

    @property
    def xywh(self) -> NDArray[np.float32]:
        """Boxes as ``(x, y, width, height)``."""
        return np.concatenate([self.xyxy[:, :2], self.xyxy[:, 2:] - self.xyxy[:, :2]], axis=1)

    @property
    def area(self) -> NDArray[np.float32]:
        return (self.xyxy[:, 2] - self.xyxy[:, 0]) * (self.xyxy[:, 3] - self.xyxy[:, 1])

    @property
    def center(self) -> NDArray[np.float32]:
        """Box centres ``(N, 2)``."""
        center: NDArray[np.float32] = (self.xyxy[:, :2] + self.xyxy[:, 2:]) * np.float32(0.5)
        return center

    @property
    def foot(self) -> NDArray[np.float32]:
        """Bottom-centre points ``(N, 2)``: where an upright object touches the ground."""
        return np.stack([(self.xyxy[:, 0] + self.xyxy[:, 2]) / 2, self.xyxy[:, 3]], axis=1)

    def __repr__(self) -> str:
        extras = f", data={sorted(self.data)}" if self.data else ""
        embedding = "" if self.embedding is None else f", embedding_dim={self.embedding.shape[1]}"
        return (
            f"Detections(n={len(self)}, camera_id={self.camera_id!r}, frame_index={self.frame_index}"
            f"{embedding}{extras})"
        )


def _normalised_embedding(values: ArrayLike, n: int) -> NDArray[np.float32]:
    embedding = np.asarray(values, dtype=np.float32)
    if embedding.ndim != 2 or embedding.shape[0] != n:
        raise ValueError(f"Detections.embedding must have shape ({n}, D), got {embedding.shape}")
    if not np.all(np.isfinite(embedding)):
        raise ValueError("Detections.embedding has non-finite values")
    norms = np.linalg.norm(embedding, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(
            f"Detections.embedding rows {np.flatnonzero(norms[:, 0] == 0)[:10].tolist()} are all zero"
        )
    normalised: NDArray[np.float32] = np.ascontiguousarray(embedding / norms, dtype=np.float32)
    return normalised
