"""Frames from a live stream (RTSP, HTTP, anything FFmpeg opens), reconnecting when it dies."""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit

import av
from av.container import InputContainer
from av.video.frame import VideoFrame
from pydantic import Field, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from crossview.core.frame import Frame
from crossview.io.sources._decode import PacketDecoder, describe, presentation_time, to_bgr
from crossview.io.sources.base import SourceError, _SourceBase

_log = logging.getLogger(__name__)


@pydantic_dataclass(frozen=True)
class ReconnectPolicy:
    """When to try a lost stream again: exponential backoff, optionally jittered, optionally bounded.

    After the ``n``-th failed attempt in a row the source waits
    ``min(max_delay, initial_delay · multiplier^(n-1))``, scaled by a random factor in
    ``[1 - jitter, 1 + jitter]`` (and capped at ``max_delay`` again). The first attempt after a
    stream dies is immediate. With ``max_attempts`` set, that many failures in a row end the
    source with ``SourceError``; ``None`` retries for ever.

    >>> policy = ReconnectPolicy(initial_delay=0.5, max_delay=4.0, multiplier=2.0, max_attempts=5)
    >>> [policy.delay(n) for n in range(1, 6)]
    [0.5, 1.0, 2.0, 4.0, 4.0]
    """

    initial_delay: Annotated[float, Field(ge=0)] = 0.5
    max_delay: Annotated[float, Field(ge=0)] = 30.0
    multiplier: Annotated[float, Field(ge=1)] = 2.0
    max_attempts: Annotated[int, Field(ge=1)] | None = None
    jitter: Annotated[float, Field(ge=0, le=1)] = 0.0

    @model_validator(mode="after")
    def _ordered(self) -> ReconnectPolicy:
        if self.max_delay < self.initial_delay:
            raise ValueError(f"max_delay ({self.max_delay}) must be >= initial_delay ({self.initial_delay})")
        return self

    def delay(self, failures: int, draw: float = 0.5) -> float:
        """Seconds to wait after ``failures`` (>= 1) failed attempts in a row.

        ``draw`` is a uniform random number in ``[0, 1)`` for the jitter; 0.5 means none.
        """
        if failures < 1:
            raise ValueError(f"failures must be >= 1, got {failures}")
        try:
            base = min(self.max_delay, self.initial_delay * self.multiplier ** (failures - 1))
        except OverflowError:  # long past the cap
            base = self.max_delay
        return min(self.max_delay, max(0.0, base * (1.0 + self.jitter * (2.0 * draw - 1.0))))

    def gives_up_after(self, failures: int) -> bool:
        """Whether ``failures`` failed attempts in a row exhaust the policy."""
        return self.max_attempts is not None and failures >= self.max_attempts


class StreamEventKind(StrEnum):
    """What happened to a stream's connection."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    RETRYING = "retrying"
    RECONNECTED = "reconnected"
    GAVE_UP = "gave_up"


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One change in a stream's connection, as passed to ``StreamSource``'s ``on_event``.

    ``failures`` is the number of failed attempts in a row so far; ``delay`` the seconds until
    the next attempt (``RETRYING`` only); ``time`` wall-clock seconds since the epoch.
    """

    kind: StreamEventKind
    camera_id: str
    url: str
    failures: int
    time: float
    error: str | None = None
    delay: float | None = None


