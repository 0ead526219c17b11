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
  - Each tracked frame updates its camera's ``TrackletBuilder``. The frames of a group of
    overlapping calibrated views are first fused on the ground, one instant at a time
    (``GroundFusion``): each row then views a ground track, and the ground tracks are the
    tracklets of the group, as of one wide camera.
  - Every ``period_s`` of site time, the tracklets confirmed since (``min_samples`` rows) of every
    camera and group get a global id (``OnlineAssociator``), and the assigned ones are refreshed;
    when a refresh moves a tracklet to another identity, the sinks are told again (a correction).
  - A track not seen for ``end_after_s`` is finished: handed to the sinks with its rows and
    global id (a service indexes it then). It stays in its tracklet, refreshed and open to
    corrections of its identity, until it is not seen for ``forget_after_s`` (by default the
    same); then it is dropped. An identity not seen for ``memory_s`` is forgotten (no new track
    can join it). Memory, and the cost of associating a track, follow what was seen recently, not the
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
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
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
from crossview.multicam.fusion import GroundFusion
from crossview.multicam.topology import CameraTopology
from crossview.multicam.tracklets import TrackletBuilder
from crossview.track.base import Tracker

__all__ = [
    "GROUND_XY",
    "CameraStage",
    "CameraStats",
    "CameraThread",
    "Ended",
    "FinishedTrack",
    "RunResult",
    "Sink",
    "SiteStage",
    "TimeOrder",
    "TrackedFrame",
    "run_cameras",
]

CAMERA_STAGES: Final = ("detect", "embed", "track", "total")
BLANK_LEVEL: Final = 2.0
GROUND_XY: Final = "ground_xy"  # Detections.data column: (N, 2) site metres, written by the site stage
UNKNOWN_SIDE: Final = 65_535  # pixels: the image size of pushed detections whose camera is not declared


@dataclass(frozen=True, slots=True)
class TrackedFrame:
    """A camera stage's message: one frame's tracked, embedded detections, with the frame's image
    when there is one (pulled frames and pushed images; None for pushed detections)."""

    camera_id: str
    index: int
    timestamp: float
    detections: Detections
    image: NDArray[np.uint8] | None = None

    @classmethod
    def of(cls, frame: Frame, detections: Detections) -> TrackedFrame:
        return cls(frame.camera_id, frame.index, frame.timestamp, detections, frame.image)

    @property
    def size(self) -> tuple[int, int] | None:
        """``(width, height)`` of the image, when there is one."""
        if self.image is None:
            return None
        return int(self.image.shape[1]), int(self.image.shape[0])


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
class Ended:
    """A camera stage's last message: its source ended, and why, if it failed."""

    camera_id: str
    error: str | None


ModelCall = Callable[..., Any]


def _direct(model: str, function: Callable[..., Any], *args: Any) -> Any:
    return function(*args)


