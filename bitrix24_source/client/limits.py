"""Client-side limits: a leaky bucket per portal and a per-method operating budget (§6.1, §6.2, §6.6); no I/O.

Both are thread-safe and shared process-wide through :func:`limiter_for` (dlt loads on up to
20 threads, and the portal counts every request of the process against one bucket). The client waits *before*
a request would be refused, so the portal never sees an over-limit request:

* :class:`LeakyBucket` mirrors the portal's counter: each request adds 1, the level drains at ``drain`` per
  second, and a request is sent only when the level after adding it stays within ``burst`` minus a small
  headroom (see :class:`LeakyBucket`). Waiting requests reserve their slot under the lock and sleep outside
  it, so threads are served in arrival order and none of them busy-waits.
* :class:`OperatingBudget` keeps, per method, the last ``time.operating`` (the portal's running sum of execution
  seconds over 10 minutes) and ``time.operating_reset_at``. When the sum nears the limit it waits until the reset
  (§6.2 pre-check: ``operating >= limit - 5 s``); above ``heavy_fraction`` of the limit it adds a small adaptive
  delay, as b24jssdk does.

A wait longer than :data:`WAIT_WARNING_SECONDS` is logged as a WARNING naming the method, its budget and the
reset time (or the bucket's figures), and a long wait is slept in slices with an INFO line per slice, so a sync
held up by another client's use of a method's budget is never silent. The same waits, and the client's
waits after a 429 or 503 answer, are handed to the limiter's wait listeners as :class:`WaitNotice` (the
source shows them in dlt's progress display).

Nothing here touches the network: the limiter only computes waits and sleeps them. Clocks and sleep are
injectable, so the limiter math is tested with a fake clock.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import threading
import time as _time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from bitrix24_source.errors import ConfigError, MaskingFilter

__all__ = [
    "BATCH_METHOD",
    "ENTERPRISE",
    "BudgetWait",
    "LeakyBucket",
    "OperatingBudget",
    "PortalLimiter",
    "RateLimit",
    "WaitListener",
    "WaitNotice",
    "limiter_for",
    "reset_registry",
]

logger = logging.getLogger(__name__)
logger.addFilter(MaskingFilter())

Clock = Callable[[], float]
Sleep = Callable[[float], None]

BATCH_METHOD: Final = "batch"
"""The method a batch request calls; some portals bill a batch's operating time to it (see OperatingBudget)."""

WAIT_WARNING_SECONDS: Final = 5.0
"""Waits for the operating budget longer than this are logged as a WARNING (shorter ones at DEBUG)."""

PROGRESS_SECONDS: Final = 60.0
"""A long wait is slept in slices of this length, each followed by an INFO line with the time left."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Leaky-bucket parameters: ``burst`` requests at once, draining ``drain`` requests per second.

    The defaults are the cloud's standard plans (X = 50, Y = 2/s); :data:`ENTERPRISE` is 250 / 5 (§6.1).
    """

    burst: int = 50
    drain: float = 2.0

    def __post_init__(self) -> None:
        if self.burst < 1 or self.drain <= 0:
            raise ConfigError(f"rate limit needs burst >= 1 and drain > 0, got {self.burst}/{self.drain}")

    @classmethod
    def preset(cls, name: str) -> RateLimit:
        """``"default"``/``"standard"`` (50 / 2 per s) or ``"enterprise"`` (250 / 5 per s)."""
        presets = {"default": cls(), "standard": cls(), "enterprise": cls(250, 5.0)}
        try:
            return presets[name.lower()]
        except KeyError:
            raise ConfigError(f"unknown rate limit preset {name!r}; use one of {sorted(presets)}") from None


ENTERPRISE = RateLimit(250, 5.0)


