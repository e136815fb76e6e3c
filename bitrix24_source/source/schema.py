"""Bitrix24 field metadata -> dlt column hints, and the Arrow tables built with them. No I/O.

Column types come from the portal's own field descriptions (`crm.item.fields`, the v3 task field lists),
not from whatever the first page of data happened to contain: an empty first page, or a first row whose
date field is "", must not decide a column's type. Values are converted to the declared type (`"Y"`/`"N"` ->
bool, ISO strings -> datetime/date, money -> Decimal) and each page becomes one pyarrow table typed column by
column (`ArrowPages`); the directories, replaced whole each run, convert per row (`RowMapper`).

A value that does not fit its column's type (text in a number column, a timestamp that does not parse, an
amount with more decimals than its column's scale) is never rounded and never becomes a dlt variant column:
its column holds NULL in that row and the value as sent goes to the text column `<field>_raw`
(`RAW_SUFFIX`), created the first time such a value arrives.
The field model itself (FieldMeta, the parsers, what a type word means) is bitrix24_source/fields.py.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import pyarrow as pa
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


RAW_SUFFIX: Final = "_raw"
"""Suffix of the text column that keeps values which do not fit their typed column (module docstring)."""

_ARROW_TYPES: Final[dict[str, pa.DataType]] = {
    "bigint": pa.int64(),
    "double": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "text": pa.string(),
    "json": pa.string(),
}
"""Arrow type of each dlt data type the hints use (decimals take their precision and scale from the hint).
JSON travels as its text; the column hint tells dlt the column is json."""


def arrow_type(column: TColumnSchema) -> pa.DataType | None:
    """The Arrow type of a hinted column, None for a column left to inference."""
    data_type = column.get("data_type")
    if data_type == "decimal":
        return pa.decimal128(column.get("precision", MONEY_PRECISION), column.get("scale", MONEY_SCALE))
    return _ARROW_TYPES.get(str(data_type))


def _json_text(value: Any) -> Any:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _raw_text(value: Any) -> str:
    return value if isinstance(value, str) else _json_text(value)


_INFERRED: Final = (pa.int64(), pa.float64(), pa.bool_(), pa.string())
"""Arrow types an unhinted column may take as inferred from its values; anything else travels as JSON text."""


def _inferred_column(values: list[Any]) -> pa.Array | None:
    """An unhinted column: a plain Arrow type when its values have one, JSON text otherwise (the field's
    value as a whole is a list or object: `fm` of leads), None if empty."""
    if all(v is None for v in values):
        # no type to give it; the row path gave such a column none either
        return None
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        array = None
    if array is not None and array.type in _INFERRED:
        return array
    return pa.array([None if v is None else _raw_text(v) for v in values], type=pa.string())


class ArrowPages:
    """Builds one pyarrow table per page of rows, column by column, typed by the column hints.

    Args:
        columns: dlt column hints (`column_hints`); their names are the row keys.
    """

    __slots__ = ("_typed", "found")

    def __init__(self, columns: Mapping[str, TColumnSchema]) -> None:
        self.found: dict[str, TColumnSchema] = {}
        """Hints of columns the field lists did not describe: JSON values and `_raw` columns seen so far."""
        self._typed: dict[str, tuple[pa.DataType, frozenset[type], Callable[[Any], Any]]] = {}
        for name, column in columns.items():
            type_ = arrow_type(column)
            if type_ is None:
                continue
            convert = (
                _json_text if column.get("data_type") == "json" else _CONVERTERS[str(column["data_type"])]
            )
            self._typed[name] = (type_, _exact_types(type_), convert)

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
        """The page as one table: hinted fields typed, others inferred, misfits in `<field>_raw` columns."""
        names: dict[str, None] = {}
        for row in rows:
            names.update(dict.fromkeys(row))
        arrays: dict[str, pa.Array] = {}
        for name in names:
            values = [row.get(name) for row in rows]
            typed = self._typed.get(name)
            if typed is None:
                array = _inferred_column(values)
                if array is not None:
                    arrays[name] = array
                    if array.type == pa.string() and name not in self.found and _has_json(values):
                        self.found[name] = {"name": name, "data_type": "json", "nullable": True}
                continue
            type_, expected, convert = typed
            converted = [convert(v) for v in values]
            try:
                if not all(v is None or type(v) in expected for v in converted):
                    raise TypeError(f"{name}: a value of another type")
                arrays[name] = pa.array(converted, type=type_)
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
                raw = name + RAW_SUFFIX
                arrays[name], arrays[raw] = _split_misfits(values, converted, type_)
                self.found.setdefault(raw, {"name": raw, "data_type": "text", "nullable": True})
        return pa.table(arrays)

    @staticmethod
    def tombstones(ids: Iterable[int], deleted_column: str) -> pa.Table:
        """A table of `{"id": ..., <deleted_column>: true}` rows (dlt's merge hard-deletes them)."""
        id_array = pa.array(list(ids), type=pa.int64())
        return pa.table({"id": id_array, deleted_column: pa.array([True] * len(id_array), type=pa.bool_())})


def _has_json(values: list[Any]) -> bool:
    return any(isinstance(v, Mapping | list) for v in values)


def _exact_types(type_: pa.DataType) -> frozenset[type]:
    """Exact Python types taken without a closer look (a subclass such as bool in an int column is not)."""
    expected = _py_type(type_)
    return frozenset(expected) if isinstance(expected, tuple) else frozenset({expected})


def _py_type(type_: pa.DataType) -> type | tuple[type, ...]:
    """The Python values a column of `type_` takes after conversion (pyarrow itself would, e.g., truncate
    7.5 into an int64 column without a word)."""
    if pa.types.is_integer(type_):
        return int
    if pa.types.is_floating(type_):
        return (float, int)
    if pa.types.is_decimal(type_):
        return Decimal
    if pa.types.is_boolean(type_):
        return bool
    if pa.types.is_timestamp(type_):
        return _dt.datetime
    if pa.types.is_date(type_):
        return _dt.date
    return str


def _fits(value: Any, type_: pa.DataType) -> bool:
    expected = _py_type(type_)
    if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
        return False
    try:
        pa.array([value], type=type_)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        return False
    return True


def _split_misfits(sent: list[Any], converted: list[Any], type_: pa.DataType) -> tuple[pa.Array, pa.Array]:
    """(the typed column with NULL where a value does not fit, the `_raw` text column holding those values)."""
    typed: list[Any] = []
    raw: list[str | None] = []
    for original, value in zip(sent, converted, strict=True):
        if value is None or _fits(value, type_):
            typed.append(value)
            raw.append(None)
        else:
            typed.append(None)
            raw.append(_raw_text(original))
    return pa.array(typed, type=type_), pa.array(raw, type=pa.string())


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
