"""Pipeline tests on DuckDB against a sandbox portal with 20,000 deals.

One portal and one pipeline per module (the machine is small): the full load runs once in a fixture, the
tests after it compare every row, check types and request counts, then change the portal and run the
incremental and deletes-detection loads on top. The tests depend on that order (pytest keeps file order).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dlt
import pytest

from bitrix24_source import bitrix24_source
from bitrix24_source.sandbox import Sandbox
from bitrix24_source.source import resource_stats
from bitrix24_source.source.settings import ALL_RESOURCES
from tests.helpers import column_types, fetch_table, make_pipeline
from tests.source.compare import assert_rows_equal

pytestmark = pytest.mark.slow

ALL = ALL_RESOURCES
CRM = ("leads", "deals", "contacts", "companies")
LAG = 300.0


@dataclass
class Loaded:
    portal: Sandbox
    pipeline: dlt.Pipeline
    requests_by_method: dict[str, int]
    http_requests: int


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    path: Path = tmp_path_factory.mktemp("large")
    with Sandbox(
        seed=11, deals=20_000, leads=1_200, contacts=1_500, companies=400, users=60, tasks=640
    ) as portal:
        pipeline = make_pipeline(path)
        source = bitrix24_source(webhook_url=portal.webhook_url, rate_limit=None, lag_seconds=LAG)
        portal.reset_stats()
        info = pipeline.run(source.with_resources(*ALL))
        assert not info.has_failed_jobs
        stats = portal.stats()
        yield Loaded(portal, pipeline, dict(stats.http_by_method), stats.http_requests)


@pytest.mark.parametrize("entity", CRM)
def test_crm_tables_equal_portal(loaded: Loaded, entity: str) -> None:
    assert_rows_equal(loaded.portal.rows(entity), fetch_table(loaded.pipeline, entity))


def test_deals_at_least_20k(loaded: Loaded) -> None:
    assert len(fetch_table(loaded.pipeline, "deals")) == len(loaded.portal.rows("deals")) == 20_000


def test_deal_products_equal_portal(loaded: Loaded) -> None:
    portal_rows = loaded.portal.rows("deal_products")
    assert len(portal_rows) > 20_000
    assert_rows_equal(portal_rows, fetch_table(loaded.pipeline, "deal_products"))


def test_users_equal_portal(loaded: Loaded) -> None:
    assert_rows_equal(
        loaded.portal.rows("users"), fetch_table(loaded.pipeline, "users"), id_key="ID", rename={"ID": "id"}
    )


def test_tasks_and_results_equal_portal(loaded: Loaded) -> None:
    assert_rows_equal(loaded.portal.rows("tasks"), fetch_table(loaded.pipeline, "tasks"))
    assert_rows_equal(loaded.portal.rows("task_results"), fetch_table(loaded.pipeline, "task_results"))


def test_field_definitions(loaded: Loaded) -> None:
    rows = {r["id"]: r for r in fetch_table(loaded.pipeline, "field_definitions")}
    title = rows["deals.title"]
    assert title["type"] == "string" and title["entity"] == "deals" and title["field"] == "title"
    assert rows["leads.title"]["is_required"] is True
    assert rows["deals.id"]["is_read_only"] is True
    assert rows["deals.contactIds"]["is_multiple"] is True
    enum = next(r for r in rows.values() if r["entity"] == "deals" and r["type"] == "enumeration")
    assert '"Gold"' in enum["items"]
    assert rows["tasks.changed"]["type"] == "datetime"
    assert {r["entity"] for r in rows.values()} == {
        "leads",
        "deals",
        "contacts",
        "companies",
        "users",
        "tasks",
        "task_results",
        "deal_products",
        "activities",
        "quotes",
        "invoices",
        "spa_types",
        "crm_statuses",
        "crm_categories",
        "departments",
    }
    assert rows["activities.OWNER_TYPE_ID"]["data_type"] == "bigint"


def test_column_types_from_metadata(loaded: Loaded) -> None:
    deals = column_types(loaded.pipeline, "deals")
    assert deals["id"] == "BIGINT"
    assert deals["opportunity"] == "DECIMAL(18,2)"
    assert deals["updated_time"] == "TIMESTAMP WITH TIME ZONE"
    assert deals["begindate"] == "DATE"
    assert deals["closed"] == "BOOLEAN"
    assert deals["contact_ids"] == "JSON"
    assert deals["assigned_by_id"] == "BIGINT"
    assert deals["uf_crm_1721244707112"] == "BOOLEAN"  # boolean user field
    assert deals["uf_crm_1721244707113"] == "DATE"  # date user field, often empty: typed anyway
    leads = column_types(loaded.pipeline, "leads")
    assert leads["fm"] == "JSON"
    assert leads["birthdate"] == "DATE"
    tasks = column_types(loaded.pipeline, "tasks")
    assert tasks["changed"] == "TIMESTAMP WITH TIME ZONE"
    assert tasks["needs_control"] == "BOOLEAN"
    assert tasks["accomplices"] == "JSON"
    users = column_types(loaded.pipeline, "users")
    assert users["id"] == "BIGINT" and users["active"] == "BOOLEAN"
    assert users["date_register"] == "TIMESTAMP WITH TIME ZONE"
    products = column_types(loaded.pipeline, "deal_products")
    assert products["price"] == "DECIMAL(18,2)" and products["owner_id"] == "BIGINT"
    assert products["tax_included"] == "BOOLEAN"


def test_keyset_batches_request_count(loaded: Loaded) -> None:
    stats = resource_stats(loaded.pipeline)
    # 2,500 rows per HTTP request: ceil(rows / 2500) chains (+1 when the last chain ends exactly full).
    for entity in CRM:
        rows = len(loaded.portal.rows(entity))
        assert stats[entity]["rows"] == rows
        assert stats[entity]["requests"] <= math.ceil(rows / 2500) + 1
    assert stats["deals"]["requests"] == 9
    assert stats["users"]["requests"] == 1
    # tasks: one v3 batch per 50 tasks (+ the rejected empty tail and its check), result pages on top.
    assert stats["tasks"]["rows"] == 640


def _updated(row: dict[str, Any], key: str) -> dt.datetime:
    return dt.datetime.fromisoformat(row[key])


def test_incremental_reads_only_changes(loaded: Loaded) -> None:
    portal = loaded.portal
    before = {e: max(_updated(r, "updatedTime") for r in portal.rows(e)) for e in CRM}
    tasks_before = max(_updated(r, "changed") for r in portal.rows("tasks"))
    portal.advance_clock(3600)
    deals = portal.rows("deals")
    for row in deals[100:103]:
        portal.update_row("deals", row["id"], {"title": f"{row['title']} (edited)"})
    added = [portal.add_row("deals", {"title": f"Added {i}", "opportunity": 100.25 + i}) for i in range(2)]
    lead = portal.rows("leads")[7]
    portal.update_row("leads", lead["id"], {"title": "Lead edited"})
    for task in portal.rows("tasks")[5:7]:
        portal.update_row("tasks", task["id"], {"title": f"{task['title']} (edited)"})

    # rows the second run must read: changed ones plus the lag window before the last seen value
    expected_crm = {
        e: [r for r in portal.rows(e) if _updated(r, "updatedTime") >= before[e] - dt.timedelta(seconds=LAG)]
        for e in CRM
    }
    expected_tasks = [
        r for r in portal.rows("tasks") if _updated(r, "changed") >= tasks_before - dt.timedelta(seconds=LAG)
    ]
    portal.reset_stats()
    source = bitrix24_source(webhook_url=portal.webhook_url, rate_limit=None, lag_seconds=LAG)
    info = loaded.pipeline.run(source.with_resources(*CRM, "deal_products", "tasks", "task_results"))
    assert not info.has_failed_jobs
    stats = portal.stats()

    # exactly the changed rows and the lag window were served, nothing else: plus, per table, the first
    # batch's `order id DESC` page (ids only, up to 50 rows) that tells the walk where the table ends
    last_id_rows = sum(min(50, len(v)) for v in expected_crm.values())
    assert stats.rows_returned["crm.item.list"] == sum(len(v) for v in expected_crm.values()) + last_id_rows
    per_resource = resource_stats(loaded.pipeline)
    for entity in CRM:
        # a one-page first request; more only when the window holds 50+ rows (then 2,500 per request)
        n = len(expected_crm[entity])
        assert per_resource[entity]["requests"] == (1 if n < 50 else 1 + math.ceil((n - 49) / 2500))
        assert per_resource[entity]["rows"] == n
    assert per_resource["tasks"]["rows"] == len(expected_tasks)
    assert stats.rows_returned["tasks.task.list"] <= len(expected_tasks) + 50

    assert_rows_equal(portal.rows("deals"), fetch_table(loaded.pipeline, "deals"))
    assert_rows_equal(portal.rows("leads"), fetch_table(loaded.pipeline, "leads"))
    assert_rows_equal(portal.rows("tasks"), fetch_table(loaded.pipeline, "tasks"))
    assert_rows_equal(portal.rows("task_results"), fetch_table(loaded.pipeline, "task_results"))
    assert_rows_equal(portal.rows("deal_products"), fetch_table(loaded.pipeline, "deal_products"))
    stored = {r["id"]: r for r in fetch_table(loaded.pipeline, "deals")}
    assert all(stored[a["id"]]["title"] == a["title"] for a in added)
    assert stored[deals[100]["id"]]["title"].endswith("(edited)")


def test_detect_deletes(loaded: Loaded) -> None:
    portal = loaded.portal
    gone_deals = [r["id"] for r in portal.rows("deals")[200:203]]
    gone_products = {r["id"] for r in portal.rows("deal_products") if r["ownerId"] in set(gone_deals)}
    assert gone_products
    for id_ in gone_deals:
        portal.delete_row("deals", id_)
    gone_company = portal.rows("companies")[3]["id"]
    portal.delete_row("companies", gone_company)
    portal.reset_stats()
    source = bitrix24_source(
        webhook_url=portal.webhook_url, rate_limit=None, lag_seconds=LAG, detect_deletes=True
    )
    info = loaded.pipeline.run(source.with_resources(*CRM, "deal_products"))
    assert not info.has_failed_jobs
    stats = portal.stats()
    # the id-only scan: 2,500 ids per request, so deals cost ceil(19,999 / 2,500) = 8 more requests; the
    # product rows of the few deals in the incremental window one more
    assert stats.http_by_method["batch"] <= 4 + 8 + 1 + 1 + 1 + 1 + 1 + 1
    deals = fetch_table(loaded.pipeline, "deals")
    assert not {r["id"] for r in deals} & set(gone_deals)
    assert_rows_equal(portal.rows("deals"), [{k: v for k, v in r.items() if k != "_deleted"} for r in deals])
    products = fetch_table(loaded.pipeline, "deal_products")
    assert not {r["id"] for r in products} & gone_products
    assert len(products) == len(portal.rows("deal_products"))
    companies = fetch_table(loaded.pipeline, "companies")
    assert gone_company not in {r["id"] for r in companies}
    assert len(companies) == len(portal.rows("companies"))
