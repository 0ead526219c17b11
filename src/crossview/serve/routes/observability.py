"""``/v1/stats``, ``/v1/drift`` and ``/metrics`` (Prometheus): what the service stores and how it does."""

from typing import Any

from fastapi import APIRouter, Response

from crossview.serve import usecases
from crossview.serve.deps import Caller, DriftDep, MetricsDep, ServiceDep
from crossview.serve.http import access
from crossview.serve.keys import Scope as KeyScope

router = APIRouter()


@router.get("/v1/stats", tags=["observability"], openapi_extra=access(KeyScope.READ))
def stats(_: Caller, service: ServiceDep) -> dict[str, Any]:
    """What is stored: batches by state, detections and tracks; index entries; live cameras."""
    return usecases.stored(service)


@router.get("/v1/drift", tags=["observability"], openapi_extra=access(KeyScope.READ))
def drift(_: Caller, monitor: DriftDep, metrics: MetricsDep) -> dict[str, Any]:
    """Drift of detection confidences and embeddings, recent window against the reference."""
    return {"reports": [r.to_dict() for r in usecases.publish_drift(monitor, metrics)]}


@router.get("/metrics", tags=["observability"], response_class=Response, openapi_extra=access(KeyScope.READ))
def metrics(_: Caller, service: ServiceDep, monitor: DriftDep, registry: MetricsDep) -> Response:
    """Prometheus metrics (text exposition format)."""
    return Response(usecases.exposition(service, monitor, registry), media_type="text/plain; version=0.0.4")
