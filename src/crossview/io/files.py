"""Private files and directories: data that must not be readable by other users of the machine.

A service's data directory holds camera frames waiting to be processed, appearance embeddings of
people, tracks and API key hashes. Its directory is made mode 0700 and its files 0600, whatever
the process's umask: the umask is process-global state that a library must not change, and one
the user may have left at 022. SQLite gives its ``-wal`` and ``-shm`` files the mode of the
database file, so creating the database file private first is enough for all three.

>>> import tempfile, stat
>>> scratch = tempfile.TemporaryDirectory()
>>> folder = private_directory(Path(scratch.name) / "data")
>>> database = private_file(folder / "x.sqlite")
>>> oct(stat.S_IMODE(folder.stat().st_mode)), oct(stat.S_IMODE(database.stat().st_mode))
('0o700', '0o600')
>>> scratch.cleanup()
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["private_directory", "private_file"]


_OTHERS: int = 0o077
"""Permission bits of the group and of other users: any of them set makes a mode laxer than ours."""


def private_directory(path: Path) -> Path:
    """``path`` as a directory only its owner may use (0700), created with its parents if needed.

    A new leaf directory is made 0700 (its parents get the usual mode); an existing one that grants
    the group or others anything is tightened to 0700. A path that exists and is not a directory
    is a ``NotADirectoryError`` naming it.
    """
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(
            f"{str(path)!r} exists and is not a directory; a private directory was expected"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        if not path.is_dir():  # it appeared meanwhile, as something else
            raise NotADirectoryError(
                f"{str(path)!r} exists and is not a directory; a private directory was expected"
            ) from None
        if stat.S_IMODE(path.stat().st_mode) & _OTHERS:
            path.chmod(0o700)
    else:
        path.chmod(0o700)  # mkdir's mode passed through the umask, which may have removed owner bits
    return path


def private_file(path: Path) -> Path:
    """``path`` as a file only its owner may read or write (0600), created empty if missing.

    A new file is created by ``os.open`` with ``O_CREAT`` and mode 0600 in one call, so it never
    exists with a laxer mode, not even for a moment; an existing file that grants the group or
    others anything is tightened to 0600 (its content is kept). Create a SQLite database this way
    before connecting: SQLite gives the ``-wal`` and ``-shm`` files the database file's mode.
    """
    if path.exists() and path.is_dir():
        raise IsADirectoryError(f"{str(path)!r} is a directory; a private file was expected")
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    except FileExistsError:
        if stat.S_IMODE(path.stat().st_mode) & _OTHERS:
            path.chmod(0o600)
        return path
    try:
        os.fchmod(descriptor, 0o600)  # the umask may have removed owner bits from the new file
    finally:
        os.close(descriptor)
    return path
