"""The retry policy of §6.6 as tenacity pieces, and what a failed request means for its commands; no I/O.

Everything that decides "may this be sent again, and when" lives here, so the rules can be read in one place:

* retried: what certainly did not execute (503 ``QUERY_LIMIT_EXCEEDED`` with backoff, 429
  ``OPERATION_TIME_LIMIT`` after waiting for the method's reset, connection refused), and reads after 5xx,
  timeouts, resets and truncated answers (:func:`may_resend`, :class:`retry_if_resendable`);
* never resent blindly: a write whose request ended ambiguously (timeout, reset, 5xx, truncated answer). A call
  raises the error; a batch reports those commands with ``outcome="unknown"`` (:func:`outcome_of`,
  :func:`batch_failure_outcome`) so the caller can verify and resume;
* inside a v2 batch, commands the portal refused on a limit did not run and are resent as a smaller batch when
  nothing outside the resent set is referenced (:func:`limit_refused`).

The waits (:func:`backoff_after_503`, :func:`backoff_after_error`, :func:`operating_limit_wait`) are plain
functions; :class:`wait_for_portal` and :class:`log_retry` plug them into tenacity (the sleeping itself is the
caller's injected ``sleep``), as dlt's ``sources/helpers/requests/retry.py`` does. The tenacity pieces are named
in lower case like tenacity's own (``retry_if_exception``, ``wait_exponential``), so they read alike in a
``Retrying(...)`` call.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_base

from bitrix24_source.client.commands import Command, CommandResult, Outcome, iter_result_refs
from bitrix24_source.client.limits import OperatingBudget, PortalLimiter
from bitrix24_source.client.result import StatsCounter
from bitrix24_source.errors import (
    ApiError,
    AuthError,
    Bitrix24Error,
    MaskingFilter,
    RateLimitError,
    ServerError,
    TransportError,
)

__all__ = [
    "RetryPolicy",
    "backoff_after_503",
    "backoff_after_error",
    "batch_failure_outcome",
    "is_limit_refusal",
    "is_operating_limit",
    "limit_refused",
    "log_retry",
    "mark_limit_refused",
    "may_resend",
    "operating_limit_wait",
    "outcome_of",
    "retry_if_resendable",
    "retrying",
    "wait_for_portal",
]

logger = logging.getLogger(__name__)
logger.addFilter(MaskingFilter())

_LIMIT_CODES = frozenset({"OPERATION_TIME_LIMIT", "QUERY_LIMIT_EXCEEDED", "OVERLOAD_LIMIT"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry (§6.2, §6.6).

    Attributes:
        max_attempts: attempts per request in total (first try included).
        backoff_503: first wait after a 503; multiplied by ``backoff_factor`` per further attempt.
        backoff_factor: growth of the 503 backoff (b24jssdk: 1.5).
        backoff_error: first wait before retrying a read after a 5xx/timeout/reset; doubles per attempt.
        max_backoff: cap of any single backoff.
        min_wait_429: minimum wait after 429 OPERATION_TIME_LIMIT (§6.6: at least 10 s).
        max_wait_429: cap of the wait after a 429.
    """

    max_attempts: int = 5
    backoff_503: float = 1.5
    backoff_factor: float = 1.5
    backoff_error: float = 1.0
    max_backoff: float = 30.0
    min_wait_429: float = 10.0
    max_wait_429: float = 660.0


# ---------------------------------------------------------------------------------------------------------------
# Conditions: may a failed request be sent again?


def is_operating_limit(exc: BaseException | None) -> bool:
    """True for a 429 ``OPERATION_TIME_LIMIT``: the method's operating budget is used up until its reset (§6.1)."""
    return isinstance(exc, RateLimitError) and (
        exc.http_status == 429 or exc.code.upper() == "OPERATION_TIME_LIMIT"
    )


def may_resend(exc: BaseException, *, idempotent: bool) -> bool:
    """True when a request that failed with ``exc`` may be sent again (§6.6).

    A limit refusal ran nothing; a transport failure is safe when the request never left (``maybe_executed``
    False) or the request is idempotent; a 5xx only for idempotent requests. A TLS certificate problem does not
    fix itself, and any other error is the portal's final answer.
    """
    if isinstance(exc, RateLimitError):
        return True
    if isinstance(exc, TransportError):
        if exc.code == "TLS_ERROR":
            return False
        return not exc.maybe_executed or idempotent
    if isinstance(exc, ServerError):
        return idempotent
    return False


class retry_if_resendable(retry_if_exception):
    """tenacity condition: retry when :func:`may_resend` allows it for this request."""

    def __init__(self, *, idempotent: bool) -> None:
        super().__init__(functools.partial(may_resend, idempotent=idempotent))


# ---------------------------------------------------------------------------------------------------------------
# Waits


def backoff_after_503(policy: RetryPolicy, attempt: int) -> float:
    """Seconds before attempt ``attempt + 1`` after a 503 ``QUERY_LIMIT_EXCEEDED``: grows by ``backoff_factor``."""
    return float(min(policy.backoff_503 * policy.backoff_factor ** (attempt - 1), policy.max_backoff))


def backoff_after_error(policy: RetryPolicy, attempt: int) -> float:
    """Seconds before attempt ``attempt + 1`` after a 5xx, timeout or reset: doubles per attempt."""
    return float(min(policy.backoff_error * 2 ** (attempt - 1), policy.max_backoff))


