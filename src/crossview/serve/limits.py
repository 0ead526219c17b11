"""Per-key token-bucket rate limiting for the service's endpoints.

Every key (an API key, a client address, a camera id) owns a bucket holding at most ``burst``
tokens, refilled continuously at ``rate_per_s`` tokens per second. A request costing ``cost``
tokens goes ahead when its bucket holds that many, and they are taken; otherwise nothing is taken
and the caller learns how many seconds remain until it would go ahead, which is what an HTTP 429
answer carries as ``Retry-After``. A key seen for the first time starts with a full bucket.

>>> clock = lambda: 0.0
>>> limiter = RateLimiter(RateLimit(rate_per_s=2.0, burst=3), clock=clock)
>>> [limiter.acquire("cam-1") for _ in range(4)]
[0.0, 0.0, 0.0, 0.5]
>>> limiter.acquire("cam-2")
0.0

Memory stays bounded: at most ``max_keys`` buckets are kept. A missing bucket behaves exactly like
a full one, so when room is needed a bucket that has refilled completely is dropped, which changes
nothing a client can observe; only when none has, the least recently used bucket is dropped (its
key then gets a full bucket again, a bounded gift of at most ``burst`` tokens). Finding a full
bucket costs ``O(log n)``: a heap orders the buckets by the time they will be full again.

``RateLimiter`` is thread-safe: one lock guards its buckets, and the clock is read under it.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["RateLimit", "RateLimiter"]


class RateLimit(BaseModel):
    """A token bucket's shape: ``burst`` requests at once, ``rate_per_s`` per second sustained."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rate_per_s: float = Field(gt=0, allow_inf_nan=False, description="tokens refilled per second")
    burst: int = Field(ge=1, description="bucket capacity in tokens")


@dataclass(slots=True)
class _Bucket:
    tokens: float  # level at ``stamp``
    stamp: float  # clock reading of the last grant
    full_at: float  # clock reading at which the bucket is full again


class RateLimiter:
    """Per-key token buckets sharing one ``RateLimit``, at most ``max_keys`` of them in memory."""

    def __init__(
        self,
        limit: RateLimit,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys}")
        self._limit = limit
        self._clock = clock
        self._max_keys = max_keys
        # Absorbs float rounding, so a client retrying after exactly the advertised Retry-After
        # is let through; far below any meaningful fraction of a token.
        self._slack = 1e-9 * limit.burst
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()  # least recently used first
        self._full_heap: list[tuple[float, str]] = []  # (full_at, key); stale entries skipped lazily

    @property
    def limit(self) -> RateLimit:
        return self._limit

    @property
    def max_keys(self) -> int:
        return self._max_keys

    def __len__(self) -> int:
        """The number of buckets currently kept in memory (never more than ``max_keys``)."""
        with self._lock:
            return len(self._buckets)

    def acquire(self, key: str, cost: float = 1.0) -> float:
        """``0.0`` when the request may go ahead (its tokens are taken); otherwise the seconds until
        it could (nothing is taken): the ``Retry-After`` value.

        ``cost`` must be positive, finite and at most ``burst``; otherwise ``ValueError``.
        """
        rate, burst = self._limit.rate_per_s, self._limit.burst
        if not (math.isfinite(cost) and cost > 0):
            raise ValueError(f"cost must be a positive finite number, got {cost!r}")
        if cost > burst:
            raise ValueError(f"cost {cost} exceeds the bucket capacity (burst={burst}); it could never pass")
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                tokens = float(burst)
            else:
                self._buckets.move_to_end(key)
                elapsed = max(0.0, now - bucket.stamp)
                tokens = min(float(burst), bucket.tokens + elapsed * rate)
            if tokens + self._slack < cost:
                return (cost - tokens) / rate
            tokens -= cost
            full_at = now + (burst - tokens) / rate
            if bucket is None:
                self._make_room(now)
                self._buckets[key] = _Bucket(tokens, now, full_at)
            else:
                bucket.tokens, bucket.stamp, bucket.full_at = tokens, max(now, bucket.stamp), full_at
            heapq.heappush(self._full_heap, (full_at, key))
            self._compact_heap()
            return 0.0

    def wait_time(self, key: str, cost: float = 1.0) -> float:
        """Seconds until ``key`` could spend ``cost`` tokens (``0.0``: now), taking nothing.

        For limits that must refuse *before* the work that would be charged, e.g. failed
        authentications from an address: looked at first, charged only when a failure happens.
        """
        rate, burst = self._limit.rate_per_s, self._limit.burst
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                return 0.0
            tokens = min(float(burst), bucket.tokens + max(0.0, self._clock() - bucket.stamp) * rate)
        return 0.0 if tokens + self._slack >= cost else (cost - tokens) / rate

    def _make_room(self, now: float) -> None:
        """Drop buckets until one more fits: a full one when there is any, else the LRU one."""
        while len(self._buckets) >= self._max_keys:
            victim = self._full_bucket(now)
            if victim is None:
                self._buckets.popitem(last=False)  # its heap entries go stale
            else:
                del self._buckets[victim]

    def _full_bucket(self, now: float) -> str | None:
        heap = self._full_heap
        while heap:
            full_at, key = heap[0]
            bucket = self._buckets.get(key)
            if bucket is None or bucket.full_at != full_at:
                heapq.heappop(heap)  # stale: the bucket was dropped or has been drawn on since
                continue
            if full_at > now:
                return None  # the bucket closest to full is not full yet, so none is
            heapq.heappop(heap)
            return key
        return None

    def _compact_heap(self) -> None:
        """Rebuild the heap from the live buckets once stale entries dominate (amortised O(1))."""
        if len(self._full_heap) > 2 * len(self._buckets) + 64:
            self._full_heap = [(bucket.full_at, key) for key, bucket in self._buckets.items()]
            heapq.heapify(self._full_heap)
