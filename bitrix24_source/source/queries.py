"""Pure read planning for the source: keyset command chains, page splitting and stop rules. No I/O.

keyset.py and task_pages.py send what these functions build through a `PortalReader` and hand the
responses back to them.

CRM and users (v2): one batch holds a chain of up to 50 `start=-1` keyset pages (§3.2); command `p<i>`
continues from the last id of `p<i-1>` through a `$result[...]` reference (§4.3), so one HTTP request
returns up to 2,500 rows. Tasks (v3): one batch holds several keyset pages of `tasks.task.list` (aliased
`t<j>`), the results of each page as overlapping offset pages of `tasks.task.result.list` filtered by
`{"$refArray": "t<j>.id"}` (§5.6), one-id probes that tell where the next batch's pages start, and a one-row
look-ahead for the listing's final task, so the reader knows when a full page was the last one.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from bitrix24_source.client.commands import CommandResult, Ref, result_ref
from bitrix24_source.errors import ApiError, Bitrix24Error
from bitrix24_source.source.settings import BATCH_LIMIT, PAGE_SIZE, EntitySpec

CHAIN_PREFIX: Final = "p"
CRM_SELECT_ALL: Final = ("*", "UF_*")
"""crm.item.list returns only a default field set unless asked: `*` adds every system field (incl. `fm`,
§7.2) and `UF_*` every user field."""

Cmd = tuple[str, dict[str, Any]]


def chain_key(index: int) -> str:
    """Batch key of the `index`-th page of a keyset chain.

    Non-numeric: PHP turns numeric keys into ints and the portal then returns the batch sections as lists,
    so results and errors could no longer be matched to their commands (§2.4).
    """
    return f"{CHAIN_PREFIX}{index}"


def crm_page_params(
    spec: EntitySpec,
    after: int | str,
    *,
    select: Sequence[str] = CRM_SELECT_ALL,
    extra_filter: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Params of one crm.item.list keyset page (§3.2): order id ASC, `>id` filter, `start=-1` (no count)."""
    flt: dict[str, Any] = dict(extra_filter or {})
    flt[">id"] = after
    return {
        "entityTypeId": spec.entity_type_id,
        "select": list(select),
        "filter": flt,
        "order": {"id": "ASC"},
        "start": -1,
    }


