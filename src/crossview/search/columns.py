"""Filterable metadata held as numpy columns, so a ``Filter`` is evaluated in a few vectorised passes.

An in-process index keeps one row per internal label (``FaissIndex``); evaluating a filter over a
million rows then costs a few milliseconds of numpy instead of a SQL query returning the allowed
ids. Camera ids are stored as small integer codes. The semantics are exactly ``Filter.matches``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from crossview.search.index import Entry, Filter

_INTEGER_FIELDS = ("track_id", "global_id", "class_id")
_FLOAT_FIELDS = ("t_start", "t_end")
RECORD_FIELDS = ("camera_id", *_INTEGER_FIELDS, *_FLOAT_FIELDS)
Record = tuple[str, int, int, int, float, float]


def record(entry: Entry) -> Record:
    """The filterable fields of ``entry`` in ``RECORD_FIELDS`` order."""
    return (entry.camera_id, entry.track_id, entry.global_id, entry.class_id, entry.t_start, entry.t_end)


class MetadataColumns:
    """Growable columns (``camera``, ``track_id``, ``global_id``, ``class_id``, ``t_start``, ``t_end``).

    >>> columns = MetadataColumns()
    >>> entries = [Entry(camera_id="gate", t_start=0, t_end=5), Entry(camera_id="lot", t_end=9)]
    >>> columns.write(np.arange(2), [record(e) for e in entries])
    >>> columns.mask(Filter(cameras={"lot"}), 2).tolist()
    [False, True]
    """

    def __init__(self) -> None:
        self._codes: dict[str, int] = {}
        self._camera: NDArray[np.int32] = np.empty(0, dtype=np.int32)
        self._integers: dict[str, NDArray[np.int64]] = {n: np.empty(0, np.int64) for n in _INTEGER_FIELDS}
        self._floats: dict[str, NDArray[np.float64]] = {n: np.empty(0, np.float64) for n in _FLOAT_FIELDS}

    @property
    def capacity(self) -> int:
        return int(self._camera.size)

    def write(self, rows: NDArray[np.int64], records: Sequence[Record]) -> None:
        """Set ``rows`` to ``records`` (``record(entry)`` tuples), growing the columns as needed."""
        if rows.size == 0:
            return
        needed = int(rows.max()) + 1
        if needed > self.capacity:
            self._grow(max(needed, 2 * self.capacity, 1024))
        codes = self._codes
        cameras, *values = zip(*records, strict=True)
        self._camera[rows] = [codes.setdefault(camera, len(codes)) for camera in cameras]
        for column, column_values in zip(self._columns(), values, strict=True):
            column[rows] = column_values

    def keep(self, rows: NDArray[np.int64]) -> None:
        """Move ``rows`` (ascending) to the front, in order: the rows of a compaction."""
        self._camera[: rows.size] = self._camera[rows]
        for column in self._columns():
            column[: rows.size] = column[rows]

    def mask(self, filter: Filter, size: int) -> NDArray[np.bool_]:
        """Which of the first ``size`` rows match ``filter`` (``Filter.matches`` semantics)."""
        allowed = np.ones(size, dtype=bool)
        if filter.cameras is not None:
            allowed &= np.isin(self._camera[:size], self._camera_codes(filter.cameras))
        if filter.classes is not None:
            allowed &= np.isin(self._integers["class_id"][:size], np.fromiter(filter.classes, np.int64))
        if filter.time_range is not None:
            start, end = filter.time_range
            allowed &= self._floats["t_end"][:size] >= start
            allowed &= self._floats["t_start"][:size] <= end
        for name, value in filter.equals.items():
            if name == "camera_id":
                if not isinstance(value, str) or value not in self._codes:
                    return np.zeros(size, dtype=bool)
                allowed &= self._camera[:size] == self._codes[value]
                continue
            if isinstance(value, str) or math.isnan(float(value)):
                return np.zeros(size, dtype=bool)
            column = self._integers.get(name)
            values = column if column is not None else self._floats[name]
            allowed &= values[:size] == value
        return allowed

    def _columns(self) -> list[NDArray[np.int64] | NDArray[np.float64]]:
        return [*self._integers.values(), *self._floats.values()]

    def _camera_codes(self, cameras: frozenset[str]) -> NDArray[np.int32]:
        return np.array([self._codes[c] for c in cameras if c in self._codes], dtype=np.int32)

    def _grow(self, capacity: int) -> None:
        self._camera = np.resize(self._camera, capacity)
        self._integers = {name: np.resize(column, capacity) for name, column in self._integers.items()}
        self._floats = {name: np.resize(column, capacity) for name, column in self._floats.items()}
