"""Failed runs fail for good, fast and labelled: an unreachable portal, a wrong webhook, messy values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
import requests
from dlt.pipeline.exceptions import PipelineStepFailed

from bitrix24_source import bitrix24_rows
from bitrix24_source.client.transport import transport_error
from bitrix24_source.destination.results import ERRORS_TABLE, RESULTS_TABLE
from bitrix24_source.sandbox import Fault, Sandbox


def test_a_portal_that_is_down_fails_the_load_with_one_labelled_error_and_aborts_it(
    push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    with Sandbox(seed=3, deals=5, leads=0, contacts=0, companies=0, users=2, tasks=0) as down:
        url = down.webhook_url
    pipeline = push_pipeline(url, name="down")
    with pytest.raises(PipelineStepFailed) as failed:
        pipeline.run([{"title": "nobody home"}, {"id": 3, "title": "x"}], table_name="deals")
    text = str(failed.value)
    assert "[CONNECTION_REFUSED]" in text and "cannot read the field metadata of deals" in text
    assert not pipeline.list_normalized_load_packages()  # aborted: nothing left to replay


def test_an_unresolvable_host_is_labelled_dns_error_not_connection_refused() -> None:
    from urllib3.exceptions import MaxRetryError, NameResolutionError
    from urllib3.util import parse_url

    cause = NameResolutionError("portal.invalid", None, OSError("Name or service not known"))  # type: ignore[arg-type]
    request = requests.Request("POST", "https://portal.invalid/rest/1/abc/crm.item.list").prepare()
    exc = requests.exceptions.ConnectionError(
        MaxRetryError(None, parse_url("/rest"), cause),  # type: ignore[arg-type]
        request=request,
    )
    error = transport_error(exc, method="crm.item.list", request_id="r1", timeout=5.0)
    assert error.code == "DNS_ERROR" and error.maybe_executed is False
    assert "portal.invalid" in error.description and "abc" not in error.description


def test_values_dlt_could_not_type_each_fail_only_their_row(
    portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    deal_ids = sorted(int(r["id"]) for r in portal.rows("deals"))
    frame = pd.DataFrame(
        {
            "id": [deal_ids[0], deal_ids[1], deal_ids[2], deal_ids[3]],
            "opportunity": [True, 5, "x", 7.5],  # an object column of mixed values
            "_delete": [None, "N", None, 0],  # a mixed _delete column
        }
    )
    records = [{"title": "lone \ud800 surrogate"}, {"title": "fine"}]
    pipeline = push_pipeline(portal.webhook_url, name="messy")
    pipeline.run(bitrix24_rows(frame, table_name="deals"))
    pipeline.run(bitrix24_rows(records, table_name="deals"))

    results = read_table(RESULTS_TABLE)
    assert [(r["status"], r["error_code"]) for r in results] == [
        ("error", "INVALID_TYPE"),
        ("ok", None),
        ("error", "INVALID_TYPE"),
        ("ok", None),
        ("error", "INVALID_TYPE"),
        ("ok", None),
    ]
    assert "'opportunity'" in results[0]["error_description"]
    assert "row 0, field 'title'" in results[4]["error_description"]
    state = {int(r["id"]): r for r in portal.rows("deals")}
    assert float(state[deal_ids[1]]["opportunity"]) == 5 and float(state[deal_ids[3]]["opportunity"]) == 7.5
    assert [r["title"] for r in state.values()].count("fine") == 1
    errors = read_table(ERRORS_TABLE)
    assert len(errors) == 3


def test_a_sub_command_error_after_execution_is_verified_before_it_is_recorded(
    portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    deal_ids = sorted(int(r["id"]) for r in portal.rows("deals"))
    rows: list[dict[str, Any]] = [
        {"title": "ran despite the error"},
        {"id": deal_ids[0], "title": "updated despite the error"},
        {"id": deal_ids[1], "_delete": True},
        {"id": deal_ids[2], "title": "really failed"},
    ]
    # The portal runs each command, then answers INTERNAL_SERVER_ERROR for it (which proves nothing);
    # the last update is refused before it runs.
    for method in ("crm.item.add", "crm.item.update", "crm.item.delete"):
        portal.inject(Fault(kind="command_error", method=method, phase="after", times=1))
    portal.inject(Fault(kind="command_error", method="crm.item.update", phase="before", after=1, times=1))
    push_pipeline(portal.webhook_url, name="unproven").run(rows, table_name="deals")

    results = read_table(RESULTS_TABLE)
    state = {int(r["id"]): r for r in portal.rows("deals")}
    added = next(r for r in state.values() if r["title"] == "ran despite the error")
    assert [(r["status"], r["bitrix_id"]) for r in results[:3]] == [
        ("ok", int(added["id"])),
        ("ok", deal_ids[0]),
        ("ok", deal_ids[1]),
    ]
    assert (results[3]["status"], results[3]["error_code"]) == ("error", "INTERNAL_SERVER_ERROR")
    assert deal_ids[1] not in state and state[deal_ids[2]]["title"] != "really failed"


def test_a_lost_journal_stops_the_run_with_what_to_do_and_nothing_is_duplicated(
    portal: Sandbox,
    push_pipeline: Callable[..., Any],
    read_table: Callable[[str], list[dict[str, Any]]],
    tmp_path: Any,
) -> None:
    rows = [{"title": f"journal {k}"} for k in range(60)]
    # Batch 1 looks the markers up, batch 2 writes the first 50; from batch 3 on every request is reset
    # before it runs, until dlt gives up on the job: its package stays pending with 50 rows journaled.
    portal.inject(Fault(kind="reset", method="batch", phase="before", after=2, times=1000))
    pipeline = push_pipeline(portal.webhook_url, name="journal")
    with pytest.raises(PipelineStepFailed):
        pipeline.run(rows, table_name="deals")
    portal.clear_faults()
    journals = list((tmp_path / "pipelines").rglob("bitrix24_writes/*/*.jsonl"))
    assert journals
    for journal in journals:
        journal.unlink()

    with pytest.raises(PipelineStepFailed, match="journal was removed or truncated"):
        push_pipeline(portal.webhook_url, name="journal").run()
    assert not pipeline.list_normalized_load_packages()
    push_pipeline(portal.webhook_url, name="journal").run(rows, table_name="deals")
    titles = [r["title"] for r in portal.rows("deals") if str(r["title"]).startswith("journal ")]
    assert sorted(titles) == sorted(r["title"] for r in rows)  # each once
    last = [
        r
        for r in read_table(RESULTS_TABLE)
        if r["load_id"] == max(x["load_id"] for x in read_table(RESULTS_TABLE))
    ]
    assert [r["status"] for r in last] == ["already_applied"] * 50 + ["ok"] * 10


@pytest.mark.parametrize("lost", ["package_state_file", "checkpoint"])
def test_a_lost_package_state_stops_the_run_with_what_to_do_and_nothing_is_duplicated(
    portal: Sandbox,
    push_pipeline: Callable[..., Any],
    read_table: Callable[[str], list[dict[str, Any]]],
    tmp_path: Any,
    lost: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    monkeypatch.setenv("LOAD__RAISE_ON_MAX_RETRIES", "1")  # dlt gives the failing job up after one retry

    rows = [{"title": f"state {k}"} for k in range(60)]
    # As in the lost-journal test: 50 rows written and journaled, then the package stays pending. Here the
    # journal stays and the package's state goes (removed, or reset without the destination's checkpoint).
    portal.inject(Fault(kind="reset", method="batch", phase="before", after=2, times=1000))
    pipeline = push_pipeline(portal.webhook_url, name="state")
    with pytest.raises(PipelineStepFailed):
        pipeline.run(rows, table_name="deals")
    portal.clear_faults()
    assert list((tmp_path / "pipelines").rglob("bitrix24_writes/*/*.jsonl"))
    (state_file,) = (tmp_path / "pipelines").rglob("normalized/*/load_package_state.json")
    if lost == "package_state_file":
        state_file.unlink()
    else:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        state.pop("destination_state", None)
        state_file.write_text(json.dumps(state), encoding="utf-8")

    with pytest.raises(PipelineStepFailed, match="package state was removed or reset"):
        push_pipeline(portal.webhook_url, name="state").run()
    assert not pipeline.list_normalized_load_packages()
    titles = [r["title"] for r in portal.rows("deals") if str(r["title"]).startswith("state ")]
    assert sorted(titles) == sorted(f"state {k}" for k in range(50))  # nothing was sent again

    push_pipeline(portal.webhook_url, name="state").run(rows, table_name="deals")
    titles = [r["title"] for r in portal.rows("deals") if str(r["title"]).startswith("state ")]
    assert sorted(titles) == sorted(r["title"] for r in rows)  # each once
    results = read_table(RESULTS_TABLE)
    first, last = min(r["load_id"] for r in results), max(r["load_id"] for r in results)
    assert [r["status"] for r in results if r["load_id"] == first] == ["ok"] * 50 + ["error"] * 10
    assert [r["status"] for r in results if r["load_id"] == last] == ["already_applied"] * 50 + ["ok"] * 10


@pytest.mark.parametrize("how", ["aborted", "deleted"])
def test_a_package_aborted_or_deleted_from_outside_keeps_every_row_and_a_re_push_adds_nothing_twice(
    portal: Sandbox,
    push_pipeline: Callable[..., Any],
    read_table: Callable[[str], list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    how: str,
) -> None:
    import shutil

    monkeypatch.setenv("LOAD__RAISE_ON_MAX_RETRIES", "1")
    rows = [{"title": f"dropped {k}"} for k in range(60)]
    portal.inject(Fault(kind="reset", method="batch", phase="before", after=2, times=1000))
    pipeline = push_pipeline(portal.webhook_url, name="dropped")
    with pytest.raises(PipelineStepFailed):
        pipeline.run(rows, table_name="deals")
    portal.clear_faults()
    if how == "aborted":
        pipeline.abort_packages()  # `dlt pipeline dropped abort-packages` (formerly drop-pending-packages)
    else:
        (package,) = (tmp_path / "pipelines" / "dropped" / "load" / "normalized").iterdir()
        shutil.rmtree(package)  # the package is gone, its journal stays
        with pytest.raises(PipelineStepFailed, match=r"is gone \(dropped or deleted\) but its journal"):
            push_pipeline(portal.webhook_url, name="dropped").run(rows, table_name="deals")

    push_pipeline(portal.webhook_url, name="dropped").run(rows, table_name="deals")
    titles = [r["title"] for r in portal.rows("deals") if str(r["title"]).startswith("dropped ")]
    assert sorted(titles) == sorted(r["title"] for r in rows)  # each once
    results = read_table(RESULTS_TABLE)
    loads = [[r for r in results if r["load_id"] == i] for i in sorted({r["load_id"] for r in results})]
    if how == "aborted":
        first, last = loads
        # Every row of the aborted package: the 50 written, and the 10 it never got to.
        assert [r["status"] for r in first] == ["ok"] * 50 + ["error"] * 10
        assert {r["error_code"] for r in first[50:]} == {"LOAD_ABORTED"}
        assert "abort_packages" in first[50]["error_description"]
    else:
        first, stopped, last = loads
        assert [r["status"] for r in first] == ["ok"] * 50  # what the deleted package's journal held
        assert {r["error_code"] for r in stopped} == {"LOAD_ABORTED"} and len(stopped) == 60
    assert [r["status"] for r in last] == ["already_applied"] * 50 + ["ok"] * 10
