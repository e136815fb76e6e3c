"""`bitrix24-dlt sync --resources` accepts activities and stage_history; `all` and the doctor know them."""

from __future__ import annotations

from pathlib import Path

from bitrix24_source.cli.doctor import needed_scopes
from bitrix24_source.cli.sync import DEFAULT_RESOURCES, resource_list
from bitrix24_source.sandbox import Sandbox
from tests.cli.process import run_cli, summary_row
from tests.helpers import read_duckdb_table
from tests.source.compare import assert_rows_equal


def test_all_selects_activities_and_stage_history_and_the_default_does_not() -> None:
    assert {"activities", "stage_history"} <= set(resource_list("all"))
    assert resource_list("activities,stage_history") == ("activities", "stage_history")
    assert not {"activities", "stage_history"} & set(DEFAULT_RESOURCES)
    assert needed_scopes(["activities", "stage_history"])["crm"] == ["activities", "stage_history"]


def test_sync_loads_activities_and_stage_history(
    portal: Sandbox, portal_env: dict[str, str], tmp_path: Path
) -> None:
    db = tmp_path / "warehouse.duckdb"
    env = {**portal_env, "DESTINATION__DUCKDB__CREDENTIALS": str(db)}
    args = (
        "sync",
        "--resources",
        "activities,stage_history",
        "--rate-limit",
        "off",
        "--pipelines-dir",
        str(tmp_path),
    )
    run = run_cli(*args, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.output
    activities = portal.rows("activities")
    history = portal.rows("stage_history")
    # rows in the warehouse, rows read: every activity in one chain batch (with its field list)
    assert summary_row(run.stdout, "activities")[:3] == [str(len(activities)), str(len(activities)), "1"]
    assert summary_row(run.stdout, "stage_history")[:2] == [str(len(history)), str(len(history))]
    stored = read_duckdb_table(db, "bitrix24", "activities", "id")
    assert_rows_equal(activities, stored, id_key="ID", rename={"ID": "id"})
    stored_history = read_duckdb_table(db, "bitrix24", "stage_history", "entity_type_id, id")
    assert [(r["entity_type_id"], r["id"]) for r in stored_history] == [
        (r["entityTypeId"], r["ID"]) for r in history
    ]