class LeakyBucket:
    """Thread-safe leaky bucket that tells each request how long to wait before it may be sent.

    The portal counts a request when it *arrives*. If an earlier request arrives late (thread scheduling,
    network jitter) its count drains later than the client assumed, and a later request that arrives on time
    can find the bucket full. ``headroom`` slots are therefore kept free; by default as many as drain in
    ``jitter`` seconds (at least one): 1 slot at the cloud's 2/s or 5/s, 10 slots for a 100/s test bucket.

    Args:
        rate: burst and drain.
        headroom: slots kept free below ``burst``; None derives it from ``jitter``.
        jitter: arrival delay (seconds) the headroom must absorb when ``headroom`` is None.
        clock: monotonic clock (seconds).
        sleep: sleep function.
    """

    def __init__(
        self,
        rate: RateLimit,
        *,
        headroom: int | None = None,
        jitter: float = 0.1,
        clock: Clock = _time.monotonic,
        sleep: Sleep = _time.sleep,
    ) -> None:
        self.rate = rate
        self._headroom_setting = headroom
        self._jitter = jitter
        self.headroom = self._derive_headroom(rate)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._level = 0.0
        self._last = clock()

    def _derive_headroom(self, rate: RateLimit) -> int:
        wanted = self._headroom_setting
        if wanted is None:
            wanted = max(1, math.ceil(rate.drain * self._jitter))
        return max(0, min(wanted, rate.burst - 1))

    @property
    def capacity(self) -> float:
        return float(self.rate.burst - self.headroom)

    def _drain(self, now: float) -> None:
        self._level = max(0.0, self._level - (now - self._last) * self.rate.drain)
        self._last = now

    def level(self) -> float:
        """Current level (requests counted and not yet drained), reservations included."""
        with self._lock:
            self._drain(self._clock())
            return self._level

    def reserve(self) -> float:
        """Count one request and return how long it must wait before it is sent (does not sleep)."""
        with self._lock:
            self._drain(self._clock())
            wait = max(0.0, (self._level + 1.0 - self.capacity) / self.rate.drain)
            self._level += 1.0
            return wait

    def acquire(self) -> float:
        """Wait until one more request fits in the bucket; returns the seconds waited."""
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return wait

    def on_rejected(self) -> None:
        """The portal answered 503 QUERY_LIMIT_EXCEEDED: its counter is full, so ours must be too."""
        with self._lock:
            self._drain(self._clock())
            self._level = max(self._level, float(self.rate.burst))

    def reconfigure(self, rate: RateLimit) -> None:
        with self._lock:
            self._drain(self._clock())
            self.rate = rate
            self.headroom = self._derive_headroom(rate)


@dataclass(slots=True)
class _MethodBudget:
    operating: float
    reset_at: float | None


@dataclass(frozen=True, slots=True)
class BudgetWait:
    """Why and how long a request waits for an operating budget.

    Attributes:
        seconds: the wait.
        method: the method whose budget is the reason.
        operating: its last known operating seconds in the 10-minute window.
        limit: the budget's limit (seconds per 10 minutes).
        reset_at: when its oldest basket expires (epoch seconds), if the portal said.
    """

    seconds: float
    method: str
    operating: float
    limit: float
    reset_at: float | None

    def describe(self) -> str:
        """``tasks.task.list used 478.0 of 480 s operating time, resets at 12:40:05 UTC`` (for log lines)."""
        reset = (
            _dt.datetime.fromtimestamp(self.reset_at, _dt.timezone.utc).strftime("%H:%M:%S UTC")
            if self.reset_at is not None
            else "an unknown time"
        )
        return (
            f"{self.method} used {self.operating:.1f} of {self.limit:g} s operating time per 10 minutes, "
            f"resets at {reset}"
        )


