"""The gRPC API: ``start_grpc_server(service, keys, limiter)`` serves ``crossview.v1.Crossview``.

The messages and the service are defined in ``proto/crossview/v1/crossview.proto`` (the generated
code is ``crossview.serve.grpc_gen``; regenerate it with ``scripts/gen_grpc.sh``). The semantics
are the REST API's (``crossview.serve.app``), over the same ``Service``:

* ``Health`` needs no credential; ``IngestDetections`` needs the ``ingest`` scope and ``Search``
  the ``search`` scope (``admin`` implies both). The credential travels in the request metadata
  as ``authorization: Bearer <token>`` (or ``x-api-key: <token>``): an API key or, when a
  ``JwtVerifier`` is given, a signed JWT.
* Each credential draws on its token bucket in the ``RateLimiter`` (pass the REST app's limiter to
  share the buckets between both APIs).
* Failures are gRPC status codes with details naming the problem; where waiting helps, the
  trailing metadata carries ``retry-after`` in whole seconds (at least 1):

  ======================================================  ===============================
  failure                                                 status (REST equivalent)
  ======================================================  ===============================
  no credential, or an unknown/revoked/expired/bad one    ``UNAUTHENTICATED`` (401)
  the credential lacks the RPC's scope                    ``PERMISSION_DENIED`` (403)
  rate limit                                              ``RESOURCE_EXHAUSTED`` (429) + retry-after
  bad input (shapes, ranges, frame order, bad image)      ``INVALID_ARGUMENT`` (422, 400)
  search by an unknown track                              ``NOT_FOUND`` (404)
  search by a track that has not ended yet                ``FAILED_PRECONDITION`` (409)
  ingest queue full; service starting or stopping        ``UNAVAILABLE`` (503) + retry-after
  index breaker open; the index failing                   ``UNAVAILABLE`` (503) + retry-after
  anything unexpected                                     ``INTERNAL`` (500), logged
  ======================================================  ===============================

  Messages over ``max_message_bytes`` are refused by gRPC itself with ``RESOURCE_EXHAUSTED``.

Each RPC is logged as one JSON line on the ``crossview.serve.grpc`` logger.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any, Final, NoReturn, Protocol, TypeVar

import grpc
import numpy as np

from crossview.search.engine import Hit, RerankMethod
from crossview.search.index import Filter
from crossview.serve.breaker import BreakerOpenError
from crossview.serve.grpc_gen import crossview_pb2 as pb
from crossview.serve.grpc_gen import crossview_pb2_grpc as pb_grpc
from crossview.serve.keys import TOKEN_PREFIX, JwtVerifier, KeyStore, Principal, Scope
from crossview.serve.limits import RateLimiter
from crossview.serve.service import (
    BackendFailure,
    FrameInput,
    Overloaded,
    Service,
    Unavailable,
    decode_image,
    hit_fields,
    query_embedding,
)

__all__ = ["CrossviewServicer", "RpcContext", "RpcRefusal", "start_grpc_server"]

log = logging.getLogger("crossview.serve.grpc")

MAX_ID: Final = 2**62  # ids and frame numbers: SQLite integers are 64-bit (as the REST API)
MAX_CLASS: Final = 2**31 - 1
MAX_K: Final = 1000
DEFAULT_K: Final = 10
MAX_FILTER_VALUES: Final = 1000
MAX_MODEL_NAME: Final = 128
RERANK_METHODS: Final[dict[str, RerankMethod]] = {
    "": "none",
    "none": "none",
    "kreciprocal": "kreciprocal",
    "aqe": "aqe",
}

R = TypeVar("R")


class RpcContext(Protocol):
    """The part of ``grpc.ServicerContext`` the servicer uses."""

    def invocation_metadata(self) -> Sequence[tuple[str, str | bytes]]: ...

    def set_trailing_metadata(self, trailing_metadata: Sequence[tuple[str, str]]) -> None: ...

    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn: ...


class RpcRefusal(Exception):
    """A request answered with a non-OK status, its details and an optional retry hint (seconds)."""

    def __init__(self, code: grpc.StatusCode, details: str, retry_after_s: float | None = None) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.retry_after_s = retry_after_s


def start_grpc_server(
    service: Service,
    keys: KeyStore,
    limiter: RateLimiter,
    *,
    jwt: JwtVerifier | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    max_workers: int = 8,
    max_message_bytes: int = 16 * 1024 * 1024,
) -> tuple[grpc.Server, int]:
    """Start a gRPC server for ``service`` on ``host:port`` (0: any free port); the server and its port.

    The caller owns the service's life cycle (``service.start()`` before, ``service.stop()`` after
    ``server.stop(grace)``) and the key store's. Requests and replies over ``max_message_bytes``
    are refused. Raises ``RuntimeError`` when the address cannot be bound.
    """
    if max_workers < 1:
        raise ValueError(f"max_workers must be at least 1, got {max_workers}")
    if max_message_bytes < 1024:
        raise ValueError(f"max_message_bytes must be at least 1024, got {max_message_bytes}")
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="crossview-grpc"),
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),  # a port in use is an error, not shared with another server
        ],
    )
    # the generated registration is untyped: give it its type here rather than call it untyped
    register: Callable[[CrossviewServicer, grpc.Server], None] = pb_grpc.add_CrossviewServicer_to_server
    register(CrossviewServicer(service, keys, limiter, jwt=jwt), server)
    address = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
    try:
        bound = int(server.add_insecure_port(address))
    except RuntimeError as error:
        server.stop(None)
        raise RuntimeError(f"cannot bind the gRPC server to {address}: {error}") from error
    if bound == 0:  # older grpcio answers 0 instead of raising
        server.stop(None)
        raise RuntimeError(f"cannot bind the gRPC server to {address}")
    server.start()
    log.info(json.dumps({"event": "grpc_started", "address": address, "port": bound}))
    return server, bound


class CrossviewServicer(pb_grpc.CrossviewServicer):
    """``crossview.v1.Crossview`` over a ``Service``: authentication, scopes, rate limits, status codes."""

    def __init__(
        self, service: Service, keys: KeyStore, limiter: RateLimiter, *, jwt: JwtVerifier | None = None
    ) -> None:
        self._service = service
        self._keys = keys
        self._limiter = limiter
        self._jwt = jwt

    # ------------------------------------------------------------------------------------- RPCs
    def Health(self, request: pb.HealthRequest, context: RpcContext) -> pb.HealthReply:
        """Liveness and readiness; no credential needed."""
        return self._answer("Health", context, None, self._health)

    def IngestDetections(self, request: pb.IngestRequest, context: RpcContext) -> pb.IngestReply:
        """Accept one camera's frames of detections once they are stored durably."""
        return self._answer("IngestDetections", context, Scope.INGEST, lambda: self._ingest(request))

    def Search(self, request: pb.SearchRequest, context: RpcContext) -> pb.SearchReply:
        """Search ended tracks by an embedding, a track or an image."""
        return self._answer("Search", context, Scope.SEARCH, lambda: self._search(request))

    # -------------------------------------------------------------------------------- plumbing
    def _answer(self, method: str, context: RpcContext, needed: Scope | None, work: Callable[[], R]) -> R:
        """Authorize, run ``work`` and log; a refusal or an unexpected error aborts the RPC."""
        started = time.perf_counter()
        principal: Principal | None = None
        try:
            if needed is not None:
                principal = self._authorize(context, needed)
            reply = work()
        except RpcRefusal as error:
            refusal = error
        except Exception as error:
            log.exception("unhandled error in gRPC %s", method)
            refusal = RpcRefusal(grpc.StatusCode.INTERNAL, f"internal error ({type(error).__name__})")
        else:
            self._log(method, "OK", started, principal)
            return reply
        self._log(method, refusal.code.name, started, principal)
        if refusal.retry_after_s is not None:
            context.set_trailing_metadata((("retry-after", _retry_after(refusal.retry_after_s)),))
        context.abort(refusal.code, refusal.details)

    @staticmethod
    def _log(method: str, code: str, started: float, principal: Principal | None) -> None:
        elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
        subject = None if principal is None else principal.subject
        log.info(
            json.dumps(
                {"event": "rpc", "method": method, "code": code, "ms": elapsed_ms, "principal": subject}
            )
        )

    def _authorize(self, context: RpcContext, needed: Scope) -> Principal:
        """The caller's principal, allowed ``needed`` and within its rate limit; else ``RpcRefusal``."""
        metadata = {
            key.lower(): value for key, value in context.invocation_metadata() if isinstance(value, str)
        }
        header = metadata.get("authorization", "")
        token = (
            header[7:].strip() if header[:7].lower() == "bearer " else metadata.get("x-api-key", "").strip()
        )
        if not token:
            raise RpcRefusal(
                grpc.StatusCode.UNAUTHENTICATED,
                "send an API key or JWT as 'authorization: Bearer <token>' metadata",
            )
        principal = self._keys.verify(token) if token.startswith(TOKEN_PREFIX) else None
        if principal is None and self._jwt is not None and token.count(".") == 2:
            principal = self._jwt.verify(token)
        if principal is None:
            raise RpcRefusal(
                grpc.StatusCode.UNAUTHENTICATED, "unknown, revoked, expired or malformed credential"
            )
        if not principal.allows(needed):
            raise RpcRefusal(
                grpc.StatusCode.PERMISSION_DENIED, f"this credential lacks the {needed.value!r} scope"
            )
        wait = self._limiter.acquire(principal.key_id or f"jwt:{principal.subject}")
        if wait > 0:
            raise RpcRefusal(
                grpc.StatusCode.RESOURCE_EXHAUSTED, f"rate limit reached; retry in {wait:.2f} s", wait
            )
        return principal

    # ---------------------------------------------------------------------------------- health
    def _health(self) -> pb.HealthReply:
        service = self._service
        return pb.HealthReply(
            status="ok",
            ready=service.ready,
            queued_batches=service.queued,
            index_breaker=service.index_breaker.state.value,
        )

    # ---------------------------------------------------------------------------------- ingest
    def _ingest(self, request: pb.IngestRequest) -> pb.IngestReply:
        try:
            if len(request.model) > MAX_MODEL_NAME:
                raise ValueError(f"model must be at most {MAX_MODEL_NAME} characters")
            frames = [frame_input(frame, number) for number, frame in enumerate(request.frames)]
            batch_id = self._service.submit(request.camera_id, frames, model=request.model or "unknown")
        except Overloaded as error:
            raise RpcRefusal(grpc.StatusCode.UNAVAILABLE, str(error), error.retry_after_s) from None
        except Unavailable as error:
            raise RpcRefusal(grpc.StatusCode.UNAVAILABLE, str(error), 1.0) from None
        except ValueError as error:
            raise RpcRefusal(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
        return pb.IngestReply(
            batch_id=batch_id,
            frames=len(frames),
            detections=sum(len(f.xyxy) for f in frames),
            queued=self._service.queued,
        )

    # ---------------------------------------------------------------------------------- search
    def _search(self, request: pb.SearchRequest) -> pb.SearchReply:
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        query = request.WhichOneof("query")
        if query is None:
            raise RpcRefusal(invalid, "give exactly one query: 'embedding', 'track' or 'image'")
        k = request.k or DEFAULT_K
        if not 1 <= k <= MAX_K:
            raise RpcRefusal(invalid, f"k must be in [1, {MAX_K}], got {k}")
        rerank = RERANK_METHODS.get(request.rerank)
        if rerank is None:
            raise RpcRefusal(
                invalid, f"rerank must be 'none', 'kreciprocal' or 'aqe', not {request.rerank!r}"
            )
        image: np.ndarray[Any, np.dtype[np.uint8]] | None = None
        embedding: np.ndarray[Any, np.dtype[np.float32]] | None = None
        track: int | None = None
        try:
            wanted = search_filter(request.filter) if request.HasField("filter") else None
            if query == "embedding":
                embedding = query_embedding(request.embedding.values, self._service.dim)
            elif query == "track":
                track = request.track
                if not 1 <= track <= MAX_ID:
                    raise ValueError(f"track must be in [1, 2^62], got {track}")
            else:
                image = image_query(request.image)
            hits = self._service.search(
                image=image, embedding=embedding, track=track, k=k, filter=wanted, rerank=rerank
            )
        except KeyError as error:
            raise RpcRefusal(grpc.StatusCode.NOT_FOUND, str(error.args[0] if error.args else error)) from None
        except LookupError as error:
            raise RpcRefusal(grpc.StatusCode.FAILED_PRECONDITION, str(error)) from None
        except ValueError as error:
            raise RpcRefusal(invalid, str(error)) from None
        except BreakerOpenError as error:
            raise RpcRefusal(grpc.StatusCode.UNAVAILABLE, str(error), error.retry_after_s) from None
        except BackendFailure as error:
            raise RpcRefusal(grpc.StatusCode.UNAVAILABLE, str(error), 1.0) from None
        return pb.SearchReply(hits=[hit_message(hit) for hit in hits])


# -------------------------------------------------------------------------------------- conversion
def frame_input(frame: pb.Frame, number: int) -> FrameInput:
    """A ``Frame`` message as the service's ``FrameInput``; ``ValueError`` naming what is wrong.

    Checks what the REST API's schema checks (the service checks the rest: box order and
    finiteness, confidences, embedding sizes, time order).
    """
    where = f"frame {number} (index {frame.frame_index})"
    if not 0 <= frame.frame_index <= MAX_ID:
        raise ValueError(f"frame {number}: frame_index must be in [0, 2^62], got {frame.frame_index}")
    rows = frame.detections
    n = len(rows)
    for row, detection in enumerate(rows):
        if len(detection.xyxy) != 4:
            raise ValueError(f"{where}, detection {row}: xyxy needs 4 numbers, got {len(detection.xyxy)}")
        if not 0 <= detection.class_id <= MAX_CLASS:
            raise ValueError(f"{where}, detection {row}: class_id must be >= 0, got {detection.class_id}")
    sizes = [len(detection.embedding) for detection in rows]
    if any(sizes) and not all(sizes):
        raise ValueError(f"frame {number}: either every detection has an embedding or none has")
    embedding = None
    if n and all(sizes):
        if len(set(sizes)) > 1:
            raise ValueError(f"{where}: embeddings must all have one size, got sizes {sorted(set(sizes))}")
        values = itertools.chain.from_iterable(detection.embedding for detection in rows)
        embedding = np.fromiter(values, np.float32, count=n * sizes[0]).reshape(n, sizes[0])
    xyxy = itertools.chain.from_iterable(detection.xyxy for detection in rows)
    return FrameInput(
        frame_index=frame.frame_index,
        timestamp=frame.timestamp,
        xyxy=np.fromiter(xyxy, np.float32, count=4 * n).reshape(n, 4),
        confidence=np.fromiter((d.confidence for d in rows), np.float32, count=n),
        class_id=np.fromiter((d.class_id for d in rows), np.int64, count=n),
        embedding=embedding,
    )


def search_filter(message: pb.Filter) -> Filter | None:
    """A ``Filter`` message as the index's ``Filter``; ``None`` when it restricts nothing."""
    cameras = list(message.cameras)
    classes = list(message.classes)
    if len(cameras) > MAX_FILTER_VALUES or len(classes) > MAX_FILTER_VALUES:
        raise ValueError(
            f"a filter takes at most {MAX_FILTER_VALUES} cameras and {MAX_FILTER_VALUES} classes"
        )
    if any(not 0 <= c <= MAX_CLASS for c in classes):
        raise ValueError("filter classes must be >= 0")
    time_range = None
    if message.HasField("time_range"):
        start, end = message.time_range.start, message.time_range.end
        if not (math.isfinite(start) and math.isfinite(end)):
            raise ValueError("filter time_range must be finite")
        if end < start:
            raise ValueError(f"filter time_range end ({end}) is before its start ({start})")
        time_range = (start, end)
    if not cameras and not classes and time_range is None:
        return None
    return Filter(
        cameras=frozenset(cameras) if cameras else None,
        classes=frozenset(classes) if classes else None,
        time_range=time_range,
    )


def image_query(data: bytes) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """An encoded image (JPEG, PNG, ...) as a BGR array; ``ValueError`` when it does not decode."""
    decoded = decode_image(data)
    if decoded is None:
        raise ValueError(f"the image ({len(data)} bytes) is not a decodable image")
    return decoded


def hit_message(hit: Hit) -> pb.Hit:
    """A search hit as a ``Hit`` message."""
    return pb.Hit(**hit_fields(hit))


def _retry_after(seconds: float) -> str:
    """A ``retry-after`` value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))
