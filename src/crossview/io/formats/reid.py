"""Re-identification manifests: one image per row, with identity, camera and role.

A manifest is a CSV file with the header ``path,pid,camid,role`` (columns in any order; extra
columns are ignored). ``path`` is relative to the manifest's folder (an absolute path is kept as
it is), ``pid`` and ``camid`` are integers and ``role`` is ``query`` or ``gallery``::

    path,pid,camid,role
    images/0002_c1s1_000451_03.jpg,2,1,query
    images/0002_c1s1_000551_01.jpg,2,1,gallery

The reader keeps the path strings as written (``ReidManifest.paths``) and resolves them against
the manifest's folder (``ReidManifest.files``, absolute). The writer writes paths relative to the
folder of the file it writes, so a manifest can be moved together with its images.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from crossview.io.formats._errors import FormatError
from crossview.io.formats._text import read_text

COLUMNS: Final = ("path", "pid", "camid", "role")
ROLES: Final = ("query", "gallery")

_INTEGER = re.compile(r"[+-]?[0-9]+")
_MISSING_NAMES_SHOWN = 5


def _string_column(name: str, values: ArrayLike, n: int | None) -> NDArray[np.str_]:
    array = np.asarray(values, dtype=np.str_)
    if array.ndim != 1:
        raise ValueError(f"ReidManifest.{name} must have shape (N,), got {array.shape}")
    if n is not None and array.shape[0] != n:
        raise ValueError(f"ReidManifest.{name} has {array.shape[0]} rows, expected {n} (rows of paths)")
    return array


def _integer_column(name: str, values: ArrayLike, n: int) -> NDArray[np.int64]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"ReidManifest.{name} must have shape (N,), got {array.shape}")
    if array.shape[0] != n:
        raise ValueError(f"ReidManifest.{name} has {array.shape[0]} rows, expected {n} (rows of paths)")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"ReidManifest.{name} must hold integers, got {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.int64)


@dataclass(frozen=True, eq=False, slots=True)
class ReidManifest:
    """The rows of a re-identification manifest as aligned columns, in file order.

    ``paths`` are the strings as written in the file; ``files`` are the same paths resolved to
    absolute ones. ``roles`` holds ``"query"`` or ``"gallery"`` per row; ``query`` and ``gallery``
    select those rows.

    >>> m = ReidManifest.from_columns(["a.jpg", "b.jpg"], [7, 7], [1, 2], ["query", "gallery"], root="/data")
    >>> m.query.files.tolist(), m.gallery.camids.tolist()
    (['/data/a.jpg'], [2])
    """

    paths: NDArray[np.str_]
    files: NDArray[np.str_]
    pids: NDArray[np.int64]
    camids: NDArray[np.int64]
    roles: NDArray[np.str_]

    def __post_init__(self) -> None:
        paths = _string_column("paths", self.paths, None)
        n = paths.shape[0]
        roles = _string_column("roles", self.roles, n)
        unknown = ~np.isin(roles, ROLES)
        if unknown.any():
            raise ValueError(f"ReidManifest.roles must be one of {ROLES}, got {roles[unknown][0]!r}")
        object.__setattr__(self, "paths", paths)
        object.__setattr__(self, "files", _string_column("files", self.files, n))
        object.__setattr__(self, "pids", _integer_column("pids", self.pids, n))
        object.__setattr__(self, "camids", _integer_column("camids", self.camids, n))
        object.__setattr__(self, "roles", roles)

    @classmethod
    def from_columns(
        cls,
        paths: ArrayLike,
        pids: ArrayLike,
        camids: ArrayLike,
        roles: ArrayLike,
        *,
        root: str | Path | None = None,
    ) -> Self:
        """Build from columns, resolving ``paths`` against ``root`` (the working directory by default)."""
        written = _string_column("paths", paths, None)
        base = Path(root) if root is not None else Path.cwd()
        files = np.asarray([os.path.abspath(base / path) for path in written.tolist()], dtype=np.str_)
        n = written.shape[0]
        return cls(
            paths=written,
            files=files.reshape(n),
            pids=_integer_column("pids", pids, n),
            camids=_integer_column("camids", camids, n),
            roles=_string_column("roles", roles, n),
        )

    @classmethod
    def empty(cls) -> Self:
        return cls.from_columns(np.zeros(0, np.str_), np.zeros(0, np.int64), np.zeros(0, np.int64), [])

    def __len__(self) -> int:
        return int(self.paths.shape[0])

    def __getitem__(self, rows: NDArray[np.bool_] | NDArray[np.integer[Any]] | slice) -> ReidManifest:
        return ReidManifest(
            paths=self.paths[rows],
            files=self.files[rows],
            pids=self.pids[rows],
            camids=self.camids[rows],
            roles=self.roles[rows],
        )

    @property
    def is_query(self) -> NDArray[np.bool_]:
        """``True`` for query rows."""
        return np.asarray(self.roles == "query", dtype=np.bool_)

    @property
    def query(self) -> ReidManifest:
        """The query rows, in file order."""
        return self[self.is_query]

    @property
    def gallery(self) -> ReidManifest:
        """The gallery rows, in file order."""
        return self[~self.is_query]


def read_reid_manifest(path: str | Path, *, check_files: bool = False) -> ReidManifest:
    """Read a re-identification manifest CSV.

    Blank lines are skipped. A missing header column, a row with too few fields, an empty path,
    a non-integer ``pid`` or ``camid`` or an unknown role raises ``FormatError`` naming the file and
    line. With ``check_files=True`` image files that do not exist are reported too (the first few by
    name, with the line of the first one and the total count).
    """
    path = Path(path)
    text = read_text(path, encoding="utf-8-sig", expected="CSV")

    reader = csv.reader(text.splitlines())
    header: list[str] | None = None
    for fields in reader:
        if any(field.strip() for field in fields):
            header = [field.strip() for field in fields]
            break
    if header is None:
        raise FormatError(path, f"empty file: expected the header {','.join(COLUMNS)}")
    header_line = reader.line_num
    missing = [name for name in COLUMNS if name not in header]
    if missing:
        raise FormatError(
            path, f"header lacks column(s) {', '.join(missing)}; found {','.join(header)}", header_line
        )
    where = [header.index(name) for name in COLUMNS]
    width = max(where) + 1

    paths: list[str] = []
    pids: list[int] = []
    camids: list[int] = []
    roles: list[str] = []
    lines: list[int] = []
    for fields in reader:
        if not any(field.strip() for field in fields):
            continue
        line = reader.line_num
        if len(fields) < width:
            raise FormatError(
                path, f"expected {len(header)} fields like the header, found {len(fields)}", line
            )
        image, pid, camid, role = (fields[index].strip() for index in where)
        if not image:
            raise FormatError(path, "empty path", line)
        paths.append(image)
        pids.append(_parse_integer(pid, "pid", path, line))
        camids.append(_parse_integer(camid, "camid", path, line))
        if role not in ROLES:
            raise FormatError(path, f"role must be 'query' or 'gallery', got {role!r}", line)
        roles.append(role)
        lines.append(line)

    manifest = ReidManifest.from_columns(
        np.asarray(paths, dtype=np.str_),
        np.asarray(pids, dtype=np.int64),
        np.asarray(camids, dtype=np.int64),
        np.asarray(roles, dtype=np.str_),
        root=path.parent,
    )
    if check_files:
        _check_files(manifest, lines, path)
    return manifest


def _parse_integer(value: str, name: str, path: Path, line: int) -> int:
    if not _INTEGER.fullmatch(value):
        raise FormatError(path, f"{name} is not an integer: {value!r}", line)
    return int(value)


def _check_files(manifest: ReidManifest, lines: list[int], path: Path) -> None:
    absent = [index for index, file in enumerate(manifest.files.tolist()) if not os.path.isfile(file)]
    if not absent:
        return
    names = ", ".join(str(manifest.paths[index]) for index in absent[:_MISSING_NAMES_SHOWN])
    more = f" and {len(absent) - _MISSING_NAMES_SHOWN} more" if len(absent) > _MISSING_NAMES_SHOWN else ""
    count = f"{len(absent)} image file{'s' if len(absent) > 1 else ''}"
    raise FormatError(path, f"{count} missing: {names}{more}", lines[absent[0]])


def write_reid_manifest(path: str | Path, manifest: ReidManifest) -> None:
    """Write a manifest with the header ``path,pid,camid,role``, rows in manifest order.

    Paths are written relative to the folder of ``path`` (from ``manifest.files``) with ``/`` as
    separator, so reading the written file gives back the same ``files``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = os.path.abspath(path.parent)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for file, pid, camid, role in zip(
            manifest.files.tolist(),
            manifest.pids.tolist(),
            manifest.camids.tolist(),
            manifest.roles.tolist(),
            strict=True,
        ):
            relative = Path(os.path.relpath(file, folder)).as_posix()
            writer.writerow((relative, pid, camid, role))
