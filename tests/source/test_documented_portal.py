"""A sync against a portal that answers exactly as the official docs show (Sandbox catalogue="docs").

The docs-catalogue portal serves the documented CRM fields (no xmlId on leads/deals/contacts/companies) and
tasks.task.field.list's PHP property type words ("object" for the DateTime `created`, captured in
api-reference/tasks/tasks-task-field-list.md). The source must still type every documented date-time as a
timestamp and must never make dlt split a column into variants.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bitrix24_source import bitrix24_source
from bitrix24_source.fields import TASK_V3_DOCUMENTED
from bitrix24_source.sandbox import Sandbox
from tests.helpers import column_types, fetch_table, make_pipeline
from tests.source.compare import assert_rows_equal

TABLES = ("leads", "deals", "contacts", "companies", "deal_products", "users", "tasks", "task_results")


@pytest.fixture(scope="module")
def portal() -> Iterator[Sandbox]:
    with Sandbox(
        seed=11, deals=120, leads=40, contacts=40, companies=20, users=10, tasks=60, catalogue="docs"
    ) as p:
        yield p


@pytest.fixture(scope="module")
def synced(portal: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> object:
    pipeline = make_pipeline(tmp_path_factory.mktemp("documented"))
    pipeline.run(bitrix24_source(webhook_url=portal.webhook_url, rate_limit=None).with_resources(*TABLES))
    return pipeline


def test_the_field_list_says_object_for_task_dates(portal: Sandbox) -> None:
    from bitrix24_source import Bitrix24Client

    items = Bitrix24Client(portal.webhook_url).call("tasks.task.field.list", {}, version=3).result["items"]
    types = {item["name"]: item["type"] for item in items}
    assert types["created"] == "object" and types["changed"] == "object"


def test_every_documented_task_datetime_is_a_timestamp_column(synced: object) -> None:
    columns = column_types(synced, "tasks")  # type: ignore[arg-type]
    dates = [name for name, kind in TASK_V3_DOCUMENTED.items() if kind == "datetime"]
    from dlt.common.normalizers.naming.snake_case import NamingConvention

    naming = NamingConvention()
    present = {naming.normalize_identifier(name) for name in dates} & set(columns)
    assert {"created", "changed", "deadline"} <= present
    assert {name: columns[name] for name in present} == dict.fromkeys(present, "TIMESTAMP WITH TIME ZONE")


@pytest.mark.parametrize("table", TABLES)
def test_no_table_gets_variant_columns(synced: object, table: str) -> None:
    variants = [name for name in column_types(synced, table) if "__v_" in name]  # type: ignore[arg-type]
    assert variants == []


@pytest.mark.parametrize("table", ["deals", "contacts", "tasks"])
def test_rows_equal_the_portal(portal: Sandbox, synced: object, table: str) -> None:
    assert_rows_equal(portal.rows(table), fetch_table(synced, table))  # type: ignore[arg-type]
