"""The exception tree of the Bitrix24 client, and the one function that maps a response to it.

::

    Bitrix24Error                 code, description, http_status, method, command_key, index, request_id
    ├── ConfigError               bad arguments or settings, found before anything is sent (also a ValueError)
    ├── TransportError            no usable HTTP answer: refused, timeout, reset, truncated/invalid JSON
    └── ApiError                  the portal answered with an error envelope (§2.2 v2, §2.3 v3)
        ├── AuthError             401/403 auth and scope errors, OAuth token-server errors (§1.3)
        ├── RateLimitError        503 QUERY_LIMIT_EXCEEDED / OVERLOAD_LIMIT, 429 OPERATION_TIME_LIMIT (§6.1)
        ├── ServerError           5xx without a more specific class (INTERNAL_SERVER_ERROR, …)
        └── BatchCommandError     one command inside a batch failed (its ``result_error`` entry, §4.2)

Codes are data, not classes: :data:`CODE_CATEGORIES` maps a Bitrix error code to a category string
(``auth``, ``rate_limit``, ``not_found``, ``validation``, ``access``, ``method``, ``server``, ``batch``), which
callers (the destination) use to tell permanent errors from transient ones via :attr:`Bitrix24Error.permanent`.

Secrets never leak: every webhook code and token the client knows is registered with
:func:`register_secret`; :func:`mask` replaces them by ``***`` and every error's ``str()``/``repr()`` goes
through it, as does every log record of the client's loggers (:class:`MaskingFilter`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

__all__ = [
    "CODE_CATEGORIES",
    "ApiError",
    "AuthError",
    "BatchCommandError",
    "Bitrix24Error",
    "ConfigError",
    "MaskingFilter",
    "RateLimitError",
    "ServerError",
    "TransportError",
    "error_from_response",
    "mask",
    "register_secret",
]

_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()
_MASK = "***"
# Shorter strings would mask ordinary words; real webhook codes and tokens are 16+ characters.
_MIN_SECRET_LEN = 6


def register_secret(secret: str | None) -> None:
    """Remember a secret (webhook code, access/refresh token, client secret) so that :func:`mask` hides it."""
    if secret and len(secret) >= _MIN_SECRET_LEN:
        with _SECRETS_LOCK:
            _SECRETS.add(secret)


def mask(text: str) -> str:
    """Return ``text`` with every registered secret replaced by ``***``."""
    with _SECRETS_LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, _MASK)
    return text


class MaskingFilter(logging.Filter):
    """Logging filter that renders the record's message and masks registered secrets in it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask(message)
        if masked != message or record.args:
            record.msg = masked
            record.args = None
        return True


# Bitrix error code (upper-cased) -> category. Sources: §2.2, §2.3, §6.2.
CODE_CATEGORIES: dict[str, str] = {
    "NO_AUTH_FOUND": "auth",
    "EXPIRED_TOKEN": "auth",
    "INVALID_TOKEN": "auth",
    "INSUFFICIENT_SCOPE": "auth",
    "INVALID_CREDENTIALS": "auth",
    "AUTHORIZATION_ERROR": "auth",
    "APPLICATION_NOT_FOUND": "auth",
    "ERROR_OAUTH": "auth",
    "PAYMENT_REQUIRED": "auth",
    "INVALID_GRANT": "auth",
    "INVALID_CLIENT": "auth",
    "WRONG_CLIENT": "auth",
    "METHOD_CONFIRM_WAITING": "auth",
    "METHOD_CONFIRM_DENIED": "auth",
    "ACCESS_DENIED": "access",
    "USER_ACCESS_ERROR": "access",
    "ALLOWED_ONLY_INTRANET_USER": "access",
    "WRONG_AUTH_TYPE": "access",
    "PORTAL_DELETED": "access",
    "BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION": "access",
    "BITRIX_REST_V3_EXCEPTION_INSUFFICIENTSCOPEEXCEPTION": "access",
    "QUERY_LIMIT_EXCEEDED": "rate_limit",
    "OVERLOAD_LIMIT": "rate_limit",
    "OPERATION_TIME_LIMIT": "rate_limit",
    "ERROR_METHOD_NOT_FOUND": "method",
    "BITRIX_REST_V3_EXCEPTION_METHODNOTFOUNDEXCEPTION": "method",
    "ERROR_BATCH_METHOD_NOT_ALLOWED": "batch",
    "ERROR_BATCH_LENGTH_EXCEEDED": "batch",
    "NOT_FOUND": "not_found",
    "ERROR_ENTITY_NOT_FOUND": "not_found",
    "BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION": "not_found",
    "INTERNAL_SERVER_ERROR": "server",
    "ERROR_UNEXPECTED_ANSWER": "server",
    "BITRIX_REST_V3_EXCEPTION_INTERNAL_INTERNALEXCEPTION": "server",
}

