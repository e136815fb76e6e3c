"""Bitrix24 field metadata -> dlt column hints, and the per-row value mapper that goes with them. No I/O.

Column types come from the portal's own field descriptions (`crm.item.fields`, the v3 task field lists),
not from whatever the first page of data happened to contain: an empty first page, or a first row whose
date field is "", must not decide a column's type. Values are then converted to match the declared type
(`"Y"`/`"N"` -> bool, ISO strings -> datetime/date, money -> Decimal) by a small per-row mapper.
The field model itself (FieldMeta, the parsers, what a type word means) is bitrix24_source/fields.py.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from dlt.common.schema.typing import TColumnSchema, TDataType

from bitrix24_source.fields import FieldMeta, Kind, kind_of

MONEY_PRECISION: Final = 18
MONEY_SCALE: Final = 2
"""CRM amounts are stored as DECIMAL(18,2) by the portal; keep them exact instead of float."""

_KIND_TYPES: Final[dict[Kind, TDataType]] = {
    "int": "bigint",
    "float": "double",
    "money": "decimal",
    "bool": "bool",
    "date": "date",
    "datetime": "timestamp",
    "text": "text",
    "json": "json",
}
"""What kind of value (fields.TYPE_KINDS) is stored as which dlt data type."""

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


def data_type_of(meta: FieldMeta) -> TDataType | None:
    """The dlt data type for one field, or None to leave the column to dlt's inference."""
    if meta.multiple:
        return "json"
    if meta.name in _MONEY_FIELD_NAMES:
        return "decimal"
    if meta.type == "money" and meta.name.lower().startswith("uf"):
        # User-field money is serialised as "amount|CURRENCY" (a string), not a number.
        return "text"
    kind = kind_of(meta)
    if kind == "enumeration":
        numeric = bool(meta.items) and all(key.lstrip("-").isdigit() for key, _ in meta.items or ())
        return "bigint" if numeric else "text"
    return None if kind is None else _KIND_TYPES[kind]


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
                "is_required": meta.required,
                "is_read_only": meta.read_only,
                "is_multiple": meta.multiple,
                "items": [{"id": key, "value": value} for key, value in meta.items or ()] or None,
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
