"""The perception chain of any number of cameras: detect, embed (optional), track.

``Pipeline`` is the runtime's ``CameraStage`` (``crossview.runtime.engine``), one per camera,
behind one call for frames of any cameras: ``crossview track``, ``crossview index build`` and the
benchmarks run it, and ``crossview run``, the demo and the service run the same stages. Each
camera gets its own stage (its tracker) on its first frame; every stage's time per frame is
recorded in mergeable latency histograms.
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
from crossview.runtime.engine import CAMERA_STAGES, CameraStage
from crossview.track.base import Tracker

STAGES = CAMERA_STAGES


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
    ...         return [Detections.empty(camera_id=f.camera_id, frame_index=f.index,
    ...                                  timestamp=f.timestamp) for f in frames]
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
        self.stages: dict[str, CameraStage] = {}
        self._total = LatencyHistogram()

    def stage(self, camera_id: str) -> CameraStage:
        """The stage of one camera (created on first use)."""
        stage = self.stages.get(camera_id)
        if stage is None:
            stage = self.stages[camera_id] = CameraStage(
                None, self.detector, self.embedder, self._tracker_factory(), camera_id=camera_id
            )
        return stage

    def tracker(self, camera_id: str) -> Tracker:
        """The tracker of one camera (created on first use)."""
        return self.stage(camera_id).tracker

    def process(self, frames: Sequence[Frame]) -> list[Detections]:
        """Tracked detections for a batch of frames (in order; a camera's frames in time order).

        Each camera's frames are detected and embedded together, then tracked one by one."""
        if not frames:
            return []
        started = time.perf_counter()
        by_camera: dict[str, list[int]] = {}
        for number, frame in enumerate(frames):
            by_camera.setdefault(frame.camera_id, []).append(number)
        tracked: list[Detections | None] = [None] * len(frames)
        for camera_id, numbers in by_camera.items():
            stage = self.stage(camera_id)
            found = stage.perceive([frames[n] for n in numbers])
            for number, detections in zip(numbers, found, strict=True):
                tracked[number] = stage.track(detections).detections
        per_frame = (time.perf_counter() - started) / len(frames)
        for _ in frames:
            self._total.record(per_frame)
        return [d for d in tracked if d is not None]

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

    @property
    def latency(self) -> dict[str, LatencyHistogram]:
        """Per-stage latency per frame over every camera (``total``: the whole call, per frame)."""
        merged = {stage: LatencyHistogram() for stage in STAGES}
        for camera in self.stages.values():
            for name, histogram in camera.stats.latency.items():
                if name != "total":
                    merged[name].merge(histogram)
        merged["total"].merge(self._total)
        return merged

    def latency_summary(self) -> dict[str, LatencySummary]:
        """Per-stage latency per frame (ms), stages that ran only."""
        return {stage: hist.summary() for stage, hist in self.latency.items() if hist.count}
