"""``/v1/models``: what the service runs and the limits it enforces."""

from typing import Any

from fastapi import APIRouter

from crossview.serve import usecases
from crossview.serve.deps import Caller, ConfigDep, ServiceDep
from crossview.serve.http import access
from crossview.serve.keys import Scope as KeyScope

router = APIRouter()


@router.get("/v1/models", tags=["models"], openapi_extra=access(KeyScope.READ))
def models(_: Caller, service: ServiceDep, config: ConfigDep) -> dict[str, Any]:
    """What the service runs (embedder, detector, tracker, index) and the limits it enforces."""
    return usecases.describe(service, config.max_body_bytes)
