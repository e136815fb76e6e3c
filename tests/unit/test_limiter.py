"""Limiter math with a fake clock (§6.1, §6.2): leaky bucket, operating budget, shared registry."""

from __future__ import annotations

import datetime as dt
import logging
import threading

import pytest

from bitrix24_source.client.limits import (
    BATCH_METHOD,
    ENTERPRISE,
    LeakyBucket,
    OperatingBudget,
    PortalLimiter,
    RateLimit,
    limiter_for,
    reset_registry,
)
from bitrix24_source.errors import ConfigError


class FakeClock:
    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += seconds


def _portal_admits(
    levels: list[float], burst: int, drain: float, times: list[float], eps: float = 0.0
) -> bool:
    """An independent model of the portal's counter: refuse when level + 1 > burst (§6.1).

    ``eps`` absorbs float rounding when the client paces exactly at the boundary (headroom 0).
    """
    level, last = 0.0, times[0]
    for t in times:
        level = max(0.0, level - (t - last) * drain)
        last = t
        if level + 1 > burst + eps:
            return False
        level += 1
        levels.append(level)
    return True


@pytest.mark.parametrize("rate", [RateLimit(), ENTERPRISE, RateLimit(5, 0.5)])
def test_bucket_paces_at_the_theoretical_bound_without_overflowing(rate: RateLimit) -> None:
    clock = FakeClock()
    bucket = LeakyBucket(rate, headroom=0, clock=clock, sleep=clock.sleep)
    n = rate.burst * 3
    send_times = []
    for _ in range(n):
        bucket.acquire()
        send_times.append(clock.now)
    elapsed = send_times[-1] - send_times[0]
    assert elapsed == pytest.approx((n - rate.burst) / rate.drain)
    assert _portal_admits([], rate.burst, rate.drain, send_times, eps=1e-6)


@pytest.mark.parametrize("rate", [RateLimit(), ENTERPRISE, RateLimit(5, 0.5)])
def test_default_headroom_never_reaches_the_boundary(rate: RateLimit) -> None:
    clock = FakeClock()
    bucket = LeakyBucket(rate, clock=clock, sleep=clock.sleep)
    send_times = []
    for _ in range(rate.burst * 3):
        bucket.acquire()
        send_times.append(clock.now)
    levels: list[float] = []
    assert _portal_admits(levels, rate.burst, rate.drain, send_times)
    assert max(levels) <= rate.burst - 1 + 1e-6


def test_first_burst_goes_out_without_waiting() -> None:
    clock = FakeClock()
    bucket = LeakyBucket(RateLimit(50, 2.0), headroom=0, clock=clock, sleep=clock.sleep)
    assert [bucket.acquire() for _ in range(50)] == [0.0] * 50
    assert bucket.acquire() == pytest.approx(0.5)


def test_headroom_keeps_slots_free() -> None:
    clock = FakeClock()
    bucket = LeakyBucket(RateLimit(10, 1.0), headroom=2, clock=clock, sleep=clock.sleep)
    assert [bucket.reserve() for _ in range(9)] == [0.0] * 8 + [1.0]


def test_level_drains_over_time() -> None:
    clock = FakeClock()
    bucket = LeakyBucket(RateLimit(50, 2.0), clock=clock, sleep=clock.sleep)
    for _ in range(20):
        bucket.reserve()
    clock.now += 5
    assert bucket.level() == pytest.approx(10.0)
    clock.now += 100
    assert bucket.level() == 0.0


def test_reservations_across_threads_are_serialized() -> None:
    clock = FakeClock()
    bucket = LeakyBucket(RateLimit(10, 2.0), headroom=0, clock=clock, sleep=clock.sleep)
    waits: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            w = bucket.reserve()
            with lock:
                waits.append(w)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 40 requests on a frozen clock: 10 go at once, then one slot every 0.5 s, no two share a slot.
    assert sorted(waits) == pytest.approx([0.0] * 10 + [0.5 * k for k in range(1, 31)])


def test_rejection_fills_the_bucket() -> None:
    clock = FakeClock()
    bucket = LeakyBucket(RateLimit(50, 2.0), headroom=0, clock=clock, sleep=clock.sleep)
    bucket.on_rejected()
    assert bucket.reserve() == pytest.approx(0.5)


