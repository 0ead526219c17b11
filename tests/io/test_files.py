"""Private files and directories: mode 0700 / 0600 whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from crossview.io.files import private_directory, private_file

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_0() -> Iterator[None]:
    """The laxest umask: new files and directories would be world-readable and -writable."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_a_new_directory_and_file_are_private_even_with_umask_0(tmp_path: Path, umask_0: None) -> None:
    folder = private_directory(tmp_path / "a" / "data")
    assert folder == tmp_path / "a" / "data"
    assert mode(folder) == 0o700
    database = private_file(folder / "x.sqlite")
    assert database == folder / "x.sqlite"
    assert mode(database) == 0o600 and database.read_bytes() == b""


def test_a_umask_that_takes_owner_bits_does_not_matter(tmp_path: Path) -> None:
    previous = os.umask(0o277)
    try:
        folder = private_directory(tmp_path / "data")
        database = private_file(folder / "x.sqlite")
    finally:
        os.umask(previous)
    assert (mode(folder), mode(database)) == (0o700, 0o600)


def test_existing_lax_ones_are_tightened_and_kept(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    folder.chmod(0o755)
    existing = folder / "x.sqlite"
    existing.write_bytes(b"keep me")
    existing.chmod(0o644)
    assert mode(private_directory(folder)) == 0o700
    assert mode(private_file(existing)) == 0o600 and existing.read_bytes() == b"keep me"
    assert mode(private_directory(folder)) == 0o700  # idempotent
    assert mode(private_file(existing)) == 0o600


def test_stricter_ones_are_left_alone(tmp_path: Path) -> None:
    read_only = tmp_path / "frozen.sqlite"
    read_only.write_bytes(b"x")
    read_only.chmod(0o400)
    try:
        assert mode(private_file(read_only)) == 0o400
    finally:
        read_only.chmod(0o600)


def test_the_wrong_kind_of_path_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="exists and is not a directory"):
        private_directory(tmp_path / "data")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        private_file(tmp_path)
