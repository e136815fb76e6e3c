"""Duplicates and conflicts in one input are row errors, through a real pipeline: the portal gets one write."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

from bitrix24_source import bitrix24_rows
from bitrix24_source.destination.results import ERRORS_TABLE, RESULTS_TABLE
from bitrix24_source.sandbox import Sandbox

NaN = float("nan")


@pytest.mark.parametrize("path", ["plain", "bitrix24_rows"])
def test_repeated_ids_keys_and_disagreeing_spellings_are_errors_naming_the_first_row(
    portal: Sandbox,
    push_pipeline: Callable[..., Any],
    read_table: Callable[[str], list[dict[str, Any]]],
    path: str,
) -> None:
    a, b, c, d, e = sorted(int(r["id"]) for r in portal.rows("deals"))[:5]
    frame = pd.DataFrame(
        {
            "id": [a, a, b, a, d, e, NaN, NaN],
            "ID": [NaN, NaN, c, NaN, NaN, NaN, NaN, NaN],
            "title": ["dup first", "dup second", "ids disagree", "dup third", "x", "same", "key 1", "key 2"],
            "TITLE": [None, None, None, None, "y", "same", None, None],
            "originId": [None, None, None, None, None, None, "k-1", "k-1"],
        },
        index=["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"],
    )
    before = {int(r["id"]): dict(r) for r in portal.rows("deals")}
    portal.reset_stats()
    pipeline = push_pipeline(portal.webhook_url, name=f"dups_{path}")
    if path == "plain":
        pipeline.run(frame, table_name="deals")
    else:
        pipeline.run(bitrix24_rows(frame, table_name="deals"))

    results = read_table(RESULTS_TABLE)
    assert [(r["row_number"], r["status"], r["error_code"]) for r in results] == [
        (0, "ok", None),
        (1, "error", "DUPLICATE_IN_INPUT"),
        (2, "error", "CONFLICTING_COLUMNS"),
        (3, "error", "DUPLICATE_IN_INPUT"),
        (4, "error", "CONFLICTING_COLUMNS"),
        (5, "ok", None),
        (6, "ok", None),
        (7, "error", "DUPLICATE_IN_INPUT"),
    ]
    first = "first in row 0" + (" (index 'r0')" if path == "bitrix24_rows" else "")
    assert f"id {a} appears more than once" in results[1]["error_description"]
    assert results[1]["error_description"].endswith(first)
    assert results[3]["error_description"].endswith(first)
    assert "first in row 6" in results[7]["error_description"] and "'k-1'" in results[7]["error_description"]
    assert "'id' and 'ID' disagree" in results[2]["error_description"]
    assert "'title' and 'TITLE'" in results[4]["error_description"]
    errors = {r["row_number"]: r for r in read_table(ERRORS_TABLE)}
    assert sorted(errors) == [1, 2, 3, 4, 7]
    assert (errors[4]["field"], errors[7]["field"]) == ("TITLE", "originId")

    # Exactly one write per record: the first occurrence; the rejected rows never reached the portal.
    assert Counter(portal.stats().by_method) >= Counter({"crm.item.update": 2, "crm.item.add": 1})
    assert portal.stats().by_method["crm.item.update"] == 2
    assert portal.stats().by_method["crm.item.add"] == 1
    state = {int(r["id"]): r for r in portal.rows("deals")}
    assert state[a]["title"] == "dup first" and state[e]["title"] == "same"
    for untouched in (b, c, d):
        assert state[untouched]["title"] == before[untouched]["title"]
    assert [r["title"] for r in state.values() if r.get("originId") == "k-1"] == ["key 1"]