def user_page_params(after: int | str, *, extra_filter: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Params of one user.get keyset page: top-level `SORT`/`ORDER` strings and a `FILTER` object (§7.5)."""
    flt: dict[str, Any] = dict(extra_filter or {})
    flt[">ID"] = after
    return {"FILTER": flt, "SORT": "ID", "ORDER": "ASC", "start": -1}


def classic_page_params(
    spec: EntitySpec,
    after: int | str,
    *,
    select: Sequence[str] = (),
    extra_filter: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Params of one keyset page of a classic UPPER_CASE list (crm.activity.list, crm.stagehistory.list):
    order ID ASC, `>ID` filter, `start=-1` (§3.2); `entityTypeId` when the spec has one, `select` when given
    (without it crm.stagehistory.list returns every field of the type)."""
    flt: dict[str, Any] = dict(extra_filter or {})
    flt[f">{spec.id_field}"] = after
    params: dict[str, Any] = {"filter": flt, "order": {spec.id_field: "ASC"}, "start": -1}
    if spec.entity_type_id is not None:
        params["entityTypeId"] = spec.entity_type_id
    if select:
        params["select"] = list(select)
    return params


def keyset_chain(
    spec: EntitySpec,
    after: int,
    *,
    length: int = BATCH_LIMIT,
    select: Sequence[str] = CRM_SELECT_ALL,
    extra_filter: Mapping[str, Any] | None = None,
) -> dict[str, Cmd]:
    """A batch of `length` chained keyset pages starting after id `after`.

    Page 0 filters `>id` on the literal id; page i on `$result[p<i-1>][<list key>][49][<id field>]`, the
    last row of the previous page (§4.3). When a page is short that path does not exist and the server
    substitutes a parent node instead: every page after a short one is garbage and must be discarded
    (`split_chain`). user.get returns a bare list, so its reference has no list-key segment (§7.5).

    Args:
        spec: a crm.item, user or classic (UPPER_CASE list) entity spec.
        after: the last id already read (0 to start).
        length: number of chained pages (1..50).
        select: crm.item or classic select list.
        extra_filter: additional filter conditions (incremental `>=updatedTime`).

    Returns:
        Named commands `p0`..`p<length-1>` in order, for `Bitrix24Client.batch(..., halt_on_error=True)`.
    """
    if not 1 <= length <= BATCH_LIMIT:
        raise ValueError(f"chain length must be 1..{BATCH_LIMIT}, got {length}")
    commands: dict[str, Cmd] = {}
    for i in range(length):
        cursor: int | str
        if i == 0:
            cursor = after
        elif spec.list_key is None:
            cursor = result_ref(chain_key(i - 1), PAGE_SIZE - 1, spec.id_field)
        else:
            cursor = result_ref(chain_key(i - 1), spec.list_key, PAGE_SIZE - 1, spec.id_field)
        if spec.style == "user":
            params = user_page_params(cursor, extra_filter=extra_filter)
        elif spec.style == "crm_item":
            params = crm_page_params(spec, cursor, select=select, extra_filter=extra_filter)
        elif spec.style == "classic":
            params = classic_page_params(spec, cursor, select=select, extra_filter=extra_filter)
        else:
            raise ValueError(
                f"{spec.name}: keyset chains are for crm.item, user.get and classic lists, not {spec.style}"
            )
        commands[chain_key(i)] = (spec.method, params)
    return commands


LAST_ID_KEY: Final = "last"
"""Batch key of a keyset walk's one-row `order id DESC` command (`last_id_command`)."""


def last_id_command(spec: EntitySpec, extra_filter: Mapping[str, Any] | None = None) -> Cmd:
    """The table's last id under the walk's filter: one page ordered by id DESC (id only for crm.item).

    Sent in a walk's first batch, it tells which chain holds the last row, so a chain ending exactly on a
    full page needs no further batch to learn that the table ended (§3.2).
    """
    if spec.style == "user":
        params = user_page_params(0, extra_filter=extra_filter)
        params["ORDER"] = "DESC"
        return (spec.method, params)
    if spec.style == "classic":
        params = classic_page_params(spec, 0, select=(spec.id_field,), extra_filter=extra_filter)
        params["order"] = {spec.id_field: "DESC"}
        return (spec.method, params)
    params = crm_page_params(spec, 0, select=("id",), extra_filter=extra_filter)
    params["order"] = {"id": "DESC"}
    return (spec.method, params)


def last_id_of(res: CommandResult, spec: EntitySpec) -> int:
    """The id `last_id_command` answered, 0 for an empty table.

    Raises:
        Bitrix24Error: the command failed.
    """
    if not res.ok:
        raise res.error or ApiError(f"{spec.method}: command {res.key} was not executed", code="NOT_EXECUTED")
    rows = rows_of(res.result, spec.list_key)
    return _int_id(rows[0], spec.id_field) if rows else 0


def format_since(value: Any) -> str | None:
    """An incremental lower bound as the portal prints datetimes (ISO 8601 with offset), None for none."""
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def rows_of(result: Any, list_key: str | None) -> list[dict[str, Any]]:
    """The rows of one list result: `result[list_key]` (crm.item `items`, `productRows`) or a bare list."""
    rows = result.get(list_key) if list_key is not None and isinstance(result, Mapping) else result
    if rows is None or rows == {}:
        # PHP encodes an empty array as [] but some wrappers come back null when nothing matched (§2.4).
        return []
    if not isinstance(rows, list):
        raise ApiError(
            f"expected a list of rows under {list_key!r}, got {type(rows).__name__}",
            code="UNEXPECTED_RESULT",
        )
    return rows


@dataclass(frozen=True, slots=True)
class ChainPages:
    """The usable part of one keyset chain batch.

    Attributes:
        pages: the pages up to and including the first short one, in order.
        exhausted: True when a short page (< 50 rows) was seen: the table is fully read (§3.2).
        last_id: the id of the last row read (the next chain's `after`), None if no rows.
    """

    pages: list[list[dict[str, Any]]]
    exhausted: bool
    last_id: int | None


def _int_id(row: Mapping[str, Any], id_field: str) -> int:
    value = row.get(id_field)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ApiError(f"row without a numeric {id_field!r}: {value!r}", code="UNEXPECTED_RESULT") from None


def split_chain(results: Sequence[CommandResult], spec: EntitySpec) -> ChainPages:
    """Apply the §3.2 stop rules to the results of one `keyset_chain` batch.

    Pages are read in order. The first page with fewer than 50 rows ends the table; everything after it is
    discarded, including errors (its `$result` reference resolved to a parent node, §4.3, so later pages
    are garbage by construction). A failed command *before* a short page is a real error and is raised.

    Raises:
        Bitrix24Error: the error of a command that failed before the table was exhausted.
    """
    pages: list[list[dict[str, Any]]] = []
    last_id: int | None = None
    for res in results:
        if not res.ok:
            raise res.error or ApiError(
                f"{spec.method}: command {res.key} was not executed", code="NOT_EXECUTED"
            )
        rows = rows_of(res.result, spec.list_key)
        pages.append(rows)
        if rows:
            last_id = _int_id(rows[-1], spec.id_field)
        if len(rows) < PAGE_SIZE:
            return ChainPages(pages, True, last_id)
        if last_id is not None and len(pages) > 1 and pages[-2]:
            previous = _int_id(pages[-2][-1], spec.id_field)
            if last_id <= previous:
                raise ApiError(
                    f"{spec.method}: keyset cursor did not advance ({previous} -> {last_id})",
                    code="KEYSET_STUCK",
                )
    return ChainPages(pages, False, last_id)


# --- tasks (REST v3) -------------------------------------------------------------------------------------

LAST_ALIAS: Final = "last"
TASK_PAGE_PREFIX: Final = "t"
PROBE_PREFIX: Final = "n"


def task_page_alias(index: int) -> str:
    """Batch alias (`as`) of the `index`-th task page of a v3 batch; `$refArray` paths start with it (§5.6)."""
    return f"{TASK_PAGE_PREFIX}{index}"


def result_page_alias(owner: str, index: int) -> str:
    """Alias of the `index`-th result page of a result window (`owner`: a task page alias or `f<n>`)."""
    return f"r{owner}_{index}"


def probe_alias(index: int) -> str:
    """Alias of the look-ahead probe for the `index`-th task page of the next batch."""
    return f"{PROBE_PREFIX}{index}"


def last_task_command(flt: list[Any] | None, order: Mapping[str, str]) -> Cmd:
    """The final task of a listing: the same filter, the order reversed, one row, id only.

    Sent in every v3 batch of tasks, so a page holding that task is known to be the last one, and a page
    shorter than asked that does not hold it shows that the portal clamps the page size (§5.2). Without it the
    next batch could carry an empty tasks page, its `{"$refArray": ...}` would resolve to `in []`, and the
    portal would reject the whole batch (§5.4: `in` needs a non-empty array; §5.6: all-or-nothing).
    """
    reverse = {field: "ASC" if direction.upper() == "DESC" else "DESC" for field, direction in order.items()}
    params: dict[str, Any] = {"select": ["id"], "order": reverse, "pagination": {"limit": 1}}
    if flt:
        params["filter"] = flt
    return ("tasks.task.list", params)


def reaches_last_task(tasks: Sequence[Mapping[str, Any]], last: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a page of tasks ends the listing: it is empty, or it holds the look-ahead's final task.

    Args:
        tasks: the page's rows.
        last: the rows of the `last` look-ahead command (at most one).
    """
    if not tasks or not last:
        return True
    return any(int(t["id"]) == int(last[0]["id"]) for t in tasks)


def keyset_task_filter(after: int, since: str | None) -> list[Any]:
    """The filter of a keyset page of tasks: `id > after`, and `changed >= since` when incremental (§5.4)."""
    flt: list[Any] = [["id", ">", after]]
    if since is not None:
        flt.append(["changed", ">=", since])
    return flt


KEYSET_ORDER: Final = {"id": "ASC"}
NEWEST_FIRST_ORDER: Final = {"changed": "DESC", "id": "DESC"}


def v3_task_pages(
    bounds: Sequence[int],
    *,
    limit: int,
    select: Sequence[str],
    since: str | None,
    probes: int,
    blind: int = 0,
) -> dict[str, Cmd]:
    """The task side of one keyset v3 batch: a window of task pages, look-ahead probes and the final task.

    Page `t<j>` holds the first `limit` tasks with `id > bounds[j]` (§5.2); the bounds come from the previous
    batch's probes, so every page is known to hold a task and its `$refArray` is never `in []` (§5.4).
    When only the first bound is known (the first batch), `blind` offset pages follow `t0` inside its
    window instead, each starting on the previous page's last task (the seam the reader checks); nothing
    refers to them, so an empty one is harmless, and their results are read in the next batch.

    Probe `n<k>` (k >= 1) reads the two tasks right after the last task of the next batch's page k-1, so
    its first id is the bound of page k and the second shows that page k holds a task. Offsets are only used
    for these one-id probes and the blind pages: every other page is a keyset page, so a task deleted or added
    between two batches cannot shift a page past a row.

    Args:
        bounds: the last task id before each page (`bounds[0]`: the last id read so far).
        limit: page size (the method's cap as learnt, §5.2).
        select: task fields to return (v3 list returns only `id` without a select, §5.1).
        since: incremental lower bound for `changed` (ISO datetime), or None.
        probes: pages the next batch may carry (probes `n1`..`n<probes-1>` are added).
        blind: offset pages after `t0` (only with a single bound).

    Returns:
        Named commands `t0..`, `n1..` and `last`, for `Bitrix24Client.batch(..., version=3)`.
    """
    if blind and len(bounds) != 1:
        raise ValueError("blind pages follow a single keyset page")

    def page(after: int, offset: int) -> Cmd:
        pagination = {"limit": limit, "offset": offset} if offset else {"limit": limit}
        return (
            "tasks.task.list",
            {
                "select": list(select),
                "filter": keyset_task_filter(after, since),
                "order": dict(KEYSET_ORDER),
                "pagination": pagination,
            },
        )

    commands: dict[str, Cmd] = {task_page_alias(j): page(bound, 0) for j, bound in enumerate(bounds)}
    for j in range(1, blind + 1):
        commands[task_page_alias(j)] = page(bounds[0], j * (limit - 1))
    # The offset, in the window of the last page, of the last task this batch reads.
    end = (blind + 1) * (limit - 1) if blind else limit - 1
    for k in range(1, probes):
        commands[probe_alias(k)] = (
            "tasks.task.list",
            {
                "select": ["id"],
                "filter": keyset_task_filter(bounds[-1], since),
                "order": dict(KEYSET_ORDER),
                "pagination": {"limit": 2, "offset": end + k * limit},
            },
        )
    commands[LAST_ALIAS] = last_task_command(keyset_task_filter(bounds[0], since), KEYSET_ORDER)
    return commands


def v3_tasks_recent_page(offset: int, *, limit: int, select: Sequence[str]) -> dict[str, Cmd]:
    """The task side of one v3 batch of the most recently changed tasks (`order changed DESC, id DESC`).

    For incremental loads on portals where `changed` is not filterable (§5.4: v3 tasks filter by `id`
    only); the caller stops at the first task changed before its lower bound.
    """
    return {
        task_page_alias(0): (
            "tasks.task.list",
            {
                "select": list(select),
                "order": dict(NEWEST_FIRST_ORDER),
                "pagination": {"limit": limit, "offset": offset},
            },
        ),
        LAST_ALIAS: last_task_command(None, NEWEST_FIRST_ORDER),
    }


def results_params(
    task_ids: Ref | Sequence[int],
    *,
    after: int | None,
    limit: int,
    select: Sequence[str] | None,
    offset: int = 0,
) -> dict[str, Any]:
    """Params of one tasks.task.result.list page for a set of tasks, in result id order after `after`."""
    ids: Any = task_ids if isinstance(task_ids, Ref) else list(task_ids)
    flt: list[Any] = [["taskId", "in", ids]]
    if after is not None:
        flt.append(["id", ">", after])
    pagination: dict[str, int] = {"limit": limit}
    if offset:
        pagination["offset"] = offset
    params: dict[str, Any] = {"filter": flt, "order": {"id": "ASC"}, "pagination": pagination}
    if select:
        params["select"] = list(select)
    return params


def result_window(
    owner: str,
    task_ids: Ref | Sequence[int],
    *,
    after: int | None,
    pages: int,
    limit: int,
    select: Sequence[str] | None,
) -> dict[str, Cmd]:
    """`pages` offset pages of the results of a set of tasks, each overlapping the previous one by one row.

    Page k starts at offset `k * (limit - 1)`: its first row must be the previous page's last one
    (`stitch_result_pages` checks the seam), so a result deleted or added while the batch runs cannot shift a
    row out of sight unnoticed.

    Args:
        owner: the window's name (a task page alias, or `f<n>` for a follow-up window).
        task_ids: the tasks: `{"$refArray": "t<j>.id"}` of a task page in the same batch, or their ids.
        after: continue after this result id (a follow-up window), or None.
        pages: offset pages to send.
        limit: page size (the method's cap as learnt, §5.2).
        select: task result fields, or None for the method's default set.
    """
    return {
        result_page_alias(owner, k): (
            "tasks.task.result.list",
            results_params(task_ids, after=after, limit=limit, select=select, offset=k * (limit - 1)),
        )
        for k in range(pages)
    }


def stitch_result_pages(
    pages: Sequence[Sequence[dict[str, Any]]], *, limit: int, cap: PageCap
) -> tuple[list[dict[str, Any]], int | None]:
    """Join the overlapping offset pages of one `result_window`: (rows in id order, where to continue).

    The second value is None when the window is read to its end, else the last result id of the rows that
    are known to be contiguous: a follow-up window continues after it (keyset, so nothing is skipped) when
    the last page came back full, a seam row is missing, or the page cap is not known yet (a page shorter
    than asked may be a clamped full page, §5.2).
    """
    for page in pages:
        cap.observe(len(page))
    rows: list[dict[str, Any]] = []
    seen: set[int] = set()
    for k, page in enumerate(pages):
        if k:
            previous = pages[k - 1]
            if not cap.maybe_full(len(previous), limit):
                return rows, None
            if not page or int(page[0]["id"]) != int(previous[-1]["id"]):
                # An empty page or a seam row out of place: rows moved, or the portal clamps the page size.
                if page and len(previous) < limit:
                    cap.clamp(len(previous))
                return rows, int(previous[-1]["id"])
        for row in page:
            if int(row["id"]) not in seen:
                seen.add(int(row["id"]))
                rows.append(row)
    last = pages[-1] if pages else []
    if last and cap.maybe_full(len(last), limit):
        return rows, int(last[-1]["id"])
    return rows, None


def chunked(values: Sequence[int], size: int) -> list[tuple[int, ...]]:
    """Split ids into tuples of at most `size`."""
    return [tuple(values[i : i + size]) for i in range(0, len(values), size)]


class PageCap:
    """Learns a v3 list method's real page cap: the docs say 1000, tasks.task.list clamps to 50 (§5.2).

    A page shorter than the largest page seen so far means the end, as b24jssdk's keyset paginator does.
    `limit` is the page size to ask for: `requested` until the portal is seen clamping pages below it.
    """

    __slots__ = ("largest", "limit")

    def __init__(self, requested: int = PAGE_SIZE) -> None:
        self.largest = 0
        self.limit = requested

    def observe(self, page_len: int) -> None:
        """Record a page's length."""
        self.largest = max(self.largest, page_len)

    def is_last(self, page_len: int) -> bool:
        """Record a page's length and tell whether it ends the listing."""
        if page_len == 0:
            return True
        self.observe(page_len)
        return page_len < self.largest

    def maybe_full(self, page_len: int, requested: int) -> bool:
        """Whether more rows may follow a page: it is as long as requested, or as the largest page seen (the
        server may clamp `limit` below what we asked for)."""
        return page_len > 0 and (page_len >= requested or page_len >= self.largest)

    def clamp(self, page_len: int) -> None:
        """The portal served `page_len` rows for a larger `limit` while more rows followed: ask for that."""
        self.limit = min(self.limit, max(1, page_len))


# --- deal product rows -----------------------------------------------------------------------------------


def product_rows_commands(
    pending: Iterable[tuple[tuple[int, ...], int]], *, owner_type: str = "D"
) -> dict[str, Cmd]:
    """crm.item.productrow.list commands for groups of deal ids, each continuing after a row id.

    The filter needs `=ownerType` and `@ownerId` (an array) (DOCS crm-item-productrow-list;
    recorded in tests/fixtures/real-responses/crm_item_productrow_list.json as `{"productRows": [...]}`).
    Pages are `start=-1` keyset pages (no count, §3.2); a page that comes back full (50 rows) is continued
    with `>id` = its last row id.
    """
    commands: dict[str, Cmd] = {}
    for n, (owners, after) in enumerate(pending):
        flt: dict[str, Any] = {"=ownerType": owner_type, "@ownerId": list(owners)}
        if after:
            flt[">id"] = after
        commands[f"o{n}"] = ("crm.item.productrow.list", {"filter": flt, "order": {"id": "ASC"}, "start": -1})
    return commands


def raise_first_error(results: Sequence[CommandResult]) -> None:
    """Raise the error of the first failed command of a batch whose every command matters."""
    for res in results:
        if not res.ok:
            raise res.error or Bitrix24Error(f"{res.method}: command {res.key} failed", code="NOT_EXECUTED")
