"""Tasks at batch scale: several task pages and their result pages per v3 batch, against sandbox portals.

Every test compares every task and result row with the portal's own; the request counts are those of the
`tasks` resource, whose first batch also carries the task field list.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import bitrix24_source.source as source_module
from bitrix24_source import bitrix24_source
from bitrix24_source.sandbox import CostModel, Sandbox, SeedCounts
from bitrix24_source.sandbox.state import PortalState
from bitrix24_source.source import resource_stats
from bitrix24_source.source.metadata import FieldStore
from bitrix24_source.source.reader import PortalReader
from bitrix24_source.source.settings import BATCH_LIMIT, PAGE_SIZE
from bitrix24_source.source.task_pages import FIRST_RESULT_PAGES, RESULT_MARGIN, KeysetTaskPager
from tests.helpers import fetch_table, make_pipeline
from tests.source.compare import assert_rows_equal

TASKS = 1_000


@pytest.fixture(scope="module")
def portal() -> Iterator[Sandbox]:
    # 2-4 results per task, as in the benchmark (bench/bench_compare.py)
    counts = SeedCounts(
        deals=5, leads=3, contacts=3, companies=3, users=5, tasks=TASKS, results_per_task=(2, 4)
    )
    with Sandbox(state=PortalState(seed=11, counts=counts, cost_model=CostModel())) as p:
        yield p


def _sync(portal: Sandbox, tmp_path: Path) -> Any:
    pipeline = make_pipeline(tmp_path)
    pipeline.run(
        bitrix24_source(webhook_url=portal.webhook_url, rate_limit=None, smart_processes=()).with_resources(
            "tasks", "task_results"
        )
    )
    assert_rows_equal(portal.rows("tasks"), fetch_table(pipeline, "tasks"))
    assert_rows_equal(portal.rows("task_results"), fetch_table(pipeline, "task_results"))
    return pipeline


def _after_first_tasks_batch(monkeypatch: pytest.MonkeyPatch, change: Any) -> None:
    """Run `change()` once, right after the first batch of the `tasks` resource came back."""
    original = PortalReader.batch
    calls: list[int] = []

    def batch(self: PortalReader, resource: str, calls_: Any, *, version: int = 2) -> Any:
        answer = original(self, resource, calls_, version=version)
        if resource == "tasks":
            calls.append(1)
            if len(calls) == 1:
                change()
        return answer

    monkeypatch.setattr(PortalReader, "batch", batch)


def test_a_thousand_tasks_with_their_results_take_three_requests(portal: Sandbox, tmp_path: Path) -> None:
    portal.reset_stats()
    pipeline = _sync(portal, tmp_path)
    results = len(portal.rows("task_results"))
    # At least 2 batches: 20 task pages and the result pages (50 rows, overlapping by one) exceed 50 commands.
    assert TASKS // PAGE_SIZE + math.ceil(results / (PAGE_SIZE - 1)) > BATCH_LIMIT
    # Batch 1: the field list, the final-task look-ahead, probes, one keyset page with its result pages and
    # as many offset pages after it as the next batch can read the results of (read blind: an empty one
    # must not be referred to).
    probes = BATCH_LIMIT // (1 + FIRST_RESULT_PAGES + 1)
    blind = (BATCH_LIMIT - 2) // FIRST_RESULT_PAGES
    first = 1 + 1 + (probes - 1) + (1 + FIRST_RESULT_PAGES) + blind
    assert first <= BATCH_LIMIT
    read = PAGE_SIZE + blind * (PAGE_SIZE - 1)
    # Batch 2: the blind pages' results, which leave no room for a task page and its results.
    assert blind * FIRST_RESULT_PAGES + 1 + FIRST_RESULT_PAGES > BATCH_LIMIT
    # Batch 3: the remaining pages, each with its result pages (about 3 results a task: 4 pages of 50 hold
    # a page's ~150 with room to spare), and the look-ahead: all fit.
    rest = math.ceil((TASKS - read) / PAGE_SIZE)
    per_page = math.ceil((results / TASKS * PAGE_SIZE * RESULT_MARGIN - 1) / (PAGE_SIZE - 1))
    assert rest <= probes and rest * (1 + per_page) + probes <= BATCH_LIMIT
    assert resource_stats(pipeline)["tasks"]["requests"] == 3
    assert portal.stats().http_by_method == {"batch": 3}
    # no batch was rejected for an empty tasks page (that would cost a plain tasks.task.list call)
    assert "tasks.task.list" not in portal.stats().http_by_method


def test_tasks_deleted_between_batches_leave_no_gap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with Sandbox(seed=12, deals=3, leads=3, contacts=3, companies=3, users=3, tasks=1_200) as p:
        ids = sorted(int(t["id"]) for t in p.rows("tasks"))

        def delete_some() -> None:
            # inside the second batch's window: its pages start later than the probes said
            for task_id in ids[700:760]:
                p.delete_row("tasks", task_id)

        _after_first_tasks_batch(monkeypatch, delete_some)
        with caplog.at_level(logging.WARNING, logger="bitrix24_source"):
            _sync(p, tmp_path)
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_page_emptied_between_batches_narrows_the_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Sandbox(seed=13, deals=3, leads=3, contacts=3, companies=3, users=3, tasks=1_000) as p:
        ids = sorted(int(t["id"]) for t in p.rows("tasks"))

        def delete_the_tail() -> None:
            # the probes promised pages up to the last task: the last pages now hold none, so their
            # `in []` result filters make the portal reject the batch (§5.4, §5.6)
            for task_id in ids[800:]:
                p.delete_row("tasks", task_id)

        _after_first_tasks_batch(monkeypatch, delete_the_tail)
        narrowed: list[bool] = []
        original = KeysetTaskPager.narrow

        def narrow(self: KeysetTaskPager) -> bool:
            narrowed.append(original(self))
            return narrowed[-1]

        monkeypatch.setattr(KeysetTaskPager, "narrow", narrow)
        pipeline = _sync(p, tmp_path)
        assert resource_stats(pipeline)["tasks"]["rows"] == 800
        assert narrowed == [True]


def test_tasks_added_during_the_run_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Sandbox(seed=14, deals=3, leads=3, contacts=3, companies=3, users=3, tasks=700) as p:

        def add_tasks() -> None:
            p.advance_clock(5)  # stamped after the scan started, whatever the machine's speed
            for n in range(30):
                task = p.add_row("tasks", {"title": f"added {n}", "creatorId": 1, "responsibleId": 1})
                p.add_row("task_results", {"taskId": task["id"], "text": f"result {n}", "authorId": 1})

        _after_first_tasks_batch(monkeypatch, add_tasks)
        pipeline = make_pipeline(tmp_path)
        source = bitrix24_source(webhook_url=p.webhook_url, rate_limit=None, smart_processes=())
        pipeline.run(source.with_resources("tasks", "task_results"))
        stored = {int(r["id"]) for r in fetch_table(pipeline, "tasks")}
        seeded = {int(r["id"]) for r in p.rows("tasks")[:700]}
        # the tasks added (changed) after the scan started wait for the next run, by design: the keyset pages
        # may list them, but this run keeps only what the portal held when it started
        assert stored == seeded
        again = bitrix24_source(webhook_url=p.webhook_url, rate_limit=None, smart_processes=())
        pipeline.run(again.with_resources("tasks", "task_results"))
        assert_rows_equal(p.rows("tasks"), fetch_table(pipeline, "tasks"))
        assert_rows_equal(p.rows("task_results"), fetch_table(pipeline, "task_results"))
        assert len(p.rows("tasks")) == 730


def test_tasks_without_results_fill_the_batch_with_pages(portal: Sandbox, tmp_path: Path) -> None:
    pipeline = make_pipeline(tmp_path)
    pipeline.run(
        bitrix24_source(webhook_url=portal.webhook_url, rate_limit=None, smart_processes=()).with_resources(
            "tasks"
        )
    )
    assert_rows_equal(portal.rows("tasks"), fetch_table(pipeline, "tasks"))
    # no result pages: 1,000 tasks in the first batch's keyset page and offset pages after it, the rest next
    assert resource_stats(pipeline)["tasks"]["requests"] <= 2


def test_a_field_the_first_batch_did_not_select_reads_its_pages_again(
    portal: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first batch selects the documented task object before the portal's field list is known; here the
    # guess lacks `title`, which the portal lists: the first batch's pages are read again with it.
    guess = tuple(name for name in source_module.BLIND_TASK_SELECT if name != "title")
    monkeypatch.setattr(source_module, "BLIND_TASK_SELECT", guess)
    portal.reset_stats()
    pipeline = _sync(portal, tmp_path)
    assert resource_stats(pipeline)["tasks"]["requests"] == 4
    assert portal.stats().http_by_method == {"batch": 4}


def test_fields_the_portal_does_not_list_are_dropped_from_the_first_batch(
    portal: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The guess asks for a field the portal serves but does not list (here: `title`, hidden from the field
    # list): the first batch's rows lose it, so every page carries the same columns.
    original = FieldStore.accept

    def accept(self: FieldStore, entity: str, results: Any) -> Any:
        fields = original(self, entity, results)
        return {k: v for k, v in fields.items() if k != "title"} if entity == "tasks" else fields

    monkeypatch.setattr(FieldStore, "accept", accept)
    pipeline = make_pipeline(tmp_path)
    pipeline.run(
        bitrix24_source(webhook_url=portal.webhook_url, rate_limit=None, smart_processes=()).with_resources(
            "tasks"
        )
    )
    expected = [{k: v for k, v in row.items() if k != "title"} for row in portal.rows("tasks")]
    loaded = fetch_table(pipeline, "tasks")
    assert all("title" not in row for row in loaded)
    assert_rows_equal(expected, loaded)
