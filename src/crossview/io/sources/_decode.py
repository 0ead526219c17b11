"""Packet-by-packet decoding with PyAV that skips and counts what cannot be decoded."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Final

import av
import numpy as np
from av.container import InputContainer
from av.packet import Packet
from av.video.frame import VideoFrame
from av.video.stream import VideoStream
from numpy.typing import NDArray

from crossview.io.sources.base import SourceError, SourceStats

_log = logging.getLogger(__name__)

#: After this many undecodable packets in a row the input is taken to be garbage, not damaged.
MAX_CONSECUTIVE_ERRORS: Final = 100


def describe(error: BaseException) -> str:
    """``Type: message`` without the file name or URL that FFmpeg errors repeat (URLs may hold passwords)."""
    message = getattr(error, "strerror", None) or str(error)
    return f"{type(error).__name__}: {message}"


def presentation_time(frame: VideoFrame) -> float | None:
    """PTS × time base in seconds, or ``None`` when the frame carries no timestamp."""
    if frame.pts is None or frame.time_base is None:
        return None
    return float(frame.pts * frame.time_base)


def to_bgr(frame: VideoFrame) -> NDArray[np.uint8]:
    """The frame as a contiguous ``H x W x 3`` BGR array (the layout ``Frame`` wants)."""
    image: NDArray[np.uint8] = np.ascontiguousarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)
    return image


class PacketDecoder:
    """Decodes the video stream of one open container, one packet per ``next_batch`` call.

    A packet the demuxer cannot parse or the decoder rejects, and a frame the decoder marks
    corrupt, become ``None`` in the batch (a lost frame that still takes its place in the count)
    and add one to ``stats.corrupt_frames``; other errors (I/O, network) propagate. More than
    ``max_consecutive_errors`` lost packets in a row raise ``SourceError``: the input is garbage.
    """

    def __init__(
        self,
        container: InputContainer,
        stream: VideoStream,
        stats: SourceStats,
        name: str,
        *,
        max_consecutive_errors: int = MAX_CONSECUTIVE_ERRORS,
    ) -> None:
        self._container = container
        self._stream = stream
        self._stats = stats
        self._name = name
        self._max_consecutive_errors = max_consecutive_errors
        self._consecutive_errors = 0
        self._packets: Iterator[Packet[VideoStream]] = container.demux(stream)

    def next_batch(self) -> list[VideoFrame | None] | None:
        """The frames decoded from the next packet (often one, possibly none); ``None`` at the end."""
        try:
            packet = next(self._packets)
        except StopIteration:
            return None
        except av.error.InvalidDataError as error:
            # The demuxer's generator is finished after raising; a new one resumes after the bad bytes.
            self._packets = self._container.demux(self._stream)
            self._count_lost(error)
            return [None]
        try:
            frames = self._stream.decode(packet)
        except av.error.FFmpegError as error:
            if isinstance(error, OSError | MemoryError):
                raise
            self._count_lost(error)
            return [None]
        self._consecutive_errors = 0
        batch: list[VideoFrame | None] = []
        for frame in frames:
            if frame.is_corrupt:
                self._count_lost(None)
                batch.append(None)
            else:
                batch.append(frame)
        return batch

    def _count_lost(self, error: BaseException | None) -> None:
        reason = describe(error) if error is not None else "decoder marked the frame corrupt"
        self._stats.corrupt_frames += 1
        self._stats.last_error = reason
        _log.debug("%s: skipped an undecodable frame (%s)", self._name, reason)
        if error is not None:
            self._consecutive_errors += 1
            if self._consecutive_errors > self._max_consecutive_errors:
                raise SourceError(
                    self._name, f"{self._consecutive_errors} undecodable packets in a row; last: {reason}"
                ) from error
