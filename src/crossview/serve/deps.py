"""What a route needs, as FastAPI dependencies: the one place that reads the app's ``ServeState``.

A route asks for what it uses by type (``service: ServiceDep``, ``principal: Caller``) and never
reads ``app.state`` itself, so a test can hand every route of one app something else::

    app = create_app(config)
    app.dependency_overrides[get_service] = lambda: other_service

Every part hangs off ``get_state``, so overriding it swaps them all; overriding ``get_service``
swaps the service alone (the gate, the metrics and the drift monitor stay the app's). The guard
and the lifespan are not routes: they keep the app's own service.
"""

from typing import Annotated

from fastapi import Depends, Header, Request

from crossview.serve.config import ServeConfig
from crossview.serve.drift import DriftMonitor
from crossview.serve.errors import Unauthenticated
from crossview.serve.gate import Gate
from crossview.serve.keys import Principal
from crossview.serve.metrics import ServiceMetrics
from crossview.serve.service import Service
from crossview.serve.state import ServeState

__all__ = [
    "Caller",
    "ConfigDep",
    "DriftDep",
    "GateDep",
    "IdempotencyKey",
    "MetricsDep",
    "ServiceDep",
    "StateDep",
    "caller",
    "get_config",
    "get_drift",
    "get_gate",
    "get_metrics",
    "get_service",
    "get_state",
]


# The dependencies are coroutines only so that FastAPI calls them on the event loop rather than
# in its thread pool: each is an attribute read.
async def get_state(request: Request) -> ServeState:
    """The app's ``ServeState`` (``create_app`` keeps it as ``app.state.crossview``)."""
    state: ServeState = request.app.state.crossview
    return state


StateDep = Annotated[ServeState, Depends(get_state)]


async def get_config(state: StateDep) -> ServeConfig:
    return state.config


async def get_service(state: StateDep) -> Service:
    return state.service


async def get_metrics(state: StateDep) -> ServiceMetrics:
    return state.metrics


async def get_drift(state: StateDep) -> DriftMonitor:
    return state.drift


async def get_gate(state: StateDep) -> Gate:
    return state.gate


async def caller(request: Request) -> Principal:
    """The principal the guard admitted (routes are never reached without one)."""
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        raise Unauthenticated("send an API key or JWT as 'Authorization: Bearer <token>'")
    return principal


ConfigDep = Annotated[ServeConfig, Depends(get_config)]
ServiceDep = Annotated[Service, Depends(get_service)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
DriftDep = Annotated[DriftMonitor, Depends(get_drift)]
GateDep = Annotated[Gate, Depends(get_gate)]
Caller = Annotated[Principal, Depends(caller)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=128,
        description="a retry with the same key gets the first answer instead of storing the batch twice",
    ),
]
