"""Keyset walks over the v2 lists: CRM items, users, deal product rows (I/O through a PortalReader).

Each walk sends the commands queries.py builds and hands the answers back to queries.py's stop rules.

* CRM items and users: chains of 50 `start=-1` keyset pages (`order id ASC`, `>id`, §3.2) linked through
  `$result[...]` references in one v2 batch (§4.3): up to 2,500 rows per HTTP request.
* Partitions: the same chains over id ranges, in parallel threads (every request still goes through the
  shared limiter).
* Deal product rows: groups of deal ids per command, batched, `>id` continuation of full pages.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bitrix24_source.source import queries
from bitrix24_source.source.reader import PortalReader
from bitrix24_source.source.settings import (
    BATCH_LIMIT,
    DEAL_PRODUCTS,
    PAGE_SIZE,
    PRODUCT_ROWS_OWNERS_PER_COMMAND,
    EntitySpec,
)


def keyset_pages(
    reader: PortalReader,
    resource: str,
    spec: EntitySpec,
    *,
    after: int = 0,
    extra_filter: Mapping[str, Any] | None = None,
    select: Sequence[str] = queries.CRM_SELECT_ALL,
    first_length: int = BATCH_LIMIT,
) -> Iterator[list[dict[str, Any]]]:
    """Yield the table's rows in id order, one list per HTTP request (a 50-page chain, §3.2, §4.3).

    A whole chain (up to 2,500 rows) is one item, so transformers downstream (deal product rows) can
    batch their own requests per 2,500 parents instead of per 50.

    Args:
        reader: the portal reader (counts the requests under `resource`).
        resource: the resource the requests are counted for.
        spec: a crm.item or user entity spec.
        after: the last id already read (0 to start).
        extra_filter: additional filter conditions (incremental `>=updatedTime`).
        select: crm.item select list.
        first_length: pages in the first chain (an incremental run usually finds few rows: 1 page first).
    """
    length = first_length
    while True:
        commands = queries.keyset_chain(spec, after, length=length, select=select, extra_filter=extra_filter)
        chain = queries.split_chain(reader.batch(resource, commands), spec)
        rows = [row for page in chain.pages for row in page]
        if rows:
            yield rows
        if chain.exhausted or chain.last_id is None:
            return
        after = chain.last_id
        length = BATCH_LIMIT


def max_id(
    reader: PortalReader, resource: str, spec: EntitySpec, extra_filter: Mapping[str, Any] | None
) -> int:
    """The largest id of a CRM table (one `start=-1` page ordered by id DESC)."""
    params = queries.crm_page_params(spec, 0, select=("id",), extra_filter=extra_filter)
    params["order"] = {"id": "DESC"}
    rows = queries.rows_of(reader.call(resource, spec.method, params), spec.list_key)
    return int(rows[0]["id"]) if rows else 0


def partitioned_pages(
    reader: PortalReader,
    resource: str,
    spec: EntitySpec,
    partitions: int,
    extra_filter: Mapping[str, Any] | None,
    select: Sequence[str] = queries.CRM_SELECT_ALL,
) -> Iterator[list[dict[str, Any]]]:
    """Read id ranges in parallel threads; every request still goes through the shared limiter.

    Each round runs one chain batch per live partition concurrently and yields their pages, so at most
    `partitions` x 2,500 rows are held in memory.
    """
    top = max_id(reader, resource, spec, extra_filter)
    if top == 0:
        return
    step = -(-top // partitions)
    bounds = [(lo, min(lo + step, top)) for lo in range(0, top, step)]
    cursors: dict[int, int] = {i: lo for i, (lo, _) in enumerate(bounds)}

    def one(i: int) -> queries.ChainPages:
        upper = bounds[i][1]
        flt = dict(extra_filter or {})
        flt["<=id"] = upper
        commands = queries.keyset_chain(spec, cursors[i], select=select, extra_filter=flt)
        return queries.split_chain(reader.batch(resource, commands), spec)

    with ThreadPoolExecutor(max_workers=partitions, thread_name_prefix=f"b24-{resource}") as pool:
        while cursors:
            live = sorted(cursors)
            for i, chain in zip(live, pool.map(one, live), strict=True):
                rows = [row for page in chain.pages for row in page]
                if rows:
                    yield rows
                if chain.exhausted or chain.last_id is None:
                    del cursors[i]
                else:
                    cursors[i] = chain.last_id


def product_row_pages(
    reader: PortalReader, resource: str, owner_ids: Sequence[int]
) -> Iterator[list[dict[str, Any]]]:
    """Product rows of the given deals: groups of deal ids per command, `>id` follow-ups of full pages."""
    pending: list[tuple[tuple[int, ...], int]] = [
        (group, 0) for group in queries.chunked(list(owner_ids), PRODUCT_ROWS_OWNERS_PER_COMMAND)
    ]
    while pending:
        current, pending = pending[:BATCH_LIMIT], pending[BATCH_LIMIT:]
        results = reader.batch(resource, queries.product_rows_commands(current))
        queries.raise_first_error(results)
        for (owners, _after), res in zip(current, results, strict=True):
            rows = queries.rows_of(res.result, DEAL_PRODUCTS.list_key)
            if rows:
                yield rows
            if len(rows) >= PAGE_SIZE:
                pending.append((owners, int(rows[-1]["id"])))
