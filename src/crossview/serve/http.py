"""The HTTP edge of the service: what happens to a request before and around the app.

Outermost first:

* ``guarded_h11`` (the connection): a client that does not finish its request headers within
  ``header_timeout_s`` is disconnected (slow-loris), and one address may hold at most
  ``max_per_client`` connections at once.
* ``RequestContext`` (every request, whatever happens to it): a request id (the client's
  ``X-Request-ID`` when it is 1-64 characters of ``[A-Za-z0-9._:-]``, else a new one; echoed in
  the answer), one JSON log line and one latency observation per request, refusals and crashes
  included. Labels come from closed sets only: the route *template* (or ``unmatched``), the
  method (unknown methods are answered 405 at once and labelled ``OTHER``) and the status. The
  log never holds a query string, a header or a body, so credentials cannot leak into it. An
  unexpected exception becomes a JSON 500 and is logged with its traceback.
* ``Guard`` (routes that need a credential): the route is matched and its scope looked up, and
  the ``Gate`` admits the request (draining, failed-auth limit per address, credential, scope,
  rate limit, in-flight cap) *before the body is read*. Ingest is refused with 503 while the
  queue is full, also before the body is read. Then the body is read in full, refused with 413
  past ``max_body_bytes`` (at once when ``Content-Length`` says so) and with 408 when it takes
  longer than ``body_timeout_s``, and handed to the app.
* ``DrainingServer`` (SIGTERM): readiness turns 503 and new work is refused with 503 for
  ``drain_s`` while requests in flight finish; only then does the listener close.

A route declares its scope with ``openapi_extra=access(Scope.READ)`` (``access(None)``: public).
A route that declares none needs ``admin``: new routes are closed until opened on purpose.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, Final

import h11
import uvicorn
from starlette.datastructures import Headers
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from crossview.serve.errors import (
    PayloadTooLarge,
    RequestTimeout,
    ServiceError,
    retry_after_header,
)
from crossview.serve.gate import Gate, bearer_token
from crossview.serve.keys import Scope as KeyScope
from crossview.serve.metrics import ServiceMetrics

__all__ = [
    "METHODS",
    "SCOPE_KEY",
    "DrainingServer",
    "Guard",
    "RequestContext",
    "access",
    "guarded_h11",
    "send_error",
]

SCOPE_KEY: Final = "x-required-scope"
PUBLIC: Final = "none"
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def access(scope: KeyScope | None) -> dict[str, Any]:
    """A route's ``openapi_extra`` declaring the scope it needs (``None``: no credential)."""
    return {SCOPE_KEY: PUBLIC if scope is None else scope.value}


def error_body(code: str, message: str, request_id: str | None) -> dict[str, Any]:
    """The JSON of every error answer: ``{"error": {"code", "message"}, "request_id"}``."""
    return {"error": {"code": code, "message": message}, "request_id": request_id}


def refusal_headers(error: ServiceError) -> dict[str, str] | None:
    """``Retry-After`` for a refusal that says when to come back."""
    return None if error.retry_after_s is None else {"Retry-After": retry_after_header(error.retry_after_s)}


