"""The source and the destination with PostgreSQL as the warehouse (a real server, see conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import dlt
import pandas as pd
import psycopg2
import pytest

from bitrix24_source import bitrix24_destination, bitrix24_source
from bitrix24_source.sandbox import Sandbox
from bitrix24_source.source import resource_stats
from bitrix24_source.source.settings import ALL_RESOURCES
from tests.cli.process import clean_env, run_cli, summary_row
from tests.helpers import fetch_table
from tests.source.compare import assert_rows_equal

pytestmark = pytest.mark.postgres

TABLES = ("leads", "deals", "contacts", "companies", "deal_products", "tasks", "task_results")


@pytest.fixture(scope="module")
def portal() -> Iterator[Sandbox]:
    with Sandbox(seed=21, deals=300, leads=40, contacts=60, companies=20, users=15, tasks=60) as p:
        yield p


def _pipeline(tmp_path: Path, url: str, name: str = "b24_pg") -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name=name,
        pipelines_dir=str(tmp_path / "pipelines"),
        destination=dlt.destinations.postgres(url),
        dataset_name=f"b24_{uuid.uuid4().hex[:8]}",
    )


def _assert_warehouse_equals_portal(portal: Sandbox, pipeline: dlt.Pipeline) -> None:
    for table in TABLES:
        assert_rows_equal(portal.rows(table), fetch_table(pipeline, table))
    assert_rows_equal(portal.rows("users"), fetch_table(pipeline, "users"), id_key="ID", rename={"ID": "id"})


def test_sync_into_postgres_equals_the_portal_row_by_row(
    portal: Sandbox, postgres_url: str, tmp_path: Path
) -> None:
    pipeline = _pipeline(tmp_path, postgres_url)
    source = bitrix24_source(webhook_url=portal.webhook_url, rate_limit=None)
    info = pipeline.run(source.with_resources(*ALL_RESOURCES))
    assert not info.has_failed_jobs
    _assert_warehouse_equals_portal(portal, pipeline)
    assert resource_stats(pipeline)["deals"]["rows"] == 300

    # the next run merges the portal's changes (an edit, an add) on id
    deal = portal.rows("deals")[0]
    portal.advance_clock(3600)
    portal.update_row("deals", deal["id"], {"title": "Edited before the second run"})
    portal.add_row("deals", {"title": "Added before the second run", "opportunity": 10.5})
    pipeline.run(
        bitrix24_source(webhook_url=portal.webhook_url, rate_limit=None).with_resources(*ALL_RESOURCES)
    )
    _assert_warehouse_equals_portal(portal, pipeline)
    # incremental: the second run read the changed deals, not all of them again
    assert resource_stats(pipeline)["deals"]["rows"] < 300


def test_push_results_land_in_postgres(portal: Sandbox, postgres_url: str, tmp_path: Path) -> None:
    deals = portal.rows("deals")
    changes = pd.DataFrame(
        {
            "id": [deals[1]["id"], deals[2]["id"], None],
            "title": ["Pushed from a test", None, "New deal pushed from a test"],
            "stageId": [None, "NO_SUCH_STAGE", None],
        }
    )
    dataset = f"writes_{uuid.uuid4().hex[:8]}"
    destination = bitrix24_destination(
        webhook_url=portal.webhook_url,
        results_destination=dlt.destinations.postgres(postgres_url),
        results_dataset_name=dataset,
        rate_limit=None,
    )
    pipeline = dlt.pipeline("b24_pg_push", destination=destination, pipelines_dir=str(tmp_path / "pipelines"))
    pipeline.run(changes, table_name="deals")

    with psycopg2.connect(postgres_url) as con, con.cursor() as cur:
        cur.execute(
            f"select row_number, operation, status, error_code, bitrix_id "
            f"from {dataset}.bitrix24_write_results order by row_number"
        )
        results = cur.fetchall()
        cur.execute(f"select row_number, error_code, row_json from {dataset}.bitrix24_write_errors")
        errors = cur.fetchall()
    new_id = max(int(r["id"]) for r in portal.rows("deals"))
    assert results == [
        (0, "update", "ok", None, int(deals[1]["id"])),
        (1, "update", "error", "INVALID_ENUM_VALUE", None),  # rejected before sending
        (2, "add", "ok", None, new_id),
    ]
    assert [(e[0], e[1]) for e in errors] == [(1, "INVALID_ENUM_VALUE")]
    assert "NO_SUCH_STAGE" in errors[0][2]


def test_cli_sync_into_postgres(portal: Sandbox, postgres_url: str, tmp_path: Path) -> None:
    dataset = f"cli_{uuid.uuid4().hex[:8]}"
    env = clean_env(
        SOURCES__BITRIX24__WEBHOOK_URL=portal.webhook_url, DESTINATION__POSTGRES__CREDENTIALS=postgres_url
    )
    run = run_cli(
        "sync",
        "--destination",
        "postgres",
        "--dataset-name",
        dataset,
        "--resources",
        "deals,companies",
        "--rate-limit",
        "off",
        "--pipelines-dir",
        str(tmp_path),
        cwd=tmp_path,
        env=env,
    )
    assert run.returncode == 0, run.output
    assert "loading into postgres" in run.stdout
    with psycopg2.connect(postgres_url) as con, con.cursor() as cur:
        cur.execute(f"select count(*) from {dataset}.deals")
        assert cur.fetchone() == (len(portal.rows("deals")),)
    assert summary_row(run.stdout, "companies")[:2] == ["20", "20"]
