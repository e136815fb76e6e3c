"""Pure tests of bitrix24_source.source.queries: keyset chains, §3.2 stop rules, v3 task pages, product rows."""

from __future__ import annotations

from typing import Any

import pytest

from bitrix24_source.client.commands import CommandResult, ResultRef, ref_array
from bitrix24_source.errors import ApiError, BatchCommandError
from bitrix24_source.source import queries
from bitrix24_source.source.settings import DEALS, USERS


def _ok(key: str, result: Any) -> CommandResult:
    return CommandResult(key=key, index=int(key[1:]), method="crm.item.list", ok=True, result=result)


def _err(key: str, code: str = "INVALID_ARG_VALUE") -> CommandResult:
    error = BatchCommandError("bad filter", code=code, method="crm.item.list", command_key=key)
    return CommandResult(
        key=key, index=int(key[1:]), method="crm.item.list", ok=False, error=error, outcome="error"
    )


def _page(first: int, n: int) -> dict[str, Any]:
    return {"items": [{"id": i, "title": f"d{i}"} for i in range(first, first + n)]}


def test_crm_chain_references_previous_page_last_row() -> None:
    chain = queries.keyset_chain(
        DEALS, 120, length=3, extra_filter={">=updatedTime": "2026-01-01T00:00:00+03:00"}
    )
    assert list(chain) == ["p0", "p1", "p2"]
    method, p0 = chain["p0"]
    assert method == "crm.item.list"
    assert p0["entityTypeId"] == 2
    assert p0["order"] == {"id": "ASC"}
    assert p0["start"] == -1
    assert p0["filter"] == {">=updatedTime": "2026-01-01T00:00:00+03:00", ">id": 120}
    assert p0["select"] == ["*", "UF_*"]
    ref = chain["p2"][1]["filter"][">id"]
    assert isinstance(ref, ResultRef)
    assert ref == "$result[p1][items][49][id]"
    assert chain["p2"][1]["filter"][">=updatedTime"] == "2026-01-01T00:00:00+03:00"


def test_user_chain_uses_bare_list_and_upper_case() -> None:
    chain = queries.keyset_chain(USERS, 0, length=2)
    _, p0 = chain["p0"]
    assert p0 == {"FILTER": {">ID": 0}, "SORT": "ID", "ORDER": "ASC", "start": -1}
    assert chain["p1"][1]["FILTER"][">ID"] == "$result[p0][49][ID]"


@pytest.mark.parametrize("length", [0, 51])
def test_chain_length_bounds(length: int) -> None:
    with pytest.raises(ValueError, match="chain length"):
        queries.keyset_chain(DEALS, 0, length=length)


def test_split_chain_all_full_pages_continue() -> None:
    results = [_ok(f"p{i}", _page(1 + 50 * i, 50)) for i in range(3)]
    chain = queries.split_chain(results, DEALS)
    assert not chain.exhausted
    assert chain.last_id == 150
    assert [len(p) for p in chain.pages] == [50, 50, 50]


def test_split_chain_stops_at_short_page_and_discards_garbage() -> None:
    # p2 is short: p3's reference resolved to a parent node (§4.3) and returned garbage rows, p4 failed.
    results = [
        _ok("p0", _page(1, 50)),
        _ok("p1", _page(51, 50)),
        _ok("p2", _page(101, 7)),
        _ok("p3", _page(1, 50)),
        _err("p4"),
    ]
    chain = queries.split_chain(results, DEALS)
    assert chain.exhausted
    assert chain.last_id == 107
    assert sum(len(p) for p in chain.pages) == 107


def test_split_chain_empty_first_page() -> None:
    chain = queries.split_chain([_ok("p0", {"items": []}), _err("p1")], DEALS)
    assert chain.exhausted and chain.last_id is None and chain.pages == [[]]


def test_split_chain_error_before_short_page_is_raised() -> None:
    results = [_ok("p0", _page(1, 50)), _err("p1", "ACCESS_DENIED")]
    with pytest.raises(BatchCommandError) as info:
        queries.split_chain(results, DEALS)
    assert info.value.code == "ACCESS_DENIED"


def test_split_chain_detects_stuck_cursor() -> None:
    results = [_ok("p0", _page(1, 50)), _ok("p1", _page(1, 50))]
    with pytest.raises(ApiError, match="did not advance"):
        queries.split_chain(results, DEALS)