class Sink:
    """Receives the run's results in site time order. Override what you need; the rest do nothing."""

    def frame(self, tracked: TrackedFrame) -> None:
        """A camera's tracked frame."""

    def assigned(self, tracklet: Tracklet, global_id: int) -> None:
        """A confirmed tracklet got its global id; again with another id if later evidence moved
        it to another identity (a correction: what was said of it before was wrong)."""

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

    ``perceive`` (detect, keep the site's ``classes``, embed) and ``track`` are the two steps; a
    caller that is handed frames (the service, for pushed images) calls them itself, and
    ``frames`` runs them over the camera's own ``source``. ``skip_blank`` leaves out pulled frames
    that are all black, and ``warn`` is told when a feed goes blank and when it comes back.
    """

    def __init__(
        self,
        source: FrameSource | None,
        detector: Detector,
        embedder: Embedder | None,
        tracker: Tracker,
        *,
        camera_id: str | None = None,
        skip_blank: bool = True,
        classes: frozenset[int] | None = None,
        warn: Callable[[str], None] = lambda message: None,
        max_frames: int | None = None,
    ) -> None:
        if camera_id is None:
            if source is None:
                raise ValueError("a camera stage without a source needs its camera_id")
            camera_id = source.camera_id
        self.camera_id = camera_id
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

    def perceive(self, frames: Sequence[Frame], call: ModelCall = _direct) -> list[Detections]:
        """Detect and embed frames (no tracking: a failure here leaves the camera's state as it
        was). ``call(model, function, *args)`` runs each model call ("detector", "embedder"), for
        a caller that guards them (circuit breakers)."""
        if not frames:
            return []
        latency = self.stats.latency
        started = time.perf_counter()
        found: list[Detections] = call("detector", self.detector.detect, frames)
        if self.classes is not None:
            wanted = np.fromiter(self.classes, np.int64)
            found = [d[np.isin(d.class_id, wanted)] for d in found]
        detected = time.perf_counter()
        for _ in frames:  # per frame, as the stage's figures are
            latency["detect"].record((detected - started) / len(frames))
        if self.embedder is None:  # tracking alone (no association, no search)
            return found
        embedded: list[Detections] = call("embedder", self.embedder.embed, frames, found)
        done = time.perf_counter()
        for _ in frames:
            latency["embed"].record((done - detected) / len(frames))
        return embedded

    def track(self, detections: Detections, image: NDArray[np.uint8] | None = None) -> TrackedFrame:
        """Track one frame's detections (its ``frame_index`` and ``timestamp`` set), in time order."""
        if detections.timestamp is None or detections.frame_index is None:
            raise ValueError(f"camera {self.camera_id!r}: detections need a frame_index and timestamp")
        started = time.perf_counter()
        tracked = self.tracker.update(detections)
        elapsed = time.perf_counter() - started
        self.stats.latency["track"].record(elapsed)
        self.stats.frames += 1
        self._last_time = max(self._last_time, detections.timestamp)
        return TrackedFrame(self.camera_id, detections.frame_index, detections.timestamp, tracked, image)

    def frames(self, stop: threading.Event | None = None) -> Iterator[TrackedFrame]:
        """The camera's tracked frames, in order, until its source ends (or ``stop`` is set)."""
        if self.source is None:
            raise ValueError(f"camera {self.camera_id!r} has no source to pull (frames are pushed)")
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
            (found,) = self.perceive([frame])
            tracked = self.track(found, frame.image)
            self.stats.latency["total"].record(time.perf_counter() - started)
            yield tracked

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


@dataclass(slots=True)
class _Group:
    """Overlapping calibrated views fused on the ground, one unit of association: its ground tracks
    are the tracklets of one wide view named ``id`` (its cameras' ids joined by ``+``)."""

    id: str
    fusion: GroundFusion
    tracks: TrackletBuilder  # the ground tracks: fused positions, the views' appearance
    instant: dict[str, TrackedFrame] = field(default_factory=dict)  # the frames being gathered


class SiteStage:
    """Tracklets per camera, global ids every ``period_s`` of site time, finished tracks to sinks.

    Global ids are made two ways at once (``FusionSpec`` says when each is right):

    - each camera outside ``fusion`` is one unit of association: its tracks are its tracklets;
    - each ``GroundFusion`` of ``fusion`` (a group of overlapping calibrated views) is one unit: the
      frames of one instant (within ``sync_s`` of each other, one per camera) are fused on the
      ground, and each ground track, with its fused positions and its views' appearance, is a
      tracklet of the group. A camera's tracks are then its views of the ground tracks
      (``tracker_id`` = the ground track's id in the group).

    The units' tracklets are joined across units (and within one: re-entries) by the
    ``OnlineAssociator``, over the topology with each group taken as one camera
    (``CameraTopology.grouped``). Every row takes its unit tracklet's global id.
    """

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
        end_after_s: float | None = None,
        memory_s: float = 3600.0,
        classify_by_size: bool = True,
        fusion: Sequence[GroundFusion] = (),
        sync_s: float = 0.05,
    ) -> None:
        if period_s <= 0 or forget_after_s <= 0 or min_samples < 1:
            raise ValueError("period_s and forget_after_s must be positive, min_samples at least 1")
        if memory_s < forget_after_s:
            raise ValueError(f"memory_s ({memory_s}) must be at least forget_after_s ({forget_after_s})")
        self.cameras = dict(cameras)
        self.groups = [
            _Group(name, group, TrackletBuilder(Camera(id=name, width=1, height=1), classify_by_size=False))
            for group in fusion
            for name in ["+".join(camera.id for camera in group.cameras)]
        ]
        self._group_of: dict[str, _Group] = {}
        for group in self.groups:
            for camera in group.fusion.cameras:
                if camera.id in self._group_of:
                    raise ValueError(f"camera {camera.id!r} is in two fused groups")
                self._group_of[camera.id] = group
        units = {camera_id: group.id for camera_id, group in self._group_of.items()}
        self.associator = OnlineAssociator(None if topology is None else topology.grouped(units), association)
        self.sinks = list(sinks)
        self.min_samples = min_samples
        self.period_s = period_s
        self.forget_after_s = forget_after_s
        self.end_after_s = forget_after_s if end_after_s is None else min(end_after_s, forget_after_s)
        self._ended: set[tuple[str, int]] = set()  # tracks handed to the sinks, not yet dropped
        self._told: dict[tuple[str, int], int] = {}  # the global id the sinks were last told of a track
        self.memory_s = memory_s
        self.classify_by_size = classify_by_size
        self.builders: dict[str, TrackletBuilder] = {}
        self.latency = LatencyHistogram()
        self.now = -np.inf
        self._next_tick: float | None = None
        self.sync_s = sync_s

    @property
    def identities(self) -> int:
        """Global ids given so far."""
        return self.associator.identities

    def global_id(self, camera_id: str, track_id: int) -> int | None:
        """The global id of a camera's track (in a fused group: of the ground track it views)."""
        group = self._group_of.get(camera_id)
        return self.associator.global_id(camera_id if group is None else group.id, track_id)

    def apply(self, tracked: TrackedFrame) -> None:
        """One camera's tracked frame, in site time order (association runs first when it is due)."""
        if self._next_tick is None:
            self._next_tick = tracked.timestamp + self.period_s
        while tracked.timestamp >= self._next_tick - 1e-9:
            self.now = max(self.now, self._next_tick)  # every frame before the tick's time is in
            self.tick()
            self._next_tick += self.period_s
        self.now = max(self.now, tracked.timestamp)
        group = self._group_of.get(tracked.camera_id)
        if group is None:
            self._emit(tracked)
            return
        instant = group.instant
        if instant and (
            tracked.camera_id in instant
            or tracked.timestamp - min(frame.timestamp for frame in instant.values()) > self.sync_s
        ):
            self._fuse(group)
        group.instant[tracked.camera_id] = tracked

    def _emit(self, tracked: TrackedFrame) -> None:
        """Add a frame to its camera's tracklets and hand it, located and labelled, to the sinks."""
        detections = tracked.detections
        if detections.embedding is not None or not np.any(detections.tracker_id >= 0):
            ground = self._builder(tracked).update(detections)
        else:  # pushed detections without embeddings: stored and tracked, not associated
            ground = np.full((len(detections), 2), np.nan)
        tracked = replace(tracked, detections=self._located(tracked.camera_id, detections, ground))
        for sink in self.sinks:
            sink.frame(tracked)

    def _fuse(self, group: _Group) -> None:
        """Fuse a group's gathered instant: each row views a ground track (its ``tracker_id``) and
        is placed where its view put it; the ground tracks seen add to the group's tracklets."""
        frames, group.instant = group.instant, {}
        when = min(tracked.timestamp for tracked in frames.values())
        given = {camera_id: tracked.detections for camera_id, tracked in frames.items()}
        if self.classify_by_size:  # a detector that names no classes: the fusion's models need them
            for camera_id, tracked in frames.items():
                locator = self._builder(tracked).locator
                if locator is not None and len(given[camera_id]):
                    given[camera_id] = given[camera_id].replace(
                        class_id=locator.classify(given[camera_id].xyxy)
                    )
        fused = group.fusion.update(when, given)
        views = {
            camera_id: tracked.detections.replace(
                tracker_id=fused.global_ids[camera_id],
                data={**tracked.detections.data, GROUND_XY: fused.ground[camera_id]},
            )
            for camera_id, tracked in frames.items()
        }  # (the classes as detected: the cameras' tracklets classify their own)
        seen = [v[v.tracker_id >= 0] for v in views.values() if v.embedding is not None]
        rows = Detections.concatenate(seen) if seen else Detections.empty()
        if len(rows):  # one row per ground track: where the fusion put it, its views' appearance
            ids, view_of = np.unique(rows.tracker_id, return_inverse=True)
            assert rows.embedding is not None
            weight = np.maximum(rows.confidence.astype(np.float64), 1e-6)
            appearance = np.zeros((len(ids), rows.embedding.shape[1]))
            np.add.at(appearance, view_of, weight[:, None] * rows.embedding)
            appearance /= np.bincount(view_of, weight)[:, None]
            confidence = np.zeros(len(ids), np.float32)
            np.maximum.at(confidence, view_of, rows.confidence)
            slot = np.searchsorted(fused.track_ids, ids)  # every viewed track is a confirmed one
            group.tracks.add_located(
                when,
                Detections(
                    np.zeros((len(ids), 4), np.float32),
                    confidence,
                    fused.class_ids[slot],
                    tracker_id=ids,
                    embedding=appearance.astype(np.float32),
                    camera_id=group.id,
                    timestamp=when,
                ),
                fused.positions[slot],
            )
        for camera_id, tracked in frames.items():
            self._emit(replace(tracked, detections=views[camera_id]))

    def _located(self, camera_id: str, detections: Detections, ground: NDArray[np.float64]) -> Detections:
        """The detections with what the site knows of them: ``global_id`` where the row's track
        has one by now (-1 before its tracklet is confirmed and associated) and ``data["ground_xy"]``,
        its position in site metres (NaN where not located; a fused view's own, when it has one)."""
        ids = [-1 if t < 0 else self.global_id(camera_id, t) for t in detections.tracker_id.tolist()]
        global_id = np.array([-1 if g is None else g for g in ids], np.int64)
        data = detections.data if GROUND_XY in detections.data else {**detections.data, GROUND_XY: ground}
        return detections.replace(global_id=global_id, data=data)

    def tick(self) -> None:
        """Give the newly confirmed tracklets of every unit global ids, refresh the assigned ones,
        tell the sinks of every camera track's id, new or corrected; finish old tracks."""
        started = time.perf_counter()
        units = [b for c, b in self.builders.items() if c not in self._group_of]
        units += [group.tracks for group in self.groups]
        fresh: list[Tracklet] = []
        known: list[Tracklet] = []
        for builder in units:
            for tracklet in builder.tracklets(min_samples=self.min_samples):
                is_new = self.associator.global_id(tracklet.camera_id, tracklet.track_id) is None
                (fresh if is_new else known).append(tracklet)
        for tracklet in known:
            self.associator.update(tracklet)
        fresh.sort(key=lambda t: t.t_start)
        self.associator.assign(fresh)
        groups = {group.id for group in self.groups}
        views = [t for t in [*known, *fresh] if t.camera_id not in groups]  # the cameras' own
        for camera_id, builder in self.builders.items():  # and the fused cameras' views
            if camera_id in self._group_of:
                views += builder.tracklets(min_samples=self.min_samples)
        self._tell(views)
        self._finish(self.now - self.end_after_s, self.now - self.forget_after_s)
        self.associator.forget_before(self.now - self.memory_s)
        self.latency.record(time.perf_counter() - started)

    def _tell(self, tracklets: Sequence[Tracklet]) -> None:
        """Tell the sinks the global id of each camera tracklet whose id is new or changed:
        corrections first, then new ones, earliest first."""
        news = []
        for tracklet in tracklets:
            number = self.global_id(tracklet.camera_id, tracklet.track_id)
            told = self._told.get(tracklet.key)
            if number is not None and told != number:
                news.append((told is None, tracklet.t_start, tracklet, number))
        news.sort(key=lambda item: item[:2])
        for _, _, tracklet, number in news:
            self._told[tracklet.key] = number
            for sink in self.sinks:
                sink.assigned(tracklet, number)

    def close(self) -> None:
        """The run is over: a last association, then every track is finished and the sinks closed."""
        for group in self.groups:
            if group.instant:
                self._fuse(group)
        self.tick()
        self._finish(np.inf, np.inf)
        for sink in self.sinks:
            sink.close()

    def end_camera(self, camera_id: str) -> None:
        """A camera's source ended: its tracks are finished now (kept for corrections as usual)."""
        builder = self.builders.get(camera_id)
        if builder is not None:
            self._finish(np.inf, -np.inf, {camera_id: builder})

    def finish_camera(self, camera_id: str) -> None:
        """A camera went away (released): its tracks are finished and its per-track state dropped;
        it starts afresh if it comes back."""
        builder = self.builders.pop(camera_id, None)
        if builder is not None:
            self._finish(np.inf, np.inf, {camera_id: builder})

    def _finish(
        self, end_before: float, forget_before: float, builders: Mapping[str, TrackletBuilder] | None = None
    ) -> None:
        """Hand the tracks last seen before ``end_before`` to the sinks (once each) and drop those
        last seen before ``forget_before``."""
        for builder in (self.builders if builders is None else builders).values():
            for track_id in builder.ended(end_before):
                key = (builder.camera.id, track_id)
                if key not in self._ended:
                    tracklet = builder.tracklet(track_id)
                    finished = FinishedTrack(
                        tracklet, self.global_id(tracklet.camera_id, track_id), *builder.rows(track_id)
                    )
                    self._ended.add(key)
                    for sink in self.sinks:
                        sink.finished(finished)
            if forget_before > -np.inf:
                for track_id in builder.ended(forget_before):
                    key = (builder.camera.id, track_id)
                    self._ended.discard(key)
                    self._told.pop(key, None)
                    if forget_before < np.inf or builders is not None:
                        builder.forget(track_id)
        if builders is None and -np.inf < forget_before < np.inf:
            for group in self.groups:
                for track_id in group.tracks.ended(forget_before):
                    group.tracks.forget(track_id)

    def _builder(self, tracked: TrackedFrame) -> TrackletBuilder:
        builder = self.builders.get(tracked.camera_id)
        if builder is None:
            camera = self.cameras.get(tracked.camera_id)
            if camera is None:  # uncalibrated: the frame gives the size (unknown: no box is cut)
                width, height = tracked.size or (UNKNOWN_SIDE, UNKNOWN_SIDE)
                camera = Camera(id=tracked.camera_id, width=width, height=height)
            builder = self.builders[tracked.camera_id] = TrackletBuilder(
                camera, classify_by_size=self.classify_by_size
            )
        return builder


