"""Filter, order and pagination dialects of the sandbox portal.

* v2 object filters (§7.2): ``{">=opportunity": 5000, "@stageId": [...], "0": {"logic": "OR", ...}}`` with
  the prefixes ``>= > <= < @ !@ % =% %= !% !=% !%= = != !``.
* v3 array filters (§5.4): ``[["id", ">", 10], {"logic": "or", "negative": true, "conditions": [...]}]`` with
  exactly the operators ``= != > >= < <= in between``.

Both compile to one `Compiled` value: a row predicate plus the id range and index candidates that
`store.Table.query` turns into bisects, so the common keyset request (``>id`` + order by id) never scans the
table. Errors copy the real portal's codes and texts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from bitrix24_source.sandbox.fields import SimpleField
from bitrix24_source.sandbox.store import PORTAL_TZ, Predicate, SortKey, Table
from bitrix24_source.sandbox.types import ApiError, CallContext, CostModel

V3 = "BITRIX_REST_V3_EXCEPTION_"


@dataclass(frozen=True, slots=True)
class FieldRef:
    """Where a filter/order name points in the canonical row and how to coerce values for it.

    `kind` is one of ``id int float str datetime yn bool list_int list_str``; `convert` maps an incoming value
    to the canonical one first (e.g. v2 task STATUS ``"5"`` -> ``"completed"``).
    """

    key: str
    kind: str
    convert: Callable[[Any], Any] | None = None


Resolver = Callable[[str], FieldRef | None]


@dataclass(slots=True)
class Compiled:
    """A compiled filter: `predicate` (None = everything) plus index hints for `Table.query`."""

    predicate: Predicate | None = None
    lo: int | None = None
    lo_incl: bool = True
    hi: int | None = None
    hi_incl: bool = True
    candidate_sets: list[set[int]] = field(default_factory=list)
    index_eq: dict[str, list[Any]] = field(default_factory=dict)
    empty: bool = False  # a contradiction was detected (e.g. `@id: []`)

    def tighten_lo(self, value: int, incl: bool) -> None:
        if self.lo is None or value > self.lo or (value == self.lo and not incl):
            self.lo, self.lo_incl = value, incl

    def tighten_hi(self, value: int, incl: bool) -> None:
        if self.hi is None or value < self.hi or (value == self.hi and not incl):
            self.hi, self.hi_incl = value, incl


# ---------------------------------------------------------------------------------------------------------
# value coercion


class _BadValue(Exception):
    """A filter value that cannot be coerced to its field's type; callers turn it into the API's error."""


_INT_PREFIX = re.compile(r"^\s*[-+]?\d+")


def php_int(value: Any) -> int | None:
    """PHP `intval` for the scalar shapes that arrive on the wire; None when nothing numeric is there."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        m = _INT_PREFIX.match(value)
        return int(m.group(0)) if m else None
    return None


