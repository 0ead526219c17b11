"""The one error type every reader raises for malformed input."""

from __future__ import annotations

from pathlib import Path


class FormatError(ValueError):
    """A file that does not follow its format, with where and why.

    ``str(error)`` reads ``path:line: reason`` (``path: reason`` when no line applies),
    the form editors and CI logs turn into links.
    """

    def __init__(self, path: str | Path, reason: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {reason}")
