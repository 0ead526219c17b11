"""The service core, independent of HTTP: admission, the ingest worker, tracking, indexing,
cross-camera identities and search.

``Service`` owns one data directory: ``service.sqlite`` (``ServiceStore``: the ingest journal,
tracked detections and tracks), ``index/`` (a durable ``FaissIndex`` of ended tracks) and
``keys.sqlite`` (API keys, used by the HTTP layer).

Flow of one ingest batch (one camera, frames in time order): either detections with optional
embeddings (``submit``), or encoded images (``submit_images``) that the worker detects and embeds.

1. The batch is checked (shapes, embedding size, decodable images, time after the camera's last
   accepted frame) and admitted only while fewer than ``max_queued_batches`` wait; beyond that
   ``Overloaded`` is raised with a retry time, *before* anything is stored, so a refused batch
   was never acknowledged.
2. Admitted, the batch (and its images) is committed to the journal; only then is it acknowledged.
3. The worker thread processes journal batches oldest first: detection and embedding for images,
   each through its model's circuit breaker (a failing model leaves the batch queued, in order,
   for a later try), then the camera's tracker. The tracked detections and track spans are
   written while the batch is marked done, in one transaction.
4. A track idle for ``track_idle_s`` of its camera's time has ended. Its appearance (the
   confidence-weighted mean of its detections' embeddings, read back from the store) gives it a
   global identity (``OnlineAssociator``, with the site's topology and calibration when given)
   and is added to the index through the index's circuit breaker. While the breaker is open the
   track waits and is indexed once the index is healthy again; nothing is dropped.

``start`` restores the identities of recent tracks and indexes what a previous process left
open. ``stop`` refuses new batches, lets the worker finish what was accepted (up to
``drain_timeout_s``), indexes every remaining track (their trackers end with the process) and
flushes the index. Whatever was accepted but not processed in time stays in the journal for the
next start.
"""

from __future__ import annotations

import base64
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from crossview.core.camera import Camera
from crossview.core.detections import Detections
from crossview.core.frame import Frame
from crossview.detect.base import Detector
from crossview.detect.factory import make_detector
from crossview.embed.base import Embedder
from crossview.multicam.association import AssociationConfig, OnlineAssociator, Tracklet
from crossview.multicam.topology import CameraTopology
from crossview.multicam.tracklets import Locator
from crossview.search.engine import Hit, RerankMethod, SearchEngine
from crossview.search.faiss_index import FaissIndex
from crossview.search.index import Entry, Filter
from crossview.serve.breaker import BreakerConfig, BreakerOpenError, CircuitBreaker
from crossview.serve.store import DetectionRow, ServiceStore, TrackRow
from crossview.track.base import Tracker
from crossview.track.factory import make_tracker

# What a failing index raises (FAISS: RuntimeError; its SQLite and files: sqlite3.Error, OSError).
# Bad queries (ValueError) and unknown ids (KeyError) are the caller's and do not open the breaker.
BACKEND_ERRORS: tuple[type[BaseException], ...] = (RuntimeError, OSError, sqlite3.Error)


class SiteConfig(BaseModel):
    """What the service knows of the site for cross-camera identities (``--site site.json``).

    ``topology``: overlaps and transit windows (``CameraTopology``'s JSON form); ``cameras``:
    calibrated cameras, whose tracks are then located in metres and compared where views overlap.
    Without either, global identities rest on appearance and time alone.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    topology: CameraTopology | None = None
    cameras: tuple[Camera, ...] = ()
    association: AssociationConfig = Field(
        default_factory=lambda: AssociationConfig(max_cost=0.25, linkage="single")
    )
    memory_s: float = Field(
        default=3600.0,
        ge=0,
        description="on start, identities seen this long before the last stored track are restored",
    )


class ServiceConfig(BaseModel):
    """What a service instance keeps, admits and how it tracks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path
    tracker: str = "sort"
    detector: str = Field(default="motion", description="for image ingest: motion | yolox:M.onnx | ...")
    max_images_per_batch: int = Field(default=64, ge=1)
    frame_rate: float = Field(default=10.0, gt=0, description="cameras' frame rate, for tracker buffers")
    max_queued_batches: int = Field(default=256, ge=1)
    max_frames_per_batch: int = Field(default=300, ge=1)
    max_detections_per_frame: int = Field(default=500, ge=1)
    track_idle_s: float = Field(default=5.0, gt=0, description="a track idle this long has ended")
    drain_timeout_s: float = Field(default=10.0, ge=0)
    index_factory: str = "HNSW32"
    site: SiteConfig = Field(default_factory=SiteConfig)
    index_breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    model_breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    model_attempts: int = Field(
        default=3, ge=1, description="tries of one image batch whose model calls fail before it is failed"
    )


