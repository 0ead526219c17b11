"""What every frame source is: the ``FrameSource`` protocol, its counters and its one error type."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from crossview.core.frame import Frame


class SourceError(ValueError):
    """A source that cannot be opened or read any more, naming it and saying why.

    ``str(error)`` reads ``source: reason``; ``source`` is the file, folder or (password-free) URL.
    """

    def __init__(self, source: str | Path, reason: str) -> None:
        self.source = str(source)
        self.reason = reason
        super().__init__(f"{self.source}: {reason}")


@dataclass(slots=True)
class SourceStats:
    """Running counters of one source, updated as it is read.

    ``frames_read`` counts frames handed to the consumer; ``corrupt_frames`` frames (or packets)
    that could not be decoded and were skipped; ``disconnects`` and ``reconnects`` apply to live
    streams (a stream that came back after a loss counts one of each); ``last_error`` is the text
    of the most recent error met, recovered from or not.

    The source's own thread writes these; another thread may read them at any time (each field is
    a single object, so reads never see a torn value). ``snapshot`` gives a consistent copy to keep.
    """

    frames_read: int = 0
    corrupt_frames: int = 0
    disconnects: int = 0
    reconnects: int = 0
    last_error: str | None = None

    def snapshot(self) -> SourceStats:
        """A copy that no longer changes."""
        return replace(self)


@runtime_checkable
class FrameSource(Protocol):
    """Frames of one camera, in order, read once.

    Iterating yields ``Frame`` objects (``BGR uint8 H x W x 3``, ``index`` from 0, ``timestamp``
    in seconds on the source's clock). A source is single-pass: iterate it once. ``close()``
    releases what it holds and may be called from another thread while it is being iterated,
    which then ends at its next frame; closing twice is harmless. Use it as a context manager::

        with VideoFileSource("gate.mp4", camera_id="gate") as source:
            for frame in source:
                ...
    """

    @property
    def camera_id(self) -> str: ...

    @property
    def stats(self) -> SourceStats: ...

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...


class _SourceBase(ABC):
    """Shared life cycle of the sources here: single pass, thread-safe ``close``, context manager.

    Subclasses write ``_frames`` (a generator) and ``_release``. They hold ``_lock`` around every
    read or decode (never across a ``yield``) and check ``_stop`` before each, so that ``close``
    from another thread waits for at most one read in flight and never frees a container under it.
    """

    def __init__(self, camera_id: str, name: str) -> None:
        if not camera_id:
            raise ValueError("camera_id must be a non-empty string")
        self._camera_id = camera_id
        self._name = name
        self._stats = SourceStats()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._iterated = False

    @property
    def camera_id(self) -> str:
        return self._camera_id

    @property
    def stats(self) -> SourceStats:
        return self._stats

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def __iter__(self) -> Iterator[Frame]:
        if self._stop.is_set():
            raise SourceError(self._name, "the source is closed")
        if self._iterated:
            raise RuntimeError(
                f"{type(self).__name__} for {self._name} is single-pass and was already iterated"
            )
        self._iterated = True
        return self._run()

    def _run(self) -> Iterator[Frame]:
        try:
            yield from self._frames()
        finally:
            self.close()

    def close(self) -> None:
        """Stop reading and release the file or connection; safe from any thread, idempotent."""
        self._stop.set()
        with self._lock:
            self._release()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name!r}, camera_id={self._camera_id!r})"

    @abstractmethod
    def _frames(self) -> Iterator[Frame]:
        """The frames, stopping when ``_stop`` is set."""

    @abstractmethod
    def _release(self) -> None:
        """Free the file or connection; called with ``_lock`` held, possibly more than once."""
