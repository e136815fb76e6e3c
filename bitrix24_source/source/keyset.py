"""Keyset walks over the v2 lists: CRM items, users, deal product rows (I/O through a PortalReader).

Each walk sends the commands queries.py builds and hands the answers back to queries.py's stop rules.

* CRM items and users: chains of 50 `start=-1` keyset pages (`order id ASC`, `>id`, §3.2) linked through
  `$result[...]` references in one v2 batch (§4.3): up to 2,500 rows per HTTP request.
* Partitions: the same chains over id ranges, in parallel threads (every request still goes through the
  shared limiter).
* Deal product rows: groups of deal ids per command, batched, `>id` continuation of full pages.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bitrix24_source.client.commands import CommandResult
from bitrix24_source.source import queries
from bitrix24_source.source.reader import PortalReader
from bitrix24_source.source.settings import (
    BATCH_LIMIT,
    DEAL_PRODUCTS,
    MAX_OWNERS_PER_COMMAND,
    PAGE_SIZE,
    PRODUCT_ROWS_OWNERS_PER_COMMAND,
    PRODUCT_ROWS_PER_COMMAND,
    EntitySpec,
)

Head = Mapping[str, "queries.Cmd"]
"""Extra commands sent in a walk's first batch (field metadata), answered through a callback."""


