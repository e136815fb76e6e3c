"""The retry pieces on their own (§6.6): which failures may be resent, how long to wait, what a failure means."""

from __future__ import annotations

from typing import Any

import pytest
from tenacity import RetryCallState, Retrying

from bitrix24_source.client.commands import Command, CommandResult, result_ref
from bitrix24_source.client.limits import PortalLimiter, RateLimit
from bitrix24_source.client.result import StatsCounter
from bitrix24_source.client.retry import (
    RetryPolicy,
    limit_refused,
    may_resend,
    operating_limit_wait,
    outcome_of,
    retrying,
    wait_for_portal,
)
from bitrix24_source.errors import (
    ApiError,
    Bitrix24Error,
    RateLimitError,
    ServerError,
    TransportError,
    error_from_response,
)

POLICY = RetryPolicy(max_attempts=4, backoff_503=1.0, backoff_factor=2.0, backoff_error=0.5, max_backoff=3.0)


def _error(status: int, code: str) -> Bitrix24Error:
    error = error_from_response(status, {"error": code, "error_description": "x"}, method="crm.item.add")
    assert error is not None
    return error


def _state(exc: BaseException, attempt: int) -> RetryCallState:
    state = RetryCallState(Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    state.set_exception((type(exc), exc, None))
    return state


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("error", "idempotent", "expected"),
    [
        (_error(503, "QUERY_LIMIT_EXCEEDED"), False, True),
        (_error(429, "OPERATION_TIME_LIMIT"), False, True),
        (TransportError("refused", code="CONNECTION_REFUSED", maybe_executed=False), False, True),
        (TransportError("timeout", code="TIMEOUT", maybe_executed=True), False, False),
        (TransportError("timeout", code="TIMEOUT", maybe_executed=True), True, True),
        (TransportError("bad certificate", code="TLS_ERROR", maybe_executed=False), True, False),
        (_error(500, "INTERNAL_SERVER_ERROR"), False, False),
        (_error(500, "INTERNAL_SERVER_ERROR"), True, True),
        (_error(400, "ERROR_CORE"), True, False),
    ],
)
def test_only_what_certainly_did_not_run_or_is_idempotent_is_resent(
    error: Bitrix24Error, idempotent: bool, expected: bool
) -> None:
    assert may_resend(error, idempotent=idempotent) is expected


def test_a_503_backs_off_by_the_factor_and_marks_the_shared_bucket_full() -> None:
    clock = _Clock()
    limiter = PortalLimiter(RateLimit(50, 2.0), None, clock=clock, sleep=lambda _: None)
    stats = StatsCounter()
    wait = wait_for_portal(POLICY, limiter, ["crm.item.list"], stats)
    refused = _error(503, "QUERY_LIMIT_EXCEEDED")
    assert [wait(_state(refused, n)) for n in (1, 2, 3)] == [1.0, 2.0, 3.0]  # the third is capped
    assert limiter.bucket is not None and limiter.bucket.level() == 50.0
    assert stats.snapshot.rejected_503 == 3


def test_other_failures_double_their_backoff() -> None:
    wait = wait_for_portal(POLICY, PortalLimiter(None, None), ["crm.item.list"], StatsCounter())
    broken = TransportError("reset", code="CONNECTION_ERROR", maybe_executed=True)
    assert [wait(_state(broken, n)) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]


def test_a_429_waits_for_the_latest_reset_once_and_blocks_the_methods_for_other_threads() -> None:
    clock = _Clock()
    limiter = PortalLimiter(None, 480.0, wall=clock, sleep=lambda _: None)
    assert limiter.budget is not None
    limiter.budget.observe("crm.item.add", 479.0, clock.now + 40.0)
    limiter.budget.observe("crm.item.update", 479.0, clock.now + 90.0)
    policy = RetryPolicy(min_wait_429=10.0, max_wait_429=660.0)
    stats = StatsCounter()
    wait = wait_for_portal(policy, limiter, ["crm.item.add", "crm.item.update"], stats)
    assert wait(_state(_error(429, "OPERATION_TIME_LIMIT"), 1)) == 91.0
    assert stats.snapshot.rejected_429 == 1
    # Another thread now pre-waits for both methods instead of running into the same 429.
    assert limiter.budget.wait_time(["crm.item.add"]) > 0
    assert limiter.budget.wait_time(["crm.item.update"]) > 0


