"""The bulk-update examples run against the sandbox, so they cannot rot."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import nbformat
import pytest
from nbclient import NotebookClient

from bitrix24_source import last_results
from bitrix24_source.sandbox import Sandbox

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bulk_update_example", PIPELINES / "bulk_update.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bulk_update_script_stands_alone_and_runs_twice(portal: Sandbox, tmp_path: Path) -> None:
    example = _load_example()
    pipeline = example.push_deal_changes(portal.webhook_url, tmp_path / "run")
    assert (tmp_path / "run" / "results.duckdb").exists() and (tmp_path / "run" / "pipelines").is_dir()
    assert pipeline.pipeline_name == "bulk_update_script"

    deals = {int(r["id"]): r for r in portal.rows("deals")}
    assert deals[1]["title"] == "Website redesign - phase 2" and deals[1]["stageId"] == "EXECUTING"
    assert float(deals[1]["opportunity"]) == 150000
    assert deals[2]["stageId"] == "WON"
    assert 5 not in deals
    assert next(r for r in deals.values() if r["title"] == "Partner referral")["opportunity"] == 30500.5
    first = last_results(pipeline)
    assert len(first.results) == 9
    assert list(first.errors["row_number"]) == [3, 7, 8]
    assert list(first.errors["error_code"]) == ["INVALID_TYPE", "NOT_FOUND", "INVALID_ENUM_VALUE"]
    assert list(first.errors["field"]) == ["opportunity", "id", "stageId"]
    assert json.loads(first.errors["row_json"][0])["opportunity"] == "about 5k"

    # The same run again: nothing is added or changed twice (adds found by marker, updates whose values the
    # deal already holds); the deleted deal is gone (NOT_FOUND before sending).
    titles = sorted(r["title"] for r in portal.rows("deals"))
    again = last_results(example.push_deal_changes(portal.webhook_url, tmp_path / "run"))
    assert again.load_id != first.load_id and len(again.results) == 9
    assert sorted(r["title"] for r in portal.rows("deals")) == titles
    assert list(again.results["status"]) == [
        "already_applied", "already_applied", "already_applied", "error", "error",
        "already_applied", "already_applied", "error", "error",
    ]  # fmt: skip


def test_bulk_update_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The notebook starts its own sandbox portal when BITRIX24_WEBHOOK_URL is not set.
    monkeypatch.delenv("BITRIX24_WEBHOOK_URL", raising=False)
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    shutil.copytree(PIPELINES / "data", tmp_path / "data")
    notebook = nbformat.read(PIPELINES / "bulk_update.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "\n".join(str(o.get("text", "")) + json.dumps(o.get("data", {})) for o in outputs)
    assert "bitrix24 destination: deals: 9 rows, 6 ok, 3 errors" in text
    assert "bitrix24 destination: deals: 9 rows, 0 ok, 4 errors, 5 already applied" in text  # the re-run
    assert "INVALID_TYPE" in text and "NOT_FOUND" in text and "already_applied" in text
    assert (tmp_path / "bulk_update_notebook_run" / "results.duckdb").exists()
