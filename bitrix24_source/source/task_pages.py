"""Paging of the v3 task listing: one pager per strategy (no I/O) and the loop that sends them (I/O).

A pager plans the task side of a v3 batch the way dlt's rest_client paginators plan pages: `init_request`
starts the walk, `request` gives the batch's task pages (aliased `t<j>`) and look-ahead commands,
`update_state` reads the answer and `has_next_page` tells whether to go on. Two strategies:

* `KeysetTaskPager`: task id ascending, several `>id` keyset pages per batch (§5.2), their bounds told by
  the previous batch's one-id probes; full loads, and incremental loads where the portal lets `changed` be
  filtered.
* `NewestFirstTaskPager`: `order changed DESC, id DESC` with offsets, one page per batch, stopping at the
  first task changed before the lower bound; incremental loads where `changed` is not filterable (the v3
  docs promise filtering by `id` only, §5.4, and the field list says `filterable: false`).

`read_task_pages` adds the results of every task page to the same batch, as overlapping offset pages of
`tasks.task.result.list` filtered by `{"$refArray": "t<j>.id"}` (§5.6), and follows result windows that came
back full in the next batch, next to the next task pages. A page of tasks is yielded once all its results
are read, so one HTTP request carries several hundred tasks with their results.
"""

from __future__ import annotations

import datetime as _dt
import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from bitrix24_source.client.commands import CommandResult, ref_array
from bitrix24_source.errors import ApiError, Bitrix24Error
from bitrix24_source.fields import TASK_V3_DOCUMENTED
from bitrix24_source.source import queries
from bitrix24_source.source.reader import PortalReader
from bitrix24_source.source.settings import BATCH_LIMIT, PAGE_SIZE, TASK_RESULTS, TASKS

RECENT_FIRST_PAGE: Final = 10
"""Tasks in the first newest-first page of an incremental run (later pages ask for the full 50)."""

MAX_SEAM_RESTARTS: Final = 5
"""Newest-first task listings restarted this often because rows shifted between pages give up with an error."""

FIRST_RESULT_PAGES: Final = 4
"""Result pages per task page before the run has seen how many results a task has."""

MAX_RESULT_PAGES: Final = 8
"""Result pages per task page at most; tasks with more results are followed in the next batch."""

RESULT_MARGIN: Final = 1.25
"""Room planned above the average results per task, so that few result windows need a follow-up."""

FOLLOW_UP_PAGES: Final = 2
"""Result pages sent for a result window that came back full."""

BLIND_TASK_SELECT: Final = tuple(TASK_V3_DOCUMENTED)
"""The select of task pages sent before the portal's field list is known (they share the first batch): the
documented task object (api-reference/tasks/fields-rest-v3.md). A field the portal does not have is left out
of the answer, not an error (api-reference/rest-v3.md, "An unknown field of the object itself ...")."""

Row = dict[str, Any]
Answers = Mapping[str, list[Row]]


@dataclass(frozen=True, slots=True)
class TaskPage:
    """What one task page of an answer holds.

    Attributes:
        alias: the page's batch alias (`t<j>`); its results are the windows named after it.
        tasks: the page's tasks not seen before (the results are read for these).
        fresh: the tasks to load: all of `tasks`, or (newest-first) those changed since the lower bound.
        later: no result command refers to the page in its own batch: its results are read in the next one.
    """

    alias: str
    tasks: list[Row]
    fresh: list[Row]
    later: bool = False


class TaskPager(ABC):
    """One way of walking the v3 task listing. Plans only: no I/O.

    Args:
        select: task fields to return (v3 list returns only `id` without a select, §5.1).
        results_select: task result fields, or None for the method's default set.
        with_results: read the results of the tasks in the same batches.
    """

    def __init__(self, *, select: Sequence[str], results_select: Sequence[str] | None, with_results: bool):
        self.select = select
        self.results_select = results_select
        self.with_results = with_results
        self.has_next_page = True
        self.cap = queries.PageCap()
        self.referenced: list[str] = []
        """The aliases of the last request's pages whose results belong in the same batch."""

    def init_request(self) -> None:
        """Start the walk at its first page."""
        self.has_next_page = True
        self.cap = queries.PageCap()

    @abstractmethod
    def request(self, room: int, per_page: int) -> dict[str, queries.Cmd]:
        """The task side of the next batch: pages `t<j>` and look-ahead commands, in at most `room` commands
        when every page costs `per_page` (itself and its result pages); empty when `room` is too small."""

    @abstractmethod
    def update_state(self, answers: Answers) -> list[TaskPage] | None:
        """Read one answer (rows by alias); the pages read, in order, or None when the batch was discarded."""

    def narrow(self) -> bool:
        """After a rejected batch: plan a single page next time; False when the batch had one already."""
        return False


