"""Reference lists read whole and replaced each run: smart-process types, CRM statuses, pipelines, departments.

I/O through a PortalReader. These lists are small (tens to hundreds of rows) and offer no keyset or
modification time, so each run reads them with offset pages: every list's first page in one request (a batch
when there are several lists), then the remaining pages, whose `start` values the first page's `total` tells,
in batches of 50 commands.

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
from dataclasses import dataclass
from typing import Any, Final

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

_ABSENT_CATEGORIES: Final = frozenset({"not_found", "validation"})
"""Error categories that say an optional listing's entity type is absent (crm-category-list.md, error table:
NOT_FOUND, ENTITY_TYPE_NOT_SUPPORTED); anything else fails the run."""

Listing = tuple[str, dict[str, Any], str | None]
"""(method, params without `start`, the key of the rows in `result` or None for a bare list)."""


@dataclass(frozen=True, slots=True)
class _Page:
    """One offset page: its rows' `result`, and the list's `total` and `next` (§3.1)."""

    result: Any
    total: int | None
    next: int | None


def offset_lists(
    reader: PortalReader,
    resource: str,
    listings: Mapping[str, Listing],
    *,
    optional: frozenset[str] = frozenset(),
) -> dict[str, list[dict[str, Any]]]:
    """Every row of each listing, by key: the first pages together, then the rest (up to 50 commands a batch).

    Offset pages (§3.1) tell the total on the first page, so the remaining `start` values are known and sent
    together. One command alone goes as a plain call (the same one request, without the batch envelope).
    Listings in `optional` are sent last; one whose entity type the portal lacks is left out (logged).

    Raises:
        Bitrix24Error: a listing not in `optional` failed.
    """
    keys = sorted(listings, key=lambda k: k in optional)
    rows: dict[str, list[dict[str, Any]]] = {}
    failed: set[str] = set()
    pending: list[tuple[str, int]] = [(key, 0) for key in keys]
    while pending:
        chunk, pending = pending[:BATCH_LIMIT], pending[BATCH_LIMIT:]
        commands = {(key, start): _page_command(listings[key], start) for key, start in chunk}
        for (key, start), page in _send(reader, resource, commands).items():
            if isinstance(page, Bitrix24Error):
                if key not in optional or page.category not in _ABSENT_CATEGORIES:
                    raise page
                logger.info("%s: %s answered %s; left out", key, listings[key][0], page.code)
                failed.add(key)
                continue
            found = queries.rows_of(page.result, listings[key][2])
            rows.setdefault(key, []).extend(found)
            if start == 0:
                later = [(key, offset) for offset in _later_starts(listings[key][0], page, len(found))]
                # optional listings stay last: a failure halts nothing after it (§4.2)
                pending = sorted(pending + later, key=lambda item: item[0] in optional)
    return {key: rows.get(key, []) for key in keys if key not in failed}


def _page_command(listing: Listing, start: int) -> queries.Cmd:
    method, params, _ = listing
    return (method, {**params, "start": start})


def _send(
    reader: PortalReader, resource: str, commands: Mapping[tuple[str, int], queries.Cmd]
) -> dict[tuple[str, int], _Page | Bitrix24Error]:
    if len(commands) == 1:
        ((which, (method, params)),) = commands.items()
        try:
            answer = reader.answer(resource, method, params)
        except Bitrix24Error as exc:
            return {which: exc}
        return {which: _Page(answer.result, answer.total, answer.next)}
    named = {f"{key}_{start}": command for (key, start), command in commands.items()}
    out: dict[tuple[str, int], _Page | Bitrix24Error] = {}
    for which, res in zip(commands, reader.batch(resource, named), strict=True):
        if res.ok:
            out[which] = _Page(res.result, res.total, res.next)
        else:
            out[which] = res.error or ApiError(
                f"{res.method}: command {res.key} was not executed", code="NOT_EXECUTED"
            )
    return out


def _later_starts(method: str, first: _Page, first_rows: int) -> range:
    """The `start` of every page after the first, from the first page's `total`."""
    if first.total is not None and first.total > first_rows:
        return range(PAGE_SIZE, first.total, PAGE_SIZE)
    if first.next is not None:
        raise ApiError(f"{method}: an answer with `next` but no `total`", code="UNEXPECTED_RESULT")
    return range(0)


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
