"""Honest outcomes after lost answers: rows in flight are checked on the portal before they are recorded.

A lost answer (the sandbox executes a batch, then drops the connection) leaves writes whose outcome is unknown;
they are verified on the portal (markers for adds, the records for updates and deletes) before anything is
resent or recorded, also when the load is aborted right after, and for tasks as for CRM records.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from bitrix24_source.destination.results import RESULTS_TABLE
from bitrix24_source.sandbox import Fault, Sandbox


def _by_load(results: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    loads: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        loads.setdefault(r["load_id"], []).append(r)
    return [loads[k] for k in sorted(loads)]


def test_an_aborted_load_checks_the_rows_in_flight_on_the_portal_and_records_them_ok(
    portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    ids = sorted(int(r["id"]) for r in portal.rows("deals"))[:30]
    rows: list[dict[str, Any]] = [{"title": f"flight add {k}"} for k in range(30)]
    rows += [{"id": i, "title": f"flight upd {i}"} for i in ids]  # 60 rows: a chunk of 50, then 10
    # Batch request 1 reads the 30 ids (pre-flight), 2 looks the 30 markers up, 3 writes the first chunk:
    # executed, then its answer is lost. The look-up that verifies it is refused (a scope error): the load
    # is aborted with the first chunk in flight, and the second never sent.
    portal.inject(Fault(kind="reset", method="batch", phase="after", after=2, times=1))
    portal.inject(
        Fault(kind="command_error", method="crm.item.list", after=2, times=1, error_code="insufficient_scope")
    )
    pipeline = push_pipeline(portal.webhook_url, name="in_flight")
    with pytest.raises(PipelineStepFailed, match="insufficient_scope"):
        pipeline.run(rows, table_name="deals")
    assert not pipeline.list_normalized_load_packages()
    pipeline.run(
        [{"id": ids[0], "title": "next run"}], table_name="deals"
    )  # flushes the aborted load's results

    aborted = _by_load(read_table(RESULTS_TABLE))[0]
    assert [r["row_number"] for r in aborted] == list(range(60))  # every input row, once
    added = {
        r["title"]: int(r["id"]) for r in portal.rows("deals") if str(r["title"]).startswith("flight add")
    }
    assert len(added) == 30 and portal.stats().by_method["crm.item.add"] == 30  # applied once, never resent
    assert [(r["status"], r["bitrix_id"]) for r in aborted[:30]] == [
        ("ok", added[f"flight add {k}"]) for k in range(30)
    ]
    assert [(r["status"], r["bitrix_id"]) for r in aborted[30:50]] == [("ok", i) for i in ids[:20]]
    assert {(r["status"], r["error_code"]) for r in aborted[50:]} == {("error", "LOAD_ABORTED")}
    assert all(r["error_description"].startswith("not sent: ") for r in aborted[50:])


def test_a_delete_whose_answer_was_lost_is_ok_only_if_the_record_was_there(
    portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    deal = sorted(int(r["id"]) for r in portal.rows("deals"))[0]
    task = sorted(int(r["id"]) for r in portal.rows("tasks"))[0]
    # Batch request 1 is the pre-flight read, 2 the write: executed, then its answer is lost.
    for table, real in (("deals", deal), ("tasks", task)):
        portal.inject(Fault(kind="reset", method="batch", phase="after", after=1, times=1))
        rows = [{"id": real, "_delete": True}, {"id": 99_999_991, "_delete": True}]
        push_pipeline(portal.webhook_url, name=f"lost_delete_{table}").run(rows, table_name=table)
        portal.clear_faults()
    results = read_table(RESULTS_TABLE)
    assert [(r["table_name"], r["status"], r["error_code"]) for r in results] == [
        ("deals", "ok", None),
        ("deals", "error", "NOT_FOUND"),
        ("tasks", "ok", None),
        ("tasks", "error", "NOT_FOUND"),
    ]
    stats = portal.stats().by_method
    assert stats["crm.item.delete"] == 1 and stats["tasks.task.delete"] == 1  # the lost attempts, not resent
    assert deal not in {int(r["id"]) for r in portal.rows("deals")}
    assert task not in {int(r["id"]) for r in portal.rows("tasks")}


def test_task_updates_and_deletes_of_unknown_ids_are_errors_before_sending_in_the_dry_run_too(
    portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    tasks = sorted(int(r["id"]) for r in portal.rows("tasks"))
    rows: list[dict[str, Any]] = [
        {"ID": tasks[0], "TITLE": "preflight task"},
        {"ID": 99_999_991, "TITLE": "ghost"},
        {"id": 99_999_992, "_delete": True},
        {"ID": tasks[1], "TITLE": "preflight 2", "PRIORITY": "high"},
        {"TITLE": "a new task", "RESPONSIBLE_ID": 2},
    ]
    before = {int(r["id"]): dict(r) for r in portal.rows("tasks")}
    portal.reset_stats()
    push_pipeline(portal.webhook_url, name="tasks_dry", dry_run=True).run(rows, table_name="tasks")
    assert {int(r["id"]): dict(r) for r in portal.rows("tasks")} == before
    push_pipeline(portal.webhook_url, name="tasks_real").run(rows, table_name="tasks")
    dry, real = _by_load(read_table(RESULTS_TABLE))

    def errors(results: list[dict[str, Any]]) -> list[tuple[int, str | None]]:
        return [(r["row_number"], r["error_code"]) for r in results if r["status"] == "error"]

    assert errors(dry) == errors(real) == [(1, "NOT_FOUND"), (2, "NOT_FOUND")]
    assert "tasks id 99999991 does not exist on the portal" in real[1]["error_description"]
    assert Counter(r["status"] for r in real) == {"ok": 3, "error": 2}
    stats = portal.stats().by_method
    assert stats["tasks.task.update"] == 2 and "tasks.task.delete" not in stats  # the unknown ids: never sent
    # Per run: one pre-flight read of the frame's ids (tasks.task.list by ID), one look-up of the add's marker.
    assert stats["tasks.task.list"] == 4


def test_an_uncertain_task_update_is_checked_on_the_portal_not_resent(
    portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    tasks = sorted(int(r["id"]) for r in portal.rows("tasks"))[:5]
    rows = [{"ID": t, "TITLE": f"lost answer {t}", "PRIORITY": "high"} for t in tasks]
    # Batch request 1 is the pre-flight read, 2 the write: executed, then its answer is lost. A resend would
    # be refused (the portal's error would then be recorded although the update was applied).
    portal.inject(Fault(kind="reset", method="batch", phase="after", after=1, times=1))
    portal.inject(Fault(kind="command_error", method="tasks.task.update", after=5, error_code="ERROR_CORE"))
    portal.reset_stats()
    push_pipeline(portal.webhook_url, name="task_lost").run(rows, table_name="tasks")
    results = read_table(RESULTS_TABLE)
    assert [(r["status"], r["bitrix_id"]) for r in results] == [("ok", t) for t in tasks]
    assert portal.stats().by_method["tasks.task.update"] == 5
    state = {int(r["id"]): r for r in portal.rows("tasks")}
    assert [state[t]["title"] for t in tasks] == [f"lost answer {t}" for t in tasks]


def test_a_task_sub_command_error_after_execution_is_verified_before_it_is_recorded(
    portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    tasks = sorted(int(r["id"]) for r in portal.rows("tasks"))[:3]
    rows: list[dict[str, Any]] = [
        {"ID": tasks[0], "TITLE": "ran despite the error"},
        {"ID": tasks[1], "_delete": True},
        {"ID": tasks[2], "TITLE": "really failed"},
    ]
    # The portal runs the first update and the delete, then answers INTERNAL_SERVER_ERROR for them (which
    # proves nothing); the second update is refused the same way before it runs.
    portal.inject(Fault(kind="command_error", method="tasks.task.update", phase="after", times=1))
    portal.inject(Fault(kind="command_error", method="tasks.task.delete", phase="after", times=1))
    portal.inject(Fault(kind="command_error", method="tasks.task.update", phase="before", after=1, times=1))
    push_pipeline(portal.webhook_url, name="task_unproven").run(rows, table_name="tasks")
    results = read_table(RESULTS_TABLE)
    assert [(r["status"], r["error_code"]) for r in results] == [
        ("ok", None),
        ("ok", None),
        ("error", "INTERNAL_SERVER_ERROR"),
    ]
    state = {int(r["id"]): r for r in portal.rows("tasks")}
    assert state[tasks[0]]["title"] == "ran despite the error" and tasks[1] not in state
    assert state[tasks[2]]["title"] != "really failed"
