"""``Bitrix24Client``, the facade of the client wing: calls, batches and list paging; I/O through its parts.

The client checks arguments, hands requests to its parts and shapes their answers into results:

* :mod:`~bitrix24_source.client.auth`: the webhook URL or OAuth tokens (refreshed once across threads);
* :mod:`~bitrix24_source.client.transport`: one pooled session, one request sent once (all network I/O);
* :mod:`~bitrix24_source.client.sender`: limiter → auth → transport inside the retry loop, for every request;
* :mod:`~bitrix24_source.client.retry`: what may be resent and when (§6.6), as tenacity pieces;
* :mod:`~bitrix24_source.client.batch` and :mod:`~bitrix24_source.client.paging`: the pure batch planning and
  result splitting, and the keyset paging windows.

:class:`_BatchRunner` sends a planned batch: direct calls in place of commands a batch cannot carry, and the
commands a v2 batch had refused on a limit resent after the method's reset.
"""

from __future__ import annotations

import logging
import time as _time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import requests

from bitrix24_source.client.auth import (
    Auth,
    OAuthAuth,
    OAuthCredentials,
    OAuthTokens,
    WebhookAuth,
    oauth_address,
    webhook_address,
)
from bitrix24_source.client.batch import (
    MAX_BATCH,
    Calls,
    build_v2_batch_body,
    build_v3_batch_body,
    chunked,
    failed_results,
    normalize_calls,
    parse_call_payload,
    plan_segments,
    split_batch,
)
from bitrix24_source.client.commands import (
    BoolStyle,
    Command,
    CommandResult,
    TimeInfo,
    check_method,
    is_read_method,
    iter_refs,
    iter_result_refs,
)
from bitrix24_source.client.limits import BATCH_METHOD, PortalLimiter, RateLimit, limiter_for
from bitrix24_source.client.paging import KeysetPagerV2, KeysetPagerV3
from bitrix24_source.client.result import BatchResult, CallResult, ClientStats, StatsCounter
from bitrix24_source.client.retry import (
    RetryPolicy,
    batch_failure_outcome,
    limit_refused,
    mark_limit_refused,
    operating_limit_wait,
    outcome_of,
)
from bitrix24_source.client.sender import Sender
from bitrix24_source.client.transport import Transport
from bitrix24_source.errors import Bitrix24Error, ConfigError, MaskingFilter, TransportError, mask

__all__ = ["Bitrix24Client", "ClientStats", "OAuthCredentials", "OAuthTokens", "RetryPolicy"]

logger = logging.getLogger(__name__)
logger.addFilter(MaskingFilter())


