"""How a request proves who sends it: webhook URLs, OAuth credentials and tokens; I/O only to refresh a token.

* A webhook carries its secret in the URL path (``/rest/<user_id>/<code>/``, §1.2): :func:`webhook_address`
  parses and checks it, and :class:`WebhookAuth` adds nothing to a request.
* An OAuth application sends its access token with every request (§1.3): :class:`OAuthAuth` signs each request
  (like a requests ``AuthBase``), refreshes a token known to be expired before use, and refreshes once for all
  threads when the portal answers ``expired_token``/``invalid_token`` (§6.2), handing the new tokens to
  ``on_token_refresh``. The token request goes out through the ``post_form`` it is given (the transport's).

Every secret is registered for masking (:func:`bitrix24_source.errors.register_secret`) as soon as it is known.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import threading
import time as _time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from bitrix24_source.client.result import StatsCounter
from bitrix24_source.errors import (
    AuthError,
    ConfigError,
    MaskingFilter,
    TransportError,
    error_from_response,
    mask,
    register_secret,
)

__all__ = [
    "DEFAULT_TOKEN_URL",
    "Auth",
    "OAuthAuth",
    "OAuthCredentials",
    "OAuthTokens",
    "PortalAddress",
    "WebhookAuth",
    "oauth_address",
    "require_secure",
    "webhook_address",
]

logger = logging.getLogger(__name__)
logger.addFilter(MaskingFilter())

DEFAULT_TOKEN_URL = "https://oauth.bitrix.info/oauth/token/"
_WEBHOOK_PATH = re.compile(r"^(?P<prefix>.*?)/rest/(?:api/)?(?P<uid>\d+)/(?P<code>[^/]+)/?$")
_REFRESH_CODES = frozenset({"EXPIRED_TOKEN", "INVALID_TOKEN"})
_EXPIRY_MARGIN = 5.0  # seconds before `expires` at which a token counts as expired

PostForm = Callable[[str, Mapping[str, str]], requests.Response]


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


# ---------------------------------------------------------------------------------------------------------------
# Portal addresses


@dataclass(frozen=True, slots=True)
class PortalAddress:
    """Where a client sends its requests.

    Attributes:
        v2_base: base URL of v2 methods, ending in ``/`` (the method name is appended).
        v3_base: base URL of v3 methods (``…/rest/api/…``).
        portal_key: ``"<host>|<caller>"``, the key of the shared limiter (:func:`~.limits.limiter_for`).
    """

    v2_base: str
    v3_base: str
    portal_key: str


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_secure(url: str, what: str) -> None:
    """Refuse a URL that would carry a secret in clear text: https only, plain http only to loopback hosts.

    Raises:
        ConfigError: naming ``what`` and the masked URL.
    """
    parts = urlsplit(url)
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return
    raise ConfigError(f"{what} must use https (plain http is allowed only for loopback hosts): {mask(url)}")


def webhook_address(url: str) -> PortalAddress:
    """The v2/v3 bases and limiter key of an incoming webhook URL (the ``/rest/api/…`` form is accepted too).

    Raises:
        ConfigError: not a webhook URL, or not secure (see :func:`require_secure`).
    """
    parts = urlsplit(url.strip())
    match = _WEBHOOK_PATH.match(parts.path)
    if not parts.scheme or not parts.netloc or match is None:
        raise ConfigError("webhook_url must look like https://<portal>/rest/<user_id>/<code>/")
    register_secret(match["code"])
    require_secure(url, "webhook_url")
    prefix, uid, code = match["prefix"], match["uid"], match["code"]
    v2 = urlunsplit((parts.scheme, parts.netloc, f"{prefix}/rest/{uid}/{code}/", "", ""))
    v3 = urlunsplit((parts.scheme, parts.netloc, f"{prefix}/rest/api/{uid}/{code}/", "", ""))
    return PortalAddress(v2, v3, f"{parts.netloc.lower()}|user{uid}")


def oauth_address(creds: OAuthCredentials) -> PortalAddress:
    """The v2/v3 bases and limiter key of an OAuth application on its portal (``client_endpoint``).

    Registers the credentials' secrets for masking first.

    Raises:
        ConfigError: ``client_endpoint`` or ``token_url`` not secure (see :func:`require_secure`).
    """
    for secret in (creds.client_secret, creds.access_token, creds.refresh_token):
        register_secret(secret)
    require_secure(creds.client_endpoint, "client_endpoint")
    require_secure(creds.token_url, "token_url")
    base = creds.client_endpoint.rstrip("/") + "/"
    return PortalAddress(base, base + "api/", f"{urlsplit(base).netloc.lower()}|app:{creds.client_id}")


# ---------------------------------------------------------------------------------------------------------------
# Signing requests


class Auth:
    """What a request carries to prove its sender. The defaults add nothing: they suit a webhook (:class:`WebhookAuth`)."""

    kind = "webhook"

    @property
    def tokens(self) -> OAuthTokens | None:
        """Current OAuth tokens (None without OAuth)."""
        return None

    def fresh_token(self) -> str | None:
        """The token the next request will carry, refreshed first when it is known to be expired."""
        return None

    def sign(self, body: Any, headers: dict[str, str], *, keyed: bool) -> Any:
        """Add the credentials to a request: returns the body to send and may add to ``headers``.

        Args:
            body: the JSON-able body.
            headers: the request's headers, updated in place.
            keyed: the request carries an ``Idempotency-Key``, so its body must stay identical across resends.
        """
        return body

    def renew_after(self, error: AuthError, used_token: str | None) -> bool:
        """Renew the credentials after the portal refused ``used_token``; True when the request may be resent."""
        return False


class WebhookAuth(Auth):
    """A webhook's secret is already in the URL path (§1.2): nothing to add, nothing to renew."""


