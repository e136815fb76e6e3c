"""crm.status.*, crm.category.list and crm.dealcategory.stage.list through PortalState.dispatch (no HTTP).

The directories must agree with the generated rows and with what crm.item.add/update accept: every stage,
source and type a row holds is a STATUS_ID of the matching directory, and every listed stage is accepted.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from bitrix24_source.sandbox import Sandbox
from bitrix24_source.sandbox.state import PortalState
from bitrix24_source.sandbox.types import ApiError, CallContext, CostModel, MethodResult, SeedCounts

COUNTS = SeedCounts(leads=60, deals=90, contacts=30, companies=15, users=4, tasks=2)


def call(state: PortalState, method: str, params: dict[str, Any]) -> MethodResult:
    return state.dispatch(2, method, params, CallContext(version=2))


def error(state: PortalState, method: str, params: dict[str, Any]) -> ApiError:
    with pytest.raises(ApiError) as info:
        call(state, method, params)
    return info.value


def statuses(state: PortalState, entity_id: str) -> list[dict[str, Any]]:
    return list(call(state, "crm.status.list", {"filter": {"ENTITY_ID": entity_id}}).result)


@pytest.fixture(scope="module")
def ro() -> PortalState:
    return PortalState(seed=31, counts=COUNTS, cost_model=CostModel())


@pytest.fixture
def rw() -> PortalState:
    return PortalState(seed=32, counts=COUNTS, cost_model=CostModel())


@pytest.mark.parametrize(
    ("entity_id", "entity", "key"),
    [
        ("STATUS", "leads", "stageId"),
        ("SOURCE", "leads", "sourceId"),
        ("SOURCE", "deals", "sourceId"),
        ("SOURCE", "contacts", "sourceId"),
        ("DEAL_TYPE", "deals", "typeId"),
        ("CONTACT_TYPE", "contacts", "typeId"),
        ("COMPANY_TYPE", "companies", "typeId"),
        ("INDUSTRY", "companies", "industry"),
        ("EMPLOYEES", "companies", "employees"),
    ],
)
def test_generated_values_are_listed(ro: PortalState, entity_id: str, entity: str, key: str) -> None:
    listed = {row["STATUS_ID"] for row in statuses(ro, entity_id)}
    used = {row[key] for row in ro.rows(entity) if row[key] is not None}
    assert used and used <= listed


def test_deal_stages_per_pipeline_match_generated_deals(ro: PortalState) -> None:
    categories = call(ro, "crm.category.list", {"entityTypeId": 2}).result["categories"]
    stage_sets = {}
    for category in categories:
        entity_id = "DEAL_STAGE" if category["id"] == 0 else f"DEAL_STAGE_{category['id']}"
        rows = statuses(ro, entity_id)
        assert {r["CATEGORY_ID"] for r in rows} == {None if category["id"] == 0 else str(category["id"])}
        stage_sets[category["id"]] = {r["STATUS_ID"] for r in rows}
    for deal in ro.rows("deals"):
        assert deal["stageId"] in stage_sets[deal["categoryId"]]
    assert {d["categoryId"] for d in ro.rows("deals")} <= set(stage_sets)


def test_every_listed_stage_is_accepted_by_crm_item_update(rw: PortalState) -> None:
    deal_id = rw.rows("deals")[0]["id"]
    lead_id = rw.rows("leads")[0]["id"]
    for category in call(rw, "crm.category.list", {"entityTypeId": 2}).result["categories"]:
        stages = call(rw, "crm.dealcategory.stage.list", {"id": category["id"]}).result
        for stage in stages:
            fields = {"categoryId": category["id"], "stageId": stage["STATUS_ID"]}
            item = call(rw, "crm.item.update", {"entityTypeId": 2, "id": deal_id, "fields": fields}).result
            assert (item["item"]["categoryId"], item["item"]["stageId"]) == (
                category["id"],
                stage["STATUS_ID"],
            )
    for stage in call(rw, "crm.status.entity.items", {"entityId": "STATUS"}).result:
        params = {"entityTypeId": 1, "id": lead_id, "fields": {"stageId": stage["STATUS_ID"]}}
        assert call(rw, "crm.item.update", params).result["item"]["stageId"] == stage["STATUS_ID"]
    with pytest.raises(ApiError):
        call(rw, "crm.item.update", {"entityTypeId": 2, "id": deal_id, "fields": {"stageId": "C1:NOPE"}})


def test_status_list_rows_are_classic_strings_with_extra_on_stages(ro: PortalState) -> None:
    page = call(ro, "crm.status.list", {"order": {"SORT": "ASC"}, "filter": {"ENTITY_ID": "DEAL_STAGE"}})
    rows = page.result
    assert page.total == len(rows) and page.next is None
    assert [int(r["SORT"]) for r in rows] == sorted(int(r["SORT"]) for r in rows)
    for row in rows:
        assert {"ID", "ENTITY_ID", "STATUS_ID", "NAME", "NAME_INIT", "SORT", "SYSTEM", "CATEGORY_ID"} <= set(
            row
        )
        assert (
            isinstance(row["ID"], str) and isinstance(row["SORT"], str) and row["ENTITY_ID"] == "DEAL_STAGE"
        )
        semantic = {"S": "success", "F": "failure", None: "process"}[row["SEMANTICS"]]
        assert row["EXTRA"] == {"SEMANTICS": semantic, "COLOR": row["COLOR"]}
    assert [r["SEMANTICS"] for r in rows][-2:] == ["S", "F"]
    assert all("EXTRA" not in r for r in statuses(ro, "SOURCE"))


def test_status_list_filter_order_and_unknown_keys(ro: PortalState) -> None:
    everything = call(ro, "crm.status.list", {}).result
    assert len({r["ID"] for r in everything}) == len(everything)
    assert {r["ENTITY_ID"] for r in everything} >= {
        "STATUS",
        "DEAL_STAGE",
        "DEAL_STAGE_1",
        "SOURCE",
        "INDUSTRY",
    }
    desc = call(ro, "crm.status.list", {"order": {"ID": "DESC"}}).result
    assert [r["ID"] for r in desc] == [r["ID"] for r in everything][::-1]
    flt = {"ENTITY_ID": "SOURCE", ">SORT": 30, "NO_SUCH_FIELD": 1}
    got = call(ro, "crm.status.list", {"filter": flt}).result
    assert [r["STATUS_ID"] for r in got] == [
        r["STATUS_ID"] for r in everything if r["ENTITY_ID"] == "SOURCE" and int(r["SORT"]) > 30
    ]
    assert got
    several = call(ro, "crm.status.list", {"filter": {"@ENTITY_ID": ["DEAL_TYPE", "INDUSTRY"]}}).result
    assert {r["ENTITY_ID"] for r in several} == {"DEAL_TYPE", "INDUSTRY"}


def test_entity_items_are_the_list_rows_in_sort_order(ro: PortalState) -> None:
    for entity_id in ("STATUS", "DEAL_STAGE", "DEAL_STAGE_1", "SOURCE", "COMPANY_TYPE"):
        items = call(ro, "crm.status.entity.items", {"entityId": entity_id}).result
        listed = sorted(statuses(ro, entity_id), key=lambda r: int(r["SORT"]))
        assert items == [
            {"NAME": r["NAME"], "SORT": int(r["SORT"]), "STATUS_ID": r["STATUS_ID"]} for r in listed
        ]
    err = error(ro, "crm.status.entity.items", {"entityId": "NO_SUCH"})
    assert (err.code, err.status) == ("", 400)
    assert "entityId" in err.description
    with pytest.raises(ApiError):
        call(ro, "crm.status.entity.items", {})


def test_dealcategory_stage_list_default_known_and_unknown(ro: PortalState) -> None:
    default = call(ro, "crm.dealcategory.stage.list", {}).result
    assert default == call(ro, "crm.dealcategory.stage.list", {"ID": "0"}).result
    assert default == call(ro, "crm.status.entity.items", {"entityId": "DEAL_STAGE"}).result
    second = call(ro, "crm.dealcategory.stage.list", {"id": 1}).result
    assert second and all(r["STATUS_ID"].startswith("C1:") for r in second)
    assert call(ro, "crm.dealcategory.stage.list", {"id": 999}).result == []


def test_category_list(ro: PortalState) -> None:
    page = call(ro, "crm.category.list", {"entityTypeId": 2})
    categories = page.result["categories"]
    assert page.total == len(categories) and [c["isDefault"] for c in categories].count("Y") == 1
    assert [c["sort"] for c in categories] == sorted(c["sort"] for c in categories)
    assert all(c["entityTypeId"] == 2 and isinstance(c["id"], int) for c in categories)
    missing = error(ro, "crm.category.list", {})
    assert (missing.code, missing.status) == ("NOT_FOUND", 400)
    lead = error(ro, "crm.category.list", {"entityTypeId": 1})
    assert lead.code == "ENTITY_TYPE_NOT_SUPPORTED"


def test_status_fields_and_entity_types(ro: PortalState) -> None:
    fields = call(ro, "crm.status.fields", {}).result
    row_keys = set(statuses(ro, "DEAL_STAGE")[0])
    assert row_keys == set(fields)
    assert fields["ENTITY_ID"]["isRequired"] and fields["ID"]["isReadOnly"]
    types = call(ro, "crm.status.entity.types", {}).result
    ids = [t["ID"] for t in types]
    assert set(ids) == {r["ENTITY_ID"] for r in call(ro, "crm.status.list", {}).result}
    info = next(t for t in types if t["ID"] == "DEAL_STAGE_1")["SEMANTIC_INFO"]
    assert (info["START_FIELD"], info["FINAL_SUCCESS_FIELD"], info["FINAL_UNSUCCESS_FIELD"]) == (
        "C1:NEW",
        "C1:WON",
        "C1:LOSE",
    )


def test_documented_method_names_over_http() -> None:
    # The server lowercases method names (§1.1), so the documented tasks.task.getFields reaches getfields,
    # also inside a batch, next to the reference methods.
    portal = Sandbox(seed=3, leads=2, deals=2, contacts=2, companies=2, users=2, tasks=2)
    with portal, requests.Session() as http:
        direct = http.post(portal.webhook_url + "tasks.task.getFields", json={}).json()
        cmd = {
            "fields": "tasks.task.getFields",
            "rows": "crm.item.productrow.fields",
            "sources": "CRM.STATUS.LIST?filter[ENTITY_ID]=SOURCE",
        }
        batch = http.post(portal.webhook_url + "batch", json={"halt": 0, "cmd": cmd}).json()["result"]
    assert direct["result"]["fields"]["ID"]["primary"] is True
    assert batch["result_error"] == [] and batch["result"]["fields"] == direct["result"]
    assert "productId" in batch["result"]["rows"]["fields"]
    assert batch["result_total"] == {"sources": len(batch["result"]["sources"])}
