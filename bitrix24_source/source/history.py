"""The `stage_history` resource: crm.stagehistory.list of every entity type with stages (I/O through a reader).

DOCS api-reference/crm/crm-stage-history-list.md: one list per entity type (leads 1, deals 2, new invoices 31,
smart processes), `items` rows whose `ID`s are numbered per type, so the table carries `entity_type_id` and
its primary key is (`entity_type_id`, `id`). A history row is never changed once written, so a run reads only
the rows after the last id it saw of each type (kept in the resource state).

* Smart-process types come from crm.type.list (`result.types`, DOCS api-reference/crm/universal/
  user-defined-object-types/crm-type-list.md), read as a keyset on `id` (one call per 50 types); a type with `isStagesEnabled` "N"
  has no stages and so no history.
* One batch asks every type for its first page after its last seen id (50 types to a batch); a type whose
  page comes back full continues as a keyset chain of 50 pages per batch (`order ID ASC`, `>ID`, `start=-1`,
  §3.2, §4.3; keyset.py). A run with nothing new costs two requests: the types and that one batch.
* The method has no field list: the columns are typed from the documented item fields
  (settings.STAGE_HISTORY_FIELDS).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import Any, Final

import dlt
from dlt.common.exceptions import (
    PipelineStateNotAvailable,
    ResourceNameNotAvailable,
    SourceSectionNotAvailable,
)
from dlt.common.schema.typing import TColumnSchema
from dlt.extract.resource import DltResource

from bitrix24_source.fields import truthy
from bitrix24_source.source import queries
from bitrix24_source.source.activities import PageTables, Publish, lower_id, lower_id_column
from bitrix24_source.source.keyset import keyset_pages
from bitrix24_source.source.metadata import static_fields
from bitrix24_source.source.reader import PortalReader, RunStats
from bitrix24_source.source.settings import (
    BATCH_LIMIT,
    PAGE_SIZE,
    STAGE_HISTORY,
    STAGE_HISTORY_FIELDS,
    STAGE_HISTORY_FIXED_TYPES,
    EntitySpec,
)

logger = logging.getLogger(__name__)

ENTITY_TYPE_COLUMN: Final = "entity_type_id"
"""The column telling which entity type a history row belongs to (part of the primary key)."""

LAST_IDS_KEY: Final = "last_ids"
"""Resource state key: entity type id (as text) -> the last history id loaded."""

SPA_TYPES: Final = EntitySpec(
    name="spa_types",
    method="crm.type.list",
    style="classic",
    id_field="id",
    list_key="types",
    default=False,
)
"""crm.type.list as a keyset walk: `>id` filter, `order id`, `start=-1` (§3.2; its filter and order take the
fields of the type object), no `select` (the page documents none); the rows are under `types`
(crm-type-list.md)."""


def smart_process_types(reader: PortalReader, resource: str) -> list[int]:
    """The entityTypeIds of the portal's smart processes that have stages, in type id order.

    Args:
        reader: the portal reader.
        resource: the resource the requests are counted for.
    """
    found: list[int] = []
    after = 0
    while True:
        params = queries.classic_page_params(SPA_TYPES, after)
        rows = queries.rows_of(reader.call(resource, SPA_TYPES.method, params), SPA_TYPES.list_key)
        found.extend(int(row["entityTypeId"]) for row in rows if truthy(row.get("isStagesEnabled", "Y")))
        if len(rows) < PAGE_SIZE:
            return found
        after = int(rows[-1][SPA_TYPES.id_field])


def history_spec(entity_type_id: int) -> EntitySpec:
    """The crm.stagehistory.list spec of one entity type."""
    return dataclasses.replace(STAGE_HISTORY, entity_type_id=entity_type_id)


def _first_key(entity_type_id: int) -> str:
    # non-numeric batch keys (§2.4)
    return f"h{entity_type_id}"


def history_pages(
    reader: PortalReader, resource: str, last_ids: Mapping[int, int]
) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """(entity type id, history rows after its last id) pages, in id order within each type.

    Args:
        reader: the portal reader.
        resource: the resource the requests are counted for.
        last_ids: entity type id -> the last history id already loaded (0 for none); every type listed is read.
    """
    types = list(last_ids)
    for start in range(0, len(types), BATCH_LIMIT):
        group = types[start : start + BATCH_LIMIT]
        commands = {
            _first_key(t): (STAGE_HISTORY.method, queries.classic_page_params(history_spec(t), last_ids[t]))
            for t in group
        }
        results = reader.batch(resource, commands)
        queries.raise_first_error(results)
        for type_id, res in zip(group, results, strict=True):
            rows = queries.rows_of(res.result, STAGE_HISTORY.list_key)
            full = len(rows) >= PAGE_SIZE
            after = int(rows[-1][STAGE_HISTORY.id_field]) if rows else 0
            if rows:
                yield type_id, rows
            if not full:
                continue
            for page in keyset_pages(reader, resource, history_spec(type_id), after=after, select=()):
                yield type_id, page


def history_column_hints(columns: dict[str, TColumnSchema]) -> None:
    """The history table's columns: `id` for `ID`, and the entity type (both bigint, the primary key)."""
    lower_id_column(columns)
    columns[ENTITY_TYPE_COLUMN] = {"name": ENTITY_TYPE_COLUMN, "data_type": "bigint", "nullable": False}


