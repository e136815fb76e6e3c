"""Pure write planning for the Bitrix24 destination: row -> command, validation, result rows.

Nothing here does I/O. `destination.py` reads the rows, fetches the field metadata and runs the commands;
this module decides, for every input row, what would be sent (or why it cannot be sent) and turns command
outcomes into the rows of ``bitrix24_write_results`` / ``bitrix24_write_errors``.

Rules (documented in README.md, "Writing to Bitrix24"):

* A row with ``id`` is an update of the columns present, a row without ``id`` is an add, a row with a truthy
  ``_delete`` is a delete (it needs ``id``). Null cells (None / NaN) count as "not present", so a sparse
  DataFrame updates only the cells that are filled in; send ``""`` to clear a field.
* CRM entities are written through the universal ``crm.item.*`` family with camelCase fields (§7.2). Column
  names may use any Bitrix spelling (``stageId``, ``STAGE_ID``, ``UF_CRM_1``, ``ufCrm_1``): they are resolved
  against the portal's field metadata (its ``upperName``, the §7.3 mapping table, then an underscore- and
  case-insensitive match). Tasks are written through v2 ``tasks.task.*`` with UPPER_CASE fields (§7.4).
* Values are validated and coerced against the metadata (type, read-only, immutable, enumeration items,
  required on add) before anything is sent; a rejected row names the field in its error description.
* Values of ``crm_status`` fields (stages, sources, types) must be items of their ``crm.status`` directory
  (``statusType`` in the metadata); deal stages are looked up in their pipeline's own directory.
* ``marker_field`` and ``key=`` must name writable fields (:func:`check_write_options`), and an add's own
  marker must not already be on the portal (:func:`reject_existing_markers`): otherwise an add whose answer
  was lost could not be told apart from a record that was there before.
* ``row_json`` and ``key`` show integral floats as ints (:func:`as_written`): pandas widens integer columns
  with gaps to float.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any, Final, Literal, TypeVar

from bitrix24_source.fields import EntityFields, FieldMeta, Kind, kind_of, truthy

Operation = Literal["add", "update", "delete"]
_T = TypeVar("_T")
Family = Literal["crm_item", "tasks"]

RESULTS_TABLE: Final = "bitrix24_write_results"
ERRORS_TABLE: Final = "bitrix24_write_errors"
PLAN_TABLE: Final = "bitrix24_write_plan"

DELETE_COLUMN: Final = "_delete"
ID_COLUMNS: Final = ("id", "ID")

# Codes of the errors this module raises before sending; portal errors keep the portal's own code.
UNKNOWN_FIELD: Final = "UNKNOWN_FIELD"
READ_ONLY_FIELD: Final = "READ_ONLY_FIELD"
IMMUTABLE_FIELD: Final = "IMMUTABLE_FIELD"
INVALID_TYPE: Final = "INVALID_TYPE"
INVALID_ENUM_VALUE: Final = "INVALID_ENUM_VALUE"
REQUIRED_FIELD_MISSING: Final = "REQUIRED_FIELD_MISSING"
INVALID_ID: Final = "INVALID_ID"
DUPLICATE_KEY: Final = "DUPLICATE_KEY"
NOTHING_TO_UPDATE: Final = "NOTHING_TO_UPDATE"
DUPLICATE_KEY_ON_PORTAL: Final = "DUPLICATE_KEY_ON_PORTAL"
DUPLICATE_MARKER_ON_PORTAL: Final = "DUPLICATE_MARKER_ON_PORTAL"
INVALID_VALUE: Final = "INVALID_VALUE"  # a value the checks did not foresee (the exception is in the text)


@dataclass(frozen=True, slots=True)
class WriteTarget:
    """Where the rows of one table go: the method family and its parameter names.

    Attributes:
        entity: the table / entity name (``deals``, ``tasks``, ...).
        family: ``crm_item`` (crm.item.*, camelCase, §7.2) or ``tasks`` (v2 tasks.task.*, UPPER_CASE, §7.4).
        entity_type_id: crm.item entityTypeId (§7.1), None for tasks.
        marker_field: the field stamped with an idempotency marker on adds (canonical spelling).
    """

    entity: str
    family: Family
    entity_type_id: int | None
    marker_field: str

    @property
    def fields_method(self) -> str:
        return "crm.item.fields" if self.family == "crm_item" else "tasks.task.getFields"

    @property
    def list_method(self) -> str:
        return "crm.item.list" if self.family == "crm_item" else "tasks.task.list"

    @property
    def id_field(self) -> str:
        return "id" if self.family == "crm_item" else "ID"

    def fields_params(self) -> dict[str, Any]:
        return {"entityTypeId": self.entity_type_id} if self.family == "crm_item" else {}

    def command(
        self, operation: Operation, bitrix_id: int | None, fields: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """The (method, params) pair of one write."""
        if self.family == "crm_item":
            params: dict[str, Any] = {"entityTypeId": self.entity_type_id}
            if bitrix_id is not None:
                params["id"] = bitrix_id
            if operation != "delete":
                params["fields"] = dict(fields)
            return f"crm.item.{operation}", params
        params = {}
        if bitrix_id is not None:
            params["taskId"] = bitrix_id
        if operation != "delete":
            params["fields"] = dict(fields)
        return f"tasks.task.{operation}", params

    def lookup_params(self, field_name: str, value: Any) -> dict[str, Any]:
        """A list request for the records whose `field_name` equals `value` (one page: up to 50 of them)."""
        if self.family == "crm_item":
            # `=` is the "equals" prefix of the crm.item.list filter (§7.2).
            return {
                "entityTypeId": self.entity_type_id,
                "filter": {f"={field_name}": value},
                "select": ["id", field_name],
                "order": {"id": "ASC"},
            }
        return {"filter": {field_name: value}, "select": ["ID", field_name], "order": {"ID": "ASC"}}

    def lookup_rows(self, result: Any) -> list[dict[str, Any]]:
        """The rows of a lookup response (`items` for crm.item.list, `tasks` for tasks.task.list, §3.3)."""
        key = "items" if self.family == "crm_item" else "tasks"
        rows = result.get(key) if isinstance(result, Mapping) else result
        return [dict(row) for row in rows or [] if isinstance(row, Mapping)]


CRM_ENTITY_TYPE_IDS: Final = {"leads": 1, "deals": 2, "contacts": 3, "companies": 4}  # §7.1
WRITE_ENTITIES: Final = (*CRM_ENTITY_TYPE_IDS, "tasks")


def write_target(entity: str, marker_field: str | None = None) -> WriteTarget:
    """The write target of a table/entity name.

    Raises:
        ValueError: the entity cannot be written (the message lists the ones that can).
    """
    if entity in CRM_ENTITY_TYPE_IDS:
        return WriteTarget(entity, "crm_item", CRM_ENTITY_TYPE_IDS[entity], marker_field or "xmlId")
    if entity == "tasks":
        return WriteTarget(entity, "tasks", None, marker_field or "XML_ID")
    raise ValueError(
        f"Bitrix24 destination cannot write table {entity!r}: use one of {', '.join(WRITE_ENTITIES)} "
        "as the table name or pass entity=..."
    )


class WriteOptionError(ValueError):
    """A destination option names a field the portal cannot use for it (a configuration error)."""


# Generated markers (``b24w:...``) are text: a field of another type could not hold them.
_MARKER_TYPES: Final = frozenset({"string", "text"})


def check_write_options(target: WriteTarget, fields: EntityFields, key: str | None) -> None:
    """Check that ``marker_field`` and ``key=`` are fields the portal will store, before any row is sent.

    crm.item.add drops unknown fields without an error (§7.2) and the portal ignores values for read-only
    ones, so a marker or key written there would never be found again: every resend would duplicate the add.

    Raises:
        WriteOptionError: the option and the field it names, and what is wrong with it.
    """
    checks = [("marker_field", target.marker_field)] + ([("key", key)] if key else [])
    for option, name in checks:
        canonical = fields.resolve(name)
        if canonical is None:
            raise WriteOptionError(
                f"Bitrix24 destination option {option}={name!r}: {target.entity} has no field {name!r} "
                f"(the portal would silently drop its values, so the rows could never be found again)"
            )
        meta = fields.fields[canonical]
        if meta.read_only:
            raise WriteOptionError(
                f"Bitrix24 destination option {option}={name!r}: field {canonical!r} of {target.entity} is "
                "read-only (the portal would not store its values, so the rows could never be found again)"
            )
        if option == "marker_field" and (meta.type not in _MARKER_TYPES or meta.multiple):
            kind = f"a multiple {meta.type}" if meta.multiple else meta.type
            raise WriteOptionError(
                f"Bitrix24 destination option marker_field={name!r}: field {canonical!r} of {target.entity} "
                f"is {kind}, but markers are text: choose a single-valued string field"
            )


# --- value coercion ----------------------------------------------------------------------------------------


class _Invalid(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


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


def _parsed_int(value: Any, meta: FieldMeta) -> int | None:
    """``value`` as an integer, or None when it is not one (the planner reports that row on its own)."""
    try:
        return _as_int(value, meta)
    except _Invalid:
        return None


def _as_int(value: Any, meta: FieldMeta) -> int:
    if isinstance(value, bool):
        raise _Invalid(INVALID_TYPE, f"field {meta.name!r} expects an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, (float, Decimal)) and _finite(value) and value == int(value):
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise _Invalid(INVALID_TYPE, f"field {meta.name!r} expects an integer, got {value!r}")


def _as_float(value: Any, meta: FieldMeta) -> int | float:
    if isinstance(value, bool):
        raise _Invalid(INVALID_TYPE, f"field {meta.name!r} expects a number, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, (float, Decimal)) and _finite(value):
        return float(value)
    number = _parsed(float, value) if isinstance(value, str) else None
    if number is not None and math.isfinite(number):
        return number
    raise _Invalid(INVALID_TYPE, f"field {meta.name!r} expects a number, got {value!r}")


def _as_bool(value: Any, meta: FieldMeta) -> str:
    # Booleans do not survive the v2 query encoding (§4.1): send "Y"/"N" explicitly.
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, int) and value in (0, 1):
        return "Y" if value else "N"
    if isinstance(value, str) and value.strip().upper() in {"Y", "N", "TRUE", "FALSE", "1", "0", "YES", "NO"}:
        return "Y" if value.strip().upper() in {"Y", "TRUE", "1", "YES"} else "N"
    raise _Invalid(INVALID_TYPE, f"field {meta.name!r} expects a boolean (Y/N), got {value!r}")


def _as_date(value: Any, meta: FieldMeta) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    parsed = _parsed(date.fromisoformat, value.strip()[:10]) if isinstance(value, str) else None
    if parsed is not None:
        return parsed.isoformat()
    raise _Invalid(INVALID_TYPE, f"field {meta.name!r} expects a date (YYYY-MM-DD), got {value!r}")


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
    raise _Invalid(INVALID_TYPE, f"field {meta.name!r} expects a date-time (ISO 8601), got {value!r}")


def _as_string(value: Any, meta: FieldMeta) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise _Invalid(INVALID_TYPE, f"field {meta.name!r} expects a string, got a boolean")
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    raise _Invalid(INVALID_TYPE, f"field {meta.name!r} expects a string, got {type(value).__name__}")


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
    raise _Invalid(
        INVALID_ENUM_VALUE, f"field {meta.name!r} does not allow value {value!r} (allowed: {allowed})"
    )


_COERCERS: Final[dict[Kind | None, Callable[[Any, FieldMeta], Any]]] = {
    "int": _as_int,
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
            raise _Invalid(INVALID_TYPE, f"field {meta.name!r} expects a finite number, got {value!r}")
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
    """Validate and convert one value to what the portal expects for `meta` (raises _Invalid)."""
    if meta.multiple:
        if isinstance(value, str):
            value = _parse_json_list(value)
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        return [_coerce_scalar(item, meta) for item in items if not is_missing(item)]
    if isinstance(value, (list, tuple)):
        raise _Invalid(INVALID_TYPE, f"field {meta.name!r} takes a single value, got a list")
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
        return f"<{type(value).__name__}: str() failed: {_describe(exc)}>"


# --- crm.status directories ---------------------------------------------------------------------------------

# Deal stages live in one directory per pipeline: DEAL_STAGE for pipeline 0, DEAL_STAGE_<id> for the others,
# whose stage ids carry a ``C<id>:`` prefix (DOCS api-reference/crm/status/crm-status-entity-types.md).
DEAL_STAGE: Final = "DEAL_STAGE"
_STAGE_PREFIX: Final = re.compile(r"C(\d+):")
_FEW: Final = 8  # allowed values listed in an error message


def stage_directory(category: int) -> str:
    """The ENTITY_ID of a deal pipeline's stages."""
    return DEAL_STAGE if category == 0 else f"{DEAL_STAGE}_{category}"


