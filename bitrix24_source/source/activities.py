"""The `activities` resource: CRM activities from crm.activity.list (I/O through a PortalReader).

crm.activity.list is a classic list (DOCS api-reference/crm/timeline/activities/activity-base/
crm-activity-list.md): a bare list of UPPER_CASE rows with every scalar printed as a string, filter and order
on the fields of crm.activity.fields. It is read like the CRM tables:

* keyset pages (`order ID ASC`, `>ID`, `start=-1`, §3.2) chained 50 to a v2 batch through `$result[p<i>][49][ID]`
  references (keyset.py), the field list riding in the first batch;
* incremental on `LAST_UPDATED` (`>=LAST_UPDATED` filter) with the source's lag window, the cursor capped at
  the scan's start (reader.py);
* with `detect_deletes`, an ID-only keyset scan after the rows; warehouse ids the portal no longer has are
  hard-deleted (deletes.py).

Columns are typed from crm.activity.fields (`crm_enum_*` words are integers, fields.TYPE_KINDS). The rows'
`ID` becomes the table's `id`, like every other table's primary key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import dlt
from dlt.common.schema.typing import TColumnSchema
from dlt.extract.resource import DltResource

from bitrix24_source.client.commands import CommandResult
from bitrix24_source.fields import FieldMeta
from bitrix24_source.source.deletes import scan_deletes, tombstone_pages
from bitrix24_source.source.keyset import keyset_pages
from bitrix24_source.source.metadata import FieldStore
from bitrix24_source.source.queries import format_since
from bitrix24_source.source.reader import PortalReader, ResourceStats, RunStats
from bitrix24_source.source.settings import ACTIVITIES, BATCH_LIMIT

ACTIVITY_SELECT = ("*",)
"""`*` is the list's documented field set (crm-activity-list.md's example); COMMUNICATIONS and FILES come only
when named and are not loaded."""


class PageTables(Protocol):
    """What the resources here need from the source's per-resource Arrow table builder."""

    def set_fields(self, fields: Mapping[str, FieldMeta]) -> None: ...

    def page(self, rows: Sequence[Mapping[str, Any]]) -> Any: ...

    def tombstones(self, pages: Iterator[list[dict[str, Any]]]) -> Iterator[Any]: ...


Publish = Callable[[str, ResourceStats], None]
"""Logs a resource's cost and writes it to the resource state (the source's `_publish`)."""


def lower_id_column(columns: dict[str, TColumnSchema]) -> None:
    """Column hints of a table whose rows carry `ID`: the primary key column is `id`."""
    columns.pop("ID", None)
    columns["id"] = {"name": "id", "data_type": "bigint", "nullable": False}


def lower_id(row: dict[str, Any]) -> dict[str, Any]:
    """A row with its `ID` moved to `id` (the rows are the resource's own, changed in place)."""
    row["id"] = row.pop("ID")
    return row


def activities_resource(
    *,
    reader: PortalReader,
    stats: RunStats,
    fields: FieldStore,
    tables: PageTables,
    lag_seconds: float,
    detect_deletes: bool,
    publish: Publish,
) -> DltResource:
    """The `activities` resource (merge on `id`, not selected by default).

    Args:
        reader: the portal reader shared by the source's resources.
        stats: where the resource's cost is counted.
        fields: the source's field metadata store (crm.activity.fields is read in the first batch).
        tables: builds the typed Arrow tables, with `id` for `ID` and the hard-delete column when
            `detect_deletes` (the source's `_Tables`).
        lag_seconds: incremental lag window.
        detect_deletes: scan the portal's activity ids after the rows and hard-delete the missing ones.
        publish: records the resource's cost.
    """
    name = ACTIVITIES.name
    assert ACTIVITIES.cursor_field is not None
    cursor = ACTIVITIES.cursor_field

    def activities(
        updated: dlt.sources.incremental[Any] = dlt.sources.incremental(  # noqa: B008
            cursor,
            initial_value=None,
            lag=lag_seconds,
            on_cursor_value_missing="include",
            # no boundary dedup: LAST_UPDATED has 1 s resolution and the table merges on id (see the
            # source's _NO_BOUNDARY_DEDUP)
            primary_key=(),
        ),
    ) -> Iterator[Any]:
        own = stats.reset(name)
        reader.begin_scan(name)
        since = format_since(updated.start_value)
        extra = {f">={cursor}": since} if since is not None else None

        def on_head(results: Mapping[str, CommandResult]) -> None:
            tables.set_fields(fields.accept(name, results))

        try:
            pages = keyset_pages(
                reader,
                name,
                ACTIVITIES,
                extra_filter=extra,
                select=ACTIVITY_SELECT,
                first_length=1 if since is not None else BATCH_LIMIT,
                head=fields.command(name),
                on_head=on_head,
            )
            for page in pages:
                own.rows += len(page)
                kept = [lower_id(row) for row in page if not reader.after_scan_start(name, row.get(cursor))]
                if kept:
                    yield tables.page(kept)
            if detect_deletes:
                yield from tables.tombstones(tombstone_pages(scan_deletes(reader, ACTIVITIES)[1]))
        finally:
            publish(name, own)

    return dlt.resource(
        activities,
        name=name,
        primary_key="id",
        write_disposition="merge",
        file_format="parquet",
        selected=ACTIVITIES.default,
    )
