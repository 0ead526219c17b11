"""A circuit breaker around a backend (the vector index, a model runtime), so a failing backend is
given time to recover instead of being hammered, and callers fail fast with a ``Retry-After`` hint.

States:

* ``CLOSED``: calls go through; consecutive failures are counted, and a success resets the
  count. ``failure_threshold`` consecutive failures open the breaker.
* ``OPEN``: calls are refused with ``BreakerOpenError`` (``fn`` is not called) until
  ``recovery_s`` seconds have passed since the breaker opened; then it is ``HALF_OPEN``.
* ``HALF_OPEN``: up to ``half_open_calls`` trial calls may run at once; further calls are refused
  with ``retry_after_s = recovery_s`` (how long the breaker stays open should a trial fail).
  The first trial to succeed closes the breaker (failure count reset); the first to fail opens it
  again with a fresh ``recovery_s`` timer. Outcomes of calls admitted before the last transition
  (a slow call started while closed, a trial overtaken by another trial's verdict) are ignored.

Only exceptions of the types in ``failures`` count as failures; it defaults to ``(Exception,)``,
but callers should pass their backend's error types (``ConnectionError``, ``TimeoutError``, the
client library's errors), so that, say, a ``ValueError`` from bad user input does not open the
breaker. Other exceptions (``KeyboardInterrupt`` and the like included) pass through unchanged and
count as neither failure nor success; they only release a trial slot.

>>> def search_index() -> list[int]:
...     raise ConnectionError("index unreachable")
>>> breaker = CircuitBreaker(
...     "index", BreakerConfig(failure_threshold=2), failures=(ConnectionError,), clock=lambda: 0.0
... )
>>> breaker.call(int, "not a number")  # the caller's mistake: passes through, not counted
Traceback (most recent call last):
    ...
ValueError: invalid literal for int() with base 10: 'not a number'
>>> for _ in range(2):
...     try:
...         breaker.call(search_index)
...     except ConnectionError:
...         pass
>>> breaker.state
<BreakerState.OPEN: 'open'>
>>> breaker.call(search_index)
Traceback (most recent call last):
    ...
crossview.serve.breaker.BreakerOpenError: backend 'index' is unavailable (circuit open); retry in 10.0 s

``on_change(name, old, new)`` is called on every transition, for metrics and logs. It runs in the
thread that caused the transition, *with the breaker's lock held*, so transitions are reported in
the order they happen; it may read the breaker (the lock is re-entrant) but should be quick and
must not wait on other threads that use the breaker. An exception it raises is logged and dropped.
The ``OPEN`` to ``HALF_OPEN`` transition needs no call to happen; it is noticed, and reported, by
the first ``call``, ``guard``, ``state`` or ``retry_after`` after ``recovery_s`` has passed.

``CircuitBreaker`` is thread-safe; the clock is injectable (``time.monotonic`` by default).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, ParamSpec, TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BreakerConfig", "BreakerOpenError", "BreakerState", "CircuitBreaker"]

_log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
_Outcome = Literal["success", "failure", "other"]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerConfig(BaseModel):
    """When a breaker opens, how long it stays open, and how many trial calls it then lets through."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    failure_threshold: int = Field(default=5, ge=1, description="consecutive failures that open the breaker")
    recovery_s: float = Field(
        default=10.0, gt=0, allow_inf_nan=False, description="time open before trial calls are let through"
    )
    half_open_calls: int = Field(default=1, ge=1, description="trial calls allowed at once while half-open")


class BreakerOpenError(RuntimeError):
    """A call refused because the backend's breaker is open (or all its trial slots are taken)."""

    def __init__(self, name: str, retry_after_s: float) -> None:
        super().__init__(f"backend {name!r} is unavailable (circuit open); retry in {retry_after_s:.1f} s")
        self.name = name
        self.retry_after_s = retry_after_s

    def __reduce__(self) -> tuple[type[BreakerOpenError], tuple[str, float]]:
        return type(self), (self.name, self.retry_after_s)


@dataclass(frozen=True, slots=True)
class _Ticket:
    """An admitted call: the breaker generation it was admitted in, and whether it is a trial."""

    generation: int
    trial: bool


