"""The REST API: ``create_app(config)`` returns a FastAPI app over one data directory.

Every route but ``/healthz`` and ``/readyz`` needs a credential, ``Authorization: Bearer <token>``
(or ``X-API-Key: <token>``): an API key from ``crossview keys create`` or, when a JWT secret is
configured, a signed JWT. Each route needs a scope (read, search, ingest; admin implies all):
none or a bad one is 401, the wrong scope 403. Each credential has a token bucket (429 with
``Retry-After`` when empty). Bodies over ``max_body_bytes`` are refused with 413 before they are
read in full. A full ingest queue is 503 with ``Retry-After``, and so is an open circuit breaker
around the index. Errors are JSON ``{"error": {"code", "message"}, "request_id"}``; every
response carries ``X-Request-ID``, and each request is logged as one JSON line.
"""

import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, File, Form, Path, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crossview.core.detections import Detections
from crossview.embed.base import Embedder
from crossview.embed.color import ColorHistogramEmbedder
from crossview.search.engine import Hit
from crossview.search.index import Filter
from crossview.serve.breaker import BreakerOpenError, BreakerState
from crossview.serve.drift import DriftConfig, DriftMonitor
from crossview.serve.grpc_server import start_grpc_server
from crossview.serve.keys import JwtVerifier, KeyStore, Principal
from crossview.serve.keys import Scope as KeyScope
from crossview.serve.limits import RateLimit, RateLimiter
from crossview.serve.metrics import ServiceMetrics
from crossview.serve.service import (
    BackendFailure,
    FrameInput,
    ImageInput,
    Overloaded,
    Service,
    ServiceConfig,
    Unavailable,
    decode_image,
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
    rate_limit: RateLimit = Field(default_factory=lambda: RateLimit(rate_per_s=50.0, burst=100))
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    jwt_secret: SecretStr | None = None
    drift: DriftConfig = Field(default_factory=DriftConfig)
    public_docs: bool = Field(
        default=False, description="serve /docs and /openapi.json to anyone (else /openapi.json needs read)"
    )
    grpc_host: str = "127.0.0.1"
    grpc_port: int | None = Field(default=None, ge=0, le=65535, description="also serve gRPC (0: any port)")


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


# -------------------------------------------------------------------------------------- middleware
class BodyLimit:
    """Refuses bodies over ``limit`` bytes with 413, before the app sees them.

    A declared ``Content-Length`` is checked at once (the server enforces it as the framing). A
    body sent without one (chunked) is read here first, up to the limit, and then handed on; one
    that goes past the limit is refused as soon as it does.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.limit:
                await _send_error(scope, send, 413, "payload_too_large", self._message())
                return
            await self.app(scope, receive, send)
            return
        buffered: list[Message] = []
        received = 0
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            received += len(message.get("body", b""))
            if received > self.limit:
                await _send_error(scope, send, 413, "payload_too_large", self._message())
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)

    def _message(self) -> str:
        return f"request body over {self.limit} bytes"


class IngestGate:
    """Refuses ingest with 503 while the queue is full, before the body is read or parsed.

    Parsing a megabyte of JSON only to refuse it would cost as much as accepting it, and the
    refusals would slow the accepted requests under overload. The route checks again on admission.
    """

    PATHS = frozenset({"/v1/ingest/detections", "/v1/ingest/frames"})

    def __init__(self, app: ASGIApp, service: Service, metrics: ServiceMetrics) -> None:
        self.app = app
        self.service = service
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        full = self.service.queued >= self.service.config.max_queued_batches
        if full and scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.PATHS:
            wait = self.service.retry_after()
            self.metrics.refused_requests.labels("queue_full").inc()
            message = f"ingest queue is full ({self.service.queued} batches waiting); retry in {wait:.1f} s"
            await _send_error(scope, send, 503, "overloaded", message, _retry_after(wait))
            return
        await self.app(scope, receive, send)


async def _send_error(
    scope: Scope, send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------------------------------- state
class _State:
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
        self.jwt = None if secret is None else JwtVerifier(secret.get_secret_value())
        self.limiter = RateLimiter(config.rate_limit)
        self.drift = DriftMonitor(config.drift)
        self.embedder = embedder
        self.service.observers.append(self.observe)

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


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message"}}`` with its status and headers."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> ApiError:
    return ApiError(status, code, message, headers)


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


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
                state.keys,
                state.limiter,
                jwt=state.jwt,
                host=config.grpc_host,
                port=config.grpc_port,
                max_message_bytes=config.max_body_bytes,
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
        responses={
            401: {"model": ErrorOut, "description": "missing, malformed, unknown or revoked credential"},
            403: {"model": ErrorOut, "description": "the credential lacks the route's scope"},
            413: {"model": ErrorOut, "description": "request body too large"},
            429: {"model": ErrorOut, "description": "rate limit; see Retry-After"},
        },
    )
    app.state.crossview = state

    # --------------------------------------------------------------------------- auth dependency
    def credential(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        token = (
            header[7:].strip() if header[:7].lower() == "bearer " else request.headers.get("x-api-key", "")
        )
        if not token:
            raise _error(401, "unauthenticated", "send an API key or JWT as 'Authorization: Bearer <token>'")
        principal = state.keys.verify(token) if token.startswith("cvk_") else None
        if principal is None and state.jwt is not None and token.count(".") == 2:
            principal = state.jwt.verify(token)
        if principal is None:
            raise _error(401, "unauthenticated", "unknown, revoked, expired or malformed credential")
        request.state.principal = principal.subject
        return principal

    def scope(needed: KeyScope) -> Callable[[Principal], Awaitable[Principal]]:
        async def check(principal: Annotated[Principal, Depends(credential)]) -> Principal:
            if not principal.allows(needed):
                raise _error(403, "forbidden", f"this credential lacks the {needed.value!r} scope")
            wait = state.limiter.acquire(principal.key_id or f"jwt:{principal.subject}")
            if wait > 0:
                state.metrics.rate_limited.inc()
                raise _error(
                    429, "rate_limited", f"rate limit reached; retry in {wait:.2f} s", _retry_after(wait)
                )
            return principal

        return check

    # --------------------------------------------------------------------------- error handlers
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return _json_error(request, error.status, error.code, error.message, error.headers)

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

    @app.exception_handler(BackendFailure)
    async def backend_failed(request: Request, error: BackendFailure) -> JSONResponse:
        return _json_error(request, 503, "backend_error", str(error), _retry_after(1.0))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return _json_error(request, 500, "internal_error", f"internal error ({type(error).__name__})")

    @app.exception_handler(BreakerOpenError)
    async def breaker_open(request: Request, error: BreakerOpenError) -> JSONResponse:
        return _json_error(request, 503, "backend_unavailable", str(error), _retry_after(error.retry_after_s))

    # -------------------------------------------------------------------------- request context
    @app.middleware("http")
    async def context(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        request.state.request_id = request_id
        started = time.perf_counter()
        response = await call_next(request)
        elapsed = time.perf_counter() - started
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        state.metrics.request_seconds.labels(template, request.method, str(response.status_code)).observe(
            elapsed
        )
        response.headers["X-Request-ID"] = request_id
        log.info(
            json.dumps(
                {
                    "event": "request",
                    "request_id": request_id,
                    "method": request.method,
                    "route": template,
                    "status": response.status_code,
                    "ms": round(elapsed * 1000, 2),
                    "principal": getattr(request.state, "principal", None),
                    "error": getattr(request.state, "error", None),
                }
            )
        )
        return response

    # ----------------------------------------------------------------------------------- routes
    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"model": ErrorOut}})
    def readyz() -> JSONResponse:
        """Readiness: the worker runs and ingest is accepted; the index breaker's state."""
        body = {
            "ready": state.service.ready,
            "queued_batches": state.service.queued,
            "index_breaker": state.service.index_breaker.state.value,
            **{f"{name}_breaker": b.state.value for name, b in state.service.model_breakers.items()},
        }
        return JSONResponse(body, status_code=200 if state.service.ready else 503)

    Ingest = Annotated[Principal, Depends(scope(KeyScope.INGEST))]
    Read = Annotated[Principal, Depends(scope(KeyScope.READ))]
    SearchScope = Annotated[Principal, Depends(scope(KeyScope.SEARCH))]

    if not config.public_docs:  # every route but health needs a credential, the schema included

        @app.get("/openapi.json", include_in_schema=False)
        def openapi(_: Read) -> JSONResponse:
            return JSONResponse(app.openapi())

    @app.post(
        "/v1/ingest/detections",
        status_code=202,
        tags=["ingest"],
        responses={422: {"model": ErrorOut}, 503: {"model": ErrorOut}},
    )
    def ingest(body: IngestIn, _: Ingest) -> IngestOut:
        """Accept one camera's frames of detections; 202 once stored durably (tracked later)."""
        try:
            frames = [_frame_input(frame, number) for number, frame in enumerate(body.frames)]
            batch_id = state.service.submit(body.camera_id, frames, model=body.model)
        except Overloaded as error:
            state.metrics.refused_frames.labels("queue_full").inc(len(body.frames))
            raise _error(503, "overloaded", str(error), _retry_after(error.retry_after_s)) from None
        except Unavailable as error:
            state.metrics.refused_frames.labels("unavailable").inc(len(body.frames))
            raise _error(503, "unavailable", str(error), _retry_after(1.0)) from None
        except ValueError as error:
            state.metrics.refused_frames.labels("invalid").inc(len(body.frames))
            raise _error(422, "invalid_request", str(error)) from None
        state.metrics.ingested_frames.labels(body.camera_id).inc(len(frames))
        count = sum(len(f.xyxy) for f in frames)
        return IngestOut(batch_id=batch_id, frames=len(frames), detections=count, queued=state.service.queued)

    @app.post(
        "/v1/ingest/frames",
        status_code=202,
        tags=["ingest"],
        responses={422: {"model": ErrorOut}, 503: {"model": ErrorOut}},
    )
    async def ingest_frames(
        _: Ingest,
        camera_id: Annotated[str, Form(min_length=1, max_length=128)],
        timestamps: Annotated[str, Form(description="comma-separated seconds, one per image, increasing")],
        images: Annotated[list[UploadFile], File(description="encoded frames (JPEG, PNG, ...), in order")],
        frame_indices: Annotated[str | None, Form(description="comma-separated; default 0, 1, ...")] = None,
    ) -> IngestOut:
        """Accept one camera's encoded frames; the service detects, embeds and tracks them (202)."""
        try:
            times = [float(t) for t in timestamps.split(",")]
            indices = (
                [int(i) for i in frame_indices.split(",")] if frame_indices else list(range(len(images)))
            )
        except ValueError:
            raise _error(
                422, "invalid_request", "timestamps and frame_indices must be comma-separated numbers"
            ) from None
        if len(times) != len(images) or len(indices) != len(images):
            raise _error(
                422,
                "invalid_request",
                f"{len(images)} images need as many timestamps ({len(times)}) "
                f"and frame indices ({len(indices)})",
            )
        if any(not 0 <= i <= MAX_ID for i in indices):
            raise _error(422, "invalid_request", f"frame indices must be in [0, {MAX_ID}]")
        inputs = [
            ImageInput(frame_index=i, timestamp=t, data=await image.read())
            for i, t, image in zip(indices, times, images, strict=True)
        ]
        try:
            batch_id = await run_in_threadpool(state.service.submit_images, camera_id, inputs)
        except Overloaded as error:
            state.metrics.refused_frames.labels("queue_full").inc(len(inputs))
            raise _error(503, "overloaded", str(error), _retry_after(error.retry_after_s)) from None
        except Unavailable as error:
            state.metrics.refused_frames.labels("unavailable").inc(len(inputs))
            raise _error(503, "unavailable", str(error), _retry_after(1.0)) from None
        except ValueError as error:
            state.metrics.refused_frames.labels("invalid").inc(len(inputs))
            raise _error(422, "invalid_request", str(error)) from None
        state.metrics.ingested_frames.labels(camera_id).inc(len(inputs))
        return IngestOut(batch_id=batch_id, frames=len(inputs), detections=0, queued=state.service.queued)

    @app.get("/v1/tracks", tags=["tracks"])
    def tracks(
        _: Read,
        camera_id: Annotated[str | None, Query(max_length=128)] = None,
        start: Annotated[float | None, Query(allow_inf_nan=False)] = None,
        end: Annotated[float | None, Query(allow_inf_nan=False)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        after_id: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    ) -> TracksOut:
        """Tracks of a camera (or all) overlapping ``[start, end]``, by id; page with ``after_id``."""
        if start is not None and end is not None and end < start:
            raise _error(422, "invalid_request", f"end ({end}) is before start ({start})")
        found = state.service.tracks(
            camera_id=camera_id, start=start, end=end, limit=limit, after_id=after_id
        )
        rows = [TrackOut(**t.to_dict()) for t in found]
        return TracksOut(tracks=rows, next_after_id=rows[-1].id if len(rows) == limit else None)

    @app.get("/v1/global-tracks", tags=["tracks"])
    def global_tracks(
        _: Read,
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
            raise _error(422, "invalid_request", f"end ({end}) is before start ({start})")
        found = state.service.global_tracks(
            camera_id=camera_id, start=start, end=end, limit=limit, after_id=after_id
        )
        rows = [_global_track(global_id, members) for global_id, members in found]
        return GlobalTracksOut(
            global_tracks=rows, next_after_id=rows[-1].global_id if len(rows) == limit else None
        )

    @app.get("/v1/global-tracks/{global_id}", tags=["tracks"], responses={404: {"model": ErrorOut}})
    def global_track(global_id: Annotated[int, Path(ge=0, le=MAX_ID)], _: Read) -> GlobalTrackOut:
        """One object across cameras: its member tracks in time order."""
        found = state.service.global_tracks(after_id=global_id - 1, limit=1)
        if not found or found[0][0] != global_id:
            raise _error(404, "not_found", f"no global track with id {global_id}")
        return _global_track(*found[0])

    @app.get("/v1/tracks/{track}", tags=["tracks"], responses={404: {"model": ErrorOut}})
    def track_detail(track: Annotated[int, Path(ge=1, le=MAX_ID)], _: Read) -> TrackDetailOut:
        """One track and its boxes."""
        found = state.service.store.track(track)
        if found is None:
            raise _error(404, "not_found", f"no track with id {track}")
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
        responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}, 503: {"model": ErrorOut}},
    )
    def search(body: SearchIn, _: SearchScope) -> SearchOut:
        """Search ended tracks by an embedding or by a track; filters and re-ranking."""
        if (body.embedding is None) == (body.track is None):
            raise _error(422, "invalid_request", "give exactly one of 'embedding' or 'track'")
        embedding = None
        if body.embedding is not None:
            try:
                embedding = query_embedding(body.embedding, state.service.dim)
            except ValueError as error:
                raise _error(422, "invalid_request", str(error)) from None
        return _search(
            state, embedding=embedding, track=body.track, k=body.k, filter_in=body.filter, rerank=body.rerank
        )

    @app.post(
        "/v1/search/image",
        tags=["search"],
        responses={400: {"model": ErrorOut}, 422: {"model": ErrorOut}, 503: {"model": ErrorOut}},
    )
    async def search_image(
        _: SearchScope,
        image: Annotated[UploadFile, File(description="a crop of the object: JPEG, PNG, ...")],
        k: Annotated[int, Form(ge=1, le=1000)] = 10,
        cameras: Annotated[str | None, Form(description="comma-separated camera ids")] = None,
    ) -> SearchOut:
        """Search ended tracks by an image of the object (embedded by the service's embedder)."""
        decoded = decode_image(await image.read())
        if decoded is None:
            raise _error(400, "bad_image", f"upload {image.filename!r} is not a decodable image")
        wanted = FilterIn(cameras=[c for c in cameras.split(",") if c] if cameras else None)
        return await run_in_threadpool(_search, state, image=decoded, k=k, filter_in=wanted)

    @app.get("/v1/models", tags=["models"])
    def models(_: Read) -> dict[str, Any]:
        """What the service runs: embedder, tracker, index."""
        service = state.service
        return {
            "embedder": {"name": type(state.embedder).__name__, "dim": service.dim},
            "tracker": config.service.tracker,
            "index": {"factory": config.service.index_factory, "entries": service.index.count()},
        }

    @app.get("/v1/stats", tags=["observability"])
    def stats(_: Read) -> dict[str, int]:
        """What is stored: batches by state, detections (tracked or not) and tracks; index entries."""
        return {**state.service.store.counts(), "index_entries": state.service.index.count()}

    @app.get("/v1/drift", tags=["observability"])
    def drift(_: Read) -> dict[str, Any]:
        """Drift of detection confidences and embeddings, recent window against the reference."""
        return {"reports": [r.to_dict() for r in _drift_reports(state)]}

    @app.get("/metrics", tags=["observability"], response_class=Response)
    def metrics(_: Read) -> Response:
        """Prometheus metrics (text exposition format)."""
        state.metrics.queue_depth.set(state.service.queued)
        _drift_reports(state)
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")

    app.add_middleware(IngestGate, service=state.service, metrics=state.metrics)
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    return app


def _json_error(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    request.state.error = code
    body = {
        "error": {"code": code, "message": message},
        "request_id": getattr(request.state, "request_id", None),
    }
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
        raise ValueError(f"frame {number}: either every detection has an embedding or none has")
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
    started = time.perf_counter()
    try:
        hits = state.service.search(
            image=image, embedding=embedding, track=track, k=k, filter=filter_in.to_filter(), rerank=rerank
        )
    except KeyError as error:
        raise _error(404, "not_found", str(error.args[0])) from None
    except LookupError as error:
        raise _error(409, "not_searchable", str(error)) from None
    except ValueError as error:
        raise _error(422, "invalid_request", str(error)) from None
    state.metrics.stage_seconds.labels("search").observe(time.perf_counter() - started)
    return SearchOut(hits=[_hit(hit) for hit in hits])


def _hit(hit: Hit) -> HitOut:
    return HitOut(**hit_fields(hit))
