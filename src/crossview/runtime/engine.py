"""The runtime graph: one ``CameraStage`` per camera, one ``SiteStage``, and sinks.

::

    source ─▶ CameraStage (thread): skip dead frames ─▶ detect ─▶ embed ─▶ track ─┐ TrackedFrame
    source ─▶ CameraStage (thread): ...                                          ─┤ (bounded queues)
                                                                                  ▼
              SiteStage: merge in time order ─▶ tracklets per camera ─▶ global ids every period
                                                  │                          │
                                                  ▼                          ▼
                               sinks: frame(TrackedFrame)   assigned(tracklet, id), finished(FinishedTrack)

- **Camera stages** run concurrently, one thread each (OpenCV and onnxruntime release the GIL).
  Each pulls its own source: a video file, an image folder or a live stream, which reconnects as
  ``StreamSource`` does. It owns its detector and tracker, since both keep state per camera; the
  embedder is shared, since embedders keep none. A source that fails ends its camera, reported;
  the others go on. Frames that are all black (a dead feed: mean level under 2 of 255) are
  skipped and reported when the feed dies and when it comes back.
- **The site stage** consumes the cameras' messages *in timestamp order*, merged. So its result
  does not depend on how the threads were scheduled: one input always gives the same global
  ids. It waits for every running camera's next message; a live stream that is silent for
  ``lateness_s`` is not waited for.
  - Each tracked frame updates its camera's ``TrackletBuilder``.
  - Every ``period_s`` of site time, the tracklets confirmed since (``min_samples`` rows) get a
    global id (``OnlineAssociator``), and the assigned ones are refreshed.
  - A track not seen for ``forget_after_s`` is finished: handed to the sinks with its rows and
    global id, then dropped; an identity not seen for ``memory_s`` is forgotten (no new track can
    join it). Memory, and the cost of associating a track, follow what was seen recently, not the
    hours recorded.
- **Sinks** see every tracked frame, every assignment and every finished track, in site time
  order. At the end of the run every remaining track is finished.

Messages are plain frozen dataclasses (``TrackedFrame``, ``FinishedTrack``), so the stages can move
to other processes (Ray) without changing what they say to each other.
"""

from __future__ import annotations

import heapq
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from crossview.core.camera import Camera
from crossview.core.detections import Detections
from crossview.core.frame import Frame
from crossview.detect.base import Detector
from crossview.embed.base import Embedder
from crossview.eval.latency import LatencyHistogram, LatencySummary
from crossview.io.sources import FrameSource, SourceError
from crossview.multicam.association import AssociationConfig, OnlineAssociator, Tracklet
from crossview.multicam.topology import CameraTopology
from crossview.multicam.tracklets import TrackletBuilder
from crossview.track.base import Tracker

__all__ = [
    "CameraStage",
    "CameraStats",
    "FinishedTrack",
    "RunResult",
    "Sink",
    "SiteStage",
    "TrackedFrame",
    "run_cameras",
]

CAMERA_STAGES: Final = ("detect", "embed", "track", "total")
BLANK_LEVEL: Final = 2.0


@dataclass(frozen=True, slots=True)
class TrackedFrame:
    """A camera stage's message: one frame and its tracked, embedded detections."""

    frame: Frame
    detections: Detections

    @property
    def camera_id(self) -> str:
        return self.frame.camera_id

    @property
    def timestamp(self) -> float:
        return self.frame.timestamp


@dataclass(frozen=True, slots=True)
class FinishedTrack:
    """A track that ended: its tracklet, every row, and its global id (None: never associated,
    e.g. shorter than ``min_samples``)."""

    tracklet: Tracklet
    global_id: int | None
    frames: NDArray[np.int64]
    boxes: NDArray[np.float32]
    ground: NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class _Ended:
    """A camera stage's last message: how many frames it gave and why it stopped early, if it did."""

    camera_id: str
    error: str | None