class Overloaded(RuntimeError):
    """The ingest queue is full: the batch was refused, not stored."""

    def __init__(self, queued: int, retry_after_s: float) -> None:
        self.queued = queued
        self.retry_after_s = retry_after_s
        super().__init__(f"ingest queue is full ({queued} batches waiting); retry in {retry_after_s:.1f} s")


class Unavailable(RuntimeError):
    """The service is starting or shutting down and takes no ingest."""


class BackendFailure(RuntimeError):
    """A backend (the index) failed on this call; its breaker counted it."""

    def __init__(self, backend: str, error: BaseException) -> None:
        self.backend = backend
        super().__init__(f"backend {backend!r} failed: {type(error).__name__}: {error}")


@dataclass(frozen=True, slots=True)
class FrameInput:
    """One frame of detections as submitted: ``xyxy`` ``(N, 4)``, per-row confidence and class."""

    frame_index: int
    timestamp: float
    xyxy: NDArray[np.float32]
    confidence: NDArray[np.float32]
    class_id: NDArray[np.int64]
    embedding: NDArray[np.float32] | None


@dataclass(frozen=True, slots=True)
class ImageInput:
    """One encoded frame (JPEG, PNG, ...) as submitted, to be detected by the service."""

    frame_index: int
    timestamp: float
    data: bytes


@dataclass(slots=True)
class _Camera:
    tracker: Tracker
    offset: int
    last_time: float = -np.inf


