"""Delete detection: ids the portal no longer has become tombstone rows (I/O: portal and warehouse reads).

With `detect_deletes=True` each CRM table, activities and users end with an id-only keyset scan of the portal;
warehouse ids missing from it are yielded as `{"id": ..., "_deleted": true}` rows, which dlt's merge
hard-deletes (the `hard_delete` column hint). Deal product rows are deleted when their deal is gone, and when a
deal read in this run no longer lists them. Tasks are scanned through REST v3 `tasks.task.list` (id only,
overlapping offset pages in one v3 batch); the results of a deleted task go with it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

import dlt
import pyarrow as pa

from bitrix24_source.errors import ConfigError
from bitrix24_source.source import queries
from bitrix24_source.source.keyset import keyset_pages
from bitrix24_source.source.reader import PortalReader
from bitrix24_source.source.settings import (
    BATCH_LIMIT,
    DEAL_PRODUCTS,
    DELETED_COLUMN,
    TASK_RESULTS,
    TASKS,
    EntitySpec,
)

TOMBSTONES_PER_PAGE = 1000


def portal_ids(reader: PortalReader, resource: str, spec: EntitySpec) -> set[int]:
    """Every id the portal has for a table: an id-only keyset scan, 2,500 ids per request."""
    ids: set[int] = set()
    select: Sequence[str] = queries.CRM_SELECT_ALL
    if spec.style in ("crm_item", "classic"):
        select = (spec.id_field,)
    for page in keyset_pages(reader, resource, spec, select=select):
        ids.update(int(row[spec.id_field]) for row in page)
    return ids


def scan_deletes(reader: PortalReader, spec: EntitySpec) -> tuple[set[int], set[int]]:
    """(every id the portal has for the table, warehouse ids the portal no longer has)."""
    on_portal = portal_ids(reader, spec.name, spec)
    stored = {int(id_) for (id_,) in _warehouse_rows(spec.name, ("id",))}
    return on_portal, stored - on_portal


def tombstone_pages(ids: Iterable[int], *, final_page: bool = False) -> Iterator[list[dict[str, Any]]]:
    """`{"id": ..., "_deleted": true}` rows (dlt's merge hard-deletes them), 1,000 per page.

    Args:
        ids: the ids to delete.
        final_page: yield a page even when there is nothing to delete (see `DealIds`).
    """
    missing = sorted(ids)
    for i in range(0, len(missing), TOMBSTONES_PER_PAGE):
        yield [{"id": id_, DELETED_COLUMN: True} for id_ in missing[i : i + TOMBSTONES_PER_PAGE]]
    if final_page and not missing:
        yield []


class DealIds:
    """The deals resource's delete scan (every deal id on the portal), handed to `deal_products`.

    Product rows whose deal is gone can only be found against the portal's complete set of deal ids, which
    exists once the deals resource has scanned them. The deals resource puts the set here and then yields
    one more page (possibly empty), so the transformer is called after the hand-over at least once.
    """

    def __init__(self) -> None:
        self._ids: set[int] | None = None
        self._lock = threading.Lock()

    def put(self, ids: set[int] | None) -> None:
        with self._lock:
            self._ids = ids

    def take(self) -> set[int] | None:
        """The scanned ids once (None before the scan or after they were taken)."""
        with self._lock:
            ids, self._ids = self._ids, None
            return ids


def product_row_tombstones(
    owner_ids: Sequence[int], read_ids: set[int], portal_deal_ids: set[int] | None
) -> Iterator[list[dict[str, Any]]]:
    """Product rows to hard-delete: rows of the deals just read that the portal no longer lists, and (when
    the deals scan is handed over) rows whose deal the portal no longer has."""
    table = DEAL_PRODUCTS.name
    gone: set[int] = set()
    if owner_ids:
        rows = _warehouse_rows(table, ("id",), where_in=("ownerId", owner_ids))
        gone.update(int(id_) for (id_,) in rows if int(id_) not in read_ids)
    if portal_deal_ids is not None:
        rows = _warehouse_rows(table, ("id", "ownerId"))
        gone.update(int(id_) for id_, owner in rows if owner is None or int(owner) not in portal_deal_ids)
    yield from tombstone_pages(gone)


TASK_SCAN_PAGES: Final = BATCH_LIMIT - 1
"""Id pages per v3 batch of the task scan after the first (the `last` look-ahead fills the batch)."""

WHERE_IN_CHUNK: Final = 1000
"""Ids per `IN (...)` list when reading the warehouse for rows of deleted parents."""


def task_portal_ids(reader: PortalReader, resource: str) -> set[int]:
    """Every task id the portal has: an id-only scan through v3 `tasks.task.list` (I/O).

    A v3 batch has no documented way to start a page at the last row of the previous page (§5.6: `$ref`
    takes a single value, `$refArray` a column of `items`), so each batch reads overlapping offset pages
    after the last id read (`queries.stitch_result_pages` checks every seam: a task deleted or added
    while the batch runs cannot shift an id out of sight unnoticed, which would delete a live task) plus the
    listing's final task (`queries.last_task_command`), so the scan stops without a batch of empty pages.
    The first batch reads one page: most portals' tasks fit in the pages of one batch either way.
    """
    cap = queries.PageCap()
    ids: set[int] = set()
    after, pages = 0, 1
    while True:
        flt = queries.keyset_task_filter(after, None)
        limit = cap.limit
        commands: dict[str, queries.Cmd] = {}
        for k in range(pages):
            pagination = {"limit": limit, "offset": k * (limit - 1)} if k else {"limit": limit}
            params = {
                "select": ["id"],
                "filter": flt,
                "order": dict(queries.KEYSET_ORDER),
                "pagination": pagination,
            }
            commands[queries.task_page_alias(k)] = (TASKS.method, params)
        commands[queries.LAST_ALIAS] = queries.last_task_command(flt, queries.KEYSET_ORDER)
        results = reader.batch(resource, commands, version=TASKS.api_version)
        queries.raise_first_error(results)
        rows = {res.key: queries.rows_of(res.result, TASKS.list_key) for res in results}
        window = [rows[queries.task_page_alias(k)] for k in range(pages)]
        read, follow = queries.stitch_result_pages(window, limit=limit, cap=cap)
        ids.update(int(row["id"]) for row in read)
        if queries.reaches_last_task(read, rows[queries.LAST_ALIAS]):
            return ids
        after = follow if follow is not None else int(read[-1]["id"])
        pages = TASK_SCAN_PAGES


def task_tombstones(reader: PortalReader, resource: str) -> Iterator[list[dict[str, Any]]]:
    """Tombstone pages of the warehouse's tasks that the portal no longer has (`task_portal_ids`)."""
    on_portal = task_portal_ids(reader, resource)
    stored = {int(id_) for (id_,) in _warehouse_rows(TASKS.name, ("id",))}
    yield from tombstone_pages(stored - on_portal)


def is_tombstone_table(table: pa.Table) -> bool:
    """Whether an Arrow page holds tombstones (`schema.ArrowPages.tombstones`), not rows read from the portal
    (the portal sends no `_deleted` field)."""
    if table.num_rows == 0 or DELETED_COLUMN not in table.column_names:
        return False
    return table.column(DELETED_COLUMN)[0].as_py() is True


def task_result_tombstones(task_ids: Iterable[int]) -> Iterator[list[dict[str, Any]]]:
    """Tombstone pages of the warehouse's task results whose task is one of `task_ids` (deleted tasks)."""
    ids = sorted(task_ids)
    gone: set[int] = set()
    for start in range(0, len(ids), WHERE_IN_CHUNK):
        chunk = ids[start : start + WHERE_IN_CHUNK]
        rows = _warehouse_rows(TASK_RESULTS.name, ("id",), where_in=("taskId", chunk))
        gone.update(int(id_) for (id_,) in rows)
    yield from tombstone_pages(gone)


def _warehouse_rows(
    table: str, fields: Sequence[str], where_in: tuple[str, Sequence[int]] | None = None
) -> Iterator[tuple[Any, ...]]:
    """Stream `fields` of the running pipeline's destination table (nothing before the first load).

    Args:
        table: the table name.
        fields: Bitrix field names (normalised to column names by the pipeline's naming convention).
        where_in: (field, ints): keep only rows whose field is one of these values.
    """
    from dlt.destinations.exceptions import DatabaseUndefinedRelation

    pipeline = dlt.current.pipeline()
    if pipeline.destination is None:
        raise ConfigError("detect_deletes needs a pipeline with a destination (it compares ids with it)")
    naming = dlt.current.source_schema().naming
    try:
        with pipeline.sql_client() as client:

            def column(name: str) -> str:
                return client.escape_column_name(naming.normalize_identifier(name))

            columns = ", ".join(column(f) for f in fields)
            query = f"SELECT {columns} FROM {client.make_qualified_table_name(table)}"
            if where_in is not None:
                # ints only (int() below), so the values are safe to inline
                values = ", ".join(str(int(v)) for v in where_in[1])
                query += f" WHERE {column(where_in[0])} IN ({values})"
            with client.execute_query(query) as cursor:
                while chunk := cursor.fetchmany(10_000):
                    yield from chunk
    except DatabaseUndefinedRelation:
        return
