"""user.get / user.current / user.fields / server.time through PortalState.dispatch (no HTTP, §7.5)."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bitrix24_source.sandbox.state import PortalState
from bitrix24_source.sandbox.types import ApiError, CallContext, CostModel, MethodResult, SeedCounts

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "real-responses"
COUNTS = SeedCounts(leads=1, deals=1, contacts=1, companies=1, users=75, tasks=1)


def call(
    state: PortalState, method: str, params: dict[str, Any], start: int | None = None, user: int = 1
) -> MethodResult:
    ctx = CallContext(version=2, start=start or 0, start_given=start is not None, user_id=user)
    return state.dispatch(2, method, params, ctx)


@pytest.fixture(scope="module")
def state() -> PortalState:
    return PortalState(seed=41, counts=COUNTS, cost_model=CostModel())


def test_user_get_pages_with_total_and_next(state: PortalState) -> None:
    first = call(state, "user.get", {}, 0)
    assert isinstance(first.result, list) and (first.total, first.next, first.rows) == (75, 50, 50)
    second = call(state, "user.get", {}, 50)
    assert (second.total, second.next) == (75, None)
    assert [u["ID"] for u in first.result + second.result] == [str(i) for i in range(1, 76)]
    row = first.result[0]
    assert (
        row["ID"] == "1"
        and row["ACTIVE"] is True
        and row["UF_DEPARTMENT"] == [1]
        and row["USER_TYPE"] == "employee"
    )


def test_user_get_keyset_with_plain_and_filter_keys(state: PortalState) -> None:
    plain = call(state, "user.get", {">ID": "40", "SORT": "ID", "ORDER": "ASC"}, -1)
    assert (plain.total, plain.next) == (0, None)
    assert [u["ID"] for u in plain.result] == [str(i) for i in range(41, 76)]
    nested = call(state, "user.get", {"FILTER": {">ID": 40}, "sort": "ID", "order": "asc"}, -1)
    assert nested.result == plain.result


def test_user_get_filters_and_sorting(state: PortalState) -> None:
    rows = state.rows("users")
    inactive = call(state, "user.get", {"ACTIVE": "N"})
    assert [u["ID"] for u in inactive.result] == [u["ID"] for u in rows if not u["ACTIVE"]]
    assert inactive.result, "the seed should give some inactive users"
    department = rows[5]["UF_DEPARTMENT"][0]
    by_department = call(state, "user.get", {"UF_DEPARTMENT": department})
    assert by_department.total == sum(1 for u in rows if department in u["UF_DEPARTMENT"])
    desc = call(state, "user.get", {"SORT": "ID", "ORDER": "desc"})
    assert [u["ID"] for u in desc.result] == [str(i) for i in range(75, 25, -1)]
    by_name = call(state, "user.get", {"SORT": "LAST_NAME", "ORDER": "asc", "@ID": [1, 2, 3, 4, 5, 6]})
    expected = sorted((u for u in rows[:6]), key=lambda u: (u["LAST_NAME"], int(u["ID"])))
    assert [u["ID"] for u in by_name.result] == [u["ID"] for u in expected]
    unknown = call(state, "user.get", {"NO_SUCH_FIELD": "x"}, 0)
    assert unknown.total == 75


def test_user_current_and_fields(state: PortalState) -> None:
    assert call(state, "user.current", {}).result["ID"] == "1"
    current, stored = call(state, "user.current", {}, user=7).result, state.rows("users")[6]
    # DOCS user-current.md: no TIMESTAMP_X, LAST_ACTIVITY_DATE as "Y-m-d H:i:s"; everything else as stored.
    assert "TIMESTAMP_X" not in current
    assert (
        current["LAST_ACTIVITY_DATE"]
        == stored["LAST_ACTIVITY_DATE"][:10] + " " + stored["LAST_ACTIVITY_DATE"][11:19]
    )
    assert {k: v for k, v in current.items() if k != "LAST_ACTIVITY_DATE"} == {
        k: v for k, v in stored.items() if k not in ("TIMESTAMP_X", "LAST_ACTIVITY_DATE")
    }
    with pytest.raises(ApiError):
        call(state, "user.current", {}, user=999)
    recorded = json.loads((FIXTURES / "user_fields.json").read_text(encoding="utf-8"))["response"]["result"]
    ours = call(state, "user.fields", {}).result
    assert set(ours) <= set(recorded)
    assert set(state.rows("users")[0]) == set(ours)


def test_server_time_follows_the_portal_clock(state: PortalState) -> None:
    text = call(state, "server.time", {}).result
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+03:00", text)
    before = datetime.fromisoformat(text)
    state.advance_clock(7200)
    after = datetime.fromisoformat(call(state, "server.time", {}).result)
    assert (after - before).total_seconds() >= 7200


def test_user_get_rows_carry_the_documented_dates_and_filter_on_them(state: PortalState) -> None:
    rows = state.rows("users")
    for row in rows:
        # DOCS user-get.md lists TIMESTAMP_X, DATE_REGISTER, LAST_LOGIN, LAST_ACTIVITY_DATE as filterable dates.
        assert row["DATE_REGISTER"] <= row["TIMESTAMP_X"] <= row["LAST_LOGIN"] == row["LAST_ACTIVITY_DATE"]
    pivot = sorted(r["TIMESTAMP_X"] for r in rows)[len(rows) // 2]
    for key in ("TIMESTAMP_X", "LAST_ACTIVITY_DATE"):
        got = call(state, "user.get", {f">{key}": pivot}, 0)
        assert got.total == sum(1 for r in rows if r[key] > pivot)
        assert {u["ID"] for u in got.result} <= {r["ID"] for r in rows if r[key] > pivot}
