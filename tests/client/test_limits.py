"""The limiter against the sandbox's own bucket and operating meter (§6.1): the client waits instead of being
refused, shared by threads; without it the portal refuses."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from bitrix24_source.client import Bitrix24Client, RetryPolicy
from bitrix24_source.client.commands import result_ref
from bitrix24_source.client.limits import PortalLimiter, RateLimit, limiter_for
from bitrix24_source.sandbox import CostModel, Sandbox
from bitrix24_source.sandbox import RateLimit as SandboxRateLimit


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
