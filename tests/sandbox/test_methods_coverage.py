"""Smart processes, quotes, invoices, pipelines, stage history, activities and departments over real HTTP.

What a warehouse reads beyond the basic entities: every answer is compared with `Sandbox.rows(...)`, pages are
walked the way the source walks them (keyset `>ID` with `start=-1`, or offsets), and every write that moves
an item's stage must leave a crm.stagehistory.list row behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from bitrix24_source.sandbox import Sandbox

SPA = (128, 1036)


@pytest.fixture(scope="module")
def portal() -> Iterator[Sandbox]:
    with Sandbox(
        seed=11,
        leads=40,
        deals=60,
        contacts=20,
        companies=10,
        users=6,
        tasks=5,
        spa_items=70,
        quotes=9,
        invoices=12,
        activities=130,
        departments=8,
    ) as p:
        yield p


@pytest.fixture
def fresh() -> Iterator[Sandbox]:
    with Sandbox(seed=12, leads=10, deals=10, contacts=5, companies=5, users=3, tasks=2, spa_items=10) as p:
        yield p


def call(portal: Sandbox, method: str, **params: Any) -> Any:
    body = requests.post(portal.webhook_url + method, json=params, timeout=30).json()
    assert "error" not in body, body
    return body


def fail(portal: Sandbox, method: str, **params: Any) -> dict[str, Any]:
    answer = requests.post(portal.webhook_url + method, json=params, timeout=30)
    body: dict[str, Any] = answer.json()
    assert "result" not in body and answer.status_code == 400, body
    return body


def keyset(portal: Sandbox, method: str, params: dict[str, Any], key: str, rows_of: Any) -> list[Any]:
    """Every row of a list, read as the source does: `>ID` + order by ID + start=-1, 50 rows a page."""
    out: list[Any] = []
    last = 0
    while True:
        flt = {**params.get("filter", {}), f">{key}": last}
        body = call(portal, method, **{**params, "filter": flt, "order": {key: "ASC"}, "start": -1})
        page = rows_of(body["result"])
        assert "next" not in body and body.get("total", 0) == 0
        out.extend(page)
        if len(page) < 50:
            return out
        assert len(page) == 50
        last = int(page[-1][key])


# -- smart-process types, pipelines, stages --------------------------------------------------------------


def test_type_list_serves_the_smart_processes_as_the_sandbox_holds_them(portal: Sandbox) -> None:
    body = call(portal, "crm.type.list")
    types = body["result"]["types"]
    assert [t["entityTypeId"] for t in types] == list(SPA) and body["total"] == 2
    assert types == portal.rows("spa_types")
    # Keys of crm-type-list.md's response example, in its order.
    assert list(types[0])[:6] == ["id", "title", "code", "createdBy", "entityTypeId", "customSectionId"]
    assert list(types[0])[-3:] == ["createdTime", "updatedTime", "updatedBy"]
    only = call(portal, "crm.type.list", filter={"entityTypeId": 1036})["result"]["types"]
    assert [t["entityTypeId"] for t in only] == [1036]
    bad = fail(portal, "crm.type.list", filter={"noSuchField": 1})
    assert bad["error"] == "INVALID_ARG_VALUE"


@pytest.mark.parametrize("type_id", [2, 31, *SPA])
def test_each_type_lists_its_own_pipelines(portal: Sandbox, type_id: int) -> None:
    categories = call(portal, "crm.category.list", entityTypeId=type_id)["result"]["categories"]
    stored = [r for r in portal.rows("crm_categories") if r["entityTypeId"] == type_id]
    assert sorted(categories, key=lambda r: r["id"]) == stored
    assert sum(c["isDefault"] == "Y" for c in categories) == 1


def test_pipeline_ids_are_portal_wide(portal: Sandbox) -> None:
    ids = [r["id"] for r in portal.rows("crm_categories")]
    assert len(ids) == len(set(ids)) and {r["entityTypeId"] for r in portal.rows("crm_categories")} == {
        2,
        31,
        *SPA,
    }


def test_quotes_have_no_pipelines(portal: Sandbox) -> None:
    assert fail(portal, "crm.category.list", entityTypeId=7)["error"] == "ENTITY_TYPE_NOT_SUPPORTED"


@pytest.mark.parametrize("type_id", SPA)
def test_every_smart_process_item_is_on_a_stage_of_its_pipeline(portal: Sandbox, type_id: int) -> None:
    for category in call(portal, "crm.category.list", entityTypeId=type_id)["result"]["categories"]:
        directory = f"DYNAMIC_{type_id}_STAGE_{category['id']}"
        stages = call(portal, "crm.status.list", filter={"ENTITY_ID": directory})["result"]
        codes = [s["STATUS_ID"] for s in stages]
        assert codes and all(c.startswith(f"DT{type_id}_{category['id']}:") for c in codes)
        assert [s["SEMANTICS"] for s in stages][-2:] == ["S", "F"]
        items = [r for r in portal.rows(f"spa_{type_id}") if r["categoryId"] == category["id"]]
        assert all(r["stageId"] in codes for r in items)
    assert {r["categoryId"] for r in portal.rows(f"spa_{type_id}")} <= {
        c["id"] for c in call(portal, "crm.category.list", entityTypeId=type_id)["result"]["categories"]
    }


def test_quote_and_invoice_stages_are_in_their_directories(portal: Sandbox) -> None:
    all_statuses = portal.rows("crm_statuses")
    quote_codes = {s["STATUS_ID"] for s in all_statuses if s["ENTITY_ID"] == "QUOTE_STATUS"}
    assert quote_codes == {"DRAFT", "APPROVED", "DECLAINED"}
    assert {r["stageId"] for r in portal.rows("quotes")} <= quote_codes
    invoice_codes = {s["STATUS_ID"] for s in all_statuses if s["ENTITY_ID"] == "SMART_INVOICE_STAGE_2"}
    assert {r["stageId"] for r in portal.rows("invoices")} <= invoice_codes
    kinds = {e["ID"] for e in call(portal, "crm.status.entity.types")["result"]}
    assert {"QUOTE_STATUS", "SMART_INVOICE_STAGE_2", "DYNAMIC_128_STAGE_3", "DYNAMIC_1036_STAGE_5"} <= kinds


# -- items ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_id", "table", "count"), [(128, "spa_128", 70), (7, "quotes", 9), (31, "invoices", 12)]
)
def test_items_read_by_keyset_equal_the_sandbox_rows(
    portal: Sandbox, type_id: int, table: str, count: int
) -> None:
    rows = keyset(
        portal, "crm.item.list", {"entityTypeId": type_id, "select": ["*"]}, "id", lambda r: r["items"]
    )
    stored = portal.rows(table)
    assert len(rows) == count == len(stored)
    assert [r["id"] for r in rows] == [r["id"] for r in stored]
    for got, want in zip(rows, stored, strict=True):
        assert {k: got[k] for k in want if k in got} == {k: want[k] for k in want if k in got}


def test_item_fields_describe_the_smart_process_and_its_own_user_fields(portal: Sandbox) -> None:
    fields = call(portal, "crm.item.fields", entityTypeId=1036)["result"]["fields"]
    assert {"xmlId", "updatedTime", "stageId", "categoryId", "previousStageId"} <= set(fields)
    assert fields["stageId"]["statusType"] == "DYNAMIC_1036_STAGE_5"
    ufs = {n: d for n, d in fields.items() if d["isDynamic"]}
    assert ufs and all(
        n.startswith("ufCrm2_") and d["upperName"].startswith("UF_CRM_2_") for n, d in ufs.items()
    )
    enum = next(d for d in ufs.values() if d["type"] == "enumeration")
    assert [i["VALUE"] for i in enum["items"]] == ["High", "Normal", "Low"]
    # Enumeration user fields of the classic entities carry their items (labels) too.
    deal_enum = next(
        d
        for d in call(portal, "crm.item.fields", entityTypeId=2)["result"]["fields"].values()
        if d["type"] == "enumeration"
    )
    assert [i["VALUE"] for i in deal_enum["items"]] == ["Gold", "Silver", "Bronze"]


def test_items_filter_on_updated_time(portal: Sandbox) -> None:
    stored = portal.rows("spa_128")
    cut = sorted(r["updatedTime"] for r in stored)[len(stored) // 2]
    body = call(
        portal, "crm.item.list", entityTypeId=128, filter={">updatedTime": cut}, select=["id"], start=0
    )
    want = [r["id"] for r in stored if r["updatedTime"] > cut]
    assert [r["id"] for r in body["result"]["items"]] == want[:50] and body["total"] == len(want)


def test_item_add_get_update_delete_on_a_smart_process(fresh: Sandbox) -> None:
    added = call(fresh, "crm.item.add", entityTypeId=128, fields={"title": "Roof", "categoryId": 4})[
        "result"
    ]["item"]
    assert (added["entityTypeId"], added["stageId"], added["categoryId"]) == (128, "DT128_4:NEW", 4)
    got = call(fresh, "crm.item.get", entityTypeId=128, id=added["id"])["result"]["item"]
    assert got == added
    updated = call(
        fresh, "crm.item.update", entityTypeId=128, id=added["id"], fields={"stageId": "DT128_4:CLIENT"}
    )
    item = updated["result"]["item"]
    assert (item["stageId"], item["previousStageId"]) == ("DT128_4:CLIENT", "DT128_4:NEW")
    assert item["updatedTime"] >= added["updatedTime"]
    wrong = fail(
        fresh,
        "crm.item.update",
        entityTypeId=128,
        id=added["id"],
        fields={"stageId": "DT128_3:NEW", "categoryId": 4},
    )
    assert wrong["error"] == "CRM_FIELD_ERROR_VALUE_NOT_VALID"
    assert call(fresh, "crm.item.delete", entityTypeId=128, id=added["id"])["result"] == []
    assert all(r["id"] != added["id"] for r in fresh.rows("spa_128"))
    assert fail(fresh, "crm.item.get", entityTypeId=128, id=added["id"])["error"] == "NOT_FOUND"


# -- stage history --------------------------------------------------------------------------------------


def _history(portal: Sandbox, type_id: int) -> list[dict[str, Any]]:
    return keyset(portal, "crm.stagehistory.list", {"entityTypeId": type_id}, "ID", lambda r: r["items"])


@pytest.mark.parametrize(
    ("type_id", "table", "stage_key"),
    [
        (1, "leads", "STATUS_ID"),
        (2, "deals", "STAGE_ID"),
        (31, "invoices", "STAGE_ID"),
        (128, "spa_128", "STAGE_ID"),
    ],
)
def test_history_ends_at_each_items_current_stage(
    portal: Sandbox, type_id: int, table: str, stage_key: str
) -> None:
    history = _history(portal, type_id)
    stored = [
        {k: v for k, v in r.items() if k != "entityTypeId"}
        for r in portal.rows("stage_history")
        if r["entityTypeId"] == type_id
    ]
    assert history == stored
    last: dict[int, dict[str, Any]] = {}
    for row in history:
        last[row["OWNER_ID"]] = row
    items = portal.rows(table)
    assert set(last) == {r["id"] for r in items}
    for item in items:
        assert last[item["id"]][stage_key] == item["stageId"]
    first_kinds = {row["OWNER_ID"]: row["TYPE_ID"] for row in reversed(history)}
    assert set(first_kinds.values()) == {1}


def test_history_rows_have_the_documented_keys_per_type(portal: Sandbox) -> None:
    lead = call(portal, "crm.stagehistory.list", entityTypeId=1)["result"]["items"][0]
    assert list(lead) == ["ID", "TYPE_ID", "OWNER_ID", "CREATED_TIME", "STATUS_SEMANTIC_ID", "STATUS_ID"]
    deal = call(portal, "crm.stagehistory.list", entityTypeId=2)["result"]["items"][0]
    assert list(deal) == [
        "ID",
        "TYPE_ID",
        "OWNER_ID",
        "CREATED_TIME",
        "CATEGORY_ID",
        "STAGE_SEMANTIC_ID",
        "STAGE_ID",
    ]
    picked = call(portal, "crm.stagehistory.list", entityTypeId=2, select=["ID", "STAGE_ID"])["result"][
        "items"
    ][0]
    assert list(picked) == ["ID", "STAGE_ID"]


def test_history_ids_are_numbered_per_entity_type(portal: Sandbox) -> None:
    firsts = {
        t: call(portal, "crm.stagehistory.list", entityTypeId=t)["result"]["items"][0]["ID"]
        for t in (1, 2, 128)
    }
    assert firsts == {1: 1, 2: 1, 128: 1}


def test_history_offset_pages_count_and_filter(portal: Sandbox) -> None:
    total = len([r for r in portal.rows("stage_history") if r["entityTypeId"] == 2])
    body = call(portal, "crm.stagehistory.list", entityTypeId=2, start=50)
    assert body["total"] == total and body["result"]["items"][0]["ID"] == 51
    owner = call(portal, "crm.stagehistory.list", entityTypeId=2, filter={"OWNER_ID": 3})["result"]["items"]
    assert owner and {r["OWNER_ID"] for r in owner} == {3}


def test_history_refuses_types_without_stages(portal: Sandbox) -> None:
    assert fail(portal, "crm.stagehistory.list", entityTypeId=3)["error"] == "ENTITY_TYPE_NOT_SUPPORTED"
    assert (
        fail(portal, "crm.stagehistory.list", entityTypeId=2, filter={"NOPE": 1})["error"]
        == "INVALID_ARG_VALUE"
    )


def _last_history(portal: Sandbox, type_id: int, owner: int) -> list[dict[str, Any]]:
    return [
        r for r in portal.rows("stage_history") if r["entityTypeId"] == type_id and r["OWNER_ID"] == owner
    ]


def test_every_write_that_moves_a_stage_appends_history(fresh: Sandbox) -> None:
    spa = next(
        r["id"] for r in fresh.rows("spa_128") if r["categoryId"] == 3 and r["stageId"] != "DT128_3:SUCCESS"
    )
    before = len(fresh.rows("stage_history"))
    call(fresh, "crm.item.update", entityTypeId=128, id=spa, fields={"title": "no move"})
    assert len(fresh.rows("stage_history")) == before

    call(fresh, "crm.item.update", entityTypeId=128, id=spa, fields={"stageId": "DT128_3:SUCCESS"})
    row = _last_history(fresh, 128, spa)[-1]
    assert (row["TYPE_ID"], row["STAGE_ID"], row["STAGE_SEMANTIC_ID"]) == (3, "DT128_3:SUCCESS", "S")

    call(fresh, "crm.item.update", entityTypeId=128, id=spa, fields={"categoryId": 4})
    row = _last_history(fresh, 128, spa)[-1]
    assert (row["TYPE_ID"], row["CATEGORY_ID"], row["STAGE_ID"]) == (5, 4, "DT128_4:NEW")

    deal_stage = fresh.rows("deals")[1]["stageId"]
    target = "C1:PREPARATION" if deal_stage.startswith("C1:") else "PREPARATION"
    target = "EXECUTING" if deal_stage == target else target
    call(fresh, "crm.deal.update", id=2, fields={"STAGE_ID": target})
    row = _last_history(fresh, 2, 2)[-1]
    assert (row["TYPE_ID"], row["STAGE_ID"]) == (2, target)

    lead = fresh.rows("leads")[0]
    new_status = "JUNK" if lead["stageId"] != "JUNK" else "NEW"
    fresh.update_row("leads", lead["id"], {"stageId": new_status})
    row = _last_history(fresh, 1, lead["id"])[-1]
    assert row["STATUS_ID"] == new_status and "STAGE_ID" not in row

    added = call(fresh, "crm.item.add", entityTypeId=31, fields={"title": "Invoice"})["result"]["item"]
    rows = _last_history(fresh, 31, added["id"])
    assert [(r["TYPE_ID"], r["STAGE_ID"]) for r in rows] == [(1, "DT31_2:NEW")]
    # New history rows are numbered after the seeded ones, so an incremental read by ID sees them.
    ids = [r["ID"] for r in fresh.rows("stage_history") if r["entityTypeId"] == 128]
    assert ids == sorted(ids) and len(ids) == len(set(ids))


# -- activities -----------------------------------------------------------------------------------------


def test_activities_read_by_keyset_equal_the_sandbox_rows(portal: Sandbox) -> None:
    rows = keyset(portal, "crm.activity.list", {}, "ID", lambda r: r)
    stored = portal.rows("activities")
    assert len(rows) == 130 == len(stored)
    assert [int(r["ID"]) for r in rows] == [r["ID"] for r in stored]
    # crm-activity-list.md: ids and other ints as strings.
    assert all(isinstance(r["OWNER_ID"], str) and isinstance(r["ID"], str) for r in rows)
    owners = {1: "leads", 2: "deals", 3: "contacts", 4: "companies"}
    existing = {t: {r["id"] for r in portal.rows(e)} for t, e in owners.items()}
    assert all(r["OWNER_ID"] in existing[r["OWNER_TYPE_ID"]] for r in stored)


def test_activities_filter_on_last_updated_and_owner(portal: Sandbox) -> None:
    stored = portal.rows("activities")
    cut = sorted(r["LAST_UPDATED"] for r in stored)[100]
    rows = keyset(portal, "crm.activity.list", {"filter": {">LAST_UPDATED": cut}}, "ID", lambda r: r)
    assert [int(r["ID"]) for r in rows] == [r["ID"] for r in stored if r["LAST_UPDATED"] > cut]
    owner = stored[0]
    mine = call(
        portal,
        "crm.activity.list",
        filter={"OWNER_TYPE_ID": owner["OWNER_TYPE_ID"], "OWNER_ID": owner["OWNER_ID"]},
    )
    assert mine["result"] and all(r["OWNER_ID"] == str(owner["OWNER_ID"]) for r in mine["result"])
    offset = call(portal, "crm.activity.list", start=0)
    assert offset["total"] == 130 and offset["next"] == 50 and len(offset["result"]) == 50


def test_activity_fields_are_the_documented_catalogue(portal: Sandbox) -> None:
    fields = call(portal, "crm.activity.fields")["result"]
    assert fields["LAST_UPDATED"]["type"] == "datetime" and fields["LAST_UPDATED"]["isReadOnly"] is True
    assert fields["OWNER_TYPE_ID"]["type"] == "crm_enum_ownertype"
    row = call(portal, "crm.activity.list", select=["*"])["result"][0]
    assert set(row) <= set(fields)


def test_activities_are_added_updated_and_deleted(fresh: Sandbox) -> None:
    new = {"OWNER_TYPE_ID": 2, "OWNER_ID": 1, "TYPE_ID": 2, "SUBJECT": "Call back", "RESPONSIBLE_ID": 1,
           "COMMUNICATIONS": [{"VALUE": "+100", "ENTITY_ID": 1, "ENTITY_TYPE_ID": 3}]}  # fmt: skip
    id_ = call(fresh, "crm.activity.add", fields=new)["result"]
    assert isinstance(id_, int) and fresh.rows("activities")[-1]["ID"] == id_
    before = fresh.rows("activities")[-1]["LAST_UPDATED"]
    fresh.state.advance_clock(60)
    assert call(fresh, "crm.activity.update", id=id_, fields={"COMPLETED": "Y"})["result"] is True
    row = fresh.rows("activities")[-1]
    assert (row["COMPLETED"], row["STATUS"]) == ("Y", 2) and row["LAST_UPDATED"] > before
    assert call(fresh, "crm.activity.delete", id=id_)["result"] is True
    assert fail(fresh, "crm.activity.delete", id=id_)["error_description"] == "Activity is not found"
    missing = {k: v for k, v in new.items() if k != "COMMUNICATIONS"}
    assert fail(fresh, "crm.activity.add", fields=missing)["error_description"] == (
        "The field COMMUNICATIONS is not defined or invalid"
    )
    nowhere = {**new, "OWNER_ID": 99999}
    assert fail(fresh, "crm.activity.add", fields=nowhere)["error_description"].startswith(
        "Could not build binding"
    )


# -- departments ----------------------------------------------------------------------------------------


def test_departments_form_a_tree_users_point_into(portal: Sandbox) -> None:
    body = call(portal, "department.get")
    rows = body["result"]
    assert body["total"] == 8 == len(portal.rows("departments"))
    ids = {r["ID"] for r in rows}
    assert "PARENT" not in rows[0] and all(r["PARENT"] in ids for r in rows[1:])
    used = {str(d) for u in portal.rows("users") for d in u["UF_DEPARTMENT"]}
    assert used <= ids
    children = call(portal, "department.get", PARENT=1, sort="NAME", order="DESC")["result"]
    names = [r["NAME"] for r in children]
    assert names == sorted(names, reverse=True) and all(r["PARENT"] == "1" for r in children)


# -- Sandbox names and seeding --------------------------------------------------------------------------


def test_sandbox_rows_add_update_delete_on_the_new_tables(fresh: Sandbox) -> None:
    added = fresh.add_row("spa_1036", {"title": "Chairs"})
    assert added["stageId"] == "DT1036_5:NEW" and added["categoryId"] == 5
    fresh.update_row("spa_1036", added["id"], {"stageId": "DT1036_5:FAIL"})
    assert [r["TYPE_ID"] for r in _last_history(fresh, 1036, added["id"])] == [1, 3]
    fresh.delete_row("spa_1036", added["id"])
    assert all(r["id"] != added["id"] for r in fresh.rows("spa_1036"))
    dept = fresh.add_row("departments", {"NAME": "Warehouse", "PARENT": 2})
    assert any(r["NAME"] == "Warehouse" for r in call(fresh, "department.get", PARENT=2)["result"])
    fresh.delete_row("departments", dept["ID"])
    activity = fresh.add_row("activities", {"OWNER_TYPE_ID": 3, "OWNER_ID": 1, "SUBJECT": "Note"})
    assert call(fresh, "crm.activity.list", filter={"ID": activity["ID"]})["result"][0]["SUBJECT"] == "Note"
    assert len(fresh.rows("crm_statuses")) == len(call(fresh, "crm.status.list")["result"])
    assert fresh.rows("quotes") and fresh.rows("invoices") and fresh.rows("spa_types")


def test_new_tables_leave_the_older_rows_of_a_seed_unchanged() -> None:
    small = {"seed": 4, "leads": 15, "deals": 15, "contacts": 8, "companies": 5, "users": 4, "tasks": 6}
    with (
        Sandbox(**small, spa_items=0, quotes=0, invoices=0, activities=0) as bare,
        Sandbox(**small, spa_items=25, quotes=5, invoices=5, activities=60, departments=9) as full,
    ):
        for table in (
            "leads",
            "deals",
            "contacts",
            "companies",
            "users",
            "tasks",
            "task_results",
            "deal_products",
        ):
            assert bare.rows(table) == full.rows(table), table
        assert len(full.rows("spa_128")) == 25 and bare.rows("spa_128") == []
        assert len(full.rows("activities")) == 60 and len(full.rows("departments")) == 9
