"""One logical request: the limiter's wait, the token and one transport send, inside the retry loop; I/O via transport.

Every request of a client, single call or batch, goes through :meth:`Sender.request`:

1. the shared limiter is waited on (:mod:`~bitrix24_source.client.limits`);
2. the auth gives the token to carry, refreshed first when known to be expired (:mod:`~bitrix24_source.client.auth`);
3. the transport sends once (:mod:`~bitrix24_source.client.transport`); a refused token is renewed once for all
   threads and the request sent once more within the same attempt (§6.2);
4. a failure that :mod:`~bitrix24_source.client.retry` allows to be resent starts the next attempt after its wait.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from tenacity import RetryCallState

from bitrix24_source.client.auth import Auth
from bitrix24_source.client.limits import PortalLimiter, WaitNotice
from bitrix24_source.client.result import StatsCounter
from bitrix24_source.client.retry import RetryPolicy, log_retry, retrying, wait_for_portal
from bitrix24_source.client.transport import Response, Transport
from bitrix24_source.errors import AuthError, Bitrix24Error

__all__ = ["Sender"]


class Sender:
    """Sends requests for one client with its limiter, auth and retry policy.

    Args:
        transport: sends one request once.
        auth: signs requests and renews refused tokens.
        policy: the retry policy.
        limiter: the shared per-portal limiter.
        stats: the client's counters.
        sleep: sleep function for retry waits.
    """

    def __init__(
        self,
        transport: Transport,
        auth: Auth,
        *,
        policy: RetryPolicy,
        limiter: PortalLimiter,
        stats: StatsCounter,
        sleep: Callable[[float], None],
    ) -> None:
        self.transport = transport
        self.auth = auth
        self.policy = policy
        self.limiter = limiter
        self.stats = stats
        self.sleep = sleep

    def request(
        self,
        version: int,
        method: str,
        body: Any,
        *,
        methods: Sequence[str],
        idempotent: bool,
        request_id: str,
        idempotency_key: str | None = None,
    ) -> Response:
        """Send ``body`` to ``method`` with the limiter in front and the §6.6 retry policy around it.

        Args:
            version: 2 or 3.
            method: the REST method (``batch`` for a batch).
            body: the JSON-able body.
            methods: the methods the request runs (a batch's commands), for the limiter's operating budget.
            idempotent: whether an ambiguous failure may be resent.
            request_id: sent with the request; appears in logs and errors.
            idempotency_key: the v3 ``Idempotency-Key`` header (§1.6).

        Raises:
            Bitrix24Error: the last attempt's error.
        """
        telemetry = not method.lower().startswith("task.")  # §1.1: legacy task.* read the query by position
        log = log_retry(method, request_id, self.stats)

        def before_sleep(retry_state: RetryCallState) -> None:
            log(retry_state)
            seconds = retry_state.next_action.sleep if retry_state.next_action else 0.0
            if seconds > self.limiter.warn_after:
                exc = retry_state.outcome.exception() if retry_state.outcome else None
                self.limiter.announce(WaitNotice(seconds, f"{method} refused ({_refusal(exc)}), retrying"))

        loop = retrying(
            self.policy,
            idempotent=idempotent,
            wait=wait_for_portal(self.policy, self.limiter, methods, self.stats),
            before_sleep=before_sleep,
            sleep=self.sleep,
        )
        send = functools.partial(
            self.transport.send,
            version,
            method,
            body,
            request_id,
            auth=self.auth,
            telemetry=telemetry,
            idempotency_key=idempotency_key,
        )
        response: Response = loop(self._attempt, send, methods)
        return response

    def _attempt(self, send: Callable[[], Response], methods: Sequence[str]) -> Response:
        self._wait_for_limiter(methods)
        token = self.auth.fresh_token()
        try:
            return send()
        except AuthError as exc:
            if not self.auth.renew_after(exc, token):
                raise
            # §6.2: the token was refreshed (once for all threads); the resend is a request too.
            self._wait_for_limiter(methods)
            return send()

    def _wait_for_limiter(self, methods: Sequence[str]) -> None:
        waited = self.limiter.before_request(methods)
        if waited:
            self.stats.add(waited_seconds=waited)

    def wait_after_refusal(self, seconds: float) -> None:
        """Sleep before resending commands a batch had refused on a limit, counted as a retry."""
        self.stats.add(retries=1, waited_seconds=seconds)
        if seconds > self.limiter.warn_after:
            self.limiter.announce(WaitNotice(seconds, "batch commands refused on a limit, resending"))
        self.sleep(seconds)


def _refusal(exc: BaseException | None) -> str:
    """A refusal's HTTP status and code for a progress line (``429 OPERATION_TIME_LIMIT``)."""
    if isinstance(exc, Bitrix24Error):
        parts = [str(part) for part in (exc.http_status, exc.code) if part]
        if parts:
            return " ".join(parts)
    return type(exc).__name__
