"""VATIC annotation rows: ``track_id xmin ymin xmax ymax frame lost occluded generated "label"``.

The text dump of the VATIC video annotation tool, as used by the UCLA multi-view datasets
(CAMPUS: auditorium, garden, parking lot). Space separated, the label quoted; VATIC may
append quoted attributes after the label, which are ignored. Frames count from 0, and every
track has a row in every frame between its first and last keyframe:

- ``lost = 1``: the object is not visible (out of view, or hidden); the box is a stale copy,
- ``occluded = 1``: visible but partly hidden,
- ``generated = 1``: interpolated between the annotator's keyframes, not drawn by hand.

``read_vatic_views`` joins the ``view-*.txt`` files of one scene into an ``MtmcTable``; in the
UCLA datasets a track id names the same person in every view ("we assign an unique ID for
each object", README), so the track id is the global id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from crossview.io.formats._errors import FormatError
from crossview.io.formats._text import raise_first_non_number, read_text
from crossview.io.formats.mot import MotTable
from crossview.io.formats.mtmc import MtmcTable

NUMERIC_COLUMNS = 9
VATIC_FRAME_BASE = 0  # VATIC numbers frames from 0; MOTChallenge from 1
VIEW_PREFIX = "view-"


@dataclass(frozen=True, eq=False, slots=True)
class VaticTable:
    """All rows of one VATIC file, columnar and in file order; ``frame`` as written in the file."""

    track_id: NDArray[np.int64]
    xyxy: NDArray[np.float64]
    frame: NDArray[np.int64]
    lost: NDArray[np.bool_]
    occluded: NDArray[np.bool_]
    generated: NDArray[np.bool_]
    label: NDArray[np.str_]

    def __post_init__(self) -> None:
        n = self.track_id.shape[0]
        for name in ("xyxy", "frame", "lost", "occluded", "generated", "label"):
            rows = getattr(self, name).shape[0]
            if rows != n:
                raise ValueError(f"VaticTable.{name} has {rows} rows, expected {n}")
        if self.xyxy.ndim != 2 or self.xyxy.shape[1] != 4:
            raise ValueError(f"VaticTable.xyxy must have shape (N, 4), got {self.xyxy.shape}")

    def __len__(self) -> int:
        return int(self.track_id.shape[0])

    def __getitem__(self, rows: NDArray[np.bool_] | NDArray[np.int64] | slice) -> VaticTable:
        return VaticTable(
            self.track_id[rows],
            self.xyxy[rows],
            self.frame[rows],
            self.lost[rows],
            self.occluded[rows],
            self.generated[rows],
            self.label[rows],
        )

    @property
    def xywh(self) -> NDArray[np.float64]:
        """Boxes as ``(x, y, w, h)`` with ``w = xmax - xmin``, ``h = ymax - ymin``."""
        return np.column_stack([self.xyxy[:, :2], self.xyxy[:, 2:] - self.xyxy[:, :2]])


def read_vatic(path: str | Path) -> VaticTable:
    """Read a VATIC text dump.

    An empty file is a valid table. A malformed line (fewer than 10 fields, a non-number in
    the first 9, fractional ids or frames, flags other than 0/1, ``xmax < xmin``) raises
    ``FormatError`` naming the file and line.
    """
    path = Path(path)
    text = read_text(path)
    lines = text.splitlines()
    numbers: list[int] = []
    values: list[list[str]] = []
    labels: list[str] = []
    for number, line in enumerate(lines, start=1):
        fields = line.split(None, NUMERIC_COLUMNS)
        if not fields:
            continue
        if len(fields) <= NUMERIC_COLUMNS:
            raise FormatError(path, f"expected 9 numbers and a label, found {len(fields)} fields", number)
        numbers.append(number)
        values.append(fields[:NUMERIC_COLUMNS])
        labels.append(_label(fields[NUMERIC_COLUMNS]))
    array = _numbers(lines, values, numbers, path)
    _validate(array, numbers, path)
    return VaticTable(
        track_id=array[:, 0].astype(np.int64),
        xyxy=np.ascontiguousarray(array[:, 1:5]),
        frame=array[:, 5].astype(np.int64),
        lost=array[:, 6] == 1,
        occluded=array[:, 7] == 1,
        generated=array[:, 8] == 1,
        label=np.array(labels, dtype=np.str_).reshape(-1),
    )


def _label(rest: str) -> str:
    """The first (quoted) string of the label field; trailing quoted attributes are dropped."""
    rest = rest.strip()
    if rest.startswith('"'):
        end = rest.find('"', 1)
        return rest[1:end] if end > 0 else rest[1:]
    return rest.split()[0]


def _numbers(
    lines: list[str], values: list[list[str]], numbers: list[int], path: Path
) -> NDArray[np.float64]:
    """The numeric columns; numpy's C parser first (fast), Python's only to name a bad line."""
    if not values:
        return np.zeros((0, NUMERIC_COLUMNS))
    try:
        array: NDArray[np.float64] = np.loadtxt(
            lines, dtype=np.float64, usecols=range(NUMERIC_COLUMNS), ndmin=2, quotechar='"', comments=None
        )
    except ValueError:
        raise_first_non_number(values, numbers, path)
        raise
    return array


def _validate(array: NDArray[np.float64], numbers: list[int], path: Path) -> None:
    finite = np.asarray(np.isfinite(array).all(axis=1), dtype=np.bool_)
    whole = np.asarray((array[:, [0, 5]] == np.round(array[:, [0, 5]])).all(axis=1), dtype=np.bool_)
    whole &= array[:, 5] >= 0
    flags = np.asarray(np.isin(array[:, 6:9], (0.0, 1.0)).all(axis=1), dtype=np.bool_)
    ordered = (array[:, 3] >= array[:, 1]) & (array[:, 4] >= array[:, 2])
    bad = ~(finite & whole & flags & ordered)
    if not bad.any():
        return
    row = int(np.flatnonzero(bad)[0])
    values = array[row]
    if not finite[row]:
        reason = f"non-finite value: {values.tolist()}"
    elif not whole[row]:
        reason = f"track id and frame must be whole numbers (frame >= 0), got {values[0]:g} and {values[5]:g}"
    elif not flags[row]:
        reason = f"lost/occluded/generated must be 0 or 1, got {values[6:9].tolist()}"
    else:
        reason = f"box has xmax < xmin or ymax < ymin: {values[1:5].tolist()}"
    raise FormatError(path, reason, numbers[row])


def vatic_to_mot(
    table: VaticTable,
    *,
    frame_base: int = VATIC_FRAME_BASE,
    keep_lost: bool = False,
    labels: Sequence[str] | None = None,
) -> MotTable:
    """Rows as a MOTChallenge ground-truth table (1-based frames), in file order.

    ``frame_base`` is the file's first frame number (0 for VATIC). ``lost`` rows are dropped
    unless ``keep_lost``: the object is not visible there and the box is stale. ``labels``
    keeps only those labels (case-insensitive). The consider flag is 1 and the class 1;
    visibility is 1 for unoccluded rows and -1 ("not known") for occluded ones, since VATIC
    records only whether an object is occluded, not how much.
    """
    keep = np.ones(len(table), bool) if keep_lost else ~table.lost
    if labels is not None:
        wanted = np.array([label.lower() for label in labels], dtype=np.str_)
        keep &= np.isin(np.char.lower(table.label), wanted)
    rows = table[keep]
    if len(rows) and int(rows.frame.min()) < frame_base:
        raise ValueError(f"frame {int(rows.frame.min())} is below frame_base {frame_base}")
    n = len(rows)
    visibility = np.where(rows.occluded, -1.0, 1.0)
    return MotTable(
        frame=rows.frame - frame_base + 1,
        track_id=rows.track_id.copy(),
        xywh=rows.xywh,
        score=np.ones(n),
        extra=np.column_stack([np.ones(n), visibility, np.full(n, -1.0)]),
    )


def read_vatic_views(
    folder: str | Path,
    *,
    pattern: str = f"{VIEW_PREFIX}*.txt",
    frame_base: int = VATIC_FRAME_BASE,
    keep_lost: bool = False,
    labels: Sequence[str] | None = None,
) -> MtmcTable:
    """Every view file of a scene as one multi-camera table, the VATIC track id as global id.

    The camera name is the file stem without ``view-`` (``view-HC3.txt`` → ``HC3``). Frames
    become 1-based; ``keep_lost`` and ``labels`` as in ``vatic_to_mot``. World positions are
    unknown (``NaN``). For the UCLA auditorium scene the cameras are ``HC3, HC4, IP2, IP5``.
    """
    root = Path(folder)
    files = sorted(root.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no VATIC view files matching {pattern!r} in {root}")
    tables: dict[str, MotTable] = {}
    for file in files:
        name = file.stem.removeprefix(VIEW_PREFIX)
        tables[name] = vatic_to_mot(
            read_vatic(file), frame_base=frame_base, keep_lost=keep_lost, labels=labels
        )
    return MtmcTable.from_mot_tables(tables)