class Service:
    """Ingest, tracking, indexing and search over one data directory (thread-safe)."""

    def __init__(
        self,
        config: ServiceConfig,
        embedder: Embedder,
        *,
        on_breaker_change: Callable[[str, Any, Any], None] | None = None,
        on_stage: Callable[[str, float], None] | None = None,
        index: FaissIndex | None = None,
        detector: Detector | None = None,
    ) -> None:
        self.config = config
        self.embedder = embedder
        self.detector = detector or make_detector(config.detector)
        self.dim = embedder.dim
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = ServiceStore(config.data_dir / "service.sqlite")
        self.index = index or FaissIndex(config.data_dir / "index", self.dim, factory=config.index_factory)
        self.index_breaker = CircuitBreaker(
            "index", config.index_breaker, on_change=on_breaker_change, failures=BACKEND_ERRORS
        )
        # one per model runtime (onnxruntime raises RuntimeError subclasses), so that one model's
        # successes do not hide the other's failures
        self.model_breakers = {
            name: CircuitBreaker(
                name, config.model_breaker, on_change=on_breaker_change, failures=BACKEND_ERRORS
            )
            for name in ("detector", "embedder")
        }
        self._on_stage = on_stage
        self._attempts: dict[int, int] = {}
        site = config.site
        self.associator = OnlineAssociator(site.topology, site.association)
        self._locators = {c.id: Locator(c) for c in site.cameras if c.has_ground_calibration}
        self._global_ids: dict[int, int] = {}  # the associator's identity number -> stored global id
        self._next_global = self.store.max_global_id() + 1  # ids never reuse those of earlier runs
        self.engine = SearchEngine(self.index, embedder)
        self._cameras: dict[str, _Camera] = {}
        self._accepted_until = self.store.last_timestamps()
        self._queued = self.store.queued_count()
        self._admit = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._stopping = threading.Event()
        self._accepting = False
        self._worker: threading.Thread | None = None
        self.processed_batches = 0
        self.failed_batches = 0
        # called by the worker with (camera, model, tracked detections) for every processed frame
        self.observers: list[Callable[[str, str, Detections], None]] = []

    # ------------------------------------------------------------------------------- life cycle
    def start(self) -> None:
        """Restore recent identities, index the tracks a previous process left open, then start the
        worker and admit batches."""
        self._restore_identities()
        self._index_ended(everything=True)
        self._worker = threading.Thread(target=self._run, name="crossview-ingest", daemon=True)
        self._worker.start()
        self._accepting = True

    @property
    def ready(self) -> bool:
        return self._accepting and self._worker is not None and self._worker.is_alive()

    def stop(self) -> bool:
        """Refuse new batches, drain accepted ones (bounded by ``drain_timeout_s``), index, flush.

        True when everything accepted was processed; otherwise the rest waits in the journal.
        """
        self._accepting = False
        drained = self.wait_idle(self.config.drain_timeout_s)
        self._stopping.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout=max(self.config.drain_timeout_s, 1.0))
        self._index_ended(everything=True)
        # the index's own SQLite is its source of truth: a snapshot that fails now can wait
        with contextlib.suppress(Exception):
            self.index_breaker.call(self.index.flush)
        self.index.close()
        self.store.close()
        return drained

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every accepted batch is processed; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.queued > 0:
            self._wake.set()
            if time.monotonic() >= deadline:
                return False
            self._idle.wait(timeout=min(0.05, max(deadline - time.monotonic(), 0.0)))
        return True

    @property
    def queued(self) -> int:
        return self._queued

    # ------------------------------------------------------------------------------------ ingest
    def submit(self, camera_id: str, frames: Sequence[FrameInput], *, model: str = "unknown") -> int:
        """Check, admit and durably store one batch of detections; its id (see the module docstring)."""
        self._check(camera_id, frames)
        payload = {"kind": "detections", "model": model, "frames": [_frame_payload(f) for f in frames]}
        count = sum(len(f.xyxy) for f in frames)
        return self._admit_batch(camera_id, [f.timestamp for f in frames], payload, count)

    def submit_images(self, camera_id: str, images: Sequence[ImageInput]) -> int:
        """Check, admit and durably store one batch of encoded frames, detected by the worker; its id."""
        _check_camera(camera_id)
        if not images:
            raise ValueError("a batch needs at least one image")
        if len(images) > self.config.max_images_per_batch:
            raise ValueError(f"{len(images)} images in one batch; at most {self.config.max_images_per_batch}")
        _check_times([i.timestamp for i in images])
        for number, image in enumerate(images):
            if decode_image(image.data) is None:
                raise ValueError(f"image {number} (frame index {image.frame_index}) is not a decodable image")
        payload = {
            "kind": "images",
            "model": self.config.detector,
            "frames": [{"frame_index": i.frame_index, "timestamp": i.timestamp} for i in images],
        }
        return self._admit_batch(
            camera_id, [i.timestamp for i in images], payload, 0, [i.data for i in images]
        )

    def _admit_batch(
        self,
        camera_id: str,
        timestamps: list[float],
        payload: dict[str, Any],
        detections: int,
        images: Sequence[bytes] = (),
    ) -> int:
        if not self._accepting:
            raise Unavailable("the service is not accepting ingest (starting or shutting down)")
        with self._admit:
            if self._queued >= self.config.max_queued_batches:
                raise Overloaded(self._queued, self.retry_after())
            last = self._accepted_until.get(camera_id, -np.inf)
            if timestamps[0] <= last:
                raise ValueError(
                    f"camera {camera_id!r}: frames must come after the last accepted one "
                    f"(timestamp {timestamps[0]} is not after {last})"
                )
            batch_id = self.store.accept(camera_id, payload, timestamps, detections, images)
            self._accepted_until[camera_id] = timestamps[-1]
            self._queued += 1
        self._idle.clear()
        self._wake.set()
        return batch_id

    def _check(self, camera_id: str, frames: Sequence[FrameInput]) -> None:
        _check_camera(camera_id)
        if not frames:
            raise ValueError("a batch needs at least one frame")
        if len(frames) > self.config.max_frames_per_batch:
            raise ValueError(f"{len(frames)} frames in one batch; at most {self.config.max_frames_per_batch}")
        _check_times([f.timestamp for f in frames])
        for number, frame in enumerate(frames):
            where = f"frame {number} (index {frame.frame_index})"
            n = len(frame.xyxy)
            if n > self.config.max_detections_per_frame:
                raise ValueError(f"{where}: {n} detections; at most {self.config.max_detections_per_frame}")
            if frame.xyxy.shape != (n, 4) or not np.all(np.isfinite(frame.xyxy)):
                raise ValueError(f"{where}: boxes must be finite [x1, y1, x2, y2]")
            if np.any(frame.xyxy[:, 2] < frame.xyxy[:, 0]) or np.any(frame.xyxy[:, 3] < frame.xyxy[:, 1]):
                raise ValueError(f"{where}: boxes need x2 >= x1 and y2 >= y1")
            if np.any((frame.confidence < 0) | (frame.confidence > 1)) or not np.all(
                np.isfinite(frame.confidence)
            ):
                raise ValueError(f"{where}: confidences must be in [0, 1]")
            if frame.embedding is not None:
                if frame.embedding.shape != (n, self.dim):
                    raise ValueError(
                        f"{where}: embeddings must be {n} x {self.dim} (this service's embedder), "
                        f"got {' x '.join(map(str, frame.embedding.shape))}"
                    )
                norms = np.linalg.norm(frame.embedding, axis=1)
                if not np.all(np.isfinite(norms)) or np.any(norms == 0):
                    raise ValueError(f"{where}: embeddings must be finite and non-zero")

    def retry_after(self) -> float:
        """About how long until a queue slot frees: the recent processing rate, at least a second."""
        return max(1.0, min(60.0, self._queued * self._seconds_per_batch))

    _seconds_per_batch = 0.01

    # ------------------------------------------------------------------------------------ worker
    def _run(self) -> None:
        while not self._stopping.is_set():
            batches = self.store.next_batches(16)
            if not batches:
                self._index_ended()
                self._idle.set()
                self._wake.wait(timeout=0.5)
                self._wake.clear()
                continue
            for batch in batches:
                started = time.perf_counter()
                if not self._attempt(batch.id, batch.camera_id, batch.payload):
                    break  # the models are failing: the batch stays queued, in order, for a later try
                with self._admit:
                    self._queued -= 1
                elapsed = time.perf_counter() - started
                self._seconds_per_batch = 0.9 * self._seconds_per_batch + 0.1 * elapsed
            self._index_ended()

    def _attempt(self, batch_id: int, camera_id: str, payload: dict[str, Any]) -> bool:
        """Process one batch; False when it must wait for the models (it stays queued)."""
        try:
            self._process(batch_id, camera_id, payload)
            self.processed_batches += 1
        except BreakerOpenError as error:  # no attempt was made: wait for the breaker, then retry
            self._stopping.wait(timeout=min(error.retry_after_s, 1.0))
            return False
        except BackendFailure as error:
            tries = self._attempts[batch_id] = self._attempts.get(batch_id, 0) + 1
            if tries < self.config.model_attempts:
                self._stopping.wait(timeout=0.1)
                return False
            self.store.fail(batch_id, str(error))
            self.failed_batches += 1
        except Exception as error:  # a batch that cannot be processed is kept, marked failed
            self.store.fail(batch_id, f"{type(error).__name__}: {error}")
            self.failed_batches += 1
        self._attempts.pop(batch_id, None)
        return True

    def _timed(self, stage: str, started: float) -> float:
        now = time.perf_counter()
        if self._on_stage is not None:
            self._on_stage(stage, now - started)
        return now

    def _camera(self, camera_id: str) -> _Camera:
        camera = self._cameras.get(camera_id)
        if camera is None:
            tracker = make_tracker(self.config.tracker, frame_rate=self.config.frame_rate)
            camera = self._cameras[camera_id] = _Camera(tracker, self.store.track_offset(camera_id))
        return camera

    def _process(self, batch_id: int, camera_id: str, payload: dict[str, Any]) -> None:
        camera = self._camera(camera_id)
        model = str(payload.get("model", "unknown"))
        if payload.get("kind") == "images":
            frames = []
            for meta, data in zip(payload["frames"], self.store.images(batch_id), strict=True):
                image = decode_image(data)
                if image is None:  # checked at admission; only a corrupted journal gets here
                    raise ValueError(f"frame {meta['frame_index']}: stored image is not decodable")
                frames.append(Frame(image, camera_id, int(meta["frame_index"]), float(meta["timestamp"])))
            started = time.perf_counter()
            found = self._model("detector", self.detector.detect, frames)
            started = self._timed("detect", started)
            detected = self._model("embedder", self.embedder.embed, frames, found)
            self._timed("embed", started)
        else:
            detected = [_frame_detections(camera_id, frame) for frame in payload["frames"]]
        started = time.perf_counter()
        rows: list[DetectionRow] = []
        spans: dict[int, list[float]] = {}
        for detections in detected:
            tracked = camera.tracker.update(detections)
            for observer in self.observers:
                observer(camera_id, model, tracked)
            self._collect(camera, tracked, rows, spans)
        started = self._timed("track", started)
        tracks = [(camera_id, t, int(s[2]), s[0], s[1], int(s[3])) for t, s in spans.items()]
        self.store.complete(batch_id, rows, tracks)
        self._timed("store", started)

    def _model(self, name: str, call: Callable[..., Any], *args: Any) -> Any:
        """A detector or embedder call through its breaker; its failures as ``BackendFailure``."""
        try:
            return self.model_breakers[name].call(call, *args)
        except BreakerOpenError:
            raise
        except BACKEND_ERRORS as error:
            raise BackendFailure(name, error) from error

    @staticmethod
    def _collect(
        camera: _Camera, tracked: Detections, rows: list[DetectionRow], spans: dict[int, list[float]]
    ) -> None:
        """One frame's tracked rows as stored rows (untracked ones with id -1) and track spans."""
        assert tracked.camera_id is not None and tracked.timestamp is not None
        timestamp = float(tracked.timestamp)
        frame_index = int(tracked.frame_index if tracked.frame_index is not None else -1)
        for row in range(len(tracked)):
            local = int(tracked.tracker_id[row])
            track_id = camera.offset + local if local >= 0 else -1
            x1, y1, x2, y2 = (float(v) for v in tracked.xyxy[row])
            class_id = int(tracked.class_id[row])
            rows.append(
                DetectionRow(
                    tracked.camera_id,
                    frame_index,
                    timestamp,
                    track_id,
                    (x1, y1, x2, y2),
                    float(tracked.confidence[row]),
                    class_id,
                    None if tracked.embedding is None else tracked.embedding[row],
                )
            )
            if track_id >= 0:
                span = spans.setdefault(track_id, [timestamp, timestamp, class_id, 0])
                span[1] = timestamp
                span[3] += 1
        camera.last_time = timestamp

    def _index_ended(self, *, everything: bool = False) -> int:
        """Add ended tracks to the index (all unindexed ones with ``everything``); how many."""
        if everything:
            limits = {c: np.inf for c in self.store.last_timestamps()}
        else:
            limits = {c: cam.last_time - self.config.track_idle_s for c, cam in self._cameras.items()}
        ended = self.store.unindexed_ended(limits)
        if not ended:
            return 0
        ids, vectors, entries, done = [], [], [], []
        appearances = {t.id: self.store.track_embedding(t.camera_id, t.track_id) for t in ended}
        global_ids = self._associate(ended, appearances)
        for track in ended:
            embedding = appearances[track.id]
            done.append(track.id)
            if embedding is None:  # no appearance to search by: stays listed, not searchable
                continue
            ids.append(track.id)
            vectors.append(embedding)
            entries.append(_entry(track, global_ids.get(track.id, -1)))
        if ids:
            started = time.perf_counter()
            try:
                self.index_breaker.call(self.index.add, ids, np.stack(vectors), entries)
            except Exception:  # breaker open or the index failing: retried on the next pass
                return 0
            self._timed("index", started)
        self.store.mark_indexed(done)
        return len(ids)

    def _associate(
        self, ended: Sequence[TrackRow], appearances: dict[int, NDArray[np.float32] | None]
    ) -> dict[int, int]:
        """Global ids for ended tracks with an appearance (stored, and returned by track row id)."""
        fresh: list[tuple[TrackRow, Tracklet]] = []
        for track in ended:
            embedding = appearances[track.id]
            if embedding is None:
                continue
            known = self.associator.global_id(track.camera_id, track.track_id)
            if known is not None:
                continue
            fresh.append((track, self._tracklet(track, embedding)))
        if not fresh:
            return {t.id: t.global_id for t in ended if t.global_id >= 0}
        fresh.sort(key=lambda pair: pair[1].t_start)
        started = time.perf_counter()
        numbers = self.associator.assign([tracklet for _, tracklet in fresh])
        assigned = [(track.id, self._global_id(n)) for (track, _), n in zip(fresh, numbers, strict=True)]
        self.store.set_global_ids(assigned)
        self._timed("associate", started)
        return {t.id: t.global_id for t in ended if t.global_id >= 0} | dict(assigned)

    def _global_id(self, number: int) -> int:
        """The stored global id of the associator's identity ``number`` (a new one if it is new)."""
        if number not in self._global_ids:
            self._global_ids[number] = self._next_global
            self._next_global += 1
        return self._global_ids[number]

    def _restore_identities(self) -> int:
        """Give the associator the identities of the last ``memory_s`` of stored tracks; how many.

        A process that restarts then goes on joining new tracks to the objects it saw before.
        """
        latest = max(self.store.last_timestamps().values(), default=None)
        if latest is None:
            return 0
        restored = 0
        since = latest - self.config.site.memory_s
        after = -1
        while batch := self.store.global_tracks(start=since, after_id=after, limit=500):
            for global_id, members in batch:
                tracklets = []
                for track in members:
                    embedding = self.store.track_embedding(track.camera_id, track.track_id)
                    if embedding is not None:
                        tracklets.append(self._tracklet(track, embedding))
                if tracklets:
                    self._global_ids[self.associator.restore(tracklets)] = global_id
                    restored += 1
            after = batch[-1][0]
        return restored

    def _tracklet(self, track: TrackRow, embedding: NDArray[np.float32]) -> Tracklet:
        rows = self.store.detections_of(track.camera_id, track.track_id)
        times = np.array([r.timestamp for r in rows])
        locator = self._locators.get(track.camera_id)
        if locator is None:
            ground = np.full((len(rows), 2), np.nan)
        else:
            boxes = np.array([r.xyxy for r in rows], np.float32).reshape(-1, 4)
            ground = locator.locate(boxes, np.full(len(rows), track.class_id, np.int64))
        return Tracklet(track.camera_id, track.track_id, times, ground, embedding, track.class_id)

    def global_tracks(self, **query: Any) -> list[tuple[int, list[TrackRow]]]:
        return self.store.global_tracks(**query)

    # ------------------------------------------------------------------------------------ search
    def search(
        self,
        *,
        image: NDArray[np.uint8] | None = None,
        embedding: NDArray[np.float32] | None = None,
        track: int | None = None,
        k: int = 10,
        filter: Filter | None = None,
        rerank: RerankMethod = "none",
    ) -> list[Hit]:
        """Visual search through the index's breaker (``BreakerOpenError`` while it is open).

        Without re-ranking (and no topology here for context) the ``k`` nearest are the answer,
        so only ``k`` candidates are fetched; re-ranking works on 100 (or ``2k``).
        """
        if track is not None and self.store.track(track) is None:
            raise KeyError(f"no track with id {track}")
        try:
            return self.index_breaker.call(
                self.engine.search,
                image=image,
                embedding=embedding,
                track_id=track,
                k=k,
                filter=filter,
                rerank=rerank,
                candidates=k if rerank == "none" else max(100, 2 * k),
            )
        except BreakerOpenError:
            raise
        except KeyError as error:
            raise LookupError(f"track {track} is not searchable yet (it has not ended)") from error
        except BACKEND_ERRORS as error:
            raise BackendFailure("index", error) from error

    def tracks(self, **query: Any) -> list[TrackRow]:
        return self.store.tracks(**query)


