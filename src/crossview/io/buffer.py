"""A bounded, thread-safe buffer between a source and the pipeline, and a source that reads into one.

``FrameBuffer`` holds at most ``capacity`` items; what happens when a producer meets a full
buffer is its ``OverflowPolicy``:

- ``block``: the producer waits for room (backpressure: nothing is lost, the source slows down;
  right for files),
- ``drop_oldest``: the oldest waiting item is discarded for the new one (the consumer always gets
  the freshest frames; right for live cameras),
- ``drop_newest``: the new item is discarded (what was queued first is kept).

``BufferedSource`` reads any ``FrameSource`` on a background thread into a ``FrameBuffer`` and is
itself a ``FrameSource`` for the consumer. Memory is bounded by the capacity whatever the speeds.

The buffer is a ``collections.deque`` guarded by one ``threading.Condition`` pair: the standard
library's ``queue.Queue`` has neither a drop policy nor a way to close it and wake its waiters.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import TYPE_CHECKING, Generic, Self, TypeVar

from crossview.core.frame import Frame

if TYPE_CHECKING:
    from crossview.io.sources.base import FrameSource, SourceStats

_log = logging.getLogger(__name__)

T = TypeVar("T")


class OverflowPolicy(StrEnum):
    """What ``FrameBuffer.put`` does when the buffer is full."""

    BLOCK = "block"
    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"


class BufferClosed(Exception):
    """``put`` on a closed buffer, or ``get`` on a closed buffer with nothing left to drain."""


@dataclass(frozen=True, slots=True)
class BufferStats:
    """A consistent snapshot of a buffer's counters.

    ``accepted`` items were stored by ``put``; ``delivered`` were returned by ``get``; ``dropped``
    were lost to the policy (evicted by ``drop_oldest`` or refused by ``drop_newest``); ``depth``
    items wait now and ``high_water`` is the most that ever waited at once. At any moment
    ``accepted == delivered + depth + evicted + cleared`` where ``evicted`` are ``drop_oldest``
    drops and ``cleared`` items removed by ``clear``.
    """

    capacity: int
    policy: OverflowPolicy
    depth: int
    high_water: int
    accepted: int
    delivered: int
    dropped: int
    closed: bool


class FrameBuffer(Generic[T]):
    """A bounded first-in-first-out buffer for one or more producer and consumer threads.

    ``put`` stores an item (or drops one, by policy); ``get`` takes the oldest, waiting while the
    buffer is empty. ``close()`` ends the stream: ``put`` then raises ``BufferClosed``, waiting
    producers and consumers wake, and consumers drain what is left before ``get`` raises
    ``BufferClosed`` (iteration simply stops). ``close(error)`` does the same but the consumer
    gets ``error`` raised once the buffer is drained, which is how a producer's failure reaches
    the consumer in order, after the frames that preceded it.

    >>> buffer = FrameBuffer[int](2, "drop_oldest")
    >>> [buffer.put(i) for i in range(4)]
    [True, True, True, True]
    >>> buffer.close()
    >>> list(buffer), buffer.dropped
    ([2, 3], 2)
    """

    def __init__(self, capacity: int, policy: OverflowPolicy | str = OverflowPolicy.BLOCK) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        try:
            self._policy = OverflowPolicy(policy)
        except ValueError:
            names = ", ".join(repr(p.value) for p in OverflowPolicy)
            raise ValueError(f"policy must be one of {names}, got {policy!r}") from None
        self._capacity = capacity
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._closed = False
        self._error: BaseException | None = None
        self._high_water = 0
        self._accepted = 0
        self._delivered = 0
        self._dropped = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def policy(self) -> OverflowPolicy:
        return self._policy

    @property
    def depth(self) -> int:
        """Items waiting now."""
        with self._lock:
            return len(self._items)

    def __len__(self) -> int:
        return self.depth

    @property
    def high_water(self) -> int:
        """The most items that ever waited at once."""
        with self._lock:
            return self._high_water

    @property
    def dropped(self) -> int:
        """Items lost to the policy so far."""
        with self._lock:
            return self._dropped

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._closed

    def stats(self) -> BufferStats:
        """All counters, read together."""
        with self._lock:
            return BufferStats(
                capacity=self._capacity,
                policy=self._policy,
                depth=len(self._items),
                high_water=self._high_water,
                accepted=self._accepted,
                delivered=self._delivered,
                dropped=self._dropped,
                closed=self._closed,
            )

    def put(self, item: T, timeout: float | None = None) -> bool:
        """Add ``item``; ``True`` if it was stored, ``False`` if ``drop_newest`` refused it.

        Under ``block`` a full buffer makes the caller wait for room, at most ``timeout`` seconds
        (then ``TimeoutError``; nothing is stored or counted). Raises ``BufferClosed`` once the
        buffer is closed, including while waiting.
        """
        with self._not_full:
            if self._closed:
                raise BufferClosed("put on a closed buffer")
            if len(self._items) >= self._capacity:
                if self._policy is OverflowPolicy.DROP_NEWEST:
                    self._dropped += 1
                    return False
                if self._policy is OverflowPolicy.DROP_OLDEST:
                    self._items.popleft()
                    self._dropped += 1
                else:
                    ready = self._not_full.wait_for(
                        lambda: self._closed or len(self._items) < self._capacity, timeout
                    )
                    if self._closed:
                        raise BufferClosed("buffer closed while waiting for room")
                    if not ready:
                        raise TimeoutError(f"no room in the buffer within {timeout} s")
            self._items.append(item)
            self._accepted += 1
            self._high_water = max(self._high_water, len(self._items))
            self._not_empty.notify()
            return True

    def get(self, timeout: float | None = None) -> T:
        """The oldest item, waiting at most ``timeout`` seconds for one (then ``TimeoutError``).

        Once the buffer is closed and drained: raises the error given to ``close``, if any,
        else ``BufferClosed``.
        """
        with self._not_empty:
            ready = self._not_empty.wait_for(lambda: self._closed or bool(self._items), timeout)
            if self._items:
                item = self._items.popleft()
                self._delivered += 1
                self._not_full.notify()
                return item
            if not ready:
                raise TimeoutError(f"no item in the buffer within {timeout} s")
            if self._error is not None:
                raise self._error
            raise BufferClosed("buffer is closed and drained")

    def close(self, error: BaseException | None = None) -> None:
        """End the stream, waking every waiter; ``error`` is raised to consumers after they drain.

        Closing again changes nothing (the first error stays).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._error = error
            self._not_empty.notify_all()
            self._not_full.notify_all()

    def clear(self) -> int:
        """Discard the waiting items (not counted as dropped) and return how many there were."""
        with self._lock:
            count = len(self._items)
            self._items.clear()
            self._not_full.notify_all()
            return count

    def __iter__(self) -> Iterator[T]:
        """Items until the buffer is closed and drained (raising a producer's error at the end)."""
        while True:
            try:
                item = self.get()
            except BufferClosed:
                return
            yield item


