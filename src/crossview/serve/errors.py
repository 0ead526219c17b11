"""What the service refuses, and how each refusal is told to a client: one mapping for REST and gRPC.

Every refusal the service core or its gate raises is a ``ServiceError`` subclass that carries its
HTTP status, its gRPC status code (by name, so this module needs no gRPC import), a short error
``code`` for the JSON body and, where waiting helps, ``retry_after_s``. The REST app answers
``{"error": {"code", "message"}, "request_id"}`` with the status (and ``Retry-After``); the gRPC
server aborts with the code (and ``retry-after`` trailing metadata). Image refusals
(``crossview.io.image.ImageError``) map here too, through ``refusal``.

>>> error = Overloaded("ingest queue is full (256 batches waiting)", retry_after_s=2.5)
>>> error.http_status, error.grpc_code, error.code, error.retry_after_s
(503, 'UNAVAILABLE', 'overloaded', 2.5)
>>> refusal(ImageTooLarge("image is 20000 x 20000 px")).http_status
413
"""

from __future__ import annotations

import math
from typing import ClassVar

from crossview.io.image import ImageError, ImageTooLarge, UndecodableImage, UnsupportedImage

__all__ = [
    "BackendFailure",
    "BackendUnavailable",
    "BadImage",
    "CameraLimit",
    "Forbidden",
    "IdempotencyConflict",
    "InvalidRequest",
    "NotFound",
    "NotSearchable",
    "Overloaded",
    "OversizedImage",
    "PayloadTooLarge",
    "RateLimited",
    "RequestTimeout",
    "ServiceError",
    "TooManyFailures",
    "Unauthenticated",
    "Unavailable",
    "UnknownCamera",
    "UnsupportedMedia",
    "refusal",
    "retry_after_header",
]


class ServiceError(Exception):
    """A request the service refuses: its message names what was wrong or what to do."""

    http_status: ClassVar[int] = 500
    grpc_code: ClassVar[str] = "INTERNAL"
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class InvalidRequest(ServiceError, ValueError):
    """The request itself is wrong (shapes, ranges, order, content)."""

    http_status = 422
    grpc_code = "INVALID_ARGUMENT"
    code = "invalid_request"


class UnknownCamera(InvalidRequest):
    """The site file declares the cameras, and this one is not among them."""

    code = "unknown_camera"


class IdempotencyConflict(InvalidRequest):
    """An idempotency key already used for a different request by the same credential."""

    code = "idempotency_key_reused"


class BadImage(InvalidRequest):
    """An image that does not decode, or whose header lies about its size."""

    code = "bad_image"


class NotFound(ServiceError):
    """No such track (or other object) as the request names."""

    http_status = 404
    grpc_code = "NOT_FOUND"
    code = "not_found"


class NotSearchable(ServiceError):
    """The track exists but cannot be searched by yet (it has not ended)."""

    http_status = 409
    grpc_code = "FAILED_PRECONDITION"
    code = "not_searchable"


class PayloadTooLarge(ServiceError):
    """A body or an image over its limit."""

    http_status = 413
    grpc_code = "INVALID_ARGUMENT"
    code = "payload_too_large"


class OversizedImage(PayloadTooLarge):
    """An image whose header declares more pixels (or a longer side) than the limits allow."""

    code = "image_too_large"


class UnsupportedMedia(ServiceError):
    """An image in a format the service does not decode."""

    http_status = 415
    grpc_code = "INVALID_ARGUMENT"
    code = "unsupported_image"


class RequestTimeout(ServiceError):
    """The client did not send its body in time."""

    http_status = 408
    grpc_code = "DEADLINE_EXCEEDED"
    code = "request_timeout"


class Unauthenticated(ServiceError):
    """No credential, or a malformed, unknown, revoked or expired one."""

    http_status = 401
    grpc_code = "UNAUTHENTICATED"
    code = "unauthenticated"


class Forbidden(ServiceError):
    """The credential lacks the scope the route needs."""

    http_status = 403
    grpc_code = "PERMISSION_DENIED"
    code = "forbidden"


class RateLimited(ServiceError):
    """The credential's token bucket is empty."""

    http_status = 429
    grpc_code = "RESOURCE_EXHAUSTED"
    code = "rate_limited"


class TooManyFailures(RateLimited):
    """Too many failed authentications from one client address: refused before any credential check."""

    code = "too_many_failures"


class CameraLimit(RateLimited):
    """No room for another camera's state (count or frame pixels); frees as cameras go idle."""

    code = "camera_limit"


class Overloaded(ServiceError):
    """Full: the ingest queue, the requests in flight or the image decoders; nothing was stored."""

    http_status = 503
    grpc_code = "UNAVAILABLE"
    code = "overloaded"


class Unavailable(ServiceError):
    """The service is starting, draining or stopping."""

    http_status = 503
    grpc_code = "UNAVAILABLE"
    code = "unavailable"


class BackendUnavailable(ServiceError):
    """A backend's circuit breaker is open: the call was not even tried."""

    http_status = 503
    grpc_code = "UNAVAILABLE"
    code = "backend_unavailable"


class BackendFailure(ServiceError):
    """A backend (the index) failed on this call; its breaker counted it."""

    http_status = 503
    grpc_code = "UNAVAILABLE"
    code = "backend_error"

    def __init__(self, backend: str, error: BaseException) -> None:
        super().__init__(f"backend {backend!r} failed: {type(error).__name__}: {error}", retry_after_s=1.0)
        self.backend = backend


_IMAGE_ERRORS: dict[type[ImageError], type[ServiceError]] = {
    ImageTooLarge: OversizedImage,
    UnsupportedImage: UnsupportedMedia,
    UndecodableImage: BadImage,
}


def refusal(error: ImageError, where: str = "") -> ServiceError:
    """An image's refusal as the service tells it (``where`` prefixes the message, e.g. ``"image 3: "``)."""
    kind = next((k for t, k in _IMAGE_ERRORS.items() if isinstance(error, t)), BadImage)
    refused = kind(f"{where}{error}")
    refused.__cause__ = error
    return refused


def retry_after_header(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))
