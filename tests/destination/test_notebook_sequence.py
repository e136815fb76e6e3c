"""The destination used the way a notebook uses it: cells run again, messy frames, a failed run, then a fix.

Each step pushes through real loopback HTTP to the sandbox portal with one pipeline name (as a notebook does),
and checks the portal and the result tables: exactly one result row per input row per run, no duplicate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from bitrix24_source import bitrix24_rows
from bitrix24_source.destination.results import RESULTS_TABLE
from bitrix24_source.sandbox import Sandbox


def _deals(portal: Sandbox, prefix: str) -> list[dict[str, Any]]:
    return [r for r in portal.rows("deals") if str(r["title"]).startswith(prefix)]


def _by_load(results: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    loads: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        loads.setdefault(r["load_id"], []).append(r)
    return [loads[k] for k in sorted(loads)]


def test_a_notebook_session_leaves_the_portal_exactly_as_intended(
    portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    # Cell 1: a frame with a text value in a numeric column (pandas keeps it as an object column).
    frame_a = pd.DataFrame(
        {"title": ["nb A1", "nb A2", "nb A3"], "opportunity": [1000, "12k", 2000.5]},
        index=["a1", "a2", "a3"],
    )
    push_pipeline(portal.webhook_url, name="nb").run(bitrix24_rows(frame_a, table_name="deals"))
    first = read_table(RESULTS_TABLE)
    assert [(r["input_index"], r["status"], r["error_code"]) for r in first] == [
        ("a1", "ok", None),
        ("a2", "error", "INVALID_TYPE"),
        ("a3", "ok", None),
    ]
    assert "'opportunity'" in first[1]["error_description"]
    assert sorted(r["title"] for r in _deals(portal, "nb A")) == ["nb A1", "nb A3"]
    created = {r["title"]: r for r in _deals(portal, "nb A")}
    assert created["nb A1"]["originatorId"] == "bitrix24-dlt"
    assert str(created["nb A1"]["originId"]).startswith("b24dlt:")

    # Cell 1 again: the same frame; nothing is added twice.
    push_pipeline(portal.webhook_url, name="nb").run(bitrix24_rows(frame_a, table_name="deals"))
    second = _by_load(read_table(RESULTS_TABLE))[1]
    assert [(r["status"], r["bitrix_id"]) for r in second] == [
        ("already_applied", int(created["nb A1"]["id"])),
        ("error", None),
        ("already_applied", int(created["nb A3"]["id"])),
    ]
    assert sorted(r["title"] for r in _deals(portal, "nb A")) == ["nb A1", "nb A3"]

    # Cell 2: a wrong webhook code fails the run for good ...
    wrong = portal.webhook_url.replace(portal.auth.webhook_code, "wrong-code-0123456789")
    frame_c = pd.DataFrame({"title": ["nb C1", "nb C2"]})
    with pytest.raises(PipelineStepFailed) as failed:
        push_pipeline(wrong, name="nb").run(bitrix24_rows(frame_c, table_name="deals"))
    assert "wrong-code-0123456789" not in str(failed.value)
    # ... and the corrected run pushes the frame it is given, not the failed one.
    frame_d = pd.DataFrame({"title": ["nb D1"], "opportunity": [5]})
    push_pipeline(portal.webhook_url, name="nb").run(bitrix24_rows(frame_d, table_name="deals"))
    assert _deals(portal, "nb C") == []
    assert [r["title"] for r in _deals(portal, "nb D")] == ["nb D1"]
    loads = _by_load(read_table(RESULTS_TABLE))
    assert [len(rows) for rows in loads] == [3, 3, 2, 1]  # the aborted run's rows get their results too
    assert {r["error_code"] for r in loads[2]} == {"LOAD_ABORTED"}
    assert [r["status"] for r in loads[3]] == ["ok"]

    # Cell 3: an upsert key that pandas widened to float (a gap in the column), run twice.
    frame_e = pd.DataFrame(
        {"originId": [1001, 1002, None], "title": ["nb E1", "nb E2", "nb E3"]}
    )  # originId becomes float64: 1001.0, 1002.0, NaN
    assert frame_e["originId"].dtype == "float64"
    for _ in range(2):
        push_pipeline(portal.webhook_url, name="nb", key="originId").run(
            bitrix24_rows(frame_e, table_name="deals")
        )
    e_rows = _deals(portal, "nb E")
    assert sorted(r["title"] for r in e_rows) == ["nb E1", "nb E2", "nb E3"]
    assert sorted(str(r["originId"]) for r in e_rows if r["title"] != "nb E3") == ["1001", "1002"]
    loads = _by_load(read_table(RESULTS_TABLE))
    assert [len(rows) for rows in loads] == [3, 3, 2, 1, 3, 3]
    assert [r["operation"] for r in loads[4]] == ["add", "add", "add"]
    assert [(r["operation"], r["status"]) for r in loads[5]] == [
        ("update", "ok"),
        ("update", "ok"),
        ("add", "already_applied"),
    ]
    assert Counter(r["originId"] for r in portal.rows("deals") if r.get("originId")).most_common(1)[0][1] == 1


def test_plain_frames_keep_working_and_re_runs_are_already_applied(
    portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    frame = pd.DataFrame({"title": ["twin", "twin", "single"], "opportunity": [1.0, 1.0, 2.0]})
    for _ in range(2):
        push_pipeline(portal.webhook_url, name="plain").run(frame, table_name="deals")
    titles = Counter(r["title"] for r in portal.rows("deals") if r["title"] in ("twin", "single"))
    assert titles == {"twin": 2, "single": 1}  # two identical rows are two adds, once
    statuses = [r["status"] for r in read_table(RESULTS_TABLE)]
    assert statuses == ["ok"] * 3 + ["already_applied"] * 3


def test_allow_duplicates_adds_again_and_a_later_re_run_is_idempotent_again(
    portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    frame = pd.DataFrame({"title": ["again"]})
    push_pipeline(portal.webhook_url, name="dup").run(frame, table_name="deals")
    push_pipeline(portal.webhook_url, name="dup", allow_duplicates=True).run(frame, table_name="deals")
    push_pipeline(portal.webhook_url, name="dup").run(frame, table_name="deals")
    assert [r["title"] for r in portal.rows("deals")].count("again") == 2
    assert [r["status"] for r in read_table(RESULTS_TABLE)] == ["ok", "ok", "already_applied"]
