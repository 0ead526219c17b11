"""What the REST routes do beyond translating HTTP: small named steps over the ``Service``.

The ``Service``'s own methods are the main use-cases (``submit``, ``search``, ``tracks``...); these
functions add what the HTTP layer owns around them (the metrics it keeps, the gate's draining,
the limits it reports) or join two service calls into one answer. They raise domain errors
(``crossview.serve.errors``) and know nothing of FastAPI or of the response models.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from numpy.typing import NDArray

from crossview.search.engine import Hit, RerankMethod
from crossview.search.index import Filter
from crossview.serve.drift import DriftMonitor, DriftReport
from crossview.serve.errors import InvalidRequest, NotFound, ServiceError
from crossview.serve.gate import Gate
from crossview.serve.keys import Principal
from crossview.serve.metrics import ServiceMetrics
from crossview.serve.service import Ack, Idempotency, Service
from crossview.serve.store import DetectionRow, TrackRow

__all__ = [
    "check_window",
    "count_accepted",
    "describe",
    "exposition",
    "global_track",
    "idempotency",
    "publish_drift",
    "readiness",
    "refusals_counted",
    "search",
    "search_by_image",
    "stored",
    "track_with_boxes",
]


# ------------------------------------------------------------------------------------------ health
def readiness(service: Service, gate: Gate) -> tuple[bool, dict[str, Any]]:
    """Whether the app takes work (the worker runs and it is not draining), and the body telling why.

    The body names the state of every breaker, so that an operator sees which backend is down.
    """
    ready = service.ready and not gate.draining
    body = {
        "ready": ready,
        "draining": gate.draining,
        "queued_batches": service.queued,
        "index_breaker": service.index_breaker.state.value,
        **{f"{name}_breaker": b.state.value for name, b in service.model_breakers.items()},
    }
    return ready, body


# ------------------------------------------------------------------------------------------ ingest
def idempotency(principal: Principal, key: str | None) -> Idempotency | None:
    """A client's ``Idempotency-Key``, scoped to its credential (two clients may use the same key)."""
    if key is None:
        return None
    owner = f"key:{principal.key_id}" if principal.key_id else f"jwt:{principal.subject}"
    return Idempotency(owner, key)


@contextmanager
def refusals_counted(metrics: ServiceMetrics, frames: int) -> Iterator[None]:
    """Count ``frames`` as refused, by the refusal's code, when the block raises a ``ServiceError``."""
    try:
        yield
    except ServiceError as error:
        metrics.refused_frames.labels(error.code).inc(frames)
        raise


def count_accepted(metrics: ServiceMetrics, camera_id: str, ack: Ack) -> None:
    """Count a stored batch's frames; a replayed answer stored nothing and counts none."""
    if not ack.replayed:
        metrics.ingested_frames.labels(camera_id).inc(ack.frames)


# ------------------------------------------------------------------------------------------ tracks
def check_window(start: float | None, end: float | None) -> None:
    """A time window whose end is not before its start (either may be open)."""
    if start is not None and end is not None and end < start:
        raise InvalidRequest(f"end ({end}) is before start ({start})")


def global_track(service: Service, global_id: int) -> tuple[int, list[TrackRow]]:
    """One global identity and its member tracks in time order (``NotFound`` when there is none)."""
    found = service.global_tracks(after_id=global_id - 1, limit=1)
    if not found or found[0][0] != global_id:
        raise NotFound(f"no global track with id {global_id}")
    return found[0]


def track_with_boxes(service: Service, track: int) -> tuple[TrackRow, list[DetectionRow]]:
    """One track and its detections (``NotFound`` when there is none)."""
    found = service.store.track(track)
    if found is None:
        raise NotFound(f"no track with id {track}")
    return found, service.store.detections_of(found.camera_id, found.track_id)


# ------------------------------------------------------------------------------------------ search
def search(
    service: Service,
    metrics: ServiceMetrics,
    *,
    image: NDArray[np.uint8] | None = None,
    embedding: NDArray[np.float32] | None = None,
    track: int | None = None,
    k: int,
    filter: Filter | None,
    rerank: RerankMethod = "none",
) -> list[Hit]:
    """``Service.search``, timed as the ``search`` stage."""
    with metrics.stage_seconds.labels("search").time():
        return service.search(
            image=image, embedding=embedding, track=track, k=k, filter=filter, rerank=rerank
        )


def search_by_image(
    service: Service, metrics: ServiceMetrics, data: bytes, *, k: int, filter: Filter | None
) -> list[Hit]:
    """Search by an encoded image: its header is checked against the limits before it is decoded
    (a bounded number at once), then it is embedded by the service's embedder."""
    return search(service, metrics, image=service.decode_query(data), k=k, filter=filter)


# ------------------------------------------------------------------------------------ observability
def describe(service: Service, max_body_bytes: int) -> dict[str, Any]:
    """What the service runs (embedder, detector, tracker, index) and the limits it enforces."""
    config = service.config
    return {
        "embedder": {"name": type(service.embedder).__name__, "dim": service.dim},
        "detector": service.detector_name,
        "client_models": sorted(service.models),
        "tracker": config.tracker,
        "index": {"factory": config.index_factory, "entries": service.index.count()},
        "limits": {
            "max_body_bytes": max_body_bytes,
            "images": config.images.model_dump(),
            "max_images_per_batch": config.max_images_per_batch,
            "max_frames_per_batch": config.max_frames_per_batch,
            "max_detections_per_frame": config.max_detections_per_frame,
            "max_cameras": service.admission.max_cameras,
            "max_megapixels": config.cameras.max_megapixels,
        },
    }


def stored(service: Service) -> dict[str, Any]:
    """What is stored: batches by state, detections and tracks; index entries; live cameras."""
    return {
        **service.store.counts(),
        "index_entries": service.index.count(),
        "cameras": len(service.admission.cameras),
        "camera_megapixels": round(service.admission.megapixels(), 3),
        "pulled": service.pulled(),
    }


def publish_drift(drift: DriftMonitor, metrics: ServiceMetrics) -> list[DriftReport]:
    """The drift monitor's reports, also set as the drift gauges."""
    reports = drift.report()
    for report in reports:
        labels = (report.stream, report.signal)
        metrics.drift_psi.labels(*labels).set(report.psi)
        metrics.drift_ks_pvalue.labels(*labels).set(report.ks_pvalue)
        metrics.drifted.labels(*labels).set(1.0 if report.drifted else 0.0)
    return reports


def exposition(service: Service, drift: DriftMonitor, metrics: ServiceMetrics) -> bytes:
    """The Prometheus text exposition, with the queue depth and the drift gauges brought up to date."""
    metrics.queue_depth.set(service.queued)
    publish_drift(drift, metrics)
    return metrics.render()
