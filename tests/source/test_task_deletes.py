"""Task deletes: with `detect_deletes`, an id scan through REST v3 `tasks.task.list` finds the tasks the portal
no longer has (tasks.task.delete through REST) and hard-deletes them and their results from the warehouse."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dlt
import pytest

from bitrix24_source import bitrix24_source
from bitrix24_source.client import Bitrix24Client
from bitrix24_source.sandbox import Sandbox
from bitrix24_source.source import resource_stats
from bitrix24_source.source.deletes import task_portal_ids
from bitrix24_source.source.reader import PortalReader
from tests.helpers import fetch_table, make_pipeline
from tests.source.compare import assert_rows_equal

LAG = 300.0


def _changed(task: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(task["changed"])


def _small(tasks: int, v3_limits: dict[str, int] | None = None) -> Sandbox:
    return Sandbox(
        seed=31, deals=5, leads=3, contacts=3, companies=3, users=4, tasks=tasks, v3_limits=v3_limits
    )


def _assert_equal(portal: Sandbox, pipeline: dlt.Pipeline) -> None:
    for table in ("tasks", "task_results"):
        stored = [{k: v for k, v in r.items() if k != "_deleted"} for r in fetch_table(pipeline, table)]
        assert_rows_equal(portal.rows(table), stored)


def test_deleted_tasks_and_their_results_leave_the_warehouse(tmp_path: Path) -> None:
    with _small(tasks=140) as portal:
        pipeline = make_pipeline(tmp_path)

        def run() -> None:
            source = bitrix24_source(
                webhook_url=portal.webhook_url, rate_limit=None, lag_seconds=LAG, detect_deletes=True
            )
            assert not pipeline.run(source.with_resources("tasks", "task_results")).has_failed_jobs

        run()
        _assert_equal(portal, pipeline)
        cursor = max(_changed(t) for t in portal.rows("tasks"))
        results = portal.rows("task_results")
        with_results = sorted({r["taskId"] for r in results})
        gone = [with_results[0], with_results[-1], portal.rows("tasks")[5]["id"]]
        gone_results = {r["id"] for r in results if r["taskId"] in gone}
        assert gone_results
        client = Bitrix24Client(portal.webhook_url)
        for id_ in gone:
            assert client.call("tasks.task.delete", {"id": id_}, version=3).result == {"result": True}
        portal.reset_stats()

        run()
        _assert_equal(portal, pipeline)
        assert not {r["id"] for r in fetch_table(pipeline, "tasks")} & set(gone)
        assert not {r["id"] for r in fetch_table(pipeline, "task_results")} & gone_results
        # Nothing changed but the deletes: only the tasks in the lag window before the last cursor are read
        # again, and the id scan of 137 tasks is one v3 batch of one page plus one of overlapping pages.
        window = [t for t in portal.rows("tasks") if _changed(t) >= cursor - dt.timedelta(seconds=LAG)]
        assert len(window) < 20
        assert resource_stats(pipeline)["tasks"]["rows"] == len(window)


def test_task_id_scan_finds_every_task_when_the_portal_clamps_pages() -> None:
    # pages of 20 where 50 are asked for (§5.2): the scan learns the cap at the first seam that does not fit
    with _small(tasks=230, v3_limits={"tasks.task.list": 20}) as portal:
        reader = PortalReader(Bitrix24Client(portal.webhook_url))
        assert task_portal_ids(reader, "tasks") == {t["id"] for t in portal.rows("tasks")}
        # 1: one page of 20; 2: pages asked at offsets of 49 break the seam, the cap is learnt (20 rows of it
        # kept); 3: 49 overlapping pages of 20 read the remaining 190
        assert reader.stats.get("tasks").requests == 3


@pytest.mark.parametrize("tasks", [0, 1, 50, 2451])
def test_task_id_scan_reads_each_id_once_per_page_window(tasks: int) -> None:
    with _small(tasks=tasks) as portal:
        reader = PortalReader(Bitrix24Client(portal.webhook_url))
        assert task_portal_ids(reader, "tasks") == {t["id"] for t in portal.rows("tasks")}
        # one page in the first batch, then 49 overlapping pages of 50 (2,402 new ids) per batch
        expected = 1 if tasks <= 50 else 1 + -(-(tasks - 50) // (49 * 49 + 1))
        assert reader.stats.get("tasks").requests == expected