class CameraThread:
    """Runs one camera stage over its source in a thread; its tracked frames wait in a bounded
    queue (a full queue holds the camera back: backpressure), then one ``Ended`` message. A
    source that fails ends its camera with the error, for the caller to report."""

    def __init__(self, stage: CameraStage, *, queue_size: int = 16) -> None:
        if stage.source is None:
            raise ValueError(f"camera {stage.camera_id!r} has no source to pull")
        self.stage = stage
        self._outbox: queue.Queue[TrackedFrame | Ended] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name=f"camera-{stage.camera_id}", daemon=True)

    @property
    def camera_id(self) -> str:
        return self.stage.camera_id

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout=timeout)

    def get(self, timeout: float | None = None) -> TrackedFrame | Ended | None:
        """The next message; None when there is none within ``timeout`` (0: do not wait)."""
        try:
            if timeout == 0:
                return self._outbox.get_nowait()
            return self._outbox.get(timeout=timeout)
        except queue.Empty:
            return None

    def _work(self) -> None:
        error = None
        source = self.stage.source
        assert source is not None
        try:
            with source:
                for tracked in self.stage.frames(self._stop):
                    self._send(tracked)
        except (SourceError, OSError, ValueError, RuntimeError) as failure:
            error = f"{type(failure).__name__}: {failure}"
            self.stage.stats.error = error
        self._send(Ended(self.stage.camera_id, error))

    def _send(self, message: TrackedFrame | Ended) -> None:
        """Wait for room in the queue, unless the thread is told to stop (then the reader is gone)."""
        while not self._stop.is_set():
            try:
                self._outbox.put(message, timeout=0.5)
                return
            except queue.Full:
                continue


