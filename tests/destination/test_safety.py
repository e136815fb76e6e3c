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


def test_own_marker_already_on_the_portal_is_rejected_not_counted_as_a_lost_add(
    portal: Sandbox,
    push_pipeline: Callable[..., Any],
    read_table: Callable[[str], list[dict[str, Any]]],
) -> None:
    holders = _deal_ids(portal)[:3]
    portal.update_row("deals", holders[0], {"xmlId": "ext-1"})
    portal.update_row("deals", holders[1], {"xmlId": "ext-many"})
    portal.update_row("deals", holders[2], {"xmlId": "ext-many"})
    rows: list[dict[str, Any]] = [
        {"title": "own marker taken", "xmlId": "ext-1"},
        {"title": "own marker free", "XML_ID": "ext-2"},
        {"title": "generated marker"},
        {"title": "own marker held twice", "xmlId": "ext-many"},
        {"id": holders[0], "title": "an update by id needs no check", "xmlId": "ext-1"},
    ]
    portal.reset_stats()
    push_pipeline(portal.webhook_url, name="own_markers").run(rows, table_name="deals")

    results = read_table(RESULTS_TABLE)
    assert [(r["operation"], r["status"], r["error_code"]) for r in results] == [
        ("add", "error", DUPLICATE_MARKER_ON_PORTAL),
        ("add", "ok", None),
        ("add", "ok", None),
        ("add", "error", DUPLICATE_MARKER_ON_PORTAL),
        ("update", "ok", None),
    ]
    assert results[0]["bitrix_id"] is None and results[0]["key"] == "ext-1"
    assert f"id {holders[0]}" in results[0]["error_description"]
    assert f"{holders[1]}, {holders[2]}" in results[3]["error_description"]
    errors = read_table(ERRORS_TABLE)
    assert [e["row_number"] for e in errors] == [0, 3]
    assert json.loads(errors[0]["row_json"]) == rows[0]

    state = portal.rows("deals")
    by_marker = Counter(r["xmlId"] for r in state if r.get("xmlId"))
    assert by_marker["ext-1"] == 1 and by_marker["ext-2"] == 1 and by_marker["ext-many"] == 2
    assert not any(r["title"].startswith("own marker taken") for r in state)
    stats = portal.stats().by_method
    assert stats["crm.item.add"] == 2
    assert stats["crm.item.list"] == 3  # one look-up per own marker value, all in one batch request

    # The second run finds ext-2 from the first one: rejected too, instead of being "verified" as added.
    push_pipeline(portal.webhook_url, name="own_markers").run(rows[:2], table_name="deals")
    second = [r for r in read_table(RESULTS_TABLE) if r["load_id"] != results[0]["load_id"]]
    assert [r["error_code"] for r in second] == [DUPLICATE_MARKER_ON_PORTAL, DUPLICATE_MARKER_ON_PORTAL]
    assert Counter(r["xmlId"] for r in portal.rows("deals") if r.get("xmlId"))["ext-2"] == 1


def test_dry_run_reports_markers_already_on_the_portal(
    portal: Sandbox,
    push_pipeline: Callable[..., Any],
    read_table: Callable[[str], list[dict[str, Any]]],
) -> None:
    portal.update_row("deals", _deal_ids(portal)[0], {"xmlId": "ext-1"})
    rows = [{"title": "taken", "xmlId": "ext-1"}, {"title": "free", "xmlId": "ext-2"}]
    push_pipeline(portal.webhook_url, name="own_dry", dry_run=True).run(rows, table_name="deals")
    assert [(r["status"], r["error_code"]) for r in read_table(RESULTS_TABLE)] == [
        ("error", DUPLICATE_MARKER_ON_PORTAL),
        ("planned", None),
    ]


def test_own_markers_with_a_lost_answer_are_verified_not_resent(
    portal: Sandbox,
    push_pipeline: Callable[..., Any],
    read_table: Callable[[str], list[dict[str, Any]]],
) -> None:
    rows = [{"title": f"own {k}", "xmlId": f"own-{k}"} for k in range(70)]
    # Batch requests: look-up 1, write 1 (executed, then the connection drops), verify, look-up 2, write 2.
    portal.inject(Fault(kind="reset", method="batch", phase="after", after=1, times=1))
    portal.reset_stats()
    push_pipeline(portal.webhook_url, name="own_lost").run(rows, table_name="deals")

    results = read_table(RESULTS_TABLE)
    assert [r["status"] for r in results] == ["ok"] * 70
    markers = Counter(r["xmlId"] for r in portal.rows("deals") if str(r.get("xmlId")).startswith("own-"))
    assert len(markers) == 70 and set(markers.values()) == {1}
    ids = {r["xmlId"]: int(r["id"]) for r in portal.rows("deals") if str(r.get("xmlId")).startswith("own-")}
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