def test_the_429_wait_is_at_least_the_minimum_and_at_most_the_cap() -> None:
    policy = RetryPolicy(min_wait_429=10.0, max_wait_429=30.0)
    assert operating_limit_wait(policy, None, ["crm.item.add"]) == 10.0
    clock = _Clock()
    limiter = PortalLimiter(None, 480.0, wall=clock, sleep=lambda _: None)
    assert limiter.budget is not None
    limiter.budget.observe("crm.item.add", 479.0, clock.now + 600.0)
    assert operating_limit_wait(policy, limiter.budget, ["crm.item.add"]) == 30.0


def test_the_loop_resends_a_read_after_a_5xx_but_raises_a_write_at_once() -> None:
    def run(idempotent: bool) -> tuple[int, BaseException | None]:
        calls = 0

        def attempt() -> Any:
            nonlocal calls
            calls += 1
            raise ServerError("down", code="INTERNAL_SERVER_ERROR", http_status=500)

        loop = retrying(
            POLICY,
            idempotent=idempotent,
            wait=lambda _: 0.0,
            before_sleep=lambda _: None,
            sleep=lambda _: None,
        )
        try:
            loop(attempt)
        except ServerError as exc:
            return calls, exc
        return calls, None

    reads, read_error = run(True)
    writes, write_error = run(False)
    assert (reads, writes) == (POLICY.max_attempts, 1)
    assert isinstance(read_error, ServerError) and isinstance(write_error, ServerError)


@pytest.mark.parametrize(
    ("error", "idempotent", "expected"),
    [
        (_error(503, "QUERY_LIMIT_EXCEEDED"), False, "not_executed"),
        (_error(401, "NO_AUTH_FOUND"), False, "not_executed"),
        (TransportError("refused", code="CONNECTION_REFUSED", maybe_executed=False), False, "not_executed"),
        (TransportError("timeout", code="TIMEOUT", maybe_executed=True), False, "unknown"),
        (TransportError("timeout", code="TIMEOUT", maybe_executed=True), True, "error"),
        (_error(500, "INTERNAL_SERVER_ERROR"), False, "unknown"),
        (_error(400, "ERROR_CORE"), False, "error"),
    ],
)
def test_a_failed_request_is_unknown_only_for_writes_that_may_have_run(
    error: Bitrix24Error, idempotent: bool, expected: str
) -> None:
    assert outcome_of(error, idempotent) == expected


def _refused(c: Command) -> CommandResult:
    error = RateLimitError("limit", code="OPERATION_TIME_LIMIT", http_status=200, method=c.method)
    return CommandResult(c.key, c.index, c.method, ok=False, error=error, outcome="error")


def _ok(c: Command) -> CommandResult:
    return CommandResult(c.key, c.index, c.method, ok=True, result=1)


def test_limit_refused_commands_are_resent_unless_they_reference_a_command_left_behind() -> None:
    a = Command("crm.item.get", {"id": 1}, key="a", index=0)
    b = Command("crm.item.get", {"id": 2}, key="b", index=1)
    c = Command("crm.item.get", {"id": result_ref("a", "item", "id")}, key="c", index=2)
    d = Command("crm.item.get", {"id": result_ref("b", "item", "id")}, key="d", index=3)
    segment = [a, b, c, d]
    # Without halt: b and d were refused; d references b, which is resent with it.
    assert limit_refused(segment, [_ok(a), _refused(b), _ok(c), _refused(d)], halt=False) == [b, d]
    # c references a, which ran and is not resent: its $result would no longer resolve.
    assert limit_refused(segment, [_ok(a), _ok(b), _refused(c), _ok(d)], halt=False) == []
    # With halt, everything from the first refusal on did not run and is resent as one run.
    halted = [_ok(a), _refused(b)] + [
        CommandResult(x.key, x.index, x.method, ok=False, outcome="not_executed") for x in (c, d)
    ]
    assert limit_refused(segment, halted, halt=True) == []  # c needs a
    assert limit_refused([b, d], [_refused(b), halted[3]], halt=True) == [b, d]


def test_an_api_error_is_not_a_limit_refusal() -> None:
    a = Command("crm.item.add", {}, key="a", index=0)
    failed = CommandResult(
        "a", 0, a.method, ok=False, error=ApiError("no", code="ACCESS_DENIED"), outcome="error"
    )
    assert limit_refused([a], [failed], halt=False) == []
