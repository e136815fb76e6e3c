"""Paging of the v3 task listing: one pager per strategy (no I/O) and the loop that sends them (I/O).

A pager plans pages the way dlt's rest_client paginators do: `init_request` starts the walk, `request` is
the v3 batch of the current page (the tasks, the results of those tasks through `{"$refArray": "tasks.id"}`
and a one-row look-ahead for the listing's final task, §5.6), `update_state` reads the answer and
`has_next_page` tells whether to go on. Two strategies:

* `KeysetTaskPager`: task id ascending, `>id` (§5.2); full loads, and incremental loads where the portal
  lets `changed` be filtered.
* `NewestFirstTaskPager`: `order changed DESC, id DESC` with offsets, stopping at the first task changed
  before the lower bound; incremental loads where `changed` is not filterable (the v3 docs promise
  filtering by `id` only, §5.4, and the field list says `filterable: false`).

`read_task_pages` sends a pager's batches through a `PortalReader` and completes result pages that came
back full.
"""

from __future__ import annotations

import datetime as _dt
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from bitrix24_source.errors import ApiError, Bitrix24Error
from bitrix24_source.source import queries
from bitrix24_source.source.reader import PortalReader
from bitrix24_source.source.settings import BATCH_LIMIT, PAGE_SIZE, TASK_RESULTS, TASKS

RECENT_FIRST_PAGE: Final = 10
"""Tasks in the first newest-first page of an incremental run (later pages ask for the full 50)."""

MAX_SEAM_RESTARTS: Final = 5
"""Newest-first task listings restarted this often because rows shifted between pages give up with an error."""

RESULTS_TASKS_PER_COMMAND: Final = 10
"""Task ids per follow-up `tasks.task.result.list` command when one page of results overflowed the cap."""

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class TaskPage:
    """What one answer of a pager holds.

    Attributes:
        tasks: the page's tasks not seen before (the results are read for these).
        fresh: the tasks to load: all of `tasks`, or (newest-first) those changed since the lower bound.
    """

    tasks: list[Row]
    fresh: list[Row]


class TaskPager(ABC):
    """One way of walking the v3 task listing, a page per v3 batch. Plans only: no I/O.

    Args:
        select: task fields to return (v3 list returns only `id` without a select, §5.1).
        results_select: task result fields, or None for the method's default set.
        with_results: add the `tasks.task.result.list` command to every batch.
    """

    def __init__(self, *, select: Sequence[str], results_select: Sequence[str] | None, with_results: bool):
        self.select = select
        self.results_select = results_select
        self.with_results = with_results
        self.has_next_page = True
        self._cap = queries.PageCap()

    def init_request(self) -> None:
        """Start the walk at its first page."""
        self.has_next_page = True
        self._cap = queries.PageCap()

    @abstractmethod
    def request(self) -> dict[str, queries.Cmd]:
        """The v3 batch of the current page: `tasks`, (optionally) `results`, and `last`."""

    @abstractmethod
    def update_state(self, tasks: list[Row], last: list[Row]) -> TaskPage | None:
        """Read one answer (the `tasks` rows and the `last` look-ahead); None when the page was discarded."""

    def _ends_listing(self, tasks: list[Row], last: list[Row]) -> bool:
        # A short page ends the listing; so does a full one holding the final task: no batch with an
        # empty tasks page (and an `in []` results filter the portal rejects) is ever sent for it.
        return self._cap.is_last(len(tasks)) or queries.reaches_last_task(tasks, last)


class KeysetTaskPager(TaskPager):
    """Tasks in id order, `>id` keyset pages of 50 (§5.2), optionally `changed >= since`.

    Args:
        since: incremental lower bound for `changed` as the portal prints it, or None for every task.
    """

    def __init__(
        self,
        *,
        select: Sequence[str],
        results_select: Sequence[str] | None,
        with_results: bool,
        since: str | None = None,
    ):
        super().__init__(select=select, results_select=results_select, with_results=with_results)
        self.since = since
        self.after = 0

    def init_request(self) -> None:
        super().init_request()
        self.after = 0

    def request(self) -> dict[str, queries.Cmd]:
        return queries.v3_tasks_page(
            self.after,
            limit=PAGE_SIZE,
            select=self.select,
            results_select=self.results_select,
            since=self.since,
            with_results=self.with_results,
        )

    def update_state(self, tasks: list[Row], last: list[Row]) -> TaskPage:
        self.has_next_page = not self._ends_listing(tasks, last)
        if tasks:
            self.after = int(tasks[-1]["id"])
        return TaskPage(tasks, tasks)


