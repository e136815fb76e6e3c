"""Stage, source and type values are checked against the portal's crm.status directories before sending."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bitrix24_source.destination.results import PLAN_TABLE, RESULTS_TABLE
from bitrix24_source.sandbox import Sandbox


def _deals_in(portal: Sandbox, category: int) -> list[int]:
    return sorted(int(r["id"]) for r in portal.rows("deals") if int(r["categoryId"]) == category)


def test_deal_stages_per_pipeline_sources_and_types(
    portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    default, wholesale = _deals_in(portal, 0), _deals_in(portal, 1)
    rows: list[dict[str, Any]] = [
        {"id": default[0], "stageId": "WON"},
        {"id": wholesale[0], "STAGE_ID": "C1:PREPARATION"},  # the prefix names pipeline 1
        {"title": "wholesale add", "categoryId": 1, "stageId": "C1:NEW"},
        {"title": "wrong pipeline", "categoryId": 1, "stageId": "NEW"},  # a stage of pipeline 0
        {"id": default[1], "stageId": "C7:NEW"},  # the deal is in pipeline 0; there is no pipeline 7 anyway
        {"id": default[2], "sourceId": "CARRIER_PIGEON"},
        {
            "id": default[3],
            "categoryId": 0,
            "typeId": "Complex sale",
            "stageId": "Deal successful",
        },  # names -> ids
        {"id": default[4], "TYPE_ID": "CUSTOMER"},  # a company type, not a deal type
    ]
    push_pipeline(portal.webhook_url, name="directories").run(rows, table_name="deals")

    results = read_table(RESULTS_TABLE)
    assert [r["status"] for r in results] == ["ok", "ok", "ok", "error", "error", "error", "ok", "error"]
    assert {results[n]["error_code"] for n in (3, 4, 5, 7)} == {"INVALID_ENUM_VALUE"}
    wrong_pipeline = results[3]["error_description"]
    assert "'stageId'" in wrong_pipeline and "'NEW'" in wrong_pipeline and "pipeline 1" in wrong_pipeline
    assert "C1:NEW" in wrong_pipeline  # the allowed values of that pipeline are listed
    assert "'C7:NEW' in pipeline 0" in results[4]["error_description"]  # the deal's current pipeline
    assert "'sourceId'" in results[5]["error_description"] and "CALL" in results[5]["error_description"]
    assert "'typeId'" in results[7]["error_description"] and "SALE" in results[7]["error_description"]

    state = {int(r["id"]): r for r in portal.rows("deals")}
    assert state[default[0]]["stageId"] == "WON"
    assert state[wholesale[0]]["stageId"] == "C1:PREPARATION"
    assert (state[default[3]]["typeId"], state[default[3]]["stageId"]) == ("COMPLEX", "WON")
    added = [r for r in state.values() if r["title"] == "wholesale add"]
    assert len(added) == 1 and added[0]["stageId"] == "C1:NEW"
    assert not [r for r in state.values() if r["title"] == "wrong pipeline"]
    assert state[default[1]]["stageId"] != "C7:NEW" and state[default[2]]["sourceId"] != "CARRIER_PIGEON"


def test_directories_are_read_in_one_batch_per_load(
    portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    lead_ids = sorted(int(r["id"]) for r in portal.rows("leads"))
    rows: list[dict[str, Any]] = [
        {"title": f"lead {k}", "stageId": "IN_PROCESS", "sourceId": "WEB"} for k in range(60)
    ]  # 2 chunks
    rows += [{"id": lead_ids[0], "stageId": "WON"}, {"id": lead_ids[1], "SOURCE_ID": "Website"}]
    portal.reset_stats()
    # A dry run sends no writes: one batch checks the ids (pre-flight), one reads the directories, one looks
    # the adds' markers up.
    push_pipeline(portal.webhook_url, name="lead_dirs", dry_run=True).run(rows, table_name="leads")

    stats = portal.stats()
    assert stats.http_by_method.get("batch") == 3 and "crm.status.list" not in stats.http_by_method
    assert stats.by_method["crm.item.list"] == 3  # the ids in one "@id" command, 60 markers in two
    assert stats.by_method["crm.status.list"] == 2  # STATUS (lead stages) and SOURCE
    results = read_table(RESULTS_TABLE)
    assert [r["status"] for r in results] == ["planned"] * 60 + ["error", "planned"]
    assert (
        "'stageId'" in results[60]["error_description"] and "IN_PROCESS" in results[60]["error_description"]
    )
    plan = read_table(PLAN_TABLE)
    assert '"sourceId": "WEB"' in plan[-1]["params_json"]  # the name "Website" was sent as its id


def test_no_directory_read_without_directory_values(
    portal: Sandbox, push_pipeline: Callable[..., Any]
) -> None:
    deal_id = _deals_in(portal, 0)[0]
    portal.reset_stats()
    push_pipeline(portal.webhook_url, name="titles_only").run(
        [{"id": deal_id, "title": "no stage here"}], table_name="deals"
    )
    assert "crm.status.list" not in portal.stats().by_method
