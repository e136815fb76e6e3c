"""Pipeline tests on DuckDB: typed Arrow pages, field lists only for what is selected, request economy."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bitrix24_source import bitrix24_source
from bitrix24_source.cli import sync as cli_sync
from bitrix24_source.sandbox import Sandbox
from bitrix24_source.source import resource_stats
from tests.helpers import column_types, fetch_table, make_pipeline
from tests.source.compare import assert_rows_equal


def test_crm_only_webhook_syncs_the_default_tables(tmp_path: Path) -> None:
    with Sandbox(
        seed=21, deals=40, leads=10, contacts=10, companies=10, users=5, tasks=5, scope=["crm"]
    ) as p:
        pipeline = make_pipeline(tmp_path)
        info = pipeline.run(bitrix24_source(webhook_url=p.webhook_url, rate_limit=None))
        assert not info.has_failed_jobs
        for table in ("leads", "deals", "contacts", "companies", "deal_products"):
            assert_rows_equal(p.rows(table), fetch_table(pipeline, table))
        by_method = p.stats().by_method
        assert "user.fields" not in by_method and "tasks.task.field.list" not in by_method
        entities = {row["entity"] for row in fetch_table(pipeline, "field_definitions")}
        assert entities == {"leads", "deals", "contacts", "companies", "deal_products"}


def test_field_list_and_last_id_ride_in_the_first_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # 4,900 deals: 48 pages in the first batch (beside the field list and the last-id page), 50 in the
    # second; the second ends on a full page at the last id, so no batch of empty pages follows
    with Sandbox(seed=22, deals=4_900, leads=1, contacts=1, companies=1, users=1, tasks=0) as p:
        pipeline = make_pipeline(tmp_path)
        source = bitrix24_source(webhook_url=p.webhook_url, rate_limit=None)
        # making the source sends nothing (smart processes are listed only with smart_processes="all")
        assert p.stats().http_requests == 0
        with caplog.at_level(logging.WARNING):
            pipeline.run(source.with_resources("deals"))
        # json columns travel as Arrow text, as dlt carries them itself: no notice per page about it
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
        assert column_types(pipeline, "deals")["contact_ids"] == "JSON"
        stats = p.stats()
        assert stats.http_requests == 2
        assert stats.by_method["crm.item.fields"] == 1
        assert set(stats.by_method) == {"crm.item.fields", "crm.item.list"}
        assert resource_stats(pipeline)["deals"]["requests"] == 2
        assert_rows_equal(p.rows("deals"), fetch_table(pipeline, "deals"))


def test_product_rows_fill_their_requests(tmp_path: Path) -> None:
    # 0-3 product rows per deal (1.5 on average): at least 1,500 product rows per request
    with Sandbox(seed=23, deals=7_500, leads=1, contacts=1, companies=1, users=1, tasks=0) as p:
        pipeline = make_pipeline(tmp_path)
        pipeline.run(
            bitrix24_source(webhook_url=p.webhook_url, rate_limit=None).with_resources(
                "deals", "deal_products"
            )
        )
        own = resource_stats(pipeline)["deal_products"]
        assert own["rows"] == len(p.rows("deal_products"))
        assert own["rows"] / own["requests"] >= 1_500, own
        assert_rows_equal(p.rows("deal_products"), fetch_table(pipeline, "deal_products"))


def test_values_that_do_not_fit_their_column_go_to_a_raw_text_column(tmp_path: Path) -> None:
    with Sandbox(seed=24, deals=30, leads=1, contacts=1, companies=1, users=1, tasks=0) as p:
        odd, exact = p.rows("deals")[3], p.rows("deals")[4]
        p.update_row("deals", odd["id"], {"opportunity": "12,5"})
        # more decimals than the column's scale: not rounded into DECIMAL(18,2)
        p.update_row("deals", exact["id"], {"opportunity": "10.125"})
        pipeline = make_pipeline(tmp_path)
        pipeline.run(bitrix24_source(webhook_url=p.webhook_url, rate_limit=None).with_resources("deals"))
        types = column_types(pipeline, "deals")
        assert [name for name in types if "__v_" in name] == []
        assert types["opportunity"] == "DECIMAL(18,2)" and types["opportunity_raw"] == "VARCHAR"
        stored = {row["id"]: row for row in fetch_table(pipeline, "deals")}
        assert (stored[odd["id"]]["opportunity"], stored[odd["id"]]["opportunity_raw"]) == (None, "12,5")
        assert (stored[exact["id"]]["opportunity"], stored[exact["id"]]["opportunity_raw"]) == (
            None,
            "10.125",
        )
        others = [row for row in stored.values() if row["id"] not in (odd["id"], exact["id"])]
        assert others and all(row["opportunity_raw"] is None for row in others)
        assert_rows_equal(p.rows("deals"), stored.values())


def test_the_duckdb_warehouses_of_the_cli_and_demo_cap_duckdbs_memory(tmp_path: Path) -> None:
    # DuckDB's default buffer pool is 80 % of RAM; loading 500,000 deals took a sync past 800 MB without a cap
    with Sandbox(seed=23, deals=60, leads=1, contacts=1, companies=1, users=1, tasks=0) as p:
        destination = cli_sync.duckdb_warehouse(str(tmp_path / "capped.duckdb"))
        pipeline = make_pipeline(tmp_path, destination=destination)
        pipeline.run(bitrix24_source(webhook_url=p.webhook_url, rate_limit=None).with_resources("deals"))
        assert_rows_equal(p.rows("deals"), fetch_table(pipeline, "deals"))
        with pipeline.sql_client() as sql:
            [(limit,)] = sql.execute_sql("SELECT current_setting('memory_limit')")
        assert limit == "95.3 MiB"  # DuckDB prints 100MB (decimal) in binary units
    # the CLI's choice: DuckDB capped unless its credentials are configured as a table, other names as given
    assert cli_sync.sync_destination("postgres", "p", "100MB") == "postgres"
    assert cli_sync.sync_destination("duckdb", "p", None) == "duckdb"
    capped = cli_sync.sync_destination("duckdb", "p", "100MB")
    assert capped.config_params["credentials"].global_config == {"memory_limit": "100MB"}
