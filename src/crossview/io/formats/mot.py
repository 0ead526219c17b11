"""MOTChallenge text files: ground truth, detections and tracker results, and ``seqinfo.ini``.

Rows are ``frame,id,x,y,w,h,score[,c7,c8,c9]`` with 1-based frames. Column 6 is the detection
confidence in detection and result files and the "consider" flag (0 = ignore) in ground truth;
columns 7 and 8 are class and visibility in ground truth and world ``x, y`` elsewhere.
``MotTable`` keeps whatever columns a file has beyond the sixth in ``extra`` and names them by role.
"""

from __future__ import annotations

import configparser
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from crossview.core.detections import Detections
from crossview.io.formats._errors import FormatError
from crossview.io.formats._text import format_number, raise_first_non_number, read_text

MIN_COLUMNS = 6


@dataclass(frozen=True, eq=False, slots=True)
class MotTable:
    """All rows of one MOTChallenge file, columnar and in file order.

    ``extra`` holds columns 7 and beyond (``(N, E)``, ``E`` may be 0).
    """

    frame: NDArray[np.int64]
    track_id: NDArray[np.int64]
    xywh: NDArray[np.float64]
    score: NDArray[np.float64]
    extra: NDArray[np.float64]

    def __post_init__(self) -> None:
        n = self.frame.shape[0]
        for name in ("track_id", "xywh", "score", "extra"):
            if getattr(self, name).shape[0] != n:
                raise ValueError(f"MotTable.{name} has {getattr(self, name).shape[0]} rows, expected {n}")
        if self.xywh.ndim != 2 or self.xywh.shape[1] != 4:
            raise ValueError(f"MotTable.xywh must have shape (N, 4), got {self.xywh.shape}")

    @classmethod
    def from_array(cls, rows: ArrayLike) -> Self:
        """From an ``(N, C)`` numeric array laid out as the file's columns (``C >= 6``)."""
        array = np.asarray(rows, dtype=np.float64)
        if array.size == 0:
            array = array.reshape(0, max(MIN_COLUMNS, array.shape[-1] if array.ndim == 2 else 0))
        if array.ndim != 2 or array.shape[1] < MIN_COLUMNS:
            raise ValueError(f"MOT rows must have shape (N, >=6), got {array.shape}")
        score = array[:, 6] if array.shape[1] > 6 else np.ones(array.shape[0])
        return cls(
            frame=array[:, 0].astype(np.int64),
            track_id=array[:, 1].astype(np.int64),
            xywh=np.ascontiguousarray(array[:, 2:6]),
            score=np.ascontiguousarray(score),
            extra=np.ascontiguousarray(array[:, 7:]),
        )

    @classmethod
    def empty(cls) -> Self:
        return cls.from_array(np.zeros((0, 10)))

    @classmethod
    def concatenate(cls, parts: Sequence[MotTable]) -> Self:
        """Rows of several tables, in order (an empty table for no parts)."""
        if not parts:
            return cls.empty()
        return cls(
            frame=np.concatenate([p.frame for p in parts]),
            track_id=np.concatenate([p.track_id for p in parts]),
            xywh=np.concatenate([p.xywh for p in parts]),
            score=np.concatenate([p.score for p in parts]),
            extra=np.concatenate([p.extra for p in parts]),
        )

    def __len__(self) -> int:
        return int(self.frame.shape[0])

    def __getitem__(self, rows: NDArray[np.bool_] | NDArray[np.int64] | slice) -> MotTable:
        return MotTable(
            self.frame[rows], self.track_id[rows], self.xywh[rows], self.score[rows], self.extra[rows]
        )

    @property
    def class_id(self) -> NDArray[np.int64]:
        """Ground-truth class (column 7); ``-1`` where the file has no such column."""
        if self.extra.shape[1] < 1:
            return np.full(len(self), -1, np.int64)
        return self.extra[:, 0].astype(np.int64)

    @property
    def visibility(self) -> NDArray[np.float64]:
        """Ground-truth visibility ratio (column 8); ``-1`` where absent."""
        if self.extra.shape[1] < 2:
            return np.full(len(self), -1.0)
        return self.extra[:, 1]

    def to_array(self) -> NDArray[np.float64]:
        """The ``(N, 7 + E)`` array of the file's columns."""
        return np.column_stack([self.frame, self.track_id, self.xywh, self.score, self.extra]).astype(
            np.float64
        )

    def frames(self) -> Iterator[tuple[int, MotTable]]:
        """``(frame, rows)`` for each frame present, ascending, rows in file order."""
        order = np.argsort(self.frame, kind="stable")
        frames = self.frame[order]
        starts = np.flatnonzero(np.r_[True, frames[1:] != frames[:-1]]) if len(frames) else np.zeros(0, int)
        ends = np.r_[starts[1:], len(frames)]
        for start, end in zip(starts, ends, strict=True):
            yield int(frames[start]), self[order[start:end]]


