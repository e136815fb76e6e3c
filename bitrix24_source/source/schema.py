"""Bitrix24 field metadata -> dlt column hints, and the per-row value mapper that goes with them.

Column types come from the portal's own field descriptions (`crm.item.fields`, the v3 task field lists),
not from whatever the first page of data happened to contain: an empty first page, or a first row whose
date field is "", must not decide a column's type. Values are then converted to match the declared type
(`"Y"`/`"N"` -> bool, ISO strings -> datetime/date, money -> Decimal) by a small per-row mapper.

Shared by the source and the destination (validation of writes against the same metadata).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from dlt.common.schema.typing import TColumnSchema, TDataType

MONEY_PRECISION: Final = 18
MONEY_SCALE: Final = 2
"""CRM amounts are stored as DECIMAL(18,2) by the portal; keep them exact instead of float."""

_TYPE_MAP: Final[dict[str, TDataType]] = {
    "integer": "bigint",
    "int": "bigint",
    "double": "double",
    "float": "double",
    "number": "double",
    "money": "decimal",
    "boolean": "bool",
    "bool": "bool",
    "char": "bool",
    "date": "date",
    "datetime": "timestamp",
    "string": "text",
    "text": "text",
    "url": "text",
    "crm_status": "text",
    "crm_currency": "text",
    "crm_entity": "text",
    "crm_multifield": "json",
    "location": "text",
    "address": "text",
    "file": "json",
    "diskfile": "json",
    "disk_file": "json",
    "object": "json",
    "enum": "text",
    "array": "json",
    "user": "bigint",
    "employee": "bigint",
    "crm_lead": "bigint",
    "crm_deal": "bigint",
    "crm_contact": "bigint",
    "crm_company": "bigint",
    "crm_category": "bigint",
    "iblock_element": "bigint",
    "iblock_section": "bigint",
    "product_property": "text",
}
"""Bitrix field type (crm.item.fields `type`, §7.2; v3 field lists) -> dlt data type. Types not listed are
left to dlt's own inference rather than guessed."""

_MONEY_FIELD_NAMES: Final = frozenset(
    {
        "opportunity",
        "opportunityAccount",
        "taxValue",
        "taxValueAccount",
        "price",
        "priceAccount",
        "priceExclusive",
        "priceNetto",
        "priceBrutto",
        "discountSum",
    }
)
"""System amount fields (CRM items and product rows): the portal describes them as `double`
(crm.item.fields, crm.item.productrow.fields), but they are money (DECIMAL(18,2))."""

_COMPUTED_AMOUNT_NAMES: Final = frozenset({"priceExclusive", "priceNetto", "priceBrutto", "discountSum"})
"""Product-row amounts the portal computes (tax and discount arithmetic): they can carry more than two
decimals, so they get COMPUTED_SCALE instead of MONEY_SCALE and are never rounded on the way in."""

COMPUTED_PRECISION: Final = 24
COMPUTED_SCALE: Final = 6


@dataclass(frozen=True, slots=True)
class FieldMeta:
    """One field of a Bitrix24 entity, normalised from the portal's field description.

    Attributes:
        name: the field name as rows carry it (camelCase for crm.item / v3, UPPER_CASE for user.get).
        type: the Bitrix type name (`integer`, `datetime`, `enumeration`, `crm_status`, ...).
        title: the human label.
        is_required: whether the portal requires the field on add.
        is_read_only: whether the field can be written.
        is_multiple: whether the value is a list.
        items: enumeration items as (id, value) pairs, empty for other types.
        upper_name: the UPPER_CASE name (crm.item `upperName`), if known.
        is_filterable: the v3 field list's `filterable` flag (§5.1), None when the portal does not say.
    """

    name: str
    type: str
    title: str = ""
    is_required: bool = False
    is_read_only: bool = False
    is_multiple: bool = False
    items: tuple[tuple[str, str], ...] = ()
    upper_name: str | None = None
    is_filterable: bool | None = None


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.upper() in {"Y", "TRUE", "1"}
    return bool(value)


def _enum_items(raw: Any) -> tuple[tuple[str, str], ...]:
    if isinstance(raw, Mapping):
        return tuple((str(k), str(v)) for k, v in raw.items())
    if not isinstance(raw, list):
        return ()
    out: list[tuple[str, str]] = []
    for item in raw:
        if isinstance(item, Mapping):
            key = item.get("ID", item.get("id", item.get("value")))
            label = item.get("VALUE", item.get("value", item.get("title", key)))
            out.append((str(key), str(label)))
    return tuple(out)