class KeysetTaskPager(TaskPager):
    """Tasks in id order, several `>id` keyset pages per batch (§5.2), optionally `changed >= since`.

    The first batch carries one keyset page with its results and blind offset pages after it, whose results
    follow in the next batch; its probes (`queries.v3_task_pages`) tell where the next batch's pages start
    and that each holds a task. A page is accepted only when it continues the pages before it (its bound is
    not beyond the last id read, a blind page starts on the previous page's last task): tasks added or
    changed meanwhile end the batch's window early, and the next batch starts again after the last id read.

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
        self.bounds: list[int] = [0]
        self._planned: list[int] = []
        self._blind = 0
        self._probes = 0

    def init_request(self) -> None:
        super().init_request()
        self.after = 0
        self.bounds = [0]

    def request(self, room: int, per_page: int) -> dict[str, queries.Cmd]:
        # The next batch may carry as many pages as fit beside one probe each (the final-task look-ahead
        # stands in for the first page's probe).
        probes = max(1, BATCH_LIMIT // (per_page + 1))
        pages = min(len(self.bounds), (room - probes) // per_page)
        if pages < 1:
            return {}
        self._planned = self.bounds[:pages]
        self._probes = probes
        self._blind = 0
        if len(self._planned) == 1:
            # Only one bound is known: offset pages fill the batch; the next batch must have room for
            # their result pages (`per_page - 1` each), or for the pages themselves without results.
            spare = room - probes - per_page
            self._blind = max(0, min(spare, (BATCH_LIMIT - 2) // max(1, per_page - 1)))
        self.referenced = [queries.task_page_alias(j) for j in range(pages)]
        return queries.v3_task_pages(
            self._planned,
            limit=self.cap.limit,
            select=self.select,
            since=self.since,
            probes=probes,
            blind=self._blind,
        )

    def update_state(self, answers: Answers) -> list[TaskPage]:
        last = answers[queries.LAST_ALIAS]
        limit = self.cap.limit
        pages: list[TaskPage] = []
        read_to = self._planned[0]
        ended = broken = False
        planned = self._planned + [self._planned[0]] * self._blind
        for j, bound in enumerate(planned):
            alias = queries.task_page_alias(j)
            rows = answers[alias]
            self.cap.observe(len(rows))
            blind = j >= len(self._planned)
            if bound > read_to or (blind and (not rows or int(rows[0]["id"]) != read_to)):
                # Tasks came into (or left) the window since the bounds were read, or a blind page does not
                # start on the previous page's last task: later pages would leave a gap.
                broken = True
                break
            new = [t for t in rows if int(t["id"]) > read_to]
            if new:
                pages.append(TaskPage(alias, new, new, later=blind))
                read_to = int(new[-1]["id"])
            if queries.reaches_last_task(rows, last):
                ended = True
                break
            if len(rows) < limit:
                # Short, yet the final task is still to come: the portal clamps the page size (§5.2).
                self.cap.clamp(len(rows))
                broken = True
                break
        self.has_next_page = not ended
        self.after = read_to
        self.bounds = [read_to]
        if not (ended or broken):
            for k in range(1, self._probes):
                probe = answers.get(queries.probe_alias(k), [])
                if len(probe) < 2 or int(probe[0]["id"]) <= self.bounds[-1]:
                    break
                self.bounds.append(int(probe[0]["id"]))
        return pages

    def narrow(self) -> bool:
        if len(self._planned) <= 1:
            return False
        self.bounds = self.bounds[:1]
        return True


class NewestFirstTaskPager(TaskPager):
    """The most recently changed tasks first (`order changed DESC, id DESC`, offset pages), down to `since`.

    Offset pages shift when tasks are deleted (or hidden) between two requests, so every page after the
    first starts one row early: that row must be the previous page's last task (the seam). When it is not,
    a task may have slipped past unseen and the stored cursor would move beyond it, so the walk starts again
    from the top (rows read twice merge on id), at most `MAX_SEAM_RESTARTS` times. One page per batch: an
    incremental run usually finds few changed tasks.

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

    def request(self, room: int, per_page: int) -> dict[str, queries.Cmd]:
        if room < per_page + 1:
            return {}
        # A small first page: an incremental run usually finds only a few changed tasks.
        overlap = 1 if self.seam is not None else 0
        self.referenced = [queries.task_page_alias(0)]
        return queries.v3_tasks_recent_page(
            self.offset - overlap,
            limit=(RECENT_FIRST_PAGE if self.offset == 0 else PAGE_SIZE) + overlap,
            select=self.select,
        )

    def update_state(self, answers: Answers) -> list[TaskPage] | None:
        alias = queries.task_page_alias(0)
        tasks, last = answers[alias], answers[queries.LAST_ALIAS]
        # A short page ends the listing; so does a full one holding the final task.
        done = self.cap.is_last(len(tasks)) or queries.reaches_last_task(tasks, last)
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
        return [TaskPage(alias, tasks, fresh)] if tasks else []

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