def _directory_of(meta: FieldMeta, value: str, category: int | None) -> tuple[str, str]:
    """The directory a value of `meta` must come from, and how to name it in a message."""
    assert meta.status_type is not None
    if meta.status_type != DEAL_STAGE:
        return meta.status_type, ""
    if category is None:
        # Without a pipeline in the row, the stage id names it: "C3:NEW" is pipeline 3, "NEW" pipeline 0.
        prefix = _STAGE_PREFIX.match(value)
        category = int(prefix.group(1)) if prefix else 0
    return stage_directory(category), f" in pipeline {category}"


def _row_category(fields: EntityFields, values: Mapping[str, Any]) -> int | None:
    for name, value in values.items():
        meta = fields.fields.get(name)
        if meta is not None and meta.type == "crm_category" and isinstance(value, int):
            return value
    return None


def _allowed(items: Mapping[str, str]) -> str:
    if not items:
        return "none: the portal lists no values"
    shown = ", ".join(list(items)[:_FEW])
    return shown if len(items) <= _FEW else f"{shown}, ... ({len(items) - _FEW} more)"


def _directory_value(
    value: str, meta: FieldMeta, category: int | None, directories: Mapping[str, Mapping[str, str]]
) -> str:
    entity_id, where = _directory_of(meta, value, category)
    items = directories.get(entity_id)
    if items is None or value in items:
        return value
    by_name = [status_id for status_id, name in items.items() if name == value]
    if by_name and meta.status_type == DEAL_STAGE and category is None:
        # Stage names repeat across pipelines ("New", "In progress"): without the row's categoryId the
        # pipeline is a guess, and a wrong guess would send a stage the user never wrote.
        raise _Invalid(
            INVALID_ENUM_VALUE,
            f"field {meta.name!r}: stage name {value!r} needs the row's categoryId to pick the pipeline; "
            f"give categoryId or use the stage id (e.g. {by_name[0]!r} in pipeline 0, 'C<n>:…' in pipeline n)",
        )
    if len(by_name) == 1:
        return by_name[0]
    raise _Invalid(
        INVALID_ENUM_VALUE,
        f"field {meta.name!r} does not allow value {value!r}{where} (allowed: {_allowed(items)})",
    )


