"""``/healthz`` (liveness) and ``/readyz`` (readiness): no credential needed."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from crossview.serve import usecases
from crossview.serve.deps import GateDep, ServiceDep
from crossview.serve.http import access
from crossview.serve.schemas import ErrorOut

router = APIRouter()


@router.get("/healthz", tags=["health"], openapi_extra=access(None))
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", tags=["health"], responses={503: {"model": ErrorOut}}, openapi_extra=access(None))
def readyz(service: ServiceDep, gate: GateDep) -> JSONResponse:
    """Readiness: the worker runs, ingest is accepted and the service is not draining."""
    ready, body = usecases.readiness(service, gate)
    return JSONResponse(body, status_code=200 if ready else 503)
