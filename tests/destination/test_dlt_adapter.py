"""The one place the destination relies on dlt internals: the load-completion hook (destination/dlt_adapter.py).

These tests pin what the result flush needs from dlt, so that a dlt upgrade that changes it fails here,
loudly, instead of silently leaving the write results unflushed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dlt
import pytest
from dlt.common.destination.exceptions import DestinationTerminalException
from dlt.destinations.impl.destination.destination import DestinationClient
from dlt.pipeline.exceptions import PipelineStepFailed

from bitrix24_source.destination.dlt_adapter import check_dlt_internals, completing_destination
from tests.helpers import make_pipeline


class _Recorder:
    """A destination callable and completion hook that record the order of events."""

    def __init__(self, fail_jobs: int = 0, fail_hooks: int = 0, terminal: bool = False) -> None:
        self.events: list[tuple[str, str]] = []
        self.fail_jobs = fail_jobs
        self.fail_hooks = fail_hooks
        self.terminal = terminal

    def sink(self, items: Any, table: Any) -> None:
        if self.fail_jobs:
            self.fail_jobs -= 1
            raise DestinationTerminalException("job failed") if self.terminal else RuntimeError("job failed")
        self.events.append(("job", str(table["name"])))

    def hook(self, load_id: str) -> None:
        if self.fail_hooks:
            self.fail_hooks -= 1
            raise RuntimeError("flush failed")
        self.events.append(("complete", load_id))


def _pipeline(tmp_path: Path, recorder: _Recorder, name: str = "adapter") -> Any:
    def probe(items: Any, table: Any) -> None:  # dlt decorates the callable, so it must be a function
        recorder.sink(items, table)

    destination = completing_destination(
        probe,
        recorder.hook,
        destination_name="probe",
        batch_size=0,
        loader_parallelism_strategy="sequential",
    )
    return make_pipeline(tmp_path, name, destination)


def _data() -> list[Any]:
    return [dlt.resource([{"a": 1}], name="first"), dlt.resource([{"b": 2}], name="second")]


def test_installed_dlt_has_what_the_adapter_overrides() -> None:
    check_dlt_internals()


def test_a_changed_dlt_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # Stands for a dlt release in which the member the adapter overrides is something else.
    monkeypatch.setattr(DestinationClient, "complete_load", "no longer a method")
    with pytest.raises(RuntimeError, match=r"DestinationClient\.complete_load"):
        check_dlt_internals()
    with pytest.raises(RuntimeError, match="dlt"):
        completing_destination(lambda items, table: None, lambda load_id: None, destination_name="x")


def test_hook_runs_once_per_load_after_every_job(tmp_path: Path) -> None:
    recorder = _Recorder()
    info = _pipeline(tmp_path, recorder).run(_data())
    assert sorted(recorder.events[:2]) == [("job", "first"), ("job", "second")]
    assert recorder.events[2:] == [("complete", info.loads_ids[0])]


def test_failed_hook_leaves_the_package_pending_and_the_next_run_completes_it(tmp_path: Path) -> None:
    recorder = _Recorder(fail_hooks=1)
    pipeline = _pipeline(tmp_path, recorder)
    with pytest.raises(PipelineStepFailed, match="flush failed"):
        pipeline.run(_data())
    assert [e for e in recorder.events if e[0] == "complete"] == []
    info = pipeline.run()  # loads the pending package: jobs already done are not run again
    assert [e[0] for e in recorder.events] == ["job", "job", "complete"]
    assert recorder.events[-1] == ("complete", info.loads_ids[0])


def test_retried_job_completes_the_load_once(tmp_path: Path) -> None:
    recorder = _Recorder(fail_jobs=1)  # a transient error: dlt runs the job again within the same load
    info = _pipeline(tmp_path, recorder).run(_data())
    assert sorted(recorder.events[:2]) == [("job", "first"), ("job", "second")]
    assert recorder.events[2:] == [("complete", info.loads_ids[0])]


def test_terminally_failed_job_aborts_the_load_and_the_next_run_loads_its_own_data(tmp_path: Path) -> None:
    recorder = _Recorder(fail_jobs=1, terminal=True)
    pipeline = _pipeline(tmp_path, recorder)
    with pytest.raises(PipelineStepFailed, match="job failed"):
        pipeline.run(_data())
    assert not [e for e in recorder.events if e[0] == "complete"]
    assert not pipeline.has_pending_data and not pipeline.list_normalized_load_packages()
    recorder.events.clear()
    info = pipeline.run([dlt.resource([{"c": 3}], name="third")])  # the failed package is not replayed
    assert recorder.events == [("job", "third"), ("complete", info.loads_ids[0])]


def test_a_user_setting_of_auto_abort_is_respected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # (A pipeline name of its own: the destination's setting is per pipeline name, for the whole process.)
    monkeypatch.setenv("LOAD__AUTO_ABORT_ON_TERMINAL_ERROR", "false")
    recorder = _Recorder(fail_jobs=1, terminal=True)
    pipeline = _pipeline(tmp_path, recorder, name="adapter_user_setting")
    with pytest.raises(PipelineStepFailed, match="job failed"):
        pipeline.run(_data())
    assert pipeline.list_normalized_load_packages()  # dlt's own behaviour: the package stays pending