def keyset_pages(
    reader: PortalReader,
    resource: str,
    spec: EntitySpec,
    *,
    after: int = 0,
    extra_filter: Mapping[str, Any] | None = None,
    select: Sequence[str] = queries.CRM_SELECT_ALL,
    first_length: int = BATCH_LIMIT,
    head: Head | None = None,
    on_head: Callable[[Mapping[str, CommandResult]], None] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Yield the table's rows in id order, one list per HTTP request (a 50-page chain, §3.2, §4.3).

    A whole chain (up to 2,500 rows) is one item, so transformers downstream (deal product rows) can
    batch their own requests per 2,500 parents instead of per 50. The first batch also carries `head`
    (answered through `on_head` before any row is yielded) and a one-row `order id DESC` command: the
    table's last id, so a chain that ends exactly on a full page is known to be the last one and no
    batch of empty pages follows.

    Args:
        reader: the portal reader (counts the requests under `resource`).
        resource: the resource the requests are counted for.
        spec: a crm.item, user or classic (UPPER_CASE list) entity spec.
        after: the last id already read (0 to start).
        extra_filter: additional filter conditions (incremental `>=updatedTime`).
        select: crm.item or classic select list.
        first_length: pages in the first chain (an incremental run usually finds few rows: 1 page first).
        head: extra commands for the first batch (keys other than `p<i>` and `last`).
        on_head: receives the results of `head` by key.
    """
    head = dict(head or {})
    first = {**head, queries.LAST_ID_KEY: queries.last_id_command(spec, extra_filter)}
    length = max(1, min(first_length, BATCH_LIMIT - len(first)))
    top: int | None = None
    while True:
        commands = queries.keyset_chain(spec, after, length=length, select=select, extra_filter=extra_filter)
        if top is None:
            commands = {**first, **commands}
        results = reader.batch(resource, commands)
        if top is None:
            extra = {res.key: res for res in results[: len(first)]}
            results = results[len(first) :]
            top = queries.last_id_of(extra.pop(queries.LAST_ID_KEY), spec)
            if on_head is not None:
                on_head(extra)
        chain = queries.split_chain(results, spec)
        rows = [row for page in chain.pages for row in page]
        if rows:
            yield rows
        if chain.exhausted or chain.last_id is None or chain.last_id >= top:
            return
        after = chain.last_id
        length = BATCH_LIMIT


def max_id(
    reader: PortalReader,
    resource: str,
    spec: EntitySpec,
    extra_filter: Mapping[str, Any] | None,
    head: Head | None = None,
    on_head: Callable[[Mapping[str, CommandResult]], None] | None = None,
) -> int:
    """The largest id of a CRM table (one `start=-1` page ordered by id DESC), with `head` in the batch."""
    commands = {**(head or {}), queries.LAST_ID_KEY: queries.last_id_command(spec, extra_filter)}
    results = {res.key: res for res in reader.batch(resource, commands)}
    top = queries.last_id_of(results.pop(queries.LAST_ID_KEY), spec)
    if on_head is not None:
        on_head(results)
    return top


def partitioned_pages(
    reader: PortalReader,
    resource: str,
    spec: EntitySpec,
    partitions: int,
    extra_filter: Mapping[str, Any] | None,
    select: Sequence[str] = queries.CRM_SELECT_ALL,
    head: Head | None = None,
    on_head: Callable[[Mapping[str, CommandResult]], None] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Read id ranges in parallel threads; every request still goes through the shared limiter.

    Each round runs one chain batch per live partition concurrently and yields their pages, so at most
    `partitions` x 2,500 rows are held in memory. `head` rides with the max-id command.
    """
    top = max_id(reader, resource, spec, extra_filter, head, on_head)
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


class ProductRowReader:
    """Reads deal product rows for pages of deals, learning how many rows a deal has (I/O through a reader).

    Deal ids go in groups per `crm.item.productrow.list` command (`@ownerId`), 50 commands to a batch; a page
    that comes back full (50 rows) is continued with an `>id` follow-up. The group size aims at
    PRODUCT_ROWS_PER_COMMAND rows per page, from the rows per deal seen so far. Commands that would make a
    batch go out less than full may wait for the next page of deals (`pages(..., may_defer=...)`), so every
    batch but the run's last carries 50 commands.
    """

    def __init__(self, reader: PortalReader, resource: str) -> None:
        self._reader = reader
        self._resource = resource
        self._rows = 0
        self._owners = 0
        self._followups: list[tuple[tuple[int, ...], int]] = []
        self._lock = threading.Lock()

    def group_size(self) -> int:
        """Deals per command: PRODUCT_ROWS_PER_COMMAND rows at the rows per deal seen so far."""
        with self._lock:
            if self._rows == 0 or self._owners == 0:
                return PRODUCT_ROWS_OWNERS_PER_COMMAND
            per_owner = self._rows / self._owners
        return max(1, min(MAX_OWNERS_PER_COMMAND, int(PRODUCT_ROWS_PER_COMMAND / per_owner)))

    def pages(
        self,
        owner_ids: Sequence[int],
        *,
        may_defer: Callable[[], bool] | None = None,
        head: Head | None = None,
        on_head: Callable[[Mapping[str, CommandResult]], None] | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Product rows of the given deals (and of follow-ups deferred by earlier pages of deals).

        Args:
            owner_ids: the deal ids.
            may_defer: asked when a batch would go out less than full: True leaves its commands (follow-ups
                and the last groups of deals) to the next call, whose batches they fill (more pages of
                deals will come). None: this call reads exactly the rows of
                its own deals, no follow-up of another call and none left over (delete detection compares
                them with the warehouse).
            head: extra commands for the first batch (the field list, sent last), answered through `on_head`.
            on_head: receives the results of `head` by key.
        """
        head = dict(head or {})
        remaining = list(owner_ids)
        queue = self._followups if may_defer is not None else []
        while True:
            room = BATCH_LIMIT - len(head)
            with self._lock:
                current, queue[:] = queue[:room], queue[room:]
            size = self.group_size()
            while remaining and len(current) < room:
                current.append((tuple(remaining[:size]), 0))
                remaining = remaining[size:]
            if not current:
                return
            if len(current) < room and may_defer is not None and may_defer():
                with self._lock:
                    queue[:0] = current
                return
            yield from self._send(current, queue, head, on_head)
            head = {}

    def _send(
        self,
        current: list[tuple[tuple[int, ...], int]],
        queue: list[tuple[tuple[int, ...], int]],
        head: Head,
        on_head: Callable[[Mapping[str, CommandResult]], None] | None,
    ) -> Iterator[list[dict[str, Any]]]:
        # The field list last: a portal without it halts nothing after it (§4.2).
        commands = {**queries.product_rows_commands(current), **head}
        results = self._reader.batch(self._resource, commands)
        if head and on_head is not None:
            on_head({res.key: res for res in results[len(current) :]})
        results = results[: len(current)]
        queries.raise_first_error(results)
        for (owners, after), res in zip(current, results, strict=True):
            rows = queries.rows_of(res.result, DEAL_PRODUCTS.list_key)
            with self._lock:
                if not after:
                    self._rows += len(rows)
                    self._owners += len(owners)
                if len(rows) >= PAGE_SIZE:
                    queue.append((owners, int(rows[-1]["id"])))
            if rows:
                yield rows
