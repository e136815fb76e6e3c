"""Write planning for the Bitrix24 destination: the rows of one input -> commands or rejections; no I/O of its own.

:func:`plan_rows` decides, for every row of a load job file, what would be sent (or why it cannot be sent, or
that it is already on the portal). The two portal look-ups it needs (upsert keys, add markers) come in as a
function, so the rules below are tested without HTTP. Values are checked in :mod:`.coerce`, directory values in :mod:`.directories`, and the
method family of each entity is :mod:`.targets`.

Rules (documented in README.md, "Writing to Bitrix24"):

* A row with ``id`` is an update of the columns present, a row without ``id`` is an add, a row with a truthy
  ``_delete`` is a delete (it needs ``id``). Null cells (None / NaN) count as "not present", so a sparse
  DataFrame updates only the cells that are filled in; send ``""`` to clear a field.
* Column names may use any Bitrix spelling (``stageId``, ``STAGE_ID``, ``UF_CRM_1``, ``ufCrm_1``): they are
  resolved against the portal's field metadata (its ``upperName``, the §7.3 mapping table, then an
  underscore- and case-insensitive match).
* Values are validated and coerced against the metadata (type, read-only, immutable, enumeration items,
  required on add) before anything is sent; a rejected row names the field in its error description.
* With ``key=``, rows without ``id`` are looked up by their key: one match makes an update, several reject
  the row (``DUPLICATE_KEY_ON_PORTAL``), none an add.
* Every add carries a marker in the target's marker field (leads, deals, contacts, companies ``originId``;
  invoices and smart processes ``xmlId``; tasks ``XML_ID``): the upsert key value with ``key=``, the row's
  own marker-field value, or ``b24dlt:<hex>`` (:func:`add_marker`) derived from the entity, the row's planned
  values and its occurrence number among identical rows of the input. A re-run computes the same markers;
  adds whose marker is already on the portal are ``already_applied``. Quotes have no field for a marker: their
  adds need ``key=`` or ``marker_field=`` (else ``MARKER_FIELD_MISSING``); deal product rows have none either
  and are recognised by their deal's rows instead (:mod:`.productrows`).
* Keys are values: 1001, 1001.0, ``numpy.int64(1001)``, ``Decimal("1001")`` and ``"1001"`` are one key
  (:func:`normalise_key`) for the look-up, the value sent and the marker.
* The same id or key twice in one input is ``DUPLICATE_IN_INPUT`` for every occurrence after the first;
  ``id`` and ``ID`` (or two spellings of one field) with different values is ``CONFLICTING_COLUMNS``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Final, Literal

from bitrix24_source.destination.coerce import (
    INVALID_TYPE,
    InvalidValue,
    Unencodable,
    as_int,
    coerce_value,
    describe,
    is_missing,
    original_row,
)
from bitrix24_source.destination.directories import check_directories
from bitrix24_source.destination.targets import Operation, WriteTarget, comm_key, task_word
from bitrix24_source.fields import EntityFields, FieldMeta, truthy

DELETE_COLUMN: Final = "_delete"
ID_COLUMNS: Final = ("id", "ID")

# Codes of the row errors found before sending (value errors: .coerce); portal errors keep the portal's code.
UNKNOWN_FIELD: Final = "UNKNOWN_FIELD"
READ_ONLY_FIELD: Final = "READ_ONLY_FIELD"
IMMUTABLE_FIELD: Final = "IMMUTABLE_FIELD"
REQUIRED_FIELD_MISSING: Final = "REQUIRED_FIELD_MISSING"
INVALID_ID: Final = "INVALID_ID"
DUPLICATE_IN_INPUT: Final = "DUPLICATE_IN_INPUT"
CONFLICTING_COLUMNS: Final = "CONFLICTING_COLUMNS"
NOTHING_TO_UPDATE: Final = "NOTHING_TO_UPDATE"
NOTHING_TO_ADD: Final = "NOTHING_TO_ADD"
DUPLICATE_KEY_ON_PORTAL: Final = "DUPLICATE_KEY_ON_PORTAL"
DUPLICATE_MARKER_ON_PORTAL: Final = "DUPLICATE_MARKER_ON_PORTAL"
MARKER_FIELD_MISSING: Final = "MARKER_FIELD_MISSING"  # an add to an entity without an outside-id field
INVALID_VALUE: Final = "INVALID_VALUE"  # a value the checks did not foresee (the exception is in the text)
NOT_FOUND: Final = "NOT_FOUND"  # the portal's own code for a missing record (§7.2), found before sending
LOAD_ABORTED: Final = "LOAD_ABORTED"  # the load failed for good before this row had an outcome

MARKER_PREFIX: Final = "b24dlt:"
ORIGINATOR: Final = "bitrix24-dlt"  # originatorId of every CRM record this tool adds (users can filter by it)
_MARKER_HEX: Final = 32
_INTEGRAL_TEXT: Final = re.compile(r"-?(0|[1-9]\d*)(\.0+)?")

LookUp = Callable[[str, Sequence[str]], Mapping[str, Sequence[int]]]
"""``look_up(field_name, values)``: each value held by records on the portal -> their ids (absent: none)."""


@dataclass(frozen=True, slots=True)
class PlannedRow:
    """The decision for one input row: a command to send, a validation error, or "already on the portal".

    Attributes:
        row_number: 0-based position of the row in its load job file.
        operation: add / update / delete, or None when the row could not even be classified.
        key: what identifies the row to a human: the id, the upsert key value or the add marker.
        bitrix_id: the record id for updates and deletes.
        method, params: the command (None for rejected rows).
        marker: the idempotency marker value stamped on an add (looked up before the first send).
        error_code, error_description: set when validation rejected the row.
        original: the input row as received (JSON-safe), for the errors table.
        marker_field: the canonical field holding the marker (the upsert key or the marker field).
        index: the row's own label in the user's input (a DataFrame's index value), when it travelled along.
        existing_id: the record that already holds this add's marker (found before sending): the row is not
            sent, its result is ``already_applied`` (or ``ok`` when an earlier attempt may have sent it).
        content: an add's planned values in canonical JSON, from which its generated marker is derived; None
            when the marker is the key or the row's own value.
        keyed: the add's marker is its ``key=`` value (already looked up as a key).
        error_field: the input column (or field) the first error is about, for the errors table.
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
    index: Any = None
    existing_id: int | None = None
    content: str | None = None
    keyed: bool = False
    error_field: str | None = None

    @property
    def is_valid(self) -> bool:
        return self.error_code is None

    @property
    def to_send(self) -> bool:
        return self.error_code is None and self.existing_id is None


Status = Literal["ok", "error", "planned", "already_applied"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one planned row."""

    status: Status
    bitrix_id: int | None = None
    error_code: str | None = None
    error_description: str | None = None


@dataclass(frozen=True, slots=True)
class PlanOptions:
    """How rows are classified.

    Attributes:
        key: upsert key column (canonical or any Bitrix spelling); rows without id are resolved by it.
        resolved_ids: key value -> record id found on the portal (:func:`plan_rows` fills it, and
            `ambiguous_keys`, from its key look-up).
        ambiguous_keys: key value -> the ids of the several records that hold it on the portal (the row is
            rejected: which one to update is not the destination's guess to make).
        directories: crm.status directories (ENTITY_ID -> STATUS_ID -> NAME) that stage, source and type
            values are checked against; None skips the check, and a directory missing from the map is
            left to the portal.
        allow_duplicates: add again on purpose: no marker look-up before sending, and generated markers
            are salted with `salt` (the load id) so that they are this run's own.
        salt: see `allow_duplicates`; empty otherwise, so that a re-run derives the same markers.
        existing: pre-flight: the records that the rows' ids name, as they are on the portal now (id ->
            ``categoryId`` and the fields the rows fill in); an id missing here is ``NOT_FOUND`` before
            anything is sent, and an update whose values it already holds is ``already_applied``. None:
            not checked (the portal answers for them).
    """

    key: str | None = None
    resolved_ids: Mapping[str, int] = field(default_factory=dict)
    ambiguous_keys: Mapping[str, Sequence[int]] = field(default_factory=dict)
    directories: Mapping[str, Mapping[str, str]] | None = None
    allow_duplicates: bool = False
    salt: str = ""
    existing: Mapping[int, Mapping[str, Any]] | None = None


def normalise_key(value: Any) -> str:
    """A key as one text, whatever type carried it: integral numbers (1001, 1001.0, numpy.int64(1001),
    Decimal("1001"), "1001.0") are their integer digits; pandas widens an integer column with gaps to float,
    and the portal stores the text we send, so "1001.0" and "1001" must never be two keys."""
    if isinstance(value, bool):
        return str(value)
    if hasattr(value, "item") and callable(value.item) and type(value).__module__ == "numpy":
        value = value.item()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return str(int(value))
    if isinstance(value, str) and _INTEGRAL_TEXT.fullmatch(value):
        return str(int(float(value))) if "." in value else value
    return str(value)


def add_marker(entity: str, content: str, occurrence: int, salt: str = "") -> str:
    """The generated marker of an add: ``b24dlt:`` + 32 hex digits of sha256(entity, content, occurrence).

    `content` is the row's planned values in canonical JSON (:func:`_content`); `occurrence` is k for the k-th
    row of the input with that content, so identical rows are distinct adds, and a re-run of the same input
    derives the same markers. `salt` (``allow_duplicates``) makes them this run's own.
    """
    text = json.dumps([entity, content, occurrence] + ([salt] if salt else []), ensure_ascii=False)
    return MARKER_PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()[:_MARKER_HEX]


def as_id_or_none(value: Any) -> int | None:
    """A record id or category as the portal prints it (an int or a string of digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def row_id(row: Mapping[str, Any]) -> int | None:
    """The positive integer id of a row, or None (no id, or one that is not an id)."""
    raw = _row_id(row)
    if raw is None:
        return None
    try:
        value = as_int(raw, FieldMeta(name="id", type="integer"))
    except InvalidValue:
        return None
    return value if value > 0 else None


def holds_values(record: Mapping[str, Any], sent: Mapping[str, Any]) -> bool:
    """True when `record` (as the portal lists it) holds every value of `sent`, compared as values: 5, 5.0
    and "5" are one value, lists compare as sets, None and "" are both empty. A value that may differ only in
    form (a date against a date-time) counts as different: then the update is simply sent."""

    def same(a: Any, b: Any) -> bool:
        if isinstance(a, list) or isinstance(b, list):
            a_items = a if isinstance(a, list) else [a]
            b_items = b if isinstance(b, list) else [b]
            return sorted(normalise_key(x) for x in a_items) == sorted(normalise_key(x) for x in b_items)
        if a in (None, "") or b in (None, ""):
            return a in (None, "") and b in (None, "")
        if isinstance(a, (int, float)) and isinstance(b, (int, float, str)):
            try:
                return float(a) == float(b)
            except ValueError:
                return False
        return normalise_key(a) == normalise_key(b)

    return all(name in record and same(value, record[name]) for name, value in sent.items())


def _content(values: Mapping[str, Any]) -> str:
    return json.dumps(values, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def key_value(row: Mapping[str, Any], key: str, fields: EntityFields) -> str | None:
    """The upsert key value of a row (any spelling of the key column), normalised (:func:`normalise_key`)."""
    canonical = fields.resolve(key) or key
    for column, value in row.items():
        same = column == key or fields.resolve(column) == canonical
        if comm_key(key) is not None:
            same = str(column).lower() == key.lower()  # "email" / "EMAIL": a key, not a field
        if same and not is_missing(value):
            text = normalise_key(value)
            return text.strip() if comm_key(key) is not None else text
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
    field_name: str | None = None,
) -> PlannedRow:
    return PlannedRow(
        row_number, operation, key, None, None, None, None, code, text, original, error_field=field_name
    )


def aborted_row(row_number: int, row: Mapping[str, Any], index: Any, text: str) -> PlannedRow:
    """The result of a row whose load was aborted before it had an outcome (``LOAD_ABORTED``)."""
    return replace(_reject(row_number, original_row(row), None, None, LOAD_ABORTED, text), index=index)


def _unencodable(row: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first value :mod:`.rows` could not carry: (column, why)."""
    for column, value in row.items():
        if isinstance(value, Unencodable):
            return str(column), value.reason
    return None


def plan_row(
    row: Mapping[str, Any], row_number: int, target: WriteTarget, fields: EntityFields, options: PlanOptions
) -> PlannedRow:
    """Decide what to send for one row (pure; see the module docstring for the rules).

    A generated add marker is not stamped here: it needs the row's occurrence number in the whole input,
    which :func:`plan_rows` knows (:func:`stamp_marker`).
    """
    original = original_row(row)
    bad = _unencodable(row)
    if bad is not None:
        return _reject(
            row_number,
            original,
            None,
            None,
            INVALID_TYPE,
            f"row {row_number}, field {bad[0]!r}: {bad[1]}",
            bad[0],
        )
    delete = DELETE_COLUMN in row and not is_missing(row[DELETE_COLUMN]) and truthy(row[DELETE_COLUMN])
    ids = [(c, row[c]) for c in ID_COLUMNS if c in row and not is_missing(row[c])]
    if len(ids) == 2 and normalise_key(ids[0][1]) != normalise_key(ids[1][1]):
        return _reject(
            row_number,
            original,
            None,
            None,
            CONFLICTING_COLUMNS,
            f"columns 'id' and 'ID' disagree: {ids[0][1]!r} and {ids[1][1]!r}; keep one of them",
            "id",
        )
    raw_id = _row_id(row)
    key_text = key_value(row, options.key, fields) if options.key else None

    bitrix_id: int | None = None
    if raw_id is not None:
        try:
            bitrix_id = as_int(raw_id, FieldMeta(name="id", type="integer"))
        except InvalidValue:
            return _reject(
                row_number,
                original,
                None,
                normalise_key(raw_id),
                INVALID_ID,
                f"field 'id' is not an integer: {raw_id!r}",
                "id",
            )
        if bitrix_id <= 0:
            return _reject(
                row_number,
                original,
                None,
                normalise_key(raw_id),
                INVALID_ID,
                f"field 'id' must be positive: {raw_id!r}",
                "id",
            )
        if options.existing is not None and bitrix_id not in options.existing:
            return _reject(
                row_number,
                original,
                "delete" if delete else "update",
                str(bitrix_id),
                NOT_FOUND,
                f"{target.entity} id {bitrix_id} does not exist on the portal"
                + (" (or the webhook's user cannot see it)" if target.family == "tasks" else ""),
                "id",
            )
    elif key_text is not None and key_text in options.ambiguous_keys:
        ids_found = list(options.ambiguous_keys[key_text])
        return _reject(
            row_number,
            original,
            None,
            key_text,
            DUPLICATE_KEY_ON_PORTAL,
            f"key {options.key!r} = {key_text!r} matches several records on the portal (ids "
            f"{_some(ids_found)}); update them by id",
            options.key,
        )
    elif key_text is not None and key_text in options.resolved_ids:
        bitrix_id = options.resolved_ids[key_text]

    operation: Operation = "delete" if delete else ("update" if bitrix_id is not None else "add")
    if operation == "delete":
        if bitrix_id is None:
            return _reject(
                row_number,
                original,
                "delete",
                key_text,
                INVALID_ID,
                "field 'id' is required to delete a row",
                "id",
            )
        method, params = target.command("delete", bitrix_id, {})
        return PlannedRow(
            row_number, "delete", str(bitrix_id), bitrix_id, method, params, None, None, None, original
        )

    marker_field = (
        (fields.resolve(target.marker_field) or target.marker_field) if target.marker_field else None
    )
    key_field = (fields.resolve(options.key) or options.key) if options.key else None
    comm_kind = comm_key(options.key)
    fields_out: dict[str, Any] = {}
    written_by: dict[str, str] = {}
    problems: list[tuple[str, str, str | None]] = []
    for column, value in row.items():
        name = str(column)
        if name in ID_COLUMNS or name == DELETE_COLUMN or name.startswith("_dlt_") or is_missing(value):
            continue
        if comm_kind is not None and name.lower() == str(options.key).lower():
            continue  # the email / phone key: found by the duplicate search, added as a multi-field
        canonical = fields.resolve(name)
        if canonical is None:
            problems.append((UNKNOWN_FIELD, f"field {name!r} does not exist on {target.entity}", name))
            continue
        meta = fields.fields[canonical]
        if meta.read_only:
            problems.append((READ_ONLY_FIELD, f"field {name!r} is read-only", name))
            continue
        if meta.immutable and operation == "update":
            held = (options.existing or {}).get(bitrix_id or 0)
            if held is not None and canonical in held and holds_values(held, {canonical: value}):
                continue  # the value the record has (a row read from the portal, sent back): not a change
            problems.append(
                (IMMUTABLE_FIELD, f"field {name!r} can only be set when the record is added", name)
            )
            continue
        if target.family == "tasks":
            value = task_word(canonical, value)
        try:
            coerced = coerce_value(value, meta)
            if canonical in (marker_field, key_field) and isinstance(coerced, str):
                coerced = normalise_key(value)
        except InvalidValue as exc:
            problems.append((exc.code, exc.message, name))
            continue
        except Exception as exc:  # an unforeseen value costs its own row (recorded below), not the whole job
            problems.append(
                (INVALID_VALUE, f"field {name!r}: {value!r} could not be checked: {describe(exc)}", name)
            )
            continue
        if canonical in fields_out and fields_out[canonical] != coerced:
            problems.append(
                (
                    CONFLICTING_COLUMNS,
                    f"columns {written_by[canonical]!r} and {name!r} both set field {canonical!r}, to "
                    f"{fields_out[canonical]!r} and {coerced!r}; keep one of them",
                    name,
                )
            )
            continue
        fields_out[canonical] = coerced
        written_by[canonical] = name
    if options.directories is not None:
        current = (options.existing or {}).get(bitrix_id or 0, {}).get("categoryId")
        problems.extend(check_directories(fields, fields_out, options.directories, as_id_or_none(current)))

    marker: str | None = None
    content: str | None = None
    if operation == "add":
        if not fields_out and not problems:
            # A blank line of a CSV, a frame row of NaNs: adding it would make an empty record per run.
            problems.append((NOTHING_TO_ADD, "the row has no id and no value to add", None))
        for name, fixed in target.fixed_fields.items():
            given = fields_out.get(name, fixed)
            if normalise_key(given) != normalise_key(fixed):
                problems.append(
                    (
                        INVALID_VALUE,
                        f"field {name!r} must be {fixed!r} for {target.entity}, not {given!r}",
                        name,
                    )
                )
            fields_out[name] = fixed
        for required in fields.required:
            if required not in fields_out or fields_out[required] in ("", []):
                problems.append((REQUIRED_FIELD_MISSING, f"required field {required!r} is missing", required))
        if key_field is not None and key_text is not None:
            marker, marker_field = key_text, key_field
            if comm_kind is not None:
                # crm.item.add takes communications in `fm` (api-reference/crm/universal/crm-item-add.md).
                fields_out["fm"] = [{"typeId": comm_kind, "value": key_text, "valueType": "WORK"}]
        elif marker_field is not None and fields_out.get(marker_field) not in (None, ""):
            marker = normalise_key(fields_out[marker_field])
        elif marker_field is not None:
            content = _content(fields_out)
        elif target.family == "crm_item":
            problems.append(
                (
                    MARKER_FIELD_MISSING,
                    f"{target.entity} have no field for an outside id (originId / xmlId), so a re-run could "
                    "not recognise this add: pass key=<a field that identifies the record> or "
                    "marker_field=<a single-valued string field>",
                    None,
                )
            )
        if target.family == "crm_item" and ORIGINATOR_FIELD in fields.fields:
            fields_out.setdefault(ORIGINATOR_FIELD, ORIGINATOR)
    elif not fields_out and not problems:
        problems.append((NOTHING_TO_UPDATE, "the row has an id but no field to update", None))

    key = key_text if key_text is not None else (str(bitrix_id) if bitrix_id is not None else marker)
    if problems:
        code, _, field_name = problems[0]
        text = "; ".join(text for _, text, _ in problems)
        return _reject(row_number, original, operation, key, code, text, field_name)
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
        content=content,
        keyed=operation == "add" and key_text is not None and marker == key_text,
    )


ORIGINATOR_FIELD: Final = "originatorId"


def stamp_marker(planned: PlannedRow, marker: str) -> PlannedRow:
    """`planned` (an add) with its generated marker stamped into its marker field."""
    assert planned.params is not None and planned.marker_field is not None
    fields_out = {**planned.params["fields"], planned.marker_field: marker}
    return replace(
        planned, marker=marker, key=marker, params={**planned.params, "fields": fields_out}, content=None
    )


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
            f"row {row_number} could not be planned: {describe(exc)}",
        )


def _some(ids: Sequence[int]) -> str:
    return ", ".join(str(i) for i in ids[:5]) + (", ..." if len(ids) > 5 else "")


def _where(row_number: int, index: Any) -> str:
    return f"row {row_number}" + ("" if index is None else f" (index {index!r})")


def mark_duplicates(rows: Sequence[PlannedRow]) -> list[PlannedRow]:
    """Reject every row after the first that names the same record: the same id (updates, deletes) or the
    same add marker (key value or own marker); ``DUPLICATE_IN_INPUT`` names the first row."""
    first: dict[tuple[str, str], PlannedRow] = {}
    out: list[PlannedRow] = []
    for row in rows:
        identity: tuple[str, str] | None = None
        if row.is_valid and row.operation == "add" and row.marker is not None:
            identity = ("key", row.marker)
        elif row.is_valid and row.bitrix_id is not None:
            identity = ("id", str(row.bitrix_id))
        elif not row.is_valid and (invalid_id := row_id(row.original)) is not None:
            # A first occurrence that failed validation still comes first: otherwise the later one would be
            # applied now, and the first one after the user fixes it (two runs of one frame, two outcomes).
            identity = ("id", str(invalid_id))
        if identity is None:
            out.append(row)
            continue
        seen = first.setdefault(identity, row)
        if seen is row or not row.is_valid:
            out.append(row)
            continue
        what = f"id {identity[1]}" if identity[0] == "id" else f"key {identity[1]!r}"
        out.append(
            replace(
                _reject(
                    row.row_number,
                    row.original,
                    row.operation,
                    row.key,
                    DUPLICATE_IN_INPUT,
                    f"{what} appears more than once in this input; first in "
                    f"{_where(seen.row_number, seen.index)}",
                    "id" if identity[0] == "id" else row.marker_field,
                ),
                index=row.index,
            )
        )
    return out


def mark_existing(rows: Sequence[PlannedRow], existing: Mapping[str, Sequence[int]]) -> list[PlannedRow]:
    """Adds whose marker records on the portal already hold: one holder makes the row ``already_applied``
    (`existing_id`), several make it ``DUPLICATE_MARKER_ON_PORTAL`` (which one is ours is not ours to guess)."""
    out: list[PlannedRow] = []
    for row in rows:
        ids = list(existing.get(row.marker, ())) if row.marker is not None else []
        if not (row.is_valid and row.operation == "add" and ids):
            out.append(row)
        elif len(ids) == 1:
            out.append(replace(row, existing_id=ids[0]))
        else:
            out.append(
                replace(
                    _reject(
                        row.row_number,
                        row.original,
                        "add",
                        row.key,
                        DUPLICATE_MARKER_ON_PORTAL,
                        f"marker {row.marker_field!r} = {row.marker!r} is held on the portal by ids "
                        f"{_some(ids)}; update those records by id",
                        row.marker_field,
                    ),
                    index=row.index,
                )
            )
    return out


def _unchanged_update(planned: PlannedRow, existing: Mapping[int, Mapping[str, Any]]) -> PlannedRow:
    """An update whose values the record already holds: not sent, ``already_applied`` (a re-run)."""
    if not (planned.to_send and planned.operation == "update" and planned.bitrix_id in existing):
        return planned
    record = existing[planned.bitrix_id or 0]
    if planned.params is not None and holds_values(record, planned.params["fields"]):
        return replace(planned, existing_id=planned.bitrix_id)
    return planned


def plan_rows(
    rows: Mapping[int, Mapping[str, Any]],
    target: WriteTarget,
    fields: EntityFields,
    options: PlanOptions,
    look_up: LookUp,
    indexes: Mapping[int, Any] | None = None,
) -> list[PlannedRow]:
    """Plan every row of one input (row number -> row), in order: a command, a rejection or ``existing_id``.

    `look_up` runs at most twice, each time for all the rows at once: for the upsert keys of the rows without
    ``id`` (their matches fill ``resolved_ids`` / ``ambiguous_keys`` of `options`), and for the markers of
    the adds (unless ``allow_duplicates``). `indexes` are the rows' own labels (a DataFrame's index).
    """
    indexes = indexes or {}
    if options.key:
        values = [
            value
            for row in rows.values()
            if _row_id(row) is None and (value := key_value(row, options.key, fields)) is not None
        ]
        matches = look_up(fields.resolve(options.key) or options.key, values) if values else {}
        options = replace(
            options,
            resolved_ids={value: ids[0] for value, ids in matches.items() if len(ids) == 1},
            ambiguous_keys={value: ids for value, ids in matches.items() if len(ids) > 1},
        )
    planned: list[PlannedRow] = []
    occurrences: dict[str, int] = {}
    for row_number, row in rows.items():
        p = replace(
            plan_row_or_reject(row, row_number, target, fields, options), index=indexes.get(row_number)
        )
        if p.is_valid and p.operation == "add" and p.content is not None:
            occurrences[p.content] = occurrences.get(p.content, 0) + 1
            p = stamp_marker(p, add_marker(target.entity, p.content, occurrences[p.content], options.salt))
        planned.append(p)
    planned = mark_duplicates(planned)
    if options.existing:
        planned = [_unchanged_update(p, options.existing) for p in planned]
    if options.allow_duplicates:
        return planned
    # Keyed adds were looked up as keys above (an add is keyed by a value nobody holds); the other markers
    # all live in the target's marker field.
    markers = [p.marker for p in planned if p.is_valid and p.operation == "add" and p.marker and not p.keyed]
    if not markers or target.marker_field is None:
        return planned
    marker_field = fields.resolve(target.marker_field) or target.marker_field
    return mark_existing(planned, look_up(marker_field, markers))