class Sink:
    """Receives the run's results in site time order. Override what you need; the rest do nothing."""

    def frame(self, tracked: TrackedFrame) -> None:
        """A camera's tracked frame."""

    def assigned(self, tracklet: Tracklet, global_id: int) -> None:
        """A confirmed tracklet got its global id (once per tracklet)."""

    def finished(self, track: FinishedTrack) -> None:
        """A track ended (or the run did)."""

    def close(self) -> None:
        """The run is over; write what is kept."""


@dataclass(slots=True)
class CameraStats:
    """What one camera stage did."""

    frames: int = 0
    skipped_blank: int = 0
    skipped_out_of_order: int = 0
    error: str | None = None
    latency: dict[str, LatencyHistogram] = field(
        default_factory=lambda: {stage: LatencyHistogram() for stage in CAMERA_STAGES}
    )


class CameraStage:
    """``source -> detect -> embed -> track`` for one camera, frame by frame (see the module docstring).

    ``skip_blank`` leaves out frames that are all black, and ``warn`` is told when a feed goes
    blank and when it comes back. ``classes`` keeps only detections of those classes (the site's).
    """

    def __init__(
        self,
        source: FrameSource,
        detector: Detector,
        embedder: Embedder,
        tracker: Tracker,
        *,
        skip_blank: bool = True,
        classes: frozenset[int] | None = None,
        warn: Callable[[str], None] = lambda message: None,
        max_frames: int | None = None,
    ) -> None:
        self.source = source
        self.classes = classes
        self.detector = detector
        self.embedder = embedder
        self.tracker = tracker
        self.skip_blank = skip_blank
        self.max_frames = max_frames
        self.stats = CameraStats()
        self._warn = warn
        self._blank_since: float | None = None
        self._last_time = -np.inf

    @property
    def camera_id(self) -> str:
        return self.source.camera_id

    def frames(self, stop: threading.Event | None = None) -> Iterator[TrackedFrame]:
        """The camera's tracked frames, in order, until its source ends (or ``stop`` is set)."""
        latency = self.stats.latency
        for frame in self.source:
            if (stop is not None and stop.is_set()) or (
                self.max_frames is not None and self.stats.frames >= self.max_frames
            ):
                return
            if frame.timestamp <= self._last_time:  # a repeated or backwards clock (duplicate PTS)
                self.stats.skipped_out_of_order += 1
                if self.stats.skipped_out_of_order == 1:
                    self._warn(
                        f"camera {frame.camera_id}: frame {frame.index} at {frame.timestamp:.3f} s is not "
                        f"after the previous one ({self._last_time:.3f} s); such frames are skipped"
                    )
                continue
            self._last_time = frame.timestamp
            if self.skip_blank and not self._alive(frame):
                self.stats.skipped_blank += 1
                continue
            started = time.perf_counter()
            found = self.detector.detect([frame])
            if self.classes is not None:
                found = [d[np.isin(d.class_id, list(self.classes))] for d in found]
            detected = time.perf_counter()
            (embedded,) = self.embedder.embed([frame], found)
            done_embedding = time.perf_counter()
            tracked = self.tracker.update(embedded)
            finished = time.perf_counter()
            latency["detect"].record(detected - started)
            latency["embed"].record(done_embedding - detected)
            latency["track"].record(finished - done_embedding)
            latency["total"].record(finished - started)
            self.stats.frames += 1
            yield TrackedFrame(frame, tracked)

    def _alive(self, frame: Frame) -> bool:
        blank = float(frame.image[::8, ::8].mean()) < BLANK_LEVEL
        if blank and self._blank_since is None:
            self._blank_since = frame.timestamp
            self._warn(f"camera {frame.camera_id} went silent (blank frames) at {frame.timestamp:.1f} s")
        elif not blank and self._blank_since is not None:
            self._warn(
                f"camera {frame.camera_id} is back at {frame.timestamp:.1f} s after "
                f"{frame.timestamp - self._blank_since:.1f} s of silence; "
                "tracks across the gap are new tracks"
            )
            self._blank_since = None
        return not blank


