"""The limiter against the sandbox's own bucket and operating meter (§6.1): the client waits instead of being
refused, shared by threads; without it the portal refuses."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest
import requests

from bitrix24_source.client import Bitrix24Client, RetryPolicy
from bitrix24_source.client.commands import result_ref
from bitrix24_source.client.limits import BATCH_METHOD, PortalLimiter, RateLimit, WaitNotice, limiter_for
from bitrix24_source.sandbox import CostModel, Sandbox
from bitrix24_source.sandbox import RateLimit as SandboxRateLimit
from tests.unit.test_limiter import FakeClock


def _tiny(**limits: Any) -> Sandbox:
    """A portal with a handful of rows and its own limits, for tests that exhaust them."""
    return Sandbox(seed=2, deals=5, leads=1, contacts=1, companies=1, users=2, tasks=1, **limits)


def _metered() -> Sandbox:
    return _tiny(operating_limit=0.5, operating_basket_seconds=0.1, cost_model=CostModel(base=0.2))


def test_threads_share_one_bucket_and_never_overflow_the_portal(
    make_client: Callable[..., Bitrix24Client],
) -> None:
    with _tiny(rate_limit=SandboxRateLimit(burst=8, drain=40.0)) as limited:
        clients = [
            make_client(webhook_url=limited.webhook_url, rate_limit=RateLimit(8, 40.0)) for _ in range(3)
        ]
        assert clients[0].limiter is clients[1].limiter is clients[2].limiter
        errors: list[Exception] = []

        def worker(c: Bitrix24Client) -> None:
            try:
                for _ in range(10):
                    c.call("user.current")
            except Exception as exc:  # collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(clients[i % 3],)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        stats = limited.stats()
        assert stats.rejected_503 == 0 and stats.by_method["user.current"] == 60
        assert sum(c.stats.rejected_503 for c in clients) == 0
        assert sum(c.stats.waited_seconds for c in clients) > 0


def test_without_the_client_bucket_the_portal_refuses_and_the_client_recovers(
    make_client: Callable[..., Bitrix24Client],
) -> None:
    # A slow drain (1/s) against back-to-back calls: the portal must refuse some; each 503 is retried after
    # a backoff longer than one drain step, so every call still succeeds.
    with _tiny(rate_limit=SandboxRateLimit(burst=2, drain=1.0)) as limited:
        c = make_client(
            webhook_url=limited.webhook_url,
            limiter=PortalLimiter(None, None),
            retry=RetryPolicy(max_attempts=4, backoff_503=1.1, backoff_factor=1.0),
        )
        for _ in range(4):
            c.call("user.current")
        assert limited.stats().rejected_503 > 0 and c.stats.rejected_503 == limited.stats().rejected_503
        assert limited.stats().by_method["user.current"] == 4


def test_operating_budget_waits_before_the_portal_would_block(
    make_client: Callable[..., Bitrix24Client],
) -> None:
    with _metered() as metered:
        c = make_client(webhook_url=metered.webhook_url, limiter=PortalLimiter(None, 0.5))
        for _ in range(6):
            c.call("user.current")
        assert metered.stats().rejected_429 == 0
        assert c.stats.waited_seconds > 0 and c.stats.rejected_429 == 0


def test_batch_commands_feed_their_own_methods_budget(make_client: Callable[..., Bitrix24Client]) -> None:
    with _tiny(operating_limit=100.0, cost_model=CostModel(base=0.25)) as metered:
        limiter = PortalLimiter(None, 100.0)
        c = make_client(webhook_url=metered.webhook_url, limiter=limiter)
        c.batch([("user.current", {}), ("user.current", {}), ("server.time", {})])
        assert limiter.budget is not None
        assert limiter.budget.operating("user.current") == metered.stats().operating["user.current"]
        assert limiter.budget.operating("server.time") > 0 and limiter.budget.operating("batch") == 0


def test_enterprise_preset_and_shared_registry(portal: Sandbox) -> None:
    a = Bitrix24Client(portal.webhook_url, rate_limit="enterprise")
    assert a.limiter.bucket is not None and a.limiter.bucket.rate == RateLimit(250, 5.0)
    b = Bitrix24Client(portal.webhook_url, rate_limit="enterprise")
    assert a.limiter is b.limiter
    assert limiter_for(portal.base_url.split("//")[1] + "|user1", RateLimit(250, 5.0), 480.0) is a.limiter


@pytest.mark.parametrize("halt", [True, False])
def test_commands_refused_on_the_operating_limit_are_resent(
    make_client: Callable[..., Bitrix24Client], halt: bool
) -> None:
    with _metered() as metered:
        # The client's own budget is set high so that it does not pre-wait: the portal refuses inside the batch.
        c = make_client(webhook_url=metered.webhook_url, limiter=PortalLimiter(None, 100.0))
        result = c.batch([("user.current", {})] * 4 + [("server.time", {})], halt_on_error=halt)
        assert result.is_success, result.error_messages
        assert metered.stats().rejected_429 >= 1 and c.stats.rejected_429 >= 1
        assert metered.stats().by_method["user.current"] == 4


def test_refused_commands_with_outside_references_are_not_resent(
    make_client: Callable[..., Bitrix24Client],
) -> None:
    with _metered() as metered:
        c = make_client(webhook_url=metered.webhook_url, limiter=PortalLimiter(None, 100.0))
        calls = [("user.current", {})] * 4 + [("user.get", {"ID": result_ref(0, "ID")})]
        calls[3] = ("user.current", {"x": result_ref(0, "ID")})
        result = c.batch(calls, halt_on_error=True)
        assert [r.outcome for r in result.results][:3] == ["ok", "ok", "ok"]
        assert result[3].outcome == "not_executed" and result[3].error is not None
        assert result[3].error.code == "OPERATION_TIME_LIMIT"
        assert result[4].outcome == "not_executed"


def test_clients_of_one_portal_share_its_bucket_whatever_their_user_or_budget(portal: Sandbox) -> None:
    # §6.1: the portal counts every request from this machine in one bucket; the operating budget is per
    # webhook (or app), so that part stays separate.
    other_user = portal.webhook_url.replace("/rest/1/", "/rest/2/")
    a = Bitrix24Client(portal.webhook_url, rate_limit=RateLimit(50, 2.0))
    b = Bitrix24Client(other_user, rate_limit=RateLimit(50, 2.0))
    c = Bitrix24Client(portal.webhook_url, rate_limit=RateLimit(50, 2.0), operating_limit=None)
    assert a.limiter.bucket is not None and a.limiter.bucket is b.limiter.bucket is c.limiter.bucket
    assert a.limiter.budget is not None and b.limiter.budget is not None
    assert a.limiter.budget is not b.limiter.budget and c.limiter.budget is None


class _BatchBilledToBatch(requests.adapters.BaseAdapter):
    """A portal that bills a batch's operating time to the method `batch` (b24jssdk PR #539 measured this;
    the sandbox follows the docs, §6.1, and bills the methods inside). Every answer is a v3 list answer."""

    def __init__(self, clock: Any, batch_operating: float) -> None:
        super().__init__()
        self.clock = clock
        self.batch_operating = batch_operating
        self.paths: list[str] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        path = str(request.path_url)
        self.paths.append(path)
        is_batch = path.split("?")[0].rstrip("/").endswith("/batch")
        time = {
            "start": self.clock.now,
            "finish": self.clock.now,
            "duration": 0.01,
            "operating": self.batch_operating if is_batch else 0.0,
            "operating_reset_at": self.clock.now + 100,
        }
        result: Any = [{"items": []}] if is_batch else {"items": []}
        response = requests.Response()
        response.status_code = 200
        response._content = json.dumps({"result": result, "time": time}).encode()
        response.headers["Content-Type"] = "application/json"
        response.url = str(request.url)
        response.request = request
        return response

    def close(self) -> None:
        pass


def test_a_batch_billed_to_the_method_batch_holds_the_next_batch(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(1_700_000_000.0)
    adapter = _BatchBilledToBatch(clock, batch_operating=479.0)
    session = requests.Session()
    session.mount("http://127.0.0.1:9/", adapter)
    limiter = PortalLimiter(None, 480.0, clock=clock, wall=clock, sleep=clock.sleep)
    c = Bitrix24Client("http://127.0.0.1:9/rest/1/code/", session=session, limiter=limiter, sleep=clock.sleep)
    calls = {"t0": ("tasks.task.list", {"select": ["id"]})}
    c.batch(calls, version=3)
    assert limiter.budget is not None and limiter.budget.operating(BATCH_METHOD) == 479.0
    # a single call of the method inside is not held up: the portal billed `batch`, not it
    c.call("tasks.task.list", {"select": ["id"]}, version=3)
    assert clock.slept == []
    with caplog.at_level(logging.WARNING, logger="bitrix24_source.client.limits"):
        c.batch(calls, version=3)
    assert sum(clock.slept) == pytest.approx(101.0) and c.stats.waited_seconds == pytest.approx(101.0)
    assert len(adapter.paths) == 3
    [warning] = [r.getMessage() for r in caplog.records if r.name == "bitrix24_source.client.limits"]
    assert "waiting 101 s before calling batch, tasks.task.list" in warning
    assert "batch used 479.0 of 480 s operating time" in warning


def test_a_budget_used_up_by_another_client_makes_a_visible_wait(
    make_client: Callable[..., Bitrix24Client], caplog: pytest.LogCaptureFixture
) -> None:
    with _metered() as metered:
        limiter = PortalLimiter(None, 0.5)
        assert limiter.budget is not None
        # the sandbox's window is 1 s: every wait counts here
        limiter.budget.warn_after = limiter.warn_after = 0.0
        notices: list[WaitNotice] = []
        limiter.add_wait_listener(notices.append)
        limiter.add_wait_listener(notices.append)  # listeners are kept once
        c = make_client(
            webhook_url=metered.webhook_url,
            limiter=limiter,
            retry=RetryPolicy(max_attempts=3, min_wait_429=0.2, max_wait_429=2.0),
        )
        c.call("user.current")
        # another client of the same webhook, without a budget, uses up the method's operating time
        other = make_client(webhook_url=metered.webhook_url, limiter=PortalLimiter(None, None))
        other.call("user.current")
        other.call("user.current")
        with caplog.at_level(logging.WARNING, logger="bitrix24_source.client.limits"):
            c.call("user.current")
        assert metered.stats().rejected_429 >= 1 and c.stats.rejected_429 >= 1
        warnings = [r.getMessage() for r in caplog.records if r.name == "bitrix24_source.client.limits"]
        assert warnings and all("user.current" in w and "resets at" in w for w in warnings)
        assert any("429 OPERATION_TIME_LIMIT" in w for w in warnings)
        # the same waits reach the wait listeners (the source shows them in dlt's progress display)
        refusals = [
            n for n in notices if n.reason == "user.current refused (429 OPERATION_TIME_LIMIT), retrying"
        ]
        assert refusals and all(n.seconds >= 0.2 for n in refusals)
        assert refusals[0].describe().startswith(f"waiting {refusals[0].seconds:.0f} s: user.current refused")
        assert len(notices) == len({id(n) for n in notices})


def test_a_batch_waits_for_the_budget_of_the_methods_inside_it(
    make_client: Callable[..., Bitrix24Client],
) -> None:
    # the sandbox bills as the docs say (§6.1): the methods inside the batch, not `batch`
    with _metered() as metered:
        limiter = PortalLimiter(None, 0.5)
        c = make_client(webhook_url=metered.webhook_url, limiter=limiter)
        for _ in range(4):
            result = c.batch([("user.current", {})], halt_on_error=True)
            assert result.is_success, result.error_messages
        assert limiter.budget is not None and limiter.budget.operating(BATCH_METHOD) == 0.0
        assert metered.stats().rejected_429 == 0 and c.stats.waited_seconds > 0


def test_a_long_budget_wait_is_announced_when_it_starts_and_after_every_slice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(1_700_000_000.0)
    limiter = PortalLimiter(None, 480.0, clock=clock, wall=clock, sleep=clock.sleep)
    notices: list[WaitNotice] = []
    limiter.add_wait_listener(notices.append)
    limiter.observe("tasks.task.list", 478.0, clock.now + 150.0)
    with caplog.at_level(logging.WARNING, logger="bitrix24_source.client.limits"):
        waited = limiter.before_request(["tasks.task.list"])
    assert waited == pytest.approx(151.0) and sum(clock.slept) == pytest.approx(151.0)
    assert [round(n.seconds) for n in notices] == [151, 91, 31]
    assert [n.ongoing for n in notices] == [False, True, True]
    assert (
        notices[0]
        .describe()
        .startswith(
            "waiting 151 s: operating budget: tasks.task.list used 478.0 of 480 s operating time per 10 minutes"
        )
    )
    assert notices[1].describe().startswith("still waiting 91 s: operating budget: tasks.task.list")
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith("operating budget nearly used: waiting 151 s before calling tasks.task.list")


def test_a_full_request_bucket_makes_a_visible_wait(caplog: pytest.LogCaptureFixture) -> None:
    # after a 503 the bucket is taken as full; at 0.1 requests per second the next request waits 20 s
    clock = FakeClock()
    limiter = PortalLimiter(RateLimit(burst=5, drain=0.1), None, clock=clock, sleep=clock.sleep)
    notices: list[WaitNotice] = []
    limiter.add_wait_listener(notices.append)
    assert limiter.bucket is not None
    limiter.bucket.on_rejected()
    with caplog.at_level(logging.WARNING, logger="bitrix24_source.client.limits"):
        waited = limiter.before_request(["crm.item.list"])
    assert waited == pytest.approx(20.0) and clock.slept == [pytest.approx(20.0)]
    [warning] = [r.getMessage() for r in caplog.records]
    assert (
        warning == "request bucket full: waiting 20 s before calling crm.item.list (burst 5, drain 0.1 per s)"
    )
    assert [n.describe() for n in notices] == ["waiting 20 s: request bucket full (burst 5, drain 0.1 per s)"]
    # once the bucket has drained a request does not wait, and nothing is logged or announced
    clock.now += 100.0
    caplog.clear()
    assert limiter.before_request(["crm.item.list"]) == 0.0
    assert caplog.records == [] and len(notices) == 1
