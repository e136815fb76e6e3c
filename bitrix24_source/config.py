"""dlt configuration specs of the Bitrix24 source: OAuth credentials (the webhook URL is a plain secret).

Resolved only through dlt injection (STYLE.md rule 6): `[sources.bitrix24]` in `.dlt/secrets.toml`, or env
`SOURCES__BITRIX24__WEBHOOK_URL` / `SOURCES__BITRIX24__OAUTH__CLIENT_ID`, ...
"""

from __future__ import annotations

from typing import ClassVar

from dlt.common.configuration import configspec
from dlt.common.configuration.specs import CredentialsConfiguration
from dlt.common.typing import TSecretStrValue

from bitrix24_source.errors import register_secret


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
