"""dlt config specs of the Bitrix24 source, and a token saver (its only I/O: it writes a secrets file).

OAuth credentials are a configspec (the webhook URL is a plain secret); `save_tokens_to_toml` persists
refreshed OAuth tokens. Both are resolved only through dlt injection, so a pipeline configures them like any
other dlt source: `[sources.bitrix24]` in `.dlt/secrets.toml`, or env `SOURCES__BITRIX24__WEBHOOK_URL` /
`SOURCES__BITRIX24__OAUTH__CLIENT_ID`, ...
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import tomlkit
from dlt.common.configuration import configspec
from dlt.common.configuration.specs import CredentialsConfiguration
from dlt.common.typing import TSecretStrValue

from bitrix24_source.errors import register_secret

if TYPE_CHECKING:
    from bitrix24_source.client import OAuthTokens


@configspec
class Bitrix24OAuthCredentials(CredentialsConfiguration):
    """OAuth application credentials of a Bitrix24 portal (§1.3).

    Attributes:
        client_endpoint: the portal's REST endpoint, e.g. `https://example.bitrix24.com/rest/`.
        client_id: the application's client id.
        client_secret: the application's client secret.
        refresh_token: a refresh token; the client exchanges it for access tokens as they expire.
        access_token: the current access token (refreshed with `refresh_token` when it expires).
        token_url: the OAuth token server (`https://oauth.bitrix.info/oauth/token/` in the cloud).
    """

    # dlt configspec idiom: a None default on a non-Optional type marks a required, injected field.
    client_endpoint: str = None  # type: ignore[assignment]
    client_id: str = None  # type: ignore[assignment]
    client_secret: TSecretStrValue = None  # type: ignore[assignment]
    refresh_token: TSecretStrValue = None  # type: ignore[assignment]
    access_token: TSecretStrValue = None  # type: ignore[assignment]
    token_url: str = "https://oauth.bitrix.info/oauth/token/"

    __config_gen_annotations__: ClassVar[list[str]] = [
        "client_endpoint",
        "client_id",
        "client_secret",
        "refresh_token",
        "access_token",
    ]

    def on_resolved(self) -> None:
        for secret in (self.client_secret, self.refresh_token, self.access_token):
            register_secret(secret)


def save_tokens_to_toml(
    path: str | os.PathLike[str], *, section: str = "sources.bitrix24.oauth"
) -> Callable[[OAuthTokens], None]:
    """An `on_token_refresh` callback that writes refreshed OAuth tokens into a TOML secrets file.

    Bitrix24 rotates refresh tokens: after a refresh the old refresh token stops working (§1.3), so tokens
    kept only in memory are lost with the process and the next run cannot authenticate. The callback sets
    `access_token` and `refresh_token` under `section` and keeps the rest of the file (comments too). It
    writes a temporary file and renames it over the old one: a crash mid-write cannot leave a half-written
    secrets file, and the file keeps its permissions (owner-only for a new file).

    Args:
        path: the TOML file, usually `.dlt/secrets.toml` (the one dlt reads the credentials from).
        section: the dotted table holding the OAuth credentials.

    Returns:
        A callable for `bitrix24_source(on_token_refresh=...)` or `Bitrix24Client(on_token_refresh=...)`.
    """
    target = Path(path)
    parts = section.split(".")
    lock = threading.Lock()

    def save(tokens: OAuthTokens) -> None:
        with lock:
            doc = tomlkit.parse(target.read_text(encoding="utf-8")) if target.exists() else tomlkit.document()
            table: Any = doc
            for part in parts:
                if part not in table:
                    table[part] = tomlkit.table(is_super_table=part != parts[-1])
                table = table[part]
            table["access_token"] = tokens.access_token
            table["refresh_token"] = tokens.refresh_token
            mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o600
            tmp = target.with_name(f".{target.name}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(tomlkit.dumps(doc))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)

    return save
