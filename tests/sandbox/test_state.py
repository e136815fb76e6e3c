"""PortalState: the seam, seeded generation, direct row changes and the keyset fast path (no HTTP)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bitrix24_source.sandbox.state import PortalState
from bitrix24_source.sandbox.store import Table, iso
from bitrix24_source.sandbox.types import ENTITIES, ApiError, CallContext, CostModel, SeedCounts

SMALL = SeedCounts(leads=40, deals=60, contacts=30, companies=10, users=6, tasks=30)
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+03:00$")


def make(seed: int = 11, counts: SeedCounts = SMALL) -> PortalState:
    return PortalState(seed=seed, counts=counts, cost_model=CostModel())


def ctx(version: int = 2, start: int = 0, given: bool = False) -> CallContext:
    return CallContext(version=version, start=start, start_given=given)


@pytest.fixture(scope="module")
def state() -> PortalState:
    return make()


def test_same_seed_same_portal_and_other_seed_differs() -> None:
    a, b, c = make(5), make(5), make(6)
    for entity in ENTITIES:
        assert a.rows(entity) == b.rows(entity), entity
    assert a.rows("deals") != c.rows("deals")


def test_counts_are_honoured(state: PortalState) -> None:
    assert len(state.rows("leads")) == 40
    assert len(state.rows("deals")) == 60
    assert len(state.rows("contacts")) == 30
    assert len(state.rows("companies")) == 10
    assert len(state.rows("users")) == 6
    assert len(state.rows("tasks")) == 30
    per_task: dict[int, int] = {}
    for r in state.rows("task_results"):
        per_task[r["taskId"]] = per_task.get(r["taskId"], 0) + 1
    assert max(per_task.values()) <= SMALL.results_per_task[1]
    per_deal: dict[int, int] = {}
    for r in state.rows("deal_products"):
        per_deal[r["ownerId"]] = per_deal.get(r["ownerId"], 0) + 1
    assert max(per_deal.values()) <= SMALL.products_per_deal[1]


def test_links_point_at_existing_rows(state: PortalState) -> None:
    ids = {e: {r["id"] for r in state.rows(e)} for e in ("leads", "deals", "contacts", "companies", "tasks")}
    users = {int(u["ID"]) for u in state.rows("users")}
    for deal in state.rows("deals"):
        assert deal["assignedById"] in users and deal["createdBy"] in users
        assert deal["companyId"] is None or deal["companyId"] in ids["companies"]
        assert set(deal["contactIds"]) <= ids["contacts"]
        assert deal["contactId"] == (deal["contactIds"][0] if deal["contactIds"] else None)
    for contact in state.rows("contacts"):
        assert contact["companyId"] is None or contact["companyId"] in ids["companies"]
    prefixes = {"D": "deals", "L": "leads", "C": "contacts", "CO": "companies"}
    for task in state.rows("tasks"):
        assert task["creatorId"] in users and task["responsibleId"] in users
        for ref in task["crmItemIds"]:
            prefix, _, num = ref.partition("_")
            assert int(num) in ids[prefixes[prefix]], ref
    assert {p["ownerId"] for p in state.rows("deal_products")} <= ids["deals"]
    assert {r["taskId"] for r in state.rows("task_results")} <= ids["tasks"]


def test_canonical_forms(state: PortalState) -> None:
    deal = state.rows("deals")[0]
    assert isinstance(deal["id"], int) and isinstance(deal["opportunity"], float)
    assert ISO.match(deal["createdTime"]) and ISO.match(deal["updatedTime"])
    assert deal["createdTime"] <= deal["updatedTime"]
    assert deal["stageSemanticId"] in ("P", "S", "F")
    assert deal["stageId"] in (
        "NEW",
        "PREPARATION",
        "PREPAYMENT_INVOICE",
        "EXECUTING",
        "FINAL_INVOICE",
        "WON",
        "LOSE",
    ) or deal["stageId"].startswith("C1:")
    user = state.rows("users")[0]
    assert user["ID"] == "1" and user["ACTIVE"] is True and user["UF_DEPARTMENT"] == [1]
    task = state.rows("tasks")[0]
    assert isinstance(task["id"], int)
    assert task["status"] in (
        "pending",
        "in_progress",
        "supposedly_completed",
        "completed",
        "deferred",
        "declined",
    )
    assert task["priority"] in ("high", "average", "low")
    result = state.rows("task_results")[0]
    assert set(result) >= {
        "id",
        "taskId",
        "text",
        "authorId",
        "createdAt",
        "updatedAt",
        "status",
        "messageId",
    }
    assert result["status"] in ("open", "closed")
    product = state.rows("deal_products")[0]
    assert list(product)[:3] == ["id", "ownerId", "ownerType"] and product["ownerType"] == "D"


def test_rows_are_ordered_copies(state: PortalState) -> None:
    rows = state.rows("contacts")
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    rows[0]["name"] = "changed outside"
    rows[0]["fm"].append({"id": 0})
    fresh = state.rows("contacts")[0]
    assert fresh["name"] != "changed outside"
    assert {"id": 0} not in fresh["fm"]


def test_add_update_delete_row_and_clock() -> None:
    st = make(3)
    added = st.add_row("deals", {"title": "Direct", "opportunity": 10.0, "stageId": "WON"})
    assert added["id"] == 61 and added["stageSemanticId"] == "S"
    assert ISO.match(added["createdTime"]) and added["createdTime"] == added["updatedTime"]
    before = added["updatedTime"]
    st.advance_clock(3600)
    updated = st.update_row("deals", added["id"], {"title": "Direct 2"})
    assert updated["title"] == "Direct 2" and updated["updatedTime"] > before
    assert updated["createdTime"] == added["createdTime"]
    st.delete_row("deals", added["id"])
    assert all(r["id"] != added["id"] for r in st.rows("deals"))
    with pytest.raises(KeyError):
        st.update_row("deals", added["id"], {"title": "gone"})
    task = st.add_row("tasks", {"title": "Call", "creatorId": 2, "responsibleId": 3})
    st.advance_clock(10)
    changed = st.update_row("tasks", task["id"], {"status": "in_progress"})
    assert changed["changed"] > task["changed"] and changed["status"] == "in_progress"
    result = st.add_row("task_results", {"taskId": task["id"], "text": "done"})
    assert result["status"] == "open" and st.rows("tasks")[-1]["containsResults"] is True
    user = st.add_row("users", {"NAME": "New", "LAST_NAME": "Person"})
    assert user["ID"] == "7" and user["ACTIVE"] is True


def test_clock_only_moves_forward() -> None:
    st = make(4, SeedCounts(leads=1, deals=1, contacts=1, companies=1, users=1, tasks=1))
    t0 = st.now()
    st.advance_clock(86400)
    assert st.now() - t0 >= 86400
    with pytest.raises(ValueError):
        st.advance_clock(-1)


def test_deleting_a_deal_or_task_deletes_what_hangs_on_it() -> None:
    st = make(8)
    deal_id = next(p["ownerId"] for p in st.rows("deal_products"))
    task_id = next(r["taskId"] for r in st.rows("task_results"))
    st.delete_row("deals", deal_id)
    st.delete_row("tasks", task_id)
    assert all(p["ownerId"] != deal_id for p in st.rows("deal_products"))
    assert all(r["taskId"] != task_id for r in st.rows("task_results"))


def test_unknown_methods_per_version(state: PortalState) -> None:
    with pytest.raises(ApiError) as v2:
        state.dispatch(2, "crm.nothing.list", {}, ctx())
    assert (v2.value.code, v2.value.description, v2.value.status) == (
        "ERROR_METHOD_NOT_FOUND",
        "Method not found!",
        404,
    )
    with pytest.raises(ApiError) as v3:
        state.dispatch(3, "crm.item.list", {"entityTypeId": 2}, ctx(3))
    assert v3.value.code == "BITRIX_REST_V3_EXCEPTION_METHODNOTFOUNDEXCEPTION" and v3.value.status == 404
    # server.time is v2 only (§1.2: a v2-only method on /rest/api/ is not found).
    with pytest.raises(ApiError):
        state.dispatch(3, "server.time", {}, ctx(3))


def test_is_write(state: PortalState) -> None:
    for method in (
        "crm.item.add",
        "crm.deal.update",
        "crm.lead.delete",
        "tasks.task.add",
        "tasks.task.delete",
    ):
        assert state.is_write(method)
    for method in ("crm.item.list", "crm.deal.get", "tasks.task.list", "user.get", "server.time", "batch"):
        assert not state.is_write(method)


def test_costs_follow_the_cost_model() -> None:
    model = CostModel(base=1.0, per_row=0.1, per_offset_row=0.01, count=5.0, write=2.0)
    st = PortalState(seed=1, counts=SMALL, cost_model=model)
    counted = st.dispatch(2, "crm.item.list", {"entityTypeId": 2}, ctx(start=10, given=True))
    assert counted.rows == 50 and counted.cost == pytest.approx(1.0 + 5.0 + 0.1 + 5.0)
    keyset = st.dispatch(
        2, "crm.item.list", {"entityTypeId": 2, "filter": {">id": 55}}, ctx(start=-1, given=True)
    )
    assert keyset.rows == 5 and keyset.cost == pytest.approx(1.0 + 0.5)
    write = st.dispatch(2, "crm.item.add", {"entityTypeId": 2, "fields": {"title": "x"}}, ctx())
    assert write.cost == pytest.approx(3.0)
    read = st.dispatch(2, "crm.item.get", {"entityTypeId": 2, "id": 1}, ctx())
    assert read.cost == pytest.approx(1.0)


def test_keyset_page_touches_only_the_page() -> None:
    """A `>id` page ordered by id reads O(page) rows even when another condition needs the predicate."""
    st = make(2, SeedCounts(leads=0, deals=3000, contacts=0, companies=0, users=3, tasks=0))
    table = st.table("deals")
    calls = 0
    original_query = table.query

    def counting_query(**kwargs: Any) -> Any:
        predicate = kwargs["predicate"]

        def counted(row: dict[str, Any]) -> bool:
            nonlocal calls
            calls += 1
            return bool(predicate(row))

        kwargs["predicate"] = counted if predicate is not None else None
        return original_query(**kwargs)

    table.query = counting_query  # type: ignore[method-assign]
    params = {"entityTypeId": 2, "order": {"id": "ASC"}, "filter": {">id": 2000, "!=title": ""}}
    page = st.dispatch(2, "crm.item.list", params, ctx(start=-1, given=True))
    assert [r["id"] for r in page.result["items"]] == list(range(2001, 2051))
    assert calls == 50
    calls = 0
    counted = st.dispatch(2, "crm.item.list", params, ctx(start=0, given=True))
    assert counted.total == 1000 and calls == 1000


def test_table_query_bounds_and_candidates() -> None:
    import threading

    table = Table("t", threading.RLock(), indexed=("owner",))
    for i in range(1, 21):
        table.insert({"owner": i % 3, "v": i})
    rows, total = table.query(predicate=None, lo=5, lo_incl=False, hi=9, hi_incl=True, count=True)
    assert [r["id"] for r in rows] == [6, 7, 8, 9] and total == 4
    ids = table.ids_by("owner", [0])
    assert ids == [3, 6, 9, 12, 15, 18]
    rows, _ = table.query(predicate=None, candidates=ids, lo=6, order=[("id", True)], limit=3)
    assert [r["id"] for r in rows] == [18, 15, 12]
    table.replace(3, {"owner": 1, "v": 3})
    assert 3 not in table.ids_by("owner", [0]) and 3 in table.ids_by("owner", [1])
    table.delete(6)
    assert table.ids_by("owner", [0]) == [9, 12, 15, 18]
    rows, total = table.query(
        predicate=lambda r: r["v"] > 10, order=[("v", True)], offset=1, limit=2, count=True
    )
    assert [r["v"] for r in rows] == [19, 18] and total == 10


def test_iso_matches_strftime() -> None:
    from datetime import datetime

    from bitrix24_source.sandbox.store import PORTAL_TZ

    for ts in (0, 951782400, 1716293667, 1748725200, 1767225599, 1767225600):
        assert iso(ts) == datetime.fromtimestamp(ts, PORTAL_TZ).strftime("%Y-%m-%dT%H:%M:%S+03:00")