class NewestFirstTaskPager(TaskPager):
    """The most recently changed tasks first (`order changed DESC, id DESC`, offset pages), down to `since`.

    Offset pages shift when tasks are deleted (or hidden) between two requests, so every page after the
    first starts one row early: that row must be the previous page's last task (the seam). When it is not,
    a task may have slipped past unseen and the stored cursor would move beyond it, so the walk starts again
    from the top (rows read twice merge on id), at most `MAX_SEAM_RESTARTS` times.

    Args:
        since: the incremental lower bound: the walk stops at the first task changed before it.
    """

    def __init__(
        self,
        *,
        select: Sequence[str],
        results_select: Sequence[str] | None,
        with_results: bool,
        since: _dt.datetime,
    ):
        super().__init__(select=select, results_select=results_select, with_results=with_results)
        self.since = since
        self.offset = 0
        self.seam: int | None = None
        self.restarts = 0

    def init_request(self) -> None:
        super().init_request()
        self.offset = 0
        self.seam = None

    def request(self) -> dict[str, queries.Cmd]:
        # A small first page: an incremental run usually finds only a few changed tasks.
        overlap = 1 if self.seam is not None else 0
        return queries.v3_tasks_recent_page(
            self.offset - overlap,
            limit=(RECENT_FIRST_PAGE if self.offset == 0 else PAGE_SIZE) + overlap,
            select=self.select,
            results_select=self.results_select,
            with_results=self.with_results,
        )

    def update_state(self, tasks: list[Row], last: list[Row]) -> TaskPage | None:
        done = self._ends_listing(tasks, last)
        if self.seam is not None:
            if not tasks or int(tasks[0]["id"]) != self.seam:
                self._restart()
                return None
            tasks = tasks[1:]
        fresh = [t for t in tasks if not changed_before(t, self.since)]
        self.has_next_page = not (done or len(fresh) < len(tasks))
        self.offset += len(tasks)
        if tasks:
            self.seam = int(tasks[-1]["id"])
        return TaskPage(tasks, fresh)

    def _restart(self) -> None:
        self.restarts += 1
        if self.restarts > MAX_SEAM_RESTARTS:
            raise Bitrix24Error(
                f"tasks kept moving while they were paged newest-first ({MAX_SEAM_RESTARTS} restarts); "
                "run the load again",
                code="LISTING_UNSTABLE",
                method="tasks.task.list",
            )
        # The short first page of the new walk is not the end, so the page cap is learnt afresh.
        self.init_request()


def task_pager(
    *,
    select: Sequence[str],
    results_select: Sequence[str] | None,
    since: _dt.datetime | None,
    changed_filterable: bool,
    with_results: bool,
) -> TaskPager:
    """The pager for a load: newest-first when incremental and `changed` cannot be filtered, else keyset."""
    if since is not None and not changed_filterable:
        return NewestFirstTaskPager(
            select=select, results_select=results_select, with_results=with_results, since=since
        )
    return KeysetTaskPager(
        select=select,
        results_select=results_select,
        with_results=with_results,
        since=queries.format_since(since),
    )


def changed_before(task: Mapping[str, Any], since: _dt.datetime) -> bool:
    """Whether a task's `changed` is earlier than `since` (a missing value is not)."""
    value = task.get(TASKS.cursor_field or "changed")
    if not isinstance(value, str) or not value:
        return False
    changed = _dt.datetime.fromisoformat(value)
    if changed.tzinfo is None or since.tzinfo is None:
        return changed.replace(tzinfo=None) < since.replace(tzinfo=None)
    return changed < since


