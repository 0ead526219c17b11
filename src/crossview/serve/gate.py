"""The gate every request passes before the service reads its body: one for REST and gRPC.

``Gate.admit`` decides from the request's headers (or gRPC metadata) and the client's address
alone, in this order, each step refusing with a ``ServiceError`` before the next costs anything:

1. **Draining.** After SIGTERM the service refuses new work with 503 (``Unavailable``) while the
   requests in flight finish; health stays up and readiness turns 503, so load balancers move on.
2. **Failed authentications, per client address.** An address whose failures emptied its token
   bucket (``failure_limit``: 20 at once, then 1 a second by default) is refused with 429 and
   ``Retry-After`` before its credential is even looked at, so a guessing client gains nothing by
   sending faster. Missing, unknown, revoked, expired and wrong-scope credentials each count.
3. **The credential.** An API key (``cvk_...``) or, with a JWT secret, a signed JWT, from
   ``Authorization: Bearer <token>`` or ``X-API-Key``. None or a bad one: 401. The wrong scope: 403.
4. **The credential's rate limit**: its own token bucket (429 with ``Retry-After``).
5. **Requests in flight** per kind of work (ingest, search, read): beyond the cap, 503 at once with
   ``Retry-After``. This is what keeps the latency of accepted requests bounded under overload:
   the excess is refused in microseconds instead of waiting in line behind work the service cannot
   keep up with.

``admit`` returns a ``Pass`` to ``release`` when the request is done (it frees the in-flight slot).

>>> from crossview.serve.keys import KeyStore
>>> import tempfile, pathlib
>>> keys = KeyStore(pathlib.Path(tempfile.mkdtemp()) / "keys.sqlite")
>>> gate = Gate(GateConfig(), keys)
>>> token, _ = keys.create("camera-box", "ingest")
>>> gate.admit(token=token, address="10.0.0.7", needed=Scope.INGEST).principal.subject
'camera-box'
>>> gate.admit(token="cvk_wrong", address="10.0.0.7", needed=Scope.INGEST)
Traceback (most recent call last):
...
crossview.serve.errors.Unauthenticated: unknown, revoked, expired or malformed credential
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from crossview.serve.errors import (
    Forbidden,
    Overloaded,
    RateLimited,
    ServiceError,
    TooManyFailures,
    Unauthenticated,
    Unavailable,
)
from crossview.serve.keys import TOKEN_PREFIX, JwtVerifier, KeyStore, Principal, Scope
from crossview.serve.limits import RateLimit, RateLimiter

__all__ = ["Gate", "GateConfig", "Pass", "Work", "bearer_token"]

Work = Literal["ingest", "search", "read"]
_WORK: dict[Scope, Work] = {Scope.INGEST: "ingest", Scope.SEARCH: "search", Scope.READ: "read"}


class GateConfig(BaseModel):
    """Limits applied before a request's body is read (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rate_limit: RateLimit = Field(default_factory=lambda: RateLimit(rate_per_s=50.0, burst=100))
    failure_limit: RateLimit = Field(
        default_factory=lambda: RateLimit(rate_per_s=1.0, burst=20),
        description="failed authentications per client address",
    )
    max_inflight_ingest: int = Field(default=4, ge=1)
    max_inflight_search: int = Field(default=8, ge=1)
    max_inflight_read: int = Field(default=32, ge=1)
    max_clients: int = Field(default=100_000, ge=1, description="buckets kept per limiter (memory bound)")


def bearer_token(authorization: str | None, api_key: str | None) -> str:
    """The token of ``Authorization: Bearer <token>`` or else ``X-API-Key`` (empty when neither)."""
    header = authorization or ""
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return (api_key or "").strip()


@dataclass(slots=True)
class Pass:
    """An admitted request: who it is, and its in-flight slot (``release`` exactly once)."""

    principal: Principal
    work: Work
    _release: Callable[[], None] | None = field(repr=False)

    def release(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None


class _Slots:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.used >= self.limit:
                return False
            self.used += 1
            return True

    def give(self) -> None:
        with self._lock:
            self.used -= 1


class Gate:
    """Authentication, scopes, rate limits, failure limits, in-flight caps and draining (thread-safe).

    ``on_refused`` is told of every refusal (for metrics).
    """

    def __init__(
        self,
        config: GateConfig,
        keys: KeyStore,
        jwt: JwtVerifier | None = None,
        *,
        on_refused: Callable[[ServiceError], None] | None = None,
    ) -> None:
        self.config = config
        self.keys = keys
        self.jwt = jwt
        self.limiter = RateLimiter(config.rate_limit, max_keys=config.max_clients)
        self.failures = RateLimiter(config.failure_limit, max_keys=config.max_clients)
        self._slots: dict[Work, _Slots] = {
            "ingest": _Slots(config.max_inflight_ingest),
            "search": _Slots(config.max_inflight_search),
            "read": _Slots(config.max_inflight_read),
        }
        self._on_refused = on_refused
        self._draining = False

    # --------------------------------------------------------------------------------- draining
    @property
    def draining(self) -> bool:
        return self._draining

    def drain(self) -> None:
        """From now on refuse new work with 503 (the requests in flight go on)."""
        self._draining = True

    def inflight(self, work: Work) -> int:
        return self._slots[work].used

    # ---------------------------------------------------------------------------------- admitting
    def admit(self, *, token: str, address: str | None, needed: Scope) -> Pass:
        """Admit a request needing ``needed`` from ``address`` with ``token``; else a ``ServiceError``."""
        try:
            return self._admit(token, address or "unknown", needed)
        except ServiceError as error:
            if self._on_refused is not None:
                self._on_refused(error)
            raise

    def _admit(self, token: str, address: str, needed: Scope) -> Pass:
        if self._draining:
            raise Unavailable("the service is shutting down; retry on another instance", retry_after_s=1.0)
        wait = self.failures.wait_time(address)
        if wait > 0:
            raise TooManyFailures(
                f"too many failed authentications from {address}; retry in {wait:.1f} s", retry_after_s=wait
            )
        principal = self._verify(token)
        if principal is None:
            self.failures.acquire(address)
            if not token:
                raise Unauthenticated("send an API key or JWT as 'Authorization: Bearer <token>'")
            raise Unauthenticated("unknown, revoked, expired or malformed credential")
        if not principal.allows(needed):
            self.failures.acquire(address)
            raise Forbidden(f"this credential lacks the {needed.value!r} scope")
        wait = self.limiter.acquire(principal.key_id or f"jwt:{principal.subject}")
        if wait > 0:
            raise RateLimited(f"rate limit reached; retry in {wait:.2f} s", retry_after_s=wait)
        work = _WORK.get(needed, "read")
        slots = self._slots[work]
        if not slots.take():
            raise Overloaded(
                f"{slots.limit} {work} requests are in flight, the most this service takes at once; "
                "retry in a second",
                retry_after_s=1.0,
            )
        return Pass(principal, work, slots.give)

    def _verify(self, token: str) -> Principal | None:
        if not token:
            return None
        principal = self.keys.verify(token) if token.startswith(TOKEN_PREFIX) else None
        if principal is None and self.jwt is not None and token.count(".") == 2:
            principal = self.jwt.verify(token)
        return principal