def hit_fields(hit: Hit) -> dict[str, Any]:
    """A search hit as the flat fields both APIs answer with (REST ``HitOut``, gRPC ``Hit``)."""
    entry = hit.entry
    return {
        "rank": hit.rank,
        "track": hit.id,
        "camera_id": entry.camera_id,
        "track_id": entry.track_id,
        "global_id": entry.global_id,
        "class_id": entry.class_id,
        "t_start": entry.t_start,
        "t_end": entry.t_end,
        "distance": hit.distance,
        "appearance": hit.appearance,
        "rerank": hit.rerank,
        "context": hit.context,
    }


def _check_camera(camera_id: str) -> None:
    if not camera_id or len(camera_id) > 128:
        raise ValueError("camera_id must be 1-128 characters")


def _check_times(timestamps: Sequence[float]) -> None:
    times = np.asarray(timestamps, np.float64)
    if not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0):
        raise ValueError("frame timestamps must be finite and strictly increasing within a batch")


def query_embedding(values: Sequence[float], dim: int) -> NDArray[np.float32]:
    """A query vector: ``dim`` finite numbers, not all zero (else ``ValueError``)."""
    embedding = np.asarray(values, np.float32)
    if embedding.shape != (dim,) or not np.all(np.isfinite(embedding)) or not np.any(embedding):
        raise ValueError(f"embedding must be {dim} finite numbers, not all zero")
    return embedding