def _check_directories(
    fields: EntityFields, fields_out: dict[str, Any], directories: Mapping[str, Mapping[str, str]]
) -> list[tuple[str, str]]:
    """Check (and normalise: a unique NAME becomes its STATUS_ID) the directory values of a planned row."""
    problems: list[tuple[str, str]] = []
    category = _row_category(fields, fields_out)
    for name, value in fields_out.items():
        meta = fields.fields[name]
        if meta.status_type is None or value == "":
            continue
        try:
            if isinstance(value, list):
                fields_out[name] = [_directory_value(str(v), meta, category, directories) for v in value]
            else:
                fields_out[name] = _directory_value(str(value), meta, category, directories)
        except _Invalid as exc:
            problems.append((exc.code, exc.message))
    return problems


def needed_directories(fields: EntityFields, rows: Iterable[Mapping[str, Any]]) -> set[str]:
    """The ENTITY_IDs of the directories the directory-typed values in `rows` are checked against."""
    needed: set[str] = set()
    for row in rows:
        present: dict[str, Any] = {}
        for column, value in row.items():
            canonical = fields.resolve(str(column))
            if canonical is not None and not is_missing(value):
                meta = fields.fields[canonical]
                if meta.type == "crm_category":
                    present[canonical] = _parsed_int(value, meta)
                elif meta.status_type is not None:
                    present[canonical] = value
        category = _row_category(fields, present)
        for name, value in present.items():
            meta = fields.fields[name]
            if meta.status_type is None:
                continue
            for item in value if isinstance(value, (list, tuple)) else [value]:
                needed.add(_directory_of(meta, str(item), category)[0])
    return needed


