"""crm.status directories in planning: which ones a chunk's values need, and checking values against them; no I/O.

Values of ``crm_status`` fields (stages, sources, types) must be items of their ``crm.status`` directory
(``statusType`` in the metadata); deal, invoice and smart-process stages are looked up in their pipeline's
own directory. A unique NAME is accepted and sent as its STATUS_ID.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from bitrix24_source.destination.coerce import INVALID_ENUM_VALUE, InvalidValue, is_missing, parsed_int
from bitrix24_source.fields import EntityFields, FieldMeta

# Deal stages live in one directory per pipeline: DEAL_STAGE for pipeline 0, DEAL_STAGE_<id> for the others,
# whose stage ids carry a ``C<id>:`` prefix (DOCS api-reference/crm/status/crm-status-entity-types.md).
# Smart processes and invoices have one per pipeline too: DYNAMIC_<entityTypeId>_STAGE_<id> and
# SMART_INVOICE_STAGE_<id>, stage ids prefixed ``DT<entityTypeId>_<id>:`` (crm-status-entity-types.md,
# crm-status-get.md "DYNAMIC_1038_STAGE_37" / "DT1038_37:SUCCESS"); crm.item.fields names the default
# pipeline's directory as the stage field's statusType.
DEAL_STAGE: Final = "DEAL_STAGE"
_STAGE_PREFIX: Final = re.compile(r"C(\d+):")
_ITEM_STAGES: Final = re.compile(r"(DYNAMIC_\d+_STAGE|SMART_INVOICE_STAGE)_(\d+)")
_ITEM_STAGE_PREFIX: Final = re.compile(r"DT\d+_(\d+):")
_FEW: Final = 8  # allowed values listed in an error message


def stage_directory(category: int, base: str = DEAL_STAGE) -> str:
    """The ENTITY_ID of a pipeline's stages (`base`: DEAL_STAGE, DYNAMIC_<id>_STAGE, SMART_INVOICE_STAGE)."""
    if base == DEAL_STAGE:
        return DEAL_STAGE if category == 0 else f"{DEAL_STAGE}_{category}"
    return f"{base}_{category}"


def _pipelined(status_type: str) -> tuple[str, re.Pattern[str], int] | None:
    """A per-pipeline stage directory: its base name, the stage-id prefix naming a pipeline, and the
    pipeline a stage without that prefix belongs to; None for a directory that is one for all records."""
    if status_type == DEAL_STAGE:
        return DEAL_STAGE, _STAGE_PREFIX, 0
    match = _ITEM_STAGES.fullmatch(status_type)
    if match is None:
        return None
    return match.group(1), _ITEM_STAGE_PREFIX, int(match.group(2))


def _directory_of(meta: FieldMeta, value: str, category: int | None) -> tuple[str, str]:
    """The directory a value of `meta` must come from, and how to name it in a message."""
    assert meta.status_type is not None
    pipelined = _pipelined(meta.status_type)
    if pipelined is None:
        return meta.status_type, ""
    base, stage_prefix, default = pipelined
    if category is None:
        # Without a pipeline in the row, the stage id names it: "C3:NEW" is pipeline 3, "NEW" pipeline 0;
        # "DT128_4:NEW" is pipeline 4 of smart process 128.
        prefix = stage_prefix.match(value)
        category = int(prefix.group(1)) if prefix else default
    return stage_directory(category, base), f" in pipeline {category}"


def _row_category(fields: EntityFields, values: Mapping[str, Any]) -> int | None:
    for name, value in values.items():
        meta = fields.fields.get(name)
        if meta is not None and meta.type == "crm_category" and isinstance(value, int):
            return value
    return None


def _allowed(items: Mapping[str, str]) -> str:
    if not items:
        return "none: the portal lists no values"
    shown = ", ".join(
        f"{status_id} ({name})" if name and name != status_id else status_id
        for status_id, name in list(items.items())[:_FEW]
    )
    return shown if len(items) <= _FEW else f"{shown}, ... ({len(items) - _FEW} more)"


def _directory_value(
    value: str, meta: FieldMeta, category: int | None, directories: Mapping[str, Mapping[str, str]]
) -> str:
    entity_id, where = _directory_of(meta, value, category)
    items = directories.get(entity_id)
    if items is None or value in items:
        return value
    by_name = [status_id for status_id, name in items.items() if name == value]
    if by_name and _pipelined(str(meta.status_type)) is not None and category is None:
        # Stage names repeat across pipelines ("New", "In progress"): without the row's categoryId the
        # pipeline is a guess, and a wrong guess would send a stage the user never wrote.
        raise InvalidValue(
            INVALID_ENUM_VALUE,
            f"field {meta.name!r}: stage name {value!r} needs the row's categoryId to pick the pipeline; "
            f"give categoryId or use the stage id (e.g. {by_name[0]!r})",
        )
    if len(by_name) == 1:
        return by_name[0]
    raise InvalidValue(
        INVALID_ENUM_VALUE,
        f"field {meta.name!r} does not allow value {value!r}{where} (allowed: {_allowed(items)})",
    )


def check_directories(
    fields: EntityFields,
    fields_out: dict[str, Any],
    directories: Mapping[str, Mapping[str, str]],
    current_category: int | None = None,
) -> list[tuple[str, str, str | None]]:
    """Check (and normalise: a unique NAME becomes its STATUS_ID) the directory values of a planned row.

    `current_category` is the pipeline an updated deal is in now (pre-flight): an update without
    ``categoryId`` moves the deal within that pipeline, so its stage must come from there.
    """
    problems: list[tuple[str, str, str | None]] = []
    category = _row_category(fields, fields_out)
    if category is None:
        category = current_category
    for name, value in fields_out.items():
        meta = fields.fields[name]
        if meta.status_type is None or value == "":
            continue
        try:
            if isinstance(value, list):
                fields_out[name] = [_directory_value(str(v), meta, category, directories) for v in value]
            else:
                fields_out[name] = _directory_value(str(value), meta, category, directories)
        except InvalidValue as exc:
            problems.append((exc.code, exc.message, name))
    return problems


def needed_directories(
    fields: EntityFields,
    rows: Iterable[Mapping[str, Any]],
    current_categories: Mapping[int, int] | None = None,
) -> set[str]:
    """The ENTITY_IDs of the directories the directory-typed values in `rows` are checked against.

    `current_categories` maps a row's position to the pipeline its record is in now (pre-flight).
    """
    needed: set[str] = set()
    current_categories = current_categories or {}
    for position, row in enumerate(rows):
        present: dict[str, Any] = {}
        for column, value in row.items():
            canonical = fields.resolve(str(column))
            if canonical is not None and not is_missing(value):
                meta = fields.fields[canonical]
                if meta.type == "crm_category":
                    present[canonical] = parsed_int(value, meta)
                elif meta.status_type is not None:
                    present[canonical] = value
        category = _row_category(fields, present)
        if category is None:
            category = current_categories.get(position)
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