class OperatingBudget:
    """Per-method operating-time budget driven by each response's ``time`` (§6.1).

    Which method a portal bills for a batch is not settled. The docs say the outer batch is not charged and
    each nested call is charged to its own method (§6.1); b24jssdk measured portals that bill the whole batch
    to the method ``batch`` and leave the nested methods at 0 (their PR #539, which also found that the
    nested ``result_time`` of a v2 batch carries the request-wide sum, not the method's). The budget assumes
    neither: it records every figure under the method the answer reports it for (a batch envelope's
    ``time`` under ``batch``, a v2 command's ``result_time`` under its method), and a batch request waits
    for the worst of ``batch`` and the methods inside it (:data:`BATCH_METHOD` is among the methods the
    client asks about). Whichever the portal bills, the budget that runs out is one the request waits for.

    Args:
        limit: seconds of execution per method per 10 minutes (480 in the cloud's documented example).
        margin: start waiting when ``operating >= limit - margin`` (default: 5 s, or 1 % of small limits).
        heavy_fraction: above this fraction of the limit, add ``min((reset_at - now) * 0.01, 7 s)``.
        warn_after: waits longer than this (seconds) are logged as a WARNING.
        wall: wall clock (epoch seconds), the clock ``operating_reset_at`` is expressed in.
        sleep: sleep function.
    """

    def __init__(
        self,
        limit: float = 480.0,
        *,
        margin: float | None = None,
        heavy_fraction: float = 0.8,
        fallback_wait: float = 5.0,
        warn_after: float = WAIT_WARNING_SECONDS,
        wall: Clock = _time.time,
        sleep: Sleep = _time.sleep,
    ) -> None:
        if limit <= 0:
            raise ConfigError(f"operating limit must be positive, got {limit}")
        self.limit = limit
        # b24jssdk starts waiting 5 s before the 480 s limit; small limits (tests) keep the same 1 % ratio.
        self.margin = margin if margin is not None else min(5.0, limit * 0.01)
        self.heavy_fraction = heavy_fraction
        self.fallback_wait = fallback_wait
        self.warn_after = warn_after
        self._wall = wall
        self._sleep = sleep
        self._lock = threading.Lock()
        self._methods: dict[str, _MethodBudget] = {}

    def observe(self, method: str, operating: float | None, reset_at: float | None) -> None:
        """Record the ``time.operating``/``operating_reset_at`` a response reported for ``method``."""
        if operating is None:
            return
        with self._lock:
            self._methods[method.lower()] = _MethodBudget(float(operating), reset_at)

    def operating(self, method: str) -> float:
        with self._lock:
            entry = self._methods.get(method.lower())
            return 0.0 if entry is None else entry.operating

    def wait_time(self, methods: Iterable[str]) -> float:
        """Seconds to wait before calling all of ``methods`` without being blocked."""
        pending = self.next_wait(methods)
        return 0.0 if pending is None else pending.seconds

    def next_wait(self, methods: Iterable[str]) -> BudgetWait | None:
        """The longest wait before calling all of ``methods``, with its reason; None when none must wait."""
        now = self._wall()
        worst: BudgetWait | None = None
        with self._lock:
            for method in sorted({m.lower() for m in methods}):
                entry = self._methods.get(method)
                if entry is None:
                    continue
                if entry.reset_at is not None and entry.reset_at <= now:
                    # The oldest basket has expired: the stored sum is stale, the next answer refreshes it.
                    if entry.operating >= self.limit - self.margin:
                        entry.operating = 0.0
                    continue
                if entry.operating >= self.limit - self.margin:
                    wait = (entry.reset_at - now + 1.0) if entry.reset_at is not None else self.fallback_wait
                elif entry.operating > self.heavy_fraction * self.limit:
                    wait = min((entry.reset_at - now) * 0.01, 7.0) if entry.reset_at is not None else 0.0
                else:
                    wait = 0.0
                if wait > 0 and (worst is None or wait > worst.seconds):
                    worst = BudgetWait(wait, method, entry.operating, self.limit, entry.reset_at)
        return worst

    def blocked_wait(self, method: str, *, minimum: float) -> float:
        """Seconds to wait after a 429 OPERATION_TIME_LIMIT for ``method``: until its reset, at least ``minimum``.

        The method stays blocked for other threads until then (they pre-wait instead of hitting 429 too).
        """
        now = self._wall()
        with self._lock:
            entry = self._methods.get(method.lower())
            reset_at = None if entry is None else entry.reset_at
            used = self.limit if entry is None else entry.operating
            wait = minimum if reset_at is None or reset_at <= now else max(minimum, reset_at - now + 1.0)
            # Expires exactly when the wait ends, so the caller's own retry is not held up a second time.
            self._methods[method.lower()] = _MethodBudget(self.limit, now + wait - 1.0)
        if wait > self.warn_after:
            reason = BudgetWait(wait, method.lower(), used, self.limit, now + wait - 1.0)
            logger.warning(
                "portal refused %s: operating-time limit reached (429 OPERATION_TIME_LIMIT); "
                "waiting %.0f s: %s",
                method,
                wait,
                reason.describe(),
            )
        return wait


