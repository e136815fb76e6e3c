"""Write planning for the Bitrix24 destination: a chunk of input rows -> commands or rejections; no I/O of its own.

:func:`plan_chunk` decides, for every row of a chunk, what would be sent (or why it cannot be sent). The two
portal look-ups it needs (upsert keys, user-supplied markers) come in as a function, so the rules below are
tested without HTTP. Values are checked in :mod:`.coerce`, directory values in :mod:`.directories`, and the
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
* An add's own marker must not already be on the portal (:func:`reject_existing_markers`): otherwise an add
  whose answer was lost could not be told apart from a record that was there before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from bitrix24_source.destination.coerce import (
    InvalidValue,
    as_int,
    as_written,
    coerce_value,
    describe,
    is_missing,
    original_row,
)
from bitrix24_source.destination.directories import check_directories
from bitrix24_source.destination.targets import Operation, WriteTarget
from bitrix24_source.fields import EntityFields, FieldMeta, truthy

DELETE_COLUMN: Final = "_delete"
ID_COLUMNS: Final = ("id", "ID")

# Codes of the row errors found before sending (value errors: .coerce); portal errors keep the portal's code.
UNKNOWN_FIELD: Final = "UNKNOWN_FIELD"
READ_ONLY_FIELD: Final = "READ_ONLY_FIELD"
IMMUTABLE_FIELD: Final = "IMMUTABLE_FIELD"
REQUIRED_FIELD_MISSING: Final = "REQUIRED_FIELD_MISSING"
INVALID_ID: Final = "INVALID_ID"
DUPLICATE_KEY: Final = "DUPLICATE_KEY"
NOTHING_TO_UPDATE: Final = "NOTHING_TO_UPDATE"
DUPLICATE_KEY_ON_PORTAL: Final = "DUPLICATE_KEY_ON_PORTAL"
DUPLICATE_MARKER_ON_PORTAL: Final = "DUPLICATE_MARKER_ON_PORTAL"
INVALID_VALUE: Final = "INVALID_VALUE"  # a value the checks did not foresee (the exception is in the text)

LookUp = Callable[[str, Sequence[str]], Mapping[str, Sequence[int]]]
"""``look_up(field_name, values)``: each value held by records on the portal -> their ids (absent: none)."""


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
class Outcome:
    """What happened to one planned row."""

    status: Literal["ok", "error", "planned"]
    bitrix_id: int | None = None
    error_code: str | None = None
    error_description: str | None = None


@dataclass(frozen=True, slots=True)
class PlanOptions:
    """How rows are classified.

    Attributes:
        key: upsert key column (canonical or any Bitrix spelling); rows without id are resolved by it.
        resolved_ids: key value (as str) -> record id found on the portal for the rows of this chunk
            (:func:`plan_chunk` fills it, and `ambiguous_keys`, from its key look-up).
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
            bitrix_id = as_int(raw_id, FieldMeta(name="id", type="integer"))
        except InvalidValue:
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
        except InvalidValue as exc:
            problems.append((exc.code, exc.message))
        except Exception as exc:  # an unforeseen value costs its own row (recorded below), not the whole job
            problems.append(
                (INVALID_VALUE, f"field {name!r}: {value!r} could not be checked: {describe(exc)}")
            )
    if options.directories is not None:
        problems.extend(check_directories(fields, fields_out, options.directories))

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


def plan_chunk(
    rows: Mapping[int, Mapping[str, Any]],
    target: WriteTarget,
    fields: EntityFields,
    options: PlanOptions,
    look_up: LookUp,
    maybe_sent: Set[int] = frozenset(),
) -> list[PlannedRow]:
    """Plan the rows of one chunk (row number -> row), in order: every row gets a command or a rejection.

    `look_up` runs at most twice: once for the upsert keys of the rows without ``id`` (their matches fill
    ``resolved_ids`` / ``ambiguous_keys`` of `options`), once for the user's own add markers. Rows in
    `maybe_sent` may have been sent before: their markers passed that check before they went in flight, and
    the portal holding them now proves nothing.
    """
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
    planned = mark_duplicate_keys(
        [plan_row_or_reject(row, row_number, target, fields, options) for row_number, row in rows.items()]
    )
    # Supplied markers all live in the target's marker field (plan_row), so one look-up covers them; key
    # markers were looked up as upsert keys and generated ones are unique.
    fresh = [
        p
        for p in planned
        if p.is_valid and p.operation == "add" and p.marker_supplied and p.row_number not in maybe_sent
    ]
    markers = [p.marker for p in fresh if p.marker is not None]
    field_name = next((p.marker_field for p in fresh if p.marker_field is not None), None)
    if field_name is None or not markers:
        return planned
    return reject_existing_markers(planned, look_up(field_name, markers))
