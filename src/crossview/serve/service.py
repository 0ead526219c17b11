"""The service core, independent of HTTP: admission, the ingest worker, tracking, indexing,
cross-camera identities and search.

``Service`` owns one data directory (created private: mode 0700): ``service.sqlite``
(``ServiceStore``: the ingest journal, tracked detections and tracks), ``index/`` (a durable
``FaissIndex`` of ended tracks) and ``keys.sqlite`` (API keys, used by the HTTP layer).

Flow of one ingest batch (one camera, frames in time order): either detections with optional
embeddings (``submit``), or encoded images (``submit_images``) that the worker detects and embeds.

1. The batch is checked (shapes, embedding size, the detector's name against the declared ones,
   image headers against ``ImageLimits``) and replayed from the journal when it carries an
   idempotency key already stored for its credential. Then it *reserves* its place
   (``Admission``): a queue slot, its camera (declared by the site file, or one of at most
   ``max_cameras``; cameras sending images also within ``max_megapixels``) and its time span
   after the camera's last accepted frame. A refusal here (``Overloaded``, ``CameraLimit``, ...)
   comes before any image is decoded and before anything is stored, so a refused batch was never
   acknowledged and is never replayed.
2. Images are decoded once to prove they decode (at most ``decode_concurrency`` at once), then
   the batch (and its images) is committed to the journal; only then is it acknowledged.
3. The worker thread processes journal batches oldest first, each through its camera's
   ``CameraStage`` (the runtime's, ``crossview.runtime.engine``): images are decoded, detected and
   embedded a few frames at a time (``frames_per_chunk``, bounding memory), each model through its
   circuit breaker (a failing model leaves the batch queued, in order, for a later try); then the
   camera's tracker runs. The tracked detections and track spans are written while the batch is
   marked done, in one transaction. Cameras the site file gives a source to (video, images, a
   stream) are pulled by the service itself, each in a ``CameraThread``.
4. Every tracked frame then goes, in site time order (``TimeOrder``; a camera silent for
   ``lateness_s`` is not waited for), to the runtime's ``SiteStage``: the same cross-camera
   association ``crossview run`` and the demo run. A track gets its global id (stored at once)
   when it is confirmed, and a corrected one if later evidence moves it. A track unseen for
   ``track_idle_s`` has ended: its summary (appearance, class, span, global id, place) is added
   to the index through the index's circuit breaker. While the breaker is open the track waits
   and is indexed once the index is healthy again; nothing is dropped.
5. A camera that sent nothing for ``cameras.idle_s`` is released: its tracks end (and are
   indexed), the detector forgets its model (``PerCameraState``), and ``camera_freed`` callbacks
   drop its drift windows and metric series. Memory follows the cameras that are sending.

``start`` restores the identities of recent tracks and indexes what a previous process left
open. ``stop`` refuses new batches, lets the worker finish what was accepted (up to
``drain_timeout_s``), indexes every remaining track (their trackers end with the process) and
flushes the index. Whatever was accepted but not processed in time stays in the journal for the
next start.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from crossview.core.camera import Camera
from crossview.core.detections import Detections
from crossview.core.frame import Frame
from crossview.detect.base import Detector, PerCameraState
from crossview.detect.factory import make_detector, parse_spec
from crossview.embed.base import Embedder
from crossview.io.files import private_directory
from crossview.io.image import ImageLimits
from crossview.models.identity import identity_of
from crossview.multicam.association import AssociationConfig, OnlineAssociator, Tracklet
from crossview.multicam.topology import CameraTopology
from crossview.multicam.tracklets import Locator
from crossview.runtime.engine import (
    CameraStage,
    CameraThread,
    Ended,
    FinishedTrack,
    Sink,
    SiteStage,
    TimeOrder,
    TrackedFrame,
)
from crossview.runtime.run import camera_stage, open_camera_source, site_detector, site_fusion
from crossview.runtime.sinks import track_entry
from crossview.runtime.site import SiteFile, StreamInput
from crossview.search.engine import Hit, RerankMethod, SearchEngine
from crossview.search.faiss_index import FaissIndex
from crossview.search.index import Entry, Filter
from crossview.serve.admission import Admission, CameraLimits, ImageDecoder, Reservation
from crossview.serve.breaker import BreakerConfig, BreakerOpenError, CircuitBreaker
from crossview.serve.errors import (
    BackendFailure,
    BackendUnavailable,
    IdempotencyConflict,
    InvalidRequest,
    NotFound,
    NotSearchable,
    Unavailable,
)
from crossview.serve.store import DetectionRow, DuplicateKey, ServiceStore, TrackRow

# What a failing index raises (FAISS: RuntimeError; its SQLite and files: sqlite3.Error, OSError).
# Bad queries (ValueError) and unknown ids (KeyError) are the caller's and do not open the breaker.
BACKEND_ERRORS: tuple[type[BaseException], ...] = (RuntimeError, OSError, sqlite3.Error)
UNKNOWN_MODEL: Final = "unknown"
MAX_IDEMPOTENCY_KEY: Final = 128
log = logging.getLogger("crossview.serve")
MAX_WAITING_SUMMARIES: Final = 10_000  # finished tracks' summaries kept while the index is down
MODEL_STAGES: Final = {"detector": "detect", "embedder": "embed"}  # a model's latency stage


class SiteConfig(BaseModel):
    """What the service knows of the site for cross-camera identities, built from the site file
    (``crossview serve --site SITE``, ``from_site_file``).

    ``topology``: overlaps and transit windows (``CameraTopology``'s JSON form); ``cameras``:
    calibrated cameras, whose tracks are then located in metres and compared where views overlap.
    Without either, global identities rest on appearance and time alone. The cameras named by
    either are the site's cameras: when there are any, only they may send.
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
    file: SiteFile | None = Field(
        default=None,
        description="the site file itself: its cameras' sources (pulled ones are run by the service), "
        "frame rates, background plates, classes and tracker options",
    )

    @classmethod
    def from_site_file(cls, site: SiteFile) -> SiteConfig:
        """The service's view of a site file: its calibrated cameras, its topology (the declared
        overlaps and those the calibration implies, as ``crossview run`` takes them), association
        settings and memory."""
        cameras = site.calibrated_cameras()
        return cls(
            topology=site.topology_of(cameras),
            cameras=tuple(cameras),
            association=site.association,
            memory_s=site.memory_s,
            file=site,
        )

    @property
    def camera_ids(self) -> frozenset[str]:
        """The cameras the site declares (none: any camera may send, up to the camera cap)."""
        named = {camera.id for camera in self.cameras}
        if self.file is not None:
            named.update(spec.id for spec in self.file.cameras)
        if self.topology is not None:
            named.update(self.topology.cameras)
        return frozenset(named)


class ServiceConfig(BaseModel):
    """What a service instance keeps, admits and how it tracks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path
    tracker: str = "sort"
    detector: str = Field(default="motion", description="for image ingest: motion | yolox:M.onnx | ...")
    models: tuple[str, ...] = Field(
        default=(),
        max_length=64,
        description="detector names that detection batches may declare (besides 'unknown')",
    )
    max_images_per_batch: int = Field(default=64, ge=1)
    frame_rate: float = Field(default=10.0, gt=0, description="cameras' frame rate, for tracker buffers")
    max_queued_batches: int = Field(default=256, ge=1)
    max_frames_per_batch: int = Field(default=300, ge=1)
    max_detections_per_frame: int = Field(default=500, ge=1)
    images: ImageLimits = Field(default_factory=ImageLimits)
    cameras: CameraLimits = Field(default_factory=CameraLimits)
    decode_concurrency: int = Field(default=2, ge=1, description="images decoded at once for requests")
    decode_wait_s: float = Field(default=5.0, ge=0, description="longest wait for a decode slot")
    frames_per_chunk: int = Field(default=8, ge=1, description="image frames the worker decodes at a time")
    idempotency_ttl_s: float = Field(default=86400.0, gt=0, description="how long idempotency keys are kept")
    track_idle_s: float = Field(default=5.0, gt=0, description="a track idle this long has ended")
    min_samples: int = Field(default=5, ge=1, description="rows a track needs before it gets a global id")
    lateness_s: float = Field(
        default=5.0,
        gt=0,
        description="how long (wall clock) the site stage waits for a silent camera before going on "
        "in time without it; its later frames are still tracked and associated, out of order",
    )
    drain_timeout_s: float = Field(default=10.0, ge=0)
    index_factory: str = "HNSW32"
    site: SiteConfig = Field(default_factory=SiteConfig)
    index_breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    model_breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    model_attempts: int = Field(
        default=3, ge=1, description="tries of one image batch whose model calls fail before it is failed"
    )


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
    """One encoded frame (JPEG, PNG, WebP or BMP) as submitted, to be detected by the service."""

    frame_index: int
    timestamp: float
    data: bytes


@dataclass(frozen=True, slots=True)
class Idempotency:
    """A client's idempotency key for one request, scoped to the credential that sent it."""

    principal: str
    key: str

    def __post_init__(self) -> None:
        if (
            not 1 <= len(self.key) <= MAX_IDEMPOTENCY_KEY
            or not self.key.isascii()
            or not self.key.isprintable()
        ):
            raise InvalidRequest(
                f"an idempotency key must be 1-{MAX_IDEMPOTENCY_KEY} printable ASCII characters"
            )


@dataclass(frozen=True, slots=True)
class Ack:
    """The acknowledgement of an accepted batch; ``replayed`` when an idempotent retry found it."""

    batch_id: int
    frames: int
    detections: int
    replayed: bool = False


@dataclass(slots=True)
class _Camera:
    """A camera's stage (its tracker) and the offset that keeps its track ids unique in the store."""

    stage: CameraStage
    offset: int


@dataclass(slots=True)
class _Pulled:
    """A camera the service pulls itself: its thread, and where its source stands."""

    thread: CameraThread
    stream: bool  # a live stream is waited for only ``lateness_s``; a file while it plays
    heard: float | None = None  # when its last frame came (monotonic)
    stopped: str | None = None  # why its source ended (None: it runs)
    ended: bool = False  # its tracks were ended once its last frame was in


class _Recorder(Sink):
    """The service's sink of the site stage: global ids into the store, finished tracks to index."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def assigned(self, tracklet: Tracklet, global_id: int) -> None:
        self.service._assigned(tracklet, global_id)

    def finished(self, track: FinishedTrack) -> None:
        self.service._finished(track)


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
        site_file = config.site.file
        self.detector = detector or (
            make_detector(config.detector)
            if site_file is None
            else site_detector(site_file, config.detector, site_file.cameras)
        )
        self.detector_name = model_name(config.detector)
        self.models = frozenset({UNKNOWN_MODEL, *config.models})
        self.dim = embedder.dim
        private_directory(config.data_dir)
        self.model = identity_of(embedder).key
        self.store = ServiceStore(config.data_dir / "service.sqlite")
        self.store.claim_model(self.model)  # refuses a data directory of another embedder
        self.index = index or FaissIndex(
            config.data_dir / "index", self.dim, factory=config.index_factory, model=self.model
        )
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
        self.admission = Admission(
            config.cameras,
            max_queued=config.max_queued_batches,
            declared=config.site.camera_ids,
            stored_until=self.store.last_timestamp,
            queued_by_camera=self.store.queued_by_camera(),
        )
        self.decoder = ImageDecoder(
            config.images, concurrency=config.decode_concurrency, wait_s=config.decode_wait_s
        )
        self._on_stage = on_stage
        self._attempts: dict[int, int] = {}
        site = config.site
        # the runtime's site stage: the association `crossview run` and the demo run and score
        if (
            site_file is not None
            and site.topology is not None
            and site_fusion(site_file, site.cameras, site.topology)
        ):
            log.warning(
                "site %r would join identities by ground fusion; the service joins tracklets "
                "(ground fusion runs in 'crossview run' and the demo for now)",
                site_file.name,
            )
        self.site = SiteStage(
            {camera.id: camera for camera in site.cameras},
            site.topology,
            site.association,
            sinks=[_Recorder(self)],
            min_samples=config.min_samples,
            end_after_s=config.track_idle_s,  # then indexed; kept for corrections as `run` keeps it
            memory_s=max(site.memory_s, 600.0),
            classify_by_size=parse_spec(config.detector)[0] == "motion",
        )
        self._order = TimeOrder([spec.id for spec in site_file.cameras] if site_file is not None else [])
        self._locators = {c.id: Locator(c) for c in site.cameras if c.has_ground_calibration}
        self._global_ids: dict[int, int] = {}  # the associator's identity number -> stored global id
        self._next_global = self.store.max_global_id() + 1  # ids never reuse those of earlier runs
        # tracks the site stage finished, to be indexed: row id -> (appearance, entry) from the
        # runtime's track summary (None: read back from the store, for tracks of an earlier process)
        self._ended: dict[int, tuple[NDArray[np.float32], Entry] | None] = {}
        self.engine = SearchEngine(self.index, embedder)
        self._cameras: dict[str, _Camera] = {}
        self._pulled = self._pulled_cameras()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._stopping = threading.Event()
        self._accepting = False
        self._worker: threading.Thread | None = None
        self._accepted_since_prune = 0
        self.processed_batches = 0
        self.failed_batches = 0
        # called by the worker with (camera, model, tracked detections) for every processed frame
        self.observers: list[Callable[[str, str, Detections], None]] = []
        # called by the worker with a camera's id once its state was freed (it went idle)
        self.camera_freed: list[Callable[[str], None]] = []

    # ------------------------------------------------------------------------------- life cycle
    def start(self) -> None:
        """Restore recent identities, index the tracks a previous process left open, then start the
        worker and admit batches."""
        self.store.prune_idempotency(time.time() - self.config.idempotency_ttl_s)
        self._restore_identities()
        # tracks a previous process left open ended with it
        left = self.store.unindexed_ended({c: np.inf for c in self.store.last_timestamps()})
        self._ended.update(dict.fromkeys(track.id for track in left))
        self._index_ended()
        for camera in self._pulled.values():
            camera.thread.start()
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
        for camera in self._pulled.values():
            camera.thread.stop()
        if self._worker is not None:
            self._worker.join(timeout=max(self.config.drain_timeout_s, 1.0))
        # the trackers end with the process: the site stage takes every held frame and finishes
        # every track, which is then indexed
        try:
            for tracked in self._order.release(()):
                self.site.apply(tracked)
            self.site.close()
        except Exception:  # what is stored stays; the index and store are still closed cleanly
            log.exception("site stage: the last frames were not associated")
        self._index_ended()
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
        return self.admission.queued

    def retry_after(self) -> float:
        """About how long until a queue slot frees (the recent processing rate), 1-60 s."""
        return self.admission.retry_after()

    # ------------------------------------------------------------------------------------ ingest
    def submit(
        self,
        camera_id: str,
        frames: Sequence[FrameInput],
        *,
        model: str = UNKNOWN_MODEL,
        idempotency: Idempotency | None = None,
    ) -> Ack:
        """Check, admit and durably store one batch of detections (see the module docstring)."""
        self._check(camera_id, frames)
        if model not in self.models:
            known = ", ".join(map(repr, sorted(self.models)))
            raise InvalidRequest(
                f"unknown model {model[:64]!r}: this service takes {known} "
                "(crossview serve --model NAME declares another)"
            )
        payload = {"kind": "detections", "model": model, "frames": [_frame_payload(f) for f in frames]}
        count = sum(len(f.xyxy) for f in frames)
        text = json.dumps(payload, separators=(",", ":"))
        fingerprint = _fingerprint(camera_id, text)
        replay = self._replay(idempotency, fingerprint)
        if replay is not None:
            return replay
        reservation = self._reserve(camera_id, [f.timestamp for f in frames])
        return self._store(reservation, payload, len(frames), count, (), idempotency, fingerprint)

    def submit_images(
        self, camera_id: str, images: Sequence[ImageInput], *, idempotency: Idempotency | None = None
    ) -> Ack:
        """Check, admit and durably store one batch of encoded frames, detected by the worker.

        Image headers are checked first, the batch's place is reserved next, and only then are
        the images decoded (to prove they decode): a refused batch costs no decoding.
        """
        _check_camera(camera_id)
        if not images:
            raise InvalidRequest("a batch needs at least one image")
        if len(images) > self.config.max_images_per_batch:
            raise InvalidRequest(
                f"{len(images)} images in one batch; at most {self.config.max_images_per_batch}"
            )
        _check_times([i.timestamp for i in images])
        wheres = [f"image {n} (frame index {i.frame_index}): " for n, i in enumerate(images)]
        pixels = max(self.decoder.probe(i.data, w).pixels for i, w in zip(images, wheres, strict=True))
        payload = {
            "kind": "images",
            "model": self.detector_name,
            "frames": [{"frame_index": i.frame_index, "timestamp": i.timestamp} for i in images],
        }
        fingerprint = _fingerprint(camera_id, json.dumps(payload), *(i.data for i in images))
        replay = self._replay(idempotency, fingerprint)
        if replay is not None:
            return replay
        reservation = self._reserve(camera_id, [i.timestamp for i in images], pixels=pixels)
        try:
            for image, where in zip(images, wheres, strict=True):
                self.decoder.decode(image.data, where)
        except BaseException:
            self.admission.release(reservation)
            raise
        data = [i.data for i in images]
        return self._store(reservation, payload, len(images), 0, data, idempotency, fingerprint)

    def decode_query(self, data: bytes) -> NDArray[np.uint8]:
        """A search image, decoded once its header passed the limits (a bounded number at once)."""
        return self.decoder.decode(data, "the query image: ")

    def _reserve(self, camera_id: str, timestamps: Sequence[float], *, pixels: int = 0) -> Reservation:
        if not self._accepting:
            raise Unavailable(
                "the service is not accepting ingest (starting or shutting down)", retry_after_s=1.0
            )
        if camera_id in self._pulled:
            raise InvalidRequest(
                f"camera {camera_id!r} is pulled by the service from its source in the site file; "
                "it takes no pushed frames (declare it with 'source: push' to push)"
            )
        return self.admission.reserve(camera_id, timestamps[0], timestamps[-1], pixels=pixels)

    def _replay(self, idempotency: Idempotency | None, fingerprint: str) -> Ack | None:
        """The acknowledgement already given for this idempotency key, if it was used before."""
        if idempotency is None:
            return None
        record = self.store.idempotent(idempotency.principal, idempotency.key)
        if record is None:
            return None
        if record.fingerprint != fingerprint:
            raise IdempotencyConflict(
                f"idempotency key {idempotency.key!r} was used for another request (batch "
                f"{record.batch_id}); use a new key for new content"
            )
        return Ack(record.batch_id, record.frames, record.detections, replayed=True)

    def _store(
        self,
        reservation: Reservation,
        payload: dict[str, Any],
        frames: int,
        detections: int,
        images: Sequence[bytes],
        idempotency: Idempotency | None,
        fingerprint: str,
    ) -> Ack:
        """Commit a reserved batch to the journal; acknowledged only once it is durable."""
        key = None if idempotency is None else (idempotency.principal, idempotency.key, fingerprint)
        timestamps = [float(f["timestamp"]) for f in payload["frames"]]
        try:
            batch_id = self.store.accept(reservation.camera_id, payload, timestamps, detections, images, key)
        except DuplicateKey:  # the same retry raced this one and was stored first
            self.admission.release(reservation)
            replay = self._replay(idempotency, fingerprint)
            assert replay is not None
            return replay
        except BaseException:
            self.admission.release(reservation)
            raise
        self.admission.commit(reservation)
        self._accepted_since_prune += 1
        if self._accepted_since_prune >= 1000:
            self._accepted_since_prune = 0
            self.store.prune_idempotency(time.time() - self.config.idempotency_ttl_s)
        self._idle.clear()
        self._wake.set()
        return Ack(batch_id, frames, detections)

    def _check(self, camera_id: str, frames: Sequence[FrameInput]) -> None:
        _check_camera(camera_id)
        if not frames:
            raise InvalidRequest("a batch needs at least one frame")
        if len(frames) > self.config.max_frames_per_batch:
            raise InvalidRequest(
                f"{len(frames)} frames in one batch; at most {self.config.max_frames_per_batch}"
            )
        _check_times([f.timestamp for f in frames])
        for number, frame in enumerate(frames):
            where = f"frame {number} (index {frame.frame_index})"
            n = len(frame.xyxy)
            if n > self.config.max_detections_per_frame:
                raise InvalidRequest(
                    f"{where}: {n} detections; at most {self.config.max_detections_per_frame}"
                )
            if frame.xyxy.shape != (n, 4) or not np.all(np.isfinite(frame.xyxy)):
                raise InvalidRequest(f"{where}: boxes must be finite [x1, y1, x2, y2]")
            if np.any(frame.xyxy[:, 2] < frame.xyxy[:, 0]) or np.any(frame.xyxy[:, 3] < frame.xyxy[:, 1]):
                raise InvalidRequest(f"{where}: boxes need x2 >= x1 and y2 >= y1")
            if np.any((frame.confidence < 0) | (frame.confidence > 1)) or not np.all(
                np.isfinite(frame.confidence)
            ):
                raise InvalidRequest(f"{where}: confidences must be in [0, 1]")
            if frame.embedding is not None:
                if frame.embedding.shape != (n, self.dim):
                    raise InvalidRequest(
                        f"{where}: embeddings must be {n} x {self.dim} (this service's embedder), "
                        f"got {' x '.join(map(str, frame.embedding.shape))}"
                    )
                norms = np.linalg.norm(frame.embedding, axis=1)
                if not np.all(np.isfinite(norms)) or np.any(norms == 0):
                    raise InvalidRequest(f"{where}: embeddings must be finite and non-zero")

    # ------------------------------------------------------------------------------------ worker
    def _run(self) -> None:
        while not self._stopping.is_set():
            self._free_idle_cameras()
            batches = self.store.next_batches(16)
            pulled = self._take_pulled()
            if not batches and not pulled:
                self._advance()
                self._index_ended()
                self._idle.set()
                self._wake.wait(timeout=0.5 if not self._pulled else 0.05)
                self._wake.clear()
                continue
            for batch in batches:
                started = time.perf_counter()
                if not self._attempt(batch.id, batch.camera_id, batch.payload):
                    break  # the models are failing: the batch stays queued, in order, for a later try
                self.admission.done(batch.camera_id, time.perf_counter() - started)
            self._record(None, pulled)
            self._advance()
            self._index_ended()

    def _advance(self) -> None:
        """Hand the site stage every held frame that no camera it waits for can still precede (see
        ``TimeOrder``): cameras with batches waiting or heard from within ``lateness_s``."""
        lateness = self.config.lateness_s
        waiting = self.admission.recent(lateness)
        now = time.monotonic()
        waiting.update(  # files are waited for while they play; live streams for ``lateness_s``
            camera_id
            for camera_id, camera in self._pulled.items()
            if camera.stopped is None and (not camera.stream or now - (camera.heard or now) < lateness)
        )
        started = time.perf_counter()
        released = self._order.release(waiting)
        for tracked in released:
            try:
                self.site.apply(tracked)
            except Exception:  # the frame is stored and tracked; its association must not stop ingest
                log.exception(
                    "site stage: camera %s frame %d was not associated", tracked.camera_id, tracked.index
                )
        if released:
            self._timed("associate", started)
        for camera_id, camera in self._pulled.items():  # an ended source: its tracks end, once all in
            if camera.stopped is not None and not camera.ended and not self._order.pending(camera_id):
                self.site.end_camera(camera_id)
                camera.ended = True

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
            pulled = self._pulled.get(camera_id)
            stage = pulled.thread.stage if pulled is not None else self._stage(camera_id)
            camera = self._cameras[camera_id] = _Camera(stage, self.store.track_offset(camera_id))
        return camera

    def _stage(self, camera_id: str) -> CameraStage:
        """A pushed camera's stage as the site file sets it up (or with the service's defaults for a
        camera the site does not name)."""
        return camera_stage(
            self.config.site.file,
            camera_id,
            None,
            self.detector,
            self.embedder,
            detector_spec=self.config.detector,
            tracker=self.config.tracker,
            default_fps=self.config.frame_rate,
            skip_blank=False,
        )

    def _pulled_cameras(self) -> dict[str, _Pulled]:
        """The site's cameras with a source to pull (video, image folder, stream), each run by its
        own stage in a thread (started with the service)."""
        site = self.config.site.file
        if site is None:
            return {}
        pulled = {}
        for spec in site.cameras:
            source = open_camera_source(site, spec)
            if source is None:
                continue
            stage = camera_stage(
                site,
                spec.id,
                source,
                self.detector,
                self.embedder,
                detector_spec=self.config.detector,
                tracker=self.config.tracker,
                default_fps=self.config.frame_rate,
            )
            pulled[spec.id] = _Pulled(CameraThread(stage), stream=isinstance(spec.source, StreamInput))
        return pulled

    def _take_pulled(self, limit: int = 64) -> list[TrackedFrame]:
        """The tracked frames the pulled cameras have ready (at most ``limit`` each)."""
        taken: list[TrackedFrame] = []
        for camera in self._pulled.values():
            for _ in range(limit if camera.stopped is None else 0):
                message = camera.thread.get(timeout=0)
                if message is None:
                    break
                if isinstance(message, Ended):
                    camera.stopped = message.error or "its source ended"
                    break
                camera.heard = time.monotonic()
                taken.append(message)
        return taken

    def _free_idle_cameras(self) -> None:
        """Free the state of cameras gone idle: tracker (its tracks finished and indexed), detector
        model, hooks."""
        for camera_id in self.admission.take_idle():
            self._cameras.pop(camera_id, None)
            self.site.finish_camera(camera_id)
            if isinstance(self.detector, PerCameraState):
                self.detector.reset(camera_id)
            for hook in self.camera_freed:
                hook(camera_id)

    def _process(self, batch_id: int, camera_id: str, payload: dict[str, Any]) -> None:
        camera = self._camera(camera_id)
        model = str(payload.get("model", UNKNOWN_MODEL))
        if payload.get("kind") == "images":
            detected = self._detect_images(batch_id, camera, payload["frames"])
        else:
            detected = [_frame_detections(camera_id, frame) for frame in payload["frames"]]
        started = time.perf_counter()
        tracked = [camera.stage.track(detections) for detections in detected]
        self._timed("track", started)
        self._record(batch_id, tracked, model)

    def _record(self, batch_id: int | None, frames: Sequence[TrackedFrame], model: str | None = None) -> None:
        """Store tracked frames (their rows and track spans; and mark their batch done) and hold them
        for the site stage. Track ids are offset per camera to stay unique across restarts."""
        if not frames:
            return
        started = time.perf_counter()
        rows: list[DetectionRow] = []
        spans: dict[tuple[str, int], list[float]] = {}
        held = []
        for tracked in frames:
            camera = self._camera(tracked.camera_id)
            detections = tracked.detections
            ids = detections.tracker_id
            detections = detections.replace(tracker_id=np.where(ids >= 0, ids + camera.offset, ids))
            for observer in self.observers:
                observer(tracked.camera_id, model or self.detector_name, detections)
            _collect(detections, rows, spans)
            held.append(TrackedFrame(tracked.camera_id, tracked.index, tracked.timestamp, detections))
        tracks = [(c, t, int(s[2]), s[0], s[1], int(s[3])) for (c, t), s in spans.items()]
        self.store.complete(batch_id, rows, tracks)
        for tracked in held:  # images are not kept: the service's sinks do not need them
            self._order.push(tracked)
        self._timed("store", started)

    def _detect_images(self, batch_id: int, camera: _Camera, metas: list[dict[str, Any]]) -> list[Detections]:
        """Decode, detect and embed a batch's images ``frames_per_chunk`` at a time (bounded memory).

        Every frame is detected and embedded before any is tracked, so a model failure leaves the
        camera's tracker as it was and the batch can be tried again.
        """
        stored = self.store.images(batch_id)
        if len(stored) != len(metas):
            raise ValueError(f"batch {batch_id} has {len(stored)} stored images for {len(metas)} frames")
        detected: list[Detections] = []
        step = self.config.frames_per_chunk
        for first in range(0, len(metas), step):
            started = time.perf_counter()
            frames = [
                Frame(
                    # checked at admission; a journal from before the limits is checked here again
                    self.decoder.decode(data, f"frame {meta['frame_index']}: ", forever=True),
                    camera.stage.camera_id,
                    int(meta["frame_index"]),
                    float(meta["timestamp"]),
                )
                for meta, data in zip(metas[first : first + step], stored[first : first + step], strict=True)
            ]
            self._timed("decode", started)
            detected.extend(camera.stage.perceive(frames, self._model))
        return detected

    def _model(self, name: str, call: Callable[..., Any], *args: Any) -> Any:
        """A detector or embedder call through its breaker, timed as its stage when it succeeds;
        its failures as ``BackendFailure``."""
        started = time.perf_counter()
        try:
            result = self.model_breakers[name].call(call, *args)
        except BreakerOpenError:
            raise
        except BACKEND_ERRORS as error:
            raise BackendFailure(name, error) from error
        self._timed(MODEL_STAGES[name], started)
        return result

    def _assigned(self, tracklet: Tracklet, number: int) -> None:
        """The site stage gave a track its identity: stored with the track at once."""
        row = self.store.track_row_id(tracklet.camera_id, tracklet.track_id)
        if row is not None:
            self.store.set_global_ids([(row, self._global_id(number))])

    def _finished(self, track: FinishedTrack) -> None:
        """The site stage finished a track: it is indexed on the worker's next pass with the
        runtime's summary of it (its appearance, majority class, span, identity and place), the
        same entry ``crossview run`` indexes. While the index is down, summaries wait (up to
        ``MAX_WAITING_SUMMARIES``; beyond, only the id, and the store gives the appearance back)."""
        tracklet = track.tracklet
        row = self.store.track_row_id(tracklet.camera_id, tracklet.track_id)
        if row is None:
            return
        if len(self._ended) >= MAX_WAITING_SUMMARIES:
            self._ended[row] = None
            return
        vector = np.asarray(tracklet.embedding, np.float32)
        norm = float(np.linalg.norm(vector))
        if norm == 0:  # no appearance to search by: stays listed, not searchable
            self.store.mark_indexed([row])
            return
        entry = track_entry(track)
        if track.global_id is not None:  # the associator's number, as the store numbers identities
            entry = entry.model_copy(update={"global_id": self._global_id(track.global_id)})
        self._ended[row] = (vector / norm, entry)

    def _index_ended(self) -> int:
        """Add the finished tracks to the index with their appearance (the confidence-weighted mean
        of their embeddings) and global id; how many. While the index fails (or its breaker is
        open) they wait, as ids, for the next pass."""
        if not self._ended:
            return 0
        done = sorted(self._ended)
        ids, vectors, entries = [], [], []
        for row in done:
            summary = self._ended[row] or self._stored_summary(row)
            if summary is None:  # no appearance to search by: stays listed, not searchable
                continue
            ids.append(row)
            vectors.append(summary[0])
            entries.append(summary[1])
        if ids:
            started = time.perf_counter()
            try:
                self.index_breaker.call(self.index.add, ids, np.stack(vectors), entries)
            except Exception:  # breaker open or the index failing: retried on the next pass
                return 0
            self._timed("index", started)
        self.store.mark_indexed(done)
        for row in done:
            del self._ended[row]
        return len(ids)

    def _stored_summary(self, row: int) -> tuple[NDArray[np.float32], Entry] | None:
        """A track's appearance and entry as the store has them (a track an earlier process left)."""
        track = self.store.track(row)
        if track is None:
            return None
        embedding = self.store.track_embedding(track.camera_id, track.track_id)
        return None if embedding is None else (embedding, _entry(track, track.global_id))

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

    def pulled(self) -> dict[str, dict[str, Any]]:
        """The cameras the service pulls itself: frames tracked, whether their source still runs,
        and why it stopped (an ended file, or the error of a stream that gave up)."""
        return {
            camera_id: {
                "frames": camera.thread.stage.stats.frames,
                "running": camera.stopped is None,
                "stopped": camera.stopped,
            }
            for camera_id, camera in self._pulled.items()
        }

    @property
    def associator(self) -> OnlineAssociator:
        """The site stage's cross-camera identities."""
        return self.site.associator

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
        """Visual search through the index's breaker (``BackendUnavailable`` while it is open).

        Without re-ranking (and no topology here for context) the ``k`` nearest are the answer,
        so only ``k`` candidates are fetched; re-ranking works on 100 (or ``2k``).
        """
        if track is not None and self.store.track(track) is None:
            raise NotFound(f"no track with id {track}")
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
        except BreakerOpenError as error:
            raise BackendUnavailable(str(error), retry_after_s=error.retry_after_s) from error
        except KeyError as error:
            raise NotSearchable(f"track {track} is not searchable yet (it has not ended)") from error
        except ValueError as error:
            raise InvalidRequest(str(error)) from error
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


