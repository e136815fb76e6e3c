"""``Bitrix24Client``: the only module of the client core that does I/O.

One ``requests`` session with a connection pool, webhook or OAuth auth (refresh coalesced across threads),
the shared per-portal limiter (:mod:`bitrix24_source.client.limits`) and the retry policy of §6.6:

* retried: what certainly did not execute (503 ``QUERY_LIMIT_EXCEEDED`` with backoff, 429
  ``OPERATION_TIME_LIMIT`` after waiting for the method's reset, connection refused), and reads after 5xx,
  timeouts, resets and truncated answers;
* never resent blindly: a write whose request ended ambiguously (timeout, reset, 5xx, truncated answer). A call
  raises the error (``TransportError.maybe_executed`` / ``ServerError``); a batch returns those commands with
  ``outcome="unknown"`` so the caller can verify and resume.

Retry timing uses tenacity; the pure parts (bodies, result splitting) live in :mod:`bitrix24_source.client.batch`.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import json
import logging
import math
import re
import ssl
import threading
import time as _time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

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
    split_v2_batch,
    split_v3_batch,
)
from bitrix24_source.client.commands import (
    BoolStyle,
    Command,
    CommandResult,
    Outcome,
    TimeInfo,
    is_read_method,
    iter_refs,
    iter_result_refs,
)
from bitrix24_source.client.limits import PortalLimiter, RateLimit, limiter_for
from bitrix24_source.client.result import BatchResult, CallResult
from bitrix24_source.errors import (
    ApiError,
    AuthError,
    Bitrix24Error,
    ConfigError,
    MaskingFilter,
    RateLimitError,
    ServerError,
    TransportError,
    error_from_response,
    mask,
    register_secret,
)

__all__ = ["Bitrix24Client", "ClientStats", "OAuthCredentials", "OAuthTokens", "RetryPolicy"]

logger = logging.getLogger(__name__)
logger.addFilter(MaskingFilter())
# urllib3 logs request lines (webhook code in the path) at DEBUG; mask them too (STYLE.md rule 13).
logging.getLogger("urllib3.connectionpool").addFilter(MaskingFilter())

DEFAULT_TOKEN_URL = "https://oauth.bitrix.info/oauth/token/"
_WEBHOOK_PATH = re.compile(r"^(?P<prefix>.*?)/rest/(?:api/)?(?P<uid>\d+)/(?P<code>[^/]+)/?$")
_METHOD_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_REFRESH_CODES = frozenset({"EXPIRED_TOKEN", "INVALID_TOKEN"})
_EXPIRY_MARGIN = 5.0  # seconds before `expires` at which a token counts as expired


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


@dataclass(frozen=True, slots=True)
class ClientStats:
    """Counters of one client (a snapshot)."""

    http_requests: int = 0
    retries: int = 0
    waited_seconds: float = 0.0
    rejected_503: int = 0
    rejected_429: int = 0
    token_refreshes: int = 0


@dataclass(frozen=True, slots=True)
class OAuthTokens:
    """Tokens handed to ``on_token_refresh`` after a refresh (persist them to resume later)."""

    access_token: str
    refresh_token: str
    expires: float | None = None
    client_endpoint: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return f"OAuthTokens(access_token='***', refresh_token='***', expires={self.expires!r})"


@dataclass(frozen=True, slots=True)
class OAuthCredentials:
    """An OAuth application's credentials (also accepted: any object or mapping with these names)."""

    client_id: str
    client_secret: str
    access_token: str
    refresh_token: str
    client_endpoint: str
    token_url: str = DEFAULT_TOKEN_URL
    expires: float | None = None

    def __repr__(self) -> str:
        return (
            f"OAuthCredentials(client_id={self.client_id!r}, client_secret='***', access_token='***', "
            f"refresh_token='***', client_endpoint={self.client_endpoint!r}, token_url={self.token_url!r})"
        )

    @classmethod
    def from_any(cls, value: Any) -> OAuthCredentials:
        """Read credentials from this class, a mapping, or any object with the same attribute names."""
        if isinstance(value, cls):
            return value

        def get(name: str, default: str | None = None) -> str:
            raw = value.get(name, default) if isinstance(value, Mapping) else getattr(value, name, default)
            if raw is None or raw == "":
                raise ConfigError(f"OAuth credentials need {name!r}")
            return str(raw)

        return cls(
            client_id=get("client_id"),
            client_secret=get("client_secret"),
            access_token=get("access_token"),
            refresh_token=get("refresh_token"),
            client_endpoint=get("client_endpoint"),
            token_url=get("token_url", DEFAULT_TOKEN_URL),
            expires=_expires_of(value),
        )


