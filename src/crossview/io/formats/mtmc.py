"""AI City style multi-camera (MTMC) rows: ``camera_id obj_id frame x y w h xworld yworld``.

One row per box, whitespace separated. ``camera_id`` is a token (``41`` or ``c041``),
``obj_id`` the *global* identity shared by every camera that sees the object, ``frame`` is
1-based as in MOTChallenge, ``x y w h`` the box in pixels and ``xworld yworld`` the
ground-plane position, ``-1 -1`` when not known.

>>> table = MtmcTable.from_rows(["c001", "c002"], [[7, 1, 10, 20, 30, 60, -1, -1]] * 2)
>>> table.cameras()
('c001', 'c002')
>>> table.for_camera("c002").track_id.tolist()
[7]
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from crossview.io.formats._errors import FormatError
from crossview.io.formats._text import format_number, raise_first_non_number, read_text
from crossview.io.formats.mot import MotTable

COLUMNS = 9
UNKNOWN_WORLD = -1.0  # the file's marker for "no ground-plane position"
PEDESTRIAN_CLASS = 1  # MOTChallenge class written into per-camera tables (see ``for_camera``)

CameraKey = str | int
# Mapping is invariant in its key type, so "str or int keys" is spelt as a union of mappings.
CameraTables = Mapping[str, MotTable] | Mapping[int, MotTable]
CameraArrays = Mapping[str, ArrayLike] | Mapping[int, ArrayLike]


def camera_name(camera: CameraKey) -> str:
    """The canonical name of a camera token: whole numbers lose leading zeros (``"007"`` → ``"7"``).

    So ``41``, ``"41"`` and ``"041"`` name the same camera, while ``"c041"`` stays as written.
    """
    text = str(camera).strip()
    if not text:
        raise ValueError("camera name must not be empty")
    if re.fullmatch(r"[+-]?\d+", text):
        return str(int(text))
    return text


def _natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders ``c2`` before ``c10`` and numbers before words."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.findall(r"\d+|\D+", name))


def _all_columns(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Rows of a 2-D mask that are true in every column."""
    return np.asarray(mask.all(axis=1), dtype=np.bool_)


def sorted_cameras(cameras: Iterable[CameraKey]) -> tuple[str, ...]:
    """Canonical camera names, unique and in natural order (``c2`` before ``c10``)."""
    return tuple(sorted({camera_name(camera) for camera in cameras}, key=_natural_key))


