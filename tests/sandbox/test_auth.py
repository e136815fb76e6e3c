"""Webhook and OAuth auth, and the token refresh endpoint (§1.1–§1.3, §2.2)."""

from __future__ import annotations

import pytest
import requests

from bitrix24_source.sandbox import Sandbox

from .conftest import StandInState


def test_wrong_webhook_code_or_user(core_portal: Sandbox, http: requests.Session) -> None:
    expected = {"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"}
    for url in (
        core_portal.base_url + "/rest/1/wrong-code/server.time",
        core_portal.base_url + f"/rest/2/{core_portal.auth.webhook_code}/server.time",
        core_portal.base_url + "/rest/api/1/wrong-code/tasks.task.get",
    ):
        r = http.post(url, json={})
        assert r.status_code == 401 and r.json() == expected
    assert core_portal.stats().by_method == {}


def test_oauth_token_in_body_query_or_bearer(core_portal: Sandbox, http: requests.Session) -> None:
    token = core_portal.oauth.access_token
    rest = core_portal.oauth.client_endpoint
    assert http.post(rest + "server.time", json={"auth": token}).status_code == 200
    assert http.post(rest + "server.time.json", params={"auth": token}).status_code == 200
    assert http.post(rest + "/server.time", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert http.post(rest + "batch", data={"auth": token, "cmd[a]": "server.time"}).status_code == 200
    v3 = core_portal.base_url + "/rest/api/"
    assert http.post(v3 + "tasks.task.get", json={"auth": token, "id": 1}).status_code == 200
    batch = [{"method": "tasks.task.get", "query": {"id": 1}}]
    assert (
        http.post(v3 + "batch", json=batch, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    )
    assert http.post(v3 + "batch", params={"auth": token}, json=batch).status_code == 200


def test_auth_is_not_a_method_parameter(
    core_portal: Sandbox, core_state: StandInState, http: requests.Session
) -> None:
    token = core_portal.oauth.access_token
    http.post(core_portal.oauth.client_endpoint + "echo", json={"auth": token, "x": 1})
    assert core_state.calls[-1][2] == {"x": 1}


def test_missing_unknown_expired_tokens(core_state: StandInState, http: requests.Session) -> None:
    with Sandbox(state=core_state, access_token_ttl=-1.0) as portal:
        rest = portal.oauth.client_endpoint
        missing = http.post(rest + "server.time", json={})
        assert missing.status_code == 401 and missing.json()["error"] == "NO_AUTH_FOUND"
        unknown = http.post(rest + "server.time", json={"auth": "nope"})
        assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_token"
        expired = http.post(rest + "server.time", json={"auth": portal.oauth.access_token})
        assert expired.status_code == 401
        assert expired.json() == {
            "error": "expired_token",
            "error_description": "The access token provided has expired.",
        }


@pytest.mark.parametrize("verb", ["GET", "POST"])
def test_refresh_rotates_tokens(core_portal: Sandbox, http: requests.Session, verb: str) -> None:
    app = core_portal.oauth
    params = {
        "grant_type": "refresh_token",
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "refresh_token": app.refresh_token,
    }
    r = http.get(app.token_url, params=params) if verb == "GET" else http.post(app.token_url, data=params)
    assert r.status_code == 200
    token = r.json()
    assert set(token) >= {
        "access_token",
        "client_endpoint",
        "domain",
        "expires",
        "expires_in",
        "member_id",
        "refresh_token",
        "scope",
        "server_endpoint",
        "status",
        "user_id",
    }
    assert token["access_token"] != app.access_token and token["refresh_token"] != app.refresh_token
    assert token["client_endpoint"] == app.client_endpoint and token["expires_in"] == 3600
    assert core_portal.oauth.access_token == token["access_token"]
    assert (
        http.post(app.client_endpoint + "server.time", json={"auth": token["access_token"]}).status_code
        == 200
    )
    reused = http.post(app.token_url, data=params)  # the old refresh token is spent
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"


def test_refresh_errors(core_portal: Sandbox, http: requests.Session) -> None:
    app = core_portal.oauth
    bad_client = http.get(
        app.token_url,
        params={
            "grant_type": "refresh_token",
            "client_id": app.client_id,
            "client_secret": "x",
            "refresh_token": "y",
        },
    )
    assert bad_client.status_code == 401 and bad_client.json()["error"] == "invalid_client"
    assert app.client_secret not in bad_client.text
    no_grant = http.get(app.token_url, params={"client_id": app.client_id})
    assert no_grant.status_code == 400 and no_grant.json()["error"] == "invalid_request"


def test_webhook_call_ignores_auth_param(core_portal: Sandbox, http: requests.Session) -> None:
    assert http.post(core_portal.webhook_url + "server.time", json={"auth": "whatever"}).status_code == 200


def test_insufficient_scope(http: requests.Session) -> None:
    state = StandInState()
    with Sandbox(state=state, scope={"task"}) as portal:
        denied = http.post(portal.webhook_url + "crm.lead.get", json={"id": 1})
        assert denied.status_code == 401
        assert denied.json() == {
            "error": "insufficient_scope",
            "error_description": "The request requires higher privileges than provided by the webhook token",
        }
        assert http.post(portal.webhook_url + "server.time", json={}).status_code == 200
        batch = http.post(
            portal.webhook_url + "batch", json={"cmd": {"a": "crm.lead.get?id=1", "b": "server.time"}}
        )
        result = batch.json()["result"]
        assert result["result_error"] == {"a": {"error": "insufficient_scope", "error_description": ""}}
        assert list(result["result"]) == ["b"]
        v3 = http.post(portal.webhook_url_v3 + "crm.item.get", json={"id": 1})
        assert v3.status_code == 403
        assert v3.json()["error"]["code"] == "BITRIX_REST_V3_EXCEPTION_INSUFFICIENTSCOPEEXCEPTION"
        assert http.post(portal.webhook_url_v3 + "tasks.task.get", json={"id": 1}).status_code == 200
        app = portal.oauth
        token = http.post(
            app.token_url,
            data={
                "grant_type": "refresh_token",
                "client_id": app.client_id,
                "client_secret": app.client_secret,
                "refresh_token": app.refresh_token,
            },
        ).json()
        assert token["scope"] == "task"
    assert [c[1] for c in state.calls] == ["server.time", "server.time", "tasks.task.get"]


def test_insufficient_scope_status_is_configurable(http: requests.Session) -> None:
    with Sandbox(state=StandInState(), scope=[], insufficient_scope_status=403) as portal:
        token = portal.oauth.access_token
        denied = http.post(portal.oauth.client_endpoint + "crm.lead.get", json={"auth": token, "id": 1})
        assert denied.status_code == 403
        assert denied.json()["error_description"].endswith("provided by the access token")