def read_mot(path: str | Path) -> MotTable:
    """Read a MOTChallenge file (comma or whitespace separated).

    An empty file is a valid table with no rows. A malformed line (too few or inconsistent
    columns, a non-number, a non-finite box or a frame below 1) raises ``FormatError`` naming
    the file and line.
    """
    path = Path(path)
    text = read_text(path)
    rows = _parse_rows(text, path)
    table = MotTable.from_array(rows)
    _validate(table, rows, text, path)
    return table


def _parse_rows(text: str, path: Path) -> NDArray[np.float64]:
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), None)
    if first is None:
        return np.zeros((0, 10))
    delimiter = "," if "," in first else None
    try:
        rows = np.loadtxt(lines, delimiter=delimiter, dtype=np.float64, ndmin=2, comments="#")
    except ValueError:
        rows = None
    if rows is None or rows.shape[1] < MIN_COLUMNS:
        _raise_first_bad_line(lines, delimiter, path)
    assert rows is not None
    return rows


def _raise_first_bad_line(lines: list[str], delimiter: str | None, path: Path) -> None:
    expected: int | None = None
    for number, line in enumerate(lines, start=1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        fields = [field.strip() for field in content.split(delimiter)]
        if len(fields) < MIN_COLUMNS:
            raise FormatError(path, f"expected at least {MIN_COLUMNS} columns, found {len(fields)}", number)
        if expected is not None and len(fields) != expected:
            raise FormatError(
                path, f"expected {expected} columns like the lines before, found {len(fields)}", number
            )
        expected = len(fields)
        raise_first_non_number([fields], [number], path)
    raise FormatError(path, "could not parse the file as numeric rows")


def _validate(table: MotTable, rows: NDArray[np.float64], text: str, path: Path) -> None:
    bad = ~np.isfinite(rows[:, :6]).all(axis=1)
    bad |= rows[:, 0] < 1
    bad |= rows[:, 0] != np.round(rows[:, 0])
    bad |= rows[:, 1] != np.round(rows[:, 1])
    if not bad.any():
        return
    row = int(np.flatnonzero(bad)[0])
    number = _line_number_of_row(text, row)
    values = rows[row, :6]
    if not np.isfinite(values).all():
        reason = f"non-finite value in frame/id/box columns: {values.tolist()}"
    elif values[0] < 1 or values[0] != round(values[0]):
        reason = f"frame must be a whole number >= 1, got {values[0]:g}"
    else:
        reason = f"id must be a whole number, got {values[1]:g}"
    raise FormatError(path, reason, number)


def _line_number_of_row(text: str, row: int) -> int:
    seen = -1
    for number, line in enumerate(text.splitlines(), start=1):
        if line.split("#", 1)[0].strip():
            seen += 1
            if seen == row:
                return number
    return seen + 1


def write_mot(path: str | Path, table: MotTable, *, columns: int = 10) -> None:
    """Write rows in MOTChallenge layout, sorted by frame then id.

    ``columns`` (6 to 10) fixes the width: missing trailing columns are written as ``-1``
    (the MOTChallenge convention for "not given"), so result files have the customary 10.
    """
    if not MIN_COLUMNS <= columns <= 10:
        raise ValueError(f"columns must be between 6 and 10, got {columns}")
    array = table.to_array()
    if array.shape[1] < columns:
        array = np.hstack([array, np.full((len(array), columns - array.shape[1]), -1.0)])
    array = array[:, :columns]
    array = array[np.lexsort((array[:, 1], array[:, 0]))]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        for row in array:
            head = f"{int(row[0])},{int(row[1])}"
            tail = ",".join(format_number(value) for value in row[2:])
            handle.write(f"{head},{tail}\n")


# ------------------------------------------------------------------------------ detections
def detections_to_mot(detections: Detections, frame: int | None = None) -> MotTable:
    """Rows for one frame's detections.

    ``frame`` is the 1-based MOT frame number; by default ``detections.frame_index + 1``
    (``Frame.index`` counts from 0). Tracker ids go to the id column (``-1`` when untracked).
    """
    if frame is None:
        if detections.frame_index is None:
            raise ValueError("detections have no frame_index; pass the MOT frame number explicitly")
        frame = detections.frame_index + 1
    n = len(detections)
    return MotTable(
        frame=np.full(n, frame, np.int64),
        track_id=detections.tracker_id.astype(np.int64),
        xywh=detections.xywh.astype(np.float64),
        score=detections.confidence.astype(np.float64),
        extra=np.full((n, 3), -1.0),
    )


def mot_to_detections(table: MotTable, *, camera_id: str | None = None) -> Detections:
    """Rows of a single frame as ``Detections`` (ids become ``tracker_id``)."""
    frames = np.unique(table.frame)
    if len(frames) > 1:
        raise ValueError(f"rows span {len(frames)} frames; select one frame first (MotTable.frames())")
    frame_index = int(frames[0]) - 1 if len(frames) else None
    return Detections.from_xywh(
        table.xywh,
        confidence=table.score,
        tracker_id=table.track_id,
        camera_id=camera_id,
        frame_index=frame_index,
    )


# ------------------------------------------------------------------------------ seqinfo.ini
@dataclass(frozen=True, slots=True)
class SequenceInfo:
    """The ``[Sequence]`` section of a MOTChallenge ``seqinfo.ini``."""

    name: str
    length: int
    frame_rate: float = 30.0
    width: int | None = None
    height: int | None = None
    image_dir: str = "img1"
    image_ext: str = ".jpg"


def read_seqinfo(path: str | Path) -> SequenceInfo:
    """Read ``seqinfo.ini``; ``seqLength`` is required, the rest has MOTChallenge's defaults."""
    path = Path(path)
    parser = configparser.ConfigParser()
    try:
        with path.open() as handle:
            parser.read_file(handle)
    except OSError as error:
        raise FormatError(path, f"cannot read file: {error.strerror or error}") from error
    except configparser.Error as error:
        raise FormatError(path, f"not an ini file: {error}") from error
    if not parser.has_section("Sequence"):
        raise FormatError(path, "missing [Sequence] section")
    section = parser["Sequence"]

    def number(key: str, kind: type[int] | type[float], default: float | None) -> float | None:
        if key not in section:
            if default is None and key == "seqLength":
                raise FormatError(path, f"missing {key}")
            return default
        try:
            value = kind(section[key])
        except ValueError:
            raise FormatError(path, f"{key} is not a number: {section[key]!r}") from None
        if value <= 0:
            raise FormatError(path, f"{key} must be positive, got {value}")
        return value

    length = number("seqLength", int, None)
    width = number("imWidth", int, None)
    height = number("imHeight", int, None)
    return SequenceInfo(
        name=section.get("name", path.parent.name),
        length=int(length or 0),
        frame_rate=float(number("frameRate", float, 30.0) or 30.0),
        width=None if width is None else int(width),
        height=None if height is None else int(height),
        image_dir=section.get("imDir", "img1"),
        image_ext=section.get("imExt", ".jpg"),
    )


def write_seqinfo(path: str | Path, info: SequenceInfo) -> None:
    parser = configparser.ConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep MOTChallenge's camelCase keys
    section: dict[str, str] = {
        "name": info.name,
        "imDir": info.image_dir,
        "frameRate": f"{info.frame_rate:g}",
        "seqLength": str(info.length),
        "imExt": info.image_ext,
    }
    if info.width is not None:
        section["imWidth"] = str(info.width)
    if info.height is not None:
        section["imHeight"] = str(info.height)
    parser["Sequence"] = section
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        parser.write(handle, space_around_delimiters=False)