def parse_directory(result: Any) -> dict[str, str]:
    """A ``crm.status.list`` result (``[{"STATUS_ID", "NAME", ...}]``, DOCS crm-status-list.md) as an ordered
    STATUS_ID -> NAME map."""
    items = result if isinstance(result, list) else []
    return {
        str(item["STATUS_ID"]): str(item.get("NAME", ""))
        for item in items
        if isinstance(item, Mapping) and item.get("STATUS_ID") is not None
    }


# --- planning ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedRow:
    """The decision for one input row: a command to send, or a validation error.

    Attributes:
        row_number: 0-based position of the row in its load job file.
        operation: add / update / delete, or None when the row could not even be classified.
        key: what identifies the row to a human: the id, the upsert key value or the add marker.
        bitrix_id: the record id for updates and deletes.
        method, params: the command (None for rejected rows).
        marker: the idempotency marker value stamped on an add (looked up before any resend).
        marker_field: the canonical field holding the marker (the upsert key or the marker field).
        marker_supplied: the marker is the user's own marker field value (not a key, not generated): it has
            to be looked up before the first send, since it may already be on the portal.
        error_code, error_description: set when validation rejected the row.
        original: the input row as received (JSON-safe), for the errors table.
    """

    row_number: int
    operation: Operation | None
    key: str | None
    bitrix_id: int | None
    method: str | None
    params: dict[str, Any] | None
    marker: str | None
    error_code: str | None
    error_description: str | None
    original: dict[str, Any]
    marker_field: str | None = None
    marker_supplied: bool = False

    @property
    def is_valid(self) -> bool:
        return self.error_code is None