def test_rate_limit_validation_and_presets() -> None:
    assert RateLimit.preset("enterprise") == RateLimit(250, 5.0) == ENTERPRISE
    assert RateLimit.preset("default") == RateLimit(50, 2.0)
    with pytest.raises(ConfigError):
        RateLimit.preset("gold")
    with pytest.raises(ConfigError):
        RateLimit(0, 1.0)
    with pytest.raises(ConfigError):
        RateLimit(5, 0)


def test_operating_budget_waits_for_reset_near_the_limit() -> None:
    clock = FakeClock(1_700_000_000.0)
    budget = OperatingBudget(480.0, wall=clock, sleep=clock.sleep)
    budget.observe("crm.item.list", 100.0, clock.now + 300)
    assert budget.wait_time(["crm.item.list"]) == 0.0
    budget.observe("crm.item.list", 400.0, clock.now + 300)  # above 80 %: adaptive delay
    assert budget.wait_time(["crm.item.list"]) == pytest.approx(3.0)
    budget.observe("crm.item.list", 476.0, clock.now + 300)  # within the 5 s margin: wait for the reset
    assert budget.wait_time(["crm.item.list", "other.method"]) == pytest.approx(301.0)
    assert budget.wait_time(["other.method"]) == 0.0
    clock.now += 301
    assert budget.wait_time(["CRM.ITEM.LIST"]) == 0.0


def test_operating_budget_after_429() -> None:
    clock = FakeClock(1_700_000_000.0)
    budget = OperatingBudget(480.0, wall=clock, sleep=clock.sleep)
    assert budget.blocked_wait("crm.deal.list", minimum=10.0) == 10.0
    budget.observe("crm.deal.list", 470.0, clock.now + 120)
    assert budget.blocked_wait("crm.deal.list", minimum=10.0) == pytest.approx(121.0)
    assert budget.wait_time(["crm.deal.list"]) == pytest.approx(121.0)


def test_portal_limiter_waits_budget_then_bucket() -> None:
    clock = FakeClock(1_700_000_000.0)
    limiter = PortalLimiter(RateLimit(2, 1.0), 480.0, clock=clock, wall=clock, sleep=clock.sleep, headroom=0)
    assert limiter.before_request(["a.list"]) == 0.0
    assert limiter.before_request(["a.list"]) == 0.0
    assert limiter.before_request(["a.list"]) == pytest.approx(1.0)
    limiter.observe("a.list", 479.0, clock.now + 50)
    assert limiter.before_request(["a.list"]) == pytest.approx(51.0)


def test_registry_shares_one_bucket_per_portal_and_one_budget_per_caller() -> None:
    reset_registry()
    a = limiter_for("portal.example|user1", RateLimit(), 480.0)
    b = limiter_for("portal.example|user1", RateLimit(), 480.0)
    c = limiter_for("portal.example|user2", RateLimit(), 480.0)
    d = limiter_for("portal.example|app:local.123", RateLimit(), None)
    e = limiter_for("other.example|user1", RateLimit(), 480.0)
    assert a is b and a is not c
    # §6.1: the bucket counts every request from this machine to the portal; the budget is per app/webhook.
    assert a.bucket is not None and a.bucket is c.bucket is d.bucket and a.bucket is not e.bucket
    assert a.budget is not None and c.budget is not None and a.budget is not c.budget and d.budget is None
    limiter_for("portal.example|user1", ENTERPRISE, 480.0)
    assert a.bucket.rate == ENTERPRISE and c.bucket is a.bucket
    unthrottled = limiter_for("portal.example|user1", None, 480.0)
    assert unthrottled.bucket is None and unthrottled.budget is a.budget
    reset_registry()


def test_headroom_is_derived_from_jitter() -> None:
    assert LeakyBucket(RateLimit(50, 2.0)).headroom == 1
    assert LeakyBucket(ENTERPRISE).headroom == 1
    assert LeakyBucket(RateLimit(50, 100.0)).headroom == 10
    assert LeakyBucket(RateLimit(50, 100.0), jitter=0.0).headroom == 1
    assert LeakyBucket(RateLimit(3, 100.0)).headroom == 2  # never the whole bucket
    bucket = LeakyBucket(RateLimit(50, 2.0))
    bucket.reconfigure(RateLimit(50, 100.0))
    assert bucket.headroom == 10