def test_split_chain_bare_user_list() -> None:
    rows = [{"ID": str(i)} for i in range(1, 51)]
    chain = queries.split_chain([_ok("p0", rows), _ok("p1", [{"ID": "51"}])], USERS)
    assert chain.exhausted and chain.last_id == 51


def test_rows_of_rejects_non_list() -> None:
    with pytest.raises(ApiError, match="expected a list"):
        queries.rows_of({"items": {"id": 1}}, "items")
    assert queries.rows_of({"items": None}, "items") == []


def test_v3_task_pages_batch() -> None:
    commands = queries.v3_task_pages(
        [300, 420],
        limit=50,
        select=["id", "title", "changed"],
        since="2026-01-01T00:00:00+03:00",
        probes=3,
    )
    assert list(commands) == ["t0", "t1", "n1", "n2", "last"]
    method, query = commands["t1"]
    assert method == "tasks.task.list"
    assert query["filter"] == [["id", ">", 420], ["changed", ">=", "2026-01-01T00:00:00+03:00"]]
    assert query["order"] == {"id": "ASC"} and query["pagination"] == {"limit": 50}
    # probes: two ids right after the last task of the next batch's page k-1, in the last page's window
    _, probe = commands["n2"]
    assert probe["select"] == ["id"] and probe["filter"][0] == ["id", ">", 420]
    assert probe["pagination"] == {"limit": 2, "offset": 149}
    # the look-ahead: the same listing reversed, one row: the final task
    assert commands["last"] == (
        "tasks.task.list",
        {
            "select": ["id"],
            "filter": [["id", ">", 300], ["changed", ">=", "2026-01-01T00:00:00+03:00"]],
            "order": {"id": "DESC"},
            "pagination": {"limit": 1},
        },
    )


def test_v3_task_pages_blind_pages_overlap_one_task_and_move_the_probes() -> None:
    commands = queries.v3_task_pages([0], limit=50, select=["id"], since=None, probes=2, blind=2)
    assert [commands[f"t{j}"][1]["pagination"] for j in range(3)] == [
        {"limit": 50},
        {"limit": 50, "offset": 49},
        {"limit": 50, "offset": 98},
    ]
    # the batch reads offsets 0..147; the next batch's page 1 starts after offset 147 + 50
    assert commands["n1"][1]["pagination"] == {"limit": 2, "offset": 197}
    with pytest.raises(ValueError):
        queries.v3_task_pages([0, 5], limit=50, select=["id"], since=None, probes=1, blind=1)


@pytest.mark.parametrize(
    ("page", "last", "expected"),
    [
        ([], [], True),
        ([{"id": 1}, {"id": 7}], [], True),  # nothing matches the listing any more
        ([{"id": 1}, {"id": 7}], [{"id": 7}], True),  # a full page ending on the final task
        ([{"id": "1"}, {"id": "7"}], [{"id": 7}], True),
        ([{"id": 1}, {"id": 7}], [{"id": 9}], False),
    ],
)
def test_reaches_last_task(page: list[dict[str, Any]], last: list[dict[str, Any]], expected: bool) -> None:
    assert queries.reaches_last_task(page, last) is expected


def test_result_window_pages_overlap_one_row() -> None:
    commands = queries.result_window("t3", ref_array("t3.id"), after=None, pages=3, limit=50, select=None)
    assert list(commands) == ["rt3_0", "rt3_1", "rt3_2"]
    method, first = commands["rt3_0"]
    assert method == "tasks.task.result.list"
    assert first["filter"][0][2].to_wire() == {"$refArray": "t3.id"}
    assert first["pagination"] == {"limit": 50} and "select" not in first
    assert commands["rt3_2"][1]["pagination"] == {"limit": 50, "offset": 98}
    follow = queries.result_window("f0", [1, 2], after=77, pages=1, limit=50, select=["id"])
    assert follow["rf0_0"][1]["filter"] == [["taskId", "in", [1, 2]], ["id", ">", 77]]
    assert follow["rf0_0"][1]["select"] == ["id"]


def _results(ids: range | list[int]) -> list[dict[str, Any]]:
    return [{"id": i, "taskId": 1} for i in ids]