def operating_limit_wait(
    policy: RetryPolicy, budget: OperatingBudget | None, methods: Sequence[str]
) -> float:
    """Seconds to wait after a 429 ``OPERATION_TIME_LIMIT`` for ``methods``: until the latest reset among them.

    Asking the budget also blocks those methods for other threads until then (:meth:`OperatingBudget.blocked_wait`),
    so this is computed once per refusal. Without a budget the wait is the policy's minimum.
    """
    seconds = (
        max(budget.blocked_wait(m, minimum=policy.min_wait_429) for m in methods)
        if budget is not None and methods
        else policy.min_wait_429
    )
    return float(min(seconds, policy.max_wait_429))


class wait_for_portal(wait_base):
    """tenacity wait: how long to wait before resending a request for ``methods`` after its last failure.

    A 429 waits for the methods' operating reset (:func:`operating_limit_wait`); a 503 marks the shared bucket full
    and backs off (:func:`backoff_after_503`); anything else backs off exponentially (:func:`backoff_after_error`).
    Each refusal is counted in the client's stats.
    """

    def __init__(
        self, policy: RetryPolicy, limiter: PortalLimiter, methods: Sequence[str], stats: StatsCounter
    ) -> None:
        self.policy = policy
        self.limiter = limiter
        self.methods = methods
        self.stats = stats

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if is_operating_limit(exc):
            self.stats.add(rejected_429=1)
            return operating_limit_wait(self.policy, self.limiter.budget, self.methods)
        if isinstance(exc, RateLimitError):
            self.stats.add(rejected_503=1)
            if self.limiter.bucket is not None:
                self.limiter.bucket.on_rejected()
            return backoff_after_503(self.policy, retry_state.attempt_number)
        return backoff_after_error(self.policy, retry_state.attempt_number)


class log_retry:
    """tenacity ``before_sleep`` hook: count the retry and its wait, and log it with the request id."""

    def __init__(self, method: str, request_id: str, stats: StatsCounter) -> None:
        self.method = method
        self.request_id = request_id
        self.stats = stats

    def __call__(self, retry_state: RetryCallState) -> None:
        seconds = retry_state.next_action.sleep if retry_state.next_action else 0.0
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        self.stats.add(retries=1, waited_seconds=seconds)
        logger.warning(
            "%s [request_id=%s] attempt %d failed (%s); retrying in %.2f s",
            self.method,
            self.request_id,
            retry_state.attempt_number,
            exc,
            seconds,
        )


def retrying(
    policy: RetryPolicy,
    *,
    idempotent: bool,
    wait: Callable[[RetryCallState], float],
    before_sleep: Callable[[RetryCallState], None],
    sleep: Callable[[float], None],
) -> Retrying:
    """The tenacity loop for one request: at most ``policy.max_attempts`` tries, resending what may be resent."""
    return Retrying(
        stop=stop_after_attempt(max(1, policy.max_attempts)),
        wait=wait,
        retry=retry_if_resendable(idempotent=idempotent),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )


# ---------------------------------------------------------------------------------------------------------------
# Outcomes: what a failure means for the commands it carried


def outcome_of(exc: Bitrix24Error, idempotent: bool) -> Outcome:
    """What a whole-request failure means for each command in it (§6.6)."""
    if isinstance(exc, (RateLimitError, AuthError)):
        return "not_executed"
    if isinstance(exc, TransportError):
        if not exc.maybe_executed:
            return "not_executed"
        return "error" if idempotent else "unknown"
    if isinstance(exc, ServerError):
        return "error" if idempotent else "unknown"
    return "error"


def batch_failure_outcome(exc: Bitrix24Error, idempotent: bool, version: int) -> Outcome:
    """What a batch that failed as a whole means for each of its commands."""
    outcome = outcome_of(exc, idempotent)
    if version == 3 and not idempotent and isinstance(exc, ApiError):
        # §5.6: a failing command fails the whole v3 batch, and the answer does not say which one failed;
        # commands before it may have been applied (nothing documents a rollback), so writes are unknown for
        # the caller to verify. A command's own error may also be an access or scope error with HTTP 401/403
        # (§2.3, §9.3), which is not a refusal of the request: the BITRIX_REST_V3_ code tells them apart.
        command_level = exc.code.upper().startswith("BITRIX_REST_V3_")
        if command_level or (outcome == "error" and type(exc) is ApiError):
            return "unknown"
    return outcome


def is_limit_refusal(result: CommandResult) -> bool:
    """True when the portal refused this batch command on a limit (§6.1): it did not run."""
    return (
        result.outcome == "error" and result.error is not None and result.error.code.upper() in _LIMIT_CODES
    )


def limit_refused(segment: Sequence[Command], results: Sequence[CommandResult], halt: bool) -> list[Command]:
    """Commands of a v2 batch that the portal refused on a limit and that can be resent safely.

    With halt, everything from the first refused command on did not run. Commands are resent only if none of
    them references a command outside the resent set (its ``$result`` would no longer resolve).
    """
    if halt:
        first = next((i for i, r in enumerate(results) if is_limit_refusal(r)), None)
        if first is None or any(r.outcome not in ("not_executed",) for r in results[first + 1 :]):
            return []
        redo = list(segment[first:])
    else:
        redo = [c for c, r in zip(segment, results, strict=True) if is_limit_refusal(r)]
    keys = {c.key for c in redo}
    by_index = {c.index: c for c in segment}
    for c in redo:
        for target in (r.target for r in iter_result_refs(c.params)):
            key = by_index[target].key if isinstance(target, int) and target in by_index else str(target)
            if key not in keys:
                return []
    return redo


def mark_limit_refused(result: CommandResult) -> CommandResult:
    """A command refused on a limit did not run: report it as ``not_executed`` (its error is kept)."""
    return replace(result, outcome="not_executed") if is_limit_refusal(result) else result