def _utc_clock_text(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%H:%M:%S UTC")


def test_a_long_budget_wait_is_a_warning_with_method_budget_and_reset(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(1_700_000_000.0)
    limiter = PortalLimiter(None, 480.0, clock=clock, wall=clock, sleep=clock.sleep)
    reset_at = clock.now + 250
    limiter.observe("tasks.task.list", 478.0, reset_at)
    with caplog.at_level(logging.INFO, logger="bitrix24_source.client.limits"):
        waited = limiter.before_request([BATCH_METHOD, "tasks.task.list"])
    assert waited == pytest.approx(251.0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "operating budget nearly used: waiting 251 s before calling batch, tasks.task.list: "
        f"tasks.task.list used 478.0 of 480 s operating time per 10 minutes, resets at {_utc_clock_text(reset_at)}"
    ]
    # slept in slices, each followed by a line with the time left: a long wait is never silent
    assert clock.slept == pytest.approx([60.0, 60.0, 60.0, 60.0, 11.0])
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos[0] == "still waiting 191 s for the operating budget of tasks.task.list"
    assert len(infos) == 4


def test_a_short_adaptive_delay_is_not_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(1_700_000_000.0)
    limiter = PortalLimiter(None, 480.0, clock=clock, wall=clock, sleep=clock.sleep)
    limiter.observe("crm.item.list", 400.0, clock.now + 300)  # above 80 %: a 3 s adaptive delay
    with caplog.at_level(logging.DEBUG, logger="bitrix24_source.client.limits"):
        assert limiter.before_request(["crm.item.list"]) == pytest.approx(3.0)
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]


def test_a_batch_billed_to_the_method_batch_holds_the_next_batch_only() -> None:
    # b24jssdk PR #539: the portal billed the batch to `batch`; the methods inside it stayed at 0
    clock = FakeClock(1_700_000_000.0)
    limiter = PortalLimiter(None, 480.0, clock=clock, wall=clock, sleep=clock.sleep)
    limiter.observe(BATCH_METHOD, 479.0, clock.now + 100)
    limiter.observe("tasks.task.list", 0.0, clock.now + 100)
    assert limiter.before_request(["tasks.task.list"]) == 0.0  # a single call is not held up
    assert limiter.before_request([BATCH_METHOD, "tasks.task.list"]) == pytest.approx(101.0)


def test_a_batch_billed_to_the_methods_inside_it_holds_the_next_batch() -> None:
    # the docs (§6.1): the outer batch is not charged, its nested calls are charged to their own methods
    clock = FakeClock(1_700_000_000.0)
    limiter = PortalLimiter(None, 480.0, clock=clock, wall=clock, sleep=clock.sleep)
    limiter.observe(BATCH_METHOD, 0.0, clock.now + 100)
    limiter.observe("crm.item.list", 479.0, clock.now + 100)
    assert limiter.before_request([BATCH_METHOD, "crm.item.list"]) == pytest.approx(101.0)
    clock.now += 1
    assert limiter.before_request([BATCH_METHOD, "user.get"]) == 0.0


def test_a_refusal_warns_with_the_method_and_its_reset(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(1_700_000_000.0)
    budget = OperatingBudget(480.0, wall=clock, sleep=clock.sleep)
    budget.observe("crm.deal.list", 470.0, clock.now + 120)
    with caplog.at_level(logging.WARNING, logger="bitrix24_source.client.limits"):
        assert budget.blocked_wait("crm.deal.list", minimum=10.0) == pytest.approx(121.0)
        assert budget.blocked_wait("user.get", minimum=3.0) == 3.0  # short: no warning
    assert [r.getMessage() for r in caplog.records] == [
        "portal refused crm.deal.list: operating-time limit reached (429 OPERATION_TIME_LIMIT); waiting 121 s: "
        f"crm.deal.list used 470.0 of 480 s operating time per 10 minutes, resets at {_utc_clock_text(clock.now + 120)}"
    ]
