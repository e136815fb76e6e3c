"""The dry run predicts the real run: both share one pre-flight (ids, pipelines, stages) before sending."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from bitrix24_source.destination.results import ERRORS_TABLE, RESULTS_TABLE
from bitrix24_source.sandbox import Sandbox


def test_dry_run_error_counts_equal_the_real_runs(
    portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    deals = portal.rows("deals")
    # (Deals not yet in the stages the rows move them to: an update to the values a deal already holds is
    # already_applied, which this test is not about.)
    pipeline_1 = [int(r["id"]) for r in deals if int(r["categoryId"]) == 1 and r["stageId"] != "C1:WON"]
    pipeline_0 = [int(r["id"]) for r in deals if int(r["categoryId"]) == 0 and r["title"] != "fine"]
    assert len(pipeline_1) >= 3 and len(pipeline_0) >= 5
    rows: list[dict[str, Any]] = [
        {"id": pipeline_1[0], "stageId": "WON"},  # a pipeline-0 stage for a deal in pipeline 1
        {"id": pipeline_1[1], "stageId": "C1:WON"},  # fine: its own pipeline
        {
            "id": pipeline_1[2],
            "stageId": "Deal successful",
        },  # a stage name, resolved in the deal's own pipeline
        {"id": pipeline_0[0], "stageId": "C1:NEW"},  # the other way round
        {"id": 99_999_991, "title": "ghost"},  # unknown id
        {"id": 99_999_992, "_delete": True},  # unknown id, delete
        {"id": pipeline_0[2], "title": "fine"},
        {"title": "new", "stageId": "NEW"},
    ]
    before = {int(r["id"]): dict(r) for r in portal.rows("deals")}
    push_pipeline(portal.webhook_url, name="preflight_dry", dry_run=True).run(rows, table_name="deals")
    assert {int(r["id"]): dict(r) for r in portal.rows("deals")} == before
    dry = read_table(RESULTS_TABLE)

    push_pipeline(portal.webhook_url, name="preflight_real").run(rows, table_name="deals")
    real = [r for r in read_table(RESULTS_TABLE) if r["load_id"] != dry[0]["load_id"]]

    def errors(results: list[dict[str, Any]]) -> list[tuple[int, str | None]]:
        return [(r["row_number"], r["error_code"]) for r in results if r["status"] == "error"]

    expected = [(0, "INVALID_ENUM_VALUE"), (3, "INVALID_ENUM_VALUE"), (4, "NOT_FOUND"), (5, "NOT_FOUND")]
    assert errors(dry) == errors(real) == expected
    assert Counter(r["status"] for r in dry) == {"planned": 4, "error": 4}
    assert Counter(r["status"] for r in real) == {"ok": 4, "error": 4}
    wrong_pipeline = real[0]["error_description"]
    assert "in pipeline 1" in wrong_pipeline and "C1:WON (" in wrong_pipeline  # ids with their labels
    state = {int(r["id"]): r for r in portal.rows("deals")}
    assert state[pipeline_1[1]]["stageId"] == "C1:WON" and state[pipeline_1[2]]["stageId"] == "C1:WON"
    assert state[pipeline_1[0]]["stageId"] == before[pipeline_1[0]]["stageId"]
    stats = portal.stats().by_method
    assert "crm.item.delete" not in stats  # the unknown id was never sent
    fields = {
        e["row_number"]: e["field"] for e in read_table(ERRORS_TABLE) if e["load_id"] == real[0]["load_id"]
    }
    assert fields == {0: "stageId", 3: "stageId", 4: "id", 5: "id"}
