"""The gRPC API: ``start_grpc_server(service, gate)`` serves ``crossview.v1.Crossview``.

The messages and the service are defined in ``proto/crossview/v1/crossview.proto`` (the generated
code is ``crossview.serve.grpc_gen``; regenerate it with ``scripts/gen_grpc.sh``). The semantics
are the REST API's (``crossview.serve.app``), over the same ``Service`` and the same ``Gate``:

* ``Health`` needs no credential; ``IngestDetections`` needs the ``ingest`` scope and ``Search``
  the ``search`` scope (``admin`` implies both). The credential travels in the request metadata
  as ``authorization: Bearer <token>`` (or ``x-api-key: <token>``).
* The gate admits a call from its metadata and peer address *before its message is parsed*: the
  handlers are registered without a request deserializer, and the bytes are parsed only once the
  call is admitted. Draining, the failed-authentication limit per address, the credential, the
  scope, the credential's rate limit and the in-flight caps are the REST API's, shared with it.
  At most ``max_concurrent_rpcs`` calls run at once; gRPC refuses the rest itself.
* An ``idempotency-key`` metadata entry makes ``IngestDetections`` safe to retry, as REST's
  ``Idempotency-Key`` header.
* Failures are gRPC status codes with details naming the problem (the mapping is
  ``crossview.serve.errors``, shared with REST); where waiting helps, the trailing metadata
  carries ``retry-after`` in whole seconds (at least 1):

  ======================================================  ===============================
  failure                                                 status (REST equivalent)
  ======================================================  ===============================
  no credential, or an unknown/revoked/expired/bad one    ``UNAUTHENTICATED`` (401)
  the credential lacks the RPC's scope                    ``PERMISSION_DENIED`` (403)
  rate limit; too many failed authentications; cameras    ``RESOURCE_EXHAUSTED`` (429) + retry-after
  bad input (shapes, ranges, frame order, bad image)      ``INVALID_ARGUMENT`` (422, 413, 415)
  search by an unknown track                              ``NOT_FOUND`` (404)
  search by a track that has not ended yet                ``FAILED_PRECONDITION`` (409)
  overloaded; starting, draining or stopping; index down  ``UNAVAILABLE`` (503) + retry-after
  anything unexpected                                     ``INTERNAL`` (500), logged
  ======================================================  ===============================

  Messages over ``max_message_bytes`` are refused by gRPC itself with ``RESOURCE_EXHAUSTED``.

Each call is logged as one JSON line on the ``crossview.serve.grpc`` logger and measured in
``crossview_grpc_request_duration_seconds{method,code}``, refused or not.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any, Final, NoReturn, Protocol

import grpc
import numpy as np
from google.protobuf.message import DecodeError, Message

from crossview.search.engine import Hit, RerankMethod
from crossview.search.index import Filter
from crossview.serve.errors import InvalidRequest, ServiceError, retry_after_header
from crossview.serve.gate import Gate, Pass, bearer_token
from crossview.serve.grpc_gen import crossview_pb2 as pb
from crossview.serve.keys import Principal, Scope
from crossview.serve.metrics import ServiceMetrics
from crossview.serve.service import FrameInput, Idempotency, Service, hit_fields, query_embedding

__all__ = ["CrossviewServicer", "RpcContext", "start_grpc_server"]

log = logging.getLogger("crossview.serve.grpc")

SERVICE: Final = "crossview.v1.Crossview"
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


class RpcContext(Protocol):
    """The part of ``grpc.ServicerContext`` the server uses."""

    def invocation_metadata(self) -> Sequence[tuple[str, str | bytes]]: ...

    def peer(self) -> str: ...

    def set_trailing_metadata(self, trailing_metadata: Sequence[tuple[str, str]]) -> None: ...

    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn: ...


@dataclass(frozen=True, slots=True)
class _Method:
    """One RPC: its request type, the scope it needs (None: public) and the servicer's handler."""

    request: type[Message]
    scope: Scope | None
    handle: Callable[[Any, Principal | None, dict[str, str]], Message]