class TimeOrder:
    """Merges the cameras' tracked frames into site time order.

    Each camera's frames come in its own time order; ``release(waiting)`` gives back, in
    ``(timestamp, camera order)`` order, the held frames that no waited-for camera can still
    precede: those no later than the latest frame pushed by every camera in ``waiting``. A camera
    left out of ``waiting`` (ended, or a live feed that is late) holds nothing back. So one input
    gives one order, however the cameras' work was scheduled.

    >>> import numpy as np
    >>> from crossview.core.detections import Detections
    >>> def at(camera, t):
    ...     return TrackedFrame(camera, int(t * 10), t, Detections.empty())
    >>> order = TimeOrder(["a", "b"])
    >>> order.push(at("a", 0.1)); order.push(at("a", 0.2)); order.push(at("b", 0.1))
    >>> [(f.camera_id, f.timestamp) for f in order.release({"a", "b"})]
    [('a', 0.1), ('b', 0.1)]
    >>> [(f.camera_id, f.timestamp) for f in order.release({"a"})]
    [('a', 0.2)]
    """

    def __init__(self, cameras: Sequence[str] = ()) -> None:
        self._rank = {camera_id: number for number, camera_id in enumerate(cameras)}
        self._heap: list[tuple[float, int, int, TrackedFrame]] = []
        self._latest: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._pushed = 0

    def push(self, tracked: TrackedFrame) -> None:
        camera_id = tracked.camera_id
        rank = self._rank.setdefault(camera_id, len(self._rank))
        self._latest[camera_id] = max(self._latest.get(camera_id, -np.inf), tracked.timestamp)
        self._held[camera_id] = self._held.get(camera_id, 0) + 1
        heapq.heappush(self._heap, (tracked.timestamp, rank, self._pushed, tracked))
        self._pushed += 1

    def pending(self, camera_id: str | None = None) -> int:
        """Frames held (of one camera, or of all)."""
        if camera_id is None:
            return len(self._heap)
        return self._held.get(camera_id, 0)

    def release(self, waiting: Collection[str]) -> list[TrackedFrame]:
        bound = min((self._latest.get(c, -np.inf) for c in waiting), default=np.inf)
        released = []
        while self._heap and self._heap[0][0] <= bound:
            tracked = heapq.heappop(self._heap)[3]
            self._held[tracked.camera_id] -= 1
            released.append(tracked)
        return released


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
            "global_ids": self.site.identities,
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

    threads = {stage.camera_id: CameraThread(stage, queue_size=queue_size) for stage in stages}
    started = time.perf_counter()
    for thread in threads.values():
        thread.start()
    order = TimeOrder(list(threads))
    running = set(threads)
    applied = dict.fromkeys(threads, 0)
    try:
        while running or order.pending():
            late = set()
            for camera_id in sorted(c for c in running if not order.pending(c)):
                message = threads[camera_id].get(timeout=lateness_s if camera_id in live else None)
                if message is None:
                    late.add(camera_id)  # a silent stream: not waited for this time
                elif isinstance(message, Ended):
                    running.discard(camera_id)
                    if message.error is not None:
                        note(f"camera {camera_id} stopped: {message.error}")
                else:
                    order.push(message)
            for tracked in order.release(running - late):
                site.apply(tracked)
                applied[tracked.camera_id] += 1
                if progress is not None:
                    progress(tracked.camera_id, applied[tracked.camera_id])
        site.close()
    finally:
        for thread in threads.values():
            thread.stop()
    return RunResult(
        {stage.camera_id: stage.stats for stage in stages}, site, time.perf_counter() - started, warnings
    )
