"""The `bitrix24-dlt` sub-commands, each run as a separate process against a sandbox portal."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from bitrix24_source import Bitrix24Client
from bitrix24_source.sandbox import CostModel, Sandbox
from tests.cli.process import WEBHOOK_CODE, Run, clean_env, run_cli, summary_row
from tests.source.compare import assert_rows_equal

SUBCOMMANDS = ("sync", "push", "results", "fields", "doctor", "sandbox")


def _no_traceback_no_secret(run: Run) -> None:
    assert "Traceback" not in run.output
    assert WEBHOOK_CODE not in run.output


def _problems(run: Run) -> list[str]:
    return [line for line in run.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help_with_examples(command: str, tmp_path: Path) -> None:
    run = run_cli(command, "--help", cwd=tmp_path)
    assert run.returncode == 0, run.output
    assert "examples:" in run.stdout
    assert f"bitrix24-dlt {command}" in run.stdout


def test_top_level_help_lists_the_subcommands(tmp_path: Path) -> None:
    run = run_cli("--help", cwd=tmp_path)
    assert run.returncode == 0
    for command in SUBCOMMANDS:
        assert command in run.stdout


def _warehouse_rows(db: Path, table: str) -> list[dict[str, object]]:
    with duckdb.connect(str(db), read_only=True) as con:
        cursor = con.execute(f"select * from bitrix24.{table}")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def test_sync_loads_the_chosen_tables_and_prints_a_summary(
    portal: Sandbox, portal_env: dict[str, str], tmp_path: Path
) -> None:
    db = tmp_path / "warehouse.duckdb"
    env = {**portal_env, "DESTINATION__DUCKDB__CREDENTIALS": str(db)}
    args = ("sync", "--resources", "deals,contacts", "--rate-limit", "off", "--pipelines-dir", str(tmp_path))
    run = run_cli(*args, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.output
    _no_traceback_no_secret(run)
    # rows in the warehouse, rows read, requests, seconds: one 50-page chain per table here
    assert summary_row(run.stdout, "deals")[:3] == ["120", "120", "1"]
    assert summary_row(run.stdout, "contacts")[:3] == ["40", "40", "1"]
    assert not any(line.startswith("tasks") for line in run.stdout.splitlines())
    assert "extracting deals, contacts" in run.stdout and "loading into duckdb" in run.stdout
    # not a terminal: plain lines with a time stamp, no colour codes
    assert re.match(r"\d\d:\d\d:\d\d portal 127\.0\.0\.1:\d+ \(webhook\) -> duckdb", run.stdout)
    assert "\x1b[" not in run.output
    assert_rows_equal(portal.rows("deals"), _warehouse_rows(db, "deals"))
    assert_rows_equal(portal.rows("contacts"), _warehouse_rows(db, "contacts"))

    # a re-run merges on id: the warehouse is unchanged; --full-refresh drops and reloads
    for again in ((), ("--full-refresh",)):
        rerun = run_cli(*args, *again, cwd=tmp_path, env=env)
        assert rerun.returncode == 0, rerun.output
        assert_rows_equal(portal.rows("deals"), _warehouse_rows(db, "deals"))


@pytest.mark.parametrize("destination", ["filesystem", "dummy"])
def test_sync_into_other_destinations(
    portal: Sandbox, portal_env: dict[str, str], tmp_path: Path, destination: str
) -> None:
    bucket = tmp_path / "bucket"
    env = {
        **portal_env,
        "DESTINATION__FILESYSTEM__BUCKET_URL": bucket.as_uri(),
        "DESTINATION__DUMMY__COMPLETED_PROB": "1.0",  # dlt's test destination: every job completes
    }
    args = ("--destination", destination, "--resources", "companies", "--pipelines-dir", str(tmp_path))
    run = run_cli("sync", *args, "--rate-limit", "off", cwd=tmp_path, env=env)
    assert run.returncode == 0, run.output
    if destination == "filesystem":
        # dlt queries the files it wrote, so rows in the warehouse are counted as for a database
        assert summary_row(run.stdout, "companies")[:3] == ["10", "10", "1"]
        assert list((bucket / "bitrix24" / "companies").iterdir())
    else:
        # a destination without SQL: rows in the warehouse are unknown ("-"), rows read and requests are not
        assert summary_row(run.stdout, "companies")[:3] == ["-", "10", "1"]


def test_the_console_script_is_installed(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("bitrix24-dlt")
    done = subprocess.run([str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "usage: bitrix24-dlt" in done.stdout


def test_sync_without_credentials_says_where_to_put_them(tmp_path: Path) -> None:
    run = run_cli("sync", "--pipelines-dir", str(tmp_path), cwd=tmp_path)
    assert run.returncode == 1
    problems = _problems(run)
    assert len(problems) == 1 and "SOURCES__BITRIX24__WEBHOOK_URL" in problems[0]
    assert "Traceback" not in run.output


def test_sync_rejects_an_unknown_resource(tmp_path: Path) -> None:
    run = run_cli("sync", "--resources", "deals,orders", cwd=tmp_path)
    assert run.returncode == 2  # argparse's usage error
    assert "unknown resource orders" in run.stderr


def _push(tmp_path: Path, env: dict[str, str], *args: str) -> Run:
    return run_cli("push", *args, "--pipelines-dir", str(tmp_path / "pipelines"), cwd=tmp_path, env=env)


def test_push_csv_reports_failed_rows_and_results_shows_them(
    portal: Sandbox, portal_env: dict[str, str], tmp_path: Path
) -> None:
    first, second = portal.rows("deals")[:2]
    csv = tmp_path / "changes.csv"
    pd.DataFrame(
        {
            "id": [first["id"], second["id"]],
            "title": ["Renamed by the CLI", None],
            "stageId": [None, "NO_SUCH"],
        }
    ).to_csv(csv, index=False)

    run = _push(tmp_path, portal_env, str(csv), "--entity", "deals")
    assert run.returncode == 2, run.output  # some rows failed
    _no_traceback_no_secret(run)
    assert "deals: 2 rows, 1 ok, 1 errors" in run.stdout
    assert "failed rows: 1" in run.stdout
    assert str(tmp_path / "bitrix24_push_results.duckdb") in run.stdout
    assert portal.rows("deals")[0]["title"] == "Renamed by the CLI"

    results = run_cli("results", "--pipelines-dir", str(tmp_path / "pipelines"), cwd=tmp_path, env=portal_env)
    assert results.returncode == 2, results.output
    failed = [line for line in results.stdout.splitlines() if "INVALID_ENUM_VALUE" in line]
    assert len(failed) == 1 and "NO_SUCH" in failed[0]
    with duckdb.connect(str(tmp_path / "bitrix24_push_results.duckdb"), read_only=True) as con:
        statuses = con.execute(
            "select status, count(*) from bitrix24_writes.bitrix24_write_results group by 1 order by 1"
        ).fetchall()
    assert statuses == [("error", 1), ("ok", 1)]


def test_push_dry_run_writes_nothing(portal: Sandbox, portal_env: dict[str, str], tmp_path: Path) -> None:
    deal = portal.rows("deals")[5]
    jsonl = tmp_path / "changes.jsonl"
    jsonl.write_text(json.dumps({"id": deal["id"], "title": "Only planned"}) + "\n")
    run = _push(tmp_path, portal_env, str(jsonl), "--entity", "deals", "--dry-run")
    assert run.returncode == 0, run.output
    assert "1 planned (dry run)" in run.stdout
    assert portal.rows("deals")[5]["title"] == deal["title"]


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_push_adds_rows_from_parquet_and_json_lines(
    portal: Sandbox, portal_env: dict[str, str], tmp_path: Path, suffix: str
) -> None:
    titles = [f"CLI contact {suffix} {i}" for i in range(3)]
    path = tmp_path / f"contacts{suffix}"
    if suffix == ".parquet":
        pq.write_table(pa.table({"name": titles, "lastName": ["Doe"] * 3}), path)
    else:
        path.write_text("".join(json.dumps({"name": t, "lastName": "Doe"}) + "\n" for t in titles))
    before = len(portal.rows("contacts"))
    run = _push(tmp_path, portal_env, str(path), "--entity", "contacts", "--key", "name")
    assert run.returncode == 0, run.output
    assert "contacts: 3 rows, 3 ok, 0 errors" in run.stdout
    assert len(portal.rows("contacts")) == before + 3
    assert {r["name"] for r in portal.rows("contacts")} >= set(titles)


def test_push_of_a_missing_file_is_one_line(portal_env: dict[str, str], tmp_path: Path) -> None:
    run = _push(tmp_path, portal_env, str(tmp_path / "nope.csv"), "--entity", "deals")
    assert run.returncode == 1
    assert _problems(run) == [f"problem: push: no such file: {tmp_path / 'nope.csv'}"]


def test_results_before_any_push_is_one_line(tmp_path: Path) -> None:
    run = run_cli("results", "--pipelines-dir", str(tmp_path), cwd=tmp_path)
    assert run.returncode == 1
    assert len(_problems(run)) == 1 and "run `bitrix24-dlt push` first" in run.stderr


def test_fields_lists_what_the_portal_describes(
    portal: Sandbox, portal_env: dict[str, str], tmp_path: Path
) -> None:
    run = run_cli("fields", "deals", "--json", cwd=tmp_path, env=portal_env)
    assert run.returncode == 0, run.output
    listed = {row["name"]: row for row in json.loads(run.stdout)}
    # the portal's own answer, read here over plain HTTP
    raw = requests.post(portal.webhook_url + "crm.item.fields", json={"entityTypeId": 2}, timeout=10).json()
    described = raw["result"]["fields"]
    assert set(listed) == set(described)
    for name, desc in described.items():
        assert listed[name]["type"] == desc["type"].lower()
        assert listed[name]["required"] == bool(desc["isRequired"])
        assert listed[name]["read_only"] == bool(desc["isReadOnly"])
        assert listed[name]["multiple"] == bool(desc["isMultiple"])
    # stage labels come from the deal stage directory
    stages = requests.post(
        portal.webhook_url + "crm.status.list", json={"filter": {"ENTITY_ID": "DEAL_STAGE"}}, timeout=10
    ).json()["result"]
    assert listed["stageId"]["labels"] == {s["STATUS_ID"]: s["NAME"] for s in stages}

    table = run_cli("fields", "deals", cwd=tmp_path, env=portal_env)
    assert table.returncode == 0
    stage_line = next(line for line in table.stdout.splitlines() if line.startswith("stageId"))
    assert "crm_status" in stage_line and "NEW=" in stage_line


def test_doctor_passes_on_a_healthy_portal(portal_env: dict[str, str], tmp_path: Path) -> None:
    run = run_cli("doctor", "--resources", "deals,users,tasks", cwd=tmp_path, env=portal_env)
    assert run.returncode == 0, run.output
    _no_traceback_no_secret(run)
    for check in (
        "reachable",
        "clock offset",
        "scope crm granted",
        "scope user granted",
        "scope task granted",
    ):
        assert check in run.stdout
    assert "operating budget" in run.stdout


def test_doctor_wrong_webhook_is_one_line_within_seconds(portal: Sandbox, tmp_path: Path) -> None:
    wrong = portal.webhook_url.replace(WEBHOOK_CODE, "not0the0right0code")
    run = run_cli("doctor", "--webhook-url", wrong, cwd=tmp_path)
    assert run.returncode == 1
    problems = _problems(run)
    assert len(problems) == 1 and "webhook rejected" in problems[0]
    assert "not0the0right0code" not in run.output and "Traceback" not in run.output
    assert run.seconds < 15


def test_doctor_portal_down_is_one_line_within_seconds(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    run = run_cli("doctor", "--webhook-url", f"http://127.0.0.1:{port}/rest/1/{WEBHOOK_CODE}/", cwd=tmp_path)
    assert run.returncode == 1
    assert _problems(run) == [f"problem: portal 127.0.0.1:{port} unreachable: connection refused"]
    _no_traceback_no_secret(run)
    assert run.seconds < 15


def test_doctor_names_a_missing_scope_and_what_needs_it(tmp_path: Path) -> None:
    with Sandbox(
        seed=2, deals=3, leads=1, contacts=1, companies=1, users=2, tasks=2, scope={"crm", "user"}
    ) as p:
        run = run_cli(
            "doctor",
            "--resources",
            "deals,tasks",
            cwd=tmp_path,
            env=clean_env(SOURCES__BITRIX24__WEBHOOK_URL=p.webhook_url),
        )
    assert run.returncode == 1
    problems = _problems(run)
    assert len(problems) == 1
    assert "scope task not granted" in problems[0] and problems[0].endswith("needed by tasks")
    assert "scope crm granted" in run.stdout


def test_sandbox_serves_until_sigterm(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bitrix24_source",
            "sandbox",
            "--port",
            "0",
            "--deals",
            "5",
            "--webhook-code",
            WEBHOOK_CODE,
            "--catalogue",
            "docs",
            "--quotes",
            "3",
        ],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = ""
        for line in process.stdout:
            if "webhook (v2):" in line:
                url = line.split()[-1]
                break
        assert url.startswith("http://127.0.0.1:") and url.endswith(f"/rest/1/{WEBHOOK_CODE}/")
        doctor = run_cli("doctor", "--webhook-url", url, cwd=tmp_path)
        assert doctor.returncode == 0, doctor.output
        client = Bitrix24Client(url)
        deal_fields = client.call("crm.item.fields", {"entityTypeId": 2}).result["fields"]
        assert "originId" in deal_fields and "xmlId" not in deal_fields  # the documented catalogue
        quotes = client.call("crm.item.list", {"entityTypeId": 7}).result["items"]
        assert len(quotes) == 3
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_doctor_with_oauth_saves_refreshed_tokens_to_the_secrets_file(tmp_path: Path) -> None:
    with Sandbox(seed=3, deals=2, leads=1, contacts=1, companies=1, users=1, tasks=1) as p:
        app = p.oauth
        secrets = tmp_path / ".dlt" / "secrets.toml"
        secrets.parent.mkdir()
        secrets.write_text(
            "[sources.bitrix24.oauth]\n"
            f'client_endpoint = "{app.client_endpoint}"\n'
            f'token_url = "{app.token_url}"\n'
            f'client_id = "{app.client_id}"\n'
            f'client_secret = "{app.client_secret}"\n'
            'access_token = "an0expired0access0token"\n'
            f'refresh_token = "{app.refresh_token}"\n'
        )
        old_refresh = app.refresh_token
        run = run_cli("doctor", cwd=tmp_path)
        assert run.returncode == 0, run.output
        assert "accepts the OAuth app" in run.stdout
        for secret in (app.client_secret, old_refresh, "an0expired0access0token"):
            assert secret not in run.output
        # Bitrix24 rotates the refresh token (§1.3): the new pair is in the file, the dead one is gone
        saved = secrets.read_text()
        assert old_refresh not in saved and "an0expired0access0token" not in saved
        again = run_cli("doctor", cwd=tmp_path)
        assert again.returncode == 0, again.output


def test_doctor_warns_when_the_operating_budget_is_nearly_used(tmp_path: Path) -> None:
    # every call costs 400 operating seconds (§6.1 allows 480 per method per 10 minutes)
    costly = CostModel(base=400.0)
    with Sandbox(seed=4, deals=3, leads=1, contacts=1, companies=1, users=1, tasks=1, cost_model=costly) as p:
        run = run_cli("doctor", "--webhook-url", p.webhook_url, cwd=tmp_path)
    assert run.returncode == 1
    problems = _problems(run)
    assert len(problems) == 1
    assert "operating budget" in problems[0] and "of 480 s" in problems[0]


def test_sync_with_oauth_credentials_from_env(tmp_path: Path) -> None:
    with Sandbox(seed=5, deals=30, leads=1, contacts=1, companies=1, users=1, tasks=1) as p:
        app = p.oauth
        env = clean_env(
            SOURCES__BITRIX24__OAUTH__CLIENT_ENDPOINT=app.client_endpoint,
            SOURCES__BITRIX24__OAUTH__TOKEN_URL=app.token_url,
            SOURCES__BITRIX24__OAUTH__CLIENT_ID=app.client_id,
            SOURCES__BITRIX24__OAUTH__CLIENT_SECRET=app.client_secret,
            SOURCES__BITRIX24__OAUTH__ACCESS_TOKEN=app.access_token,
            SOURCES__BITRIX24__OAUTH__REFRESH_TOKEN=app.refresh_token,
            DESTINATION__DUCKDB__CREDENTIALS=str(tmp_path / "oauth.duckdb"),
        )
        args = ("sync", "--resources", "deals", "--rate-limit", "off", "--pipelines-dir", str(tmp_path))
        run = run_cli(*args, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.output
    assert "(OAuth app)" in run.stdout
    assert summary_row(run.stdout, "deals")[:2] == ["30", "30"]
    for secret in (app.client_secret, app.access_token, app.refresh_token):
        assert secret not in run.output