class Bitrix24Client:
    """A Bitrix24 REST client for v2 and v3: single calls, batches and chunked batches.

    The class is longer than its parts because it carries the documented public API (a third of it is
    docstrings); the work is done by the parts it builds in ``__init__``.

    Args:
        webhook_url: incoming webhook, ``https://portal/rest/<user_id>/<code>/`` (the ``/rest/api/…`` form is
            accepted too). Either this or ``oauth``.
        oauth: OAuth credentials (:class:`OAuthCredentials`, a mapping, or an object with ``client_id``,
            ``client_secret``, ``access_token``, ``refresh_token``, ``client_endpoint``, ``token_url``).
        timeout: seconds per HTTP request (connect and read).
        rate_limit: the portal's leaky bucket (:class:`RateLimit`, ``"default"``, ``"enterprise"``), or None to
            send without pre-waiting (503s are still handled).
        operating_limit: operating seconds per method per 10 minutes (480 in the cloud), or None.
        verify: TLS verification: True, False, or a CA bundle path (the sandbox's ``ca_cert_path``).
        on_token_refresh: called with :class:`OAuthTokens` after every refresh, to persist them.
        retry: the :class:`RetryPolicy`.
        session: a ``requests.Session`` to use (tests; by default one pooled session per client).
        limiter: a :class:`PortalLimiter` to use instead of the shared one (tests with a fake clock).
        bool_style: how v2 batch commands encode booleans: ``"YN"`` (default) or ``"10"``.
        sleep: sleep function for retry waits (tests).
        pool_size: connections kept per host (dlt loads on up to 20 threads).
    """

    def __init__(
        self,
        webhook_url: str | None = None,
        *,
        oauth: Any = None,
        timeout: float = 30.0,
        rate_limit: RateLimit | str | None = "default",
        operating_limit: float | None = 480.0,
        verify: bool | str = True,
        on_token_refresh: Callable[[OAuthTokens], None] | None = None,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
        limiter: PortalLimiter | None = None,
        bool_style: BoolStyle = "YN",
        sleep: Callable[[float], None] = _time.sleep,
        pool_size: int = 20,
    ) -> None:
        if (webhook_url is None) == (oauth is None):
            raise ConfigError("pass exactly one of webhook_url or oauth")
        if bool_style not in ("YN", "10"):
            raise ConfigError(f"bool_style must be 'YN' or '10', got {bool_style!r}")
        self.bool_style: BoolStyle = bool_style
        self._stats = StatsCounter()
        creds: OAuthCredentials | None = None
        if webhook_url is not None:
            address = webhook_address(webhook_url)
        else:
            creds = OAuthCredentials.from_any(oauth)
            address = oauth_address(creds)

        rate = RateLimit.preset(rate_limit) if isinstance(rate_limit, str) else rate_limit
        if limiter is None:
            limiter = limiter_for(address.portal_key, rate, operating_limit)
        self._transport = Transport(
            address, session=session, verify=verify, timeout=timeout, pool_size=pool_size, stats=self._stats
        )
        self._auth: Auth = (
            WebhookAuth()
            if creds is None
            else OAuthAuth(
                creds,
                post_form=self._transport.post_form,
                stats=self._stats,
                on_token_refresh=on_token_refresh,
            )
        )
        self._on_token_refresh = on_token_refresh
        self._sender = Sender(
            self._transport,
            self._auth,
            policy=retry or RetryPolicy(),
            limiter=limiter,
            stats=self._stats,
            sleep=sleep,
        )
        self._batches = _BatchRunner(self, self._sender)

    def __repr__(self) -> str:
        return mask(f"Bitrix24Client({self._auth.kind}, {self._transport.v2_base!r})")

    # -----------------------------------------------------------------------------------------------------------
    # State

    @property
    def stats(self) -> ClientStats:
        """Counters since the client was created."""
        return self._stats.snapshot

    @property
    def tokens(self) -> OAuthTokens | None:
        """Current OAuth tokens (None for webhooks)."""
        return self._auth.tokens

    @property
    def retry(self) -> RetryPolicy:
        """The :class:`RetryPolicy` of every request."""
        return self._sender.policy

    @retry.setter
    def retry(self, value: RetryPolicy) -> None:
        self._sender.policy = value

    @property
    def limiter(self) -> PortalLimiter:
        """The limiter waited on before every request (shared per portal unless one was passed in)."""
        return self._sender.limiter

    @limiter.setter
    def limiter(self, value: PortalLimiter) -> None:
        self._sender.limiter = value

    @property
    def timeout(self) -> float:
        """Seconds per HTTP request (connect and read)."""
        return self._transport.timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        self._transport.timeout = value

    @property
    def session(self) -> requests.Session:
        """The ``requests`` session every request goes through."""
        return self._transport.session

    @session.setter
    def session(self, value: requests.Session) -> None:
        self._transport.session = value

    @property
    def on_token_refresh(self) -> Callable[[OAuthTokens], None] | None:
        """Called with :class:`OAuthTokens` after every refresh (OAuth only)."""
        return self._on_token_refresh

    @on_token_refresh.setter
    def on_token_refresh(self, value: Callable[[OAuthTokens], None] | None) -> None:
        self._on_token_refresh = value
        if isinstance(self._auth, OAuthAuth):
            self._auth.on_token_refresh = value

    @property
    def _v2_base(self) -> str:
        return self._transport.v2_base

    def _follow_move(self, location: str, base: str) -> bool:
        """Whether the transport would follow a redirect to ``location`` (and adopt it); see Transport.follow_move."""
        return self._transport.follow_move(location, base)

    # -----------------------------------------------------------------------------------------------------------
    # Public API

    def call(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        version: int = 2,
        idempotent: bool | None = None,
        request_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> CallResult:
        """Call one REST method.

        Args:
            method: REST method (``crm.item.list``; v3: ``tasks.task.list``).
            params: parameters, sent as a JSON body.
            version: 2 (``/rest/…``) or 3 (``/rest/api/…``).
            idempotent: whether the call may be resent after an ambiguous failure; default: reads only
                (:func:`~bitrix24_source.client.commands.is_read_method`).
            request_id: sent as ``bx24_request_id`` and ``X-Request-ID``; appears in logs and errors.
            idempotency_key: v3 only: the ``Idempotency-Key`` header (§1.6). v3 writes get a random one by
                default, which makes resending them after an ambiguous failure safe: the portal replays the
                stored answer instead of applying the write twice. Pass your own (1–255 printable ASCII
                characters) to stay safe across processes.

        Returns:
            :class:`CallResult` with ``result``, ``total``, ``next``, ``time``.

        Raises:
            ApiError: (and subclasses) when the portal answers with an error.
            TransportError: when no usable answer came back after the allowed retries.
            ConfigError: invalid arguments.
        """
        method = check_method(method)
        if version not in (2, 3):
            raise ConfigError(f"version must be 2 or 3, got {version!r}")
        params = dict(params or {})
        if any(True for _ in iter_result_refs(params)) or any(True for _ in iter_refs(params)):
            raise ConfigError("batch references (result_ref/ref/ref_array) only work inside batch()")
        rid = request_id or uuid.uuid4().hex
        idem = is_read_method(method) if idempotent is None else idempotent
        key = idempotency_key if version == 3 else None
        if version == 3 and key is None and not idem:
            key = uuid.uuid4().hex
        response = self._sender.request(
            version,
            method,
            params,
            methods=[method],
            # §1.6: with an Idempotency-Key a resent v3 call is answered from the stored result, not re-run.
            idempotent=idem or key is not None,
            request_id=rid,
            idempotency_key=key,
        )
        if not isinstance(response.body, Mapping):
            raise TransportError(
                "answer is not a JSON object",
                code="INVALID_JSON",
                http_status=response.status,
                method=method,
                request_id=rid,
                maybe_executed=True,
            )
        result, total, nxt, time = parse_call_payload(response.body)
        if time is not None:
            self.limiter.observe(method, time.operating, time.operating_reset_at)
        return CallResult(result, total, nxt, time, response.status, rid, response.body)

    def batch(
        self,
        calls: Calls,
        *,
        halt_on_error: bool = True,
        version: int = 2,
        request_id: str | None = None,
        return_raw: bool = False,
        idempotent: bool | None = None,
    ) -> BatchResult:
        """Run up to 50 commands in one batch request (b24jssdk ``BatchV2.make``/``BatchV3.make``).

        Args:
            calls: a list of ``(method, params)`` tuples, a list of ``{"method", "params"}`` dicts, or a dict
                of named commands (values in either form).
            halt_on_error: v2: stop at the first failing command (later ones come back ``not_executed``).
                v3 batches are all-or-nothing whatever this says (§5.6).
            version: 2 or 3.
            request_id: sent with the request; appears in logs and errors.
            return_raw: make ``.data`` hold the :class:`CommandResult` objects (b24jssdk ``returnAjaxResult``).
            idempotent: whether the batch may be resent after an ambiguous failure; default: only when every
                command is a read.

        Returns:
            :class:`BatchResult`; every command's result or error is kept (``.results``, ``.by_key``). Request
            failures are reported on the commands (``not_executed``, ``error``, or ``unknown`` for writes that
            ended ambiguously); only invalid input raises.

        Raises:
            ConfigError: invalid input (more than 50 commands, numeric names, misplaced references, …).
        """
        commands, named = normalize_calls(calls)
        if not commands:
            raise ConfigError("a batch needs at least one command")
        if len(commands) > MAX_BATCH:
            raise ConfigError(
                f"a batch holds at most {MAX_BATCH} commands, got {len(commands)}; use batch_by_chunk()"
            )
        rid = request_id or uuid.uuid4().hex
        results, time = self._batches.run(commands, halt_on_error, version, rid, idempotent)
        return BatchResult(results, named=named, return_raw=return_raw, time=time, request_id=rid)

    def batch_by_chunk(
        self,
        calls: Sequence[Any],
        *,
        halt_on_error: bool = True,
        version: int = 2,
        request_id: str | None = None,
        return_raw: bool = False,
        idempotent: bool | None = None,
        on_chunk: Callable[[list[CommandResult]], None] | None = None,
    ) -> BatchResult:
        """Run any number of commands in sequential chunks of 50 (b24jssdk ``BatchByChunkV2.make``).

        ``halt_on_error`` applies inside each chunk; the loop always continues with the later chunks and every
        error is collected with its input position, method, code and description (``.errors``). Named commands
        are refused (b24jssdk's ``BatchByChunkV2`` takes a list too): names exist to be referenced by later
        commands (``$result[name]``, §4.3), and a reference cannot reach into another chunk's request.

        Args:
            calls: a list of ``(method, params)`` tuples or ``{"method", "params"}`` dicts.
            halt_on_error: halt inside a chunk at its first failing command.
            version: 2 or 3.
            request_id: sent with every chunk's request.
            return_raw: make ``.data`` hold the :class:`CommandResult` objects.
            idempotent: see :meth:`batch`.
            on_chunk: called with each chunk's results as soon as it finishes (progress, incremental saving).

        Raises:
            ConfigError: invalid input, named commands.
        """
        commands, _ = normalize_calls(calls, allow_named=False)
        rid = request_id or uuid.uuid4().hex
        results: list[CommandResult] = []
        time: TimeInfo | None = None
        for chunk in chunked(commands, MAX_BATCH):
            chunk_results, chunk_time = self._batches.run(
                list(chunk), halt_on_error, version, rid, idempotent
            )
            results.extend(chunk_results)
            time = chunk_time or time
            if on_chunk is not None:
                on_chunk(chunk_results)
        return BatchResult(results, named=False, return_raw=return_raw, time=time, request_id=rid)

    def iter_list_v2(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        id_key: str = "ID",
        cursor_key: str | None = None,
        list_key: str | None = None,
    ) -> Iterator[list[Any]]:
        """Yield pages of a v2 list method with the keyset "fast list" technique (§3.2).

        Sends ``order {cursor_key: ASC}``, ``filter['>cursor_key'] = last id`` and ``start = -1`` (no count),
        and stops at a page shorter than 50.

        Args:
            method: a v2 list method (``crm.item.list``, ``crm.deal.list``, ``tasks.task.list``…).
            params: other parameters (``select``, ``filter``, ``entityTypeId``…); a user ``order`` is replaced.
            id_key: the id field in the returned rows (``ID``; ``id`` for ``crm.item.list``/``tasks.task.list``).
            cursor_key: the id field in ``order``/``filter`` (default ``id_key``; ``ID`` for ``tasks.task.list``).
            list_key: the wrapper key of the rows (``items`` for ``crm.item.list``, ``tasks`` for tasks), or None
                when ``result`` is the list itself.
        """
        pager = KeysetPagerV2(params, id_key=id_key, cursor_key=cursor_key or id_key, list_key=list_key)
        yield from self._pages(method, 2, pager)

    def iter_list_v3(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        id_key: str = "id",
        list_key: str = "items",
        limit: int = 50,
    ) -> Iterator[list[Any]]:
        """Yield pages of a v3 list method by keyset: ``filter += [[id_key, ">", last]]``, ``order id ASC`` (§5.2).

        Stops at an empty page or at a page shorter than the largest page seen (servers clamp ``limit``).
        """
        yield from self._pages(
            method, 3, KeysetPagerV3(params, id_key=id_key, list_key=list_key, limit=limit)
        )

    def _pages(self, method: str, version: int, pager: KeysetPagerV2 | KeysetPagerV3) -> Iterator[list[Any]]:
        while True:
            rows = pager.rows(self.call(method, pager.params(), version=version).result)
            if not rows:
                return
            yield rows
            if not pager.advance(rows):
                return

    def close(self) -> None:
        """Close the HTTP session."""
        self._transport.close()

    def __enter__(self) -> Bitrix24Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _BatchRunner:
    """Sends the planned segments of one batch call for a :class:`Bitrix24Client` (I/O through the client).

    A command that a batch cannot carry is sent as a direct call in its place; a v2 batch's commands refused on a
    limit are resent after the method's reset (:func:`~bitrix24_source.client.retry.limit_refused`); every
    failure is reported on the commands it concerns, never raised (invalid input aside).
    """

    def __init__(self, client: Bitrix24Client, sender: Sender) -> None:
        self.client = client
        self.sender = sender

    def run(
        self,
        commands: list[Command],
        halt: bool,
        version: int,
        request_id: str,
        idempotent: bool | None,
    ) -> tuple[list[CommandResult], TimeInfo | None]:
        if version not in (2, 3):
            raise ConfigError(f"version must be 2 or 3, got {version!r}")
        for c in commands:
            check_method(c.method)
        segments = plan_segments(commands, version)
        out: list[CommandResult] = []
        last_time: TimeInfo | None = None
        stop = False
        for segment in segments:
            if stop:
                out.extend(
                    CommandResult(c.key, c.index, c.method, ok=False, outcome="not_executed")
                    for c in segment.commands
                )
                continue
            if segment.kind == "direct":
                results = [self._run_direct(segment.commands[0], version, request_id, idempotent)]
            else:
                results, time = self._run_batch(
                    segment.commands, commands, halt, version, request_id, idempotent
                )
                last_time = time or last_time
            out.extend(results)
            if halt and any(not r.ok for r in results):
                stop = True
        return out, last_time

    def _run_direct(
        self, command: Command, version: int, request_id: str, idempotent: bool | None
    ) -> CommandResult:
        # DESIGN.md: a command whose user data looks like batch protocol is sent on its own, in its place.
        idem = command.is_read if idempotent is None else idempotent
        try:
            r = self.client.call(
                command.method, command.params, version=version, idempotent=idem, request_id=request_id
            )
        except ConfigError:
            raise
        except Bitrix24Error as exc:
            outcome = outcome_of(exc, idem)
            [failed] = failed_results([command], exc, outcome)
            return failed
        return CommandResult(
            command.key,
            command.index,
            command.method,
            ok=True,
            result=r.result,
            total=r.total,
            next=r.next,
            time=r.time,
            outcome="ok",
        )

    def _run_batch(
        self,
        segment: Sequence[Command],
        all_commands: Sequence[Command],
        halt: bool,
        version: int,
        request_id: str,
        idempotent: bool | None,
    ) -> tuple[list[CommandResult], TimeInfo | None]:
        results, time = self._send_batch(segment, all_commands, halt, version, request_id, idempotent)
        if version != 2:
            return results, time
        by_key = {r.key: r for r in results}
        for _ in range(max(0, self.sender.policy.max_attempts - 1)):
            redo = limit_refused(segment, [by_key[c.key] for c in segment], halt)
            if not redo:
                break
            # The portal refused these commands on a limit (§6.1) and ran none of them: resend them after the
            # method's reset, as a smaller batch.
            methods = [c.method for c in redo]
            self.sender.stats.add(rejected_429=1)
            wait = operating_limit_wait(self.sender.policy, self.sender.limiter.budget, methods)
            logger.warning(
                "%d batch commands [request_id=%s] refused on a limit; resending in %.2f s",
                len(redo),
                request_id,
                wait,
            )
            self.sender.wait_after_refusal(wait)
            again, again_time = self._send_batch(redo, all_commands, halt, version, request_id, idempotent)
            by_key.update((r.key, r) for r in again)
            time = again_time or time
        final = [by_key[c.key] for c in segment]
        return [mark_limit_refused(r) for r in final], time

    def _send_batch(
        self,
        segment: Sequence[Command],
        all_commands: Sequence[Command],
        halt: bool,
        version: int,
        request_id: str,
        idempotent: bool | None,
    ) -> tuple[list[CommandResult], TimeInfo | None]:
        idem = all(c.is_read for c in segment) if idempotent is None else idempotent
        methods = [c.method for c in segment]
        body: Any
        if version == 2:
            body = build_v2_batch_body(
                segment, halt=halt, bool_style=self.client.bool_style, all_commands=all_commands
            )
        else:
            body = build_v3_batch_body(segment, all_commands=all_commands)
        try:
            # OperatingBudget: a portal may bill the batch to `batch` or to the methods inside it.
            response = self.sender.request(
                version,
                BATCH_METHOD,
                body,
                methods=[BATCH_METHOD, *methods],
                idempotent=idem,
                request_id=request_id,
            )
        except ConfigError:
            raise
        except Bitrix24Error as exc:
            outcome = batch_failure_outcome(exc, idem, version)
            # The caller gets the error on every command; only writes that may have landed deserve a warning.
            logger.log(
                logging.WARNING if outcome == "unknown" else logging.DEBUG,
                "batch of %d commands [request_id=%s] failed as a whole: %s (outcome %s)",
                len(segment),
                request_id,
                exc,
                outcome,
            )
            return failed_results(segment, exc, outcome), None
        results, time = split_batch(
            segment,
            response.body,
            version=version,
            halt=halt,
            http_status=response.status,
            request_id=request_id,
            idempotent=idem,
        )
        if time is not None:
            self.sender.limiter.observe(BATCH_METHOD, time.operating, time.operating_reset_at)
        if version == 2:
            for r in results:
                # §6.1: nested calls are charged to their own methods; each result_time feeds its method.
                if r.time is not None:
                    self.sender.limiter.observe(r.method, r.time.operating, r.time.operating_reset_at)
        return results, time