class BufferedSource:
    """Reads a ``FrameSource`` on a background thread into a ``FrameBuffer``; iterate it to consume.

    The thread starts on ``start()``, ``with`` or the first iteration. An error the source raises
    (say ``SourceError`` when a stream gives up) is raised to the consumer after the frames that
    came before it; the source ending ends the consumer's iteration. ``close()`` stops the
    thread (closing the source, which wakes it from a wait) and drops what is still buffered.

    ``stats`` are the source's; ``buffer_stats()`` adds drops, depth and the high-water mark.

    >>> source = StreamSource("rtsp://cam7.local/stream1", camera_id="cam7")  # doctest: +SKIP
    >>> with BufferedSource(source, capacity=4, policy="drop_oldest") as frames:  # doctest: +SKIP
    ...     for frame in frames:
    ...         detector.detect(frame.image)
    """

    def __init__(
        self,
        source: FrameSource,
        capacity: int = 8,
        policy: OverflowPolicy | str = OverflowPolicy.BLOCK,
        *,
        join_timeout: float = 10.0,
    ) -> None:
        self._source = source
        self._buffer: FrameBuffer[Frame] = FrameBuffer(capacity, policy)
        self._join_timeout = join_timeout
        self._thread = threading.Thread(
            target=self._produce, name=f"crossview-source-{source.camera_id}", daemon=True
        )
        self._start_lock = threading.Lock()
        self._started = False

    @property
    def camera_id(self) -> str:
        return self._source.camera_id

    @property
    def stats(self) -> SourceStats:
        return self._source.stats

    @property
    def source(self) -> FrameSource:
        return self._source

    def buffer_stats(self) -> BufferStats:
        return self._buffer.stats()

    def start(self) -> None:
        """Start reading the source in the background; calling it again does nothing."""
        with self._start_lock:
            if not self._started:
                self._started = True
                self._thread.start()

    def __iter__(self) -> Iterator[Frame]:
        self.start()
        return iter(self._buffer)

    def close(self) -> None:
        """Stop the reader thread, close the source and discard buffered frames; idempotent."""
        self._buffer.close()
        self._source.close()
        self._buffer.clear()
        if self._started and self._thread is not threading.current_thread():
            self._thread.join(self._join_timeout)
            if self._thread.is_alive():
                _log.warning(
                    "camera %s: the reader thread did not stop within %.1f s",
                    self.camera_id,
                    self._join_timeout,
                )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _produce(self) -> None:
        error: BaseException | None = None
        try:
            for frame in self._source:
                self._buffer.put(frame)
        except BufferClosed:
            pass
        except Exception as caught:  # every failure goes to the consumer, none is swallowed here
            error = caught
        finally:
            self._source.close()
            self._buffer.close(error)