@dataclass(frozen=True, slots=True)
class PlanOptions:
    """How rows are classified.

    Attributes:
        key: upsert key column (canonical or any Bitrix spelling); rows without id are resolved by it.
        resolved_ids: key value (as str) -> record id found on the portal for the rows of this chunk.
        ambiguous_keys: key value -> the ids of the several records that hold it on the portal (the row is
            rejected: which one to update is not the destination's guess to make).
        marker_prefix: the deterministic prefix of add markers, e.g. ``"b24w:<load_id>:<file_id>"``.
        directories: crm.status directories (ENTITY_ID -> STATUS_ID -> NAME) that stage, source and type
            values are checked against; None skips the check, and a directory missing from the map is
            left to the portal.
    """

    key: str | None = None
    resolved_ids: Mapping[str, int] = field(default_factory=dict)
    ambiguous_keys: Mapping[str, Sequence[int]] = field(default_factory=dict)
    marker_prefix: str = "b24w"
    directories: Mapping[str, Mapping[str, str]] | None = None


def key_value(row: Mapping[str, Any], key: str, fields: EntityFields) -> str | None:
    """The upsert key value of a row (any spelling of the key column), as a string."""
    canonical = fields.resolve(key) or key
    for column, value in row.items():
        if (column == key or fields.resolve(column) == canonical) and not is_missing(value):
            # A pandas integer column with gaps holds floats: key 123 must not be looked up as "123.0".
            return str(as_written(value))
    return None


def _row_id(row: Mapping[str, Any]) -> Any:
    for column in ID_COLUMNS:
        if column in row and not is_missing(row[column]):
            return row[column]
    return None


def _reject(
    row_number: int,
    original: dict[str, Any],
    operation: Operation | None,
    key: str | None,
    code: str,
    text: str,
) -> PlannedRow:
    return PlannedRow(row_number, operation, key, None, None, None, None, code, text, original)


