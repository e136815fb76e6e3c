"""Value checks for the destination's planning: one input value -> what the portal expects for its field; no I/O.

Every value is checked and converted against the field's metadata (its type kind, enumeration items,
multiplicity) before anything is sent; a value that cannot be converted raises :class:`InvalidValue`, which the
planner turns into the row's error. ``row_json`` and ``key`` show integral floats as ints (:func:`as_written`):
pandas widens integer columns with gaps to float.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any, Final, TypeVar

from bitrix24_source.fields import FieldMeta, Kind, kind_of

_T = TypeVar("_T")

# Codes of the value errors found before sending; portal errors keep the portal's own code.
INVALID_TYPE: Final = "INVALID_TYPE"
INVALID_ENUM_VALUE: Final = "INVALID_ENUM_VALUE"


class InvalidValue(Exception):
    """A value its field cannot take: `code` goes to the row's ``error_code``, `message` names the field."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Unencodable:
    """An input value that could not travel to the destination (a lone surrogate, an arbitrary object): its
    row becomes ``INVALID_TYPE`` naming the field (:mod:`.rows`)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"<not encodable: {self.reason}>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unencodable) and other.reason == self.reason

    def __hash__(self) -> int:
        return hash(self.reason)


def is_missing(value: Any) -> bool:
    """None and NaN mean "not present" (a DataFrame has no other way to leave a cell out)."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, Decimal) and value.is_nan():
        return True
    return type(value).__name__ in {"NAType", "NaTType"}


def _finite(value: float | Decimal) -> bool:
    return value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)


def _parsed(parse: Callable[[str], _T], text: str) -> _T | None:
    """``parse(text)``, or None when the text does not parse; the caller reports the value as INVALID_TYPE."""
    try:
        return parse(text)
    except ValueError:
        return None


def parsed_int(value: Any, meta: FieldMeta) -> int | None:
    """``value`` as an integer, or None when it is not one (the planner reports that row on its own)."""
    try:
        return as_int(value, meta)
    except InvalidValue:
        return None


def as_int(value: Any, meta: FieldMeta) -> int:
    if isinstance(value, bool):
        raise InvalidValue(INVALID_TYPE, f"field {meta.name!r} expects an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, (float, Decimal)) and _finite(value) and value == int(value):
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise InvalidValue(INVALID_TYPE, f"field {meta.name!r} expects an integer, got {value!r}")


def _as_float(value: Any, meta: FieldMeta) -> int | float:
    if isinstance(value, bool):
        raise InvalidValue(INVALID_TYPE, f"field {meta.name!r} expects a number, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, (float, Decimal)) and _finite(value):
        return float(value)
    number = _parsed(float, value) if isinstance(value, str) else None
    if number is not None and math.isfinite(number):
        return number
    raise InvalidValue(INVALID_TYPE, f"field {meta.name!r} expects a number, got {value!r}")


def _as_bool(value: Any, meta: FieldMeta) -> str:
    # Booleans do not survive the v2 query encoding (§4.1): send "Y"/"N" explicitly.
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, int) and value in (0, 1):
        return "Y" if value else "N"
    if isinstance(value, str) and value.strip().upper() in {"Y", "N", "TRUE", "FALSE", "1", "0", "YES", "NO"}:
        return "Y" if value.strip().upper() in {"Y", "TRUE", "1", "YES"} else "N"
    raise InvalidValue(INVALID_TYPE, f"field {meta.name!r} expects a boolean (Y/N), got {value!r}")


def _as_date(value: Any, meta: FieldMeta) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    parsed = _parsed(date.fromisoformat, value.strip()[:10]) if isinstance(value, str) else None
    if parsed is not None:
        return parsed.isoformat()
    raise InvalidValue(INVALID_TYPE, f"field {meta.name!r} expects a date (YYYY-MM-DD), got {value!r}")


def _as_datetime(value: Any, meta: FieldMeta) -> str:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=timezone.utc).isoformat()
    parsed = (
        _parsed(datetime.fromisoformat, value.strip().replace("Z", "+00:00"))
        if isinstance(value, str)
        else None
    )
    if parsed is not None:
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).isoformat()
    raise InvalidValue(INVALID_TYPE, f"field {meta.name!r} expects a date-time (ISO 8601), got {value!r}")


