from __future__ import annotations

import pickle
import threading
from collections.abc import Callable

import pytest
from pydantic import ValidationError

from crossview.serve.breaker import BreakerConfig, BreakerOpenError, BreakerState, CircuitBreaker

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Backend:
    """A stand-in backend whose next calls fail with ``ConnectionError`` while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.calls = 0

    def __call__(self, x: int = 1) -> int:
        self.calls += 1
        if self.down:
            raise ConnectionError("backend unreachable")
        return 2 * x


def make(
    threshold: int = 3,
    recovery_s: float = 10.0,
    half_open_calls: int = 1,
    *,
    failures: tuple[type[BaseException], ...] = (Exception,),
    on_change: Callable[[str, BreakerState, BreakerState], None] | None = None,
) -> tuple[CircuitBreaker, FakeClock, Backend]:
    clock = FakeClock(1000.0)
    config = BreakerConfig(
        failure_threshold=threshold, recovery_s=recovery_s, half_open_calls=half_open_calls
    )
    breaker = CircuitBreaker("index", config, clock=clock, failures=failures, on_change=on_change)
    return breaker, clock, Backend()


def fail(breaker: CircuitBreaker, backend: Backend, times: int = 1) -> None:
    backend.down = True
    for _ in range(times):
        with pytest.raises(ConnectionError):
            breaker.call(backend)
    backend.down = False


def test_defaults() -> None:
    config = BreakerConfig()
    assert (config.failure_threshold, config.recovery_s, config.half_open_calls) == (5, 10.0, 1)
    breaker = CircuitBreaker("index")
    assert breaker.state is CLOSED
    assert breaker.retry_after() == 0.0
    assert breaker.failures_counted == (Exception,)
    assert breaker.name == "index"


def test_passes_arguments_and_result_through() -> None:
    breaker, _, backend = make()
    assert breaker.call(backend, 21) == 42
    assert breaker.call(backend, x=5) == 10
    assert breaker.call(divmod, 7, 2) == (3, 1)


def test_opens_after_threshold_consecutive_failures() -> None:
    breaker, _, backend = make(threshold=3)
    fail(breaker, backend, 2)
    assert breaker.state is CLOSED
    fail(breaker, backend)
    assert breaker.state is OPEN


def test_non_consecutive_failures_do_not_open() -> None:
    breaker, _, backend = make(threshold=3)
    for _ in range(5):
        fail(breaker, backend, 2)
        assert breaker.call(backend) == 2  # a success resets the count
    assert breaker.state is CLOSED


def test_open_refuses_without_calling_and_reports_retry_after() -> None:
    breaker, clock, backend = make(threshold=1, recovery_s=10.0)
    fail(breaker, backend)
    calls = backend.calls
    clock.now += 6.75
    with pytest.raises(BreakerOpenError) as info:
        breaker.call(backend)
    assert backend.calls == calls
    assert info.value.name == "index"
    assert info.value.retry_after_s == 3.25
    assert str(info.value) == "backend 'index' is unavailable (circuit open); retry in 3.2 s"
    assert breaker.retry_after() == 3.25
    assert breaker.state is OPEN


def test_open_error_is_a_runtime_error_and_pickles() -> None:
    error = BreakerOpenError("model", 1.5)
    assert isinstance(error, RuntimeError)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.name, copy.retry_after_s, str(copy)) == ("model", 1.5, str(error))


def test_half_open_after_recovery() -> None:
    breaker, clock, backend = make(threshold=1, recovery_s=10.0)
    fail(breaker, backend)
    clock.now += 9.999
    assert breaker.state is OPEN
    clock.now += 0.001
    assert breaker.state is HALF_OPEN
    assert breaker.retry_after() == 0.0


def test_trial_success_closes() -> None:
    breaker, clock, backend = make(threshold=2, recovery_s=10.0)
    fail(breaker, backend, 2)
    clock.now += 10.0
    assert breaker.call(backend, 3) == 6
    assert breaker.state is CLOSED
    fail(breaker, backend)  # the failure count started afresh
    assert breaker.state is CLOSED
    fail(breaker, backend)
    assert breaker.state is OPEN


def test_trial_failure_reopens_with_a_fresh_timer() -> None:
    breaker, clock, backend = make(threshold=2, recovery_s=10.0)
    fail(breaker, backend, 2)
    clock.now += 15.0  # well past recovery
    fail(breaker, backend)  # the trial fails
    assert breaker.state is OPEN
    assert breaker.retry_after() == 10.0
    clock.now += 9.5
    with pytest.raises(BreakerOpenError) as info:
        breaker.call(backend)
    assert info.value.retry_after_s == 0.5
    clock.now += 0.5
    assert breaker.state is HALF_OPEN
    assert breaker.call(backend) == 2
    assert breaker.state is CLOSED


def test_half_open_limits_concurrent_trials() -> None:
    breaker, clock, backend = make(threshold=1, recovery_s=10.0, half_open_calls=2)
    fail(breaker, backend)
    clock.now += 10.0
    entered = threading.Semaphore(0)
    release = threading.Event()
    results: list[str] = []

    def slow_trial() -> str:
        entered.release()
        assert release.wait(timeout=10)
        return "ok"

    threads = [threading.Thread(target=lambda: results.append(breaker.call(slow_trial))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for _ in threads:
        assert entered.acquire(timeout=10)
    # Both trial slots are taken: a third call is refused without running.
    calls = backend.calls
    with pytest.raises(BreakerOpenError) as info:
        breaker.call(backend)
    assert backend.calls == calls
    assert info.value.retry_after_s == 10.0
    assert breaker.state is HALF_OPEN
    release.set()
    for thread in threads:
        thread.join(timeout=10)
    assert results == ["ok", "ok"]
    assert breaker.state is CLOSED
    assert breaker.call(backend) == 2


def test_uncounted_exceptions_pass_through_without_counting() -> None:
    breaker, clock, backend = make(threshold=1, failures=(ConnectionError, TimeoutError))
    assert breaker.failures_counted == (ConnectionError, TimeoutError)
    bad_input = ValueError("bad query vector")

    def reject() -> None:
        raise bad_input

    for _ in range(5):
        with pytest.raises(ValueError) as info:
            breaker.call(reject)
        assert info.value is bad_input  # re-raised unchanged
    assert breaker.state is CLOSED
    with pytest.raises(TimeoutError):
        breaker.call(lambda: (_ for _ in ()).throw(TimeoutError("slow")))
    assert breaker.state is OPEN
    # While half-open, an uncounted exception neither closes nor reopens; it frees the trial slot.
    clock.now += 10.0
    with pytest.raises(ValueError):
        breaker.call(reject)
    assert breaker.state is HALF_OPEN
    assert breaker.call(backend) == 2
    assert breaker.state is CLOSED


def test_counted_exception_is_reraised_unchanged() -> None:
    breaker, _, _ = make()
    error = ConnectionError("down")

    def boom() -> None:
        raise error

    with pytest.raises(ConnectionError) as info:
        breaker.call(boom)
    assert info.value is error


def test_on_change_sees_every_transition_in_order() -> None:
    seen: list[tuple[str, BreakerState, BreakerState]] = []
    breaker, clock, backend = make(threshold=2, recovery_s=5.0, on_change=lambda *args: seen.append(args))
    fail(breaker, backend, 2)
    clock.now += 5.0
    fail(breaker, backend)  # trial fails
    clock.now += 5.0
    breaker.call(backend)  # trial succeeds
    assert seen == [
        ("index", CLOSED, OPEN),
        ("index", OPEN, HALF_OPEN),
        ("index", HALF_OPEN, OPEN),
        ("index", OPEN, HALF_OPEN),
        ("index", HALF_OPEN, CLOSED),
    ]


def test_on_change_errors_do_not_break_calls(caplog: pytest.LogCaptureFixture) -> None:
    def broken(name: str, old: BreakerState, new: BreakerState) -> None:
        raise RuntimeError("metrics down")

    breaker, _, backend = make(threshold=1, on_change=broken)
    fail(breaker, backend)
    assert breaker.state is OPEN
    assert "on_change callback of breaker 'index' failed" in caplog.text


def test_on_change_may_read_the_breaker() -> None:
    states: list[BreakerState] = []
    holder: list[CircuitBreaker] = []
    breaker, _, backend = make(threshold=1, on_change=lambda *_: states.append(holder[0].state))
    holder.append(breaker)
    fail(breaker, backend)
    assert states == [OPEN]


def test_guard_behaves_like_call() -> None:
    seen: list[BreakerState] = []
    breaker, clock, _ = make(
        threshold=2,
        recovery_s=10.0,
        failures=(ConnectionError,),
        on_change=lambda _, __, new: seen.append(new),
    )
    with breaker.guard():
        pass
    with pytest.raises(ConnectionError), breaker.guard():
        raise ConnectionError("down")
    with pytest.raises(KeyError), breaker.guard():
        raise KeyError("not counted, and no success either")
    assert breaker.state is CLOSED
    with pytest.raises(ConnectionError), breaker.guard():
        raise ConnectionError("down")
    assert breaker.state is OPEN
    body_ran = False
    with pytest.raises(BreakerOpenError) as info, breaker.guard():
        body_ran = True
    assert not body_ran
    assert info.value.retry_after_s == 10.0
    clock.now += 10.0
    with breaker.guard():
        pass
    assert breaker.state is CLOSED
    assert seen == [OPEN, HALF_OPEN, CLOSED]


def test_slow_call_admitted_while_closed_does_not_close_an_open_breaker() -> None:
    breaker, _, backend = make(threshold=1)
    entered, release = threading.Event(), threading.Event()
    results: list[int] = []

    def slow() -> int:
        entered.set()
        assert release.wait(timeout=10)
        return 7

    thread = threading.Thread(target=lambda: results.append(breaker.call(slow)))
    thread.start()
    assert entered.wait(timeout=10)
    fail(breaker, backend)
    assert breaker.state is OPEN
    release.set()
    thread.join(timeout=10)
    assert results == [7]
    assert breaker.state is OPEN  # the late success is stale: only a trial may close the breaker


def test_concurrent_failures_open_once() -> None:
    seen: list[BreakerState] = []
    breaker, _, backend = make(threshold=10, on_change=lambda _, __, new: seen.append(new))
    backend.down = True
    start = threading.Barrier(8)
    refused = [0] * 8

    def worker(index: int) -> None:
        start.wait()
        for _ in range(50):
            try:
                breaker.call(backend)
            except ConnectionError:
                pass
            except BreakerOpenError:
                refused[index] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [OPEN]
    assert breaker.state is OPEN
    assert backend.calls + sum(refused) == 400
    assert backend.calls >= 10


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_threshold": 0},
        {"recovery_s": 0.0},
        {"recovery_s": -1.0},
        {"recovery_s": float("inf")},
        {"half_open_calls": 0},
        {"timeout_s": 1.0},
    ],
)
def test_invalid_config_is_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        BreakerConfig.model_validate(kwargs)


def test_invalid_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="''"):
        CircuitBreaker("")
    with pytest.raises(ValueError, match=r"\(\)"):
        CircuitBreaker("index", failures=())
    with pytest.raises(ValueError, match="'oops'"):
        CircuitBreaker("index", failures=("oops",))  # type: ignore[arg-type]
