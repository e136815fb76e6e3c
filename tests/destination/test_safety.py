"""Write safety end to end: option fields checked before sending, markers already on the portal, ids as written."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from bitrix24_source.destination.plan import DUPLICATE_MARKER_ON_PORTAL
from bitrix24_source.destination.results import ERRORS_TABLE, RESULTS_TABLE
from bitrix24_source.sandbox import Fault, Sandbox

_WRITES = (".add", ".update", ".delete")


def _deal_ids(portal: Sandbox) -> list[int]:
    return sorted(int(r["id"]) for r in portal.rows("deals"))


@pytest.mark.parametrize(
    ("options", "named", "why"),
    [
        ({"marker_field": "externalCode"}, "marker_field='externalCode'", "has no field 'externalCode'"),
        ({"marker_field": "CREATED_BY_ID"}, "marker_field='CREATED_BY_ID'", "is read-only"),
        ({"key": "erpId"}, "key='erpId'", "has no field 'erpId'"),
        ({"key": "createdTime"}, "key='createdTime'", "is read-only"),
    ],
)
def test_unusable_marker_field_or_key_fails_the_load_before_any_row_is_sent(
    portal: Sandbox,
    push_pipeline: Callable[..., Any],
    options: dict[str, Any],
    named: str,
    why: str,
) -> None:
    deal_id = _deal_ids(portal)[0]
    before = {int(r["id"]): dict(r) for r in portal.rows("deals")}
    portal.reset_stats()
    rows = [{"id": deal_id, "title": "must not change"}, {"title": "must not be added", "originId": "e-1"}]
    with pytest.raises(PipelineStepFailed) as info:
        push_pipeline(portal.webhook_url, name="bad_option", **options).run(rows, table_name="deals")
    text = str(info.value)
    assert named in text and why in text and "deals" in text
    assert {int(r["id"]): dict(r) for r in portal.rows("deals")} == before
    methods = portal.stats().by_method
    assert not any(m.endswith(_WRITES) for m in methods)
    assert "crm.item.list" not in methods  # terminal at once: not even a key look-up was made


def test_own_marker_already_on_the_portal_is_already_applied_or_ambiguous(
    portal: Sandbox,
    push_pipeline: Callable[..., Any],
    read_table: Callable[[str], list[dict[str, Any]]],
) -> None:
    holders = _deal_ids(portal)[:3]
    portal.update_row("deals", holders[0], {"originId": "ext-1"})
    portal.update_row("deals", holders[1], {"originId": "ext-many"})
    portal.update_row("deals", holders[2], {"originId": "ext-many"})
    rows: list[dict[str, Any]] = [
        {"title": "own marker taken", "originId": "ext-1"},
        {"title": "own marker free", "ORIGIN_ID": "ext-2"},
        {"title": "generated marker"},
        {"title": "own marker held twice", "originId": "ext-many"},
        {"id": holders[0], "title": "an update by id needs no check", "originId": "ext-1"},
    ]
    portal.reset_stats()
    push_pipeline(portal.webhook_url, name="own_markers").run(rows, table_name="deals")

    results = read_table(RESULTS_TABLE)
    assert [(r["operation"], r["status"], r["error_code"]) for r in results] == [
        ("add", "already_applied", None),
        ("add", "ok", None),
        ("add", "ok", None),
        ("add", "error", DUPLICATE_MARKER_ON_PORTAL),
        ("update", "ok", None),
    ]
    assert results[0]["bitrix_id"] == holders[0] and results[0]["key"] == "ext-1"
    assert f"{holders[1]}, {holders[2]}" in results[3]["error_description"]
    errors = read_table(ERRORS_TABLE)
    assert [e["row_number"] for e in errors] == [3]
    assert json.loads(errors[0]["row_json"]) == rows[3]

    state = portal.rows("deals")
    by_marker = Counter(r["originId"] for r in state if r.get("originId"))
    assert by_marker["ext-1"] == 1 and by_marker["ext-2"] == 1 and by_marker["ext-many"] == 2
    assert not any(r["title"].startswith("own marker taken") for r in state)
    stats = portal.stats().by_method
    assert stats["crm.item.add"] == 2
    assert stats["crm.item.list"] == 2  # the id in one "@id" command, every add's marker in one "@originId"

    # The second run finds ext-2 from the first one: already applied, not added again.
    push_pipeline(portal.webhook_url, name="own_markers").run(rows[:2], table_name="deals")
    second = [r for r in read_table(RESULTS_TABLE) if r["load_id"] != results[0]["load_id"]]
    assert [r["status"] for r in second] == ["already_applied", "already_applied"]
    assert Counter(r["originId"] for r in portal.rows("deals") if r.get("originId"))["ext-2"] == 1


def test_dry_run_reports_markers_already_on_the_portal(
    portal: Sandbox,
    push_pipeline: Callable[..., Any],
    read_table: Callable[[str], list[dict[str, Any]]],
) -> None:
    portal.update_row("deals", _deal_ids(portal)[0], {"originId": "ext-1"})
    rows = [{"title": "taken", "originId": "ext-1"}, {"title": "free", "originId": "ext-2"}]
    push_pipeline(portal.webhook_url, name="own_dry", dry_run=True).run(rows, table_name="deals")
    assert [(r["status"], r["error_code"]) for r in read_table(RESULTS_TABLE)] == [
        ("already_applied", None),
        ("planned", None),
    ]


def test_own_markers_with_a_lost_answer_are_verified_not_resent(
    portal: Sandbox,
    push_pipeline: Callable[..., Any],
    read_table: Callable[[str], list[dict[str, Any]]],
) -> None:
    rows = [{"title": f"own {k}", "originId": f"own-{k}"} for k in range(70)]
    # Batch requests: look-up 1, write 1 (executed, then the connection drops), verify, look-up 2, write 2.
    portal.inject(Fault(kind="reset", method="batch", phase="after", after=1, times=1))
    portal.reset_stats()
    push_pipeline(portal.webhook_url, name="own_lost").run(rows, table_name="deals")

    results = read_table(RESULTS_TABLE)
    assert [r["status"] for r in results] == ["ok"] * 70
    markers = Counter(
        r["originId"] for r in portal.rows("deals") if str(r.get("originId")).startswith("own-")
    )
    assert len(markers) == 70 and set(markers.values()) == {1}
    ids = {
        r["originId"]: int(r["id"]) for r in portal.rows("deals") if str(r.get("originId")).startswith("own-")
    }
    assert [r["bitrix_id"] for r in results] == [ids[f"own-{k}"] for k in range(70)]
    assert portal.stats().by_method["crm.item.add"] == 70


def test_dataframe_ids_with_gaps_are_recorded_as_integers(
    portal: Sandbox,
    push_pipeline: Callable[..., Any],
    read_table: Callable[[str], list[dict[str, Any]]],
) -> None:
    deal_id = _deal_ids(portal)[0]
    df = pd.DataFrame(
        {
            "id": [deal_id, None, 99_999_999, -2],
            "title": ["updated", "added", "ghost", "negative"],
        }
    )
    assert df["id"].dtype == "float64"  # the gap made pandas widen the ids
    push_pipeline(portal.webhook_url, name="gaps").run(df, table_name="deals")

    results = read_table(RESULTS_TABLE)
    assert [r["status"] for r in results] == ["ok", "ok", "error", "error"]
    assert [r["error_code"] for r in results] == [None, None, "NOT_FOUND", "INVALID_ID"]
    assert results[0]["key"] == str(deal_id) and results[2]["key"] == "99999999" and results[3]["key"] == "-2"
    errors = read_table(ERRORS_TABLE)
    assert [json.loads(e["row_json"]) for e in errors] == [
        {"id": 99_999_999, "title": "ghost"},
        {"id": -2, "title": "negative"},
    ]
    assert not any(".0" in e["row_json"] or ".0" in (e["key"] or "") for e in errors)