class SiteStage:
    """Tracklets per camera, global ids every ``period_s`` of site time, finished tracks to sinks."""

    def __init__(
        self,
        cameras: Mapping[str, Camera],
        topology: CameraTopology | None,
        association: AssociationConfig,
        *,
        sinks: Sequence[Sink] = (),
        min_samples: int = 5,
        period_s: float = 1.0,
        forget_after_s: float = 600.0,
        memory_s: float = 3600.0,
        classify_by_size: bool = True,
    ) -> None:
        if period_s <= 0 or forget_after_s <= 0 or min_samples < 1:
            raise ValueError("period_s and forget_after_s must be positive, min_samples at least 1")
        if memory_s < forget_after_s:
            raise ValueError(f"memory_s ({memory_s}) must be at least forget_after_s ({forget_after_s})")
        self.cameras = dict(cameras)
        self.associator = OnlineAssociator(topology, association)
        self.sinks = list(sinks)
        self.min_samples = min_samples
        self.period_s = period_s
        self.forget_after_s = forget_after_s
        self.memory_s = memory_s
        self.classify_by_size = classify_by_size
        self.builders: dict[str, TrackletBuilder] = {}
        self.latency = LatencyHistogram()
        self.now = -np.inf
        self._next_tick: float | None = None

    def apply(self, tracked: TrackedFrame) -> None:
        """One camera's tracked frame, in site time order (association runs first when it is due)."""
        if self._next_tick is None:
            self._next_tick = tracked.timestamp + self.period_s
        while tracked.timestamp >= self._next_tick - 1e-9:
            self.tick()
            self._next_tick += self.period_s
        self.now = max(self.now, tracked.timestamp)
        self._builder(tracked.frame).update(tracked.detections)
        for sink in self.sinks:
            sink.frame(tracked)

    def tick(self) -> None:
        """Give the newly confirmed tracklets global ids, refresh the assigned ones, finish old tracks."""
        started = time.perf_counter()
        fresh: list[Tracklet] = []
        for builder in self.builders.values():
            for tracklet in builder.tracklets(min_samples=self.min_samples):
                if self.associator.global_id(tracklet.camera_id, tracklet.track_id) is None:
                    fresh.append(tracklet)
                else:
                    self.associator.update(tracklet)
        fresh.sort(key=lambda t: t.t_start)
        for tracklet, global_id in zip(fresh, self.associator.assign(fresh), strict=True):
            for sink in self.sinks:
                sink.assigned(tracklet, global_id)
        self._finish(self.now - self.forget_after_s)
        self.associator.forget_before(self.now - self.memory_s)
        self.latency.record(time.perf_counter() - started)

    def close(self) -> None:
        """The run is over: a last association, then every track is finished and the sinks closed."""
        self.tick()
        self._finish(np.inf)
        for sink in self.sinks:
            sink.close()

    def _finish(self, before: float) -> None:
        for builder in self.builders.values():
            for track_id in builder.ended(before):
                tracklet = builder.tracklet(track_id)
                finished = FinishedTrack(
                    tracklet,
                    self.associator.global_id(tracklet.camera_id, track_id),
                    *builder.rows(track_id),
                )
                for sink in self.sinks:
                    sink.finished(finished)
                if before < np.inf:
                    builder.forget(track_id)

    def _builder(self, frame: Frame) -> TrackletBuilder:
        builder = self.builders.get(frame.camera_id)
        if builder is None:
            camera = self.cameras.get(frame.camera_id)
            if camera is None:  # uncalibrated: the frame gives the size
                height, width = frame.image.shape[:2]
                camera = Camera(id=frame.camera_id, width=width, height=height)
            builder = self.builders[frame.camera_id] = TrackletBuilder(
                camera, classify_by_size=self.classify_by_size
            )
        return builder