# Categories that do not go away by retrying the same request.
_PERMANENT_CATEGORIES = frozenset({"validation", "not_found", "access", "method", "batch"})


def category_of(code: str, http_status: int | None) -> str:
    """Category of an error code (see :data:`CODE_CATEGORIES`); unknown codes fall back on the HTTP status.

    Unknown codes with a 4xx status (``""``, ``"0"``, ``"100"``, ``ERROR_CORE``, ``INVALID_ARG_VALUE``, v3
    validation codes…) are method-level validation errors (§2.2, §2.3).
    """
    known = CODE_CATEGORIES.get(code.upper())
    if known is not None:
        return known
    if http_status is not None:
        if http_status in (401,):
            return "auth"
        if http_status == 403:
            return "access"
        if http_status in (429, 503):
            return "rate_limit"
        if http_status >= 500:
            return "server"
    return "validation"


class Bitrix24Error(Exception):
    """Root of every error raised by the client.

    Attributes:
        code: Bitrix error code as sent (``""`` is a real code, §2.2), or a client code such as ``TIMEOUT``.
        description: Human-readable text (masked).
        http_status: HTTP status of the response, or None when there was none.
        method: REST method of the call or of the batch command.
        command_key: key of the batch command, when the error belongs to one.
        index: input position of the batch command, when the error belongs to one.
        request_id: the request id sent with the request (``bx24_request_id``).
        category: see :data:`CODE_CATEGORIES`.
    """

    def __init__(
        self,
        description: str,
        *,
        code: str = "",
        http_status: int | None = None,
        method: str | None = None,
        command_key: str | None = None,
        index: int | None = None,
        request_id: str | None = None,
        category: str | None = None,
        body: Any = None,
    ) -> None:
        self.description = mask(description)
        self.code = code
        self.http_status = http_status
        self.method = method
        self.command_key = command_key
        self.index = index
        self.request_id = request_id
        self.category = category if category is not None else category_of(code, http_status)
        self.body = body
        super().__init__(self.description)

    @property
    def permanent(self) -> bool:
        """True when retrying the same request cannot succeed (validation, not found, access, …)."""
        return self.category in _PERMANENT_CATEGORIES

    def __str__(self) -> str:
        parts = []
        if self.method:
            parts.append(self.method)
        if self.command_key is not None:
            parts.append(f"command {self.command_key!r}")
        if self.index is not None:
            parts.append(f"#{self.index}")
        head = " ".join(parts)
        status = f" (HTTP {self.http_status})" if self.http_status is not None else ""
        code = f"[{self.code}] " if self.code or self.http_status is not None else ""
        rid = f" [request_id={self.request_id}]" if self.request_id else ""
        text = (
            f"{head}: {code}{self.description}{status}{rid}"
            if head
            else f"{code}{self.description}{status}{rid}"
        )
        return mask(text)

    def __repr__(self) -> str:
        return mask(
            f"{type(self).__name__}(code={self.code!r}, description={self.description!r}, "
            f"http_status={self.http_status!r}, method={self.method!r}, command_key={self.command_key!r}, "
            f"request_id={self.request_id!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keeps the error picklable (dlt hands exceptions between threads/processes).
        return (_rebuild, (type(self), self.description, self.__dict__.copy()))


def _rebuild(cls: type[Bitrix24Error], description: str, state: dict[str, Any]) -> Bitrix24Error:
    error = cls.__new__(cls)
    Exception.__init__(error, description)
    error.__dict__.update(state)
    return error


class ConfigError(Bitrix24Error, ValueError):
    """Invalid arguments or settings, detected before any request is sent."""

    def __init__(self, description: str, **kwargs: Any) -> None:
        kwargs.setdefault("code", "CONFIG_ERROR")
        kwargs.setdefault("category", "config")
        super().__init__(description, **kwargs)

    @property
    def permanent(self) -> bool:
        return True


class TransportError(Bitrix24Error):
    """No usable HTTP answer.

    Attributes:
        maybe_executed: False when the request certainly did not reach the portal (connection refused, DNS),
            True when it may have been executed (timeout after sending, connection reset, truncated or
            non-JSON body). Writes that end with ``maybe_executed=True`` must not be resent blindly (§6.6).
    """

    def __init__(self, description: str, *, maybe_executed: bool, **kwargs: Any) -> None:
        kwargs.setdefault("category", "transport")
        super().__init__(description, **kwargs)
        self.maybe_executed = maybe_executed


class ApiError(Bitrix24Error):
    """The portal answered with an error envelope."""


class AuthError(ApiError):
    """Authentication or authorization failed (401/403, token-server errors)."""


class RateLimitError(ApiError):
    """The portal refused the request because of a limit; it was not executed (§6.1)."""


class ServerError(ApiError):
    """A 5xx answer; the request may or may not have been executed."""


class BatchCommandError(ApiError):
    """One command of a batch failed; carries that command's key, position and method."""


def _class_for(category: str, http_status: int | None) -> type[ApiError]:
    if category == "auth" or (category == "access" and http_status in (401, 403)):
        return AuthError
    if category == "rate_limit":
        return RateLimitError
    if category == "server" or (http_status is not None and http_status >= 500):
        return ServerError
    return ApiError


def error_from_response(
    http_status: int | None,
    body: Any,
    *,
    method: str | None = None,
    request_id: str | None = None,
    command_key: str | None = None,
    index: int | None = None,
    in_batch: bool = False,
) -> ApiError | None:
    """Map an HTTP status and decoded JSON body to an error, or None when the body is a success.

    An error is present whenever the ``error`` key exists, even when its value is ``""`` or ``"0"`` (§2.2;
    b24jssdk's truthiness check is a bug we do not copy). Both envelopes are read on both API versions (§2.3):
    v2 ``{"error": "CODE", "error_description": "…"}`` and v3 ``{"error": {"code", "message", "validation"}}``.
    A non-2xx status without an ``error`` key is still an error (code ``HTTP_<status>``).

    Args:
        http_status: HTTP status (for batch command errors: the status of the outer batch response).
        body: the decoded JSON body, or one ``result_error`` entry of a v2 batch.
        method: REST method (the command's method for batch commands).
        request_id: request id sent with the request.
        command_key: batch command key; with ``in_batch`` the result is a :class:`BatchCommandError`.
        index: input position of the batch command.
        in_batch: build a :class:`BatchCommandError` (a ``result_error`` entry of a v2 batch).
    """
    code: str | None = None
    description = ""
    bodyless = False
    if isinstance(body, Mapping) and "error" in body:
        raw = body["error"]
        if isinstance(raw, Mapping):
            code = str(raw.get("code", ""))
            description = str(raw.get("message", ""))
            validation = raw.get("validation")
            if isinstance(validation, list):
                details = [str(v.get("message", v)) if isinstance(v, Mapping) else str(v) for v in validation]
                if details:
                    description = ". ".join([description, *details]) if description else ". ".join(details)
        else:
            code = "" if raw is None else str(raw)
            description = str(body.get("error_description", "") or "")
    elif isinstance(body, str) and in_batch:
        # b24jssdk accepts a bare string as a result_error entry (§4.6); treat it as the code.
        code, description = body, ""
    elif http_status is not None and not 200 <= http_status < 300:
        code = f"HTTP_{http_status}"
        description = f"HTTP {http_status} without a Bitrix error body"
        bodyless = True
    if code is None:
        return None
    category = category_of(code, None if in_batch else http_status)
    if bodyless and category == "rate_limit":
        # Only the portal's own QUERY_LIMIT_EXCEEDED / OPERATION_TIME_LIMIT answer proves the method did not
        # run (§6.5); a bare 503/429 may come from a proxy after the request went through: a write is unknown.
        category = "server"
    cls: type[ApiError] = BatchCommandError if in_batch else _class_for(category, http_status)
    return cls(
        description or code or "error without description",
        code=code,
        http_status=http_status,
        method=method,
        command_key=command_key,
        index=index,
        request_id=request_id,
        category=category,
        body=body,
    )
