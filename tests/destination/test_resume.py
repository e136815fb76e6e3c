"""Idempotency: lost answers, timeouts and a killed run never duplicate an add or lose a result row."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bitrix24_source.destination.results import RESULTS_TABLE
from bitrix24_source.sandbox import Fault, Sandbox

REPO = Path(__file__).resolve().parents[2]


def _rows(ids: list[int], adds: int, tag: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [{"id": i, "title": f"{tag} upd {i}"} for i in ids]
    rows += [{"title": f"{tag} add {k}", "opportunity": k} for k in range(adds)]
    return rows


def _assert_written_once(
    portal: Sandbox, rows: list[dict[str, Any]], tag: str, read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    state = portal.rows("deals")
    adds = Counter(r["title"] for r in state if str(r["title"]).startswith(f"{tag} add "))
    expected_adds = sum(1 for r in rows if "id" not in r)
    assert len(adds) == expected_adds and set(adds.values()) == {1}, "an add was lost or duplicated"
    titles = {int(r["id"]): r["title"] for r in state}
    for r in rows:
        if "id" in r:
            assert titles[r["id"]] == r["title"]
    results = read_table(RESULTS_TABLE)
    assert sorted(r["row_number"] for r in results) == list(range(len(rows)))
    assert all(r["status"] == "ok" for r in results)
    add_ids = [r["bitrix_id"] for r in results if r["operation"] == "add"]
    assert len(set(add_ids)) == expected_adds
    assert set(add_ids) <= {int(r["id"]) for r in state}


def test_lost_answers_after_commit_are_verified_not_resent(
    portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    ids = sorted(int(r["id"]) for r in portal.rows("deals"))[:60]
    rows = _rows(ids, 90, "reset")
    # The 2nd and 3rd write batches are executed, then the connection is dropped with no answer.
    portal.inject(Fault(kind="reset", method="batch", phase="after", after=1, times=2))
    portal.reset_stats()
    push_pipeline(portal.webhook_url, name="resets").run(rows, table_name="deals")
    _assert_written_once(portal, rows, "reset", read_table)
    stats = portal.stats().by_method
    assert stats["crm.item.add"] == 90  # no add was sent twice: the lost ones were found by their markers
    assert stats.get("crm.item.list", 0) >= 1


def test_timeout_on_a_write_batch_does_not_duplicate(
    portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    ids = sorted(int(r["id"]) for r in portal.rows("deals"))[:20]
    rows = _rows(ids, 70, "hang")
    portal.inject(Fault(kind="hang", method="batch", phase="after", after=1, delay=3.0))
    push_pipeline(portal.webhook_url, name="hangs", timeout=1.0).run(rows, table_name="deals")
    _assert_written_once(portal, rows, "hang", read_table)
    assert portal.stats().by_method["crm.item.add"] == 70


_CHILD = textwrap.dedent(
    """
    import sys
    import dlt
    from bitrix24_source import bitrix24_destination

    webhook_url, pipelines_dir, results_db, adds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    rows = [{"title": f"kill add {k}", "opportunity": k} for k in range(adds)]
    destination = bitrix24_destination(
        webhook_url=webhook_url, results_destination=dlt.destinations.duckdb(results_db),
        results_dataset_name=sys.argv[5], rate_limit=None, progress=False, timeout=120.0,
    )
    pipeline = dlt.pipeline("killed", pipelines_dir=pipelines_dir, destination=destination)
    pipeline.run(rows, table_name="deals")
    """
)


def test_killed_run_resumes_and_writes_each_row_once(
    portal: Sandbox,
    push_pipeline: Callable[..., Any],
    tmp_path: Path,
    results_db: Path,
    read_table: Callable[[str], list[dict[str, Any]]],
) -> None:
    adds = 300  # 6 write batches
    pipelines_dir = tmp_path / "pipelines"
    # Batch request 1 looks the 300 markers up. The 4th write batch is committed on the portal, then its
    # answer hangs: the child is killed right there, so write batches 1-3 are journaled, batch 4 is "in
    # flight" with an unknown outcome, 5-6 were never sent.
    portal.inject(Fault(kind="hang", method="batch", phase="after", after=4, delay=15.0))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _CHILD,
            portal.webhook_url,
            str(pipelines_dir),
            str(results_db),
            str(adds),
            "bitrix24_writes",
        ],
        env=env,
        cwd=str(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(600):  # bounded wait: up to 60 s for the 4th write batch to reach the portal
            if portal.stats().http_by_method.get("batch", 0) >= 5 or child.poll() is not None:
                break
            time.sleep(0.1)
        assert child.poll() is None, child.communicate()[0].decode(errors="replace")
        assert portal.stats().http_by_method.get("batch", 0) == 5
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    portal.clear_faults()
    added_before = sum(1 for r in portal.rows("deals") if str(r["title"]).startswith("kill add "))
    assert added_before == 200  # four batches landed, the run died before recording the fourth
    assert not results_db.exists()  # results are flushed only when the load completes

    pipeline = push_pipeline(portal.webhook_url, name="killed")
    assert pipeline.list_normalized_load_packages(), "the killed run left its package pending"
    pipeline.run()

    rows = [{"title": f"kill add {k}", "opportunity": k} for k in range(adds)]
    _assert_written_once(portal, rows, "kill", read_table)
    # 4 batches before the kill + the 2 never sent; the in-flight 4th was verified by marker, not resent.
    assert portal.stats().by_method["crm.item.add"] == adds
    assert portal.stats().by_method.get("crm.item.list", 0) >= 1


def test_unsent_batch_is_verified_then_sent_and_dlt_retries_the_job(
    portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    ids = sorted(int(r["id"]) for r in portal.rows("deals"))[:10]
    rows = _rows(ids, 90, "drop")
    # The 2nd write batch's connection is dropped before it runs, four times in a row: three attempts inside
    # the job fail (outcome unknown, markers not found), the job raises a transient error, dlt retries it, and
    # the retried job resumes from its checkpoint: verifies the in-flight rows, then sends them once.
    # (Batch request 1 is the marker look-up before sending.)
    portal.inject(Fault(kind="reset", method="batch", phase="before", after=2, times=4))
    push_pipeline(portal.webhook_url, name="drops").run(rows, table_name="deals")
    _assert_written_once(portal, rows, "drop", read_table)
    stats = portal.stats().by_method
    assert stats["crm.item.add"] == 90
    assert stats["crm.item.update"] == 10
    # Markers looked up before the first send (2 commands of 50), then after every lost attempt.
    assert stats["crm.item.list"] >= 3


def test_writes_of_an_aborted_package_get_their_results_at_the_next_load(
    portal: Sandbox,
    push_pipeline: Callable[..., Any],
    read_table: Callable[[str], list[dict[str, Any]]],
) -> None:
    from dlt.pipeline.exceptions import PipelineStepFailed

    ids = sorted(int(r["id"]) for r in portal.rows("deals"))[:60]
    rows = [{"id": i, "title": f"aborted run {i}"} for i in ids]
    # The first chunk of 50 is written and journaled; in the second, the first update meets an auth error,
    # which fails the job terminally once the batch's other outcomes are recorded (its other 9 updates ran),
    # and dlt then aborts the package (the destination turns dlt's auto-abort on for its pipelines): it
    # never completes an aborted package, and nothing of it stays pending.
    portal.inject(
        Fault(kind="command_error", method="crm.item.update", after=50, error_code="insufficient_scope")
    )
    pipeline = push_pipeline(portal.webhook_url, name="aborted")
    with pytest.raises(PipelineStepFailed, match="insufficient_scope"):
        pipeline.run(rows, table_name="deals")
    titles = {int(r["id"]): r["title"] for r in portal.rows("deals")}
    assert [titles[i] for i in ids[:50]] == [f"aborted run {i}" for i in ids[:50]]

    pipeline.run([{"id": ids[0], "title": "next run"}], table_name="deals")
    results = read_table(RESULTS_TABLE)
    per_load = Counter(r["load_id"] for r in results)
    assert not pipeline.list_normalized_load_packages()
    assert sorted(per_load.values()) == [1, 60]  # every row of the aborted load, then the next load's row
    statuses = Counter((r["status"], r["error_code"]) for r in results)
    assert statuses == {("ok", None): 60, ("error", "LOAD_ABORTED"): 1}
    (aborted,) = [r for r in results if r["error_code"] == "LOAD_ABORTED"]
    assert aborted["bitrix_id"] is None and aborted["row_number"] == 50
    assert "not applied on the portal (checked)" in aborted["error_description"]
    assert "insufficient_scope" in aborted["error_description"]
    titles = {int(r["id"]): r["title"] for r in portal.rows("deals")}
    assert [titles[i] for i in ids[51:]] == [f"aborted run {i}" for i in ids[51:]]