def strict_int(value: Any) -> int | None:
    """An int from an int or an all-digit string (form-encoded requests send every scalar as a string)."""
    if type(value) is str and value.isdigit() and value.isascii():
        return int(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
        return int(value)
    return None


def php_truthy(value: Any) -> bool:
    """PHP truthiness of a wire scalar: "0", "", 0, false and null are false."""
    if isinstance(value, str):
        return value not in ("", "0")
    return bool(value)


def yn(value: Any) -> str:
    """Bitrix Y/N flags accept Y/N, true/false, 1/0 in any of their wire spellings."""
    if isinstance(value, str):
        return "Y" if value.strip().upper() in ("Y", "1", "TRUE", "YES") else "N"
    return "Y" if value else "N"


def to_iso(value: Any) -> str:
    """Normalize a date/datetime input to the portal's canonical string (raises ValueError).

    Accepts ISO-8601 with or without offset or time, and the classic ``DD.MM.YYYY[ HH:MM:SS]`` form.
    """
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        text = value.strip()
        m = re.fullmatch(r"(\d{2})\.(\d{2})\.(\d{4})(?:\s+(\d{2}):(\d{2})(?::(\d{2}))?)?", text)
        if m:
            d, mo, y, h, mi, s = m.groups()
            dt = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0))
        else:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    else:
        raise ValueError(f"not a date: {value!r}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=PORTAL_TZ)
    return dt.astimezone(PORTAL_TZ).strftime("%Y-%m-%dT%H:%M:%S+03:00")


_INT_KINDS = frozenset({"id", "int", "list_int"})


def coerce(kind: str, value: Any) -> Any:
    """Coerce one filter value to the canonical type of `kind` (raises _BadValue)."""
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        raise _BadValue
    if kind in _INT_KINDS:
        if type(value) is str and value.isdigit() and value.isascii():
            return int(value)  # the common case, keyset bounds such as ">ID": "4750"
        if isinstance(value, str) and value.strip() == "":
            return None
        out = php_int(value)
        if out is None:
            raise _BadValue
        return out
    if kind == "float":
        if isinstance(value, str) and value.strip() == "":
            return None
        try:
            return float(value)
        except (TypeError, ValueError):
            raise _BadValue from None
    if kind == "datetime":
        if isinstance(value, str) and value.strip() == "":
            return None
        try:
            return to_iso(value)
        except ValueError:
            raise _BadValue from None
    if kind == "yn":
        return yn(value)
    if kind == "bool":
        return yn(value) == "Y"
    if isinstance(value, bool):
        return "Y" if value else "N"
    return str(value)


def _like_regex(pattern: str) -> re.Pattern[str]:
    parts = [".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern]
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _is_empty(v: Any) -> bool:
    return v is None or v == "" or v == []


def _getter(ref: FieldRef) -> Callable[[dict[str, Any]], Any]:
    key = ref.key
    if ref.kind == "id":

        def get_id(row: dict[str, Any]) -> Any:
            v = row.get(key)
            return int(v) if v is not None else None

        return get_id

    def get(row: dict[str, Any]) -> Any:
        return row.get(key)

    return get


def _condition(ref: FieldRef, op: str, values: list[Any]) -> Predicate:
    """A predicate for one condition; `values` are already canonical. Multiple-valued rows match on any."""
    get = _getter(ref)
    multi = ref.kind.startswith("list_")

    def any_of(row: dict[str, Any], test: Callable[[Any], bool]) -> bool:
        v = get(row)
        if multi and isinstance(v, list):
            return any(test(x) for x in v)
        return test(v)

    if op in ("eq", "in"):
        want = set(values)
        wants_empty = any(_is_empty(v) for v in values)
        if multi:
            return lambda row: (wants_empty and _is_empty(get(row))) or any_of(row, lambda x: x in want)
        return lambda row: (wants_empty and _is_empty(get(row))) or get(row) in want
    if op in ("ne", "nin"):
        want = set(values)
        wants_empty = any(_is_empty(v) for v in values)
        return lambda row: (
            not ((wants_empty and _is_empty(get(row))) or any_of(row, lambda x: x in want and x is not None))
        )
    if op in ("gt", "ge", "lt", "le"):
        bound = values[0]
        if bound is None:
            return lambda row: False
        cmp: Callable[[Any], bool] = {
            "gt": lambda x: x is not None and x > bound,
            "ge": lambda x: x is not None and x >= bound,
            "lt": lambda x: x is not None and x < bound,
            "le": lambda x: x is not None and x <= bound,
        }[op]
        return lambda row: any_of(row, cmp)
    if op == "between":
        lo, hi = values
        return lambda row: any_of(row, lambda x: x is not None and lo <= x <= hi)
    if op in ("contains", "not_contains"):
        needle = str(values[0] if values else "").lower()
        positive = op == "contains"
        return lambda row: positive == any_of(row, lambda x: x is not None and needle in str(x).lower())
    if op in ("like", "not_like"):
        rx = _like_regex(str(values[0] if values else ""))
        positive = op == "like"
        return lambda row: (
            positive == any_of(row, lambda x: x is not None and rx.fullmatch(str(x)) is not None)
        )
    raise AssertionError(op)


def _all(preds: list[Predicate]) -> Predicate | None:
    if not preds:
        return None
    if len(preds) == 1:
        return preds[0]
    return lambda row: all(p(row) for p in preds)


def _any(preds: list[Predicate]) -> Predicate:
    return lambda row: any(p(row) for p in preds)


def _apply_hints(out: Compiled, ref: FieldRef, op: str, values: list[Any], indexed: frozenset[str]) -> bool:
    """Turn a top-level AND condition into id bounds/candidates if it can be one; True when consumed."""
    if ref.kind == "id":
        if any(v is None for v in values):
            return False
        if op in ("gt", "ge"):
            out.tighten_lo(values[0], op == "ge")
        elif op in ("lt", "le"):
            out.tighten_hi(values[0], op == "le")
        elif op in ("eq", "in"):
            out.candidate_sets.append(set(values))
        elif op == "between":
            out.tighten_lo(values[0], True)
            out.tighten_hi(values[1], True)
        else:
            return False
        return True
    if ref.key in indexed and op in ("eq", "in") and not any(_is_empty(v) for v in values):
        out.index_eq.setdefault(ref.key, []).extend(values)
        return True
    return False


# ---------------------------------------------------------------------------------------------------------
# v2 object filters

# Longest first, so that "!=%" is not read as "!=" + "%name".
_V2_PREFIXES = (
    ("!=%", "not_like"),
    ("!%=", "not_like"),
    (">=", "ge"),
    ("<=", "le"),
    ("=%", "like"),
    ("%=", "like"),
    ("!%", "not_contains"),
    ("!@", "nin"),
    ("!=", "ne"),
    (">", "gt"),
    ("<", "lt"),
    ("@", "in"),
    ("%", "contains"),
    ("=", "eq"),
    ("!", "ne"),
)


@lru_cache(maxsize=4096)
def split_v2_key(key: str) -> tuple[str, str]:
    """``">=opportunity"`` -> ``("ge", "opportunity")`` (cached: the same keys come in every page request)."""
    for prefix, op in _V2_PREFIXES:
        if key.startswith(prefix):
            return op, key[len(prefix) :]
    return "eq", key


def _invalid_filter(name: str, what: str = "is not allowed in filter") -> ApiError:
    # DOCS crm-item-list.md, error table.
    return ApiError("INVALID_ARG_VALUE", f"Invalid filter: field '{name}' {what}")


def _items(obj: Any) -> Iterable[tuple[Any, Any]]:
    if isinstance(obj, Mapping):
        return obj.items()
    if isinstance(obj, list):
        return enumerate(obj)
    return ()


def compile_v2(filter_: Any, resolve: Resolver, *, indexed: frozenset[str] = frozenset()) -> Compiled:
    """Compile a v2 object filter. Unknown fields raise ``INVALID_ARG_VALUE`` like `crm.item.list` does."""
    out = Compiled()
    out.predicate = _compile_v2_group(filter_, resolve, out, indexed, top=True)
    return out


def _compile_v2_group(
    group: Any, resolve: Resolver, out: Compiled, indexed: frozenset[str], *, top: bool
) -> Predicate | None:
    items = [(str(k), v) for k, v in _items(group)]
    logic_or = any(k.lower() == "logic" and str(v).upper() == "OR" for k, v in items)
    preds: list[Predicate] = []
    for key, value in items:
        if key.lower() == "logic":
            continue
        scalar = type(value) is str  # most values; skips the slow ABC checks below
        if not scalar and key.isdigit() and isinstance(value, (Mapping, list)):
            # A nested group under a numeric key (§7.2).
            sub = _compile_v2_group(value, resolve, out, indexed, top=False)
            if sub is not None:
                preds.append(sub)
            continue
        op, name = split_v2_key(key)
        ref = resolve(name)
        if ref is None:
            raise _invalid_filter(name)
        raw_values = list(value.values()) if not scalar and isinstance(value, Mapping) else value
        if isinstance(raw_values, list):
            if op == "eq":
                op = "in"
            elif op == "ne":
                op = "nin"
            elif op not in ("in", "nin"):
                raise _invalid_filter(name, "has invalid value")
        elif op in ("in", "nin"):
            raw_values = [raw_values]
        else:
            raw_values = [raw_values]
        try:
            values = [coerce(ref.kind, ref.convert(v) if ref.convert else v) for v in raw_values]
        except _BadValue:
            raise _invalid_filter(name, "has invalid value") from None
        if op == "in" and not values:
            if top and not logic_or:
                out.empty = True
            preds.append(lambda row: False)
            continue
        if top and not logic_or and _apply_hints(out, ref, op, values, indexed):
            continue
        preds.append(_condition(ref, op, values))
    if logic_or:
        return _any(preds) if preds else None
    return _all(preds)


# ---------------------------------------------------------------------------------------------------------
# v3 array filters

_V3_OPS = {
    "=": "eq",
    "!=": "ne",
    ">": "gt",
    ">=": "ge",
    "<": "lt",
    "<=": "le",
    "in": "in",
    "between": "between",
}


def v3_error(
    code: str, message: str, status: int = 400, validation: list[dict[str, str]] | None = None
) -> ApiError:
    """An ApiError with the `BITRIX_REST_V3_EXCEPTION_` prefix (§2.3)."""
    return ApiError(V3 + code, message, status, validation=validation)


def v3_validation(
    field_name: str,
    message: str,
    code: str = "VALIDATION_REQUESTVALIDATIONEXCEPTION",
    *,
    summary: str | None = None,
) -> ApiError:
    """A v3 validation error with one `validation` entry ({"message", "field"}, DOCS api-reference/rest-v3.md).

    `summary` is the top-level message; the docs translate it differently per page, so callers pass the
    text of their method's page and the default is the one of the REST 3.0 overview.
    """
    return v3_error(
        code, summary or VALIDATION_MESSAGE, validation=[{"message": message, "field": field_name}]
    )


# DOCS api-reference/rest-v3.md, the error example.
VALIDATION_MESSAGE = "Error validating request object"
# DOCS tasks-task-add-rest-v3.md and tasks-task-update-rest-v3.md, "Error Handling".
TASK_WRITE_VALIDATION_MESSAGE = "Error during request object validation"
# DOCS tasks-task-result-list-rest-v3.md, "Error Handling".
RESULT_LIST_VALIDATION_MESSAGE = "Error validating the request object"


def v3_kind(spec: SimpleField, id_key: str = "id") -> str:
    if spec.name == id_key:
        return "id"
    return {
        "integer": "int",
        "datetime": "datetime",
        "boolean": "bool",
        "array": "list_str" if spec.name == "crmItemIds" else "list_int",
    }.get(spec.type, "str")


def _as_list(value: Any) -> list[Any] | None:
    """PHP cannot tell a JSON list from an object with keys 0..n-1 (§5.6); accept both."""
    if isinstance(value, list):
        return value
    if isinstance(value, Mapping) and all(str(k).isdigit() for k in value):
        return [value[k] for k in sorted(value, key=lambda k: int(k))]
    return None


def compile_v3(
    filter_: Any, fields: Mapping[str, SimpleField], dto: str, *, indexed: frozenset[str] = frozenset()
) -> Compiled:
    """Compile a v3 array filter against a DTO's fields (§5.4)."""
    out = Compiled()
    if filter_ is None or filter_ == [] or filter_ == {}:
        return out
    nodes = _as_list(filter_)
    if nodes is None:
        raise v3_error("INVALIDFILTEREXCEPTION", f"Unable to recognize filter expression `{_dump(filter_)}`")
    out.predicate = _compile_v3_nodes(nodes, "and", fields, dto, out, indexed, top=True)
    return out


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _compile_v3_nodes(
    nodes: list[Any],
    logic: str,
    fields: Mapping[str, SimpleField],
    dto: str,
    out: Compiled,
    indexed: frozenset[str],
    *,
    top: bool,
) -> Predicate | None:
    preds: list[Predicate] = []
    for node in nodes:
        as_list = _as_list(node)
        if isinstance(node, Mapping) and as_list is None:
            logic_v = str(node.get("logic", "and")).lower()
            if logic_v not in ("and", "or"):
                raise v3_error(
                    "INVALIDFILTEREXCEPTION", f"Unable to recognize filter expression `{_dump(node)}`"
                )
            conditions = _as_list(node.get("conditions", []))
            if conditions is None:
                raise v3_error(
                    "INVALIDFILTEREXCEPTION", f"Unable to recognize filter expression `{_dump(node)}`"
                )
            sub = _compile_v3_nodes(conditions, logic_v, fields, dto, out, indexed, top=False)
            if sub is None:
                continue
            if php_truthy(node.get("negative", False)):
                inner = sub
                sub = lambda row, inner=inner: not inner(row)  # noqa: E731
            preds.append(sub)
            continue
        if as_list is None or len(as_list) not in (2, 3) or not isinstance(as_list[0], str):
            raise v3_error("INVALIDFILTEREXCEPTION", f"Unable to recognize filter expression `{_dump(node)}`")
        name = as_list[0]
        op_raw, value = ("=", as_list[1]) if len(as_list) == 2 else (as_list[1], as_list[2])
        if len(as_list) == 2 and _as_list(value) is not None:
            # The short form with an array means `in` (§5.4 example `["id", [1, 2]]`).
            op_raw = "in"
        op = _V3_OPS.get(str(op_raw).lower()) if isinstance(op_raw, str) else None
        if op is None:
            # DOCS tasks-task-result-list-rest-v3.md, "Possible Error Codes"; §2.3 table.
            raise v3_error("UNKNOWNFILTEROPERATOREXCEPTION", f"Unknown filter operator `{op_raw}`")
        spec = fields.get(name)
        if spec is None:
            # §2.3 table: an unknown field in filter/order.
            raise v3_error("UNKNOWNDTOPROPERTYEXCEPTION", f"Unknown field `{name}` for entity `{dto}`")
        if not spec.filterable:
            # DOCS tasks-task-list-rest-v3.md, "Possible Error Codes".
            raise v3_validation(
                name,
                f"In DTO `{dto}`, the `{name}` field requires the `Filterable` attribute for such a request",
            )
        ref = FieldRef(spec.name, v3_kind(spec))
        values = _v3_values(ref, op, value, name)
        if top and logic == "and" and _apply_hints(out, ref, op, values, indexed):
            continue
        preds.append(_condition(ref, "in" if op == "eq" and len(values) > 1 else op, values))
    if logic == "or":
        return _any(preds) if preds else None
    return _all(preds)


def _v3_values(ref: FieldRef, op: str, value: Any, name: str) -> list[Any]:
    items = _as_list(value)
    if op == "in":
        if not items:
            # §5.4: `in` takes a non-empty array. The texts of these three value errors are the sandbox's own
            # (docs/sandbox-deviations.md); the rules and the error code are §5.4 and rest-v3.md.
            raise v3_validation(name, f"The `in` operator for the field `{name}` requires a non-empty array")
        raw = items
    elif op == "between":
        if items is None or len(items) != 2:
            raise v3_validation(
                name, f"The `between` operator for the field `{name}` requires an array [from, to]"
            )
        raw = items
    else:
        if items is not None:
            raise v3_validation(name, f"The `{name}` field requires a scalar value for this request")
        raw = [value]
    try:
        out = [coerce(ref.kind, v) for v in raw]
    except _BadValue:
        # DOCS tasks-task-result-list-rest-v3.md: "The `taskId` field requires an `int` data type …".
        type_name = {"id": "int", "int": "int", "list_int": "int", "float": "float", "datetime": "DateTime"}
        raise v3_validation(
            name,
            f"The `{name}` field requires an `{type_name.get(ref.kind, 'string')}` data type for this request",
        ) from None
    return out


# ---------------------------------------------------------------------------------------------------------
# order and pagination


def v2_order(order: Any, resolve: Resolver, *, strict: bool = True) -> list[SortKey]:
    """Parse a v2 ``order`` object. `strict` raises like `crm.item.list`; classic methods skip unknown keys."""
    out: list[SortKey] = []
    for raw_key, raw_dir in _items(order):
        name = str(raw_key)
        direction = str(raw_dir).upper()
        ref = resolve(name)
        if ref is None:
            if strict:
                # DOCS crm-item-list.md: "… is not allowed in order".
                raise ApiError("INVALID_ARG_VALUE", f"Invalid order: field '{name}' is not allowed in order")
            continue
        if direction not in ("ASC", "DESC"):
            if strict:
                raise ApiError(
                    "INVALID_ARG_VALUE",
                    f"Invalid order: allowed sort directions are `ASC, DESC`. But got '{raw_dir}' for field '{name}'",
                )
            direction = "ASC"
        out.append((ref.key, direction == "DESC"))
    return out


def v3_order(order: Any, fields: Mapping[str, SimpleField], dto: str) -> list[SortKey]:
    out: list[SortKey] = []
    if order in (None, [], {}):
        return out
    if not isinstance(order, Mapping):
        # DOCS tasks-task-list-rest-v3.md, "Possible Error Codes" (INVALIDORDEREXCEPTION).
        raise v3_error("INVALIDORDEREXCEPTION", f"Unable to recognize sorting parameter `{_dump(order)}`")
    for name, raw_dir in order.items():
        spec = fields.get(str(name))
        if spec is None:
            # §2.3 table: an unknown field in filter/order.
            raise v3_error("UNKNOWNDTOPROPERTYEXCEPTION", f"Unknown field `{name}` for entity `{dto}`")
        direction = str(raw_dir).upper()
        if direction not in ("ASC", "DESC") or not spec.sortable:
            # DOCS tasks-task-list-rest-v3.md, "Possible Error Codes" (INVALIDORDEREXCEPTION).
            raise v3_error("INVALIDORDEREXCEPTION", f"Unable to recognize sorting parameter `{_dump(order)}`")
        out.append((spec.name, direction == "DESC"))
    return out


def v3_pagination(pagination: Any, cap: int) -> tuple[int, int]:
    """``pagination {page, limit, offset}`` -> (offset, limit), per §5.2.

    `limit` defaults to the method's cap and is clamped to it; 0 or a non-number is 400
    INVALIDPAGINATIONEXCEPTION and a negative limit is a 500, as measured (GH#531). `page` 0 or 1 is the
    first page (the JS SDK sends 0); with page > 1 the offset is computed from page and limit.
    """
    if pagination in (None, [], {}):
        return 0, cap
    if not isinstance(pagination, Mapping):
        raise v3_error(
            "INVALIDPAGINATIONEXCEPTION",
            f"Unable to recognize the pagination parameter `{_dump(pagination)}`",
        )

    def number(key: str) -> int | None:
        if key not in pagination or pagination[key] is None:
            return None
        n = strict_int(pagination[key])
        if n is None:
            raise v3_error(
                "INVALIDPAGINATIONEXCEPTION",
                f"Unable to recognize the pagination parameter `{_dump(pagination)}`",
            )
        return n

    limit = number("limit")
    page = number("page")
    offset = number("offset")
    if limit is None:
        limit = cap
    elif limit < 0:
        raise v3_error("INTERNAL_INTERNALEXCEPTION", "Internal error", 500)
    elif limit == 0:
        raise v3_error(
            "INVALIDPAGINATIONEXCEPTION",
            f"Unable to recognize the pagination parameter `{_dump(pagination)}`",
        )
    limit = min(limit, cap)
    if (page is not None and page < 0) or (offset is not None and offset < 0):
        raise v3_error(
            "INVALIDPAGINATIONEXCEPTION",
            f"Unable to recognize the pagination parameter `{_dump(pagination)}`",
        )
    if page is not None and page > 1:
        return (page - 1) * limit, limit
    return offset or 0, limit


def execute(
    table: Table,
    compiled: Compiled,
    *,
    order: list[SortKey] | None,
    offset: int,
    limit: int,
    count: bool,
) -> tuple[list[dict[str, Any]], int | None]:
    """Run a compiled filter against a table: index hints first, then the predicate."""
    if compiled.empty:
        return [], (0 if count else None)
    candidates: set[int] | None = None
    for ids in compiled.candidate_sets:
        candidates = set(ids) if candidates is None else candidates & ids
    for key, values in compiled.index_eq.items():
        found = set(table.ids_by(key, values))
        candidates = found if candidates is None else candidates & found
    return table.query(
        predicate=compiled.predicate,
        lo=compiled.lo,
        lo_incl=compiled.lo_incl,
        hi=compiled.hi,
        hi_incl=compiled.hi_incl,
        candidates=sorted(candidates) if candidates is not None else None,
        order=order,
        offset=offset,
        limit=limit,
        count=count,
    )


def v2_list(
    table: Table,
    compiled: Compiled,
    order: list[SortKey] | None,
    ctx: CallContext,
    cost_model: CostModel,
    *,
    page_size: int = 50,
) -> tuple[list[dict[str, Any]], int, int | None, float]:
    """One v2 list page (§3.1): (rows, total, next, cost).

    ``start >= 0`` is an offset with a counted total and `next` only while rows remain; ``start = -1`` is a
    keyset page: no count, ``total: 0`` and no `next` (§3.1, DOCS settings/performance/huge-data.md).
    """
    keyset = ctx.start < 0
    offset = 0 if keyset else ctx.start
    page, total = execute(table, compiled, order=order, offset=offset, limit=page_size, count=not keyset)
    cost = cost_model.list_cost(offset=offset, rows=len(page), counted=not keyset)
    if keyset or total is None:
        return page, 0, None, cost
    nxt = offset + len(page) if offset + len(page) < total else None
    return page, total, nxt, cost
