"""Open any frame source from one string: a URL, an image folder or a video file."""

from __future__ import annotations

from pathlib import Path

from crossview.io.sources import (
    FrameSource,
    ImageFolderSource,
    ReconnectPolicy,
    StreamSource,
    VideoFileSource,
)


def open_source(
    spec: str | Path, camera_id: str | None = None, *, max_frames: int | None = None, fps: float | None = None
) -> FrameSource:
    """``rtsp://...``/``http://...`` (any URL) opens a live stream that reconnects; a folder opens
    an image sequence (MOTChallenge ``img1/`` layout or plain images); anything else a video file."""
    text = str(spec)
    if "://" in text:
        name = camera_id or text.rsplit("/", 1)[-1] or "stream"
        return StreamSource(text, camera_id=name, reconnect=ReconnectPolicy())
    path = Path(text)
    if path.is_dir():
        return ImageFolderSource(path, camera_id, fps=fps, max_frames=max_frames)
    return VideoFileSource(path, camera_id, max_frames=max_frames)
