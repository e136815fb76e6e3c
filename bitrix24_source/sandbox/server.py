"""The sandbox portal's HTTP core: routing, auth, parameter parsing, limits, faults and envelopes.

A :class:`Sandbox` runs a ``ThreadingHTTPServer`` on 127.0.0.1 (HTTP/1.1 keep-alive, optional TLS) in a
background thread and hands every method call to ``PortalState.dispatch`` (the data side). What happens to a
request, in order:

1. routing (§10, §1.1–§1.3): ``//`` collapsed; ``/rest/{uid}/{code}/{method}[.json|.xml][/]`` is a v2 webhook
   call, ``/rest/api/{uid}/{code}/{method}`` a v3 one, ``/rest/{method}`` and ``/rest/api/{method}`` OAuth;
   the method is lowercased; ``/oauth/token/`` is the refresh endpoint; ``/_sandbox/stats`` returns
   :meth:`Sandbox.stats` as JSON (no secrets).
2. parameters: v2 merges the query with the body, body wins (§1.5); v3 reads only a JSON body and takes
   nothing but ``auth`` from the query (§1.4).
3. auth (:mod:`.auth`), then the leaky bucket (503), then transport faults, then the call itself with the
   per-method operating check (429) and call faults (:mod:`.faults`).
4. output: v2 ``{result, next?, total?, time}`` / ``{error, error_description}`` (§2.1, §2.2), v3
   ``{result, time}`` / ``{error: {code, message, validation?}}`` (§2.3), PHP-style JSON (:mod:`.phpjson`).

It is long because it narrates the whole request path in one place, in the order above, so a reader can check
each step against the protocol notes without jumping between files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote

from bitrix24_source.sandbox import batch_v2, batch_v3, phpjson
from bitrix24_source.sandbox.auth import SCOPE, AuthManager, OAuthApp, TokenError
from bitrix24_source.sandbox.faults import CALL_KINDS, TRANSPORT_KINDS, Fault, FaultRegistry
from bitrix24_source.sandbox.limits import LeakyBucket, OperatingMeter, OperatingReading
from bitrix24_source.sandbox.phpquery import (
    decode_body,
    merge_request,
    parse_str,
    php_json_decode,
    split_call_params,
)
from bitrix24_source.sandbox.tls import TlsMaterial, make_tls
from bitrix24_source.sandbox.types import (
    ApiError,
    CallContext,
    CostModel,
    MethodResult,
    RateLimit,
    SeedCounts,
)

logger = logging.getLogger(__name__)

_EXPIRE_KINDS = frozenset({"expire_token"})
_SLASHES = re.compile(r"/{2,}")
_V3_PREFIX = "BITRIX_REST_V3_"
INVALID_JSON = "BITRIX_REST_V3_EXCEPTION_INVALIDJSONEXCEPTION"


class PortalStateProtocol(Protocol):
    """The seam with the data side (``sandbox/state.py``)."""

    lock: Any

    def dispatch(
        self, version: int, method: str, params: dict[str, Any], ctx: CallContext
    ) -> MethodResult: ...
    def is_write(self, method: str) -> bool: ...
    def rows(self, entity: str) -> list[dict[str, Any]]: ...
    def add_row(self, entity: str, fields: dict[str, Any]) -> dict[str, Any]: ...
    def update_row(self, entity: str, id: int, fields: dict[str, Any]) -> dict[str, Any]: ...
    def delete_row(self, entity: str, id: int) -> None: ...
    def advance_clock(self, seconds: float) -> None: ...
    def now(self) -> float: ...


@dataclass(frozen=True, slots=True)
class SandboxStats:
    """A snapshot of what the portal has served (DESIGN.md "Sandbox contract").

    Attributes:
        http_requests: all HTTP requests that reached the server.
        batches: batch requests executed (v2 and v3).
        by_method: executed method calls, batch sub-commands included, lowercased names.
        http_by_method: top-level HTTP requests per method (``batch`` included).
        rejected_503: 503 answers (bucket overflow and injected).
        rejected_429: 429 answers and ``OPERATION_TIME_LIMIT`` command errors.
        operating: current simulated operating seconds per method.
        rows_returned: list rows served per method.
    """

    http_requests: int = 0
    batches: int = 0
    by_method: dict[str, int] = field(default_factory=dict)
    http_by_method: dict[str, int] = field(default_factory=dict)
    rejected_503: int = 0
    rejected_429: int = 0
    operating: dict[str, float] = field(default_factory=dict)
    rows_returned: dict[str, int] = field(default_factory=dict)


class _Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.http_requests = 0
        self.batches = 0
        self.by_method: Counter[str] = Counter()
        self.http_by_method: Counter[str] = Counter()
        self.rejected_503 = 0
        self.rejected_429 = 0
        self.rows_returned: Counter[str] = Counter()


@dataclass(slots=True)
class _CallOutcome:
    ok: bool
    result: MethodResult | None = None
    error: ApiError | None = None
    time: dict[str, Any] | None = None
    core_error: bool = False  # auth/limit errors keep the v2 envelope even on /rest/api/ (§2.3)


@dataclass(slots=True)
class _Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"


@dataclass(slots=True)
class _Route:
    version: int
    method: str
    webhook: tuple[str, str] | None  # (user id, code) or None for OAuth


# The portal's time zone: the recorded fixtures print "+03:00", and so do the data side's timestamps.
PORTAL_TZ = timezone(timedelta(hours=3))


def _php_date(ts: float) -> str:
    # PHP date('c'): ISO 8601 with the numeric offset, whole seconds.
    return _date_of_second(int(ts))


@lru_cache(maxsize=64)
def _date_of_second(second: int) -> str:
    return datetime.fromtimestamp(second, PORTAL_TZ).isoformat()


def time_block(start: float, finish: float, processing: float, reading: OperatingReading) -> dict[str, Any]:
    """The ``time`` object of §2.1, including ``operating_reset_at`` and ``operating`` (§6.1)."""
    return {
        "start": start,
        "finish": finish,
        "duration": finish - start,
        "processing": processing,
        "date_start": _php_date(start),
        "date_finish": _php_date(finish),
        "operating_reset_at": reading.reset_at,
        "operating": reading.operating,
    }


def _v2_error_body(error: ApiError) -> dict[str, Any]:
    return {"error": error.code, "error_description": error.description, **error.extra}


def _v3_error_body(error: ApiError) -> dict[str, Any]:
    payload: dict[str, Any] = {"code": error.code, "message": error.description}
    if error.validation is not None:
        payload["validation"] = error.validation
    return {"error": payload}


class Sandbox:
    """A local Bitrix24 portal over real HTTP on 127.0.0.1: webhook and OAuth, v2 and v3, limits, faults.

    Use it as a context manager (or call :meth:`start`/:meth:`stop`); the server runs in a background thread.
    The class is long because it is the sandbox's whole public surface (start/stop, inspection, faults, direct
    state changes for tests), each with its documentation; the request path itself lives in the handler below.

    Args:
        seed: generator seed for the portal's data.
        leads, deals, contacts, companies, users, tasks: row counts (None keeps the SeedCounts default).
        spa_items, quotes, invoices, activities, departments: row counts of the tables added later (items per
            smart-process type; departments at least 5); generated after the others from a random stream of
            their own, so they leave the rows above unchanged for a seed.
        rate_limit: leaky bucket per client IP; None turns it off (unit speed). ``RateLimit(50, 2.0)`` is the
            cloud default (§6.1).
        operating_limit: operating seconds per method per window before 429; None turns the check off
            (``time.operating`` is still reported).
        tls: serve https with a certificate made at start-up (needs ``trustme``); see :attr:`ca_cert_path`.
        host: bind address; loopback only.
        port: TCP port; 0 picks a free one.
        cost_model: simulated operating cost of calls (handed to the data side).
        v3_limits: per-method ``pagination.limit`` caps for v3 lists (handed to the data side).
        access_token_ttl: OAuth access token lifetime in seconds.
        webhook_code: the webhook secret; random when None.
        operating_basket_seconds: length of one of the ten operating baskets (60 in the cloud); tests use a
            fraction of a second so the window passes quickly.
        scope: the scopes the webhook and the OAuth app were granted (``crm``, ``task``, ``user``, …); None
            grants all. A call outside them fails with ``insufficient_scope`` (v3:
            ``…INSUFFICIENTSCOPEEXCEPTION``, 403).
        insufficient_scope_status: HTTP status of a v2 ``insufficient_scope`` error. §9.2: the docs say 403,
            b24pysdk's live-tested classes say 401; 401 is the default.
        state: an already-built portal state to serve instead of generating one.
        catalogue: field catalogue of the generated portal: ``"docs"`` (default: exactly the documented
            fields and type words; see ``PortalState`` and docs/sandbox-deviations.md) or ``"legacy"`` (the
            sandbox's older set, which invented `xmlId` on every CRM entity and its own v3 task type words;
            kept only to show how a client copes with an undocumented answer).
    """

    def __init__(
        self,
        *,
        seed: int = 1,
        leads: int | None = None,
        deals: int | None = None,
        contacts: int | None = None,
        companies: int | None = None,
        users: int | None = None,
        tasks: int | None = None,
        spa_items: int | None = None,
        quotes: int | None = None,
        invoices: int | None = None,
        activities: int | None = None,
        departments: int | None = None,
        rate_limit: RateLimit | None = None,
        operating_limit: float | None = None,
        tls: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        cost_model: CostModel | None = None,
        v3_limits: dict[str, int] | None = None,
        access_token_ttl: float = 3600.0,
        webhook_code: str | None = None,
        operating_basket_seconds: float = 60.0,
        scope: Iterable[str] | None = None,
        insufficient_scope_status: int = 401,
        state: PortalStateProtocol | None = None,
        catalogue: str = "docs",
    ) -> None:
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError("the sandbox binds to loopback only")
        self.host = host
        self._requested_port = port
        self.tls = tls
        self.cost_model = cost_model or CostModel()
        if state is None:
            from bitrix24_source.sandbox.state import PortalState

            counts = SeedCounts()
            for name, value in (
                ("leads", leads),
                ("deals", deals),
                ("contacts", contacts),
                ("companies", companies),
                ("users", users),
                ("tasks", tasks),
                ("spa_items", spa_items),
                ("quotes", quotes),
                ("invoices", invoices),
                ("activities", activities),
                ("departments", departments),
            ):
                if value is not None:
                    setattr(counts, name, value)
            state = PortalState(
                seed=seed, counts=counts, cost_model=self.cost_model, v3_limits=v3_limits, catalogue=catalogue
            )
        self.state: PortalStateProtocol = state
        self.scope = frozenset(scope) if scope is not None else None
        granted = ",".join(sorted(self.scope)) if self.scope is not None else SCOPE
        self.auth = AuthManager(webhook_code=webhook_code, access_token_ttl=access_token_ttl, scope=granted)
        self.idempotency = _IdempotencyStore()
        self.bucket = LeakyBucket(rate_limit) if rate_limit is not None else None
        self.operating = OperatingMeter(operating_limit, basket_seconds=operating_basket_seconds)
        self.faults = FaultRegistry()
        self.insufficient_scope_status = insufficient_scope_status
        self._counters = _Counters()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._tls: TlsMaterial | None = None

    def __repr__(self) -> str:
        return f"Sandbox(base_url={self.base_url if self._server else None!r}, tls={self.tls})"

    # --- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> Sandbox:
        """Bind the socket and serve in a background thread; returns self."""
        if self._server is not None:
            return self
        server = _Server((self.host, self._requested_port), _Handler)
        server.sandbox = self
        if self.tls:
            self._tls = make_tls(self.host)
            server.socket = self._tls.context.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="bitrix24-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open keep-alive connections and remove TLS files."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._tls is not None:
            self._tls.directory.cleanup()
            self._tls = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- addresses -------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound TCP port (useful with ``port=0``)."""
        if self._server is None:
            raise RuntimeError("the sandbox is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (``https`` in TLS mode)."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def webhook_url(self) -> str:
        """The v2 incoming webhook URL ``<base>/rest/1/<code>/`` (contains the secret)."""
        return f"{self.base_url}/rest/{self.auth.user_id}/{self.auth.webhook_code}/"

    @property
    def webhook_url_v3(self) -> str:
        """The v3 webhook URL ``<base>/rest/api/1/<code>/``."""
        return f"{self.base_url}/rest/api/{self.auth.user_id}/{self.auth.webhook_code}/"

    @property
    def oauth(self) -> OAuthApp:
        """The OAuth application with its *current* tokens (they rotate on refresh)."""
        return OAuthApp(
            client_id=self.auth.client_id,
            client_secret=self.auth.client_secret,
            access_token=self.auth.access_token,
            refresh_token=self.auth.refresh_token,
            client_endpoint=f"{self.base_url}/rest/",
            token_url=f"{self.base_url}/oauth/token/",
            expires=self.auth.access_expires(),
        )

    @property
    def ca_cert_path(self) -> str | None:
        """PEM file of the self-signed CA in TLS mode (use as ``verify=``), else None."""
        return self._tls.ca_cert_path if self._tls is not None else None

    # --- inspection and state ----------------------------------------------------------------------------

    def stats(self) -> SandboxStats:
        """A snapshot of request counters, operating totals and rows served."""
        c = self._counters
        with c.lock:
            return SandboxStats(
                http_requests=c.http_requests,
                batches=c.batches,
                by_method=dict(c.by_method),
                http_by_method=dict(c.http_by_method),
                rejected_503=c.rejected_503,
                rejected_429=c.rejected_429,
                operating=self.operating.totals(),
                rows_returned=dict(c.rows_returned),
            )

    def reset_stats(self) -> None:
        """Zero the counters and forget operating time."""
        self._counters = _Counters()
        self.operating.reset()

    def inject(self, fault: Fault) -> None:
        """Arm a fault (see :mod:`bitrix24_source.sandbox.faults`)."""
        self.faults.add(fault)

    def clear_faults(self) -> None:
        """Disarm all faults."""
        self.faults.clear()

    def rows(self, entity: str) -> list[dict[str, Any]]:
        """Current rows of ``entity``, in the data side's canonical form, ordered by id.

        Entities: ``leads deals contacts companies users tasks task_results deal_products quotes invoices``,
        the smart processes ``spa_128 spa_1036``, ``activities departments stage_history`` (each row with
        its ``entityTypeId`` in front, ordered by type, then id: ids are numbered per type) and the
        reference tables ``crm_statuses crm_categories spa_types``. An unknown name raises ValueError
        listing them.
        """
        with self.state.lock:
            return self.state.rows(entity)

    def add_row(self, entity: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Insert a row directly (bumps timestamps like the portal would)."""
        with self.state.lock:
            return self.state.add_row(entity, fields)

    def update_row(self, entity: str, id: int, fields: dict[str, Any]) -> dict[str, Any]:
        """Change a row directly."""
        with self.state.lock:
            return self.state.update_row(entity, id, fields)

    def delete_row(self, entity: str, id: int) -> None:
        """Delete a row directly."""
        with self.state.lock:
            self.state.delete_row(entity, id)

    def advance_clock(self, seconds: float) -> None:
        """Move the portal's clock (timestamps of changes) forward."""
        with self.state.lock:
            self.state.advance_clock(seconds)

    # --- request handling ------------------------------------------------------------------------------

    def _count(self, **kwargs: int) -> None:
        c = self._counters
        with c.lock:
            for name, value in kwargs.items():
                setattr(c, name, getattr(c, name) + value)

    def _call(
        self,
        version: int,
        method: str,
        params: dict[str, Any],
        ctx: CallContext,
        principal: str,
        index: int | None,
    ) -> _CallOutcome:
        """Run one method call: operating check, call faults, dispatch, charge, ``time`` block."""
        start = self.state.now()  # the portal's clock: `time` and updatedTime agree (§2.1)
        if self.operating.blocked(principal, method):
            self._count(rejected_429=1)
            return _CallOutcome(
                ok=False,
                error=ApiError("OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.", 429),
                core_error=True,
            )
        if self.scope is not None and not _in_scope(method, self.scope):
            return _CallOutcome(ok=False, error=self._scope_error(version, principal, ctx.in_batch))
        fault = self.faults.take(CALL_KINDS, method, command_index=index, in_batch=ctx.in_batch)
        if fault is not None and fault.phase == "before":
            return _CallOutcome(ok=False, error=_fault_error(fault))
        c = self._counters
        with c.lock:
            c.by_method[method] += 1
        try:
            with self.state.lock:
                result = self.state.dispatch(version, method, params, ctx)
        except ApiError as error:
            return _CallOutcome(ok=False, error=error)
        reading = self.operating.charge(principal, method, result.cost)
        if result.rows:
            with c.lock:
                c.rows_returned[method] += result.rows
        if fault is not None:
            return _CallOutcome(ok=False, error=_fault_error(fault))
        finish = self.state.now()
        return _CallOutcome(ok=True, result=result, time=time_block(start, finish, finish - start, reading))

    def _scope_error(self, version: int, principal: str, in_batch: bool) -> ApiError:
        if version == 3:
            return ApiError(
                "BITRIX_REST_V3_EXCEPTION_INSUFFICIENTSCOPEEXCEPTION",
                "Insufficient scope for this method",
                403,
            )
        holder = "webhook token" if principal == "webhook" else "access token"
        # §2.2: inside a batch the description comes back empty (DOCS batch.md example).
        description = (
            "" if in_batch else f"The request requires higher privileges than provided by the {holder}"
        )
        return ApiError("insufficient_scope", description, self.insufficient_scope_status)

    def _serve_v2(self, route: _Route, params: dict[str, Any], principal: str) -> _Response:
        start = self.state.now()
        if route.method == "batch":
            self._count(batches=1)

            def execute(method: str, sub: dict[str, Any], index: int) -> batch_v2.CommandOutcome:
                clean, sub_start, given = split_call_params(sub)
                ctx = CallContext(version=2, start=sub_start, start_given=given, in_batch=True)
                outcome = self._call(2, method, clean, ctx, principal, index)
                if outcome.ok and outcome.result is not None:
                    r = outcome.result
                    return batch_v2.CommandOutcome(
                        ok=True, result=r.result, total=r.total, next=r.next, time=outcome.time
                    )
                assert outcome.error is not None
                return batch_v2.CommandOutcome(ok=False, error=_v2_error_body(outcome.error))

            payload = batch_v2.run_batch(params, execute)
            finish = self.state.now()
            reading = self.operating.read(principal, "batch")
            return _json(200, {"result": payload, "time": time_block(start, finish, finish - start, reading)})
        clean, call_start, given = split_call_params(params)
        ctx = CallContext(version=2, start=call_start, start_given=given)
        outcome = self._call(2, route.method, clean, ctx, principal, None)
        if not outcome.ok:
            assert outcome.error is not None
            return _json(outcome.error.status, _v2_error_body(outcome.error))
        assert outcome.result is not None
        body: dict[str, Any] = {"result": outcome.result.result}
        if outcome.result.next is not None:
            body["next"] = outcome.result.next
        if outcome.result.total is not None:
            body["total"] = outcome.result.total
        body["time"] = outcome.time
        return _json(200, body)

    def _serve_v3(self, route: _Route, body: Any, principal: str) -> _Response:
        start = self.state.now()
        if route.method == "batch":
            self._count(batches=1)

            def execute(method: str, query: dict[str, Any], index: int) -> Any:
                if method == "batch":
                    raise ApiError(
                        "BITRIX_REST_V3_EXCEPTION_INVALIDSELECTEXCEPTION",
                        "Unable to recognize select expression `batch is not allowed inside batch`",
                        400,
                    )
                ctx = CallContext(version=3, in_batch=True)
                outcome = self._call(3, method, query, ctx, principal, index)
                if not outcome.ok:
                    assert outcome.error is not None
                    raise _CoreError(outcome.error) if outcome.core_error else outcome.error
                assert outcome.result is not None
                return outcome.result.result

            try:
                results = batch_v3.run_batch(body, execute)
            except _CoreError as core:
                return _json(core.error.status, _v2_error_body(core.error))
            except ApiError as error:
                return _json(error.status, _v3_error_body(error))
            finish = self.state.now()
            reading = self.operating.read(principal, "batch")
            return _json(200, {"result": results, "time": time_block(start, finish, finish - start, reading)})
        if not isinstance(body, dict):
            return _json(
                400, _v3_error_body(ApiError(INVALID_JSON, "Request body must be a JSON object", 400))
            )
        params = {key: value for key, value in body.items() if key != "auth"}
        outcome = self._call(3, route.method, params, CallContext(version=3), principal, None)
        if not outcome.ok:
            assert outcome.error is not None
            render = _v2_error_body if outcome.core_error else _v3_error_body
            return _json(outcome.error.status, render(outcome.error))
        assert outcome.result is not None
        return _json(200, {"result": outcome.result.result, "time": outcome.time})


# Scope of a method by its first name segment; methods of other families (server.time, methods, scope…)
# need none. `user_brief`/`user_basic` also grant user.* reads.
_SCOPES_BY_PREFIX = {
    "crm": ("crm",),
    "tasks": ("task",),
    "task": ("task",),
    "user": ("user", "user_brief", "user_basic"),
    "department": ("department",),
    "lists": ("lists",),
    "catalog": ("catalog",),
}


def _in_scope(method: str, granted: frozenset[str]) -> bool:
    needed = _SCOPES_BY_PREFIX.get(method.split(".", 1)[0])
    return needed is None or any(scope in granted for scope in needed)


_IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,255}\Z")
_IDEMPOTENCY_TTL = 24 * 3600.0


class _IdempotencyStore:
    """v3 ``Idempotency-Key`` (§1.6): successful answers are kept 24 h per caller + method + key.

    A repeat with the same body gets the stored answer plus ``Idempotent-Replayed: true``; the same key with a
    different body gets 422 ``…IDEMPOTENCYKEYREUSEDEXCEPTION``; a malformed key 400
    ``…INVALIDIDEMPOTENCYKEYEXCEPTION``. Both answers echo the key. v2 ignores the header.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._stored: dict[tuple[str, str, str], tuple[float, bytes, _Response]] = {}

    def serve(
        self, key: str, caller: tuple[str, str], body: bytes, execute: Callable[[], _Response]
    ) -> _Response:
        echo = {"Idempotency-Key": key}
        if not _IDEMPOTENCY_KEY.match(key):
            error = ApiError(
                "BITRIX_REST_V3_EXCEPTION_INVALIDIDEMPOTENCYKEYEXCEPTION",
                "Invalid Idempotency-Key header",
                400,
            )
            return _json(400, _v3_error_body(error), echo)
        slot = (*caller, key)
        digest = hashlib.sha256(body).digest()
        now = self._clock()
        with self._lock:
            for stale in [k for k, (at, _, _) in self._stored.items() if at + _IDEMPOTENCY_TTL <= now]:
                del self._stored[stale]
            stored = self._stored.get(slot)
        if stored is not None:
            _, stored_digest, response = stored
            if stored_digest != digest:
                error = ApiError(
                    "BITRIX_REST_V3_EXCEPTION_IDEMPOTENCYKEYREUSEDEXCEPTION",
                    "Idempotency-Key was already used with a different request body",
                    422,
                )
                return _json(422, _v3_error_body(error), echo)
            return _Response(response.status, response.body, {**echo, "Idempotent-Replayed": "true"})
        response = execute()
        if response.status == 200:
            with self._lock:
                self._stored[slot] = (now, digest, response)
        return _Response(response.status, response.body, {**response.headers, **echo})


class _CoreError(Exception):
    def __init__(self, error: ApiError) -> None:
        super().__init__(error.code)
        self.error = error


def _fault_error(fault: Fault) -> ApiError:
    if fault.kind == "empty_error":
        return ApiError("", "Not found", 400)
    code = fault.error_code or "INTERNAL_SERVER_ERROR"
    return ApiError(code, "Injected fault", 500 if code == "INTERNAL_SERVER_ERROR" else 400)


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> _Response:
    return _Response(status, phpjson.encode(payload), headers or {})


_TRANSPORT_ERRORS = {
    "http_503": (503, "QUERY_LIMIT_EXCEEDED", "Too many requests"),
    "http_429": (429, "OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit."),
    "http_500": (500, "INTERNAL_SERVER_ERROR", "Internal server error"),
}


def route(path: str) -> _Route | None:
    """Map a request path to (version, lowercased method, webhook credentials) per §10; None = not a REST path."""
    path = _SLASHES.sub("/", unquote(path))
    if not path.startswith("/rest/"):
        return None
    rest = path[len("/rest/") :]
    version = 2
    if rest.startswith("api/"):
        version, rest = 3, rest[len("api/") :]
    parts = [part for part in rest.split("/") if part]
    webhook: tuple[str, str] | None
    if len(parts) == 3 and parts[0].isdigit():
        webhook, method = (parts[0], parts[1]), parts[2]
    elif len(parts) == 1:
        webhook, method = None, parts[0]
    else:
        return None
    method = method.lower()
    if version == 2 and method.endswith((".json", ".xml")):
        # The .xml transport is not emulated: the answer is JSON either way.
        method = method.rsplit(".", 1)[0]
    return _Route(version=version, method=method, webhook=webhook)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128
    sandbox: Sandbox

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that goes away (reset, timeout during a hang, failed TLS handshake) is routine here.
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            logger.debug("sandbox: connection ended: %s", type(error).__name__)
        else:
            logger.exception("sandbox: unexpected error in a connection handler")

    def close_connections(self) -> None:
        with self._open_lock:
            sockets = list(self._open)
            self._open.clear()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                logger.debug("sandbox connection already closed at shutdown")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "bitrix24-sandbox"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are dropped after this many seconds
    disable_nagle_algorithm = True
    server: _Server
    _headers_buffer: list[bytes]

    def log_message(self, format: str, *args: Any) -> None:
        # The request line carries the webhook secret in its path: never log it.
        logger.debug("sandbox request handled")

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_OPTIONS(self) -> None:
        # CORS preflight answer as measured in GH#507 (CRestUtil::sendHeaders).
        self.send_response(200)
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Headers", "origin, content-type, accept")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size_line = self.rfile.readline().split(b";", 1)[0].strip()
                size = int(size_line, 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        continue
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, response: _Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        # Headers and body leave in one write: two small segments would meet the client's delayed ACK
        # (a ~40 ms stall per response on keep-alive connections).
        buffer: list[bytes] = self._headers_buffer
        buffer.append(b"\r\n")
        buffer.append(response.body)
        self.wfile.write(b"".join(buffer))
        buffer.clear()

    def _reset(self) -> None:
        # SO_LINGER 0 makes close() send RST: the client sees "connection reset", no response at all.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _handle(self) -> None:
        sandbox = self.server.sandbox
        body = self._read_body()
        sandbox._count(http_requests=1)
        raw_path, _, raw_query = self.path.partition("?")
        try:
            response = self._dispatch(sandbox, raw_path, raw_query, body)
        except Exception:
            logger.exception("sandbox: unexpected error while serving a request")
            response = _json(
                500, {"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal server error"}
            )
        if response is None:
            return
        try:
            self._send(response)
        except OSError:
            # The client gave up (e.g. its timeout during an injected hang) or the portal is stopping.
            self.close_connection = True

    def _dispatch(self, sandbox: Sandbox, raw_path: str, raw_query: str, body: bytes) -> _Response | None:
        clean_path = _SLASHES.sub("/", raw_path)
        if clean_path.rstrip("/").endswith("/oauth/token"):
            return self._token(sandbox, raw_query, body)
        if clean_path.rstrip("/") == "/_sandbox/stats":
            return _Response(200, json.dumps(asdict(sandbox.stats())).encode())
        found = route(raw_path)
        if found is None:
            return _json(404, {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"})
        with sandbox._counters.lock:
            sandbox._counters.http_by_method[found.method] += 1
        if sandbox.faults.take(_EXPIRE_KINDS, found.method) is not None:
            sandbox.auth.expire_now()

        content_type = self.headers.get("Content-Type", "")
        bearer = self._bearer()
        v3_body: Any = None
        v3_invalid = False
        if found.version == 2:
            merged = merge_request(parse_str(raw_query), decode_body(body, content_type))
            token = merged.get("auth") if isinstance(merged.get("auth"), str) else None
            params: dict[str, Any] = merged
        else:
            params = {}
            query_auth = dict(parse_qsl(raw_query)).get("auth")
            if body.strip():
                try:
                    v3_body = php_json_decode(body)
                except ValueError:
                    v3_invalid = True
            else:
                v3_body = {}
            body_auth = v3_body.get("auth") if isinstance(v3_body, dict) else None
            token = body_auth if isinstance(body_auth, str) else query_auth
        token = token or bearer

        try:
            if found.webhook is not None:
                sandbox.auth.check_webhook(*found.webhook)
                principal = "webhook"
            else:
                sandbox.auth.check_token(token)
                principal = "oauth"
        except ApiError as error:
            return _json(error.status, _v2_error_body(error))

        if sandbox.bucket is not None and not sandbox.bucket.admit(self.client_address[0]):
            sandbox._count(rejected_503=1)
            return _json(503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"})

        fault = sandbox.faults.take(TRANSPORT_KINDS, found.method)
        # A truncated body needs the real response to cut, so it always acts after execution.
        if fault is not None and fault.phase == "before" and fault.kind != "truncated":
            if fault.kind == "hang":
                time.sleep(fault.delay if fault.delay is not None else 5.0)
            else:
                return self._transport_fault(sandbox, fault, None)

        if found.version == 2:
            response = sandbox._serve_v2(found, params, principal)
        elif v3_invalid:
            response = _json(400, _v3_error_body(ApiError(INVALID_JSON, "Invalid JSON in request body", 400)))
        else:
            key = self.headers.get("Idempotency-Key")
            if key is None:
                response = sandbox._serve_v3(found, v3_body, principal)
            else:
                response = sandbox.idempotency.serve(
                    key, (principal, found.method), body, lambda: sandbox._serve_v3(found, v3_body, principal)
                )

        if fault is not None and (fault.phase == "after" or fault.kind == "truncated"):
            if fault.kind == "hang":
                time.sleep(fault.delay if fault.delay is not None else 5.0)
            else:
                return self._transport_fault(sandbox, fault, response)
        return response

    def _transport_fault(
        self, sandbox: Sandbox, fault: Fault, executed: _Response | None
    ) -> _Response | None:
        if fault.kind == "reset":
            self._reset()
            return None
        if fault.kind == "truncated":
            assert executed is not None
            return _Response(executed.status, executed.body[: len(executed.body) // 2], executed.headers)
        if fault.kind == "moved":
            # §1.6: a renamed portal answers 302 with the new address and a non-JSON body. The "new host" is the
            # other loopback name of this same server, so a client that follows it keeps working.
            host = "localhost" if sandbox.host == "127.0.0.1" else "127.0.0.1"
            scheme = "https" if sandbox.tls else "http"
            location = f"{scheme}://{host}:{sandbox.port}{self.path}"
            page = b"<html><body>Moved</body></html>"
            return _Response(302, page, {"Location": location}, content_type="text/html; charset=utf-8")
        status, code, description = _TRANSPORT_ERRORS[fault.kind]
        if status == 503:
            sandbox._count(rejected_503=1)
        elif status == 429:
            sandbox._count(rejected_429=1)
        return _json(status, {"error": code, "error_description": description})

    def _bearer(self) -> str | None:
        header = self.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            return header[7:].strip() or None
        return None

    def _token(self, sandbox: Sandbox, raw_query: str, body: bytes) -> _Response:
        params: dict[str, Any] = dict(parse_qsl(raw_query))
        if body:
            params.update(decode_body(body, self.headers.get("Content-Type", "")))
        base = sandbox.base_url
        try:
            return _Response(200, json.dumps(sandbox.auth.refresh(params, base)).encode())
        except TokenError as error:
            payload = {"error": error.error, "error_description": error.description}
            return _Response(error.status, json.dumps(payload).encode())
