"""Pipeline tests on DuckDB: quotes, invoices and the smart processes (`spa_<entityTypeId>`) are read like deals,
follow changes made through REST incrementally, detect deletes, and can carry enumeration labels."""

from __future__ import annotations

import datetime as dt
import logging
import socket
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from bitrix24_source import bitrix24_source
from bitrix24_source.client import Bitrix24Client
from bitrix24_source.errors import AuthError, ConfigError, TransportError
from bitrix24_source.sandbox import Sandbox
from bitrix24_source.source import resource_stats, select_resources
from tests.helpers import column_types, fetch_table, make_pipeline
from tests.source.compare import assert_rows_equal

LAG = 300.0
ITEM_TABLES = {"quotes": 7, "invoices": 31, "spa_128": 128, "spa_1036": 1036}


def _portal() -> Sandbox:
    return Sandbox(
        seed=31,
        deals=5,
        leads=1,
        contacts=4,
        companies=3,
        users=3,
        tasks=0,
        spa_items=120,
        quotes=60,
        invoices=70,
    )


def _live(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Warehouse rows without the hard-delete marker column."""
    return [{k: v for k, v in r.items() if k != "_deleted"} for r in rows]


def _updated(row: Mapping[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(row["updatedTime"])


def _enum_field(portal: Sandbox, entity_type_id: int) -> tuple[str, dict[int, str]]:
    """The smart process's enumeration user field and its items (id -> label), from crm.item.fields."""
    client = Bitrix24Client(portal.webhook_url)
    fields = client.call("crm.item.fields", {"entityTypeId": entity_type_id}).result["fields"]
    name, meta = next((n, m) for n, m in fields.items() if n.startswith("uf") and m["type"] == "enumeration")
    return name, {int(item["ID"]): item["VALUE"] for item in meta["items"]}


def test_item_tables_equal_the_portal_and_follow_rest_changes(tmp_path: Path) -> None:
    with _portal() as portal:
        pipeline = make_pipeline(tmp_path)

        def run() -> None:
            source = bitrix24_source(
                webhook_url=portal.webhook_url,
                rate_limit=None,
                lag_seconds=LAG,
                detect_deletes=True,
                smart_processes="all",
            )
            selected = select_resources(source, ["quotes", "invoices", "smart_processes"])
            assert set(selected.selected_resources) == set(ITEM_TABLES)
            assert not pipeline.run(selected).has_failed_jobs

        run()
        for table in ITEM_TABLES:
            assert_rows_equal(portal.rows(table), fetch_table(pipeline, table))
        cursors = {table: max(_updated(r) for r in portal.rows(table)) for table in ITEM_TABLES}
        assert column_types(pipeline, "spa_128")["opportunity"].startswith("DECIMAL")

        # Changes through REST, an hour later: stage moves, field edits, an added item, deleted items.
        portal.advance_clock(3600)
        client = Bitrix24Client(portal.webhook_url)
        spa = portal.rows("spa_128")
        moved = next(r for r in spa if r["stageId"].endswith(":NEW"))
        client.call(
            "crm.item.update",
            {"entityTypeId": 128, "id": moved["id"], "fields": {"stageId": moved["stageId"][:-3] + "CLIENT"}},
        )
        enum_name, labels = _enum_field(portal, 1036)
        edited = portal.rows("spa_1036")[10]
        client.call(
            "crm.item.update",
            {
                "entityTypeId": 1036,
                "id": edited["id"],
                "fields": {"title": "Edited purchase", enum_name: max(labels)},
            },
        )
        quote = next(r for r in portal.rows("quotes") if r["stageId"] == "DRAFT")
        client.call(
            "crm.item.update", {"entityTypeId": 7, "id": quote["id"], "fields": {"stageId": "APPROVED"}}
        )
        invoice = portal.rows("invoices")[3]
        client.call(
            "crm.item.update", {"entityTypeId": 31, "id": invoice["id"], "fields": {"title": "Edited"}}
        )
        added = client.call("crm.item.add", {"entityTypeId": 128, "fields": {"title": "Added project"}})
        added_id = added.result["item"]["id"]
        gone = {31: portal.rows("invoices")[20]["id"], 1036: portal.rows("spa_1036")[30]["id"]}
        for entity_type_id, item_id in gone.items():
            client.call("crm.item.delete", {"entityTypeId": entity_type_id, "id": item_id})

        portal.reset_stats()
        run()
        stats = resource_stats(pipeline)
        for table, entity_type_id in ITEM_TABLES.items():
            rows = portal.rows(table)
            stored = _live(fetch_table(pipeline, table))
            assert_rows_equal(rows, stored)
            # only the rows changed since the last run's cursor (less the lag window) were read again
            window = [r for r in rows if _updated(r) >= cursors[table] - dt.timedelta(seconds=LAG)]
            assert stats[table]["rows"] == len(window) < len(rows) // 2
            # one batch for the changed rows (with the field list), one for the id scan
            assert stats[table]["requests"] == 2
            assert entity_type_id not in gone or gone[entity_type_id] not in {r["id"] for r in stored}
        assert added_id in {r["id"] for r in fetch_table(pipeline, "spa_128")}
        by_id = {r["id"]: r for r in fetch_table(pipeline, "spa_128")}
        assert by_id[moved["id"]]["stage_id"].endswith(":CLIENT")


def test_one_smart_process_is_selected_by_name(tmp_path: Path) -> None:
    with _portal() as portal:
        pipeline = make_pipeline(tmp_path)
        # by default nothing is asked when the source is made, and there are no smart-process resources
        plain = bitrix24_source(webhook_url=portal.webhook_url, rate_limit=None)
        assert portal.stats().http_requests == 0 and not [n for n in plain.resources if n[4:].isdigit()]
        with pytest.raises(ConfigError, match='smart_processes="all"'):
            select_resources(plain, ["spa_128"])
        source = bitrix24_source(webhook_url=portal.webhook_url, rate_limit=None, smart_processes="all")
        assert {"spa_128", "spa_1036"} <= set(source.resources)
        assert not pipeline.run(source.with_resources("spa_128", "field_definitions")).has_failed_jobs
        assert_rows_equal(portal.rows("spa_128"), fetch_table(pipeline, "spa_128"))
        assert "spa_1036" not in pipeline.default_schema.data_table_names()
        stats = portal.stats()
        # the type listing when the source is created, the field list (read once, by whichever of spa_128 and
        # field_definitions runs first) and one chain of pages
        assert set(stats.by_method) == {"crm.type.list", "crm.item.fields", "crm.item.list"}
        assert stats.http_requests <= 3 and stats.by_method["crm.item.fields"] == 1
        entities = {r["entity"] for r in fetch_table(pipeline, "field_definitions")}
        assert entities == {"spa_128"}


def test_given_smart_processes_skip_the_type_listing(tmp_path: Path) -> None:
    with _portal() as portal:
        source = bitrix24_source(webhook_url=portal.webhook_url, rate_limit=None, smart_processes=[1036])
        assert [name for name in source.resources if name.startswith("spa_") and name != "spa_types"] == [
            "spa_1036"
        ]
        assert "crm.type.list" not in portal.stats().by_method
        with pytest.raises(ConfigError, match="spa_128"):
            select_resources(source, ["spa_128"])


def test_a_webhook_without_crm_scope_is_told_to_make_the_source_without_smart_processes(
    tmp_path: Path,
) -> None:
    # An empty listing would leave smart processes out of every run without a word: the source fails, and
    # says how to make one for a webhook that has no crm scope.
    with Sandbox(seed=32, deals=1, leads=1, contacts=1, companies=1, users=4, tasks=0, scope=["user"]) as p:
        with pytest.raises(AuthError, match=r'insufficient_scope.*without smart_processes="all"'):
            bitrix24_source(webhook_url=p.webhook_url, rate_limit=None, smart_processes="all")
        assert p.stats().http_requests == 1  # asked once: a resend would be refused again
        source = bitrix24_source(webhook_url=p.webhook_url, rate_limit=None)
        assert not [name for name in source.resources if name.startswith("spa_") and name != "spa_types"]
        pipeline = make_pipeline(tmp_path)
        assert not pipeline.run(source.with_resources("users")).has_failed_jobs
        assert len(fetch_table(pipeline, "users")) == len(p.rows("users"))


def test_a_refused_webhook_fails_where_the_source_is_made_in_one_line(tmp_path: Path) -> None:
    # An empty listing would hide the smart processes: only a missing scope is let through (test above)
    with Sandbox(seed=33, deals=1, leads=1, contacts=1, companies=1, users=1, tasks=0) as p:
        wrong = p.webhook_url.replace(p.auth.webhook_code, "wrong-code-0123456789")
        with pytest.raises(AuthError) as caught:
            bitrix24_source(webhook_url=wrong, rate_limit=None, smart_processes="all")
        assert caught.value.__traceback__ is not None
        # raised afresh in the discovery: no frames of the client's layers, no chained cause
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
        frames = [f.name for f in traceback.extract_tb(caught.value.__traceback__)]
        assert "discover_smart_processes" in frames and "send" not in frames
        assert "wrong-code-0123456789" not in str(caught.value) and "\n" not in str(caught.value)
        # by default nothing is asked when the source is made
        p.reset_stats()
        bitrix24_source(webhook_url=wrong, rate_limit=None)
        assert p.stats().http_requests == 0


def test_a_portal_that_is_down_fails_where_the_source_is_made_after_one_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with (
        caplog.at_level(logging.WARNING, logger="bitrix24_source"),
        pytest.raises(
            TransportError, match=r"\[CONNECTION_REFUSED\] connection refused by 127.0.0.1:"
        ) as caught,
    ):
        bitrix24_source(
            webhook_url=f"http://127.0.0.1:{port}/rest/1/code-0123456789/",
            rate_limit=None,
            smart_processes="all",
        )
    assert "code-0123456789" not in str(caught.value)
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]  # sent once, not resent