class CircuitBreaker:
    """Guards calls to one backend; see the module docstring for the state machine."""

    def __init__(
        self,
        name: str,
        config: BreakerConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, BreakerState, BreakerState], None] | None = None,
        failures: tuple[type[BaseException], ...] = (Exception,),
    ) -> None:
        if not name:
            raise ValueError(f"a breaker needs a non-empty name, got {name!r}")
        if not failures or not all(isinstance(t, type) and issubclass(t, BaseException) for t in failures):
            raise ValueError(f"failures must be a non-empty tuple of exception types, got {failures!r}")
        self.name = name
        self._config = config if config is not None else BreakerConfig()
        self._clock = clock
        self._on_change = on_change
        self._failures = tuple(failures)
        self._lock = threading.RLock()
        self._state = BreakerState.CLOSED
        self._generation = 0  # bumped on every transition
        self._consecutive_failures = 0
        self._opened_at = 0.0
        self._trials_in_flight = 0

    @property
    def config(self) -> BreakerConfig:
        return self._config

    @property
    def failures_counted(self) -> tuple[type[BaseException], ...]:
        """The exception types that count as backend failures."""
        return self._failures

    @property
    def state(self) -> BreakerState:
        """The current state; ``OPEN`` reads as ``HALF_OPEN`` once ``recovery_s`` has passed."""
        with self._lock:
            self._refresh(self._clock())
            return self._state

    def retry_after(self) -> float:
        """Seconds until trial calls are allowed; 0 when the breaker is not open."""
        with self._lock:
            now = self._clock()
            self._refresh(now)
            if self._state is not BreakerState.OPEN:
                return 0.0
            return max(0.0, self._opened_at + self._config.recovery_s - now)

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` if the breaker admits it, else ``BreakerOpenError`` (``fn`` not called).

        An exception from ``fn`` is re-raised unchanged, counted as a failure when it is one of
        ``failures_counted``.
        """
        with self.guard():
            return fn(*args, **kwargs)

    def guard(self) -> contextlib.AbstractContextManager[None]:
        """``call``'s semantics for a ``with`` block: admission (or ``BreakerOpenError``) on entry,
        the block's outcome recorded on exit."""
        return self._guarded()

    @contextlib.contextmanager
    def _guarded(self) -> Iterator[None]:
        ticket = self._admit()
        try:
            yield
        except BaseException as exc:
            self._record(ticket, "failure" if isinstance(exc, self._failures) else "other")
            raise
        self._record(ticket, "success")

    def _admit(self) -> _Ticket:
        with self._lock:
            now = self._clock()
            self._refresh(now)
            if self._state is BreakerState.CLOSED:
                return _Ticket(self._generation, trial=False)
            if self._state is BreakerState.OPEN:
                raise BreakerOpenError(self.name, max(0.0, self._opened_at + self._config.recovery_s - now))
            if self._trials_in_flight >= self._config.half_open_calls:
                # The running trials decide; should one fail, the breaker stays open another recovery_s.
                raise BreakerOpenError(self.name, self._config.recovery_s)
            self._trials_in_flight += 1
            return _Ticket(self._generation, trial=True)

    def _record(self, ticket: _Ticket, outcome: _Outcome) -> None:
        with self._lock:
            if ticket.generation != self._generation:
                return  # admitted before the last transition: its outcome is stale
            if ticket.trial:
                self._trials_in_flight -= 1
            if outcome == "other":
                return
            if outcome == "success":
                self._consecutive_failures = 0
                if ticket.trial:
                    self._transition(BreakerState.CLOSED)
                return
            self._consecutive_failures += 1
            if ticket.trial or self._consecutive_failures >= self._config.failure_threshold:
                self._open()

    def _refresh(self, now: float) -> None:
        if self._state is BreakerState.OPEN and now - self._opened_at >= self._config.recovery_s:
            self._trials_in_flight = 0
            self._transition(BreakerState.HALF_OPEN)

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._consecutive_failures = 0
        self._transition(BreakerState.OPEN)

    def _transition(self, new: BreakerState) -> None:
        old, self._state = self._state, new
        self._generation += 1
        if self._on_change is None:
            return
        try:
            self._on_change(self.name, old, new)
        except Exception:
            _log.exception("on_change callback of breaker %r failed (%s -> %s)", self.name, old, new)