def decode_image(data: bytes) -> NDArray[np.uint8] | None:
    """A BGR image from encoded bytes; None when they are not a decodable image."""
    if not data:
        return None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        return None
    return np.ascontiguousarray(image, np.uint8)


def _entry(track: TrackRow, global_id: int) -> Entry:
    return Entry(
        camera_id=track.camera_id,
        track_id=track.track_id,
        global_id=global_id,
        class_id=track.class_id,
        t_start=track.t_start,
        t_end=track.t_end,
    )


def _frame_payload(frame: FrameInput) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "frame_index": frame.frame_index,
        "timestamp": frame.timestamp,
        "xyxy": np.asarray(frame.xyxy, np.float64).round(2).tolist(),
        "confidence": np.asarray(frame.confidence, np.float64).round(4).tolist(),
        "class_id": np.asarray(frame.class_id).tolist(),
    }
    if frame.embedding is not None:  # float32 bytes: a quarter of the JSON text, parsed in microseconds
        vectors = np.ascontiguousarray(frame.embedding, np.float32)
        payload["embedding_f32"] = base64.b64encode(vectors.tobytes()).decode()
    return payload


def _frame_detections(camera_id: str, frame: dict[str, Any]) -> Detections:
    n = len(frame["xyxy"])
    encoded = frame.get("embedding_f32")
    embedding = None
    if encoded is not None and n > 0:
        embedding = np.frombuffer(base64.b64decode(encoded), np.float32).reshape(n, -1)
    return Detections(
        xyxy=np.asarray(frame["xyxy"], np.float32).reshape(n, 4),
        confidence=frame["confidence"],
        class_id=frame["class_id"],
        embedding=embedding,
        camera_id=camera_id,
        frame_index=int(frame["frame_index"]),
        timestamp=float(frame["timestamp"]),
    )


__all__ = [
    "BackendFailure",
    "BreakerOpenError",
    "FrameInput",
    "ImageInput",
    "Overloaded",
    "Service",
    "ServiceConfig",
    "SiteConfig",
    "Unavailable",
    "decode_image",
    "hit_fields",
    "query_embedding",
]