def start_grpc_server(
    service: Service,
    gate: Gate,
    *,
    metrics: ServiceMetrics | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    max_workers: int = 8,
    max_message_bytes: int = 16 * 1024 * 1024,
    max_concurrent_rpcs: int = 64,
) -> tuple[grpc.Server, int]:
    """Start a gRPC server for ``service`` on ``host:port`` (0: any free port); the server and its port.

    The caller owns the service's life cycle (``service.start()`` before, ``service.stop()`` after
    ``server.stop(grace)``) and the gate's key store. Requests and replies over
    ``max_message_bytes`` are refused, and so are calls beyond ``max_concurrent_rpcs`` at once.
    Raises ``RuntimeError`` when the address cannot be bound.
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
        maximum_concurrent_rpcs=max_concurrent_rpcs,
    )
    servicer = CrossviewServicer(service, draining=lambda: gate.draining)
    methods = {
        "Health": _Method(pb.HealthRequest, None, servicer.health),
        "IngestDetections": _Method(pb.IngestRequest, Scope.INGEST, servicer.ingest),
        "Search": _Method(pb.SearchRequest, Scope.SEARCH, servicer.search),
    }
    declared = {m.name for m in pb.DESCRIPTOR.services_by_name["Crossview"].methods}
    if declared != set(methods):
        raise RuntimeError(f"the proto declares {sorted(declared)}, the server serves {sorted(methods)}")
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            _Guarded(name, method, gate, metrics),
            request_deserializer=None,  # raw bytes: parsed only after the gate admitted the call
            response_serializer=lambda reply: reply.SerializeToString(),
        )
        for name, method in methods.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
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


class _Guarded:
    """One RPC behind the gate: admit from metadata and peer, then parse, run, log and measure."""

    def __init__(self, name: str, method: _Method, gate: Gate, metrics: ServiceMetrics | None) -> None:
        self.name = name
        self.method = method
        self.gate = gate
        self.metrics = metrics

    def __call__(self, raw: bytes, context: RpcContext) -> Message:
        started = time.perf_counter()
        metadata = {
            key.lower(): value for key, value in context.invocation_metadata() if isinstance(value, str)
        }
        admitted: Pass | None = None
        try:
            if self.method.scope is not None:
                token = bearer_token(metadata.get("authorization"), metadata.get("x-api-key"))
                admitted = self.gate.admit(
                    token=token, address=peer_address(context.peer()), needed=self.method.scope
                )
            try:
                request = self.method.request.FromString(raw)
            except DecodeError as error:
                raise InvalidRequest(
                    f"the {self.method.request.__name__} message does not parse: {error}"
                ) from None
            reply = self.method.handle(request, None if admitted is None else admitted.principal, metadata)
        except ServiceError as error:
            refusal = error
        except Exception as error:
            log.exception("unhandled error in gRPC %s", self.name)
            refusal = ServiceError(f"internal error ({type(error).__name__})")
        else:
            self._done("OK", started, admitted)
            return reply
        finally:
            if admitted is not None:
                admitted.release()
        self._done(refusal.grpc_code, started, admitted)
        if refusal.retry_after_s is not None:
            context.set_trailing_metadata((("retry-after", retry_after_header(refusal.retry_after_s)),))
        context.abort(grpc.StatusCode[refusal.grpc_code], refusal.message)

    def _done(self, code: str, started: float, admitted: Pass | None) -> None:
        elapsed = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.grpc_seconds.labels(self.name, code).observe(elapsed)
        subject = None if admitted is None else admitted.principal.subject
        log.info(
            json.dumps(
                {
                    "event": "rpc",
                    "method": self.name,
                    "code": code,
                    "ms": round(elapsed * 1000, 2),
                    "principal": subject,
                }
            )
        )


def peer_address(peer: str) -> str:
    """The host of a gRPC peer.

    >>> peer_address("ipv4:10.0.0.7:5123"), peer_address("ipv6:[::1]:5123")
    ('10.0.0.7', '::1')
    """
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    return peer


class CrossviewServicer:
    """``crossview.v1.Crossview``'s calls over a ``Service``: messages in, messages out, errors raised
    as ``ServiceError`` (the guard answers them)."""

    def __init__(self, service: Service, *, draining: Callable[[], bool] = lambda: False) -> None:
        self._service = service
        self._draining = draining

    def health(
        self, request: pb.HealthRequest, principal: Principal | None, metadata: dict[str, str]
    ) -> pb.HealthReply:
        service = self._service
        return pb.HealthReply(
            status="ok",
            ready=service.ready and not self._draining(),
            queued_batches=service.queued,
            index_breaker=service.index_breaker.state.value,
        )

    def ingest(
        self, request: pb.IngestRequest, principal: Principal | None, metadata: dict[str, str]
    ) -> pb.IngestReply:
        assert principal is not None
        if len(request.model) > MAX_MODEL_NAME:
            raise InvalidRequest(f"model must be at most {MAX_MODEL_NAME} characters")
        frames = [frame_input(frame, number) for number, frame in enumerate(request.frames)]
        key = metadata.get("idempotency-key")
        owner = f"key:{principal.key_id}" if principal.key_id else f"jwt:{principal.subject}"
        ack = self._service.submit(
            request.camera_id,
            frames,
            model=request.model or "unknown",
            idempotency=None if key is None else Idempotency(owner, key),
        )
        return pb.IngestReply(
            batch_id=ack.batch_id, frames=ack.frames, detections=ack.detections, queued=self._service.queued
        )

    def search(
        self, request: pb.SearchRequest, principal: Principal | None, metadata: dict[str, str]
    ) -> pb.SearchReply:
        query = request.WhichOneof("query")
        if query is None:
            raise InvalidRequest("give exactly one query: 'embedding', 'track' or 'image'")
        k = request.k or DEFAULT_K
        if not 1 <= k <= MAX_K:
            raise InvalidRequest(f"k must be in [1, {MAX_K}], got {k}")
        rerank = RERANK_METHODS.get(request.rerank)
        if rerank is None:
            raise InvalidRequest(
                f"rerank must be 'none', 'kreciprocal' or 'aqe', not {request.rerank[:32]!r}"
            )
        image: np.ndarray[Any, np.dtype[np.uint8]] | None = None
        embedding: np.ndarray[Any, np.dtype[np.float32]] | None = None
        track: int | None = None
        wanted = search_filter(request.filter) if request.HasField("filter") else None
        if query == "embedding":
            embedding = query_embedding(request.embedding.values, self._service.dim)
        elif query == "track":
            track = request.track
            if not 1 <= track <= MAX_ID:
                raise InvalidRequest(f"track must be in [1, 2^62], got {track}")
        else:
            image = self._service.decode_query(request.image)
        hits = self._service.search(
            image=image, embedding=embedding, track=track, k=k, filter=wanted, rerank=rerank
        )
        return pb.SearchReply(hits=[hit_message(hit) for hit in hits])


# -------------------------------------------------------------------------------------- conversion
def frame_input(frame: pb.Frame, number: int) -> FrameInput:
    """A ``Frame`` message as the service's ``FrameInput``; ``InvalidRequest`` naming what is wrong.

    Checks what the REST API's schema checks (the service checks the rest: box order and
    finiteness, confidences, embedding sizes, time order).
    """
    where = f"frame {number} (index {frame.frame_index})"
    if not 0 <= frame.frame_index <= MAX_ID:
        raise InvalidRequest(f"frame {number}: frame_index must be in [0, 2^62], got {frame.frame_index}")
    rows = frame.detections
    n = len(rows)
    for row, detection in enumerate(rows):
        if len(detection.xyxy) != 4:
            raise InvalidRequest(f"{where}, detection {row}: xyxy needs 4 numbers, got {len(detection.xyxy)}")
        if not 0 <= detection.class_id <= MAX_CLASS:
            raise InvalidRequest(f"{where}, detection {row}: class_id must be >= 0, got {detection.class_id}")
    sizes = [len(detection.embedding) for detection in rows]
    if any(sizes) and not all(sizes):
        raise InvalidRequest(f"frame {number}: either every detection has an embedding or none has")
    embedding = None
    if n and all(sizes):
        if len(set(sizes)) > 1:
            raise InvalidRequest(
                f"{where}: embeddings must all have one size, got sizes {sorted(set(sizes))}"
            )
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
        raise InvalidRequest(
            f"a filter takes at most {MAX_FILTER_VALUES} cameras and {MAX_FILTER_VALUES} classes"
        )
    if any(not 0 <= c <= MAX_CLASS for c in classes):
        raise InvalidRequest("filter classes must be >= 0")
    time_range = None
    if message.HasField("time_range"):
        start, end = message.time_range.start, message.time_range.end
        if not (math.isfinite(start) and math.isfinite(end)):
            raise InvalidRequest("filter time_range must be finite")
        if end < start:
            raise InvalidRequest(f"filter time_range end ({end}) is before its start ({start})")
        time_range = (start, end)
    if not cameras and not classes and time_range is None:
        return None
    return Filter(
        cameras=frozenset(cameras) if cameras else None,
        classes=frozenset(classes) if classes else None,
        time_range=time_range,
    )


def hit_message(hit: Hit) -> pb.Hit:
    """A search hit as a ``Hit`` message."""
    return pb.Hit(**hit_fields(hit))