@dataclass(frozen=True, slots=True)
class WaitNotice:
    """A wait long enough to be shown: how long is still to wait, and why.

    Attributes:
        seconds: the time still to wait.
        reason: what is waited for, e.g. ``operating budget: tasks.task.list used 478.0 of 480 s ...``.
    """

    seconds: float
    reason: str
    ongoing: bool = False
    """The rest of a wait announced before (announced again after each slice of a long wait)."""

    def describe(self) -> str:
        return f"{'still ' if self.ongoing else ''}waiting {self.seconds:.0f} s: {self.reason}"


WaitListener = Callable[[WaitNotice], None]


class PortalLimiter:
    """The bucket and the operating budget of one portal (one per portal key, see :func:`limiter_for`).

    Waits longer than ``warn_after`` seconds are logged as a WARNING and handed to the wait listeners
    (:meth:`add_wait_listener`): once when the wait starts and again after every slice of a long one.
    """

    def __init__(
        self,
        rate: RateLimit | None = RateLimit(),
        operating_limit: float | None = 480.0,
        *,
        clock: Clock = _time.monotonic,
        wall: Clock = _time.time,
        sleep: Sleep = _time.sleep,
        headroom: int | None = None,
    ) -> None:
        self.bucket = LeakyBucket(rate, headroom=headroom, clock=clock, sleep=sleep) if rate else None
        self.budget = OperatingBudget(operating_limit, wall=wall, sleep=sleep) if operating_limit else None
        self._sleep = sleep
        self.warn_after = WAIT_WARNING_SECONDS
        self._listeners: list[WaitListener] = []
        self._listeners_lock = threading.Lock()

    def add_wait_listener(self, listener: WaitListener) -> None:
        """Hand every long wait of this limiter's requests to ``listener`` (added once, however often asked)."""
        with self._listeners_lock:
            if listener not in self._listeners:
                self._listeners.append(listener)

    def announce(self, notice: WaitNotice) -> None:
        """Tell the wait listeners about a wait (the caller decides it is long enough to show)."""
        with self._listeners_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(notice)

    @classmethod
    def from_parts(
        cls, bucket: LeakyBucket | None, budget: OperatingBudget | None, *, sleep: Sleep = _time.sleep
    ) -> PortalLimiter:
        """A limiter over an existing (shared) bucket and budget."""
        limiter = cls(None, None, sleep=sleep)
        limiter.bucket, limiter.budget = bucket, budget
        return limiter

    def before_request(self, methods: Iterable[str]) -> float:
        """Wait until a request calling ``methods`` can be sent; returns the seconds waited."""
        methods = sorted(set(methods))
        waited = 0.0
        if self.budget is not None:
            pending = self.budget.next_wait(methods)
            if pending is not None:
                long_wait = pending.seconds > self.budget.warn_after
                logger.log(
                    logging.WARNING if long_wait else logging.DEBUG,
                    "operating budget nearly used: waiting %.0f s before calling %s: %s",
                    pending.seconds,
                    ", ".join(methods),
                    pending.describe(),
                )
                self._sleep_in_slices(
                    pending.seconds,
                    f"the operating budget of {pending.method}",
                    f"operating budget: {pending.describe()}" if long_wait else None,
                )
                waited += pending.seconds
        if self.bucket is not None:
            wait = self.bucket.reserve()
            if wait > self.warn_after:
                # Only a bucket the portal reported full (503) or a very small drain makes a request wait long.
                rate = self.bucket.rate
                logger.warning(
                    "request bucket full: waiting %.0f s before calling %s (burst %d, drain %g per s)",
                    wait,
                    ", ".join(methods),
                    rate.burst,
                    rate.drain,
                )
                self._sleep_in_slices(
                    wait,
                    "the request bucket",
                    f"request bucket full (burst {rate.burst}, drain {rate.drain:g} per s)",
                )
            elif wait > 0:
                self._sleep(wait)
            waited += wait
        return waited

    def _sleep_in_slices(self, seconds: float, what: str, reason: str | None) -> None:
        """Sleep ``seconds`` waiting for ``what``, in slices of :data:`PROGRESS_SECONDS` with an INFO line each;
        with a ``reason`` (a wait worth showing) the wait, and what is left of it after each slice, is
        announced to the wait listeners."""
        left = seconds
        if reason is not None:
            self.announce(WaitNotice(left, reason))
        while left > PROGRESS_SECONDS:
            self._sleep(PROGRESS_SECONDS)
            left -= PROGRESS_SECONDS
            logger.info("still waiting %.0f s for %s", left, what)
            if reason is not None:
                self.announce(WaitNotice(left, reason, ongoing=True))
        self._sleep(left)

    def observe(self, method: str, operating: float | None, reset_at: float | None) -> None:
        if self.budget is not None:
            self.budget.observe(method, operating, reset_at)


