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
3. The worker thread processes journal batches oldest first: images are decoded, detected and
   embedded a few frames at a time (``frames_per_chunk``, bounding memory), each model through its
   circuit breaker (a failing model leaves the batch queued, in order, for a later try); then the
   camera's tracker runs. The tracked detections and track spans are written while the batch is
   marked done, in one transaction.
4. A track idle for ``track_idle_s`` of its camera's time has ended. Its appearance (the
   confidence-weighted mean of its detections' embeddings, read back from the store) gives it a
   global identity (``OnlineAssociator``, with the site's topology and calibration when given)
   and is added to the index through the index's circuit breaker. While the breaker is open the
   track waits and is indexed once the index is healthy again; nothing is dropped.
5. A camera that sent nothing for ``cameras.idle_s`` is released: its tracker ends (its tracks are
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
from crossview.multicam.topology import CameraTopology, overlaps_from_geometry
from crossview.multicam.tracklets import Locator
from crossview.runtime.site import SiteFile
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
from crossview.track.base import Tracker
from crossview.track.factory import make_tracker

# What a failing index raises (FAISS: RuntimeError; its SQLite and files: sqlite3.Error, OSError).
# Bad queries (ValueError) and unknown ids (KeyError) are the caller's and do not open the breaker.
BACKEND_ERRORS: tuple[type[BaseException], ...] = (RuntimeError, OSError, sqlite3.Error)
UNKNOWN_MODEL: Final = "unknown"
MAX_IDEMPOTENCY_KEY: Final = 128


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

    @classmethod
    def from_site_file(cls, site: SiteFile) -> SiteConfig:
        """The service's view of a site file: its calibrated cameras, its topology (the declared
        overlaps and those the calibration implies), association settings and memory."""
        cameras = site.calibrated_cameras()
        found = sorted(overlaps_from_geometry(cameras))
        return cls(
            topology=site.camera_topology(found),
            cameras=tuple(cameras),
            association=site.association,
            memory_s=site.memory_s,
        )

    @property
    def camera_ids(self) -> frozenset[str]:
        """The cameras the site declares (none: any camera may send, up to the camera cap)."""
        named = {camera.id for camera in self.cameras}
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
        self.associator = OnlineAssociator(site.topology, site.association)
        self._locators = {c.id: Locator(c) for c in site.cameras if c.has_ground_calibration}
        self._global_ids: dict[int, int] = {}  # the associator's identity number -> stored global id
        self._next_global = self.store.max_global_id() + 1  # ids never reuse those of earlier runs
        self.engine = SearchEngine(self.index, embedder)
        self._cameras: dict[str, _Camera] = {}
        self._unindexed_freed: set[str] = set()  # released cameras whose last tracks await the index
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
        self._index_ended({c: np.inf for c in self.store.last_timestamps()})
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
        self._index_ended({c: np.inf for c in self.store.last_timestamps()})
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
                self.admission.done(batch.camera_id, time.perf_counter() - started)
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

    def _free_idle_cameras(self) -> None:
        """Free the state of cameras gone idle: tracker (its tracks indexed), detector model, hooks."""
        for camera_id in self.admission.take_idle():
            self._cameras.pop(camera_id, None)
            self._unindexed_freed.add(camera_id)
            if isinstance(self.detector, PerCameraState):
                self.detector.reset(camera_id)
            for hook in self.camera_freed:
                hook(camera_id)

    def _process(self, batch_id: int, camera_id: str, payload: dict[str, Any]) -> None:
        camera = self._camera(camera_id)
        model = str(payload.get("model", UNKNOWN_MODEL))
        if payload.get("kind") == "images":
            detected = self._detect_images(batch_id, camera_id, payload["frames"])
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

    def _detect_images(self, batch_id: int, camera_id: str, metas: list[dict[str, Any]]) -> list[Detections]:
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
                    camera_id,
                    int(meta["frame_index"]),
                    float(meta["timestamp"]),
                )
                for meta, data in zip(metas[first : first + step], stored[first : first + step], strict=True)
            ]
            started = self._timed("decode", started)
            found = self._model("detector", self.detector.detect, frames)
            started = self._timed("detect", started)
            detected.extend(self._model("embedder", self.embedder.embed, frames, found))
            self._timed("embed", started)
        return detected

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

    def _index_ended(self, limits: dict[str, float] | None = None) -> int:
        """Add ended tracks to the index; how many. ``limits``: per camera, tracks that ended before
        this time (default: those idle for ``track_idle_s`` of each live camera's time, and every
        track of a released camera)."""
        freed = set(self._unindexed_freed)
        if limits is None:
            limits = {c: cam.last_time - self.config.track_idle_s for c, cam in self._cameras.items()}
            limits |= {camera_id: np.inf for camera_id in freed}
        ended = self.store.unindexed_ended(limits)
        if not ended:
            self._unindexed_freed -= freed
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
        self._unindexed_freed -= freed
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