def _expires_of(value: Any) -> float | None:
    raw = value.get("expires") if isinstance(value, Mapping) else getattr(value, "expires", None)
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) and raw > 0:
        return float(raw)
    return None


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _require_secure(url: str, what: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return
    raise ConfigError(f"{what} must use https (plain http is allowed only for loopback hosts): {mask(url)}")


def _json_default(value: Any) -> Any:
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(_NON_FINITE)
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot send a value of type {type(value).__name__} as JSON")


_NON_FINITE = (
    "holds NaN or an infinite number, which JSON cannot carry (PHP would refuse the whole body and, for v2, "
    "run the method with no parameters at all, §1.5)"
)


def _non_finite_path(value: Any, path: str = "") -> str | None:
    """The path (``filter.ID``, ``cmd.0``) of the first NaN or infinite number in a request body."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    if isinstance(value, Decimal) and not value.is_finite():
        return path
    if isinstance(value, Mapping):
        items: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _non_finite_path(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def _dumps(body: Any) -> bytes:
    try:
        return json.dumps(body, default=_json_default, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except TypeError as exc:
        raise ConfigError(str(exc)) from None
    except UnicodeEncodeError as exc:
        # Lone surrogates (text read with errors="surrogateescape") have no UTF-8 form.
        raise ConfigError(f"a text parameter is not valid Unicode: {exc.reason}") from None
    except ValueError as exc:
        if "Circular reference" in str(exc):
            raise ConfigError("parameters contain a circular reference") from None
        raise ConfigError(f"parameter {_non_finite_path(body) or '?'!r} {_NON_FINITE}") from None


def _check_method(method: str) -> str:
    if not isinstance(method, str) or not _METHOD_NAME.match(method.strip()):
        raise ConfigError(f"invalid REST method name {method!r}")
    return method.strip()


@dataclass(slots=True)
class _Response:
    status: int
    body: Any


class Bitrix24Client:
    """A Bitrix24 REST client for v2 and v3: single calls, batches and chunked batches.

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
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.bool_style: BoolStyle = bool_style
        self.on_token_refresh = on_token_refresh
        self._sleep = sleep
        self._oauth: OAuthCredentials | None = None
        self._tokens: OAuthTokens | None = None
        self._refresh_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._stats = ClientStats()

        if webhook_url is not None:
            self._v2_base, self._v3_base, portal_key = self._parse_webhook(webhook_url)
        else:
            creds = OAuthCredentials.from_any(oauth)
            for secret in (creds.client_secret, creds.access_token, creds.refresh_token):
                register_secret(secret)
            _require_secure(creds.client_endpoint, "client_endpoint")
            _require_secure(creds.token_url, "token_url")
            base = creds.client_endpoint.rstrip("/") + "/"
            self._v2_base = base
            self._v3_base = base + "api/"
            self._oauth = creds
            self._tokens = OAuthTokens(
                creds.access_token, creds.refresh_token, expires=creds.expires, client_endpoint=base
            )
            portal_key = f"{urlsplit(base).netloc.lower()}|app:{creds.client_id}"

        rate = RateLimit.preset(rate_limit) if isinstance(rate_limit, str) else rate_limit
        self.limiter = limiter if limiter is not None else limiter_for(portal_key, rate, operating_limit)

        self.session = session or requests.Session()
        if session is None:
            # requests' own retries are off: this client decides what may be resent (§6.6).
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
            self.session.mount("https://", adapter)
            self.session.mount("http://", adapter)
        # Passed on every request: a session-level `verify` loses to REQUESTS_CA_BUNDLE in requests' merging.
        self._verify = verify
        self._move_lock = threading.Lock()
        self.session.headers.update({"Accept": "application/json", "User-Agent": "bitrix24-dlt/0.1"})

    @staticmethod
    def _parse_webhook(url: str) -> tuple[str, str, str]:
        parts = urlsplit(url.strip())
        match = _WEBHOOK_PATH.match(parts.path)
        if not parts.scheme or not parts.netloc or match is None:
            raise ConfigError("webhook_url must look like https://<portal>/rest/<user_id>/<code>/")
        register_secret(match["code"])
        _require_secure(url, "webhook_url")
        prefix, uid, code = match["prefix"], match["uid"], match["code"]
        v2 = urlunsplit((parts.scheme, parts.netloc, f"{prefix}/rest/{uid}/{code}/", "", ""))
        v3 = urlunsplit((parts.scheme, parts.netloc, f"{prefix}/rest/api/{uid}/{code}/", "", ""))
        return v2, v3, f"{parts.netloc.lower()}|user{uid}"

    def _follow_move(self, location: str, base: str) -> bool:
        """Adopt the new portal address of a 30x answer (§1.6 "portal renamed"); False if it cannot be followed.

        Only the scheme and host change: the answer must point at the same path (the method URL), the new
        address must be secure (https, or loopback), and a move is followed once per request.
        """
        if not location:
            return False
        new, old = urlsplit(location), urlsplit(base)
        if not new.scheme or not new.netloc or not new.path.startswith(old.path):
            return False
        try:
            _require_secure(location, "the moved portal address")
        except ConfigError:
            return False
        with self._move_lock:
            self._v2_base = urlunsplit((new.scheme, new.netloc, urlsplit(self._v2_base).path, "", ""))
            self._v3_base = urlunsplit((new.scheme, new.netloc, urlsplit(self._v3_base).path, "", ""))
        logger.warning("the portal moved (§1.6): now using %s", mask(self._v2_base))
        return True

    def __repr__(self) -> str:
        auth = "oauth" if self._oauth else "webhook"
        return mask(f"Bitrix24Client({auth}, {self._v2_base!r})")

    # -----------------------------------------------------------------------------------------------------------
    # Stats

    @property
    def stats(self) -> ClientStats:
        """Counters since the client was created."""
        with self._stats_lock:
            return self._stats

    def _count(self, **deltas: float) -> None:
        with self._stats_lock:
            values = {name: getattr(self._stats, name) + delta for name, delta in deltas.items()}
            self._stats = replace(self._stats, **values)

    @property
    def tokens(self) -> OAuthTokens | None:
        """Current OAuth tokens (None for webhooks)."""
        return self._tokens

    # -----------------------------------------------------------------------------------------------------------
    # Auth

    def _refresh_tokens(self, stale_access_token: str) -> None:
        """Refresh the OAuth tokens once for all threads that saw ``stale_access_token`` fail (§1.3)."""
        assert self._oauth is not None and self._tokens is not None
        with self._refresh_lock:
            if self._tokens.access_token != stale_access_token:
                return  # another thread refreshed while we waited for the lock
            # A form POST keeps the refresh token and client secret out of URLs and access logs (b24jssdk does
            # the same; the documented GET works too, §1.3).
            form = {
                "grant_type": "refresh_token",
                "client_id": self._oauth.client_id,
                "client_secret": self._oauth.client_secret,
                "refresh_token": self._tokens.refresh_token,
            }
            self._count(http_requests=1)
            try:
                response = self.session.post(
                    self._oauth.token_url, data=form, timeout=self.timeout, verify=self._verify
                )
            except requests.RequestException as exc:
                raise TransportError(
                    f"token refresh failed: {exc}", code="TOKEN_REFRESH_FAILED", maybe_executed=True
                ) from None
            try:
                body = json.loads(response.content)
            except ValueError:
                raise AuthError(
                    "token server answered without JSON", code="ERROR_OAUTH", http_status=response.status_code
                ) from None
            error = error_from_response(response.status_code, body, method="oauth/token")
            if error is not None or not isinstance(body, Mapping) or "access_token" not in body:
                raise AuthError(
                    error.description if error else "token server answered without access_token",
                    code=error.code if error else "ERROR_OAUTH",
                    http_status=response.status_code,
                    method="oauth/token",
                    category="auth",
                )
            access, refresh = (
                str(body["access_token"]),
                str(body.get("refresh_token") or self._tokens.refresh_token),
            )
            register_secret(access)
            register_secret(refresh)
            expires = body.get("expires")
            tokens = OAuthTokens(
                access_token=access,
                refresh_token=refresh,
                expires=float(expires) if isinstance(expires, (int, float)) else None,
                client_endpoint=self._tokens.client_endpoint,
                raw=dict(body),
            )
            self._tokens = tokens
            self._count(token_refreshes=1)
            logger.info("OAuth tokens refreshed")
            if self.on_token_refresh is not None:
                self.on_token_refresh(tokens)

    def _token_expired(self) -> bool:
        expires = self._tokens.expires if self._tokens is not None else None
        return expires is not None and expires <= _time.time() + _EXPIRY_MARGIN

    # -----------------------------------------------------------------------------------------------------------
    # Transport

    def _send_once(
        self,
        version: int,
        method: str,
        body: Any,
        request_id: str,
        *,
        telemetry: bool,
        idempotency_key: str | None = None,
        _moved: bool = False,
    ) -> _Response:
        base = self._v3_base if version == 3 else self._v2_base
        url = base + method
        headers = {"Content-Type": "application/json; charset=utf-8", "X-Request-ID": request_id}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        query: dict[str, str] = {}
        if telemetry:
            query["bx24_request_id"] = request_id
        if self._tokens is not None:
            token = self._tokens.access_token
            # A keyed request must resend the identical body (§1.6: same key + other body = 422), so its token,
            # which a refresh may change between attempts, goes in the header.
            if isinstance(body, Mapping) and idempotency_key is None:
                body = {**body, "auth": token}
            else:
                # §1.3: the v3 batch body is a bare array, so the token travels in the Authorization header.
                headers["Authorization"] = f"Bearer {token}"
        data = _dumps(body)
        self._count(http_requests=1)
        try:
            response = self.session.post(
                url,
                data=data,
                params=query or None,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
                verify=self._verify,
            )
        except requests.RequestException as exc:
            raise _transport_error(exc, method=method, request_id=request_id, timeout=self.timeout) from None
        status = response.status_code
        if status in (301, 302, 307, 308):
            if not _moved and self._follow_move(response.headers.get("Location", ""), base):
                # §1.6: the old address answers before running anything, so re-POSTing is safe for writes too.
                return self._send_once(
                    version,
                    method,
                    body,
                    request_id,
                    telemetry=telemetry,
                    idempotency_key=idempotency_key,
                    _moved=True,
                )
            raise ApiError(
                f"the portal moved to {response.headers.get('Location', '?')} (§1.6) and the new address "
                "could not be followed; use the new address",
                code="PORTAL_MOVED",
                http_status=status,
                method=method,
                request_id=request_id,
                category="access",
            )
        try:
            payload = json.loads(response.content)
        except ValueError:
            if status >= 500 and not response.content.strip():
                payload = {}
            else:
                raise TransportError(
                    f"answer is not valid JSON (HTTP {status}, {len(response.content)} bytes; truncated?)",
                    code="INVALID_JSON",
                    http_status=status,
                    method=method,
                    request_id=request_id,
                    maybe_executed=True,
                ) from None
        logger.debug("POST %s -> HTTP %s [request_id=%s]", url, status, request_id)
        error = error_from_response(status, payload, method=method, request_id=request_id)
        if error is not None:
            raise error
        return _Response(status, payload)

    def _request(
        self,
        version: int,
        method: str,
        body: Any,
        *,
        methods: Sequence[str],
        idempotent: bool,
        request_id: str,
        idempotency_key: str | None = None,
    ) -> _Response:
        """Send with the limiter in front and the §6.6 retry policy around it."""
        telemetry = not method.lower().startswith("task.")  # §1.1: legacy task.* read the query by position

        def attempt() -> _Response:
            waited = self.limiter.before_request(methods)
            if waited:
                self._count(waited_seconds=waited)
            token = self._tokens.access_token if self._tokens is not None else None
            if token is not None and self._token_expired():
                # A token known to be expired is refreshed before use instead of spending a request on a 401.
                self._refresh_tokens(token)
                token = self._tokens.access_token if self._tokens is not None else None
            try:
                return self._send_once(
                    version, method, body, request_id, telemetry=telemetry, idempotency_key=idempotency_key
                )
            except AuthError as exc:
                if token is None or exc.code.upper() not in _REFRESH_CODES:
                    raise
                # §6.2: refresh (coalesced) and retry once within the attempt; the resend is a request too.
                self._refresh_tokens(token)
                waited = self.limiter.before_request(methods)
                if waited:
                    self._count(waited_seconds=waited)
                return self._send_once(
                    version, method, body, request_id, telemetry=telemetry, idempotency_key=idempotency_key
                )

        def retryable(exc: BaseException) -> bool:
            if isinstance(exc, RateLimitError):
                return True
            if isinstance(exc, TransportError):
                if exc.code == "TLS_ERROR":
                    return False  # a certificate problem does not fix itself
                return not exc.maybe_executed or idempotent
            if isinstance(exc, ServerError):
                return idempotent
            return False

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            n = state.attempt_number
            policy = self.retry
            if isinstance(exc, RateLimitError):
                if exc.http_status == 429 or exc.code.upper() == "OPERATION_TIME_LIMIT":
                    self._count(rejected_429=1)
                    blocked = self.limiter.budget
                    seconds = (
                        max(blocked.blocked_wait(m, minimum=policy.min_wait_429) for m in methods)
                        if blocked is not None and methods
                        else policy.min_wait_429
                    )
                    return float(min(seconds, policy.max_wait_429))
                self._count(rejected_503=1)
                if self.limiter.bucket is not None:
                    self.limiter.bucket.on_rejected()
                return float(min(policy.backoff_503 * policy.backoff_factor ** (n - 1), policy.max_backoff))
            return float(min(policy.backoff_error * 2 ** (n - 1), policy.max_backoff))

        def before_sleep(state: RetryCallState) -> None:
            seconds = state.next_action.sleep if state.next_action else 0.0
            exc = state.outcome.exception() if state.outcome else None
            self._count(retries=1, waited_seconds=seconds)
            logger.warning(
                "%s [request_id=%s] attempt %d failed (%s); retrying in %.2f s",
                method,
                request_id,
                state.attempt_number,
                exc,
                seconds,
            )

        retrying = Retrying(
            stop=stop_after_attempt(max(1, self.retry.max_attempts)),
            wait=wait,
            retry=retry_if_exception(retryable),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        response: _Response = retrying(attempt)
        return response

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
        method = _check_method(method)
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
        response = self._request(
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
        results, time = self._run_commands(commands, halt_on_error, version, rid, idempotent)
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
        are refused, as the seeds specify.

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
            chunk_results, chunk_time = self._run_commands(
                list(chunk), halt_on_error, version, rid, idempotent
            )
            results.extend(chunk_results)
            time = chunk_time or time
            if on_chunk is not None:
                on_chunk(chunk_results)
        return BatchResult(results, named=False, return_raw=return_raw, time=time, request_id=rid)

    # -----------------------------------------------------------------------------------------------------------
    # Batch execution

    def _run_commands(
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
            _check_method(c.method)
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
            r = self.call(
                command.method, command.params, version=version, idempotent=idem, request_id=request_id
            )
        except ConfigError:
            raise
        except Bitrix24Error as exc:
            outcome = _outcome_of(exc, idem)
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
        for _ in range(max(0, self.retry.max_attempts - 1)):
            redo = _limit_refused(segment, [by_key[c.key] for c in segment], halt)
            if not redo:
                break
            # The portal refused these commands on a limit (§6.1) and ran none of them: resend them after the
            # method's reset, as a smaller batch.
            methods = [c.method for c in redo]
            self._count(rejected_429=1)
            budget = self.limiter.budget
            wait = (
                max(budget.blocked_wait(m, minimum=self.retry.min_wait_429) for m in methods)
                if budget is not None
                else self.retry.min_wait_429
            )
            wait = min(wait, self.retry.max_wait_429)
            logger.warning(
                "%d batch commands [request_id=%s] refused on a limit; resending in %.2f s",
                len(redo),
                request_id,
                wait,
            )
            self._count(retries=1, waited_seconds=wait)
            self._sleep(wait)
            again, again_time = self._send_batch(redo, all_commands, halt, version, request_id, idempotent)
            by_key.update((r.key, r) for r in again)
            time = again_time or time
        final = [by_key[c.key] for c in segment]
        return [_mark_limit_refused(r) for r in final], time

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
                segment, halt=halt, bool_style=self.bool_style, all_commands=all_commands
            )
        else:
            body = build_v3_batch_body(segment, all_commands=all_commands)
        try:
            response = self._request(
                version, "batch", body, methods=methods, idempotent=idem, request_id=request_id
            )
        except ConfigError:
            raise
        except Bitrix24Error as exc:
            outcome = _batch_failure_outcome(exc, idem, version)
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
        if not isinstance(response.body, Mapping):
            error = TransportError(
                "batch answer is not a JSON object",
                code="INVALID_JSON",
                http_status=response.status,
                method="batch",
                request_id=request_id,
                maybe_executed=True,
            )
            return failed_results(segment, error, "error" if idem else "unknown"), None
        time = TimeInfo.from_payload(response.body.get("time"))
        if version == 2:
            results = split_v2_batch(
                segment, response.body, halt=halt, http_status=response.status, request_id=request_id
            )
            for r in results:
                # §6.1: nested calls are charged to their own methods; each result_time feeds its method.
                if r.time is not None:
                    self.limiter.observe(r.method, r.time.operating, r.time.operating_reset_at)
        else:
            results = split_v3_batch(segment, response.body, request_id=request_id)
        return results, time

    # -----------------------------------------------------------------------------------------------------------
    # Pagination helpers

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
        base = dict(params or {})
        cursor = cursor_key or id_key
        user_filter = dict(base.get("filter") or {})
        last: Any = 0
        while True:
            page_params = {
                **base,
                "order": {cursor: "ASC"},
                "filter": {**user_filter, f">{cursor}": last},
                "start": -1,
            }
            result = self.call(method, page_params).result
            rows = (
                result.get(list_key, []) if list_key is not None and isinstance(result, Mapping) else result
            )
            if not isinstance(rows, list) or not rows:
                return
            yield rows
            if len(rows) < 50:
                return
            next_last = rows[-1].get(id_key) if isinstance(rows[-1], Mapping) else None
            if next_last is None or str(next_last) == str(last):
                return
            last = int(next_last) if str(next_last).isdigit() else next_last

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
        base = dict(params or {})
        user_filter = list(base.get("filter") or [])
        last: Any = 0
        largest = 0
        while True:
            page_params = {
                **base,
                "order": {id_key: "ASC"},
                "filter": [*user_filter, [id_key, ">", last]],
                "pagination": {"page": 1, "limit": limit},
            }
            result = self.call(method, page_params, version=3).result
            rows = result.get(list_key) if isinstance(result, Mapping) else None
            if not isinstance(rows, list) or not rows:
                return
            yield rows
            largest = max(largest, len(rows))
            if len(rows) < largest:
                return
            next_last = rows[-1].get(id_key) if isinstance(rows[-1], Mapping) else None
            if next_last is None or next_last == last:
                return
            last = next_last

    def close(self) -> None:
        """Close the HTTP session."""
        self.session.close()

    def __enter__(self) -> Bitrix24Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _transport_error(
    exc: requests.RequestException, *, method: str, request_id: str, timeout: float
) -> TransportError:
    """Map a `requests` failure to a TransportError that says whether the request may have reached the portal.

    The order of the checks matters: ConnectTimeout is also a ConnectionError and a Timeout, and SSLError is a
    ConnectionError.
    """
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        text, code, maybe_executed = f"connect timeout: {exc}", "CONNECT_TIMEOUT", False
    elif isinstance(exc, requests.exceptions.Timeout):
        text, code, maybe_executed = f"read timeout after {timeout} s: {exc}", "TIMEOUT", True
    elif isinstance(exc, requests.exceptions.SSLError):
        text, code, maybe_executed = f"TLS error: {exc}", "TLS_ERROR", not _tls_handshake_failed(exc)
    elif isinstance(exc, requests.exceptions.ConnectionError):
        refused = _connection_refused(exc)
        text = f"{'connection refused' if refused else 'connection error'}: {exc}"
        code, maybe_executed = ("CONNECTION_REFUSED", False) if refused else ("CONNECTION_ERROR", True)
    else:
        text, code, maybe_executed = f"transport error: {exc}", "TRANSPORT_ERROR", True
    return TransportError(
        text, code=code, method=method, request_id=request_id, maybe_executed=maybe_executed
    )


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception it wraps (urllib3 keeps the cause in ``reason`` or ``args[0]``)."""
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        yield node
        reason = getattr(node, "reason", None)
        if isinstance(reason, BaseException) and id(reason) not in seen:
            node = reason
            continue
        node = (
            node.__cause__
            or node.__context__
            or (node.args[0] if node.args and isinstance(node.args[0], BaseException) else None)
        )


def _connection_refused(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the connection was never established, so nothing reached the portal."""
    return any(
        isinstance(node, ConnectionRefusedError)
        or type(node).__name__ in ("NewConnectionError", "NameResolutionError")
        for node in _chain(exc)
    )


def _tls_handshake_failed(exc: requests.exceptions.SSLError) -> bool:
    """True when the certificate was refused, i.e. before any request byte was sent. urllib3 also reports a
    TLS stream that breaks while the answer is read as an SSLError; then the request may have run."""
    return any(isinstance(node, ssl.SSLCertVerificationError) for node in _chain(exc))


_LIMIT_CODES = frozenset({"OPERATION_TIME_LIMIT", "QUERY_LIMIT_EXCEEDED", "OVERLOAD_LIMIT"})


def _is_limit_refusal(result: CommandResult) -> bool:
    return (
        result.outcome == "error" and result.error is not None and result.error.code.upper() in _LIMIT_CODES
    )


def _limit_refused(segment: Sequence[Command], results: Sequence[CommandResult], halt: bool) -> list[Command]:
    """Commands of a v2 batch that the portal refused on a limit and that can be resent safely.

    With halt, everything from the first refused command on did not run. Commands are resent only if none of
    them references a command outside the resent set (its ``$result`` would no longer resolve).
    """
    if halt:
        first = next((i for i, r in enumerate(results) if _is_limit_refusal(r)), None)
        if first is None or any(r.outcome not in ("not_executed",) for r in results[first + 1 :]):
            return []
        redo = list(segment[first:])
    else:
        redo = [c for c, r in zip(segment, results, strict=True) if _is_limit_refusal(r)]
    keys = {c.key for c in redo}
    by_index = {c.index: c for c in segment}
    for c in redo:
        for target in (r.target for r in iter_result_refs(c.params)):
            key = by_index[target].key if isinstance(target, int) and target in by_index else str(target)
            if key not in keys:
                return []
    return redo


def _mark_limit_refused(result: CommandResult) -> CommandResult:
    """A command refused on a limit did not run: report it as ``not_executed`` (its error is kept)."""
    return replace(result, outcome="not_executed") if _is_limit_refusal(result) else result


def _batch_failure_outcome(exc: Bitrix24Error, idempotent: bool, version: int) -> Outcome:
    """What a batch that failed as a whole means for each of its commands."""
    outcome = _outcome_of(exc, idempotent)
    if version == 3 and not idempotent and isinstance(exc, ApiError):
        # §5.6: a failing command fails the whole v3 batch, and the answer does not say which one failed;
        # commands before it may have been applied (nothing documents a rollback), so writes are unknown for
        # the caller to verify. A command's own error may also be an access or scope error with HTTP 401/403
        # (§2.3, §9.3), which is not a refusal of the request: the BITRIX_REST_V3_ code tells them apart.
        command_level = exc.code.upper().startswith("BITRIX_REST_V3_")
        if command_level or (outcome == "error" and type(exc) is ApiError):
            return "unknown"
    return outcome


def _outcome_of(exc: Bitrix24Error, idempotent: bool) -> Outcome:
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
