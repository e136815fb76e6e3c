"""Pipeline tests on DuckDB for the `stage_history` table: every history row of leads, deals, invoices and the
smart processes equals the sandbox portal's; after stage moves through REST (crm.item.update, crm.item.add) a
second run reads only the new rows of each entity type."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import pytest

from bitrix24_source import bitrix24_source
from bitrix24_source.client import Bitrix24Client
from bitrix24_source.sandbox import Sandbox
from bitrix24_source.source import resource_stats
from tests.helpers import column_types, fetch_table, make_pipeline
from tests.source.compare import assert_rows_equal

TYPE_OF = {"leads": 1, "deals": 2, "invoices": 31, "spa_128": 128, "spa_1036": 1036}


@pytest.fixture
def portal() -> Iterator[Sandbox]:
    with Sandbox(
        seed=22, deals=150, leads=60, contacts=20, companies=10, users=5, tasks=0, spa_items=30, activities=0
    ) as p:
        yield p


def _assert_equal(portal: Sandbox, pipeline: dlt.Pipeline, types: set[int] | None = None) -> None:
    """Per entity type (history ids are numbered per type), every row and field equals the portal's."""
    expected = portal.rows("stage_history")
    stored = fetch_table(pipeline, "stage_history")
    wanted = types if types is not None else {r["entityTypeId"] for r in expected}
    assert {r["entity_type_id"] for r in stored} == wanted
    for type_id in wanted:
        assert_rows_equal(
            [
                {k: v for k, v in r.items() if k != "entityTypeId"}
                for r in expected
                if r["entityTypeId"] == type_id
            ],
            [r for r in stored if r["entity_type_id"] == type_id],
            id_key="ID",
            rename={"ID": "id"},
        )


def _run(portal: Sandbox, pipeline: dlt.Pipeline) -> None:
    source = bitrix24_source(webhook_url=portal.webhook_url, rate_limit=None)
    assert not pipeline.run(source.with_resources("stage_history")).has_failed_jobs


def _moves(portal: Sandbox, entity: str, count: int) -> list[tuple[int, str]]:
    """(item id, another stage of the item's pipeline) for `count` items: a stage another item is in."""
    rows = portal.rows(entity)
    out: list[tuple[int, str]] = []
    for row in rows:
        other = next(
            (
                r["stageId"]
                for r in rows
                if r.get("categoryId") == row.get("categoryId") and r["stageId"] != row["stageId"]
            ),
            None,
        )
        if other is not None:
            out.append((row["id"], other))
        if len(out) == count:
            return out
    raise AssertionError(f"{entity}: fewer than {count} items can move")


def _move(client: Bitrix24Client, entity: str, moves: list[tuple[int, str]]) -> None:
    calls = [
        ("crm.item.update", {"entityTypeId": TYPE_OF[entity], "id": id_, "fields": {"stageId": stage}})
        for id_, stage in moves
    ]
    answer = client.batch_by_chunk(calls)
    assert all(res.ok for res in answer.results)


def _new_rows(portal: Sandbox, before: list[dict[str, Any]]) -> int:
    return len(portal.rows("stage_history")) - len(before)


def test_history_of_every_type_equals_the_portal_and_later_runs_read_only_new_rows(
    portal: Sandbox, tmp_path: Path
) -> None:
    pipeline = make_pipeline(tmp_path)
    _run(portal, pipeline)
    _assert_equal(portal, pipeline, types={1, 2, 31, 128, 1036})
    table = pipeline.default_schema.tables["stage_history"]
    assert [c for c, col in table["columns"].items() if col.get("primary_key")] == ["entity_type_id", "id"]
    types = column_types(pipeline, "stage_history")
    assert types["id"] == types["owner_id"] == types["type_id"] == types["category_id"] == "BIGINT"
    assert types["created_time"] == "TIMESTAMP WITH TIME ZONE"
    assert types["stage_id"] == types["status_id"] == "VARCHAR"
    assert resource_stats(pipeline)["stage_history"]["rows"] == len(portal.rows("stage_history"))

    # A lead and a smart-process item move, a new smart-process item starts in its first stage.
    client = Bitrix24Client(portal.webhook_url)
    before = portal.rows("stage_history")
    _move(client, "leads", _moves(portal, "leads", 1))
    _move(client, "spa_128", _moves(portal, "spa_128", 1))
    added = client.call("crm.item.add", {"entityTypeId": 1036, "fields": {"title": "New project"}}).result
    assert added["item"]["id"]
    new = _new_rows(portal, before)
    assert new == 3
    portal.reset_stats()
    _run(portal, pipeline)
    _assert_equal(portal, pipeline)
    # Only the 3 new rows were served: one batch asks every type for its rows after its last id; the one
    # crm.type.list is the source's own, made when it is created (its staged types serve the history).
    stats = portal.stats()
    assert stats.http_by_method == {"crm.type.list": 1, "batch": 1}
    assert stats.rows_returned["crm.stagehistory.list"] == new
    assert stats.by_method["crm.stagehistory.list"] == 5
    assert resource_stats(pipeline)["stage_history"]["rows"] == new

    # 55 deals move: the deals' first page comes back full and continues as a keyset chain.
    before = portal.rows("stage_history")
    _move(client, "deals", _moves(portal, "deals", 55))
    assert _new_rows(portal, before) == 55
    portal.reset_stats()
    _run(portal, pipeline)
    _assert_equal(portal, pipeline)
    assert resource_stats(pipeline)["stage_history"]["rows"] == 55
    assert portal.stats().http_by_method == {"crm.type.list": 1, "batch": 2}

    # Nothing new: the same two requests, no rows.
    portal.reset_stats()
    _run(portal, pipeline)
    assert resource_stats(pipeline)["stage_history"]["rows"] == 0
    assert portal.stats().rows_returned.get("crm.stagehistory.list", 0) == 0
    assert portal.stats().http_requests == 2


def test_a_smart_process_without_stages_is_not_asked_for_history(tmp_path: Path) -> None:
    # few items: every type's history fits in its first page, so one command per type asked
    with Sandbox(
        seed=23,
        deals=8,
        leads=8,
        contacts=5,
        companies=3,
        users=3,
        tasks=0,
        spa_items=8,
        invoices=8,
        activities=0,
    ) as portal:
        spa_1036 = next(r for r in portal.rows("spa_types") if r["entityTypeId"] == 1036)
        portal.update_row("spa_types", spa_1036["id"], {"isStagesEnabled": "N"})
        pipeline = make_pipeline(tmp_path)
        _run(portal, pipeline)
        _assert_equal(portal, pipeline, types={1, 2, 31, 128})
        assert portal.stats().by_method["crm.stagehistory.list"] == 4
