"""pipelines/dagster_portals.py: several portals materialized by Dagster, each into its own pipeline and dataset."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import dagster as dg
import duckdb
import pytest

from bitrix24_source.sandbox import Sandbox
from tests.source.compare import assert_rows_equal

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dagster_portals_example", PIPELINES / "dagster_portals.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def portals() -> Iterator[dict[str, Sandbox]]:
    with (
        Sandbox(seed=31, deals=150, leads=20, contacts=30, companies=10, users=5, tasks=5) as north,
        Sandbox(seed=32, deals=80, leads=10, contacts=15, companies=5, users=5, tasks=5) as south,
    ):
        yield {"north": north, "south": south}


def _rows(root: Path, name: str, table: str) -> list[dict[str, Any]]:
    with duckdb.connect(str(root / f"{name}.duckdb"), read_only=True) as con:
        cursor = con.execute(f"select * from bitrix24_{name}.{table}")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _metadata(result: dg.ExecuteInProcessResult) -> dict[tuple[str, ...], dict[str, Any]]:
    out = {}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        out[tuple(materialization.asset_key.path)] = {k: v.value for k, v in materialization.metadata.items()}
    return out


def test_each_portal_syncs_into_its_own_pipeline_and_dataset(
    example: ModuleType, portals: dict[str, Sandbox], tmp_path: Path
) -> None:
    defs = example.definitions(
        {name: p.webhook_url for name, p in portals.items()},
        destination_for=example.duckdb_per_portal(tmp_path),
        pipelines_dir=str(tmp_path / "pipelines"),
        rate_limit=None,
    )
    assert [(s.name, s.cron_schedule) for s in defs.schedules] == [("bitrix24_hourly", "0 * * * *")]
    assets = list(defs.assets)
    first = dg.materialize(assets, instance=dg.DagsterInstance.ephemeral())
    assert first.success
    meta = _metadata(first)
    for name, portal in portals.items():
        for table in ("deals", "contacts", "deal_products"):
            assert_rows_equal(portal.rows(table), _rows(tmp_path, name, table))
            assert meta[(name, table)]["rows_in_warehouse"] == len(portal.rows(table))
        # one dlt pipeline (and so one state with its own incremental cursors) per portal
        assert (tmp_path / "pipelines" / f"bitrix24_{name}" / "state.json").exists()

    # a change in one portal reaches only that portal's dataset; both runs read incrementally
    north = portals["north"]
    deal = north.rows("deals")[0]
    north.advance_clock(3600)
    north.update_row("deals", deal["id"], {"title": "Edited in the north portal"})
    second = dg.materialize(assets, instance=dg.DagsterInstance.ephemeral())
    assert second.success
    again = _metadata(second)
    assert again[("north", "deals")]["rows_read"] < len(north.rows("deals"))
    assert again[("south", "deals")]["rows_read"] < len(portals["south"].rows("deals"))
    assert_rows_equal(north.rows("deals"), _rows(tmp_path, "north", "deals"))
    assert "Edited in the north portal" not in {r["title"] for r in _rows(tmp_path, "south", "deals")}
