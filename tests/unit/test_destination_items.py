"""Planning for smart processes, invoices, quotes and deal product rows, without HTTP."""

from __future__ import annotations

from typing import Any

from bitrix24_source.destination.coerce import INVALID_ENUM_VALUE
from bitrix24_source.destination.directories import check_directories, needed_directories
from bitrix24_source.destination.plan import (
    IMMUTABLE_FIELD,
    INVALID_VALUE,
    MARKER_FIELD_MISSING,
    REQUIRED_FIELD_MISSING,
    PlannedRow,
    PlanOptions,
    plan_row,
    plan_rows,
)
from bitrix24_source.destination.productrows import match_added
from bitrix24_source.destination.targets import added_id, write_target
from bitrix24_source.fields import parse_crm_item_fields


def _field(type_: str, **flags: Any) -> dict[str, Any]:
    return {
        "type": type_,
        "isRequired": flags.get("required", False),
        "isReadOnly": flags.get("read_only", False),
        "isImmutable": flags.get("immutable", False),
        "isMultiple": False,
        "title": type_,
        **({"statusType": flags["status"]} if "status" in flags else {}),
    }


# crm.item.fields of a smart process names the default pipeline's directory (crm-item-fields.md).
SPA = parse_crm_item_fields(
    {
        "fields": {
            "id": _field("integer", read_only=True),
            "title": _field("string"),
            "xmlId": _field("string"),
            "categoryId": _field("crm_category"),
            "stageId": _field("crm_status", status="DYNAMIC_128_STAGE_3"),
        }
    }
)
STAGES = {
    f"DYNAMIC_128_STAGE_{c}": {
        f"DT128_{c}:{code}": name for code, name in (("NEW", "Start"), ("WON", "Done"))
    }
    for c in (3, 4)
}
# crm-item-productrow-fields.md
PRODUCT_ROWS = parse_crm_item_fields(
    {
        "fields": {
            "id": _field("integer", read_only=True),
            "ownerId": _field("integer", required=True, immutable=True),
            "ownerType": _field("string", required=True, immutable=True),
            "productId": _field("integer", required=True),
            "price": _field("double"),
            "quantity": _field("double"),
            "priceNetto": _field("double", read_only=True),
        }
    }
)
ROWS = write_target("deal_products")


def test_smart_process_stages_come_from_the_pipeline_the_row_or_the_item_is_in() -> None:
    def check(values: dict[str, Any], current: int | None = None) -> tuple[dict[str, Any], list[Any]]:
        out = dict(values)
        return out, check_directories(SPA, out, STAGES, current)

    assert check({"stageId": "DT128_4:NEW"}) == (
        {"stageId": "DT128_4:NEW"},
        [],
    )  # the prefix names pipeline 4
    _, problems = check({"stageId": "DT128_4:NEW", "categoryId": 3})
    assert (
        problems[0][0] == INVALID_ENUM_VALUE
        and "in pipeline 3 (allowed: DT128_3:NEW (Start)" in problems[0][1]
    )
    assert check({"stageId": "Done"}, current=4)[0] == {
        "stageId": "DT128_4:WON"
    }  # a name, the item's pipeline
    assert "needs the row's categoryId" in check({"stageId": "Done"})[1][0][1]
    assert check({"stageId": "DT128_3:NEW"}, current=4)[1][0][2] == "stageId"
    rows = [{"stageId": "Start", "categoryId": 4}, {"STAGE_ID": "DT128_3:WON"}, {"stageId": "Done"}]
    assert needed_directories(SPA, rows, {2: 4}) == {"DYNAMIC_128_STAGE_3", "DYNAMIC_128_STAGE_4"}