def test_stitch_result_pages_joins_the_seams_and_stops_at_a_short_page() -> None:
    cap = queries.PageCap()
    rows, after = queries.stitch_result_pages(
        [_results(range(1, 51)), _results(range(50, 71)), []], limit=50, cap=cap
    )
    assert [r["id"] for r in rows] == list(range(1, 71))
    assert after is None


def test_stitch_result_pages_continues_after_a_full_last_page() -> None:
    rows, after = queries.stitch_result_pages(
        [_results(range(1, 51)), _results(range(50, 100))], limit=50, cap=queries.PageCap()
    )
    assert len(rows) == 99 and after == 99


def test_stitch_result_pages_continues_after_a_moved_seam() -> None:
    # result 50 was deleted while the batch ran: page 2 starts one row late, so row 51 might be unseen
    rows, after = queries.stitch_result_pages(
        [_results(range(1, 51)), _results(range(52, 60))], limit=50, cap=queries.PageCap()
    )
    assert [r["id"] for r in rows] == list(range(1, 51)) and after == 50


def test_stitch_result_pages_learns_a_clamped_page_size() -> None:
    cap = queries.PageCap()
    # the portal serves 20 rows for limit 50: the second page (offset 49) does not start on row 20
    rows, after = queries.stitch_result_pages(
        [_results(range(1, 21)), _results(range(50, 70))], limit=50, cap=cap
    )
    assert [r["id"] for r in rows] == list(range(1, 21)) and after == 20
    assert cap.limit == 20


def test_page_cap_learns_clamped_limit() -> None:
    cap = queries.PageCap()
    assert not cap.is_last(20)  # the server clamped our 50 to 20: not the end
    assert not cap.is_last(20)
    assert cap.is_last(3)
    assert queries.PageCap().is_last(0)


def test_page_cap_maybe_full() -> None:
    cap = queries.PageCap()
    assert cap.maybe_full(50, 50)
    assert not cap.maybe_full(0, 50)
    clamped = queries.PageCap()
    clamped.observe(20)
    assert clamped.maybe_full(20, 50)  # could be a clamped full page
    assert not clamped.maybe_full(7, 50)
    clamped.clamp(20)
    assert clamped.limit == 20


def test_product_rows_commands() -> None:
    commands = queries.product_rows_commands([((1, 2, 3), 0), ((4,), 990)])
    assert commands["o0"] == (
        "crm.item.productrow.list",
        {"filter": {"=ownerType": "D", "@ownerId": [1, 2, 3]}, "order": {"id": "ASC"}, "start": -1},
    )
    assert commands["o1"][1]["filter"][">id"] == 990


def test_chunked() -> None:
    assert queries.chunked([1, 2, 3, 4, 5], 2) == [(1, 2), (3, 4), (5,)]


def test_v3_recent_page_orders_newest_first() -> None:
    commands = queries.v3_tasks_recent_page(20, limit=10, select=["id", "changed"])
    _, query = commands["t0"]
    assert query["order"] == {"changed": "DESC", "id": "DESC"}
    assert query["pagination"] == {"limit": 10, "offset": 20}
    assert "filter" not in query
    _, last = commands["last"]
    assert last == {"select": ["id"], "order": {"changed": "ASC", "id": "ASC"}, "pagination": {"limit": 1}}


def test_last_id_command_reverses_the_walk_with_its_filter() -> None:
    method, params = queries.last_id_command(DEALS, {">=updatedTime": "2024-01-01T00:00:00+00:00"})
    assert method == "crm.item.list"
    assert params["order"] == {"id": "DESC"} and params["select"] == ["id"] and params["start"] == -1
    assert params["filter"] == {">=updatedTime": "2024-01-01T00:00:00+00:00", ">id": 0}
    method, params = queries.last_id_command(USERS)
    assert (method, params["SORT"], params["ORDER"]) == ("user.get", "ID", "DESC")


def test_last_id_of_reads_the_first_row_or_zero() -> None:
    rows = {"items": [{"id": 907}, {"id": 906}]}
    assert queries.last_id_of(_ok("l0", rows), DEALS) == 907
    assert queries.last_id_of(_ok("l0", {"items": []}), DEALS) == 0
    assert queries.last_id_of(_ok("l0", [{"ID": "12"}]), USERS) == 12
    with pytest.raises(BatchCommandError):
        queries.last_id_of(_err("l0"), DEALS)
