"""Pipeline tests on DuckDB: the reference lists (`spa_types`, `crm_statuses`, `crm_categories`, `departments`)
equal the portal's, are replaced on each run, and read in as few requests as their paging allows."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dlt

from bitrix24_source import bitrix24_source
from bitrix24_source.sandbox import Sandbox
from bitrix24_source.source import resource_stats
from tests.helpers import column_types, fetch_table, make_pipeline
from tests.source.compare import assert_rows_equal

DIRECTORIES = ("spa_types", "crm_statuses", "crm_categories", "departments")


def _run(portal: Sandbox, pipeline: dlt.Pipeline, *resources: str) -> None:
    # a smart process's table needs the source to list the types; the directories list what they need
    spa = "all" if any(name[4:].isdigit() for name in resources) else ()
    source = bitrix24_source(webhook_url=portal.webhook_url, rate_limit=None, smart_processes=spa)
    assert not pipeline.run(source.with_resources(*resources)).has_failed_jobs


def _by_type(rows: Iterable[dict[str, Any]], key: str) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(int(row[key]), []).append(row)
    return out


def _assert_directories_equal(portal: Sandbox, pipeline: dlt.Pipeline) -> None:
    assert_rows_equal(portal.rows("spa_types"), fetch_table(pipeline, "spa_types"))
    assert_rows_equal(portal.rows("crm_statuses"), fetch_table(pipeline, "crm_statuses"), id_key="ID")
    assert_rows_equal(portal.rows("departments"), fetch_table(pipeline, "departments"), id_key="ID")
    # pipelines are keyed by (entity type, id): compare them one entity type at a time
    expected = _by_type(portal.rows("crm_categories"), "entityTypeId")
    stored = _by_type(fetch_table(pipeline, "crm_categories"), "entity_type_id")
    assert set(stored) == set(expected) == {2, 31, 128, 1036}
    for entity_type_id, rows in expected.items():
        assert_rows_equal(rows, stored[entity_type_id])


def test_directories_equal_the_portal_and_are_replaced(tmp_path: Path) -> None:
    with Sandbox(
        seed=41, deals=2, leads=1, contacts=1, companies=1, users=3, tasks=0, departments=120
    ) as portal:
        pipeline = make_pipeline(tmp_path)
        _run(portal, pipeline, *DIRECTORIES)
        _assert_directories_equal(portal, pipeline)
        types = column_types(pipeline, "crm_statuses")
        assert (types["id"], types["sort"], types["system"]) == ("BIGINT", "BIGINT", "BOOLEAN")
        assert column_types(pipeline, "departments")["parent"] == "BIGINT"
        columns = pipeline.default_schema.get_table_columns("crm_categories")
        assert sorted(c for c, v in columns.items() if v.get("primary_key")) == ["entity_type_id", "id"]
        stats = resource_stats(pipeline)
        # 120 departments: the first page tells the total, the other two pages go in one batch
        assert stats["departments"] == {**stats["departments"], "rows": 120, "requests": 2}
        # every other directory fits one request; crm_categories lists the smart-process types first (the
        # source was made without them), then asks one command per entity type in one batch
        for table in ("spa_types", "crm_statuses"):
            assert stats[table]["requests"] == 1
        assert stats["crm_categories"]["requests"] == 2

        # The portal changes (no REST method of the sandbox writes these lists): a new, a renamed and a
        # removed department, a renamed deal stage, a removed source.
        portal.add_row("departments", {"NAME": "Research", "PARENT": 2, "SORT": 100})
        portal.update_row("departments", 3, {"NAME": "Renamed department"})
        portal.delete_row("departments", 120)
        stage = next(r for r in portal.rows("crm_statuses") if r["ENTITY_ID"] == "DEAL_STAGE")
        portal.update_row("crm_statuses", int(stage["ID"]), {"NAME": "Renamed stage"})
        source = next(r for r in portal.rows("crm_statuses") if r["ENTITY_ID"] == "SOURCE")
        portal.delete_row("crm_statuses", int(source["ID"]))
        _run(portal, pipeline, *DIRECTORIES)
        _assert_directories_equal(portal, pipeline)
        names = {r["name"] for r in fetch_table(pipeline, "departments")}
        assert {"Research", "Renamed department"} <= names


def test_field_definitions_describe_the_new_tables(tmp_path: Path) -> None:
    with Sandbox(seed=42, deals=2, leads=1, contacts=1, companies=1, users=2, tasks=0) as portal:
        pipeline = make_pipeline(tmp_path)
        _run(portal, pipeline, "quotes", "spa_1036", "crm_statuses", "departments", "field_definitions")
        rows = fetch_table(pipeline, "field_definitions")
        assert {r["entity"] for r in rows} == {"quotes", "spa_1036", "crm_statuses", "departments"}
        spa = {r["field"]: r for r in rows if r["entity"] == "spa_1036"}
        enum = next(r for r in spa.values() if r["type"] == "enumeration")
        assert [item["value"] for item in _json(enum["items"])] == ["High", "Normal", "Low"]
        statuses = {r["field"]: r["data_type"] for r in rows if r["entity"] == "crm_statuses"}
        assert statuses["SEMANTICS"] == "text" and statuses["SORT"] == "bigint"


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