def model_name(spec: str) -> str:
    """A detector spec's short name, for labels and drift streams.

    >>> model_name("yolox:/models/nano.onnx"), model_name("motion")
    ('yolox:nano', 'motion')
    """
    name, argument = parse_spec(spec)
    return f"{name}:{Path(argument).stem}" if argument else name


def _check_camera(camera_id: str) -> None:
    if not camera_id or len(camera_id) > 128:
        raise InvalidRequest("camera_id must be 1-128 characters")


def _check_times(timestamps: Sequence[float]) -> None:
    times = np.asarray(timestamps, np.float64)
    if not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0):
        raise InvalidRequest("frame timestamps must be finite and strictly increasing within a batch")


def _fingerprint(camera_id: str, text: str, *images: bytes) -> str:
    """What an idempotent retry must repeat exactly: the camera, the batch and its images."""
    digest = hashlib.sha256(camera_id.encode())
    digest.update(b"\0" + text.encode())
    for image in images:
        digest.update(len(image).to_bytes(8, "little") + image)
    return digest.hexdigest()


def query_embedding(values: Sequence[float], dim: int) -> NDArray[np.float32]:
    """A query vector: ``dim`` finite numbers, not all zero (else ``InvalidRequest``)."""
    embedding = np.asarray(values, np.float32)
    if embedding.shape != (dim,) or not np.all(np.isfinite(embedding)) or not np.any(embedding):
        raise InvalidRequest(f"embedding must be {dim} finite numbers, not all zero")
    return embedding


