"""The REST API: ``create_app(config)`` returns a FastAPI app over one data directory.

Every route but ``/healthz`` and ``/readyz`` needs a credential, ``Authorization: Bearer <token>``
(or ``X-API-Key: <token>``): an API key from ``crossview keys create`` or, when a JWT secret is
configured, a signed JWT. Each route declares the scope it needs (read, search, ingest; admin
implies all) in its OpenAPI operation as ``x-required-scope``.

What guards a request, before its body is read, is ``crossview.serve.http`` (the request context,
the guard) and ``crossview.serve.gate`` (draining, failed-auth limit per address, credential,
scope, rate limit, requests in flight); refusals and their statuses are ``crossview.serve.errors``.
The routes here parse what was admitted and call the ``Service``. Errors are JSON
``{"error": {"code", "message"}, "request_id"}``; every response carries ``X-Request-ID``, and
each request is logged as one JSON line.
"""

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, File, Form, Header, Path, Query, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from crossview.core.detections import Detections
from crossview.embed.base import Embedder
from crossview.embed.color import ColorHistogramEmbedder
from crossview.search.engine import Hit
from crossview.search.index import Filter
from crossview.serve.breaker import BreakerState
from crossview.serve.drift import DriftConfig, DriftMonitor
from crossview.serve.errors import (
    InvalidRequest,
    Overloaded,
    RateLimited,
    ServiceError,
    Unauthenticated,
)
from crossview.serve.gate import Gate, GateConfig
from crossview.serve.grpc_server import start_grpc_server
from crossview.serve.http import Guard, RequestContext, access, error_body, refusal_headers
from crossview.serve.keys import JwtVerifier, KeyStore, Principal
from crossview.serve.keys import Scope as KeyScope
from crossview.serve.metrics import ServiceMetrics
from crossview.serve.service import (
    Ack,
    FrameInput,
    Idempotency,
    ImageInput,
    Service,
    ServiceConfig,
    hit_fields,
    query_embedding,
)
from crossview.serve.store import TrackRow

log = logging.getLogger("crossview.serve")
MAX_ID = 2**62  # ids and frame numbers: SQLite integers are 64-bit


