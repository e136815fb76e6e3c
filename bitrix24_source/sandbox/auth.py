"""Webhook and OAuth authentication of the sandbox portal (§1.1–§1.3, §2.2).

* Webhook: ``/rest/{user_id}/{code}/…``; a wrong user id or code gives 401 ``NO_AUTH_FOUND``
  "Wrong authorization data".
* OAuth: ``/rest/{method}`` with the access token in ``auth`` (body or query) or ``Authorization: Bearer``;
  an expired token gives 401 ``expired_token``, an unknown one 401 ``invalid_token``, none at all 401
  ``NO_AUTH_FOUND``.
* The token endpoint ``/oauth/token/`` takes ``grant_type=refresh_token`` with ``client_id``,
  ``client_secret`` and ``refresh_token`` as a GET query or a form POST (§1.3) and returns the token JSON.
  Tokens rotate: every refresh issues a new access token *and* a new refresh token, and the old refresh
  token stops working. An old access token stays valid until its own expiry, as on the cloud.

Secrets never appear in reprs or exception texts: a test's failure output or a log must not carry them.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bitrix24_source.sandbox.types import ApiError

SCOPE = "crm,task,user,user_brief,entity"


def _mask(value: str) -> str:
    return value[:4] + "…" if value else ""


@dataclass(frozen=True, slots=True)
class OAuthApp:
    """The OAuth application a test or demo can use against the sandbox (a snapshot; tokens rotate).

    Attributes:
        client_id: application id.
        client_secret: application secret.
        access_token: the current access token.
        refresh_token: the current refresh token.
        client_endpoint: REST base for OAuth calls, ``<base>/rest/``.
        token_url: the refresh endpoint, ``<base>/oauth/token/``.
        expires: unix time when ``access_token`` expires.
    """

    client_id: str
    client_secret: str = field(repr=False)
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    client_endpoint: str
    token_url: str
    expires: float = 0.0

    def __repr__(self) -> str:
        return (
            f"OAuthApp(client_id={self.client_id!r}, client_secret='***', access_token="
            f"{_mask(self.access_token)!r}, refresh_token='***', client_endpoint={self.client_endpoint!r}, "
            f"token_url={self.token_url!r})"
        )


class TokenError(Exception):
    """A token-endpoint error (§1.3): rendered as ``{"error", "error_description"}``."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status


class AuthManager:
    """Holds the webhook code, the OAuth application and its tokens; checks and refreshes credentials.

    Args:
        webhook_code: the secret path segment of the webhook URL; random when None.
        user_id: the webhook's user id.
        access_token_ttl: lifetime of an access token in seconds.
        scope: the comma-separated scopes reported by the token endpoint.
        clock: wall clock (unix seconds).
    """

    def __init__(
        self,
        *,
        webhook_code: str | None = None,
        user_id: int = 1,
        access_token_ttl: float = 3600.0,
        scope: str = SCOPE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.webhook_code = webhook_code or secrets.token_hex(8)
        self.user_id = user_id
        self.ttl = access_token_ttl
        self.scope = scope
        self._clock = clock
        self._lock = threading.Lock()
        self.client_id = "local.sandbox" + secrets.token_hex(6)
        self.client_secret = secrets.token_urlsafe(24)
        self.member_id = secrets.token_hex(16)
        self._access: dict[str, float] = {}  # access token -> expiry
        self._refresh = ""
        self._current_access = ""
        self._issue()

    def __repr__(self) -> str:
        return f"AuthManager(user_id={self.user_id}, client_id={self.client_id!r})"

    def _issue(self) -> None:
        token = secrets.token_hex(24)
        self._access[token] = self._clock() + self.ttl
        self._current_access = token
        self._refresh = secrets.token_hex(24)

    @property
    def access_token(self) -> str:
        with self._lock:
            return self._current_access

    @property
    def refresh_token(self) -> str:
        with self._lock:
            return self._refresh

    def access_expires(self) -> float:
        with self._lock:
            return self._access.get(self._current_access, 0.0)

    def check_webhook(self, user_id: str, code: str) -> None:
        """Raise 401 ``NO_AUTH_FOUND`` unless ``user_id``/``code`` name this portal's webhook."""
        if user_id != str(self.user_id) or not secrets.compare_digest(code, self.webhook_code):
            # §2.2 error table: a wrong webhook code.
            raise ApiError("NO_AUTH_FOUND", "Wrong authorization data", 401)

    def check_token(self, token: str | None) -> None:
        """Raise the 401 error the portal gives for a missing, unknown or expired access token (§2.2)."""
        if not token:
            # §2.2 error table: a wrong webhook code.
            raise ApiError("NO_AUTH_FOUND", "Wrong authorization data", 401)
        with self._lock:
            expiry = self._access.get(token)
        if expiry is None:
            # §2.2 error table.
            raise ApiError("invalid_token", "Unable to get application by token", 401)
        if expiry <= self._clock():
            # §2.2 error table.
            raise ApiError("expired_token", "The access token provided has expired.", 401)

    def expire_now(self) -> None:
        """Make the current access token expired (fault ``expire_token``)."""
        with self._lock:
            self._access[self._current_access] = self._clock() - 1.0

    def refresh(self, params: dict[str, Any], base_url: str) -> dict[str, Any]:
        """Handle ``grant_type=refresh_token`` (§1.3) and return the token JSON; raise :class:`TokenError`."""
        grant = params.get("grant_type")
        if grant != "refresh_token":
            raise TokenError("invalid_request", "grant_type must be refresh_token")
        if params.get("client_id") != self.client_id or not secrets.compare_digest(
            str(params.get("client_secret", "")), self.client_secret
        ):
            raise TokenError("invalid_client", "Invalid client credentials", 401)
        with self._lock:
            if not secrets.compare_digest(str(params.get("refresh_token", "")), self._refresh):
                raise TokenError("invalid_grant", "Invalid refresh token")
            self._issue()
            access, refresh = self._current_access, self._refresh
            expires = self._access[access]
        return {
            "access_token": access,
            "expires": int(expires),
            "expires_in": int(self.ttl),
            "scope": self.scope,
            "domain": "oauth.bitrix.info",
            "server_endpoint": f"{base_url}/rest/",
            "status": "L",
            "client_endpoint": f"{base_url}/rest/",
            "member_id": self.member_id,
            "user_id": self.user_id,
            "refresh_token": refresh,
        }
