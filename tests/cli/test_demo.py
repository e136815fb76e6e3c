"""`make demo` (pipelines/bitrix24_pipeline.py demo) replaces only a DuckDB file that an earlier demo wrote."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import dlt
import duckdb
import pytest

from bitrix24_source.sandbox import Sandbox

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"


@pytest.fixture(scope="module")
def scenarios() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bitrix24_pipeline_demo", PIPELINES / "bitrix24_pipeline.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_refuses_a_file_it_did_not_write(scenarios: ModuleType, tmp_path: Path) -> None:
    foreign = tmp_path / "bitrix24_demo.duckdb"
    with duckdb.connect(str(foreign)) as con:
        con.execute("create table my_numbers as select 42 as answer")
    with pytest.raises(SystemExit, match="was not written by the demo"):
        scenarios.demo(foreign)
    with duckdb.connect(str(foreign), read_only=True) as con:
        assert con.execute("select answer from my_numbers").fetchall() == [(42,)]


def test_a_file_the_demo_pipeline_wrote_is_recognised(scenarios: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "bitrix24_demo.duckdb"
    with Sandbox(seed=8, deals=5, leads=1, contacts=1, companies=1, users=1, tasks=1) as p:
        pipeline = dlt.pipeline(
            scenarios.DEMO_PIPELINE,
            destination=dlt.destinations.duckdb(str(path)),
            dataset_name=scenarios.DEMO_DATASET,
            pipelines_dir=str(tmp_path / "pipelines"),
        )
        pipeline.run(scenarios._source(p.webhook_url, rate_limit=None).with_resources("deals"))
    assert scenarios._made_by_demo(path)
    other = dlt.pipeline(
        "someone_else",
        destination=dlt.destinations.duckdb(str(path)),
        dataset_name="theirs",
        pipelines_dir=str(tmp_path / "pipelines"),
    )
    other.run([{"id": 1}], table_name="things")
    assert not scenarios._made_by_demo(path)
