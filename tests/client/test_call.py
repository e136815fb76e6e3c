"""Single calls over loopback against the sandbox portal: v2, v3, typed results and typed errors."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import requests

from bitrix24_source.client import Bitrix24Client
from bitrix24_source.client.transport import transport_error as _transport_error
from bitrix24_source.errors import ApiError, AuthError, ConfigError
from bitrix24_source.sandbox import Sandbox


def test_v2_list_call_has_typed_result(client: Bitrix24Client, portal: Sandbox) -> None:
    r = client.call("crm.item.list", {"entityTypeId": 2, "select": ["id", "title"], "order": {"id": "ASC"}})
    deals = sorted(portal.rows("deals"), key=lambda d: d["id"])
    assert [row["id"] for row in r.result["items"]] == [d["id"] for d in deals[:50]]
    assert r.total == len(deals) and r.next == 50
    assert r.time is not None and r.time.operating is not None and r.time.operating_reset_at is not None
    assert r.http_status == 200 and r.request_id


def test_v2_last_page_has_no_next(client: Bitrix24Client, portal: Sandbox) -> None:
    total = len(portal.rows("deals"))
    r = client.call("crm.item.list", {"entityTypeId": 2, "start": (total - 1) // 50 * 50})
    assert r.next is None and r.total == total


def test_v3_call(client: Bitrix24Client, portal: Sandbox) -> None:
    tasks = sorted(portal.rows("tasks"), key=lambda t: t["id"])
    r = client.call("tasks.task.list", {"select": ["id", "title"], "order": {"id": "ASC"}}, version=3)
    assert [row["id"] for row in r.result["items"]] == [t["id"] for t in tasks[: len(r.result["items"])]]
    assert r.total is None and r.next is None
    got = client.call("tasks.task.get", {"id": tasks[0]["id"], "select": ["id", "title"]}, version=3)
    assert got.result["item"]["title"] == tasks[0]["title"]


def test_v2_error_is_typed(client: Bitrix24Client) -> None:
    with pytest.raises(ApiError) as info:
        client.call("crm.item.get", {"entityTypeId": 2, "id": 99_999_999}, request_id="rid-get-1")
    error = info.value
    assert error.code == "NOT_FOUND" and error.http_status == 400 and error.method == "crm.item.get"
    assert error.request_id == "rid-get-1" and "rid-get-1" in str(error) and error.permanent


def test_v3_error_is_typed(client: Bitrix24Client) -> None:
    with pytest.raises(ApiError) as info:
        client.call("tasks.task.get", {"id": 99_999_999}, version=3)
    assert info.value.code == "BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION"
    assert info.value.category == "not_found"


def test_unknown_method(client: Bitrix24Client) -> None:
    with pytest.raises(ApiError) as info:
        client.call("crm.nothing.here")
    assert info.value.http_status == 404 and info.value.category == "method"


def test_wrong_webhook_code_is_an_auth_error_and_masked(
    make_client: Callable[..., Bitrix24Client], portal: Sandbox
) -> None:
    bad_code = "wrongWebhookCode12345"
    bad = make_client(webhook_url=f"{portal.base_url}/rest/1/{bad_code}/")
    with pytest.raises(AuthError) as info:
        bad.call("user.current")
    assert info.value.code == "NO_AUTH_FOUND" and info.value.http_status == 401
    assert bad_code not in str(info.value) and bad_code not in repr(info.value) and bad_code not in repr(bad)


def test_v3_webhook_url_form_is_accepted(make_client: Callable[..., Bitrix24Client], portal: Sandbox) -> None:
    v3_form = portal.webhook_url.replace("/rest/", "/rest/api/")
    assert make_client(webhook_url=v3_form).call("user.current").result["ID"]


@pytest.mark.parametrize(
    "url",
    [
        "http://portal.example.com/rest/1/fake-code-1/",
        "ftp://127.0.0.1/rest/1/fake-code-1/",
        "https://x/rest/abc/",
    ],
)
def test_https_required_except_loopback(url: str) -> None:
    with pytest.raises(ConfigError):
        Bitrix24Client(url)


def test_exactly_one_auth(portal: Sandbox) -> None:
    with pytest.raises(ConfigError):
        Bitrix24Client()
    with pytest.raises(ConfigError):
        Bitrix24Client(portal.webhook_url, oauth=portal.oauth)


def test_references_are_refused_in_single_calls(client: Bitrix24Client) -> None:
    from bitrix24_source.client.commands import ref, result_ref

    with pytest.raises(ConfigError):
        client.call("crm.item.get", {"id": result_ref("a", "id")})
    with pytest.raises(ConfigError):
        client.call("tasks.task.get", {"id": ref("a.id")}, version=3)
    with pytest.raises(ConfigError):
        client.call("crm.item.get/../x")


def test_keyset_pagination_v2(client: Bitrix24Client, portal: Sandbox) -> None:
    pages = list(
        client.iter_list_v2(
            "crm.item.list", {"entityTypeId": 2, "select": ["id"]}, id_key="id", list_key="items"
        )
    )
    ids = [row["id"] for page in pages for row in page]
    assert ids == sorted(d["id"] for d in portal.rows("deals"))
    assert all(len(page) == 50 for page in pages[:-1])


def test_keyset_pagination_v3(client: Bitrix24Client, portal: Sandbox) -> None:
    pages = list(client.iter_list_v3("tasks.task.list", {"select": ["id"]}, limit=25))
    ids = [row["id"] for page in pages for row in page]
    assert ids == sorted(t["id"] for t in portal.rows("tasks"))
    assert len(pages) >= 2


def test_tls_portal_with_its_ca(tmp_path: object) -> None:
    with Sandbox(seed=3, deals=3, leads=1, contacts=1, companies=1, users=2, tasks=1, tls=True) as tls_portal:
        assert tls_portal.webhook_url.startswith("https://")
        good = Bitrix24Client(tls_portal.webhook_url, verify=tls_portal.ca_cert_path or True, rate_limit=None)
        assert good.call("user.current").result["ID"]
        untrusted = Bitrix24Client(tls_portal.webhook_url, rate_limit=None)
        from bitrix24_source.errors import TransportError

        with pytest.raises(TransportError) as info:
            untrusted.call("user.current")
        assert info.value.code == "TLS_ERROR" and info.value.maybe_executed is False
        assert untrusted.stats.http_requests == 1  # certificate errors are not retried


def test_keyset_pagination_v2_classic_and_tasks(client: Bitrix24Client, portal: Sandbox) -> None:
    deals = [row for page in client.iter_list_v2("crm.deal.list", {"select": ["ID"]}) for row in page]
    assert [int(d["ID"]) for d in deals] == sorted(d["id"] for d in portal.rows("deals"))
    tasks = [
        row
        for page in client.iter_list_v2(
            "tasks.task.list", {"select": ["ID"]}, id_key="id", cursor_key="ID", list_key="tasks"
        )
        for row in page
    ]
    assert [int(t["id"]) for t in tasks] == sorted(t["id"] for t in portal.rows("tasks"))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), Decimal("-Infinity"), Decimal("NaN")])
def test_non_finite_numbers_are_refused_before_sending(
    client: Bitrix24Client, portal: Sandbox, bad: Any
) -> None:
    # PHP's json_decode refuses NaN/Infinity, and a v2 method then runs with no parameters at all (§1.5): an
    # unfiltered list instead of an error. Nothing is sent.
    before = portal.stats().http_requests
    with pytest.raises(ConfigError, match=r"parameter 'FILTER\.ID' holds NaN or an infinite number"):
        client.call("user.get", {"FILTER": {"ID": bad}})
    with pytest.raises(ConfigError, match="non-finite number"):
        client.batch([("user.get", {"FILTER": {"ID": bad}}), ("user.current", {})])
    assert portal.stats().http_requests == before


def test_tls_error_after_the_handshake_may_have_run_the_request() -> None:
    # urllib3 reports a TLS stream broken while the answer is read as an SSLError too; only a refused
    # certificate proves nothing was sent.
    broken = requests.exceptions.SSLError(ssl.SSLError(1, "[SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC]"))
    refused = requests.exceptions.SSLError(ssl.SSLCertVerificationError(1, "certificate verify failed"))
    after = _transport_error(broken, method="crm.item.add", request_id="r", timeout=1.0)
    before = _transport_error(refused, method="crm.item.add", request_id="r", timeout=1.0)
    assert (after.code, after.maybe_executed) == ("TLS_ERROR", True)
    assert (before.code, before.maybe_executed) == ("TLS_ERROR", False)