def _collect(
    detections: Detections, rows: list[DetectionRow], spans: dict[tuple[str, int], list[float]]
) -> None:
    """One frame's tracked rows as stored rows (untracked ones with id -1) and track spans."""
    assert detections.camera_id is not None and detections.timestamp is not None
    camera_id, timestamp = detections.camera_id, float(detections.timestamp)
    frame_index = int(detections.frame_index if detections.frame_index is not None else -1)
    for row in range(len(detections)):
        track_id = int(detections.tracker_id[row])
        x1, y1, x2, y2 = (float(v) for v in detections.xyxy[row])
        class_id = int(detections.class_id[row])
        rows.append(
            DetectionRow(
                camera_id,
                frame_index,
                timestamp,
                track_id,
                (x1, y1, x2, y2),
                float(detections.confidence[row]),
                class_id,
                None if detections.embedding is None else detections.embedding[row],
            )
        )
        if track_id >= 0:
            span = spans.setdefault((camera_id, track_id), [timestamp, timestamp, class_id, 0])
            span[1] = timestamp
            span[3] += 1


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
    "Ack",
    "FrameInput",
    "Idempotency",
    "ImageInput",
    "Service",
    "ServiceConfig",
    "SiteConfig",
    "hit_fields",
    "model_name",
    "query_embedding",
]