@dataclass(slots=True)
class _Waiting:
    """A page of tasks whose results are still being read."""

    tasks: list[Row]
    ids: tuple[int, ...]
    results: dict[int, Row] = field(default_factory=dict)
    after: int | None = None
    """The last result id of the rows read so far while more may follow; None when all are read."""
    pages: int = FOLLOW_UP_PAGES
    """Result pages to send for the rest of its results."""


class _ResultPlan:
    """How many result pages a task page gets, from the results per task seen so far in the run."""

    def __init__(self) -> None:
        self.cap = queries.PageCap()
        self.tasks = 0
        self.results = 0

    def pages(self, task_limit: int) -> int:
        if not self.tasks:
            return FIRST_RESULT_PAGES
        expected = self.results / self.tasks * task_limit * RESULT_MARGIN
        # Overlapping pages hold `pages * (limit - 1) + 1` rows (`queries.result_window`).
        wanted = math.ceil((expected - 1) / max(1, self.cap.limit - 1))
        return min(MAX_RESULT_PAGES, max(1, wanted))

    def note(self, tasks: int, results: int) -> None:
        self.tasks += tasks
        self.results += results


def read_task_pages(
    reader: PortalReader,
    resource: str,
    pager: TaskPager,
    *,
    head: Mapping[str, queries.Cmd] | None = None,
    on_head: Callable[[Mapping[str, CommandResult]], Sequence[str]] | None = None,
) -> Iterator[tuple[list[Row], list[Row]]]:
    """Yield (tasks, results of those tasks) per page of tasks, several pages per v3 batch (§5.2, §5.6).

    Every batch holds the pager's task pages, the results of each page (`queries.result_window` over its
    `$refArray`), and the follow-up windows of earlier pages whose results came back full. A page is yielded
    when its results are complete, in the order the pages were read.

    The first batch may also carry `head` (the task field list), while the pager's `select` is a guess (the
    documented task object, `BLIND_TASK_SELECT`): `on_head` answers with the fields the tasks are to carry,
    the first batch's tasks are cut to them, and every later page selects exactly them. When the guess
    missed one of them (a field the documentation does not list) the first batch's pages are read again.

    Args:
        reader: the portal reader (counts the requests under `resource`).
        resource: the resource the requests are counted for.
        pager: the paging strategy (`task_pager`).
        head: commands for the first batch (keys other than the pager's aliases), answered through `on_head`.
        on_head: receives the results of `head` by key; returns the task fields to select from then on.
    """
    plan = _ResultPlan()
    waiting: deque[_Waiting] = deque()
    head = dict(head or {})
    pager.init_request()
    while pager.has_next_page or any(w.after is not None for w in waiting):
        limit = plan.cap.limit
        followed: list[_Waiting] = []
        follow_ups: dict[str, queries.Cmd] = {}
        per_page = plan.pages(pager.cap.limit) if pager.with_results else 0
        for entry in waiting:
            if entry.after is None or len(follow_ups) + entry.pages > BATCH_LIMIT:
                continue
            follow_ups.update(
                queries.result_window(
                    f"f{len(followed)}",
                    entry.ids,
                    after=entry.after,
                    pages=entry.pages,
                    limit=limit,
                    select=pager.results_select,
                )
            )
            followed.append(entry)
        room = BATCH_LIMIT - len(follow_ups) - len(head)
        task_side = pager.request(room, 1 + per_page) if pager.has_next_page else {}
        pages = pager.referenced if task_side else []
        commands = {**head, **task_side}
        for alias in pages:
            commands.update(
                queries.result_window(
                    alias,
                    ref_array(f"{alias}.id"),
                    after=None,
                    pages=per_page,
                    limit=limit,
                    select=pager.results_select,
                )
            )
        commands.update(follow_ups)
        try:
            answer = reader.batch(resource, commands, version=TASKS.api_version)
            queries.raise_first_error(answer)
        except ApiError as exc:
            if not (exc.permanent and pages and per_page):
                raise
            # A task page without tasks makes its `in []` fail the whole batch (§5.4, §5.6): tasks deleted
            # since the probes were read, or (first batch) no task at all.
            if pager.narrow():
                continue
            if not _tasks_exhausted(reader, resource, task_side[pages[0]]):
                raise
            pager.has_next_page = False
            continue
        rows = {
            res.key: queries.rows_of(
                res.result, TASK_RESULTS.list_key if res.method == TASK_RESULTS.method else TASKS.list_key
            )
            for res in answer
            if res.key not in head
        }
        read = pager.update_state(rows) if task_side else []
        if head:
            wanted = list(on_head({res.key: res for res in answer if res.key in head})) if on_head else []
            head = {}
            if wanted and not set(wanted) <= set(pager.select):
                # The guessed select missed a field the portal lists: read these pages again with it.
                pager.select = wanted
                pager.init_request()
                continue
            if wanted:
                pager.select = wanted
                _cut_to(read or [], wanted)
        for page in read or []:
            entry = _Waiting(page.fresh, tuple(int(t["id"]) for t in page.tasks))
            if per_page and page.later:
                # Results from the first one on, in the next batch, as many pages as a page gets.
                entry.after, entry.pages = 0, per_page
            elif per_page:
                window = [rows[queries.result_page_alias(page.alias, k)] for k in range(per_page)]
                _take(entry, window, limit, plan.cap)
            waiting.append(entry)
        for n, entry in enumerate(followed):
            window = [rows[queries.result_page_alias(f"f{n}", k)] for k in range(entry.pages)]
            entry.pages = FOLLOW_UP_PAGES
            _take(entry, window, limit, plan.cap)
        while waiting and waiting[0].after is None:
            done = waiting.popleft()
            plan.note(len(done.ids), len(done.results))
            fresh = {int(t["id"]) for t in done.tasks}
            yield done.tasks, [r for r in done.results.values() if int(r["taskId"]) in fresh]