def stage_history_resource(
    *,
    reader: PortalReader,
    stats: RunStats,
    tables: PageTables,
    publish: Publish,
    staged_types: Sequence[int] | None = None,
) -> DltResource:
    """The `stage_history` resource (merge on (`entity_type_id`, `id`), not selected by default).

    Args:
        reader: the portal reader shared by the source's resources.
        stats: where the resource's cost is counted.
        tables: builds the typed Arrow tables; its column hints pass through `history_column_hints` (the
            source's `_Tables`).
        publish: records the resource's cost.
        staged_types: the smart processes with stages, as the source listed them when it was made; None
            to list them (crm.type.list) when the resource runs.
    """
    name = STAGE_HISTORY.name

    def stage_history() -> Iterator[Any]:
        own = stats.reset(name)
        state = _resource_state()
        seen: dict[str, int] = state.setdefault(LAST_IDS_KEY, {})
        try:
            tables.set_fields(static_fields(STAGE_HISTORY_FIELDS))
            spa = smart_process_types(reader, name) if staged_types is None else staged_types
            types = [*STAGE_HISTORY_FIXED_TYPES, *spa]
            last_ids = {t: int(seen.get(str(t), 0)) for t in dict.fromkeys(types)}
            for type_id, page in history_pages(reader, name, last_ids):
                own.rows += len(page)
                rows = [{ENTITY_TYPE_COLUMN: type_id, **lower_id(row)} for row in page]
                yield tables.page(rows)
                seen[str(type_id)] = max(int(seen.get(str(type_id), 0)), *(int(r["id"]) for r in rows))
        finally:
            publish(name, own)

    return dlt.resource(
        stage_history,
        name=name,
        primary_key=(ENTITY_TYPE_COLUMN, "id"),
        write_disposition="merge",
        file_format="parquet",
        selected=STAGE_HISTORY.default,
    )


def _resource_state() -> MutableMapping[str, Any]:
    try:
        return dlt.current.resource_state()
    except (SourceSectionNotAvailable, PipelineStateNotAvailable, ResourceNameNotAvailable) as exc:
        # iterated directly, outside a pipeline: every run reads the whole history
        logger.debug("no resource state for %s: %s", STAGE_HISTORY.name, exc)
        return {}


__all__: Sequence[str] = [
    "ENTITY_TYPE_COLUMN",
    "history_pages",
    "smart_process_types",
    "stage_history_resource",
]
