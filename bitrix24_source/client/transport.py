"""The HTTP transport: sends one request once over a pooled ``requests`` session; all of the client's network I/O.

:class:`Transport` encodes the JSON body (:func:`encode_json`), posts it, follows a renamed portal's redirect
once (§1.6), decodes the answer and maps it to an error (:func:`bitrix24_source.errors.error_from_response`).
A ``requests`` failure becomes a :class:`~bitrix24_source.errors.TransportError` that says whether the request
may have reached the portal (:func:`transport_error`). Nothing here retries or waits: what may be resent is
decided by :mod:`bitrix24_source.client.retry`.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import socket
import ssl
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from bitrix24_source.client.auth import Auth, PortalAddress, require_secure
from bitrix24_source.client.result import StatsCounter
from bitrix24_source.errors import (
    ApiError,
    ConfigError,
    MaskingFilter,
    TransportError,
    error_from_response,
    mask,
)

__all__ = ["Response", "Transport", "decode_answer", "encode_json", "transport_error"]

logger = logging.getLogger(__name__)
logger.addFilter(MaskingFilter())
# urllib3 logs request lines (webhook code in the path) at DEBUG: they are masked like every other log line.
logging.getLogger("urllib3.connectionpool").addFilter(MaskingFilter())

_REDIRECTS = (301, 302, 307, 308)


@dataclass(slots=True)
class Response:
    """A decoded successful answer: HTTP status and JSON body."""

    status: int
    body: Any


class Transport:
    """One session to one portal: sends each request once, follows a portal move, maps failures to errors.

    Args:
        address: where requests go (updated when the portal moves).
        session: a ``requests.Session`` to use; by default a pooled one without ``requests``' own retries.
        verify: TLS verification: True, False, or a CA bundle path.
        timeout: seconds per HTTP request (connect and read).
        pool_size: connections kept per host.
        stats: counts every HTTP request.
    """

    def __init__(
        self,
        address: PortalAddress,
        *,
        session: requests.Session | None,
        verify: bool | str,
        timeout: float,
        pool_size: int,
        stats: StatsCounter,
    ) -> None:
        self.v2_base = address.v2_base
        self.v3_base = address.v3_base
        self.timeout = timeout
        self.session = session or requests.Session()
        if session is None:
            # requests' own retries are off: the retry policy decides what may be resent (§6.6).
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
            self.session.mount("https://", adapter)
            self.session.mount("http://", adapter)
        self.session.headers.update({"Accept": "application/json", "User-Agent": "bitrix24-dlt/0.1"})
        # Passed on every request: a session-level `verify` loses to REQUESTS_CA_BUNDLE in requests' merging.
        self._verify = verify
        self._stats = stats
        self._move_lock = threading.Lock()

    def send(
        self,
        version: int,
        method: str,
        body: Any,
        request_id: str,
        *,
        auth: Auth,
        telemetry: bool,
        idempotency_key: str | None = None,
    ) -> Response:
        """POST ``body`` to ``method`` once (and once more to a moved portal's new address).

        Args:
            version: 2 (``/rest/…``) or 3 (``/rest/api/…``).
            method: REST method name, already checked.
            body: the JSON-able body; ``auth`` may add its token to it.
            request_id: sent as ``X-Request-ID`` (and ``bx24_request_id`` with ``telemetry``).
            auth: signs the request.
            telemetry: send ``bx24_request_id`` in the query string.
            idempotency_key: the v3 ``Idempotency-Key`` header (§1.6).

        Raises:
            Bitrix24Error: the portal's error, or a TransportError when no usable answer came back.
            ConfigError: the body cannot be sent as JSON.
        """
        headers = {"Content-Type": "application/json; charset=utf-8", "X-Request-ID": request_id}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        signed = auth.sign(body, headers, keyed=idempotency_key is not None)
        query = {"bx24_request_id": request_id} if telemetry else None
        return self._post(version, method, encode_json(signed), headers, query, request_id, moved=False)

    def _post(
        self,
        version: int,
        method: str,
        data: bytes,
        headers: Mapping[str, str],
        query: Mapping[str, str] | None,
        request_id: str,
        *,
        moved: bool,
    ) -> Response:
        base = self.v3_base if version == 3 else self.v2_base
        url = base + method
        self._stats.add(http_requests=1)
        try:
            response = self.session.post(
                url,
                data=data,
                params=query,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
                verify=self._verify,
            )
        except requests.RequestException as exc:
            raise transport_error(exc, method=method, request_id=request_id, timeout=self.timeout) from None
        status = response.status_code
        if status in _REDIRECTS:
            location = response.headers.get("Location", "")
            if not moved and self.follow_move(location, base):
                # §1.6: the old address answers before running anything, so re-POSTing is safe for writes too.
                return self._post(version, method, data, headers, query, request_id, moved=True)
            raise ApiError(
                f"the portal moved to {response.headers.get('Location', '?')} (§1.6) and the new address "
                "could not be followed; use the new address",
                code="PORTAL_MOVED",
                http_status=status,
                method=method,
                request_id=request_id,
                category="access",
            )
        logger.debug("POST %s -> HTTP %s [request_id=%s]", url, status, request_id)
        return decode_answer(status, response.content, method=method, request_id=request_id)

    def follow_move(self, location: str, base: str) -> bool:
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
            require_secure(location, "the moved portal address")
        except ConfigError:
            return False
        with self._move_lock:
            self.v2_base = urlunsplit((new.scheme, new.netloc, urlsplit(self.v2_base).path, "", ""))
            self.v3_base = urlunsplit((new.scheme, new.netloc, urlsplit(self.v3_base).path, "", ""))
        logger.warning("the portal moved (§1.6): now using %s", mask(self.v2_base))
        return True

    def post_form(self, url: str, form: Mapping[str, str]) -> requests.Response:
        """POST a form (the OAuth token request) and return the raw answer; ``requests`` errors propagate."""
        self._stats.add(http_requests=1)
        return self.session.post(url, data=form, timeout=self.timeout, verify=self._verify)

    def close(self) -> None:
        self.session.close()


# ---------------------------------------------------------------------------------------------------------------
# JSON bodies and answers

_NON_FINITE = (
    "holds NaN or an infinite number, which JSON cannot carry (PHP would refuse the whole body and, for v2, "
    "run the method with no parameters at all, §1.5)"
)


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


def encode_json(body: Any) -> bytes:
    """The UTF-8 JSON of a request body; dates as ISO text, ``Decimal`` as text, sets and tuples as lists.

    Raises:
        ConfigError: a value JSON cannot carry (NaN, infinity, other types, lone surrogates, cycles).
    """
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


def decode_answer(status: int, content: bytes, *, method: str, request_id: str) -> Response:
    """The decoded answer to a request, or the error it carries (:func:`~bitrix24_source.errors.error_from_response`).

    An empty 5xx body is the server's failure without details; any other body that is not JSON is an answer
    cut short, after which the request may have run.

    Raises:
        Bitrix24Error: the error the answer reports.
        TransportError: the answer is not JSON (``maybe_executed``).
    """
    try:
        payload = json.loads(content)
    except ValueError:
        if status >= 500 and not content.strip():
            payload = {}
        else:
            raise TransportError(
                f"answer is not valid JSON (HTTP {status}, {len(content)} bytes; truncated?)",
                code="INVALID_JSON",
                http_status=status,
                method=method,
                request_id=request_id,
                maybe_executed=True,
            ) from None
    error = error_from_response(status, payload, method=method, request_id=request_id)
    if error is not None:
        raise error
    return Response(status, payload)


# ---------------------------------------------------------------------------------------------------------------
# requests failures


def transport_error(
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
    elif isinstance(exc, requests.exceptions.ConnectionError) and _name_not_resolved(exc):
        host = urlsplit(exc.request.url).hostname if exc.request is not None and exc.request.url else None
        text = f"cannot resolve the portal's host name {host or ''}".rstrip()
        code, maybe_executed = "DNS_ERROR", False
    elif isinstance(exc, requests.exceptions.ConnectionError):
        refused = _connection_refused(exc)
        if refused:
            # urllib3's repr (pool, path with the webhook, retries) says nothing the host and port do not
            url = urlsplit(exc.request.url) if exc.request is not None and exc.request.url else None
            where = f" by {url.hostname}:{url.port or (443 if url.scheme == 'https' else 80)}" if url else ""
            text = f"connection refused{where}: the portal is down or the URL is wrong"
        else:
            text = f"connection error: {exc}"
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


def _name_not_resolved(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the host name did not resolve (urllib3's NameResolutionError, or the socket.gaierror under
    it): nothing was sent, and no retry will help until the name or the network is fixed."""
    return any(
        type(node).__name__ == "NameResolutionError" or isinstance(node, socket.gaierror)
        for node in _chain(exc)
    )


def _tls_handshake_failed(exc: requests.exceptions.SSLError) -> bool:
    """True when the certificate was refused, i.e. before any request byte was sent. urllib3 also reports a
    TLS stream that breaks while the answer is read as an SSLError; then the request may have run."""
    return any(isinstance(node, ssl.SSLCertVerificationError) for node in _chain(exc))