def _as_string(value: Any, meta: FieldMeta) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise InvalidValue(INVALID_TYPE, f"field {meta.name!r} expects a string, got a boolean")
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    raise InvalidValue(INVALID_TYPE, f"field {meta.name!r} expects a string, got {type(value).__name__}")


def _as_enum(value: Any, meta: FieldMeta) -> Any:
    assert meta.enum_values is not None
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        value = int(value)
    text = str(value)
    if text in meta.enum_values:
        return value if isinstance(value, int) and not isinstance(value, bool) else text
    by_label = [k for k, label in meta.enum_values.items() if label == text]
    if len(by_label) == 1:
        return by_label[0]
    allowed = ", ".join(sorted(meta.enum_values))
    raise InvalidValue(
        INVALID_ENUM_VALUE, f"field {meta.name!r} does not allow value {value!r} (allowed: {allowed})"
    )


_COERCERS: Final[dict[Kind | None, Callable[[Any, FieldMeta], Any]]] = {
    "int": as_int,
    "float": _as_float,
    "money": _as_float,
    "bool": _as_bool,
    "date": _as_date,
    "datetime": _as_datetime,
    "text": _as_string,
}
"""How a value of each kind (fields.TYPE_KINDS) is checked and converted for the wire; kinds not listed
(json, enumerations without items, type words we have no evidence for) go as given."""


def _coerce_scalar(value: Any, meta: FieldMeta) -> Any:
    if meta.items is not None and meta.type in {"enumeration", "enum", "crm_status", "list"}:
        return _as_enum(value, meta)
    coerce = _COERCERS.get(kind_of(meta))
    if coerce is not None:
        return coerce(value, meta)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (float, Decimal)):
        # JSON has no infinity; the v2 encoder would send the text "inf".
        if not _finite(value):
            raise InvalidValue(INVALID_TYPE, f"field {meta.name!r} expects a finite number, got {value!r}")
        return float(value)
    return value


def _parse_json_list(value: str) -> Any:
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            return value
    return value


def coerce_value(value: Any, meta: FieldMeta) -> Any:
    """Validate and convert one value to what the portal expects for `meta` (raises InvalidValue)."""
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        value = value.tolist()  # numpy scalars (a DataFrame's cells) and arrays as Python values
    if meta.multiple:
        if isinstance(value, str):
            value = _parse_json_list(value)
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        return [_coerce_scalar(item, meta) for item in items if not is_missing(item)]
    if isinstance(value, (list, tuple)):
        raise InvalidValue(INVALID_TYPE, f"field {meta.name!r} takes a single value, got a list")
    return _coerce_scalar(value, meta)


def as_written(value: Any) -> Any:
    """An input value as the user wrote it: an integral float is an int that pandas widened to float because
    its column has gaps (NaN), so ``1.0`` is shown as ``1`` in the errors table and the ``key`` column."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def original_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The input row for ``row_json``: JSON-safe, without dlt's columns, integral floats as ints."""
    return {str(k): json_safe(as_written(v)) for k, v in row.items() if not str(k).startswith("_dlt_")}


def json_safe(value: Any) -> Any:
    """A JSON-serialisable copy of an input value (for the errors table and the plan)."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if is_missing(value):
        return None
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (str, int, float, bool)):
        return value
    try:
        return str(value)
    except Exception as exc:  # only for display in the errors table: name the value's type and the failure
        return f"<{type(value).__name__}: str() failed: {describe(exc)}>"


def describe(exc: Exception) -> str:
    """An unforeseen exception as a row's error text shows it."""
    return f"{type(exc).__name__}: {exc}"