class StreamSource(_SourceBase):
    """Frames of a live stream, reconnecting with backoff when it dies.

    The stream is opened when iteration starts (not at construction) through PyAV, so any URL
    FFmpeg reads works: ``rtsp://``, ``http(s)://`` (MJPEG, MPEG-TS, HLS ...), ``udp://``,
    ``srt://``. ``timeout`` bounds, in seconds, both opening and every read, so a server that
    accepts and then goes silent is a failure rather than a hang; ``options`` go to FFmpeg as
    they are (for example ``{"rtsp_transport": "tcp"}``).

    When the stream fails or ends (with ``reconnect_on_end``, the default: a live stream has no
    end), the source reconnects at once, then after growing delays as ``reconnect`` says; a
    connection counts as successful once it delivers a frame. Each change is logged, counted
    in ``stats`` and passed to ``on_event``; when the policy is exhausted iteration raises
    ``SourceError`` naming the URL, the attempts and the last error. ``on_event`` runs on the
    reading thread; an exception it raises ends the iteration rather than being swallowed.
    Passwords in the URL never appear in logs, events or errors.

    ``timestamp`` is the wall-clock arrival time (``clock="arrival"``, comparable across
    cameras) or the stream's own presentation time (``clock="pts"``, which may restart at a
    reconnection); ``index`` counts frames from 0 across reconnections.

    >>> source = StreamSource("rtsp://cam7.local/stream1", camera_id="cam7",
    ...                       reconnect=ReconnectPolicy(max_attempts=10))  # doctest: +SKIP
    >>> for frame in source:  # doctest: +SKIP
    ...     ...
    """

    def __init__(
        self,
        url: str,
        camera_id: str,
        *,
        reconnect: ReconnectPolicy | None = None,
        timeout: float = 10.0,
        options: Mapping[str, str] | None = None,
        format: str | None = None,
        clock: Literal["arrival", "pts"] = "arrival",
        reconnect_on_end: bool = True,
        on_event: Callable[[StreamEvent], None] | None = None,
        seed: int | None = None,
    ) -> None:
        if not url:
            raise ValueError("url must be a non-empty string")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout}")
        if clock not in ("arrival", "pts"):
            raise ValueError(f"clock must be 'arrival' or 'pts', got {clock!r}")
        super().__init__(camera_id, redact_url(url))
        self._url = url
        self._policy = reconnect if reconnect is not None else ReconnectPolicy()
        self._timeout = timeout
        self._options = dict(options or {})
        self._format = format
        self._clock = clock
        self._reconnect_on_end = reconnect_on_end
        self._on_event = on_event
        self._random = random.Random(seed)
        self._container: InputContainer | None = None

    @property
    def url(self) -> str:
        """The URL with any password replaced by ``***``."""
        return self._name

    @property
    def policy(self) -> ReconnectPolicy:
        return self._policy

    def _frames(self) -> Iterator[Frame]:
        failures = 0
        connections = 0
        indices = itertools.count()
        while not self._stop.is_set():
            try:
                with self._lock:
                    if self._stop.is_set():
                        return
                    decoder = self._open()
            except (av.error.FFmpegError, OSError, SourceError) as error:
                reason = self._describe(error)
            else:
                connections += 1
                if connections > 1:
                    self._stats.reconnects += 1
                kind = StreamEventKind.RECONNECTED if connections > 1 else StreamEventKind.CONNECTED
                self._emit(kind, failures)
                delivered, ended_by = yield from self._connection_frames(decoder, indices)
                if self._stop.is_set() or (ended_by is None and not self._reconnect_on_end):
                    return
                reason = ended_by or "the stream ended"
                if delivered:
                    failures = 0
                self._stats.disconnects += 1
                self._stats.last_error = reason
                self._emit(StreamEventKind.DISCONNECTED, failures, error=reason)
                if delivered:
                    continue  # a stream that worked is retried at once
                reason = f"connected but no frame arrived ({reason})"
            failures += 1
            self._stats.last_error = reason
            if self._policy.gives_up_after(failures):
                self._emit(StreamEventKind.GAVE_UP, failures, error=reason)
                raise SourceError(
                    self._name,
                    f"gave up after {failures} failed connection attempts in a row; last: {reason}",
                )
            delay = self._policy.delay(failures, self._random.random())
            self._emit(StreamEventKind.RETRYING, failures, error=reason, delay=delay)
            if self._stop.wait(delay):
                return

    def _connection_frames(
        self, decoder: PacketDecoder, indices: Iterator[int]
    ) -> Generator[Frame, None, tuple[int, str | None]]:
        """The frames of one connection; returns how many, and the error that ended it (``None``: its end)."""
        delivered = 0
        try:
            while True:
                with self._lock:
                    if self._stop.is_set():
                        return delivered, None
                    batch = decoder.next_batch()
                if batch is None:
                    return delivered, None
                for decoded in batch:
                    index = next(indices)
                    if decoded is None:
                        continue
                    image = to_bgr(decoded)
                    yield Frame(image, self._camera_id, index, self._timestamp(decoded))
                    self._stats.frames_read += 1
                    delivered += 1
        except (av.error.FFmpegError, OSError, SourceError) as error:
            return delivered, self._describe(error)
        finally:
            with self._lock:
                self._release()

    def _open(self) -> PacketDecoder:
        container = av.open(
            self._url,
            mode="r",
            format=self._format,
            options=self._options,
            timeout=(self._timeout, self._timeout),
        )
        if not container.streams.video:
            container.close()
            raise SourceError(self._name, "has no video stream")
        self._container = container
        return PacketDecoder(container, container.streams.video[0], self._stats, self._name)

    def _timestamp(self, decoded: VideoFrame) -> float:
        if self._clock == "pts":
            seconds = presentation_time(decoded)
            if seconds is not None:
                return seconds
        return time.time()

    def _describe(self, error: BaseException) -> str:
        return describe(error).replace(self._url, self._name)

    def _release(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def _emit(
        self, kind: StreamEventKind, failures: int, *, error: str | None = None, delay: float | None = None
    ) -> None:
        event = StreamEvent(kind, self._camera_id, self._name, failures, time.time(), error, delay)
        if kind is StreamEventKind.GAVE_UP:
            _log.error(
                "camera %s: giving up on %s after %d failures: %s",
                self._camera_id,
                self._name,
                failures,
                error,
            )
        elif kind is StreamEventKind.DISCONNECTED:
            _log.warning("camera %s: lost %s: %s", self._camera_id, self._name, error)
        elif kind is StreamEventKind.RETRYING:
            _log.info(
                "camera %s: cannot reach %s (%s); attempt %d failed, retrying in %.2f s",
                self._camera_id,
                self._name,
                error,
                failures,
                delay,
            )
        else:
            _log.info("camera %s: %s to %s", self._camera_id, kind.value, self._name)
        if self._on_event is not None:
            self._on_event(event)


def redact_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``.

    >>> redact_url("rtsp://admin:secret@10.0.0.7:554/stream1")
    'rtsp://admin:***@10.0.0.7:554/stream1'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