def read_task_pages(
    reader: PortalReader, resource: str, pager: TaskPager
) -> Iterator[tuple[list[Row], list[Row]]]:
    """Yield (tasks, results of those tasks) per page of tasks, one v3 batch per page (§5.2, §5.6).

    Args:
        reader: the portal reader (counts the requests under `resource`).
        resource: the resource the requests are counted for.
        pager: the paging strategy (`task_pager`).
    """
    result_cap = queries.PageCap()
    pager.init_request()
    while pager.has_next_page:
        commands = pager.request()
        try:
            results = reader.batch(resource, commands, version=TASKS.api_version)
            queries.raise_first_error(results)
        except ApiError as exc:
            if (
                exc.permanent
                and pager.with_results
                and _tasks_exhausted(reader, resource, commands[queries.TASKS_ALIAS])
            ):
                return
            raise
        by_key = {res.key: res for res in results}
        tasks = queries.rows_of(by_key[queries.TASKS_ALIAS].result, TASKS.list_key)
        last = queries.rows_of(by_key[queries.LAST_ALIAS].result, TASKS.list_key)
        page = pager.update_state(tasks, last)
        if page is None:
            continue
        task_results: list[Row] = []
        if pager.with_results and page.tasks:
            task_results = queries.rows_of(by_key[queries.RESULTS_ALIAS].result, TASK_RESULTS.list_key)
            if result_cap.may_continue(len(task_results), PAGE_SIZE):
                task_results.extend(
                    _more_results(
                        reader, resource, page.tasks, task_results, pager.results_select, result_cap
                    )
                )
            keep = {int(t["id"]) for t in page.fresh}
            task_results = [r for r in task_results if int(r["taskId"]) in keep]
        yield page.fresh, task_results


def _tasks_exhausted(reader: PortalReader, resource: str, tasks_command: queries.Cmd) -> bool:
    """Whether the tasks page of a rejected v3 batch is empty: the deliberate end-of-listing check.

    When the tasks page is empty, `{"$refArray": "tasks.id"}` resolves to an empty list, the portal
    rejects `in []` and, v3 batches being all-or-nothing (§5.6), the whole batch fails. Sending the
    same tasks query alone tells "the listing is over" (no rows) from a real error (rows: re-raise).
    Only a first batch can meet this (no task matches at all): later batches are sent only when the
    previous one's `last` look-ahead showed more tasks to come.
    """
    method, params = tasks_command
    rows = queries.rows_of(reader.call(resource, method, params, version=TASKS.api_version), TASKS.list_key)
    return not rows


def _more_results(
    reader: PortalReader,
    resource: str,
    tasks: Sequence[Mapping[str, Any]],
    first_page: Sequence[Mapping[str, Any]],
    select: Sequence[str] | None,
    cap: queries.PageCap,
) -> list[Row]:
    """Results past the first full page: the page's task ids in groups, each continued by result id.

    The first page holds every result with id <= its last id (`order id ASC`), so each group starts
    after that id; groups run side by side in one v3 batch instead of one sequential page at a time.
    """
    seen = {int(r["id"]) for r in first_page}
    start_after = max(seen)
    pending: dict[tuple[int, ...], int | None] = {
        group: start_after
        for group in queries.chunked([int(t["id"]) for t in tasks], RESULTS_TASKS_PER_COMMAND)
    }
    out: list[Row] = []
    while pending:
        batch_keys = list(pending)[:BATCH_LIMIT]
        current = {k: pending.pop(k) for k in batch_keys}
        results = reader.batch(
            resource,
            queries.results_followups(current, limit=PAGE_SIZE, select=select),
            version=TASK_RESULTS.api_version,
        )
        queries.raise_first_error(results)
        for group, res in zip(current, results, strict=True):
            rows = queries.rows_of(res.result, TASK_RESULTS.list_key)
            for row in rows:
                if int(row["id"]) not in seen:
                    seen.add(int(row["id"]))
                    out.append(row)
            if cap.may_continue(len(rows), PAGE_SIZE):
                pending[group] = int(rows[-1]["id"])
    return out