def plan_row(
    row: Mapping[str, Any], row_number: int, target: WriteTarget, fields: EntityFields, options: PlanOptions
) -> PlannedRow:
    """Decide what to send for one row (pure; see the module docstring for the rules)."""
    original = original_row(row)
    delete = DELETE_COLUMN in row and not is_missing(row[DELETE_COLUMN]) and truthy(row[DELETE_COLUMN])
    raw_id = _row_id(row)
    key_text = key_value(row, options.key, fields) if options.key else None

    bitrix_id: int | None = None
    if raw_id is not None:
        try:
            bitrix_id = _as_int(raw_id, FieldMeta(name="id", type="integer"))
        except _Invalid:
            return _reject(
                row_number,
                original,
                None,
                str(as_written(raw_id)),
                INVALID_ID,
                f"field 'id' is not an integer: {raw_id!r}",
            )
        if bitrix_id <= 0:
            return _reject(
                row_number,
                original,
                None,
                str(as_written(raw_id)),
                INVALID_ID,
                f"field 'id' must be positive: {raw_id!r}",
            )
    elif key_text is not None and key_text in options.ambiguous_keys:
        ids = list(options.ambiguous_keys[key_text])
        shown = ", ".join(str(i) for i in ids[:5]) + (", ..." if len(ids) > 5 else "")
        return _reject(
            row_number,
            original,
            None,
            key_text,
            DUPLICATE_KEY_ON_PORTAL,
            f"key {options.key!r} = {key_text!r} matches several records on the portal (ids {shown}); "
            "update them by id",
        )
    elif key_text is not None and key_text in options.resolved_ids:
        bitrix_id = options.resolved_ids[key_text]

    operation: Operation = "delete" if delete else ("update" if bitrix_id is not None else "add")
    marker: str | None = None
    marker_field: str | None = None
    marker_supplied = False
    if operation == "delete":
        if bitrix_id is None:
            return _reject(
                row_number, original, "delete", key_text, INVALID_ID, "field 'id' is required to delete a row"
            )
        method, params = target.command("delete", bitrix_id, {})
        return PlannedRow(
            row_number, "delete", str(bitrix_id), bitrix_id, method, params, None, None, None, original
        )

    fields_out: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for column, value in row.items():
        name = str(column)
        if name in ID_COLUMNS or name == DELETE_COLUMN or name.startswith("_dlt_") or is_missing(value):
            continue
        canonical = fields.resolve(name)
        if canonical is None:
            problems.append((UNKNOWN_FIELD, f"field {name!r} does not exist on {target.entity}"))
            continue
        meta = fields.fields[canonical]
        if meta.read_only:
            problems.append((READ_ONLY_FIELD, f"field {name!r} is read-only"))
            continue
        if meta.immutable and operation == "update":
            problems.append((IMMUTABLE_FIELD, f"field {name!r} can only be set when the record is added"))
            continue
        try:
            fields_out[canonical] = coerce_value(value, meta)
        except _Invalid as exc:
            problems.append((exc.code, exc.message))
        except Exception as exc:  # an unforeseen value costs its own row (recorded below), not the whole job
            problems.append(
                (INVALID_VALUE, f"field {name!r}: {value!r} could not be checked: {_describe(exc)}")
            )
    if options.directories is not None:
        problems.extend(_check_directories(fields, fields_out, options.directories))

    if operation == "add":
        for required in fields.required:
            if required not in fields_out or fields_out[required] in ("", []):
                problems.append((REQUIRED_FIELD_MISSING, f"required field {required!r} is missing"))
        marker_field = fields.resolve(target.marker_field) or target.marker_field
        if options.key and key_text is not None:
            marker = key_text
            marker_field = fields.resolve(options.key) or options.key
        elif not is_missing(fields_out.get(marker_field)) and fields_out.get(marker_field) != "":
            marker = str(fields_out[marker_field])
            marker_supplied = True
        else:
            marker = f"{options.marker_prefix}:{row_number}"
            fields_out[marker_field] = marker
    elif not fields_out and not problems:
        problems.append((NOTHING_TO_UPDATE, "the row has an id but no field to update"))

    key = key_text if key_text is not None else (str(bitrix_id) if bitrix_id is not None else marker)
    if problems:
        code = problems[0][0]
        return _reject(row_number, original, operation, key, code, "; ".join(text for _, text in problems))
    method, params = target.command(operation, bitrix_id, fields_out)
    return PlannedRow(
        row_number,
        operation,
        key,
        bitrix_id,
        method,
        params,
        marker,
        None,
        None,
        original,
        marker_field if operation == "add" else None,
        marker_supplied,
    )


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def plan_row_or_reject(
    row: Mapping[str, Any], row_number: int, target: WriteTarget, fields: EntityFields, options: PlanOptions
) -> PlannedRow:
    """:func:`plan_row`, except that a failure nobody foresaw becomes this row's ``INVALID_VALUE`` error
    (with the exception in its description) instead of failing the whole load job."""
    try:
        return plan_row(row, row_number, target, fields, options)
    except Exception as exc:  # recorded as the row's error: it reaches the errors table, with the row
        original = original_row(row)
        return _reject(
            row_number,
            original,
            None,
            None,
            INVALID_VALUE,
            f"row {row_number} could not be planned: {_describe(exc)}",
        )


