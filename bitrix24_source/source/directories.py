"""Reference lists read whole and replaced each run: smart-process types, CRM statuses, pipelines, departments.

I/O through a PortalReader. These lists are small (tens to hundreds of rows) and offer no keyset or
modification time, so each run reads them with offset pages: every list's first page in one batch, then the
remaining pages (their `start` values are known from the first page's `total`) in batches of 50 commands.

* `spa_types`: `crm.type.list` (`result.types`, 50 per page by `start`; DOCS api-reference/crm/universal/
  user-defined-object-types/crm-type-list.md). The same listing finds the `spa_<entityTypeId>` resources.
* `crm_statuses`: `crm.status.list` (a bare list; DOCS api-reference/crm/status/crm-status-list.md). Every
  directory at once: lead statuses, deal stages of every pipeline, smart-process stages, sources, types...
* `crm_categories`: `crm.category.list` (`result.categories`; DOCS api-reference/crm/universal/category/
  crm-category-list.md) for deals (2), smart invoices (31) and every smart process, with `entityTypeId`.
* `departments`: `department.get` (a bare list, 50 per page by `start`; DOCS api-reference/departments/
  department-get.md).

Column types are the documented ones (the tables below): `crm.status.fields` calls `SEMANTICS` a `char`,
which elsewhere means Y/N, while its values are "S"/"F" (crm-status-list.md, response example).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

from bitrix24_source.client.commands import CommandResult
from bitrix24_source.errors import ApiError, Bitrix24Error
from bitrix24_source.source import queries
from bitrix24_source.source.reader import PortalReader
from bitrix24_source.source.settings import (
    BATCH_LIMIT,
    CRM_CATEGORIES_TABLE,
    CRM_STATUSES_TABLE,
    DEPARTMENTS_TABLE,
    PAGE_SIZE,
    SPA_TYPES_TABLE,
)

logger = logging.getLogger(__name__)

SPA_TYPE_FIELDS: Final[dict[str, str]] = {
    "id": "integer",
    "title": "string",
    "code": "string",
    "createdBy": "user",
    "entityTypeId": "integer",
    "customSectionId": "integer",
    **dict.fromkeys(
        (
            "isCategoriesEnabled",
            "isStagesEnabled",
            "isBeginCloseDatesEnabled",
            "isClientEnabled",
            "isUseInUserfieldEnabled",
            "isLinkWithProductsEnabled",
            "isMycompanyEnabled",
            "isDocumentsEnabled",
            "isSourceEnabled",
            "isObserversEnabled",
            "isRecyclebinEnabled",
            "isAutomationEnabled",
            "isBizProcEnabled",
            "isSetOpenPermissions",
            "isPaymentsEnabled",
            "isCountersEnabled",
        ),
        "char",
    ),
    "createdTime": "datetime",
    "updatedTime": "datetime",
    "updatedBy": "user",
}
"""crm.type.list rows (DOCS crm-type-list.md, response example: the `is*Enabled` flags are "Y"/"N")."""

STATUS_FIELDS: Final[dict[str, str]] = {
    "ID": "integer",
    "ENTITY_ID": "string",
    "STATUS_ID": "string",
    "NAME": "string",
    "NAME_INIT": "string",
    "SORT": "integer",
    "SYSTEM": "char",
    "CATEGORY_ID": "integer",
    "COLOR": "string",
    "SEMANTICS": "string",
    "EXTRA": "object",
}
"""crm.status.list rows (DOCS crm-status-list.md, response example; SEMANTICS is "S"/"F"/null)."""

CATEGORY_FIELDS: Final[dict[str, str]] = {
    "id": "integer",
    "name": "string",
    "sort": "integer",
    "entityTypeId": "integer",
    "isDefault": "char",
    "originId": "string",
    "originatorId": "string",
}
"""crm.category.list rows (DOCS crm-category-list.md, response example)."""

DEPARTMENT_FIELDS: Final[dict[str, str]] = {
    "ID": "integer",
    "NAME": "string",
    "SORT": "integer",
    "PARENT": "integer",
    "UF_HEAD": "user",
}
"""department.get rows (DOCS department-get.md, "department" structure: ID, PARENT, UF_HEAD sent as strings)."""

DIRECTORY_FIELDS: Final[dict[str, dict[str, str]]] = {
    SPA_TYPES_TABLE: SPA_TYPE_FIELDS,
    CRM_STATUSES_TABLE: STATUS_FIELDS,
    CRM_CATEGORIES_TABLE: CATEGORY_FIELDS,
    DEPARTMENTS_TABLE: DEPARTMENT_FIELDS,
}

DIRECTORY_KEYS: Final[dict[str, tuple[str, ...]]] = {
    SPA_TYPES_TABLE: ("id",),
    CRM_STATUSES_TABLE: ("ID",),
    # Pipelines are listed per entity type (crm.category.list takes one entityTypeId).
    CRM_CATEGORIES_TABLE: ("entityTypeId", "id"),
    DEPARTMENTS_TABLE: ("ID",),
}
"""Primary key of each directory table (Bitrix field names; dlt's naming makes them columns)."""

CATEGORY_TYPES: Final = (2, 31)
"""Entity types with pipelines besides smart processes: deals and smart invoices (crm-category-list.md)."""

_OPTIONAL_CATEGORY_TYPES: Final = frozenset({31})
"""A portal without smart invoices answers crm.category.list for 31 with an error (crm-category-list.md,
error table): such a portal has no invoice pipelines, which is not a failure of the run."""

Listing = tuple[str, dict[str, Any], str | None]
"""(method, params without `start`, the key of the rows in `result` or None for a bare list)."""


def offset_lists(
    reader: PortalReader,
    resource: str,
    listings: Mapping[str, Listing],
    *,
    optional: frozenset[str] = frozenset(),
) -> dict[str, list[dict[str, Any]]]:
    """Every row of each listing, by key: the first pages in one batch, the rest in batches of 50 commands.

    Offset pages (§3.1) tell the total on the first page, so the remaining `start` values are known and sent
    together. Listings in `optional` are read last; one that fails is left out (logged), not raised.

    Raises:
        Bitrix24Error: a listing not in `optional` failed.
    """
    keys = sorted(listings, key=lambda k: k in optional)
    rows: dict[str, list[dict[str, Any]]] = {}
    pending: list[tuple[str, int]] = [(key, 0) for key in keys]
    while pending:
        chunk, pending = pending[:BATCH_LIMIT], pending[BATCH_LIMIT:]
        commands = {f"{key}_{start}": _page_command(listings[key], start) for key, start in chunk}
        results = reader.batch(resource, commands)
        for (key, start), res in zip(chunk, results, strict=True):
            if not res.ok:
                _fail(key, res, optional=key in optional)
                rows.pop(key, None)
                continue
            page = queries.rows_of(res.result, listings[key][2])
            rows.setdefault(key, []).extend(page)
            if start == 0:
                pending += [(key, offset) for offset in _later_starts(res, len(page))]
    return {key: rows[key] for key in keys if key in rows}


def _page_command(listing: Listing, start: int) -> queries.Cmd:
    method, params, _ = listing
    return (method, {**params, "start": start})


def _later_starts(first: CommandResult, first_rows: int) -> range:
    """The `start` of every page after the first: from `total`, or from `next` when no total is given."""
    if first.total is not None and first.total > first_rows:
        return range(PAGE_SIZE, first.total, PAGE_SIZE)
    if first.next is not None:
        raise ApiError(f"{first.method}: a `next` without a `total`", code="UNEXPECTED_RESULT")
    return range(0)


def _fail(key: str, res: CommandResult, *, optional: bool) -> None:
    error: Bitrix24Error = res.error or ApiError(
        f"{res.method}: command {res.key} was not executed", code="NOT_EXECUTED"
    )
    if not optional or res.error is None:
        raise error
    logger.info("%s: %s answered %s; left out", key, res.method, error.code)


def spa_type_rows(reader: PortalReader, resource: str) -> list[dict[str, Any]]:
    """Every crm.type.list row (the portal's smart-process types), in id order."""
    listing: Listing = ("crm.type.list", {"order": {"id": "ASC"}}, "types")
    return offset_lists(reader, resource, {"types": listing}).get("types", [])


def status_rows(reader: PortalReader, resource: str) -> list[dict[str, Any]]:
    """Every crm.status.list row, all directories."""
    listing: Listing = ("crm.status.list", {"order": {"ID": "ASC"}}, None)
    return offset_lists(reader, resource, {"statuses": listing}).get("statuses", [])


def category_rows(reader: PortalReader, resource: str, spa_type_ids: Sequence[int]) -> list[dict[str, Any]]:
    """crm.category.list rows of deals, smart invoices and the given smart processes, each with its
    `entityTypeId` (the key of the table)."""
    type_ids = list(dict.fromkeys((*CATEGORY_TYPES, *spa_type_ids)))
    listings: dict[str, Listing] = {
        f"t{type_id}": ("crm.category.list", {"entityTypeId": type_id}, "categories") for type_id in type_ids
    }
    optional = frozenset(f"t{type_id}" for type_id in _OPTIONAL_CATEGORY_TYPES)
    out: list[dict[str, Any]] = []
    for key, rows in offset_lists(reader, resource, listings, optional=optional).items():
        for row in rows:
            row["entityTypeId"] = int(key[1:])
            out.append(row)
    return out


def department_rows(reader: PortalReader, resource: str) -> list[dict[str, Any]]:
    """Every department.get row, in id order."""
    listing: Listing = ("department.get", {"sort": "ID", "order": "ASC"}, None)
    return offset_lists(reader, resource, {"departments": listing}).get("departments", [])