def _cut_to(pages: Sequence[TaskPage], select: Sequence[str]) -> None:
    """Drop the fields of the first batch's tasks that later pages will not select (the guess asked for more)."""
    keep = set(select) | {"id"}
    for page in pages:
        for task in page.tasks:
            for name in [n for n in task if n not in keep]:
                del task[name]


def _take(entry: _Waiting, window: list[list[Row]], limit: int, cap: queries.PageCap) -> None:
    """Add one result window's rows to a waiting page (only results of its own tasks: a task read by an
    earlier page as well brings its results there)."""
    got, entry.after = queries.stitch_result_pages(window, limit=limit, cap=cap)
    own = set(entry.ids)
    for row in got:
        if int(row["taskId"]) in own:
            entry.results[int(row["id"])] = row


def _tasks_exhausted(reader: PortalReader, resource: str, tasks_command: queries.Cmd) -> bool:
    """Whether the first tasks page of a rejected v3 batch is empty: the deliberate end-of-listing check.

    When a tasks page is empty, its `{"$refArray": "t0.id"}` resolves to an empty list, the portal rejects
    `in []` and, v3 batches being all-or-nothing (§5.6), the whole batch fails. Sending the same tasks query
    alone tells "the listing is over" (no rows) from a real error (rows: re-raise).
    """
    method, params = tasks_command
    rows = queries.rows_of(reader.call(resource, method, params, version=TASKS.api_version), TASKS.list_key)
    return not rows
