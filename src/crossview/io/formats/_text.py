"""Pieces every text-format reader and writer shares: reading, naming bad numbers, writing numbers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from crossview.io.formats._errors import FormatError


def read_text(path: Path, *, encoding: str = "utf-8", expected: str = "text") -> str:
    """The file's text, or a ``FormatError`` saying why it cannot be read."""
    try:
        return path.read_text(encoding=encoding)
    except OSError as error:
        raise FormatError(path, f"cannot read file: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise FormatError(path, f"not a text file (expected UTF-8 {expected})") from error


def raise_first_non_number(
    rows: Sequence[Sequence[str]], line_numbers: Sequence[int], path: Path, *, first_column: int = 1
) -> None:
    """Raise ``FormatError`` at the first field that is not a number (columns counted from 1).

    Called after a fast vectorised parse failed, to point at the culprit.
    """
    for fields, line in zip(rows, line_numbers, strict=True):
        for column, value in enumerate(fields, start=first_column):
            try:
                float(value)
            except ValueError:
                raise FormatError(path, f"column {column} is not a number: {value!r}", line) from None


def format_number(value: float) -> str:
    """Whole numbers without a decimal point; others in the shortest form that reads back exactly."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))
