from __future__ import annotations

import threading

import pytest
from pydantic import ValidationError

from crossview.serve.limits import RateLimit, RateLimiter


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(rate: float = 2.0, burst: int = 3, *, max_keys: int = 100_000) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock(100.0)
    return RateLimiter(RateLimit(rate_per_s=rate, burst=burst), clock=clock, max_keys=max_keys), clock


def test_burst_then_refusal_with_exact_retry_after() -> None:
    limiter, _ = make(rate=2.0, burst=3)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == 0.5
    assert limiter.acquire("a", cost=3) == 1.5


def test_refusal_takes_nothing() -> None:
    limiter, clock = make(rate=1.0, burst=2)
    limiter.acquire("a", cost=2)
    for _ in range(5):
        assert limiter.acquire("a") == 1.0
    clock.now += 1.0
    assert limiter.acquire("a") == 0.0


def test_wait_time_looks_without_taking() -> None:
    limiter, clock = make(rate=2.0, burst=2)
    assert limiter.wait_time("new") == 0.0 and len(limiter) == 0  # an unseen key is not stored
    limiter.acquire("a", cost=2)
    assert limiter.wait_time("a") == 0.5 and limiter.wait_time("a") == 0.5  # nothing taken
    clock.now += 0.5
    assert limiter.wait_time("a") == 0.0 and limiter.wait_time("a", cost=2) == 0.5
    assert limiter.acquire("a") == 0.0


def test_refill_over_time() -> None:
    limiter, clock = make(rate=2.0, burst=3)
    for _ in range(3):
        limiter.acquire("a")
    clock.now += 0.25  # half a token
    assert limiter.acquire("a") == 0.25
    clock.now += 0.25
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") == 0.5
    clock.now += 60.0  # refills to the burst, never beyond
    assert [limiter.acquire("a") for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]


def test_retrying_after_the_advertised_delay_succeeds() -> None:
    limiter, clock = make(rate=3.0, burst=1)
    limiter.acquire("a")
    wait = limiter.acquire("a")
    assert wait == pytest.approx(1 / 3)
    clock.now += wait
    assert limiter.acquire("a") == 0.0


def test_fractional_cost() -> None:
    limiter, _ = make(rate=1.0, burst=1)
    assert limiter.acquire("a", cost=0.75) == 0.0
    assert limiter.acquire("a", cost=0.5) == pytest.approx(0.25)


def test_keys_are_isolated() -> None:
    limiter, _ = make(rate=1.0, burst=2)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 1.0]
    assert [limiter.acquire("b") for _ in range(3)] == [0.0, 0.0, 1.0]
    assert limiter.acquire("a") == 1.0


@pytest.mark.parametrize("cost", [3.5, 4, 1e9])
def test_cost_above_burst_is_rejected(cost: float) -> None:
    limiter, _ = make(burst=3)
    with pytest.raises(ValueError, match=rf"cost {cost} exceeds .*burst=3"):
        limiter.acquire("a", cost=cost)
    assert len(limiter) == 0


@pytest.mark.parametrize("cost", [0, -1.0, float("nan"), float("inf")])
def test_non_positive_or_non_finite_cost_is_rejected(cost: float) -> None:
    limiter, _ = make()
    with pytest.raises(ValueError, match=f"got {cost!r}"):
        limiter.acquire("a", cost=cost)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate_per_s": 0.0, "burst": 1},
        {"rate_per_s": -1.0, "burst": 1},
        {"rate_per_s": float("inf"), "burst": 1},
        {"rate_per_s": float("nan"), "burst": 1},
        {"rate_per_s": 1.0, "burst": 0},
        {"rate_per_s": 1.0, "burst": 2.5},
        {"rate_per_s": 1.0, "burst": 1, "per": "minute"},
        {"burst": 1},
    ],
)
def test_invalid_limit_is_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RateLimit.model_validate(kwargs)


def test_limit_is_frozen() -> None:
    limit = RateLimit(rate_per_s=1.0, burst=1)
    with pytest.raises(ValidationError):
        limit.burst = 2


def test_invalid_max_keys_is_rejected() -> None:
    with pytest.raises(ValueError, match="got 0"):
        RateLimiter(RateLimit(rate_per_s=1.0, burst=1), max_keys=0)


def test_eviction_keeps_memory_bounded_and_evicted_key_behaves_as_full() -> None:
    limiter, clock = make(rate=1.0, burst=3, max_keys=2)
    limiter.acquire("a", cost=3)
    limiter.acquire("b", cost=3)
    limiter.acquire("c", cost=3)  # none is full again: the least recently used one, a, goes
    assert len(limiter) == 2
    assert [limiter.acquire("a") for _ in range(4)] == [0.0, 0.0, 0.0, 1.0]  # a full bucket again
    assert len(limiter) == 2  # a came back in place of b (now the LRU)
    assert limiter.acquire("c") == 1.0  # c kept its state
    clock.now += 1000.0
    for key in "abcdefgh":
        limiter.acquire(key)
    assert len(limiter) == 2


def test_refusal_refreshes_recency() -> None:
    limiter, _ = make(rate=1.0, burst=1, max_keys=2)
    limiter.acquire("a")
    limiter.acquire("b")
    assert limiter.acquire("a") == 1.0  # a is now the most recently used
    limiter.acquire("c")  # evicts b
    assert limiter.acquire("a") == 1.0
    assert limiter.acquire("b") == 0.0


def test_eviction_prefers_a_full_bucket_over_the_lru_one() -> None:
    limiter, clock = make(rate=1.0, burst=10, max_keys=2)
    limiter.acquire("a", cost=10)  # full again 10 s from now
    clock.now += 5.0
    limiter.acquire("b", cost=1)  # full again 1 s from now
    clock.now += 2.0
    limiter.acquire("c")  # b is full (dropping it changes nothing); a, though older, is not
    assert len(limiter) == 2
    assert limiter.acquire("a", cost=10) == 3.0  # a kept its deficit
    assert limiter.acquire("b", cost=10) == 0.0  # b behaves exactly as it would have


def test_many_acquires_on_few_keys() -> None:
    limiter, clock = make(rate=1000.0, burst=5, max_keys=3)
    for i in range(10_000):
        clock.now += 0.001
        assert limiter.acquire(f"k{i % 4}") == 0.0
    assert len(limiter) == 3


def test_concurrent_acquires_never_over_grant() -> None:
    limiter, _ = make(rate=1.0, burst=50)  # the clock never moves: no refill
    n_threads, per_thread = 8, 100
    start = threading.Barrier(n_threads)
    granted = [0] * n_threads

    def worker(index: int) -> None:
        start.wait()
        granted[index] = sum(limiter.acquire("shared") == 0.0 for _ in range(per_thread))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 50
