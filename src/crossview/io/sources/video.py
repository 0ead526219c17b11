"""Frames from a video file, decoded with PyAV (FFmpeg)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
from av.container import InputContainer

from crossview.core.frame import Frame
from crossview.io.sources._decode import PacketDecoder, describe, presentation_time, to_bgr
from crossview.io.sources.base import SourceError, _SourceBase


def check_selection(stride: int, start: int, max_frames: int | None) -> None:
    """Reject a frame selection that cannot mean anything."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if max_frames is not None and max_frames < 0:
        raise ValueError(f"max_frames must be >= 0 or None, got {max_frames}")


def selected(index: int, stride: int, start: int) -> bool:
    """Whether the frame at ``index`` is one of ``start, start + stride, start + 2·stride, ...``."""
    return index >= start and (index - start) % stride == 0


class VideoFileSource(_SourceBase):
    """The frames of one video file, in presentation order.

    ``timestamp`` is the frame's presentation time (PTS × time base, in seconds, as the file
    states it). ``index`` is the frame's position in the file from 0; a frame lost to corruption
    is skipped (counted in ``stats.corrupt_frames``) but keeps its index, so later frames keep
    theirs. ``start``, ``stride`` and ``max_frames`` select frames ``start, start + stride, ...``
    up to ``max_frames`` of them; the frames in between are decoded (video needs it) but not
    converted. A missing, unreadable or non-video file raises ``SourceError`` here, at construction.

    >>> with VideoFileSource("vtest.avi", camera_id="street", stride=5) as source:  # doctest: +SKIP
    ...     for frame in source:
    ...         print(frame.index, frame.timestamp, frame.size)
    0 0.0 (768, 576)
    5 0.5 (768, 576)
    """

    def __init__(
        self,
        path: str | Path,
        camera_id: str | None = None,
        *,
        stride: int = 1,
        start: int = 0,
        max_frames: int | None = None,
        threads: bool = True,
    ) -> None:
        path = Path(path)
        super().__init__(camera_id if camera_id is not None else path.stem, str(path))
        check_selection(stride, start, max_frames)
        self._path = path
        self._stride = stride
        self._start = start
        self._max_frames = max_frames
        self._container: InputContainer | None = _open_video(path)
        stream = self._container.streams.video[0]
        if threads:
            # Frame and slice threads: a file is read for throughput, the few frames of delay don't matter.
            stream.thread_type = "AUTO"
        self._decoder = PacketDecoder(self._container, stream, self._stats, str(path))
        rate = stream.average_rate or stream.guessed_rate
        self._fps = float(rate) if rate else None
        self._frame_count = stream.frames or None
        self._size = (stream.codec_context.width, stream.codec_context.height)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def fps(self) -> float | None:
        """The average frame rate the file declares, if it declares one."""
        return self._fps

    @property
    def frame_count(self) -> int | None:
        """The number of frames the file declares (before any selection), if it declares it."""
        return self._frame_count

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the coded pictures."""
        return self._size

    def _frames(self) -> Iterator[Frame]:
        index = -1
        delivered = 0
        if self._max_frames == 0:
            return
        while True:
            with self._lock:
                if self._stop.is_set():
                    return
                batch = self._decoder.next_batch()
            if batch is None:
                return
            for decoded in batch:
                index += 1
                if decoded is None or not selected(index, self._stride, self._start):
                    continue
                seconds = presentation_time(decoded)
                if seconds is None:
                    seconds = index / self._fps if self._fps else float(index)
                yield Frame(to_bgr(decoded), camera_id=self._camera_id, index=index, timestamp=seconds)
                self._stats.frames_read += 1
                delivered += 1
                if self._max_frames is not None and delivered >= self._max_frames:
                    return

    def _release(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


def _open_video(path: Path) -> InputContainer:
    if not path.exists():
        raise SourceError(path, "no such file")
    if not path.is_file():
        raise SourceError(path, "not a file")
    try:
        container = av.open(str(path), mode="r")
    except (av.error.FFmpegError, OSError) as error:
        raise SourceError(path, f"cannot open as a video: {describe(error)}") from error
    if not container.streams.video:
        container.close()
        raise SourceError(path, "has no video stream")
    stream = container.streams.video[0]
    # PyAV leaves the codec context out when FFmpeg has no decoder for the codec.
    if getattr(stream, "codec_context", None) is None:
        container.close()
        raise SourceError(path, f"no decoder for its video codec ({stream.codec_tag or 'unknown'})")
    return container
