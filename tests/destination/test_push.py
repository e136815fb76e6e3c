"""The destination end to end: dlt pipeline -> sandbox portal over loopback HTTP -> result tables in DuckDB."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from bitrix24_source.destination.results import ERRORS_TABLE, PLAN_TABLE, RESULTS_TABLE
from bitrix24_source.sandbox import Sandbox
from tests.helpers import make_pipeline

UF_SEGMENT = "ufCrm_1721244707110"  # the deals' enumeration user field in the sandbox (Gold/Silver/Bronze)


def _deal_ids(portal: Sandbox) -> list[int]:
    return sorted(int(r["id"]) for r in portal.rows("deals"))


def test_bulk_updates_adds_and_bad_rows(
    push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    with Sandbox(seed=11, deals=2000, leads=0, contacts=5, companies=3, users=5, tasks=0) as portal:
        ids = _deal_ids(portal)
        assert len(ids) == 2000
        rows: list[dict[str, Any]] = [
            {"id": i, "title": f"updated {i}", "opportunity": i * 1.5} for i in ids[5:]
        ]
        rows += [{"title": f"new deal {k}", "opportunity": k, "stageId": "PREPARATION"} for k in range(500)]
        deleted = ids[0]
        bad: list[dict[str, Any]] = [
            {"id": ids[1], "no_such_column": 1},  # unknown column
            {"id": ids[2], "createdBy": 3},  # read-only field
            {"id": ids[3], "opportunity": "lots"},  # wrong type
            {"id": ids[4], UF_SEGMENT: "Platinum"},  # invalid enumeration value
            {"id": 99_999_999, "title": "ghost"},  # the portal answers NOT_FOUND
            {"title": "bad stage", "stageId": "NO_SUCH_STAGE"},  # not in the portal's DEAL_STAGE directory
        ]
        rows += bad
        rows.append({"id": deleted, "_delete": True})
        pipeline = push_pipeline(portal.webhook_url, name="bulk")
        pipeline.run(rows, table_name="deals")

        state = {int(r["id"]): r for r in portal.rows("deals")}
        for i in ids[5:]:
            assert state[i]["title"] == f"updated {i}"
            assert float(state[i]["opportunity"]) == i * 1.5
        assert deleted not in state
        new_titles = Counter(r["title"] for r in state.values() if str(r["title"]).startswith("new deal "))
        assert len(new_titles) == 500 and set(new_titles.values()) == {1}
        assert not any(r["title"] in ("ghost", "bad stage") for r in state.values())

    results = read_table(RESULTS_TABLE)
    assert len(results) == len(rows)
    assert sorted(r["row_number"] for r in results) == list(range(len(rows)))
    by_row = {r["row_number"]: r for r in results}
    first_bad = 1995 + 500
    assert Counter(r["status"] for r in results) == {"ok": len(rows) - len(bad), "error": len(bad)}
    assert [by_row[first_bad + k]["status"] for k in range(len(bad))] == ["error"] * len(bad)
    codes = [by_row[first_bad + k]["error_code"] for k in range(len(bad))]
    assert codes[:4] == ["UNKNOWN_FIELD", "READ_ONLY_FIELD", "INVALID_TYPE", "INVALID_ENUM_VALUE"]
    assert codes[4] == "NOT_FOUND"  # the portal's own code
    assert codes[5] == "INVALID_ENUM_VALUE"
    assert "'stageId'" in by_row[first_bad + 5]["error_description"]
    assert "PREPARATION" in by_row[first_bad + 5]["error_description"]  # a few allowed values are listed
    assert "no_such_column" in by_row[first_bad]["error_description"]
    assert "createdBy" in by_row[first_bad + 1]["error_description"]
    adds = [by_row[1995 + k] for k in range(500)]
    assert all(r["operation"] == "add" and r["bitrix_id"] for r in adds)
    assert by_row[len(rows) - 1]["operation"] == "delete" and by_row[len(rows) - 1]["status"] == "ok"

    errors = read_table(ERRORS_TABLE)
    assert [e["row_number"] for e in errors] == [first_bad + k for k in range(len(bad))]
    assert json.loads(errors[0]["row_json"]) == bad[0]
    assert errors[4]["error_code"] == "NOT_FOUND"


def test_dataframe_with_classic_spellings_and_required_fields(
    portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    lead_ids = sorted(int(r["id"]) for r in portal.rows("leads"))[:3]
    df = pd.DataFrame(
        {
            "ID": [lead_ids[0], lead_ids[1], lead_ids[2], None, None],
            "TITLE": ["Upper A", None, "Upper C", "Brand new", None],
            "COMMENTS": [None, "only comments", None, None, "no title"],
        }
    )
    pipeline = push_pipeline(portal.webhook_url, name="leads_df")
    pipeline.run(df, table_name="leads")

    state = {int(r["id"]): r for r in portal.rows("leads")}
    assert state[lead_ids[0]]["title"] == "Upper A"
    assert state[lead_ids[1]]["comments"] == "only comments"
    assert state[lead_ids[1]]["title"] not in (None, "")  # a null cell is "not present": title kept
    assert [r for r in state.values() if r["title"] == "Brand new"]
    results = read_table(RESULTS_TABLE)
    assert [r["status"] for r in results] == ["ok", "ok", "ok", "ok", "error"]
    assert results[4]["error_code"] == "REQUIRED_FIELD_MISSING" and "title" in results[4]["error_description"]


def test_arrow_table_and_entity_option(
    portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    contact_id = int(portal.rows("contacts")[0]["id"])
    table = pa.table({"id": [contact_id], "NAME": ["Arrow"], "LAST_NAME": ["Table"]})
    pipeline = push_pipeline(portal.webhook_url, name="arrow", entity="contacts")
    pipeline.run(table, table_name="people")
    row = next(r for r in portal.rows("contacts") if int(r["id"]) == contact_id)
    assert (row["name"], row["lastName"]) == ("Arrow", "Table")
    assert [r["table_name"] for r in read_table(RESULTS_TABLE)] == ["people"]


def test_values_are_sent_literally(portal: Sandbox, push_pipeline: Callable[..., Any]) -> None:
    deal_id = _deal_ids(portal)[0]
    title = "$result[c0][items][0][id]"
    comments = '{"$ref": "c0.item.id"}'
    rows = [
        {"id": deal_id, "title": title, "comments": comments},
        {"title": "$next[c0] & $total[c1] = 5", "comments": "[b]bold[/b] a=1&b[]=2"},
    ]
    push_pipeline(portal.webhook_url, name="literal").run(rows, table_name="deals")
    state = {int(r["id"]): r for r in portal.rows("deals")}
    assert state[deal_id]["title"] == title and state[deal_id]["comments"] == comments
    added = [r for r in state.values() if r["title"] == "$next[c0] & $total[c1] = 5"]
    assert len(added) == 1 and added[0]["comments"] == "[b]bold[/b] a=1&b[]=2"


def test_upsert_by_key(
    portal: Sandbox,
    push_pipeline: Callable[..., Any],
    read_table: Callable[[str], list[dict[str, Any]]],
) -> None:
    existing = _deal_ids(portal)[:2]
    portal.update_row("deals", existing[0], {"originId": "erp-1"})
    portal.update_row("deals", existing[1], {"originId": "erp-2"})
    rows = [
        {"originId": "erp-1", "title": "from erp 1"},
        {"ORIGIN_ID": "erp-2", "title": "from erp 2"},
        {"originId": "erp-3", "title": "from erp 3"},
    ]
    push_pipeline(portal.webhook_url, name="upsert", key="originId").run(rows, table_name="deals")
    push_pipeline(portal.webhook_url, name="upsert", key="originId").run(rows, table_name="deals")

    by_origin: dict[str, list[dict[str, Any]]] = {}
    for r in portal.rows("deals"):
        if r.get("originId"):
            by_origin.setdefault(r["originId"], []).append(r)
    assert {k: len(v) for k, v in by_origin.items()} == {"erp-1": 1, "erp-2": 1, "erp-3": 1}
    assert int(by_origin["erp-1"][0]["id"]) == existing[0] and by_origin["erp-1"][0]["title"] == "from erp 1"
    results = read_table(RESULTS_TABLE)
    first, second = sorted({r["load_id"] for r in results})
    ops = {load: [r["operation"] for r in results if r["load_id"] == load] for load in (first, second)}
    assert ops[first] == ["update", "update", "add"]
    assert ops[second] == ["update", "update", "update"]
    assert all(r["status"] == "ok" for r in results)
    assert [r["key"] for r in results if r["load_id"] == second] == ["erp-1", "erp-2", "erp-3"]


def test_dry_run_plans_without_writing(
    portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    deal_id = _deal_ids(portal)[0]
    before = {int(r["id"]): dict(r) for r in portal.rows("deals")}
    portal.reset_stats()
    rows = [{"id": deal_id, "title": "would change"}, {"title": "would add"}, {"id": deal_id, "bogus": 1}]
    push_pipeline(portal.webhook_url, name="dry", dry_run=True).run(rows, table_name="deals")

    assert {int(r["id"]): dict(r) for r in portal.rows("deals")} == before
    methods = portal.stats().by_method
    assert not any(m.endswith((".add", ".update", ".delete")) for m in methods)
    results = read_table(RESULTS_TABLE)
    assert [r["status"] for r in results] == ["planned", "planned", "error"]
    plan = read_table(PLAN_TABLE)
    assert [p["method"] for p in plan] == ["crm.item.update", "crm.item.add"]
    assert json.loads(plan[0]["params_json"]) == {
        "entityTypeId": 2,
        "id": deal_id,
        "fields": {"title": "would change"},
    }
    assert [e["error_code"] for e in read_table(ERRORS_TABLE)] == ["UNKNOWN_FIELD"]


def test_secret_does_not_reach_the_result_tables_or_the_pipeline_files(
    portal: Sandbox,
    push_pipeline: Callable[..., Any],
    read_table: Callable[[str], list[dict[str, Any]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = portal.webhook_url.rstrip("/").rsplit("/", 1)[-1]
    push_pipeline(portal.webhook_url, name="secret", progress=True).run(
        [{"id": 99_999_999, "title": "x"}, {"title": "y", "bogus": 1}], table_name="deals"
    )
    dump = json.dumps(read_table(RESULTS_TABLE) + read_table(ERRORS_TABLE), default=str)
    assert "NOT_FOUND" in dump and code not in dump
    # Load packages, journals, state and trace of both pipelines, and the results database itself.
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".duckdb" for p in files)
    assert not [p for p in files if code.encode() in p.read_bytes()]
    captured = capsys.readouterr()
    assert "2 rows, 0 ok, 2 errors" in captured.out and code not in captured.out + captured.err


def test_summary_line_counts_the_requests_the_push_made(
    portal: Sandbox, push_pipeline: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    portal.reset_stats()
    rows = [{"id": deal_id, "title": "counted"} for deal_id in _deal_ids(portal)[:2]]
    push_pipeline(portal.webhook_url, name="summary").run(rows, table_name="deals")
    requests = portal.stats().http_requests
    assert requests >= 2  # the field metadata, then one batch
    assert f"deals: 2 rows, 2 ok, 0 errors, {requests} requests," in capsys.readouterr().out


def test_unknown_table_fails_terminally(portal: Sandbox, push_pipeline: Callable[..., Any]) -> None:
    from dlt.pipeline.exceptions import PipelineStepFailed

    with pytest.raises(PipelineStepFailed, match="cannot write table 'orders'"):
        push_pipeline(portal.webhook_url, name="bad_table").run([{"title": "x"}], table_name="orders")


def test_tasks_through_v2_upper_case_fields(
    portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    task_ids = sorted(int(r["id"]) for r in portal.rows("tasks"))
    rows: list[dict[str, Any]] = [
        {"ID": task_ids[0], "TITLE": "Renamed task"},
        {"id": task_ids[1], "_delete": True},
        {"TITLE": "New task", "responsibleId": 2, "DESCRIPTION": "from the warehouse"},  # CREATED_BY: caller
        {"DESCRIPTION": "no title"},  # TITLE is required (tasks.task.getfields)
        {"ID": task_ids[2], "CREATED_DATE": "2025-01-01T00:00:00+00:00"},  # read-only
        {"ID": 99_999_999, "TITLE": "ghost task"},  # the portal refuses: no such task
    ]
    portal.reset_stats()
    push_pipeline(portal.webhook_url, name="tasks").run(rows, table_name="tasks")
    assert portal.stats().by_method["tasks.task.getfields"] == 1  # the documented name, read once per load

    tasks = {int(r["id"]): r for r in portal.rows("tasks")}
    assert tasks[task_ids[0]]["title"] == "Renamed task"
    assert task_ids[1] not in tasks
    new = [r for r in tasks.values() if r["title"] == "New task"]
    assert len(new) == 1 and new[0]["responsibleId"] == 2 and str(new[0]["xmlId"]).startswith("b24dlt:")
    results = read_table(RESULTS_TABLE)
    assert [r["status"] for r in results] == ["ok", "ok", "ok", "error", "error", "error"]
    assert results[2]["bitrix_id"] == new[0]["id"]
    assert results[3]["error_code"] == "REQUIRED_FIELD_MISSING" and "TITLE" in results[3]["error_description"]
    assert results[4]["error_code"] == "READ_ONLY_FIELD"
    assert results[5]["error_code"] not in (
        None,
        "",
        "REQUIRED_FIELD_MISSING",
        "READ_ONLY_FIELD",
        "INVALID_ID",
    )


def test_wrong_webhook_fails_the_load_without_leaking_the_code(
    portal: Sandbox, push_pipeline: Callable[..., Any]
) -> None:
    from dlt.pipeline.exceptions import PipelineStepFailed

    wrong = "wrongcode0123456789"
    url = portal.webhook_url.rstrip("/").rsplit("/", 1)[0] + f"/{wrong}/"
    with pytest.raises(PipelineStepFailed) as failed:
        push_pipeline(url, name="auth").run([{"id": 1, "title": "x"}], table_name="deals")
    text = f"{failed.value} {failed.value.__cause__}"
    assert "NO_AUTH_FOUND" in text and wrong not in text


def test_two_tables_in_one_run(
    portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    import dlt

    deal_id, company_id = _deal_ids(portal)[0], int(portal.rows("companies")[0]["id"])
    resources = [
        dlt.resource([{"id": deal_id, "title": "multi deal"}], name="deals"),
        dlt.resource(
            [{"id": company_id, "TITLE": "multi company"}, {"TITLE": "added company"}], name="companies"
        ),
    ]
    push_pipeline(portal.webhook_url, name="multi").run(resources)
    assert next(r for r in portal.rows("deals") if int(r["id"]) == deal_id)["title"] == "multi deal"
    titles = [r["title"] for r in portal.rows("companies")]
    assert "multi company" in titles and titles.count("added company") == 1
    results = read_table(RESULTS_TABLE)
    assert Counter(r["table_name"] for r in results) == {"deals": 1, "companies": 2}
    assert all(r["status"] == "ok" for r in results)


def test_webhook_url_from_dlt_config(
    portal: Sandbox, tmp_path: Path, results_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dlt

    from bitrix24_source import bitrix24_destination

    monkeypatch.setenv("DESTINATION__BITRIX24__WEBHOOK_URL", portal.webhook_url)
    destination = bitrix24_destination(
        results_destination=dlt.destinations.duckdb(str(results_db)), rate_limit=None, progress=False
    )
    deal_id = _deal_ids(portal)[0]
    make_pipeline(tmp_path, "from_config", destination).run(
        [{"id": deal_id, "title": "configured"}], table_name="deals"
    )
    assert next(r for r in portal.rows("deals") if int(r["id"]) == deal_id)["title"] == "configured"


def test_an_empty_list_clears_a_multiple_field(
    portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    deal_id = _deal_ids(portal)[0]
    contact_ids = sorted(int(r["id"]) for r in portal.rows("contacts"))[:2]
    portal.update_row("deals", deal_id, {"contactIds": contact_ids})
    push_pipeline(portal.webhook_url, name="clear").run(
        [{"id": deal_id, "contactIds": "[]"}, {"id": _deal_ids(portal)[1], "title": "still batched"}],
        table_name="deals",
    )
    row = next(r for r in portal.rows("deals") if int(r["id"]) == deal_id)
    other = next(r for r in portal.rows("deals") if int(r["id"]) == _deal_ids(portal)[1])
    assert row["contactIds"] in ([], None) and other["title"] == "still batched"
    assert [r["status"] for r in read_table(RESULTS_TABLE)] == ["ok", "ok"]


def test_upsert_key_held_by_many_records_is_not_guessed(
    portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    ids = _deal_ids(portal)
    for deal_id in ids[:55]:  # more records than one list page (50) hold the same key value
        portal.update_row("deals", deal_id, {"originId": "K0"})
    portal.update_row("deals", ids[55], {"originId": "K1"})
    rows = pd.DataFrame({"originId": ["K0", "K1", "K2"], "title": ["upd K0", "upd K1", "new K2"]})
    push_pipeline(portal.webhook_url, name="ambiguous", key="ORIGIN_ID").run(rows, table_name="deals")

    by_origin = Counter(r.get("originId") for r in portal.rows("deals"))
    assert (by_origin["K0"], by_origin["K1"], by_origin["K2"]) == (55, 1, 1)  # nothing duplicated
    state = {int(r["id"]): r for r in portal.rows("deals")}
    assert state[ids[55]]["title"] == "upd K1"
    results = read_table(RESULTS_TABLE)
    assert [(r["operation"], r["status"]) for r in results] == [
        (None, "error"),
        ("update", "ok"),
        ("add", "ok"),
    ]
    assert (
        results[0]["error_code"] == "DUPLICATE_KEY_ON_PORTAL"
        and str(ids[0]) in results[0]["error_description"]
    )


def test_task_multiple_fields_are_set_and_cleared(
    portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    # AUDITORS / ACCOMPLICES are array fields (tasks.task.getfields); "[]" clears one, and an empty array has
    # to reach PHP as an array, so that command cannot travel in a v2 query string (§1.5).
    first, second = sorted(int(r["id"]) for r in portal.rows("tasks"))[:2]
    push_pipeline(portal.webhook_url, name="auditors").run(
        [{"ID": first, "AUDITORS": [1, 2], "ACCOMPLICES": [3]}, {"ID": second, "AUDITORS": [2]}],
        table_name="tasks",
    )
    tasks = {int(r["id"]): r for r in portal.rows("tasks")}
    assert (tasks[first]["auditors"], tasks[first]["accomplices"], tasks[second]["auditors"]) == (
        [1, 2],
        [3],
        [2],
    )

    push_pipeline(portal.webhook_url, name="auditors_clear").run(
        [{"ID": first, "AUDITORS": "[]"}, {"ID": second, "AUDITORS": "[]"}], table_name="tasks"
    )
    tasks = {int(r["id"]): r for r in portal.rows("tasks")}
    assert (tasks[first]["auditors"], tasks[first]["accomplices"], tasks[second]["auditors"]) == ([], [3], [])
    assert [r["status"] for r in read_table(RESULTS_TABLE)][-2:] == ["ok", "ok"]
