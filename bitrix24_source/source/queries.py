"""Pure read planning for the source: keyset command chains, page splitting and stop rules. No I/O.

keyset.py and task_pages.py send what these functions build through a `PortalReader` and hand the
responses back to them.

CRM and users (v2): one batch holds a chain of up to 50 `start=-1` keyset pages (§3.2); command `p<i>`
continues from the last id of `p<i-1>` through a `$result[...]` reference (§4.3), so one HTTP request
returns up to 2,500 rows. Tasks (v3): one batch per page, `tasks.task.list` aliased `tasks` plus
`tasks.task.result.list` filtered by `{"$refArray": "tasks.id"}` (§5.6), so results arrive with their tasks,
plus a one-row look-ahead for the listing's final task, so the reader knows when a full page was the last one.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from bitrix24_source.client.commands import CommandResult, Ref, ref_array, result_ref
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
        spec: a crm.item or user entity spec.
        after: the last id already read (0 to start).
        length: number of chained pages (1..50).
        select: crm.item select list.
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
        else:
            raise ValueError(f"{spec.name}: keyset chains are for crm.item and user.get, not {spec.style}")
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

TASKS_ALIAS: Final = "tasks"
RESULTS_ALIAS: Final = "results"
LAST_ALIAS: Final = "last"


def _last_task_command(flt: list[Any] | None, order: Mapping[str, str]) -> Cmd:
    """The final task of a listing: the same filter, the order reversed, one row, id only.

    Sent in the same v3 batch as a page, so a page that ends exactly on the page cap is known to be the last
    one. Without it the next batch would carry an empty tasks page, its `{"$refArray": "tasks.id"}` would
    resolve to `in []`, and the portal would reject the whole batch (§5.4: `in` needs a non-empty array;
    §5.6: all-or-nothing).
    """
    reverse = {field: "ASC" if direction.upper() == "DESC" else "DESC" for field, direction in order.items()}
    params: dict[str, Any] = {"select": ["id"], "order": reverse, "pagination": {"limit": 1}}
    if flt:
        params["filter"] = flt
    return ("tasks.task.list", params)


def reaches_last_task(tasks: Sequence[Mapping[str, Any]], last: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a page of tasks ends the listing: it is empty, or it holds the look-ahead's final task.

    Args:
        tasks: the page's rows (`tasks` command).
        last: the rows of the `last` look-ahead command (at most one).
    """
    if not tasks or not last:
        return True
    return int(tasks[-1]["id"]) == int(last[0]["id"])


def v3_tasks_page(
    after: int,
    *,
    limit: int,
    select: Sequence[str],
    results_select: Sequence[str] | None,
    since: str | None = None,
    with_results: bool = True,
) -> dict[str, Cmd]:
    """One v3 batch: a keyset page of tasks and the results of exactly those tasks (§5.2, §5.6).

    Args:
        after: the last task id read.
        limit: requested page size (the server clamps it to the method's cap, §5.2).
        select: task fields to return (v3 list returns only `id` without a select, §5.1).
        results_select: task result fields, or None for the method's default set.
        since: incremental lower bound for `changed` (ISO datetime), or None.
        with_results: add the `tasks.task.result.list` command.

    Returns:
        Named commands: `tasks`, (optionally) `results`, and `last` (the listing's final task, see
        `reaches_last_task`), for `Bitrix24Client.batch(..., version=3)`.
    """
    flt: list[Any] = [["id", ">", after]]
    if since is not None:
        flt.append(["changed", ">=", since])
    order = {"id": "ASC"}
    commands: dict[str, Cmd] = {
        TASKS_ALIAS: (
            "tasks.task.list",
            {"select": list(select), "filter": flt, "order": order, "pagination": {"limit": limit}},
        )
    }
    if with_results:
        commands[RESULTS_ALIAS] = (
            "tasks.task.result.list",
            results_params(ref_array(f"{TASKS_ALIAS}.id"), after=None, limit=limit, select=results_select),
        )
    commands[LAST_ALIAS] = _last_task_command(flt, order)
    return commands


def v3_tasks_recent_page(
    offset: int,
    *,
    limit: int,
    select: Sequence[str],
    results_select: Sequence[str] | None,
    with_results: bool = True,
) -> dict[str, Cmd]:
    """One v3 batch of the most recently changed tasks (`order changed DESC, id DESC`, offset paging).

    For incremental loads on portals where `changed` is not filterable (§5.4: v3 tasks filter by `id`
    only); the caller stops at the first task changed before its lower bound.
    """
    order = {"changed": "DESC", "id": "DESC"}
    commands: dict[str, Cmd] = {
        TASKS_ALIAS: (
            "tasks.task.list",
            {"select": list(select), "order": order, "pagination": {"limit": limit, "offset": offset}},
        )
    }
    if with_results:
        commands[RESULTS_ALIAS] = (
            "tasks.task.result.list",
            results_params(
                ref_array(f"{TASKS_ALIAS}.id"), after=None, limit=PAGE_SIZE, select=results_select
            ),
        )
    commands[LAST_ALIAS] = _last_task_command(None, order)
    return commands


def results_params(
    task_ids: Ref | Sequence[int],
    *,
    after: int | None,
    limit: int,
    select: Sequence[str] | None,
) -> dict[str, Any]:
    """Params of one tasks.task.result.list page for a set of tasks, keyset on result `id`."""
    ids: Any = task_ids if isinstance(task_ids, Ref) else list(task_ids)
    flt: list[Any] = [["taskId", "in", ids]]
    if after is not None:
        flt.append(["id", ">", after])
    params: dict[str, Any] = {"filter": flt, "order": {"id": "ASC"}, "pagination": {"limit": limit}}
    if select:
        params["select"] = list(select)
    return params


def results_followups(
    pending: Mapping[tuple[int, ...], int | None], *, limit: int, select: Sequence[str] | None
) -> dict[str, Cmd]:
    """A v3 batch continuing result pages that came back full: one command per (task ids, last result id)."""
    commands: dict[str, Cmd] = {}
    for n, (ids, after) in enumerate(pending.items()):
        commands[f"r{n}"] = (
            "tasks.task.result.list",
            results_params(ids, after=after, limit=limit, select=select),
        )
    return commands


def chunked(values: Sequence[int], size: int) -> list[tuple[int, ...]]:
    """Split ids into tuples of at most `size`."""
    return [tuple(values[i : i + size]) for i in range(0, len(values), size)]


class PageCap:
    """Learns a v3 list method's real page cap: the docs say 1000, tasks.task.list clamps to 50 (§5.2).

    A page shorter than the largest page seen so far means the end, as b24jssdk's keyset paginator does.
    """

    __slots__ = ("largest",)

    def __init__(self) -> None:
        self.largest = 0

    def is_last(self, page_len: int) -> bool:
        """Record a page's length and tell whether it ends the listing."""
        if page_len == 0:
            return True
        self.largest = max(self.largest, page_len)
        return page_len < self.largest

    def may_continue(self, page_len: int, requested: int) -> bool:
        """Whether more rows may follow a page: it is as long as requested, or as the largest page seen
        (the server may clamp `limit` below what we asked for)."""
        if page_len == 0:
            return False
        full = page_len >= requested or page_len >= self.largest
        self.largest = max(self.largest, page_len)
        return full


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
