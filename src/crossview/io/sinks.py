"""Where frames and tracks go: an annotated video file, and the drawing that makes it."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Self

import av
import cv2
import numpy as np
from numpy.typing import NDArray

from crossview.core.detections import Detections


def colour_of(track_id: int) -> tuple[int, int, int]:
    """A stable, distinct BGR colour per id (golden-ratio hue steps)."""
    hue = int((track_id * 0.618033988749895 % 1.0) * 179)
    hsv = np.array([[[hue, 200, 255]]], dtype=np.uint8)
    b, g, r = np.asarray(cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR))[0, 0]
    return int(b), int(g), int(r)


def draw_tracks(
    image: NDArray[np.uint8], detections: Detections, class_names: dict[int, str] | None = None
) -> NDArray[np.uint8]:
    """A copy of ``image`` with tracked boxes (coloured by id, labelled) and untracked ones in grey."""
    canvas = image.copy()
    for box, track, cls, score in zip(
        detections.xyxy.astype(int),
        detections.tracker_id,
        detections.class_id,
        detections.confidence,
        strict=True,
    ):
        x1, y1, x2, y2 = (int(v) for v in box)
        if track < 0:
            cv2.rectangle(canvas, (x1, y1), (x2, y2), (128, 128, 128), 1)
            continue
        colour = colour_of(int(track))
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, 2)
        name = (class_names or {}).get(int(cls), str(int(cls)))
        label = f"{int(track)} {name} {score:.2f}"
        (width, height), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        cv2.rectangle(canvas, (x1, max(0, y1 - height - 4)), (x1 + width + 2, y1), colour, -1)
        cv2.putText(
            canvas, label, (x1 + 1, y1 - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA
        )
    return canvas


class VideoWriter:
    """Writes BGR frames to a video file with PyAV (H.264 in .mp4/.mkv, MPEG-4 part 2 otherwise).

    The size is taken from the first frame; every frame must have it. ``options`` go to the
    encoder (for x264, e.g. ``{"preset": "ultrafast", "crf": "23"}``).
    """

    def __init__(self, path: str | Path, fps: float, *, options: dict[str, str] | None = None) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fps = fps
        self._options: dict[str, object] = dict(options or {})
        self._container = av.open(str(self.path), mode="w")
        self._stream: av.VideoStream | None = None
        self.frames_written = 0

    def write(self, image: NDArray[np.uint8]) -> None:
        stream = self._stream if self._stream is not None else self._open(image)
        width, height = int(stream.width), int(stream.height)
        if image.shape[1] - image.shape[1] % 2 != width or image.shape[0] - image.shape[0] % 2 != height:
            raise ValueError(f"frame size {image.shape[1]}x{image.shape[0]} differs from {width}x{height}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:height, :width]), format="bgr24")
        for packet in stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def _open(self, image: NDArray[np.uint8]) -> av.VideoStream:
        codec = "libx264" if self.path.suffix.lower() in (".mp4", ".mkv", ".mov") else "mpeg4"
        stream = self._container.add_stream(codec, rate=round(self._fps))
        if not isinstance(stream, av.VideoStream):
            raise TypeError(f"{codec} did not open a video stream")
        stream.width = image.shape[1] - image.shape[1] % 2  # yuv420p needs even sizes
        stream.height = image.shape[0] - image.shape[0] % 2
        stream.pix_fmt = "yuv420p"
        if self._options:
            stream.options = dict(self._options)
        self._stream = stream
        return stream

    def close(self) -> None:
        if self._stream is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
