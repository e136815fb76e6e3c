"""`bitrix24-dlt sync --resources`, `fields` and `doctor` with smart processes (names that depend on the portal)
and the directories."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import requests

from bitrix24_source.sandbox import Sandbox
from tests.cli.process import WEBHOOK_CODE, run_cli, summary_row
from tests.source.compare import assert_rows_equal


def _rows(db: Path, table: str) -> list[dict[str, object]]:
    with duckdb.connect(str(db), read_only=True) as con:
        cursor = con.execute(f"select * from bitrix24.{table}")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def test_sync_selects_smart_processes_by_name_and_all_of_them(
    portal: Sandbox, portal_env: dict[str, str], tmp_path: Path
) -> None:
    db = tmp_path / "warehouse.duckdb"
    env = {**portal_env, "DESTINATION__DUCKDB__CREDENTIALS": str(db)}
    common = ("--rate-limit", "off", "--pipelines-dir", str(tmp_path))

    one = run_cli("sync", "--resources", "spa_1036,departments", *common, cwd=tmp_path, env=env)
    assert one.returncode == 0, one.output
    assert WEBHOOK_CODE not in one.output
    assert summary_row(one.stdout, "spa_1036")[0] == str(len(portal.rows("spa_1036")))
    assert not any(line.startswith("spa_128") for line in one.stdout.splitlines())
    assert_rows_equal(portal.rows("departments"), _rows(db, "departments"), id_key="ID")

    every = run_cli("sync", "--resources", "smart_processes,quotes,invoices", *common, cwd=tmp_path, env=env)
    assert every.returncode == 0, every.output
    for table in ("spa_128", "spa_1036", "quotes", "invoices"):
        assert_rows_equal(portal.rows(table), _rows(db, table))
        assert summary_row(every.stdout, table)[0] == str(len(portal.rows(table)))

    missing = run_cli("sync", "--resources", "spa_130", *common, cwd=tmp_path, env=env)
    assert missing.returncode == 1
    assert "spa_130" in missing.stderr and "spa_128" in missing.stderr and "Traceback" not in missing.output


def test_sync_all_includes_the_new_tables(
    portal: Sandbox, portal_env: dict[str, str], tmp_path: Path
) -> None:
    db = tmp_path / "warehouse.duckdb"
    env = {**portal_env, "DESTINATION__DUCKDB__CREDENTIALS": str(db)}
    run = run_cli(
        "sync",
        "--resources",
        "all",
        "--rate-limit",
        "off",
        "--pipelines-dir",
        str(tmp_path),
        cwd=tmp_path,
        env=env,
    )
    assert run.returncode == 0, run.output
    for table in ("quotes", "invoices", "spa_128", "spa_1036", "spa_types", "crm_statuses", "crm_categories"):
        assert summary_row(run.stdout, table)[0] == str(len(portal.rows(table)))
    assert_rows_equal(portal.rows("spa_128"), _rows(db, "spa_128"))


def test_fields_describes_a_smart_process(
    portal: Sandbox, portal_env: dict[str, str], tmp_path: Path
) -> None:
    run = run_cli("fields", "spa_128", "--json", "--custom", cwd=tmp_path, env=portal_env)
    assert run.returncode == 0, run.output
    listed = {row["name"]: row for row in json.loads(run.stdout)}
    raw = requests.post(portal.webhook_url + "crm.item.fields", json={"entityTypeId": 128}, timeout=10).json()
    custom = {name: desc for name, desc in raw["result"]["fields"].items() if name.startswith("ufCrm")}
    assert custom and set(listed) == set(custom)
    enum = next(name for name, desc in custom.items() if desc["type"] == "enumeration")
    assert listed[enum]["labels"] == {str(item["ID"]): item["VALUE"] for item in custom[enum]["items"]}
    wrong = run_cli("fields", "spa_x", cwd=tmp_path, env=portal_env)
    assert wrong.returncode == 2 and "unknown entity spa_x" in wrong.stderr


def test_doctor_checks_the_scopes_of_the_new_tables(portal_env: dict[str, str], tmp_path: Path) -> None:
    run = run_cli("doctor", "--resources", "smart_processes,departments", cwd=tmp_path, env=portal_env)
    assert run.returncode == 0, run.output
    assert "scope crm granted (smart_processes" in run.stdout
    assert "scope department granted (departments)" in run.stdout
