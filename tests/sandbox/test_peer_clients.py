"""Unmodified peer clients against the sandbox: fast_bitrix24 (aiohttp) and b24pysdk (requests, https only).

A disagreement between a peer client and the sandbox is a sandbox bug unless the protocol notes say otherwise.
Both clients throttle themselves; the portals here are small so the tests stay quick.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import requests
from fast_bitrix24 import Bitrix, BitrixAsync

from bitrix24_source.sandbox import Fault, Sandbox

LEADS = 230


@pytest.fixture(scope="module")
def plain() -> Iterator[Sandbox]:
    with Sandbox(seed=11, leads=LEADS, deals=60, contacts=20, companies=10, users=5, tasks=70) as portal:
        yield portal


@pytest.fixture(scope="module")
def secure() -> Iterator[Sandbox]:
    with Sandbox(
        seed=11, leads=LEADS, deals=60, contacts=20, companies=10, users=5, tasks=70, tls=True
    ) as portal:
        yield portal


# --- fast_bitrix24 ---------------------------------------------------------------------------------------


def test_fast_bitrix24_get_all_pages_through_batches(plain: Sandbox) -> None:
    client = Bitrix(plain.webhook_url, verbose=False)
    plain.reset_stats()
    leads = client.get_all("crm.lead.list", {"select": ["ID", "TITLE"]})
    # fast_bitrix24 returns pages in completion order, so compare as a sorted set.
    assert sorted(int(row["ID"]) for row in leads) == list(range(1, LEADS + 1))
    stats = plain.stats()
    assert stats.http_by_method == {"crm.lead.list": 1, "batch": 1}
    assert stats.by_method["crm.lead.list"] == 5  # first page + 4 pages in one batch


def test_fast_bitrix24_get_all_with_a_wrapper_key(plain: Sandbox) -> None:
    client = Bitrix(plain.webhook_url, verbose=False)
    tasks = client.get_all("tasks.task.list", {"select": ["ID", "TITLE"]})
    assert len(tasks) == 70 and {"id", "title"} <= set(tasks[0])


def test_fast_bitrix24_batched_calls_and_get_by_id(plain: Sandbox) -> None:
    client = Bitrix(plain.webhook_url, verbose=False)
    rows = client.call("crm.lead.get", [{"ID": i} for i in range(1, 61)])
    assert sorted(int(row["ID"]) for row in rows) == list(range(1, 61))
    by_id = client.get_by_ID("crm.lead.get", [3, 5])
    assert {str(key): value["ID"] for key, value in dict(by_id).items()} == {"3": "3", "5": "5"}


def test_fast_bitrix24_get_all_on_crm_item_list(plain: Sandbox) -> None:
    # get_all() adds order {"ID": "ASC"}. crm.item.list accepts it: the controller registers the entity's
    # UPPER_CASE field names before converting keys, so "ID" stays "ID". fast_bitrix24 #196 ("Unknown field
    # definition `I_D`") is crm.type.list, whose controller converts keys without that step.
    client = Bitrix(plain.webhook_url, verbose=False)
    plain.reset_stats()
    deals = client.get_all("crm.item.list", {"entityTypeId": 2, "select": ["id", "title"]})
    assert sorted(row["id"] for row in deals) == [row["id"] for row in plain.rows("deals")]
    assert plain.stats().by_method["crm.item.list"] == 2  # 60 deals: the first page and one more in a batch


def test_fast_bitrix24_crm_item_get_unwraps_item(plain: Sandbox) -> None:
    # Single-key results ({"item": ...}) are unwrapped by the client.
    client = Bitrix(plain.webhook_url, verbose=False)
    items = client.call("crm.item.get", [{"entityTypeId": 2, "id": i} for i in range(1, 6)])
    assert sorted(item["id"] for item in items) == [1, 2, 3, 4, 5]


def test_fast_bitrix24_reads_v2_task_results(plain: Sandbox) -> None:
    # v2 tasks.task.result.list answers a bare array per task (DOCS tasks-task-result-list.md), no paging.
    client = Bitrix(plain.webhook_url, verbose=False)
    stored = plain.rows("task_results")
    task_ids = sorted({r["taskId"] for r in stored})[:3]
    first = client.get_all("tasks.task.result.list", {"taskId": task_ids[0]})
    expected_first = sorted((r["id"] for r in stored if r["taskId"] == task_ids[0]), reverse=True)
    assert [row["id"] for row in first] == expected_first  # newest first, as the documented answer
    assert {"id", "taskId", "commentId", "createdBy", "createdAt", "updatedAt", "status", "text"} <= set(
        first[0]
    )
    with pytest.warns(UserWarning):  # fast_bitrix24 prefers get_all for *.list methods, but batches call()
        batched = client.call("tasks.task.result.list", [{"taskId": t} for t in task_ids])
    assert sorted(row["id"] for row in batched) == sorted(r["id"] for r in stored if r["taskId"] in task_ids)


def test_fast_bitrix24_over_tls_with_an_ssl_context(secure: Sandbox) -> None:
    context = ssl.create_default_context(cafile=secure.ca_cert_path)

    async def run() -> list[Any]:
        connector = aiohttp.TCPConnector(ssl=context)
        async with aiohttp.ClientSession(connector=connector, raise_for_status=True) as session:
            client = BitrixAsync(secure.webhook_url, verbose=False, client=session)
            rows: list[Any] = await client.get_all("crm.lead.list", {"select": ["ID"]})
            return rows

    assert len(asyncio.run(run())) == LEADS


def _refresh(portal: Sandbox) -> str:
    app = portal.oauth
    refreshed = requests.get(
        app.token_url,
        params={
            "grant_type": "refresh_token",
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            "refresh_token": app.refresh_token,
        },
        timeout=10,
    ).json()
    return str(refreshed["access_token"])


def test_fast_bitrix24_oauth_refreshes_after_401(plain: Sandbox) -> None:
    stale = plain.oauth.access_token
    calls: list[str] = []

    async def token_func() -> str:
        # First hand out the current token; once the portal rejects it (401), refresh through /oauth/token/.
        token = stale if not calls else _refresh(plain)
        calls.append(token)
        return token

    client = Bitrix(plain.oauth.client_endpoint, verbose=False, token_func=token_func)
    assert len(client.get_all("crm.lead.list", {"select": ["ID"]})) == LEADS
    plain.inject(Fault("expire_token", method="crm.lead.list"))
    assert len(client.get_all("crm.lead.list", {"select": ["ID"]})) == LEADS
    assert len(calls) == 2 and calls[1] != stale


# --- b24pysdk (https only) ---------------------------------------------------------------------------------


@pytest.fixture
def webhook(secure: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Any:
    from b24pysdk import BitrixWebhook

    assert secure.ca_cert_path is not None
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", secure.ca_cert_path)
    domain = secure.base_url.split("://", 1)[1]
    return BitrixWebhook(domain=domain, webhook_token=f"1/{secure.auth.webhook_code}")


def test_b24pysdk_call_method(webhook: Any) -> None:
    response = webhook.call_method("crm.item.get", {"entityTypeId": 2, "id": 7})
    assert response["result"]["item"]["id"] == 7


def test_b24pysdk_call_batch(webhook: Any) -> None:
    response = webhook.call_batch(
        {"one": ("crm.lead.get", {"id": 1}), "page": ("crm.lead.list", {"select": ["ID"], "start": 50})}
    )
    result = response["result"]
    assert result["result"]["one"]["ID"] == "1"
    assert result["result_total"]["page"] == LEADS and result["result_next"]["page"] == 100


def test_b24pysdk_call_batch_reports_errors(webhook: Any) -> None:
    response = webhook.call_batch([("crm.lead.get", {"id": 99999999}), ("crm.lead.get", {"id": 2})])
    result = response["result"]
    # Keys 0 and 1: the error at key 0 alone is a 0..n-1 array, so PHP encodes it as a list (§2.4).
    assert result["result_error"] == [{"error": "", "error_description": "Not found"}]
    assert result["result"]["1"]["ID"] == "2"


def test_b24pysdk_call_list_fast_chains_references(webhook: Any, secure: Sandbox) -> None:
    secure.reset_stats()
    response = webhook.call_list_fast("crm.lead.list", {"select": ["ID", "TITLE"]})
    ids = [int(row["ID"]) for row in response["result"]]
    assert ids == list(range(1, LEADS + 1))
    assert secure.stats().http_by_method.get("batch", 0) >= 1


def test_b24pysdk_call_list(webhook: Any) -> None:
    response = webhook.call_list("crm.deal.list", {"select": ["ID"]})
    assert sorted(int(row["ID"]) for row in response["result"]) == list(range(1, 61))