# §6.1: the leaky bucket is per portal and source IP (every client of this process shares it), while the
# operating budget is per method and per app or webhook: buckets are keyed by host, budgets by host + caller.
_BUCKETS: dict[str, LeakyBucket] = {}
_BUDGETS: dict[str, OperatingBudget] = {}
_LIMITERS: dict[tuple[str, bool, bool], PortalLimiter] = {}
_REGISTRY_LOCK = threading.Lock()


def limiter_for(portal_key: str, rate: RateLimit | None, operating_limit: float | None) -> PortalLimiter:
    """The process-wide limiter of a caller on a portal, created on first use.

    Args:
        portal_key: ``"<host>|<caller>"``: the host keys the shared bucket, the whole key the operating budget
            (the caller is the webhook's user or the OAuth application).
        rate: the bucket's figures; None: this client does not wait for the bucket (the shared one is kept).
        operating_limit: the budget's limit; None: this client does not keep a budget.

    A later client that asks for different bucket figures reconfigures the shared bucket (last one wins), so
    all threads and clients keep sharing one counter.
    """
    host = portal_key.split("|", 1)[0]
    with _REGISTRY_LOCK:
        bucket = _BUCKETS.get(host)
        if rate is not None:
            if bucket is None:
                bucket = _BUCKETS[host] = LeakyBucket(rate)
            elif bucket.rate != rate:
                logger.warning("portal %s: rate limit changed to %s (shared by all clients)", host, rate)
                bucket.reconfigure(rate)
        budget = _BUDGETS.get(portal_key)
        if operating_limit is not None:
            if budget is None:
                budget = _BUDGETS[portal_key] = OperatingBudget(operating_limit)
            else:
                budget.limit = operating_limit
        key = (portal_key, rate is not None, operating_limit is not None)
        limiter = _LIMITERS.get(key)
        if limiter is None:
            limiter = _LIMITERS[key] = PortalLimiter.from_parts(
                bucket if rate is not None else None, budget if operating_limit is not None else None
            )
        return limiter


def reset_registry() -> None:
    """Forget every shared limiter (tests)."""
    with _REGISTRY_LOCK:
        _BUCKETS.clear()
        _BUDGETS.clear()
        _LIMITERS.clear()