class OAuthAuth(Auth):
    """OAuth access token on every request, refreshed when expired or refused (§1.3, §6.2).

    Args:
        creds: the application's credentials.
        post_form: sends the token request (a form POST) and returns the answer; raises ``requests`` errors.
        stats: counts refreshes.
        on_token_refresh: called with the new :class:`OAuthTokens` after every refresh, to persist them.
    """

    kind = "oauth"

    def __init__(
        self,
        creds: OAuthCredentials,
        *,
        post_form: PostForm,
        stats: StatsCounter,
        on_token_refresh: Callable[[OAuthTokens], None] | None,
    ) -> None:
        self.creds = creds
        self.on_token_refresh = on_token_refresh
        self._post_form = post_form
        self._stats = stats
        self._lock = threading.Lock()
        self._tokens = OAuthTokens(
            creds.access_token,
            creds.refresh_token,
            expires=creds.expires,
            client_endpoint=creds.client_endpoint.rstrip("/") + "/",
        )

    @property
    def tokens(self) -> OAuthTokens:
        return self._tokens

    def fresh_token(self) -> str:
        token = self._tokens.access_token
        expires = self._tokens.expires
        if expires is not None and expires <= _time.time() + _EXPIRY_MARGIN:
            # A token known to be expired is refreshed before use instead of spending a request on a 401.
            self.refresh(token)
            token = self._tokens.access_token
        return token

    def sign(self, body: Any, headers: dict[str, str], *, keyed: bool) -> Any:
        token = self._tokens.access_token
        # A keyed request must resend the identical body (§1.6: same key + other body = 422), so its token,
        # which a refresh may change between attempts, goes in the header.
        if isinstance(body, Mapping) and not keyed:
            return {**body, "auth": token}
        # §1.3: the v3 batch body is a bare array, so the token travels in the Authorization header.
        headers["Authorization"] = f"Bearer {token}"
        return body

    def renew_after(self, error: AuthError, used_token: str | None) -> bool:
        if used_token is None or error.code.upper() not in _REFRESH_CODES:
            return False
        self.refresh(used_token)
        return True

    def refresh(self, stale_access_token: str) -> None:
        """Refresh the tokens once for all threads that saw ``stale_access_token`` fail (§1.3).

        Raises:
            TransportError: the token server could not be reached.
            AuthError: the token server refused or answered without an access token.
        """
        with self._lock:
            if self._tokens.access_token != stale_access_token:
                return  # another thread refreshed while we waited for the lock
            # A form POST keeps the refresh token and client secret out of URLs and access logs (b24jssdk does
            # the same; the documented GET works too, §1.3).
            form = {
                "grant_type": "refresh_token",
                "client_id": self.creds.client_id,
                "client_secret": self.creds.client_secret,
                "refresh_token": self._tokens.refresh_token,
            }
            try:
                response = self._post_form(self.creds.token_url, form)
            except requests.RequestException as exc:
                raise TransportError(
                    f"token refresh failed: {exc}", code="TOKEN_REFRESH_FAILED", maybe_executed=True
                ) from None
            tokens = self._tokens_from(response)
            self._tokens = tokens
            self._stats.add(token_refreshes=1)
            logger.info("OAuth tokens refreshed")
            if self.on_token_refresh is not None:
                self.on_token_refresh(tokens)

    def _tokens_from(self, response: requests.Response) -> OAuthTokens:
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
        access = str(body["access_token"])
        refresh = str(body.get("refresh_token") or self._tokens.refresh_token)
        register_secret(access)
        register_secret(refresh)
        expires = body.get("expires")
        return OAuthTokens(
            access_token=access,
            refresh_token=refresh,
            expires=float(expires) if isinstance(expires, (int, float)) else None,
            client_endpoint=self._tokens.client_endpoint,
            raw=dict(body),
        )