def test_targets_of_the_item_types() -> None:
    spa = write_target("spa_128")
    assert spa.command("update", 5, {"title": "x"}) == (
        "crm.item.update",
        {"entityTypeId": 128, "id": 5, "fields": {"title": "x"}},
    )
    assert write_target("invoices").marker_field == "xmlId" and write_target("quotes").marker_field is None
    assert ROWS.command("add", None, {"ownerId": 1}) == (
        "crm.item.productrow.add",
        {"fields": {"ownerId": 1}},
    )
    assert ROWS.command("delete", 9, {}) == ("crm.item.productrow.delete", {"id": 9})
    assert added_id("crm.item.productrow.add", {"productRow": {"id": 17647}}) == 17647


def test_quote_adds_need_a_key_or_a_marker_field() -> None:
    quotes = write_target("quotes")
    fields = parse_crm_item_fields(
        {"fields": {"id": _field("integer", read_only=True), "title": _field("string")}}
    )
    unkeyed = plan_row({"title": "Q"}, 0, quotes, fields, PlanOptions())
    assert unkeyed.error_code == MARKER_FIELD_MISSING and "key=" in (unkeyed.error_description or "")
    keyed = plan_row({"title": "Q"}, 0, quotes, fields, PlanOptions(key="title"))
    assert keyed.is_valid and keyed.marker == "Q" and keyed.keyed
    assert plan_row({"id": 3, "title": "R"}, 0, quotes, fields, PlanOptions()).is_valid


def test_product_row_adds_get_the_deal_owner_type_and_updates_keep_their_owner() -> None:
    add = plan_row({"ownerId": 7, "productId": 101, "price": 5}, 0, ROWS, PRODUCT_ROWS, PlanOptions())
    assert add.params == {"fields": {"ownerId": 7, "productId": 101, "price": 5.0, "ownerType": "D"}}
    assert add.marker is None and add.content is None
    lead = plan_row({"ownerId": 7, "productId": 1, "ownerType": "L"}, 0, ROWS, PRODUCT_ROWS, PlanOptions())
    assert lead.error_code == INVALID_VALUE and lead.error_field == "ownerType"
    assert plan_row({"ownerId": 7}, 0, ROWS, PRODUCT_ROWS, PlanOptions()).error_code == REQUIRED_FIELD_MISSING

    existing = PlanOptions(existing={4: {"id": 4, "ownerId": 7, "ownerType": "D", "quantity": 1.0}})
    same = plan_row(
        {"id": 4, "ownerId": 7.0, "ownerType": "D", "quantity": 2}, 0, ROWS, PRODUCT_ROWS, existing
    )
    assert same.params == {"id": 4, "fields": {"quantity": 2.0}}
    moved = plan_row({"id": 4, "ownerId": 8, "quantity": 2}, 0, ROWS, PRODUCT_ROWS, existing)
    assert moved.error_code == IMMUTABLE_FIELD and moved.error_field == "ownerId"


def _adds(rows: list[dict[str, Any]]) -> list[PlannedRow]:
    return plan_rows(
        dict(enumerate(rows)), ROWS, PRODUCT_ROWS, PlanOptions(existing={}), lambda _f, _v: {}, None
    )


def test_adds_match_the_deals_rows_one_each() -> None:
    line = {"ownerId": 7, "productId": 101, "price": 5, "quantity": 1}
    planned = _adds([line, line, line, {**line, "ownerId": 8}, {**line, "price": 6}])
    held = {"ownerType": "D", "ownerId": 7, "productId": 101, "price": 5.0, "quantity": 1.0, "sort": 10}
    deal_rows = {7: [{**held, "id": 40}, {**held, "id": 41}], 8: [{**held, "ownerId": 8, "id": 50}]}
    matched = match_added(planned, deal_rows)
    assert [p.existing_id for p in matched] == [40, 41, None, 50, None]

    # A row the same input deletes is not an add's match.
    delete = PlannedRow(9, "delete", "40", 40, "crm.item.productrow.delete", {"id": 40}, None, None, None, {})
    assert [p.existing_id for p in match_added([*planned[:1], delete], deal_rows)][:1] == [41]
