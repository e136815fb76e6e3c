"""Credentials for the command line: a `--webhook-url` flag, or the places dlt reads them from.

dlt looks in env vars (`SOURCES__BITRIX24__WEBHOOK_URL`, `SOURCES__BITRIX24__OAUTH__CLIENT_ID`, …), then
`.dlt/secrets.toml` and `.dlt/config.toml` of the current directory. The push and results commands also
accept the destination's own section (`[destination.bitrix24] webhook_url`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bitrix24_source.errors import ConfigError

SECRETS_FILE = Path(".dlt") / "secrets.toml"

_HOW_TO = (
    "no Bitrix24 credentials: pass --webhook-url, set SOURCES__BITRIX24__WEBHOOK_URL, or put webhook_url "
    "(or the [sources.bitrix24.oauth] keys) in .dlt/secrets.toml"
)


@dataclass(frozen=True, slots=True)
class Credentials:
    """A webhook URL or OAuth credentials (exactly one is set)."""

    webhook_url: str | None = None
    oauth: Any = None

    @property
    def kind(self) -> str:
        return "webhook" if self.webhook_url else "OAuth app"

    @property
    def portal(self) -> str:
        """The portal's host, the one part of the address that is safe to print."""
        address = self.webhook_url or str(getattr(self.oauth, "client_endpoint", "") or "")
        return urlsplit(address).netloc or "?"


def _secret(key: str) -> Any:
    import dlt

    try:
        return dlt.secrets.get(key)
    except Exception as exc:  # a malformed secrets.toml: say which file, not the traceback
        raise ConfigError(f"cannot read dlt secrets for {key}: {type(exc).__name__}: {exc}") from exc


_OAUTH_FIELDS = ("client_endpoint", "client_id", "client_secret", "access_token", "refresh_token")


def _oauth() -> Any:
    """`[sources.bitrix24.oauth]` (or SOURCES__BITRIX24__OAUTH__*), key by key as the source reads them."""
    from bitrix24_source.source.credentials import Bitrix24OAuthCredentials

    values = {name: _secret(f"sources.bitrix24.oauth.{name}") for name in (*_OAUTH_FIELDS, "token_url")}
    if not any(values.values()):
        return None
    missing = [name for name in _OAUTH_FIELDS if not values[name]]
    if missing:
        raise ConfigError(
            f"OAuth credentials are incomplete: missing {', '.join(missing)} in [sources.bitrix24.oauth]"
        )
    credentials = Bitrix24OAuthCredentials()
    for name, value in values.items():
        if value:
            setattr(credentials, name, str(value))
    credentials.resolve()  # registers the secrets for masking (on_resolved)
    return credentials


def find_credentials(webhook_url: str | None, *, destination: bool = False) -> Credentials:
    """The credentials a command should use: the flag first, then dlt's config (env, .dlt/secrets.toml).

    Args:
        webhook_url: the `--webhook-url` flag, if given.
        destination: also accept `[destination.bitrix24] webhook_url` (push, results), first.

    Raises:
        ConfigError: nothing usable is configured.
    """
    if webhook_url:
        return Credentials(webhook_url=webhook_url)
    keys = ["destination.bitrix24.webhook_url"] if destination else []
    keys.append("sources.bitrix24.webhook_url")
    for key in keys:
        value = _secret(key)
        if value:
            return Credentials(webhook_url=str(value))
    oauth = _oauth()
    if oauth is not None:
        if destination:
            raise ConfigError("the destination writes through a webhook only: configure webhook_url")
        return Credentials(oauth=oauth)
    raise ConfigError(_HOW_TO)


def token_saver(credentials: Credentials) -> Any:
    """For OAuth: a callback that writes refreshed tokens to .dlt/secrets.toml, where dlt will read them.

    Bitrix24 rotates the refresh token on every refresh (§1.3): a refreshed pair kept only in memory
    leaves the stored refresh token dead. Only a secrets file that holds the OAuth refresh token is
    updated; credentials from env vars cannot be, and None is returned.
    """
    if credentials.oauth is None or not _holds_refresh_token(SECRETS_FILE):
        return None
    from bitrix24_source.source.credentials import save_tokens_to_toml

    return save_tokens_to_toml(SECRETS_FILE)


def _holds_refresh_token(path: Path) -> bool:
    if not path.is_file():
        return False
    import tomlkit

    try:
        doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    except tomlkit.exceptions.ParseError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    oauth = doc.get("sources", {}).get("bitrix24", {}).get("oauth", {})
    return "refresh_token" in oauth