def test_enum_labels_add_a_label_column_next_to_each_enumeration(tmp_path: Path) -> None:
    with _portal() as portal:
        enum_name, labels = _enum_field(portal, 128)
        column = enum_name.lower().replace("ufcrm", "uf_crm")

        def load(path: Path, **options: Any) -> list[dict[str, Any]]:
            pipeline = make_pipeline(path)
            source = bitrix24_source(
                webhook_url=portal.webhook_url, rate_limit=None, smart_processes=[128], **options
            )
            assert not pipeline.run(source.with_resources("spa_128")).has_failed_jobs
            names = list(column_types(pipeline, "spa_128"))
            if options.get("enum_labels"):
                assert names[names.index(column) + 1] == f"{column}_label"
            return fetch_table(pipeline, "spa_128")

        plain = load(tmp_path / "plain")
        assert f"{column}_label" not in plain[0]
        labelled = load(tmp_path / "labelled", enum_labels=True)
        portal_rows = portal.rows("spa_128")
        assert_rows_equal(portal_rows, labelled)
        by_id = {r["id"]: r for r in labelled}
        with_value = [r for r in portal_rows if r[enum_name] is not None]
        assert with_value and len(with_value) < len(portal_rows) + 1
        for row in portal_rows:
            expected = labels.get(row[enum_name]) if row[enum_name] is not None else None
            assert by_id[row["id"]][f"{column}_label"] == expected
