"""Frame sources: video files, image folders and live streams, all ``FrameSource``.

``VideoFileSource`` (PyAV), ``ImageFolderSource`` (MOTChallenge ``img1/`` and plain folders) and
``StreamSource`` (RTSP/HTTP/... with ``ReconnectPolicy``) share one life cycle: iterate once,
``close()`` from any thread, ``stats`` for frames read, corrupt frames skipped and reconnections.
Put one behind ``crossview.io.buffer.BufferedSource`` to decouple it from a slower pipeline.
"""

from crossview.io.sources.base import FrameSource, SourceError, SourceStats
from crossview.io.sources.images import ImageFolderSource
from crossview.io.sources.stream import ReconnectPolicy, StreamEvent, StreamEventKind, StreamSource
from crossview.io.sources.video import VideoFileSource

__all__ = [
    "FrameSource",
    "ImageFolderSource",
    "ReconnectPolicy",
    "SourceError",
    "SourceStats",
    "StreamEvent",
    "StreamEventKind",
    "StreamSource",
    "VideoFileSource",
]
