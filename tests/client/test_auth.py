"""OAuth over loopback: refresh on expired_token (coalesced across threads), token callback, masking."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest

from bitrix24_source.client import Bitrix24Client, OAuthCredentials, OAuthTokens
from bitrix24_source.errors import AuthError, ConfigError, TransportError
from bitrix24_source.sandbox import Fault, Sandbox


@pytest.fixture
def fresh_portal() -> Sandbox:
    with Sandbox(seed=5, deals=30, leads=2, contacts=2, companies=2, users=3, tasks=10) as sandbox:
        yield sandbox  # type: ignore[misc]


def test_oauth_calls_v2_v3_and_batches(
    make_client: Callable[..., Bitrix24Client], fresh_portal: Sandbox
) -> None:
    c = make_client(oauth=fresh_portal.oauth)
    assert c.call("user.current").result["ID"]
    assert c.call("tasks.task.list", {"select": ["id"]}, version=3).result["items"]
    # v3 batch: the body is a bare array, the token goes in the Authorization header (§1.3).
    assert c.batch([("tasks.task.list", {"select": ["id"]})], version=3).is_success
    assert c.batch([("user.current", {})]).is_success


def test_expired_token_is_refreshed_and_handed_to_the_callback(
    make_client: Callable[..., Bitrix24Client], fresh_portal: Sandbox
) -> None:
    received: list[OAuthTokens] = []
    old = fresh_portal.oauth
    c = make_client(oauth=old, on_token_refresh=received.append)
    fresh_portal.inject(Fault("expire_token", method="user.current"))
    assert c.call("user.current").result["ID"]
    assert len(received) == 1 and c.stats.token_refreshes == 1
    new = received[0]
    assert new.access_token == fresh_portal.oauth.access_token != old.access_token
    assert new.refresh_token == fresh_portal.oauth.refresh_token != old.refresh_token
    assert c.tokens == new and "***" in repr(new) and new.access_token not in repr(new)


def test_concurrent_expiry_triggers_one_refresh(
    make_client: Callable[..., Bitrix24Client], fresh_portal: Sandbox
) -> None:
    received: list[OAuthTokens] = []
    c = make_client(oauth=fresh_portal.oauth, on_token_refresh=received.append)
    c.call("user.current")
    fresh_portal.inject(Fault("expire_token", method="user.current"))
    c.call("user.current")  # expires and refreshes once
    fresh_portal.inject(Fault("expire_token", method="crm.item.list"))
    errors: list[Exception] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        try:
            barrier.wait()
            c.call("crm.item.list", {"entityTypeId": 2, "select": ["id"]})
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(received) == 2 and c.stats.token_refreshes == 2


def test_bad_refresh_token_is_an_auth_error(
    make_client: Callable[..., Bitrix24Client], fresh_portal: Sandbox
) -> None:
    app = fresh_portal.oauth
    creds = OAuthCredentials(
        app.client_id,
        app.client_secret,
        app.access_token,
        "notTheRefreshToken123",
        app.client_endpoint,
        app.token_url,
    )
    c = make_client(oauth=creds)
    fresh_portal.inject(Fault("expire_token", method="user.current"))
    with pytest.raises(AuthError) as info:
        c.call("user.current")
    assert info.value.code == "invalid_grant"


def test_unknown_token_without_refresh_is_an_auth_error(
    make_client: Callable[..., Bitrix24Client], fresh_portal: Sandbox
) -> None:
    app = fresh_portal.oauth
    creds = {
        "client_id": app.client_id,
        "client_secret": "wrongClientSecret1",
        "access_token": "unknownAccessToken1",
        "refresh_token": app.refresh_token,
        "client_endpoint": app.client_endpoint,
        "token_url": app.token_url,
    }
    c = make_client(oauth=creds)
    with pytest.raises(AuthError) as info:
        c.call("user.current")
    assert info.value.code == "invalid_client"  # invalid_token -> refresh attempted -> client rejected


def test_oauth_needs_https_outside_loopback() -> None:
    creds = {
        "client_id": "a",
        "client_secret": "secretsecret",
        "access_token": "tokentoken1",
        "refresh_token": "tokentoken2",
        "client_endpoint": "http://portal.example.com/rest/",
    }
    with pytest.raises(ConfigError):
        Bitrix24Client(oauth=creds)
    with pytest.raises(ConfigError, match="client_endpoint"):
        Bitrix24Client(oauth={k: v for k, v in creds.items() if k != "client_endpoint"})


def test_secrets_never_reach_logs_or_errors(
    make_client: Callable[..., Bitrix24Client], fresh_portal: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    code = fresh_portal.webhook_url.rstrip("/").rsplit("/", 1)[-1]
    app = fresh_portal.oauth
    with caplog.at_level(logging.DEBUG):
        hook = make_client(webhook_url=fresh_portal.webhook_url)
        fresh_portal.inject(Fault("http_500", method="batch", phase="after"))
        result = hook.batch([("crm.item.add", {"entityTypeId": 2, "fields": {"title": "masked"}})])
        fresh_portal.inject(Fault("reset", method="crm.item.add", phase="after"))
        with pytest.raises(TransportError) as info:
            hook.call("crm.item.add", {"entityTypeId": 2, "fields": {"title": "masked2"}})
        oauth = make_client(oauth=app)
        fresh_portal.inject(Fault("expire_token", method="user.current"))
        oauth.call("user.current")
    texts = [
        caplog.text,
        str(info.value),
        repr(info.value),
        repr(hook),
        repr(oauth),
        *(str(e) for e in result.errors),
        *(repr(e) for e in result.errors),
    ]
    secrets = [
        code,
        app.access_token,
        app.refresh_token,
        app.client_secret,
        oauth.tokens.access_token if oauth.tokens else "",
        oauth.tokens.refresh_token if oauth.tokens else "",
    ]
    assert any("/rest/1/***/" in t for t in texts)
    for secret in secrets:
        assert len(secret) >= 8
        for text in texts:
            assert secret not in text


def test_known_expiry_is_refreshed_before_the_call(
    make_client: Callable[..., Bitrix24Client], fresh_portal: Sandbox
) -> None:
    app = fresh_portal.oauth
    creds = OAuthCredentials(
        app.client_id,
        app.client_secret,
        app.access_token,
        app.refresh_token,
        app.client_endpoint,
        app.token_url,
        expires=1.0,  # long past
    )
    received: list[OAuthTokens] = []
    c = make_client(oauth=creds, on_token_refresh=received.append)
    assert c.call("user.current").result["ID"]
    assert len(received) == 1 and c.stats.http_requests == 2  # the refresh and the call, no 401 in between
    assert received[0].expires is not None and received[0].expires > 1.0


def test_keyed_v3_write_survives_a_refresh(
    make_client: Callable[..., Bitrix24Client], fresh_portal: Sandbox
) -> None:
    c = make_client(oauth=fresh_portal.oauth)
    user = fresh_portal.rows("users")[0]
    uid = int(user.get("ID", user.get("id")))
    fresh_portal.inject(Fault("expire_token", method="tasks.task.add"))
    fields = {"fields": {"title": "oauth keyed", "creatorId": uid, "responsibleId": uid}}
    r = c.call("tasks.task.add", fields, version=3)
    assert r.result["item"]["title"] == "oauth keyed" and c.stats.token_refreshes == 1
    assert [t["title"] for t in fresh_portal.rows("tasks")].count("oauth keyed") == 1