@dataclass(frozen=True, eq=False, slots=True)
class MtmcTable:
    """Multi-camera rows, columnar and in file order.

    ``camera`` holds indices into ``camera_names`` (canonical names, naturally sorted; a
    camera may be named with no rows). ``world_xy`` is ``NaN`` where the position is unknown
    (``-1 -1`` in the file).
    """

    camera: NDArray[np.int64]
    camera_names: tuple[str, ...]
    obj_id: NDArray[np.int64]
    frame: NDArray[np.int64]
    xywh: NDArray[np.float64]
    world_xy: NDArray[np.float64]

    def __post_init__(self) -> None:
        n = self.camera.shape[0]
        for name in ("obj_id", "frame", "xywh", "world_xy"):
            rows = getattr(self, name).shape[0]
            if rows != n:
                raise ValueError(f"MtmcTable.{name} has {rows} rows, expected {n}")
        if self.xywh.ndim != 2 or self.xywh.shape[1] != 4:
            raise ValueError(f"MtmcTable.xywh must have shape (N, 4), got {self.xywh.shape}")
        if self.world_xy.ndim != 2 or self.world_xy.shape[1] != 2:
            raise ValueError(f"MtmcTable.world_xy must have shape (N, 2), got {self.world_xy.shape}")
        if len(set(self.camera_names)) != len(self.camera_names):
            raise ValueError(f"MtmcTable.camera_names has duplicates: {self.camera_names}")
        if n and (self.camera.min() < 0 or self.camera.max() >= len(self.camera_names)):
            raise ValueError(f"MtmcTable.camera indices must lie in 0..{len(self.camera_names) - 1}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_rows(cls, cameras: Sequence[CameraKey], rows: ArrayLike) -> Self:
        """From one camera token per row and an ``(N, 8)`` array ``obj_id frame x y w h xw yw``.

        World coordinates equal to ``-1, -1`` become ``NaN`` (unknown).
        """
        array = np.asarray(rows, dtype=np.float64)
        if array.size == 0:
            array = array.reshape(0, COLUMNS - 1)
        if array.ndim != 2 or array.shape[1] != COLUMNS - 1:
            raise ValueError(f"MTMC rows must have shape (N, {COLUMNS - 1}), got {array.shape}")
        if len(cameras) != array.shape[0]:
            raise ValueError(f"{len(cameras)} camera tokens for {array.shape[0]} rows")
        names = [camera_name(camera) for camera in cameras]
        unique = sorted_cameras(names)
        index = {name: i for i, name in enumerate(unique)}
        world = array[:, 6:8].copy()
        world[_all_columns(world == UNKNOWN_WORLD)] = np.nan
        return cls(
            camera=np.fromiter((index[name] for name in names), np.int64, count=len(names)),
            camera_names=tuple(unique),
            obj_id=array[:, 0].astype(np.int64),
            frame=array[:, 1].astype(np.int64),
            xywh=np.ascontiguousarray(array[:, 2:6]),
            world_xy=world,
        )

    @classmethod
    def empty(cls, cameras: Sequence[CameraKey] = ()) -> Self:
        """No rows; ``cameras`` are still named (a camera that saw nothing)."""
        return cls(
            camera=np.zeros(0, np.int64),
            camera_names=sorted_cameras(cameras),
            obj_id=np.zeros(0, np.int64),
            frame=np.zeros(0, np.int64),
            xywh=np.zeros((0, 4)),
            world_xy=np.zeros((0, 2)),
        )

    @classmethod
    def from_mot_tables(
        cls,
        tables: CameraTables,
        world_xy: CameraArrays | None = None,
    ) -> Self:
        """Join per-camera tables whose ``track_id`` already is the global id.

        Every key becomes a camera name, even one whose table is empty. ``world_xy`` optionally
        gives each camera's ``(N, 2)`` ground-plane positions, row-aligned with its table
        (``NaN`` or ``-1, -1`` for unknown); by default every position is unknown.

        >>> rows = MotTable.from_array([[1, 5, 0, 0, 10, 10, 1]])
        >>> MtmcTable.from_mot_tables({"c2": rows, "c10": rows}).cameras()
        ('c2', 'c10')
        """
        by_name: dict[str, MotTable] = {camera_name(key): table for key, table in tables.items()}
        if len(by_name) != len(tables):
            raise ValueError(f"camera keys name the same camera twice: {list(tables)}")
        ordered = sorted_cameras(by_name)
        world_by_name: dict[str, ArrayLike] = {
            camera_name(key): value for key, value in (world_xy or {}).items()
        }
        unknown = set(world_by_name) - set(by_name)
        if unknown:
            raise ValueError(f"world_xy given for cameras with no table: {sorted(unknown)}")
        parts_world = []
        for name in ordered:
            table = by_name[name]
            if name in world_by_name:
                world = np.asarray(world_by_name[name], dtype=np.float64).reshape(-1, 2).copy()
                if world.shape[0] != len(table):
                    raise ValueError(
                        f"world_xy for camera {name} has {world.shape[0]} rows, table has {len(table)}"
                    )
                world[_all_columns(world == UNKNOWN_WORLD)] = np.nan
            else:
                world = np.full((len(table), 2), np.nan)
            parts_world.append(world)
        parts = [by_name[name] for name in ordered]
        counts = [len(table) for table in parts]
        return cls(
            camera=np.repeat(np.arange(len(ordered), dtype=np.int64), counts),
            camera_names=tuple(ordered),
            obj_id=np.concatenate([np.zeros(0, np.int64), *(t.track_id for t in parts)]).astype(np.int64),
            frame=np.concatenate([np.zeros(0, np.int64), *(t.frame for t in parts)]).astype(np.int64),
            xywh=np.concatenate([np.zeros((0, 4)), *(t.xywh for t in parts)]),
            world_xy=np.concatenate([np.zeros((0, 2)), *parts_world]),
        )

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return int(self.camera.shape[0])

    def __getitem__(self, rows: NDArray[np.bool_] | NDArray[np.int64] | slice) -> MtmcTable:
        """Selected rows; every camera stays named."""
        return MtmcTable(
            self.camera[rows],
            self.camera_names,
            self.obj_id[rows],
            self.frame[rows],
            self.xywh[rows],
            self.world_xy[rows],
        )

    def cameras(self) -> tuple[str, ...]:
        """Camera names, naturally sorted (``c2`` before ``c10``), including cameras with no rows."""
        return self.camera_names

    def camera_of_rows(self) -> NDArray[np.str_]:
        """Each row's camera name."""
        return (
            np.asarray(self.camera_names, dtype=np.str_)[self.camera] if len(self) else np.zeros(0, np.str_)
        )

    def rows_of(self, camera: CameraKey) -> NDArray[np.bool_]:
        """Boolean mask of ``camera``'s rows; ``KeyError`` for a camera the table does not name."""
        name = camera_name(camera)
        try:
            index = self.camera_names.index(name)
        except ValueError:
            raise KeyError(f"no camera {name!r}; cameras are {list(self.camera_names)}") from None
        mask: NDArray[np.bool_] = self.camera == index
        return mask

    def for_camera(self, camera: CameraKey) -> MotTable:
        """``camera``'s rows as a MOTChallenge ground-truth style table, in file order.

        The global id goes to ``track_id``; the "consider" flag (``score``) is 1 and
        ``extra`` is ``class 1, visibility 1, -1``, so every row counts under any protocol.
        """
        rows = self.rows_of(camera)
        n = int(rows.sum())
        extra = np.column_stack([np.full(n, float(PEDESTRIAN_CLASS)), np.ones(n), np.full(n, -1.0)])
        return MotTable(
            frame=self.frame[rows].copy(),
            track_id=self.obj_id[rows].copy(),
            xywh=self.xywh[rows].copy(),
            score=np.ones(n),
            extra=extra,
        )

    def to_mot_tables(self) -> dict[str, MotTable]:
        """Every camera's ``for_camera`` table, by name."""
        return {name: self.for_camera(name) for name in self.camera_names}

    @property
    def world_known(self) -> NDArray[np.bool_]:
        """Rows with a ground-plane position."""
        return _all_columns(np.isfinite(self.world_xy))

    def world_for_camera(self, camera: CameraKey) -> NDArray[np.float64]:
        """``camera``'s ground-plane positions ``(N, 2)``, row-aligned with ``for_camera(camera)``."""
        return self.world_xy[self.rows_of(camera)]

    def foot_points(self) -> NDArray[np.float64]:
        """Bottom-centre of each box ``(N, 2)`` in pixels: the image point a homography maps to the ground."""
        return np.column_stack([self.xywh[:, 0] + self.xywh[:, 2] / 2, self.xywh[:, 1] + self.xywh[:, 3]])

    def to_array(self) -> NDArray[np.float64]:
        """The ``(N, 8)`` numeric columns after the camera, unknown world positions as ``-1``."""
        world = np.where(np.isfinite(self.world_xy), self.world_xy, UNKNOWN_WORLD)
        return np.column_stack([self.obj_id, self.frame, self.xywh, world]).astype(np.float64)


# ---------------------------------------------------------------------------------- reading
def read_mtmc(path: str | Path) -> MtmcTable:
    """Read ``camera_id obj_id frame x y w h xworld yworld`` rows (whitespace or commas).

    ``#`` starts a comment; an empty file is a valid table with no rows. A malformed line
    (not 9 columns, a non-number after the camera, a fractional id or frame, a frame below 1,
    a non-finite value) raises ``FormatError`` naming the file and line.
    """
    path = Path(path)
    text = read_text(path)
    numbers: list[int] = []
    cameras: list[str] = []
    values: list[list[str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].replace(",", " ").split()
        if not content:
            continue
        if len(content) != COLUMNS:
            raise FormatError(path, f"expected {COLUMNS} columns, found {len(content)}", number)
        numbers.append(number)
        cameras.append(content[0])
        values.append(content[1:])
    try:
        array = np.array(values, dtype=np.float64).reshape(-1, COLUMNS - 1)
    except ValueError:
        raise_first_non_number(values, numbers, path, first_column=2)
        raise
    _validate(array, numbers, path)
    try:
        return MtmcTable.from_rows(cameras, array)
    except ValueError as error:  # an empty camera token cannot occur after split(); kept for safety
        raise FormatError(path, str(error)) from error


def _validate(array: NDArray[np.float64], numbers: list[int], path: Path) -> None:
    finite = _all_columns(np.isfinite(array))
    whole = (array[:, 0] == np.round(array[:, 0])) & (array[:, 1] == np.round(array[:, 1]))
    bad = ~finite | ~whole | (array[:, 1] < 1)
    if not bad.any():
        return
    row = int(np.flatnonzero(bad)[0])
    values = array[row]
    if not finite[row]:
        reason = f"non-finite value: {values.tolist()}"
    elif values[0] != round(values[0]):
        reason = f"obj_id must be a whole number, got {values[0]:g}"
    else:
        reason = f"frame must be a whole number >= 1, got {values[1]:g}"
    raise FormatError(path, reason, numbers[row])


def write_mtmc(path: str | Path, table: MtmcTable) -> None:
    """Write rows space separated, sorted by camera, frame and id; unknown world positions as ``-1``."""
    array = table.to_array()
    order = np.lexsort((table.obj_id, table.frame, table.camera))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        for row, camera in zip(array[order], table.camera[order].tolist(), strict=True):
            numbers = " ".join(format_number(value) for value in row[2:])
            handle.write(f"{table.camera_names[camera]} {int(row[0])} {int(row[1])} {numbers}\n")
