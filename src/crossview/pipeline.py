"""The perception pipeline of one or more cameras: detect, embed (optional), track.

Stages are injected (any ``Detector``, ``Embedder`` and ``Tracker`` factory), so the same code
runs the CLI, benchmarks and the service. Each camera gets its own tracker, created on its
first frame. Every stage's time per frame is recorded in a mergeable latency histogram.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from crossview.core.detections import Detections
from crossview.core.frame import Frame
from crossview.detect.base import Detector
from crossview.embed.base import Embedder
from crossview.eval.latency import LatencyHistogram, LatencySummary
from crossview.track.base import Tracker

STAGES = ("detect", "embed", "track", "total")


@dataclass(frozen=True, slots=True)
class TrackedFrame:
    """A frame and its tracked detections (``tracker_id`` filled, -1 for untracked rows)."""

    frame: Frame
    detections: Detections


class Pipeline:
    """``detect -> embed -> track`` over batches of frames from any number of cameras.

    >>> import numpy as np
    >>> from crossview.track import SortTracker
    >>> class Nothing:
    ...     def detect(self, frames):
    ...         return [Detections.empty(camera_id=f.camera_id, frame_index=f.index) for f in frames]
    >>> pipeline = Pipeline(Nothing(), SortTracker)
    >>> frame = Frame(np.zeros((4, 4, 3), np.uint8), camera_id="c1", index=0, timestamp=0.0)
    >>> len(pipeline.process([frame])[0])
    0
    """

    def __init__(
        self,
        detector: Detector,
        tracker_factory: Callable[[], Tracker],
        embedder: Embedder | None = None,
    ) -> None:
        self.detector = detector
        self.embedder = embedder
        self._tracker_factory = tracker_factory
        self._trackers: dict[str, Tracker] = {}
        self.latency: dict[str, LatencyHistogram] = {stage: LatencyHistogram() for stage in STAGES}

    def tracker(self, camera_id: str) -> Tracker:
        """The tracker of one camera (created on first use)."""
        tracker = self._trackers.get(camera_id)
        if tracker is None:
            tracker = self._trackers[camera_id] = self._tracker_factory()
        return tracker

    def process(self, frames: Sequence[Frame]) -> list[Detections]:
        """Tracked detections for a batch of frames (in order; a camera's frames in time order)."""
        if not frames:
            return []
        start = time.perf_counter()
        detections = self.detector.detect(frames)
        detected = time.perf_counter()
        if self.embedder is not None:
            detections = self.embedder.embed(frames, detections)
        embedded = time.perf_counter()
        tracked = [
            self.tracker(frame.camera_id).update(d) for frame, d in zip(frames, detections, strict=True)
        ]
        done = time.perf_counter()
        per_frame = 1.0 / len(frames)  # batch stages are shared by the frames of the batch
        self.latency["detect"].record((detected - start) * per_frame)
        if self.embedder is not None:
            self.latency["embed"].record((embedded - detected) * per_frame)
        self.latency["track"].record((done - embedded) * per_frame)
        self.latency["total"].record((done - start) * per_frame)
        return tracked

    def run(self, frames: Iterable[Frame], *, batch_size: int = 1) -> Iterator[TrackedFrame]:
        """Process a stream of frames in batches of ``batch_size`` and yield each result."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        batch: list[Frame] = []
        for frame in frames:
            batch.append(frame)
            if len(batch) == batch_size:
                yield from self._emit(batch)
                batch = []
        if batch:
            yield from self._emit(batch)

    def _emit(self, batch: list[Frame]) -> Iterator[TrackedFrame]:
        for frame, detections in zip(batch, self.process(batch), strict=True):
            yield TrackedFrame(frame, detections)

    def latency_summary(self) -> dict[str, LatencySummary]:
        """Per-stage latency per frame (ms), stages that ran only."""
        return {stage: hist.summary() for stage, hist in self.latency.items() if hist.count}