@dataclass(slots=True)
class RunResult:
    """What a run did: per camera its stats, the site stage, wall time and warnings."""

    cameras: dict[str, CameraStats]
    site: SiteStage
    seconds: float
    warnings: list[str]

    def latency(self) -> dict[str, LatencySummary]:
        """Per-frame stage latencies over all cameras, and the association pass's."""
        merged = {stage: LatencyHistogram() for stage in CAMERA_STAGES}
        for stats in self.cameras.values():
            for stage, histogram in stats.latency.items():
                merged[stage].merge(histogram)
        summaries = {stage: histogram.summary() for stage, histogram in merged.items()}
        summaries["associate (per period)"] = self.site.latency.summary()
        return summaries

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 3),
            "cameras": {
                camera_id: {
                    "frames": stats.frames,
                    "skipped_blank": stats.skipped_blank,
                    "fps": round(stats.frames / self.seconds, 2) if self.seconds > 0 else None,
                    "error": stats.error,
                }
                for camera_id, stats in self.cameras.items()
            },
            "global_ids": self.site.associator.identities,
            "latency_ms": {
                stage: {"p50": round(s.p50, 3), "p99": round(s.p99, 3), "count": s.count}
                for stage, s in self.latency().items()
            },
            "warnings": self.warnings,
        }


def run_cameras(
    stages: Sequence[CameraStage],
    site: SiteStage,
    *,
    live: frozenset[str] = frozenset(),
    lateness_s: float = 2.0,
    queue_size: int = 16,
    progress: Callable[[str, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> RunResult:
    """Run every camera stage in its own thread and the site stage over their merged messages.

    ``live`` names cameras not waited for beyond ``lateness_s`` (streams); ``progress`` is told
    ``(camera, frames so far)`` as frames are applied.
    """
    warnings: list[str] = []

    def note(message: str) -> None:
        warnings.append(message)
        if warn is not None:
            warn(message)

    stop = threading.Event()
    queues: dict[str, queue.Queue[TrackedFrame | _Ended]] = {
        stage.camera_id: queue.Queue(maxsize=queue_size) for stage in stages
    }

    def work(stage: CameraStage) -> None:
        outbox = queues[stage.camera_id]
        error = None
        try:
            with stage.source:
                for tracked in stage.frames(stop):
                    while not stop.is_set():
                        try:
                            outbox.put(tracked, timeout=0.5)
                            break
                        except queue.Full:
                            continue
        except (SourceError, OSError, ValueError, RuntimeError) as failure:
            error = f"{type(failure).__name__}: {failure}"
            stage.stats.error = error
        outbox.put(_Ended(stage.camera_id, error))

    threads = [
        threading.Thread(target=work, args=(stage,), name=f"camera-{stage.camera_id}", daemon=True)
        for stage in stages
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    order = {stage.camera_id: number for number, stage in enumerate(stages)}
    heads: list[tuple[float, int, TrackedFrame]] = []  # (timestamp, camera order, message)
    waiting = set(queues)  # running cameras with no message in ``heads``
    running = set(queues)
    applied = dict.fromkeys(queues, 0)
    try:
        while running or heads:
            for camera_id in sorted(waiting):
                try:
                    message = queues[camera_id].get(timeout=lateness_s if camera_id in live else None)
                except queue.Empty:
                    continue  # a silent stream: not waited for this time
                waiting.discard(camera_id)
                if isinstance(message, _Ended):
                    running.discard(camera_id)
                    if message.error is not None:
                        note(f"camera {camera_id} stopped: {message.error}")
                    continue
                heapq.heappush(heads, (message.timestamp, order[camera_id], message))
            if not heads:
                continue
            _, _, tracked = heapq.heappop(heads)
            site.apply(tracked)
            camera_id = tracked.camera_id
            applied[camera_id] += 1
            if progress is not None:
                progress(camera_id, applied[camera_id])
            if camera_id in running:
                waiting.add(camera_id)
        site.close()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    return RunResult(
        {stage.camera_id: stage.stats for stage in stages}, site, time.perf_counter() - started, warnings
    )