async def send_error(
    scope: Scope,
    send: Send,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer ``{"error": {"code", "message"}, "request_id"}`` with ``status`` (and note the code
    for the request log)."""
    state = scope.setdefault("state", {})
    state["error"] = code
    body = json.dumps(error_body(code, message, state.get("request_id"))).encode()
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


async def refuse(scope: Scope, send: Send, error: ServiceError) -> None:
    """Answer a ``ServiceError`` with its status, code, message and ``Retry-After``."""
    await send_error(scope, send, error.http_status, error.code, error.message, refusal_headers(error))


class RequestContext:
    """Request id, one log line and one latency observation per request, whatever happens to it."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, log: logging.Logger) -> None:
        self.app = app
        self.metrics = metrics
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        given = Headers(scope=scope).get("x-request-id", "")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        state["request_id"] = request_id
        method = scope["method"] if scope["method"] in METHODS else "OTHER"
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            if method == "OTHER":
                message = f"method not allowed; use one of {', '.join(sorted(METHODS))}"
                await send_error(scope, send_with_id, 405, "method_not_allowed", message)
            else:
                await self.app(scope, receive, send_with_id)
        except Exception as error:
            self.log.exception("unhandled error in %s %s", method, _route(scope))
            if status == 0:
                await send_error(
                    scope, send_with_id, 500, "internal_error", f"internal error ({type(error).__name__})"
                )
            else:  # the answer had begun: the connection is cut, which the log shows as a 500
                status = 500
        finally:
            elapsed = time.perf_counter() - started
            route = _route(scope)
            status = status or (499 if state.get("error") == "client_disconnected" else 500)
            self.metrics.request_seconds.labels(route, method, str(status)).observe(elapsed)
            principal = state.get("principal")
            self.log.info(
                json.dumps(
                    {
                        "event": "request",
                        "request_id": request_id,
                        "method": method,
                        "route": route,
                        "status": status,
                        "ms": round(elapsed * 1000, 2),
                        "principal": getattr(principal, "subject", None),
                        "error": state.get("error"),
                    }
                )
            )


def _route(scope: Scope) -> str:
    state = scope.get("state", {})
    if "route" in state:
        return str(state["route"])
    route = scope.get("route")
    return str(getattr(route, "path", "unmatched"))


class Guard:
    """Admits requests through the ``Gate`` before their body is read (see the module docstring).

    ``routes`` are the app's routes; ``public`` paths need no credential besides routes that
    declare ``access(None)``; ``ingest_refusal`` tells whether ingest is refused right now (a full
    queue) without reading the body.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Callable[[], Sequence[BaseRoute]],
        gate: Gate,
        max_body_bytes: int,
        body_timeout_s: float,
        public: frozenset[str] = frozenset(),
        ingest_refusal: Callable[[], ServiceError | None] = lambda: None,
    ) -> None:
        self.app = app
        self.routes = routes
        self.gate = gate
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.public = public
        self.ingest_refusal = ingest_refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self._match(scope)
        if route is None:  # 404 or 405 from the router; no body is read
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["route"] = getattr(route, "path", "unmatched")
        needed = self._needed(route)
        if needed is None:
            await self._forward(scope, receive, send)
            return
        headers = Headers(scope=scope)
        client = scope.get("client")
        try:
            admitted = self.gate.admit(
                token=bearer_token(headers.get("authorization"), headers.get("x-api-key")),
                address=None if client is None else str(client[0]),
                needed=needed,
            )
        except ServiceError as error:
            await refuse(scope, send, error)
            return
        state["principal"] = admitted.principal
        try:
            refusal = self.ingest_refusal() if needed is KeyScope.INGEST else None
            if refusal is not None:
                await refuse(scope, send, refusal)
                return
            await self._forward(scope, receive, send)
        finally:
            admitted.release()

    def _match(self, scope: Scope) -> BaseRoute | None:
        for route in self.routes():
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return route
        return None

    def _needed(self, route: BaseRoute) -> KeyScope | None:
        extra = getattr(route, "openapi_extra", None) or {}
        declared = extra.get(SCOPE_KEY)
        if declared == PUBLIC or (declared is None and getattr(route, "path", None) in self.public):
            return None
        return KeyScope.ADMIN if declared is None else KeyScope(declared)

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the body in full (bounded in size and time), then hand the request on."""
        try:
            messages = await self._read_body(scope, receive)
        except ServiceError as error:
            await refuse(scope, send, error)
            return
        if messages[0]["type"] == "http.disconnect":  # gone before its body came: nobody to answer
            scope.setdefault("state", {})["error"] = "client_disconnected"
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _read_body(self, scope: Scope, receive: Receive) -> list[Message]:
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            raise PayloadTooLarge(f"request body over {self.max_body_bytes} bytes")
        chunks: list[bytes] = []
        received = 0
        try:
            async with asyncio.timeout(self.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        return [message]  # the client went away
                    chunk = message.get("body", b"")
                    received += len(chunk)
                    if received > self.max_body_bytes:
                        raise PayloadTooLarge(f"request body over {self.max_body_bytes} bytes")
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            raise RequestTimeout(
                f"the request body did not arrive within {self.body_timeout_s:g} s"
            ) from None
        return [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]


def guarded_h11(*, header_timeout_s: float, max_per_client: int) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a request-header deadline and a connection cap per client address.

    The header deadline starts when a connection opens or a new request begins arriving, and ends
    when the request's headers are complete: a client that trickles headers (or sends nothing) is
    disconnected after ``header_timeout_s``. Idle keep-alive connections are uvicorn's own
    ``timeout_keep_alive``. Bodies are bounded in time by ``Guard``.
    """
    if header_timeout_s <= 0 or max_per_client < 1:
        raise ValueError("header_timeout_s must be positive and max_per_client at least 1")
    open_per_client: Counter[str] = Counter()

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None
        _counted: str | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if self.client is not None:
                self._counted = self.client[0]
                open_per_client[self._counted] += 1
                if open_per_client[self._counted] > max_per_client:
                    transport.close()
                    return
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is h11.IDLE:
                self._arm()
            else:
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._counted is not None:
                open_per_client[self._counted] -= 1
                if open_per_client[self._counted] <= 0:
                    del open_per_client[self._counted]
                self._counted = None
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._header_timer is None and not self.transport.is_closing():
                self._header_timer = self.loop.call_later(header_timeout_s, self._headers_late)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return GuardedH11Protocol


class DrainingServer(uvicorn.Server):
    """uvicorn's server, draining on SIGTERM/SIGINT before it closes its listener.

    The first signal calls ``on_drain`` (the app then answers readiness and new work with 503)
    and keeps serving for ``drain_s``, so load balancers see the instance leave and clients get
    an answer rather than a refused connection; then uvicorn's own graceful shutdown runs. A
    second signal shuts down at once.
    """

    def __init__(self, config: uvicorn.Config, *, drain_s: float, on_drain: Callable[[], None]) -> None:
        super().__init__(config)
        self.drain_s = drain_s
        self._on_drain = on_drain
        self._drain_until: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_until is None and self.drain_s > 0 and not self.should_exit:
            self._drain_until = time.monotonic() + self.drain_s
            self._on_drain()
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self._drain_until is not None and time.monotonic() >= self._drain_until:
            return True
        return await super().on_tick(counter)