def parse_field_map(payload: Any) -> dict[str, FieldMeta]:
    """Normalise a field description payload into `FieldMeta` by field name.

    Accepts the `crm.item.fields` result (`{"fields": {name: {...}}}`, §7.2), a bare `{name: {...}}` map
    (classic `crm.*.fields`, recorded in tests/fixtures/real-responses/crm_lead_fields_success.json), a v3
    field list (`{"items": [{"name", "type", ...}]}`) and `user.fields` (`{name: label}`, no types: such
    fields get type "" and are left to dlt's inference).

    Args:
        payload: the `result` of the field description call.

    Returns:
        Field metadata keyed by field name, in the portal's order.
    """
    if isinstance(payload, Mapping) and isinstance(payload.get("fields"), Mapping):
        payload = payload["fields"]
    elif isinstance(payload, Mapping) and isinstance(payload.get("items"), list):
        payload = payload["items"]
    entries: Iterable[tuple[str, Any]]
    if isinstance(payload, Mapping):
        entries = payload.items()
    elif isinstance(payload, list):
        entries = [(str(d.get("name", d.get("id", ""))), d) for d in payload if isinstance(d, Mapping)]
    else:
        raise ValueError(f"unrecognised field description payload: {type(payload).__name__}")
    fields: dict[str, FieldMeta] = {}
    for name, desc in entries:
        if not name:
            continue
        if not isinstance(desc, Mapping):
            fields[name] = FieldMeta(name=name, type="", title=str(desc))
            continue
        fields[name] = FieldMeta(
            name=name,
            type=str(desc.get("type", "")).lower(),
            title=str(desc.get("title") or desc.get("formLabel") or desc.get("listLabel") or name),
            is_required=_flag(desc.get("isRequired", desc.get("required", False))),
            is_read_only=_flag(desc.get("isReadOnly", desc.get("readOnly", False))),
            is_multiple=_flag(desc.get("isMultiple", desc.get("multiple", False))),
            items=_enum_items(desc.get("items", desc.get("values"))),
            upper_name=desc.get("upperName"),
            is_filterable=_flag(desc["filterable"]) if "filterable" in desc else None,
        )
    return fields


def data_type_of(meta: FieldMeta) -> TDataType | None:
    """The dlt data type for one field, or None to leave the column to dlt's inference."""
    if meta.is_multiple:
        return "json"
    if meta.name in _MONEY_FIELD_NAMES:
        return "decimal"
    if meta.type == "money" and meta.name.lower().startswith("uf"):
        # User-field money is serialised as "amount|CURRENCY" (a string), not a number.
        return "text"
    if meta.type == "enumeration":
        numeric = bool(meta.items) and all(key.lstrip("-").isdigit() for key, _ in meta.items)
        return "bigint" if numeric else "text"
    return _TYPE_MAP.get(meta.type)


def column_hints(fields: Mapping[str, FieldMeta]) -> dict[str, TColumnSchema]:
    """Build dlt column hints (name, data_type, nullable, precision/scale, description) from metadata."""
    columns: dict[str, TColumnSchema] = {}
    for name, meta in fields.items():
        data_type = data_type_of(meta)
        if data_type is None:
            continue
        column: TColumnSchema = {"name": name, "data_type": data_type, "nullable": True}
        if data_type == "decimal":
            computed = name in _COMPUTED_AMOUNT_NAMES
            column["precision"] = COMPUTED_PRECISION if computed else MONEY_PRECISION
            column["scale"] = COMPUTED_SCALE if computed else MONEY_SCALE
        if data_type == "timestamp":
            column["timezone"] = True
        if meta.title and meta.title != name:
            column["description"] = meta.title
        columns[name] = column
    return columns


