"""Per-API-key rate limit: a token bucket per key, in this process's memory.

Each key may send ``burst`` requests at once and ``per_second`` on average. The buckets
live in one API process: N API processes behind a load balancer allow a key N times the
rate. A bucket that has been idle long enough to be full again is the same as no bucket,
so it is dropped: memory holds only the keys active in the last ``burst / per_second``
seconds.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimiter:
    """Token buckets by key; ``per_second`` of 0 disables the limit."""

    def __init__(
        self, per_second: float, burst: int, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_second = per_second
        self.burst = float(burst)
        self.monotonic = monotonic
        # key -> (tokens, last refill); least recently used first
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._refill_seconds = self.burst / per_second if per_second > 0 else 0.0

    @property
    def enabled(self) -> bool:
        return self.per_second > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def acquire(self, key: str) -> int:
        """Take one token for ``key``: 0 if the request may go, else seconds to wait (≥ 1)."""
        if not self.enabled:
            return 0
        now = self.monotonic()
        self._evict_full(now)
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.per_second)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return 0
        self._buckets[key] = (tokens, now)
        return max(1, math.ceil((1 - tokens) / self.per_second))

    def _evict_full(self, now: float) -> None:
        """Drop the buckets, oldest first, that have refilled completely."""
        while self._buckets:
            key, (_, last) = next(iter(self._buckets.items()))
            if now - last < self._refill_seconds:
                return
            del self._buckets[key]