class ServeConfig(BaseModel):
    """The HTTP layer's settings around a ``ServiceConfig``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service: ServiceConfig
    gate: GateConfig = Field(default_factory=GateConfig)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    body_timeout_s: float = Field(default=30.0, gt=0, description="longest a request body may take to arrive")
    jwt_secret: SecretStr | None = None
    jwt_issuer: str | None = Field(default=None, min_length=1, description="required 'iss' of JWTs")
    jwt_audience: str | None = Field(default=None, min_length=1, description="required 'aud' of JWTs")
    jwt_max_lifetime_s: float = Field(default=86400.0, gt=0, description="longest JWT lifetime accepted")
    drift: DriftConfig = Field(default_factory=DriftConfig)
    public_docs: bool = Field(
        default=False, description="serve /docs and /openapi.json to anyone (else /openapi.json needs read)"
    )
    grpc_host: str = "127.0.0.1"
    grpc_port: int | None = Field(default=None, ge=0, le=65535, description="also serve gRPC (0: any port)")
    grpc_max_concurrent: int = Field(default=64, ge=1, description="gRPC calls at once; beyond: refused")


# ----------------------------------------------------------------------------------------- schemas
class DetectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    xyxy: list[Annotated[float, Field(allow_inf_nan=False)]] = Field(
        min_length=4, max_length=4, description="x1, y1, x2, y2 in pixels"
    )
    confidence: float = Field(ge=0, le=1)
    class_id: int = Field(default=0, ge=0, le=2**31 - 1)
    embedding: list[float] | None = Field(default=None, max_length=4096)


class FrameIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    frame_index: int = Field(ge=0, le=MAX_ID)
    timestamp: float = Field(allow_inf_nan=False, description="seconds; strictly increasing per camera")
    detections: list[DetectionIn] = Field(default_factory=list, max_length=10_000)


class IngestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    camera_id: str = Field(min_length=1, max_length=128)
    model: str = Field(default="unknown", min_length=1, max_length=128, description="the detector's name")
    frames: list[FrameIn] = Field(min_length=1, max_length=10_000)


class IngestOut(BaseModel):
    batch_id: int
    frames: int
    detections: int
    queued: int


class FilterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cameras: list[str] | None = Field(default=None, max_length=1000)
    classes: list[Annotated[int, Field(ge=0, le=2**31 - 1)]] | None = Field(default=None, max_length=1000)
    time_range: (
        tuple[Annotated[float, Field(allow_inf_nan=False)], Annotated[float, Field(allow_inf_nan=False)]]
        | None
    ) = None

    @model_validator(mode="after")
    def _ordered(self) -> "FilterIn":
        if self.time_range is not None and self.time_range[1] < self.time_range[0]:
            start, end = self.time_range
            raise ValueError(f"time_range end ({end}) is before its start ({start})")
        return self

    def to_filter(self) -> Filter | None:
        if self.cameras is None and self.classes is None and self.time_range is None:
            return None
        return Filter(
            cameras=None if self.cameras is None else frozenset(self.cameras),
            classes=None if self.classes is None else frozenset(self.classes),
            time_range=self.time_range,
        )


class SearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    embedding: list[float] | None = Field(default=None, max_length=4096)
    track: int | None = Field(default=None, ge=1, le=MAX_ID, description="a track's id (from /v1/tracks)")
    k: int = Field(default=10, ge=1, le=1000)
    filter: FilterIn = Field(default_factory=FilterIn)
    rerank: Literal["none", "kreciprocal", "aqe"] = "none"


class HitOut(BaseModel):
    rank: int
    track: int
    camera_id: str
    track_id: int
    global_id: int
    class_id: int
    t_start: float
    t_end: float
    distance: float
    appearance: float
    rerank: float
    context: float


class SearchOut(BaseModel):
    hits: list[HitOut]


class TrackOut(BaseModel):
    id: int
    camera_id: str
    track_id: int
    class_id: int
    t_start: float
    t_end: float
    detections: int
    global_id: int
    indexed: bool


class TracksOut(BaseModel):
    tracks: list[TrackOut]
    next_after_id: int | None


class DetectionOut(BaseModel):
    frame_index: int
    timestamp: float
    xyxy: tuple[float, float, float, float]
    confidence: float
    class_id: int


class GlobalTrackOut(BaseModel):
    global_id: int
    t_start: float
    t_end: float
    cameras: list[str]
    tracks: list[TrackOut]


class GlobalTracksOut(BaseModel):
    global_tracks: list[GlobalTrackOut]
    next_after_id: int | None


class TrackDetailOut(TrackOut):
    boxes: list[DetectionOut]


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorBody
    request_id: str | None = None


# ------------------------------------------------------------------------------------------- state
class _State:
    """What one app holds: the service, keys, gate, drift monitor and metrics."""

    def __init__(self, config: ServeConfig, embedder: Embedder) -> None:
        self.config = config
        self.metrics = ServiceMetrics()
        self.service = Service(
            config.service,
            embedder,
            on_breaker_change=lambda name, old, new: self.metrics.set_breaker(name, new),
            on_stage=lambda stage, seconds: self.metrics.stage_seconds.labels(stage).observe(seconds),
        )
        for backend in ("index", "detector", "embedder"):
            self.metrics.set_breaker(backend, BreakerState.CLOSED)
        self.keys = KeyStore(config.service.data_dir / "keys.sqlite")
        secret = config.jwt_secret
        self.jwt = (
            None
            if secret is None
            else JwtVerifier(
                secret.get_secret_value(),
                issuer=config.jwt_issuer,
                audience=config.jwt_audience,
                max_lifetime_s=config.jwt_max_lifetime_s,
            )
        )
        self.gate = Gate(config.gate, self.keys, self.jwt, on_refused=self.refused)
        self.drift = DriftMonitor(config.drift)
        self.embedder = embedder
        self.service.observers.append(self.observe)
        self.service.camera_freed.append(self.forget_camera)

    @property
    def ready(self) -> bool:
        return self.service.ready and not self.gate.draining

    @property
    def models(self) -> frozenset[str]:
        """Every model name a drift stream or metric series may carry (a closed set)."""
        return self.service.models | {self.service.detector_name}

    def observe(self, camera: str, model: str, tracked: Detections) -> None:
        """Per processed frame (worker thread): confidence and embedding metrics, drift windows."""
        if len(tracked) == 0:
            return
        stream = f"{camera}/{model}"
        confidences = tracked.confidence.astype(np.float64)
        histogram = self.metrics.confidence.labels(camera, model)
        for value in confidences.tolist():
            histogram.observe(value)
        self.drift.observe_confidences(stream, confidences)
        if tracked.embedding is not None:
            self.metrics.embeddings.labels(camera).inc(len(tracked))
            self.drift.observe_embeddings(stream, tracked.embedding)

    def forget_camera(self, camera: str) -> None:
        """A camera went idle (worker thread): drop its drift windows and metric series."""
        for model in self.models:
            self.drift.forget(f"{camera}/{model}")
        self.metrics.forget_camera(camera, self.models)

    def refused(self, error: ServiceError) -> None:
        self.metrics.gate_refusals.labels(error.code).inc()
        if type(error) is RateLimited:
            self.metrics.rate_limited.inc()

    def ingest_refusal(self) -> ServiceError | None:
        """503 while the ingest queue is full, decided before the body is read."""
        admission = self.service.admission
        if not admission.full:
            return None
        self.metrics.refused_requests.labels("queue_full").inc()
        wait = admission.retry_after()
        return Overloaded(
            f"ingest queue is full ({admission.queued} batches waiting); retry in {wait:.1f} s",
            retry_after_s=wait,
        )

    def drain(self) -> None:
        """SIGTERM: readiness turns 503 and new work is refused; requests in flight finish."""
        self.gate.drain()
        log.info(json.dumps({"event": "draining", "queued_batches": self.service.queued}))


def _idempotency(principal: Principal, key: str | None) -> Idempotency | None:
    if key is None:
        return None
    owner = f"key:{principal.key_id}" if principal.key_id else f"jwt:{principal.subject}"
    return Idempotency(owner, key)


def create_app(config: ServeConfig, embedder: Embedder | None = None) -> FastAPI:
    """The FastAPI app; the service starts with the app's lifespan and stops (draining) with it."""
    state = _State(config, embedder or ColorHistogramEmbedder())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.service.start()
        grpc_server = None
        if config.grpc_port is not None:
            grpc_server, bound = start_grpc_server(
                state.service,
                state.gate,
                metrics=state.metrics,
                host=config.grpc_host,
                port=config.grpc_port,
                max_message_bytes=config.max_body_bytes,
                max_concurrent_rpcs=config.grpc_max_concurrent,
            )
            app.state.grpc_port = bound
        started = {"event": "started", "data_dir": str(config.service.data_dir)}
        log.info(json.dumps({**started, "grpc_port": getattr(app.state, "grpc_port", None)}))
        try:
            yield
        finally:
            if grpc_server is not None:
                grpc_server.stop(grace=5.0).wait()
            drained = state.service.stop()
            state.keys.close()
            log.info(json.dumps({"event": "stopped", "drained": drained}))

    app = FastAPI(
        title="crossview",
        version="1",
        description="Multi-camera perception and visual search.",
        lifespan=lifespan,
        openapi_url="/openapi.json" if config.public_docs else None,
        docs_url="/docs" if config.public_docs else None,
        redoc_url=None,
        redirect_slashes=False,  # a redirect would build its Location from the client's Host header
        responses={
            401: {"model": ErrorOut, "description": "missing, malformed, unknown or revoked credential"},
            403: {"model": ErrorOut, "description": "the credential lacks the route's scope"},
            408: {"model": ErrorOut, "description": "the body did not arrive in time"},
            413: {"model": ErrorOut, "description": "request body (or an image) too large"},
            429: {"model": ErrorOut, "description": "rate limit or failed-auth limit; see Retry-After"},
            503: {
                "model": ErrorOut,
                "description": "overloaded, draining or a backend down; see Retry-After",
            },
        },
    )
    app.state.crossview = state

    def caller(request: Request) -> Principal:
        """The principal the guard admitted (routes are never reached without one)."""
        principal = getattr(request.state, "principal", None)
        if not isinstance(principal, Principal):
            raise Unauthenticated("send an API key or JWT as 'Authorization: Bearer <token>'")
        return principal

    Caller = Annotated[Principal, Depends(caller)]
    IdempotencyKey = Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=128,
            description="a retry with the same key gets the first answer instead of storing the batch twice",
        ),
    ]

    # --------------------------------------------------------------------------- error handlers
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError) -> JSONResponse:
        return _json_error(request, error.http_status, error.code, error.message, refusal_headers(error))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = HTTPStatus(error.status_code).phrase.lower().replace(" ", "_")
        return _json_error(request, error.status_code, code, str(error.detail), dict(error.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in error.errors()[:10]
        )
        return _json_error(request, 422, "invalid_request", problems or "invalid request")

    # ----------------------------------------------------------------------------------- routes
    @app.get("/healthz", tags=["health"], openapi_extra=access(None))
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"model": ErrorOut}}, openapi_extra=access(None))
    def readyz() -> JSONResponse:
        """Readiness: the worker runs, ingest is accepted and the service is not draining."""
        body = {
            "ready": state.ready,
            "draining": state.gate.draining,
            "queued_batches": state.service.queued,
            "index_breaker": state.service.index_breaker.state.value,
            **{f"{name}_breaker": b.state.value for name, b in state.service.model_breakers.items()},
        }
        return JSONResponse(body, status_code=200 if state.ready else 503)

    if not config.public_docs:  # every route but health needs a credential, the schema included

        @app.get("/openapi.json", include_in_schema=False, openapi_extra=access(KeyScope.READ))
        def openapi() -> JSONResponse:
            return JSONResponse(app.openapi())

    @app.post(
        "/v1/ingest/detections",
        status_code=202,
        tags=["ingest"],
        responses={422: {"model": ErrorOut}},
        openapi_extra=access(KeyScope.INGEST),
    )
    def ingest(
        body: IngestIn, principal: Caller, response: Response, key: IdempotencyKey = None
    ) -> IngestOut:
        """Accept one camera's frames of detections; 202 once stored durably (tracked later)."""
        try:
            frames = [_frame_input(frame, number) for number, frame in enumerate(body.frames)]
            ack = state.service.submit(
                body.camera_id, frames, model=body.model, idempotency=_idempotency(principal, key)
            )
        except ServiceError as error:
            state.metrics.refused_frames.labels(error.code).inc(len(body.frames))
            raise
        return _acknowledged(state, body.camera_id, ack, response)

    @app.post(
        "/v1/ingest/frames",
        status_code=202,
        tags=["ingest"],
        responses={415: {"model": ErrorOut}, 422: {"model": ErrorOut}},
        openapi_extra=access(KeyScope.INGEST),
    )
    async def ingest_frames(
        principal: Caller,
        response: Response,
        camera_id: Annotated[str, Form(min_length=1, max_length=128)],
        timestamps: Annotated[str, Form(description="comma-separated seconds, one per image, increasing")],
        images: Annotated[
            list[UploadFile], File(description="encoded frames (JPEG, PNG, WebP, BMP), in order")
        ],
        frame_indices: Annotated[str | None, Form(description="comma-separated; default 0, 1, ...")] = None,
        key: IdempotencyKey = None,
    ) -> IngestOut:
        """Accept one camera's encoded frames; the service detects, embeds and tracks them (202)."""
        try:
            times = [float(t) for t in timestamps.split(",")]
            indices = (
                [int(i) for i in frame_indices.split(",")] if frame_indices else list(range(len(images)))
            )
        except ValueError:
            raise InvalidRequest("timestamps and frame_indices must be comma-separated numbers") from None
        if len(times) != len(images) or len(indices) != len(images):
            raise InvalidRequest(
                f"{len(images)} images need as many timestamps ({len(times)}) "
                f"and frame indices ({len(indices)})"
            )
        if any(not 0 <= i <= MAX_ID for i in indices):
            raise InvalidRequest(f"frame indices must be in [0, {MAX_ID}]")
        inputs = [
            ImageInput(frame_index=i, timestamp=t, data=await image.read())
            for i, t, image in zip(indices, times, images, strict=True)
        ]
        try:
            ack = await run_in_threadpool(
                state.service.submit_images, camera_id, inputs, idempotency=_idempotency(principal, key)
            )
        except ServiceError as error:
            state.metrics.refused_frames.labels(error.code).inc(len(inputs))
            raise
        return _acknowledged(state, camera_id, ack, response)

    @app.get("/v1/tracks", tags=["tracks"], openapi_extra=access(KeyScope.READ))
    def tracks(
        _: Caller,
        camera_id: Annotated[str | None, Query(max_length=128)] = None,
        start: Annotated[float | None, Query(allow_inf_nan=False)] = None,
        end: Annotated[float | None, Query(allow_inf_nan=False)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        after_id: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    ) -> TracksOut:
        """Tracks of a camera (or all) overlapping ``[start, end]``, by id; page with ``after_id``."""
        if start is not None and end is not None and end < start:
            raise InvalidRequest(f"end ({end}) is before start ({start})")
        found = state.service.tracks(
            camera_id=camera_id, start=start, end=end, limit=limit, after_id=after_id
        )
        rows = [TrackOut(**t.to_dict()) for t in found]
        return TracksOut(tracks=rows, next_after_id=rows[-1].id if len(rows) == limit else None)

    @app.get("/v1/global-tracks", tags=["tracks"], openapi_extra=access(KeyScope.READ))
    def global_tracks(
        _: Caller,
        camera_id: Annotated[str | None, Query(max_length=128, description="seen by this camera")] = None,
        start: Annotated[float | None, Query(allow_inf_nan=False)] = None,
        end: Annotated[float | None, Query(allow_inf_nan=False)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        after_id: Annotated[int, Query(ge=-1, le=MAX_ID)] = -1,
    ) -> GlobalTracksOut:
        """Objects across cameras: each global identity with its member tracks, by global id.

        A track gets its global id when it ends; tracks not yet associated are not listed.
        """
        if start is not None and end is not None and end < start:
            raise InvalidRequest(f"end ({end}) is before start ({start})")
        found = state.service.global_tracks(
            camera_id=camera_id, start=start, end=end, limit=limit, after_id=after_id
        )
        rows = [_global_track(global_id, members) for global_id, members in found]
        return GlobalTracksOut(
            global_tracks=rows, next_after_id=rows[-1].global_id if len(rows) == limit else None
        )

    @app.get(
        "/v1/global-tracks/{global_id}",
        tags=["tracks"],
        responses={404: {"model": ErrorOut}},
        openapi_extra=access(KeyScope.READ),
    )
    def global_track(global_id: Annotated[int, Path(ge=0, le=MAX_ID)], _: Caller) -> GlobalTrackOut:
        """One object across cameras: its member tracks in time order."""
        found = state.service.global_tracks(after_id=global_id - 1, limit=1)
        if not found or found[0][0] != global_id:
            raise StarletteHTTPException(404, f"no global track with id {global_id}")
        return _global_track(*found[0])

    @app.get(
        "/v1/tracks/{track}",
        tags=["tracks"],
        responses={404: {"model": ErrorOut}},
        openapi_extra=access(KeyScope.READ),
    )
    def track_detail(track: Annotated[int, Path(ge=1, le=MAX_ID)], _: Caller) -> TrackDetailOut:
        """One track and its boxes."""
        found = state.service.store.track(track)
        if found is None:
            raise StarletteHTTPException(404, f"no track with id {track}")
        boxes = state.service.store.detections_of(found.camera_id, found.track_id)
        return TrackDetailOut(
            **found.to_dict(),
            boxes=[
                DetectionOut(
                    frame_index=b.frame_index,
                    timestamp=b.timestamp,
                    xyxy=b.xyxy,
                    confidence=b.confidence,
                    class_id=b.class_id,
                )
                for b in boxes
            ],
        )

    @app.post(
        "/v1/search",
        tags=["search"],
        responses={404: {"model": ErrorOut}, 409: {"model": ErrorOut}, 422: {"model": ErrorOut}},
        openapi_extra=access(KeyScope.SEARCH),
    )
    def search(body: SearchIn, _: Caller) -> SearchOut:
        """Search ended tracks by an embedding or by a track; filters and re-ranking."""
        if (body.embedding is None) == (body.track is None):
            raise InvalidRequest("give exactly one of 'embedding' or 'track'")
        embedding = None if body.embedding is None else query_embedding(body.embedding, state.service.dim)
        return _search(
            state, embedding=embedding, track=body.track, k=body.k, filter_in=body.filter, rerank=body.rerank
        )

    @app.post(
        "/v1/search/image",
        tags=["search"],
        responses={413: {"model": ErrorOut}, 415: {"model": ErrorOut}, 422: {"model": ErrorOut}},
        openapi_extra=access(KeyScope.SEARCH),
    )
    async def search_image(
        _: Caller,
        image: Annotated[UploadFile, File(description="a crop of the object: JPEG, PNG, WebP or BMP")],
        k: Annotated[int, Form(ge=1, le=1000)] = 10,
        cameras: Annotated[str | None, Form(description="comma-separated camera ids")] = None,
    ) -> SearchOut:
        """Search ended tracks by an image of the object (embedded by the service's embedder).

        The image's header is checked against the size limits before it is decoded, and it is
        decoded off the event loop, a bounded number at once.
        """
        data = await image.read()
        wanted = FilterIn(cameras=[c for c in cameras.split(",") if c] if cameras else None)

        def run() -> SearchOut:
            return _search(state, image=state.service.decode_query(data), k=k, filter_in=wanted)

        return await run_in_threadpool(run)

    @app.get("/v1/models", tags=["models"], openapi_extra=access(KeyScope.READ))
    def models(_: Caller) -> dict[str, Any]:
        """What the service runs (embedder, detector, tracker, index) and the limits it enforces."""
        service = state.service
        return {
            "embedder": {"name": type(state.embedder).__name__, "dim": service.dim},
            "detector": service.detector_name,
            "client_models": sorted(service.models),
            "tracker": config.service.tracker,
            "index": {"factory": config.service.index_factory, "entries": service.index.count()},
            "limits": {
                "max_body_bytes": config.max_body_bytes,
                "images": config.service.images.model_dump(),
                "max_images_per_batch": config.service.max_images_per_batch,
                "max_frames_per_batch": config.service.max_frames_per_batch,
                "max_detections_per_frame": config.service.max_detections_per_frame,
                "max_cameras": service.admission.max_cameras,
                "max_megapixels": config.service.cameras.max_megapixels,
            },
        }

    @app.get("/v1/stats", tags=["observability"], openapi_extra=access(KeyScope.READ))
    def stats(_: Caller) -> dict[str, Any]:
        """What is stored: batches by state, detections and tracks; index entries; live cameras."""
        return {
            **state.service.store.counts(),
            "index_entries": state.service.index.count(),
            "cameras": len(state.service.admission.cameras),
            "camera_megapixels": round(state.service.admission.megapixels(), 3),
        }

    @app.get("/v1/drift", tags=["observability"], openapi_extra=access(KeyScope.READ))
    def drift(_: Caller) -> dict[str, Any]:
        """Drift of detection confidences and embeddings, recent window against the reference."""
        return {"reports": [r.to_dict() for r in _drift_reports(state)]}

    @app.get("/metrics", tags=["observability"], response_class=Response, openapi_extra=access(KeyScope.READ))
    def metrics(_: Caller) -> Response:
        """Prometheus metrics (text exposition format)."""
        state.metrics.queue_depth.set(state.service.queued)
        _drift_reports(state)
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")

    public = (
        frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect"}) if config.public_docs else frozenset()
    )
    app.add_middleware(
        Guard,
        routes=lambda: app.router.routes,
        gate=state.gate,
        max_body_bytes=config.max_body_bytes,
        body_timeout_s=config.body_timeout_s,
        public=public,
        ingest_refusal=state.ingest_refusal,
    )
    app.add_middleware(RequestContext, metrics=state.metrics, log=log)
    return app


def _acknowledged(state: _State, camera_id: str, ack: Ack, response: Response) -> IngestOut:
    if ack.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    else:
        state.metrics.ingested_frames.labels(camera_id).inc(ack.frames)
    return IngestOut(
        batch_id=ack.batch_id, frames=ack.frames, detections=ack.detections, queued=state.service.queued
    )


def _json_error(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    request.state.error = code
    body = error_body(code, message, getattr(request.state, "request_id", None))
    return JSONResponse(body, status_code=status, headers=headers)


def _global_track(global_id: int, members: list[TrackRow]) -> GlobalTrackOut:
    return GlobalTrackOut(
        global_id=global_id,
        t_start=min(t.t_start for t in members),
        t_end=max(t.t_end for t in members),
        cameras=sorted({t.camera_id for t in members}),
        tracks=[TrackOut(**t.to_dict()) for t in members],
    )


def _frame_input(frame: FrameIn, number: int) -> FrameInput:
    rows = frame.detections
    with_embedding = [d.embedding is not None for d in rows]
    if any(with_embedding) and not all(with_embedding):
        raise InvalidRequest(f"frame {number}: either every detection has an embedding or none has")
    embedding = np.asarray([d.embedding for d in rows], np.float32) if rows and all(with_embedding) else None
    return FrameInput(
        frame_index=frame.frame_index,
        timestamp=frame.timestamp,
        xyxy=np.asarray([d.xyxy for d in rows], np.float32).reshape(len(rows), 4),
        confidence=np.asarray([d.confidence for d in rows], np.float32),
        class_id=np.asarray([d.class_id for d in rows], np.int64),
        embedding=embedding,
    )


def _drift_reports(state: _State) -> list[Any]:
    reports = state.drift.report()
    for report in reports:
        labels = (report.stream, report.signal)
        state.metrics.drift_psi.labels(*labels).set(report.psi)
        state.metrics.drift_ks_pvalue.labels(*labels).set(report.ks_pvalue)
        state.metrics.drifted.labels(*labels).set(1.0 if report.drifted else 0.0)
    return reports


def _search(
    state: _State,
    *,
    image: np.ndarray[Any, np.dtype[np.uint8]] | None = None,
    embedding: np.ndarray[Any, np.dtype[np.float32]] | None = None,
    track: int | None = None,
    k: int,
    filter_in: FilterIn,
    rerank: Literal["none", "kreciprocal", "aqe"] = "none",
) -> SearchOut:
    with state.metrics.stage_seconds.labels("search").time():
        hits = state.service.search(
            image=image, embedding=embedding, track=track, k=k, filter=filter_in.to_filter(), rerank=rerank
        )
    return SearchOut(hits=[_hit(hit) for hit in hits])


def _hit(hit: Hit) -> HitOut:
    return HitOut(**hit_fields(hit))
