"""The portal's two limits (§6.1): a leaky bucket per client IP and per-method operating time.

Both are server-side meters, thread-safe, and read a monotonic clock that tests can replace.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from bitrix24_source.sandbox.types import RateLimit

Clock = Callable[[], float]


class LeakyBucket:
    """Per-IP request counter that drains ``drain`` per second; above ``burst`` requests are refused.

    §6.1: each HTTP request adds 1 (a batch is one request); when the counter has reached X the next request
    gets 503 ``QUERY_LIMIT_EXCEEDED``. A refused request does not add to the counter.
    """

    def __init__(self, limit: RateLimit, clock: Clock = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._levels: dict[str, tuple[float, float]] = {}

    def admit(self, client: str) -> bool:
        """Count one request from ``client``; return False when it must be refused."""
        now = self._clock()
        with self._lock:
            level, at = self._levels.get(client, (0.0, now))
            level = max(0.0, level - (now - at) * self.limit.drain)
            if level + 1 > self.limit.burst:
                self._levels[client] = (level, now)
                return False
            self._levels[client] = (level + 1.0, now)
            return True

    def level(self, client: str) -> float:
        """Current counter value for ``client`` (for inspection)."""
        now = self._clock()
        with self._lock:
            level, at = self._levels.get(client, (0.0, now))
            return max(0.0, level - (now - at) * self.limit.drain)


@dataclass(frozen=True, slots=True)
class OperatingReading:
    """``time.operating`` and ``time.operating_reset_at`` for one method (§2.1, §6.1)."""

    operating: float
    reset_at: int


class OperatingMeter:
    """Per-(principal, method) operating seconds kept in ``baskets`` baskets of ``basket_seconds`` each.

    §6.1: the sum over the ten one-minute baskets is ``time.operating``; ``operating_reset_at`` is when the
    oldest basket expires (window length after its first call). The check is made *before* a call: a call
    that pushes the sum over the limit still completes, and the next one is refused with 429.

    Args:
        limit: seconds of operating time allowed per method in the window; None never refuses.
        basket_seconds: length of one basket (60 in the cloud; tests use fractions of a second).
        baskets: number of baskets in the window (10 in the cloud).
        clock: monotonic clock for basket arithmetic.
        wall_clock: wall clock used to express ``operating_reset_at`` as a unix time.
    """

    def __init__(
        self,
        limit: float | None,
        *,
        basket_seconds: float = 60.0,
        baskets: int = 10,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        self.limit = limit
        self.basket_seconds = basket_seconds
        self.window = basket_seconds * baskets
        self._clock = clock
        self._wall = wall_clock
        self._lock = threading.Lock()
        # key -> deque of [basket_start, seconds]; baskets start at the first call that falls outside the
        # previous one, like the portal's "10 min after its first call".
        self._baskets: dict[tuple[str, str], deque[list[float]]] = {}
        self._sums: dict[tuple[str, str], float] = {}

    def _expire(self, key: tuple[str, str], now: float) -> deque[list[float]]:
        baskets = self._baskets.get(key)
        if baskets is None:
            baskets = self._baskets[key] = deque()
            self._sums[key] = 0.0
        elif baskets and baskets[0][0] + self.window <= now:
            while baskets and baskets[0][0] + self.window <= now:
                baskets.popleft()
            # Re-add rather than subtract, so float error never accumulates.
            self._sums[key] = sum(b[1] for b in baskets)
        return baskets

    def _reading(self, key: tuple[str, str], baskets: deque[list[float]], now: float) -> OperatingReading:
        oldest = baskets[0][0] if baskets else now
        reset_at = self._wall() + (oldest + self.window - now)
        return OperatingReading(operating=self._sums[key], reset_at=int(reset_at))

    def blocked(self, principal: str, method: str) -> bool:
        """True when the method's sum already exceeds the limit, so this call gets 429."""
        if self.limit is None:
            return False
        now = self._clock()
        key = (principal, method)
        with self._lock:
            self._expire(key, now)
            return self._sums[key] > self.limit

    def charge(self, principal: str, method: str, seconds: float) -> OperatingReading:
        """Add ``seconds`` to the current basket and return the reading after the charge."""
        now = self._clock()
        key = (principal, method)
        with self._lock:
            baskets = self._expire(key, now)
            if seconds > 0:
                if baskets and now < baskets[-1][0] + self.basket_seconds:
                    baskets[-1][1] += seconds
                else:
                    baskets.append([now, seconds])
                self._sums[key] += seconds
            return self._reading(key, baskets, now)

    def read(self, principal: str, method: str) -> OperatingReading:
        """The reading without charging anything (the outer batch call is never charged, §4.2)."""
        now = self._clock()
        key = (principal, method)
        with self._lock:
            return self._reading(key, self._expire(key, now), now)

    def totals(self) -> dict[str, float]:
        """Current operating seconds per method, summed over principals."""
        now = self._clock()
        out: dict[str, float] = {}
        with self._lock:
            for key in list(self._baskets):
                if self._expire(key, now):
                    out[key[1]] = out.get(key[1], 0.0) + self._sums[key]
        return out

    def reset(self) -> None:
        """Forget all baskets."""
        with self._lock:
            self._baskets.clear()
            self._sums.clear()
