"""Pure tests of bitrix24_source.source.schema: field metadata -> dlt column hints, and the row value mapper."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from bitrix24_source.fields import FieldMeta, parse_field_map
from bitrix24_source.source.schema import (
    RAW_SUFFIX,
    ArrowPages,
    RowMapper,
    column_hints,
    data_type_of,
    field_definition_rows,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "real-responses"

CRM_ITEM_FIELDS: dict[str, Any] = {
    "fields": {
        "id": {
            "type": "integer",
            "isRequired": False,
            "isReadOnly": True,
            "isMultiple": False,
            "title": "ID",
        },
        "title": {
            "type": "string",
            "isRequired": True,
            "isReadOnly": False,
            "isMultiple": False,
            "title": "Name",
        },
        "opportunity": {"type": "double", "isReadOnly": False, "isMultiple": False, "title": "Amount"},
        "closed": {"type": "boolean", "isMultiple": False, "title": "Closed"},
        "begindate": {"type": "date", "isMultiple": False, "title": "Start date"},
        "updatedTime": {"type": "datetime", "isReadOnly": True, "isMultiple": False, "title": "Modified on"},
        "contactIds": {"type": "crm_contact", "isMultiple": True, "title": "Contacts"},
        "stageId": {"type": "crm_status", "isMultiple": False, "title": "Stage", "statusType": "DEAL_STAGE"},
        "assignedById": {"type": "user", "isMultiple": False, "title": "Responsible"},
        "ufCrm_1": {
            "type": "enumeration",
            "isMultiple": False,
            "title": "Segment",
            "items": [{"ID": "41", "VALUE": "Gold"}, {"ID": "42", "VALUE": "Silver"}],
            "upperName": "UF_CRM_1",
        },
        "ufCrm_2": {"type": "money", "isMultiple": False, "title": "Budget"},
        "mystery": {"type": "some_new_type", "isMultiple": False, "title": "?"},
    }
}


def test_parse_crm_item_fields_flags_and_items() -> None:
    fields = parse_field_map(CRM_ITEM_FIELDS)
    assert list(fields)[:3] == ["id", "title", "opportunity"]
    assert fields["title"].required and not fields["title"].read_only
    assert fields["id"].read_only
    assert fields["contactIds"].multiple
    assert fields["ufCrm_1"].items == (("41", "Gold"), ("42", "Silver"))
    assert fields["ufCrm_1"].upper_name == "UF_CRM_1"


def test_parse_recorded_classic_fields_fixture() -> None:
    payload = json.loads((FIXTURES / "crm_lead_fields_success.json").read_text())["response"]["result"]
    fields = parse_field_map(payload)
    assert fields["ID"].type == "integer" and fields["ID"].read_only
    assert fields["TITLE"].required
    assert fields["BIRTHDATE"].type == "date"
    assert data_type_of(fields["BIRTHDATE"]) == "date"


def test_parse_user_fields_labels_only() -> None:
    payload = json.loads((FIXTURES / "user_fields.json").read_text())["response"]["result"]
    fields = parse_field_map(payload)
    assert fields["EMAIL"].title == "E-Mail"
    assert fields["EMAIL"].type == ""
    assert data_type_of(fields["EMAIL"]) is None


def test_parse_v3_field_list() -> None:
    fields = parse_field_map(
        {"items": [{"name": "id", "type": "integer"}, {"name": "changed", "type": "datetime"}]}
    )
    assert [f.type for f in fields.values()] == ["integer", "datetime"]


def test_parse_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="unrecognised"):
        parse_field_map(42)


def test_column_hints_types() -> None:
    hints = column_hints(parse_field_map(CRM_ITEM_FIELDS))
    types = {name: col.get("data_type") for name, col in hints.items()}
    assert types == {
        "id": "bigint",
        "title": "text",
        "opportunity": "decimal",
        "closed": "bool",
        "begindate": "date",
        "updatedTime": "timestamp",
        "contactIds": "json",
        "stageId": "text",
        "assignedById": "bigint",
        "ufCrm_1": "bigint",
        "ufCrm_2": "text",
    }
    assert hints["opportunity"]["precision"] == 18 and hints["opportunity"]["scale"] == 2
    assert hints["updatedTime"]["timezone"] is True
    assert hints["title"]["description"] == "Name"


def test_enumeration_with_text_keys_is_text() -> None:
    meta = FieldMeta(name="status", type="enumeration", items=(("pending", "Pending"),))
    assert data_type_of(meta) == "text"


def test_row_mapper_converts_declared_types() -> None:
    mapper = RowMapper(column_hints(parse_field_map(CRM_ITEM_FIELDS)))
    row = mapper(
        {
            "id": "17",
            "title": 5,
            "opportunity": 1000.5,
            "closed": "Y",
            "begindate": "2024-04-19T03:00:00+03:00",
            "updatedTime": "2024-05-21T15:14:26+03:00",
            "contactIds": [1, 2],
            "assignedById": "",
            "ufCrm_1": "41",
            "extra": "kept",
        }
    )
    assert row["id"] == 17
    assert row["title"] == "5"
    assert row["opportunity"] == Decimal("1000.5")
    assert row["closed"] is True
    assert row["begindate"] == dt.date(2024, 4, 19)
    assert row["updatedTime"] == dt.datetime(
        2024, 5, 21, 15, 14, 26, tzinfo=dt.timezone(dt.timedelta(hours=3))
    )
    assert row["contactIds"] == [1, 2]
    assert row["assignedById"] is None
    assert row["ufCrm_1"] == 41
    assert row["extra"] == "kept"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("N", False),
        ("y", True),
        (0, False),
        (1, True),
        (True, True),
        ("", None),
        (None, None),
        ("maybe", "maybe"),
    ],
)
def test_bool_conversion(value: Any, expected: Any) -> None:
    mapper = RowMapper({"b": {"name": "b", "data_type": "bool"}})
    assert mapper.convert_value("b", value) == expected


def test_unconvertible_values_are_kept() -> None:
    mapper = RowMapper(
        {"n": {"name": "n", "data_type": "bigint"}, "t": {"name": "t", "data_type": "timestamp"}}
    )
    assert mapper({"n": "abc", "t": "not a date"}) == {"n": "abc", "t": "not a date"}


def test_field_definition_rows() -> None:
    rows = field_definition_rows("deals", parse_field_map(CRM_ITEM_FIELDS))
    by_field = {r["field"]: r for r in rows}
    assert by_field["title"]["id"] == "deals.title"
    assert by_field["title"]["is_required"] is True
    assert by_field["ufCrm_1"]["items"] == [{"id": "41", "value": "Gold"}, {"id": "42", "value": "Silver"}]
    assert by_field["contactIds"]["is_multiple"] is True
    assert by_field["id"]["is_read_only"] is True
    assert by_field["opportunity"]["data_type"] == "decimal"
    assert len(rows) == len(CRM_ITEM_FIELDS["fields"])


@pytest.mark.parametrize(
    ("data_type", "value", "expected"),
    [
        ("bigint", " 42 ", 42),
        ("bigint", 7.0, 7),
        ("bigint", "  ", None),
        ("double", "2.5", 2.5),
        ("double", 3, 3.0),
        ("decimal", "24900.00", Decimal("24900.00")),
        ("decimal", 0.1, Decimal("0.1")),
        ("decimal", "12,5", "12,5"),  # not a number: kept for a variant column
        ("text", 5, "5"),
        ("text", Decimal("1.50"), "1.50"),
        ("date", "2024-07-14T00:00:00+00:00", dt.date(2024, 7, 14)),
        ("date", dt.datetime(2024, 7, 14, 9, 30), dt.date(2024, 7, 14)),
        # user.get documents `"TIMESTAMP_X": {}` (DOCS api-reference/user/user-get.md): no value
        ("timestamp", {}, None),
        ("date", {}, None),
        ("timestamp", {"date": "2024-07-14"}, {"date": "2024-07-14"}),
    ],
)
def test_value_conversion(data_type: str, value: Any, expected: Any) -> None:
    mapper = RowMapper({"c": {"name": "c", "data_type": data_type}})
    converted = mapper.convert_value("c", value)
    assert converted == expected and type(converted) is type(expected)


def test_product_row_amounts_are_money() -> None:
    # crm.item.productrow.fields describes every amount as `double` (DOCS crm-item-productrow-fields.md)
    fields = parse_field_map(
        {
            "fields": {
                name: {"type": "double", "isMultiple": False, "title": name}
                for name in (
                    "price",
                    "priceExclusive",
                    "priceNetto",
                    "priceBrutto",
                    "discountSum",
                    "quantity",
                )
            }
        }
    )
    hints = column_hints(fields)
    assert {n for n, c in hints.items() if c["data_type"] == "decimal"} == {
        "price",
        "priceExclusive",
        "priceNetto",
        "priceBrutto",
        "discountSum",
    }
    assert hints["quantity"]["data_type"] == "double"


def test_computed_product_row_amounts_keep_their_decimals() -> None:
    fields = {
        name: FieldMeta(name=name, type="double")
        for name in ("price", "priceNetto", "priceExclusive", "discountSum")
    }
    hints = column_hints(fields)
    assert (hints["price"]["precision"], hints["price"]["scale"]) == (18, 2)
    for name in ("priceNetto", "priceExclusive", "discountSum"):
        assert hints[name]["data_type"] == "decimal"
        assert hints[name]["scale"] == 6, name
    row = RowMapper(hints)({"priceExclusive": 84.745763, "price": 100.0})
    assert row["priceExclusive"] == Decimal("84.745763")


# --- Arrow pages -----------------------------------------------------------------------------------------


def _arrow(columns: dict[str, dict[str, Any]], rows: list[dict[str, Any]]) -> pa.Table:
    hints = {name: {"name": name, **column} for name, column in columns.items()}
    return ArrowPages(hints)(rows)  # type: ignore[arg-type]


def test_arrow_page_types_every_hinted_column() -> None:
    table = _arrow(
        {
            "id": {"data_type": "bigint"},
            "amount": {"data_type": "decimal", "precision": 18, "scale": 2},
            "closed": {"data_type": "bool"},
            "updatedTime": {"data_type": "timestamp", "timezone": True},
            "begindate": {"data_type": "date"},
            "contactIds": {"data_type": "json"},
            "title": {"data_type": "text"},
        },
        [
            {
                "id": "7",
                "amount": "24900.50",
                "closed": "Y",
                "updatedTime": "2024-07-14T12:30:00+03:00",
                "begindate": "2024-07-14T00:00:00+03:00",
                "contactIds": [3, 4],
                "title": 5,
            },
            {"id": 8, "amount": 0.1, "closed": "N", "updatedTime": "", "begindate": None, "contactIds": []},
        ],
    )
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("amount").type == pa.decimal128(18, 2)
    assert table.schema.field("updatedTime").type == pa.timestamp("us", tz="UTC")
    rows = table.to_pylist()
    assert rows[0]["amount"] == Decimal("24900.50") and rows[1]["amount"] == Decimal("0.10")
    assert [r["closed"] for r in rows] == [True, False]
    assert rows[0]["updatedTime"] == dt.datetime(2024, 7, 14, 9, 30, tzinfo=dt.timezone.utc)
    assert rows[1]["updatedTime"] is None
    assert rows[0]["begindate"] == dt.date(2024, 7, 14)
    assert [r["contactIds"] for r in rows] == ["[3,4]", "[]"]
    assert [r["title"] for r in rows] == ["5", None]
    assert "id_raw" not in table.column_names


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ({"data_type": "decimal", "precision": 18, "scale": 2}, "12,5"),
        ({"data_type": "decimal", "precision": 18, "scale": 2}, "10.125"),  # never rounded
        ({"data_type": "bigint"}, "12abc"),
        ({"data_type": "bigint"}, 7.5),
        ({"data_type": "bool"}, "maybe"),
        ({"data_type": "timestamp", "timezone": True}, "yesterday"),
        ({"data_type": "timestamp", "timezone": True}, {"date": "2024-07-14"}),
    ],
)
def test_a_value_that_does_not_fit_goes_to_the_raw_column(column: dict[str, Any], value: Any) -> None:
    build = ArrowPages({"c": {"name": "c", **column}})  # type: ignore[typeddict-item]
    table = build([{"c": value}, {"c": None}])
    assert table.column("c").to_pylist() == [None, None]
    sent = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    assert table.column("c" + RAW_SUFFIX).to_pylist() == [sent, None]
    assert build.found == {"c_raw": {"name": "c_raw", "data_type": "text", "nullable": True}}


def test_unhinted_columns_are_inferred_or_json_text() -> None:
    build = ArrowPages({})
    table = build([{"n": 1, "fm": [{"VALUE": "a@b.c"}], "empty": None}, {"n": 2, "fm": None, "empty": None}])
    assert table.schema.field("n").type == pa.int64()
    assert table.column("fm").to_pylist() == ['[{"VALUE":"a@b.c"}]', None]
    assert "empty" not in table.column_names
    assert build.found == {"fm": {"name": "fm", "data_type": "json", "nullable": True}}


def test_tombstones_are_an_id_and_deleted_table() -> None:
    table = ArrowPages.tombstones([3, 5], "_deleted")
    assert table.to_pylist() == [{"id": 3, "_deleted": True}, {"id": 5, "_deleted": True}]