def _from_text(text: str, parse: Callable[[str], Any]) -> Any:
    """Parse a string sent for a typed column: blank means no value; an unparsable string is kept as sent."""
    stripped = text.strip()
    if stripped == "":
        return None
    try:
        return parse(stripped)
    except (ValueError, InvalidOperation):
        return text


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _to_bool(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().upper()
        if text in {"Y", "1", "TRUE"}:
            return True
        if text in {"N", "0", "FALSE"}:
            return False
        if text == "":
            return None
    return value


def _to_int(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        return _from_text(value, int)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _to_number(kind: Callable[[str], Any]) -> Callable[[Any], Any]:
    """A converter to `kind` (float or Decimal) for strings and other numbers."""

    def convert(value: Any) -> Any:
        if isinstance(value, str):
            return _from_text(value, kind)
        if _is_number(value) and type(value) is not kind:
            # through str(): Decimal(0.1) would carry the float's binary expansion into the warehouse
            return kind(str(value))
        return value

    return convert


_to_float = _to_number(float)
_to_decimal = _to_number(Decimal)


def _date_only(text: str) -> _dt.date:
    # A date field may arrive as a full datetime ("2024-04-19T03:00:00+03:00", recorded in
    # crm_item_list.json): the portal's calendar date is the part before "T".
    return _dt.date.fromisoformat(text[:10])


def _to_timestamp(value: Any) -> Any:
    if isinstance(value, str):
        return _from_text(value, _dt.datetime.fromisoformat)
    return _empty_object_to_none(value)


def _to_date(value: Any) -> Any:
    if isinstance(value, str):
        return _from_text(value, _date_only)
    if isinstance(value, _dt.datetime):
        return value.date()
    return _empty_object_to_none(value)


def _empty_object_to_none(value: Any) -> Any:
    # user.get documents `"TIMESTAMP_X": {}` and `"LAST_ACTIVITY_DATE": {}` (DOCS api-reference/user/
    # user-get.md): a date object the portal failed to serialise carries no value; it must not become a
    # JSON variant column.
    if isinstance(value, Mapping | list) and not value:
        return None
    return value


def _to_text(value: Any) -> Any:
    if _is_number(value):
        return str(value)
    return value


_CONVERTERS: Final[dict[str, Callable[[Any], Any]]] = {
    "bool": _to_bool,
    "bigint": _to_int,
    "double": _to_float,
    "decimal": _to_decimal,
    "timestamp": _to_timestamp,
    "date": _to_date,
    "text": _to_text,
}


class RowMapper:
    """Converts row values in place to the types declared by `column_hints`.

    A value that cannot be converted is kept as sent, so dlt stores it in a variant column instead of the
    row being dropped or the run failing on one odd value.
    """

    __slots__ = ("_converters",)

    def __init__(self, columns: Mapping[str, TColumnSchema]) -> None:
        self._converters: dict[str, Callable[[Any], Any]] = {}
        for name, column in columns.items():
            converter = _CONVERTERS.get(str(column.get("data_type")))
            if converter is not None:
                self._converters[name] = converter

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        for name, convert in self._converters.items():
            if name in row:
                row[name] = convert(row[name])
        return row

    def convert_value(self, name: str, value: Any) -> Any:
        """Convert one value of column `name` (identity for columns without a declared type)."""
        convert = self._converters.get(name)
        return value if convert is None else convert(value)


def field_definition_rows(entity: str, fields: Mapping[str, FieldMeta]) -> list[dict[str, Any]]:
    """Rows of the `field_definitions` table: one per entity field.

    Args:
        entity: the resource name the fields belong to (`deals`, `tasks`, ...).
        fields: the parsed field metadata.

    Returns:
        One dict per field with `id` = "<entity>.<field>", type, title, flags and enumeration items.
    """
    rows: list[dict[str, Any]] = []
    for name, meta in fields.items():
        rows.append(
            {
                "id": f"{entity}.{name}",
                "entity": entity,
                "field": name,
                "upper_name": meta.upper_name,
                "type": meta.type,
                "data_type": data_type_of(meta),
                "title": meta.title,
                "is_required": meta.is_required,
                "is_read_only": meta.is_read_only,
                "is_multiple": meta.is_multiple,
                "items": [{"id": key, "value": value} for key, value in meta.items] or None,
            }
        )
    return rows


_FIELD_DEFINITION_TYPES: Final[tuple[tuple[str, TDataType], ...]] = (
    ("id", "text"),
    ("entity", "text"),
    ("field", "text"),
    ("upper_name", "text"),
    ("type", "text"),
    ("data_type", "text"),
    ("title", "text"),
    ("is_required", "bool"),
    ("is_read_only", "bool"),
    ("is_multiple", "bool"),
    ("items", "json"),
)

FIELD_DEFINITION_COLUMNS: Final[dict[str, TColumnSchema]] = {
    name: {"name": name, "data_type": data_type, "nullable": name not in {"id", "entity", "field"}}
    for name, data_type in _FIELD_DEFINITION_TYPES
}
"""Column hints of the `field_definitions` table (the keys of `field_definition_rows`; primary key `id`)."""
FIELD_DEFINITION_COLUMNS["id"]["primary_key"] = True
