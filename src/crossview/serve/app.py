"""The REST API: ``create_app(config)`` returns a FastAPI app over one data directory.

Every route but ``/healthz`` and ``/readyz`` needs a credential, ``Authorization: Bearer <token>``
(or ``X-API-Key: <token>``): an API key from ``crossview keys create`` or, when a JWT secret is
configured, a signed JWT. Each route declares the scope it needs (read, search, ingest; admin
implies all) in its OpenAPI operation as ``x-required-scope``.

What guards a request, before its body is read, is ``crossview.serve.http`` (the request context,
the guard) and ``crossview.serve.gate`` (draining, failed-auth limit per address, credential,
scope, rate limit, requests in flight); refusals and their statuses are ``crossview.serve.errors``.
Errors are JSON ``{"error": {"code", "message"}, "request_id"}``; every response carries
``X-Request-ID``, and each request is logged as one JSON line.

This module only composes the app: its ``ServeState`` (``crossview.serve.state``), the lifespan,
the one error mapping, the routers of ``crossview.serve.routes`` and the middleware. The routes get
what they need through ``crossview.serve.deps`` (which tests override with
``app.dependency_overrides``), parse bodies of ``crossview.serve.schemas`` and call the ``Service``
or a step of ``crossview.serve.usecases``.
"""

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from crossview.embed.base import Embedder
from crossview.embed.color import ColorHistogramEmbedder
from crossview.serve.config import ServeConfig
from crossview.serve.errors import ServiceError
from crossview.serve.grpc_server import start_grpc_server
from crossview.serve.http import Guard, RequestContext, error_body, refusal_headers
from crossview.serve.routes import health, ingest, models, observability, openapi, search, tracks
from crossview.serve.schemas import ErrorOut
from crossview.serve.state import ServeState

__all__ = ["ServeConfig", "create_app"]

log = logging.getLogger("crossview.serve")


def create_app(config: ServeConfig, embedder: Embedder | None = None) -> FastAPI:
    """The FastAPI app; the service starts with the app's lifespan and stops (draining) with it."""
    state = ServeState(config, embedder or ColorHistogramEmbedder())
    app = FastAPI(
        title="crossview",
        version="1",
        description="Multi-camera perception and visual search.",
        lifespan=_lifespan,
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
    app.state.crossview = state  # read by crossview.serve.deps, the lifespan and `crossview serve`
    app.exception_handler(ServiceError)(_service_error)
    app.exception_handler(StarletteHTTPException)(_http_error)
    app.exception_handler(RequestValidationError)(_invalid)

    # every route but health needs a credential, the schema included (unless the docs are public)
    schema = () if config.public_docs else (openapi,)
    routers = [module.router for module in (health, *schema, ingest, tracks, search, models, observability)]
    for router in routers:
        app.include_router(router)
    # The guard matches a request against the routers' own routes: FastAPI may keep an included
    # router as one lazy route, which has no path and no scope of its own to read.
    declared = [route for router in routers for route in router.routes]

    public = (
        frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect"}) if config.public_docs else frozenset()
    )
    app.add_middleware(
        Guard,
        routes=lambda: [*declared, *app.router.routes],
        gate=state.gate,
        max_body_bytes=config.max_body_bytes,
        body_timeout_s=config.body_timeout_s,
        public=public,
        ingest_refusal=state.ingest_refusal,
    )
    app.add_middleware(RequestContext, metrics=state.metrics, log=log)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the service (and the gRPC server beside it, if configured); stop both, draining."""
    state: ServeState = app.state.crossview
    config = state.config
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


# ------------------------------------------------------------------- the one error mapping (REST)
async def _service_error(request: Request, error: ServiceError) -> JSONResponse:
    return _json_error(request, error.http_status, error.code, error.message, refusal_headers(error))


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    code = HTTPStatus(error.status_code).phrase.lower().replace(" ", "_")
    return _json_error(request, error.status_code, code, str(error.detail), dict(error.headers or {}))


async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in error.errors()[:10]
    )
    return _json_error(request, 422, "invalid_request", problems or "invalid request")


def _json_error(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    request.state.error = code
    body = error_body(code, message, getattr(request.state, "request_id", None))
    return JSONResponse(body, status_code=status, headers=headers)