def mark_duplicate_keys(rows: Sequence[PlannedRow]) -> list[PlannedRow]:
    """Reject every add after the first that carries the same marker (two adds of one key in one chunk)."""
    seen: set[str] = set()
    out: list[PlannedRow] = []
    for row in rows:
        if row.is_valid and row.operation == "add" and row.marker is not None:
            if row.marker in seen:
                out.append(
                    _reject(
                        row.row_number,
                        row.original,
                        "add",
                        row.key,
                        DUPLICATE_KEY,
                        f"key {row.marker!r} appears more than once in the same batch of rows",
                    )
                )
                continue
            seen.add(row.marker)
        out.append(row)
    return out


def reject_existing_markers(
    rows: Sequence[PlannedRow], existing: Mapping[str, Sequence[int]]
) -> list[PlannedRow]:
    """Reject the adds whose own marker value is already held by records on the portal.

    `existing` maps marker values to the ids holding them, looked up before the row's first send. Such an add
    could not be verified after an unknown outcome (the marker would be found whether or not it landed), so it
    is not sent: ``DUPLICATE_MARKER_ON_PORTAL`` names the records; update them by id instead.
    """
    out: list[PlannedRow] = []
    for row in rows:
        ids = list(existing.get(row.marker, ())) if row.marker is not None else []
        if row.is_valid and row.operation == "add" and row.marker_supplied and ids:
            shown = ", ".join(str(i) for i in ids[:5]) + (", ..." if len(ids) > 5 else "")
            out.append(
                _reject(
                    row.row_number,
                    row.original,
                    "add",
                    row.key,
                    DUPLICATE_MARKER_ON_PORTAL,
                    f"marker {row.marker_field!r} = {row.marker!r} is already held on the portal by "
                    f"id {shown}; update that record by id, or give this row a marker of its own",
                )
            )
            continue
        out.append(row)
    return out


def added_id(method: str, result: Any) -> int | None:
    """The id of the record an add created: ``{"item": {"id": 342}}`` (§7.2) or ``{"task": {"id": "3711"}}``
    (§7.4); a bare int id as the classic methods return (§7.3)."""
    node = result
    if isinstance(node, Mapping):
        node = node.get("item", node.get("task", node))
    if isinstance(node, Mapping):
        node = node.get("id", node.get("ID"))
    return as_id(node)


def as_id(value: Any) -> int | None:
    """A record id as the portal prints it: an int, or a string of digits (classic methods, §2.4)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one planned row."""

    status: Literal["ok", "error", "planned"]
    bitrix_id: int | None = None
    error_code: str | None = None
    error_description: str | None = None


_IDENTITY_COLUMNS: Final = ("load_id", "table_name", "job_id", "row_number", "key", "operation")


def _identity(planned: PlannedRow, *, load_id: str, table: str, job_id: str) -> dict[str, Any]:
    """The columns that name an input row, shared by the results, errors and plan tables."""
    return {
        "load_id": load_id,
        "table_name": table,
        "job_id": job_id,
        "row_number": planned.row_number,
        "key": planned.key,
        "operation": planned.operation,
    }


def result_row(
    planned: PlannedRow, outcome: Outcome, *, load_id: str, table: str, job_id: str, written_at: datetime
) -> dict[str, Any]:
    """One row of ``bitrix24_write_results``."""
    return {
        **_identity(planned, load_id=load_id, table=table, job_id=job_id),
        "bitrix_id": outcome.bitrix_id if outcome.bitrix_id is not None else planned.bitrix_id,
        "status": outcome.status,
        "error_code": outcome.error_code,
        "error_description": outcome.error_description,
        "written_at": written_at,
    }


def error_row(result: Mapping[str, Any], planned: PlannedRow) -> dict[str, Any]:
    """One row of ``bitrix24_write_errors``: the result row plus the original input row as JSON."""
    return {
        **{column: result[column] for column in _IDENTITY_COLUMNS},
        "error_code": result["error_code"],
        "error_description": result["error_description"],
        "row_json": json.dumps(planned.original, ensure_ascii=False, sort_keys=True),
        "written_at": result["written_at"],
    }


def plan_row_record(planned: PlannedRow, *, load_id: str, table: str, job_id: str) -> dict[str, Any]:
    """One row of ``bitrix24_write_plan`` (dry runs): the command that would be sent."""
    return {
        **_identity(planned, load_id=load_id, table=table, job_id=job_id),
        "method": planned.method,
        "params_json": json.dumps(json_safe(planned.params), ensure_ascii=False, sort_keys=True),
    }
