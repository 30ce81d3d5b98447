"""A token bucket per caller: `rate` requests a second on average, bursts up to `burst`.

Buckets live in the process: with several API nodes each enforces the limit on its own (a
client spread over N nodes gets up to N times the rate). A `rate` of 0 turns limiting off.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import Counter
from collections.abc import Iterator

from taskstatus.api.errors import ApiError, RateLimited

_MAX_BUCKETS = 100_000


class RateLimiter:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def check(self, key: str) -> None:
        """Take a token for `key`, or raise RateLimited with the seconds until one is free."""
        if self.rate <= 0:
            return
        now = time.monotonic()
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            raise RateLimited(max(1, math.ceil((1.0 - tokens) / self.rate)))
        if len(self._buckets) >= _MAX_BUCKETS and key not in self._buckets:
            self._buckets.clear()  # crude but bounded: a flood of new keys resets everyone
        self._buckets[key] = (tokens - 1.0, now)


class StreamLimits:
    """How many event streams each client holds open: `check` refuses one more past
    `per_client` (429); `hold` counts one for as long as it lasts."""

    def __init__(self, per_client: int) -> None:
        self.per_client = per_client
        self.open: Counter[str] = Counter()

    @contextlib.contextmanager
    def hold(self, client_id: str) -> Iterator[None]:
        self.open[client_id] += 1
        try:
            yield
        finally:
            self.open[client_id] -= 1
            if self.open[client_id] <= 0:
                del self.open[client_id]

    def check(self, client_id: str) -> None:
        if self.open[client_id] >= self.per_client:
            raise ApiError(
                429,
                [f"this client has {self.per_client} event streams open, the most it may"],
                headers={"Retry-After": "1"},
            )
