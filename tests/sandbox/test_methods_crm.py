"""crm.item.*, classic crm.<entity>.* and crm.item.productrow.list through PortalState.dispatch (no HTTP).

Expected results are computed independently from `state.rows(...)` with plain Python, never hard-coded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bitrix24_source.sandbox.state import PortalState
from bitrix24_source.sandbox.types import ApiError, CallContext, CostModel, MethodResult, SeedCounts

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "real-responses"
COUNTS = SeedCounts(leads=80, deals=130, contacts=40, companies=15, users=6, tasks=10)


def call(state: PortalState, method: str, params: dict[str, Any], start: int | None = None) -> MethodResult:
    ctx = CallContext(version=2, start=start or 0, start_given=start is not None)
    return state.dispatch(2, method, params, ctx)


def error(state: PortalState, method: str, params: dict[str, Any]) -> ApiError:
    with pytest.raises(ApiError) as info:
        call(state, method, params)
    return info.value


@pytest.fixture(scope="module")
def ro() -> PortalState:
    """A portal the tests in this module only read."""
    return PortalState(seed=21, counts=COUNTS, cost_model=CostModel())


@pytest.fixture
def rw() -> PortalState:
    return PortalState(seed=22, counts=COUNTS, cost_model=CostModel())


@pytest.fixture
def legacy() -> PortalState:
    """The older, invented field catalogue (xmlId on every CRM entity): these tests pin its behaviour, which
    `catalogue="legacy"` still serves; tests/conformance checks the documented default."""
    return PortalState(seed=22, counts=COUNTS, cost_model=CostModel(), catalogue="legacy")


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def all_ids(
    state: PortalState, entity_type: int, flt: dict[str, Any], order: dict[str, str] | None = None
) -> list[int]:
    """Every id a filter selects, by walking offset pages with `next`."""
    out: list[int] = []
    start = 0
    while True:
        params = {
            "entityTypeId": entity_type,
            "select": ["id"],
            "filter": flt,
            "order": order or {"id": "ASC"},
        }
        page = call(state, "crm.item.list", params, start=start)
        out += [r["id"] for r in page.result["items"]]
        if page.next is None:
            assert page.total == len(out)
            return out
        assert page.next == start + 50
        start = page.next


# --- crm.item.list: paging ---------------------------------------------------------------------------------


def test_offset_pages_have_total_and_next_until_the_end(ro: PortalState) -> None:
    first = call(ro, "crm.item.list", {"entityTypeId": 2}, start=0)
    assert set(first.result) == {"items"} and len(first.result["items"]) == 50
    assert (first.total, first.next, first.rows) == (130, 50, 50)
    last = call(ro, "crm.item.list", {"entityTypeId": 2}, start=100)
    assert (last.total, last.next, len(last.result["items"])) == (130, None, 30)
    past = call(ro, "crm.item.list", {"entityTypeId": 2}, start=500)
    assert (past.total, past.next, past.result["items"]) == (130, None, [])
    assert all_ids(ro, 2, {}) == [r["id"] for r in ro.rows("deals")]


def test_start_minus_one_is_an_uncounted_keyset_page(ro: PortalState) -> None:
    page = call(
        ro, "crm.item.list", {"entityTypeId": 2, "filter": {">id": 70}, "order": {"id": "ASC"}}, start=-1
    )
    assert (page.total, page.next) == (0, None)
    assert [r["id"] for r in page.result["items"]] == list(range(71, 121))
    tail = call(
        ro, "crm.item.list", {"entityTypeId": 2, "filter": {">id": 120}, "order": {"id": "ASC"}}, start=-1
    )
    assert [r["id"] for r in tail.result["items"]] == list(range(121, 131))


def test_keyset_walk_with_string_params_from_form_encoding(ro: PortalState) -> None:
    seen: list[int] = []
    last = 0
    while True:
        params = {"entityTypeId": "1", "filter": {">id": str(last)}, "order": {"id": "asc"}, "select": ["id"]}
        rows = call(ro, "crm.item.list", params, start=-1).result["items"]
        seen += [r["id"] for r in rows]
        if len(rows) < 50:
            break
        last = rows[-1]["id"]
    assert seen == [r["id"] for r in ro.rows("leads")]


# --- crm.item.list: select -----------------------------------------------------------------------------------


def test_select_variants(ro: PortalState) -> None:
    explicit = call(ro, "crm.item.list", {"entityTypeId": 3, "select": ["name", "lastName"]}).result["items"][
        0
    ]
    assert list(explicit) == ["id", "name", "lastName"]
    default = call(ro, "crm.item.list", {"entityTypeId": 3}).result["items"][0]
    assert "fm" not in default and "ufCrm_1721244707120" in default and "createdTime" in default
    star = call(ro, "crm.item.list", {"entityTypeId": 3, "select": ["*"]}).result["items"][0]
    assert star["fm"] == ro.rows("contacts")[0]["fm"]
    fm_alone = call(ro, "crm.item.list", {"entityTypeId": 3, "select": ["id", "fm"]}).result["items"][0]
    assert list(fm_alone) == ["id"]
    ufs = call(ro, "crm.item.list", {"entityTypeId": 2, "select": ["uf_*"]}).result["items"][0]
    assert sorted(ufs) == sorted(["id", *(f"ufCrm_172124470711{k}" for k in range(6))])
    original = call(
        ro,
        "crm.item.list",
        {"entityTypeId": 2, "select": ["id", "ufCrm_1721244707110"], "useOriginalUfNames": "Y"},
    ).result["items"][0]
    assert list(original) == ["id", "UF_CRM_1721244707110"]


# --- crm.item.list: filter dialect (§7.2) -------------------------------------------------------------------

DEALS = 2


def _expect(state: PortalState, test: Any) -> list[int]:
    return [r["id"] for r in state.rows("deals") if test(r)]


@pytest.mark.parametrize(
    ("flt", "test"),
    [
        ({">=opportunity": 50000}, lambda r: r["opportunity"] >= 50000),
        ({">opportunity": "50000"}, lambda r: r["opportunity"] > 50000),
        ({"<=opportunity": 30000.5}, lambda r: r["opportunity"] <= 30000.5),
        ({"<opportunity": 30000}, lambda r: r["opportunity"] < 30000),
        ({"@stageId": ["WON", "LOSE"]}, lambda r: r["stageId"] in ("WON", "LOSE")),
        ({"!@stageId": ["WON", "LOSE"]}, lambda r: r["stageId"] not in ("WON", "LOSE")),
        ({"stageId": "WON"}, lambda r: r["stageId"] == "WON"),
        ({"=stageId": "NEW"}, lambda r: r["stageId"] == "NEW"),
        ({"!=stageId": "NEW"}, lambda r: r["stageId"] != "NEW"),
        ({"!stageId": "NEW"}, lambda r: r["stageId"] != "NEW"),
        ({"%title": "pro"}, lambda r: "pro" in r["title"].lower()),
        ({"!%title": "pro"}, lambda r: "pro" not in r["title"].lower()),
        ({"=%title": "Laptop%"}, lambda r: r["title"].lower().startswith("laptop")),
        ({"%=title": "%Ltd"}, lambda r: r["title"].lower().endswith("ltd")),
        ({"!=%title": "Laptop%"}, lambda r: not r["title"].lower().startswith("laptop")),
        ({"!%=title": "%Ltd"}, lambda r: not r["title"].lower().endswith("ltd")),
        ({"companyId": ""}, lambda r: r["companyId"] is None),
        ({"!=companyId": ""}, lambda r: r["companyId"] is not None),
        ({"contactIds": 3}, lambda r: 3 in r["contactIds"]),
        ({"@id": [5, 7, 1000]}, lambda r: r["id"] in (5, 7)),
        ({"=id": [9, 10]}, lambda r: r["id"] in (9, 10)),
        ({">id": 20, "<=id": 40, "!=stageId": "WON"}, lambda r: 20 < r["id"] <= 40 and r["stageId"] != "WON"),
        ({"ufCrm_1721244707112": 1}, lambda r: r["ufCrm_1721244707112"] == "Y"),
        ({"ufCrm_1721244707112": "0"}, lambda r: r["ufCrm_1721244707112"] == "N"),
        ({"ufCrm_1721244707110": 51}, lambda r: r["ufCrm_1721244707110"] == 51),
        ({"ufCrm_1721244707115": "vip"}, lambda r: "vip" in r["ufCrm_1721244707115"]),
        ({"UF_CRM_1721244707111": ""}, lambda r: r["ufCrm_1721244707111"] is None),
        (
            {">=updatedTime": "2024-06-01T00:00:00+03:00"},
            lambda r: r["updatedTime"] >= "2024-06-01T00:00:00+03:00",
        ),
        # Same instant in another offset and the classic "DD.MM.YYYY HH:MM:SS" spelling.
        (
            {">=updatedTime": "2024-05-31T21:00:00+00:00"},
            lambda r: r["updatedTime"] >= "2024-06-01T00:00:00+03:00",
        ),
        ({"<updatedTime": "01.06.2024 00:00:00"}, lambda r: r["updatedTime"] < "2024-06-01T00:00:00+03:00"),
        (
            {"0": {"logic": "OR", "0": {"stageId": "WON"}, "1": {">opportunity": 200000}}, "categoryId": 0},
            lambda r: r["categoryId"] == 0 and (r["stageId"] == "WON" or r["opportunity"] > 200000),
        ),
        (
            # The group logic key may come last, and nested groups nest.
            {
                "0": {
                    "0": {"@stageId": ["NEW"]},
                    "1": {"0": {"<id": 10}, "1": {">id": 120}, "logic": "OR"},
                    "logic": "OR",
                }
            },
            lambda r: r["stageId"] == "NEW" or r["id"] < 10 or r["id"] > 120,
        ),
        ({"@id": []}, lambda r: False),
        ({"logic": "OR", "@id": [], "stageId": "WON"}, lambda r: r["stageId"] == "WON"),
    ],
)
def test_filter_prefixes(ro: PortalState, flt: dict[str, Any], test: Any) -> None:
    expected = _expect(ro, test)
    assert all_ids(ro, DEALS, flt) == expected


def test_filter_selects_something_for_the_interesting_cases(ro: PortalState) -> None:
    """Guard against a seed that makes the parametrized cases vacuous."""
    rows = ro.rows("deals")
    assert any(r["stageId"] == "WON" for r in rows) and any(r["companyId"] is None for r in rows)
    assert any(r["ufCrm_1721244707112"] == "Y" for r in rows) and any(3 in r["contactIds"] for r in rows)
    assert any("vip" in r["ufCrm_1721244707115"] for r in rows)
    amounts = [r["opportunity"] for r in rows]
    assert min(amounts) > 0 and min(amounts) < 30000 < 50000 < max(amounts)
    assert any("pro" in r["title"].lower() for r in rows) and any(r["title"].endswith("Ltd") for r in rows)


def test_upper_case_keys_work_like_camel_case(ro: PortalState) -> None:
    """fast_bitrix24 sends `order: {"ID": "ASC"}` to every list method (§3.4)."""
    upper = call(
        ro,
        "crm.item.list",
        {"entityTypeId": 2, "order": {"ID": "DESC"}, "filter": {">ID": 100, "STAGE_ID": "WON"}},
    )
    camel = call(
        ro,
        "crm.item.list",
        {"entityTypeId": 2, "order": {"id": "DESC"}, "filter": {">id": 100, "stageId": "WON"}},
    )
    assert upper.result == camel.result and upper.total == camel.total
    # A name that is neither a field nor a field's UPPER_CASE form fails as on the portal (the `I_D` of
    # fast_bitrix24 #196).
    bad = error(ro, "crm.item.list", {"entityTypeId": 2, "order": {"I_D": "ASC"}})
    assert (bad.code, bad.description) == (
        "INVALID_ARG_VALUE",
        "Invalid order: field 'I_D' is not allowed in order",
    )


def test_order_by_other_fields(ro: PortalState) -> None:
    rows = ro.rows("deals")
    expected = [r["id"] for r in sorted(sorted(rows, key=lambda r: r["id"]), key=lambda r: -r["opportunity"])]
    assert all_ids(ro, DEALS, {}, {"opportunity": "DESC"}) == expected
    by_stage = all_ids(ro, DEALS, {}, {"stageId": "asc", "id": "desc"})
    assert by_stage == [r["id"] for r in sorted(rows, key=lambda r: (r["stageId"], -r["id"]))]
    assert all_ids(ro, DEALS, {}, {"id": "DESC"}) == [r["id"] for r in reversed(rows)]


@pytest.mark.parametrize(
    ("params", "code", "text"),
    [
        (
            {"filter": {">ddId": 1}},
            "INVALID_ARG_VALUE",
            "Invalid filter: field 'ddId' is not allowed in filter",
        ),
        (
            {"filter": {">opportunity": "abc"}},
            "INVALID_ARG_VALUE",
            "Invalid filter: field 'opportunity' has invalid value",
        ),
        (
            {"filter": {">updatedTime": "yesterday"}},
            "INVALID_ARG_VALUE",
            "Invalid filter: field 'updatedTime' has invalid value",
        ),
        (
            {"order": {"nope": "ASC"}},
            "INVALID_ARG_VALUE",
            "Invalid order: field 'nope' is not allowed in order",
        ),
        (
            {"order": {"id": "UP"}},
            "INVALID_ARG_VALUE",
            "Invalid order: allowed sort directions are `ASC, DESC`. But got 'UP' for field 'id'",
        ),
    ],
)
def test_list_errors(ro: PortalState, params: dict[str, Any], code: str, text: str) -> None:
    err = error(ro, "crm.item.list", {"entityTypeId": 2, **params})
    assert (err.code, err.description, err.status) == (code, text, 400)


@pytest.mark.parametrize("method", ["crm.item.list", "crm.item.get", "crm.item.add", "crm.item.fields"])
@pytest.mark.parametrize("type_id", [None, 999, "x"])
def test_unknown_entity_type(ro: PortalState, method: str, type_id: Any) -> None:
    params = {"id": 1, "fields": {"title": "x"}} | ({} if type_id is None else {"entityTypeId": type_id})
    err = error(ro, method, params)
    assert (err.code, err.description) == ("NOT_FOUND", "Smart process not found")


# --- crm.item.get / add / update / delete ---------------------------------------------------------------------


def test_get_returns_every_field_with_fm_and_entity_type(ro: PortalState) -> None:
    item = call(ro, "crm.item.get", {"entityTypeId": "3", "id": "4"}).result["item"]
    row = ro.rows("contacts")[3]
    assert item == {**row, "entityTypeId": 3}
    assert error(ro, "crm.item.get", {"entityTypeId": 3, "id": 999}).description == "Element not found"
    assert error(ro, "crm.item.get", {"entityTypeId": 3}).code == "NOT_FOUND"


def test_add_fills_defaults_and_is_findable_by_origin_id(legacy: PortalState) -> None:
    fields = {
        "title": "Imported",
        "opportunity": "1500.5",
        "contactIds": ["2", 3],
        "ufCrm_1721244707110": "52",
        "ufCrm_1721244707112": True,
        "ufCrm_1721244707113": "2025-02-03",
        "ufCrm_1721244707115": ["a", "b"],
        "originId": "row-17",
        "xmlId": "batch-1",
        "id": 5,  # read-only: ignored
        "createdTime": "2001-01-01T00:00:00+03:00",  # read-only: ignored
        "noSuchField": 1,  # unknown: ignored
    }
    item = call(legacy, "crm.item.add", {"entityTypeId": 2, "fields": fields}).result["item"]
    assert item["id"] == 131 and item["entityTypeId"] == 2
    assert item["opportunity"] == 1500.5 and item["contactIds"] == [2, 3] and item["contactId"] == 2
    assert item["ufCrm_1721244707110"] == 52 and item["ufCrm_1721244707112"] == "Y"
    assert item["ufCrm_1721244707113"] == "2025-02-03T00:00:00+03:00" and item["ufCrm_1721244707115"] == [
        "a",
        "b",
    ]
    assert (item["stageId"], item["categoryId"], item["stageSemanticId"], item["closed"]) == (
        "NEW",
        0,
        "P",
        "N",
    )
    assert item["createdTime"] == item["updatedTime"] and item["createdTime"] > "2025"
    assert item["createdBy"] == item["assignedById"] == 1
    assert "noSuchField" not in item
    for flt in ({"=originId": "row-17"}, {"@originId": ["row-0", "row-17"]}, {"xmlId": "batch-1"}):
        page = call(legacy, "crm.item.list", {"entityTypeId": 2, "filter": flt, "select": ["id", "originId"]})
        assert page.result["items"] == [{"id": 131, "originId": "row-17"}]
    untitled = call(legacy, "crm.item.add", {"entityTypeId": 2, "fields": {"stageId": "C1:WON"}}).result[
        "item"
    ]
    assert untitled["title"] == "Deal #132"
    assert (untitled["categoryId"], untitled["stageSemanticId"], untitled["closed"]) == (1, "S", "Y")


@pytest.mark.parametrize(
    ("type_id", "fields", "code"),
    [
        (2, {"stageId": "BOGUS"}, "CRM_FIELD_ERROR_VALUE_NOT_VALID"),
        (2, {"categoryId": 1, "stageId": "WON"}, "CRM_FIELD_ERROR_VALUE_NOT_VALID"),
        (2, {"categoryId": 7}, "CRM_FIELD_ERROR_VALUE_NOT_VALID"),
        (2, {"ufCrm_1721244707110": 41}, "CRM_FIELD_ERROR_VALUE_NOT_VALID"),
        (2, {"opportunity": "lots"}, "CRM_FIELD_ERROR_VALUE_NOT_VALID"),
        (2, {"assignedById": "someone"}, "CRM_FIELD_ERROR_VALUE_NOT_VALID"),
        (2, {"begindate": "not a date"}, "CRM_FIELD_ERROR_VALUE_NOT_VALID"),
        (2, {"currencyId": "XYZ"}, "CRM_FIELD_ERROR_VALUE_NOT_VALID"),
        (2, {"contactIds": "5"}, "100"),
        (1, {"name": "no title"}, "CRM_FIELD_ERROR_REQUIRED"),
        (1, {"title": "x", "stageId": "WON"}, "CRM_FIELD_ERROR_VALUE_NOT_VALID"),
        (4, {"title": ""}, "CRM_FIELD_ERROR_REQUIRED"),
    ],
)
def test_add_validation(rw: PortalState, type_id: int, fields: dict[str, Any], code: str) -> None:
    before = len(rw.rows({1: "leads", 2: "deals", 4: "companies"}[type_id]))
    err = error(rw, "crm.item.add", {"entityTypeId": type_id, "fields": fields})
    assert err.code == code and err.status == 400
    assert len(rw.rows({1: "leads", 2: "deals", 4: "companies"}[type_id])) == before


def test_update_bumps_updated_time_and_moves_stage(rw: PortalState) -> None:
    old = next(r for r in rw.rows("deals") if r["categoryId"] == 0 and r["stageId"] != "WON")
    rw.advance_clock(60)
    params = {
        "entityTypeId": 2,
        "id": old["id"],
        "fields": {"stageId": "WON", "title": "Won it", "createdBy": 5},
    }
    item = call(rw, "crm.item.update", params, None).result["item"]
    assert item["title"] == "Won it" and item["stageId"] == "WON" and item["stageSemanticId"] == "S"
    assert item["updatedTime"] > old["updatedTime"] and item["movedTime"] == item["updatedTime"]
    assert item["createdBy"] == old["createdBy"] and item["createdTime"] == old["createdTime"]
    assert item["opportunity"] == old["opportunity"]
    rw.advance_clock(60)
    again = call(
        rw, "crm.item.update", {"entityTypeId": 2, "id": old["id"], "fields": {"comments": "x"}}
    ).result["item"]
    assert again["updatedTime"] > item["updatedTime"] and again["movedTime"] == item["movedTime"]
    found = call(
        rw,
        "crm.item.list",
        {"entityTypeId": 2, "filter": {">updatedTime": old["updatedTime"], "=id": old["id"]}},
    )
    assert [r["id"] for r in found.result["items"]] == [old["id"]]
    assert (
        error(rw, "crm.item.update", {"entityTypeId": 2, "id": 9999, "fields": {"title": "x"}}).code
        == "NOT_FOUND"
    )
    err = error(rw, "crm.item.update", {"entityTypeId": 2, "id": old["id"], "fields": {"stageId": "C1:NOPE"}})
    assert err.code == "CRM_FIELD_ERROR_VALUE_NOT_VALID"


def test_delete_returns_an_empty_array(rw: PortalState) -> None:
    result = call(rw, "crm.item.delete", {"entityTypeId": 2, "id": 3})
    assert result.result == []
    assert error(rw, "crm.item.get", {"entityTypeId": 2, "id": 3}).code == "NOT_FOUND"
    assert error(rw, "crm.item.delete", {"entityTypeId": 2, "id": 3}).description == "Item not found"


def test_item_fields_shape(legacy: PortalState) -> None:
    fields = call(legacy, "crm.item.fields", {"entityTypeId": 2}).result["fields"]
    assert fields["id"]["isReadOnly"] is True and fields["id"]["upperName"] == "ID"
    assert fields["updatedTime"]["upperName"] == "DATE_MODIFY" and fields["updatedTime"]["type"] == "datetime"
    assert fields["originId"]["isReadOnly"] is False and fields["xmlId"]["type"] == "string"
    ufs = {k: v for k, v in fields.items() if v["isDynamic"]}
    assert {v["type"] for v in ufs.values()} == {
        "enumeration",
        "double",
        "boolean",
        "date",
        "datetime",
        "string",
    }
    enum = next(v for v in ufs.values() if v["type"] == "enumeration")
    assert enum["items"] == [
        {"ID": "51", "VALUE": "Gold"},
        {"ID": "52", "VALUE": "Silver"},
        {"ID": "53", "VALUE": "Bronze"},
    ]
    assert next(v for v in ufs.values() if v["type"] == "string")["isMultiple"] is True
    for key, value in ufs.items():
        assert key.startswith("ufCrm_") and value["upperName"] == "UF_CRM_" + key[len("ufCrm_") :]
    original = call(legacy, "crm.item.fields", {"entityTypeId": 2, "useOriginalUfNames": "Y"}).result[
        "fields"
    ]
    assert {k for k in original if k.startswith("UF_CRM_")} == {v["upperName"] for v in ufs.values()}


# --- classic crm.<entity>.* (§7.3) ------------------------------------------------------------------------------


def test_classic_fields_match_the_recorded_shape(ro: PortalState) -> None:
    recorded = fixture("crm_lead_fields_success")["response"]["result"]
    ours = call(ro, "crm.lead.fields", {}).result
    for name in ("ID", "TITLE", "NAME", "STATUS_ID", "OPPORTUNITY", "DATE_CREATE", "DATE_MODIFY", "ASSIGNED_BY_ID",
                 "CONTACT_IDS", "COMPANY_ID", "PHONE", "EMAIL", "ORIGIN_ID", "OPENED"):  # fmt: skip
        assert name in ours, name
        assert set(ours[name]) - {"statusType", "settings", "isDeprecated"} == set(recorded[name]) - {
            "statusType",
            "settings",
            "isDeprecated",
        }, name
        assert (ours[name]["type"], ours[name]["isMultiple"]) == (
            recorded[name]["type"],
            recorded[name]["isMultiple"],
        )
    recorded_uf = next(v for k, v in recorded.items() if k.startswith("UF_CRM_"))
    our_ufs = {k: v for k, v in ours.items() if k.startswith("UF_CRM_")}
    assert len(our_ufs) == 6
    for value in our_ufs.values():
        assert set(recorded_uf) <= set(value) and "upperName" not in value


def test_classic_list_strings_and_paging(ro: PortalState) -> None:
    page = call(
        ro, "crm.deal.list", {"select": ["ID", "TITLE", "OPPORTUNITY", "UF_*"], "order": {"ID": "ASC"}}, 0
    )
    assert isinstance(page.result, list) and (page.total, page.next) == (130, 50)
    row, canonical = page.result[0], ro.rows("deals")[0]
    assert row["ID"] == "1" and row["TITLE"] == canonical["title"]
    assert row["OPPORTUNITY"] == f"{canonical['opportunity']:.2f}"
    enum_value = canonical["ufCrm_1721244707110"]
    assert row["UF_CRM_1721244707110"] == (None if enum_value is None else str(enum_value))
    assert row["UF_CRM_1721244707112"] in ("1", "0") and isinstance(row["UF_CRM_1721244707115"], list)
    keyset = call(ro, "crm.deal.list", {"filter": {">ID": 100}, "order": {"ID": "ASC"}, "select": ["ID"]}, -1)
    assert (keyset.total, keyset.next) == (0, None)
    assert [r["ID"] for r in keyset.result] == [str(i) for i in range(101, 131)]
    desc = call(
        ro, "crm.deal.list", {"order": {"ID": "DESC"}, "select": ["ID"], "filter": {"STAGE_ID": "WON"}}
    )
    assert [int(r["ID"]) for r in desc.result] == sorted(
        (r["id"] for r in ro.rows("deals") if r["stageId"] == "WON"), reverse=True
    )[:50]
    leads = call(
        ro, "crm.lead.list", {"filter": {"STATUS_ID": "JUNK"}, "select": ["ID", "STATUS_ID", "PHONE"]}
    )
    assert leads.result and all(
        r["STATUS_ID"] == "JUNK" and isinstance(r["PHONE"], list) for r in leads.result
    )
    assert leads.total == sum(1 for r in ro.rows("leads") if r["stageId"] == "JUNK")


def test_classic_get_matches_the_recorded_row_shape(ro: PortalState) -> None:
    recorded = fixture("call_single_success")["response"]["result"]["result"]["order0"]
    row = call(ro, "crm.lead.get", {"ID": "2"}).result
    for key in ("ID", "TITLE", "STATUS_ID", "OPPORTUNITY", "CURRENCY_ID", "DATE_CREATE", "DATE_MODIFY",
                "ASSIGNED_BY_ID", "CREATED_BY_ID", "MODIFY_BY_ID", "STATUS_SEMANTIC_ID", "OPENED", "ORIGIN_ID"):  # fmt: skip
        assert key in row and key in recorded
        assert type(row[key]) is type(recorded[key]) or row[key] is None or recorded[key] is None, key
    assert row["BIRTHDATE"] == "" and "PHONE" in row
    assert row["PHONE"][0] == {"ID": str(ro.rows("leads")[1]["fm"][0]["id"]), "VALUE_TYPE": "WORK",
                               "VALUE": ro.rows("leads")[1]["fm"][0]["value"], "TYPE_ID": "PHONE"}  # fmt: skip


@pytest.mark.parametrize(
    ("method", "params", "text"),
    [
        ("crm.lead.get", {}, "ID is not defined or invalid."),
        ("crm.lead.get", {"id": "abc"}, "ID is not defined or invalid."),
        ("crm.deal.get", {"id": 9999}, "Not found"),
        ("crm.contact.update", {"id": 9999, "fields": {"NAME": "x"}}, "Contact is not found"),
        ("crm.company.delete", {"id": 0}, "ID is not defined or invalid."),
        ("crm.deal.add", {"fields": "nope"}, "Parameter 'fields' must be array."),
        ("crm.deal.add", {}, "Parameter 'fields' must be array."),
        ("crm.deal.add", {"fields": {"STAGE_ID": "NOPE"}}, 'Invalid value for field "stageId"'),
        ("crm.lead.add", {"fields": {"NAME": "x"}}, 'Field "Lead name" is required'),
    ],
)
def test_classic_errors_have_an_empty_code(
    rw: PortalState, method: str, params: dict[str, Any], text: str
) -> None:
    err = error(rw, method, params)
    assert (err.code, err.description, err.status) == ("", text, 400)


def test_classic_writes_and_both_apis_see_one_portal(legacy: PortalState) -> None:
    new_id = call(legacy, "crm.contact.add", {"fields": {"NAME": "Ann", "LAST_NAME": "Lee", "ORIGIN_ID": "ext-9",
                                                      "PHONE": [{"VALUE": "+100", "VALUE_TYPE": "MOBILE"}],
                                                      "UF_CRM_1721244707122": "Y"}}).result  # fmt: skip
    assert isinstance(new_id, int) and new_id == 41
    item = call(legacy, "crm.item.get", {"entityTypeId": 3, "id": new_id}).result["item"]
    assert (item["name"], item["lastName"], item["originId"], item["ufCrm_1721244707122"]) == (
        "Ann",
        "Lee",
        "ext-9",
        "Y",
    )
    assert [(f["typeId"], f["valueType"], f["value"]) for f in item["fm"]] == [("PHONE", "MOBILE", "+100")]
    assert isinstance(item["fm"][0]["id"], int)
    legacy.advance_clock(5)
    assert call(legacy, "crm.contact.update", {"ID": str(new_id), "fields": {"POST": "CEO"}}).result is True
    classic = call(legacy, "crm.contact.get", {"id": new_id}).result
    assert (
        classic["POST"] == "CEO" and classic["ID"] == str(new_id) and classic["UF_CRM_1721244707122"] == "1"
    )
    assert classic["DATE_MODIFY"] > classic["DATE_CREATE"]
    phone_id = item["fm"][0]["id"]
    edits = [
        {"VALUE": "a@example.com", "VALUE_TYPE": "WORK"},
        {"ID": str(phone_id), "VALUE": "+200", "VALUE_TYPE": "WORK"},
    ]
    assert call(
        legacy, "crm.contact.update", {"id": new_id, "fields": {"EMAIL": edits[:1], "PHONE": edits[1:]}}
    ).result
    fm = call(legacy, "crm.item.get", {"entityTypeId": 3, "id": new_id}).result["item"]["fm"]
    assert [(f["id"] == phone_id, f["typeId"], f["value"]) for f in fm] == [
        (True, "PHONE", "+200"),
        (False, "EMAIL", "a@example.com"),
    ]
    call(legacy, "crm.contact.update", {"id": new_id, "fields": {"PHONE": [{"ID": phone_id, "VALUE": ""}]}})
    assert [f["TYPE_ID"] for f in call(legacy, "crm.contact.get", {"id": new_id}).result["EMAIL"]] == [
        "EMAIL"
    ]
    assert "PHONE" not in call(legacy, "crm.contact.get", {"id": new_id}).result
    replaced = call(
        legacy,
        "crm.item.update",
        {"entityTypeId": 3, "id": new_id, "fields": {"fm": [{"typeId": "WEB", "value": "x.org"}]}},
    )
    assert [(f["typeId"], f["valueType"], f["value"]) for f in replaced.result["item"]["fm"]] == [
        ("WEB", "WORK", "x.org")
    ]
    found = call(legacy, "crm.contact.list", {"filter": {"=ORIGIN_ID": "ext-9"}, "select": ["ID"]})
    assert found.result == [{"ID": str(new_id)}]
    assert call(legacy, "crm.contact.delete", {"id": new_id}).result is True
    assert error(legacy, "crm.contact.get", {"id": new_id}).description == "Not found"


# --- crm.item.productrow.list ----------------------------------------------------------------------------------


def test_productrows_match_the_recorded_row_keys(ro: PortalState) -> None:
    recorded = fixture("crm_item_productrow_list")["response"]["result"]["result"]["cmd0000000000"][
        "productRows"
    ][0]
    owner = ro.rows("deal_products")[0]["ownerId"]
    page = call(ro, "crm.item.productrow.list", {"filter": {"=ownerType": "D", "=ownerId": owner}})
    assert set(page.result) == {"productRows"}
    rows = page.result["productRows"]
    assert rows and list(rows[0]) == list(recorded)
    assert [r["id"] for r in rows] == [p["id"] for p in ro.rows("deal_products") if p["ownerId"] == owner]
    assert page.total == len(rows)


def test_productrows_for_many_owners_with_keyset(ro: PortalState) -> None:
    owners = [d["id"] for d in ro.rows("deals")][:60]
    expected = [p["id"] for p in ro.rows("deal_products") if p["ownerId"] in owners]
    assert len(expected) > 50
    seen: list[int] = []
    last = 0
    while True:
        flt = {"=ownerType": "D", "@ownerId": [str(o) for o in owners], ">id": last}
        rows = call(ro, "crm.item.productrow.list", {"filter": flt, "order": {"id": "ASC"}}, -1).result[
            "productRows"
        ]
        seen += [r["id"] for r in rows]
        if len(rows) < 50:
            break
        last = rows[-1]["id"]
    assert seen == expected
    # Unsupported conditions are ignored, as the docs say.
    ignored = call(
        ro,
        "crm.item.productrow.list",
        {"filter": {"=ownerType": "D", "=ownerId": owners[0], ">price": 10**9}},
    )
    assert ignored.total == sum(1 for p in ro.rows("deal_products") if p["ownerId"] == owners[0])


@pytest.mark.parametrize("flt", [{}, {"=ownerType": "D"}, {"=ownerId": 1}, {"ownerType": "D", "ownerId": 1}])
def test_productrows_require_owner_filter(ro: PortalState, flt: dict[str, Any]) -> None:
    assert error(ro, "crm.item.productrow.list", {"filter": flt}).code == "REQUIRED_ARG_MISSING"


def test_productrow_fields_describe_the_list_rows(ro: PortalState) -> None:
    fields = call(ro, "crm.item.productrow.fields", {}).result["fields"]
    owner = ro.rows("deal_products")[0]["ownerId"]
    row = call(ro, "crm.item.productrow.list", {"filter": {"=ownerType": "D", "=ownerId": owner}}).result[
        "productRows"
    ][0]
    recorded = fixture("crm_item_productrow_list")["response"]["result"]["result"]["cmd0000000000"][
        "productRows"
    ][0]
    # DOCS crm-item-productrow-fields.md lists storeId, which list rows never carry, and leaves out priceAccount
    # and xmlId, which they always do (fixture crm_item_productrow_list.json): the sandbox keeps both quirks.
    assert set(fields) - set(row) == {"storeId"} and set(row) - set(fields) == {"priceAccount", "xmlId"}
    assert set(row) == set(recorded)
    core = {"type", "isRequired", "isReadOnly", "isImmutable", "isMultiple", "isDynamic", "title"}
    assert all(set(spec) == core for spec in fields.values())
    assert {k for k, v in fields.items() if v["isRequired"]} == {"ownerId", "ownerType", "productId"}
    int_like = {k for k, v in fields.items() if v["type"] == "integer" and k in row}
    assert all(isinstance(row[k], int) for k in int_like)
