"""Leaky bucket (503) and operating-time baskets (429), §6.1. Clocks are fakes: no timed assertions."""

from __future__ import annotations

import pytest
import requests

from bitrix24_source.sandbox import RateLimit, Sandbox
from bitrix24_source.sandbox.limits import LeakyBucket, OperatingMeter

from .conftest import StandInState


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- pure ----------------------------------------------------------------------------------------------


def test_bucket_refuses_above_burst_and_drains() -> None:
    clock = FakeClock()
    bucket = LeakyBucket(RateLimit(burst=5, drain=2.0), clock=clock)
    assert [bucket.admit("a") for _ in range(6)] == [True] * 5 + [False]
    assert bucket.admit("b") is True  # per client IP
    clock.now += 0.5  # drains one request
    assert bucket.admit("a") is True
    assert bucket.admit("a") is False
    clock.now += 10
    assert bucket.level("a") == 0.0


def test_operating_is_checked_before_the_call() -> None:
    clock = FakeClock()
    meter = OperatingMeter(1.0, basket_seconds=60, clock=clock, wall_clock=lambda: 5000.0)
    assert meter.blocked("w", "m") is False
    meter.charge("w", "m", 0.9)
    assert meter.blocked("w", "m") is False
    reading = meter.charge("w", "m", 0.5)  # this call pushes the sum over the limit and still completes
    assert reading.operating == pytest.approx(1.4)
    assert meter.blocked("w", "m") is True  # the next one is refused
    assert meter.blocked("w", "other") is False  # other methods are unaffected
    assert meter.blocked("oauth", "m") is False  # and so are other apps


def test_operating_baskets_expire_after_the_window() -> None:
    clock = FakeClock()
    meter = OperatingMeter(
        1.0, basket_seconds=60, baskets=10, clock=clock, wall_clock=lambda: 5000.0 + clock.now
    )
    first = meter.charge("w", "m", 0.7)
    assert first.reset_at == int(5000.0 + 1000.0 + 600)  # oldest basket + 10 minutes
    clock.now += 120
    second = meter.charge("w", "m", 0.7)
    assert second.operating == pytest.approx(1.4) and second.reset_at == first.reset_at
    assert meter.blocked("w", "m") is True
    clock.now += 481  # the first basket is now older than the window
    assert meter.blocked("w", "m") is False
    assert meter.read("w", "m").operating == pytest.approx(0.7)
    assert meter.totals() == {"m": pytest.approx(0.7)}


def test_no_limit_never_blocks_but_still_reports() -> None:
    meter = OperatingMeter(None)
    meter.charge("w", "m", 1000.0)
    assert meter.blocked("w", "m") is False
    assert meter.read("w", "m").operating == 1000.0


# --- over HTTP ------------------------------------------------------------------------------------------


def test_bucket_over_http_counts_a_batch_as_one() -> None:
    # Drain so slow that nothing leaks out during the test: the outcome does not depend on timing.
    with (
        Sandbox(state=StandInState(), rate_limit=RateLimit(burst=3, drain=0.0001)) as portal,
        requests.Session() as s,
    ):
        batch = {"cmd": {f"c{i}": "server.time" for i in range(10)}}
        statuses = [s.post(portal.webhook_url + "batch", json=batch).status_code for _ in range(3)]
        refused = s.post(portal.webhook_url + "server.time", json={})
        assert statuses == [200, 200, 200]
        assert refused.status_code == 503
        assert refused.json() == {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
        stats = portal.stats()
        assert stats.rejected_503 == 1 and stats.by_method["server.time"] == 30


def test_bucket_drain_over_http_with_fake_clock() -> None:
    clock = FakeClock()
    with (
        Sandbox(state=StandInState(), rate_limit=RateLimit(burst=2, drain=1.0)) as portal,
        requests.Session() as s,
    ):
        portal.bucket = LeakyBucket(RateLimit(burst=2, drain=1.0), clock=clock)
        codes = [s.post(portal.webhook_url + "server.time", json={}).status_code for _ in range(3)]
        clock.now += 1.0
        codes.append(s.post(portal.webhook_url + "server.time", json={}).status_code)
        assert codes == [200, 200, 503, 200]


def test_operating_limit_over_http_single_calls() -> None:
    state = StandInState(cost=0.4)
    with Sandbox(state=state, operating_limit=1.0) as portal, requests.Session() as s:
        url = portal.webhook_url + "crm.lead.list"
        bodies = [s.post(url, json={}) for _ in range(4)]
        assert [b.status_code for b in bodies] == [200, 200, 200, 429]
        assert [b.json()["time"]["operating"] for b in bodies[:3]] == pytest.approx([0.4, 0.8, 1.2])
        assert bodies[3].json() == {
            "error": "OPERATION_TIME_LIMIT",
            "error_description": "Method is blocked due to operation time limit.",
        }
        assert s.post(portal.webhook_url + "server.time", json={}).status_code == 200
        assert portal.stats().rejected_429 == 1
        # v3 path shares the limiter; the error keeps the v2 envelope (§2.3).
        blocked_v3 = s.post(portal.webhook_url_v3 + "crm.lead.list", json={})
        assert blocked_v3.status_code == 429 and blocked_v3.json()["error"] == "OPERATION_TIME_LIMIT"


def test_operating_limit_inside_a_batch_is_per_command() -> None:
    state = StandInState(cost=0.4)
    with Sandbox(state=state, operating_limit=1.0) as portal, requests.Session() as s:
        cmd = {f"p{i}": "crm.lead.list" for i in range(5)} | {"t": "server.time"}
        r = s.post(portal.webhook_url + "batch", json={"halt": 0, "cmd": cmd})
        assert r.status_code == 200
        result = r.json()["result"]
        assert list(result["result"]) == ["p0", "p1", "p2", "t"]
        assert set(result["result_error"]) == {"p3", "p4"}
        assert result["result_error"]["p3"]["error"] == "OPERATION_TIME_LIMIT"
        assert portal.stats().rejected_429 == 2


def test_operating_window_passes_with_short_baskets() -> None:
    clock = FakeClock()
    with Sandbox(state=StandInState(cost=0.6), operating_limit=1.0, operating_basket_seconds=0.1) as portal:
        portal.operating = OperatingMeter(1.0, basket_seconds=0.1, clock=clock)
        with requests.Session() as s:
            url = portal.webhook_url + "server.time"
            codes = [s.post(url, json={}).status_code for _ in range(3)]
            clock.now += 1.0  # ten baskets of 0.1 s have passed
            codes.append(s.post(url, json={}).status_code)
        assert codes == [200, 200, 429, 200]
