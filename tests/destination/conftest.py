"""Fixtures for destination tests: a sandbox portal over loopback HTTP, push pipelines and their result tables."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dlt
import pytest

from bitrix24_source import bitrix24_destination
from bitrix24_source.sandbox import Sandbox
from tests.helpers import make_pipeline, read_duckdb_table

RESULTS_DATASET = "bitrix24_writes"


@pytest.fixture
def portal() -> Iterator[Sandbox]:
    """A small portal with the rate limit off (limiter behaviour is the client's and the bench's business)."""
    with Sandbox(seed=7, deals=120, leads=30, contacts=20, companies=10, users=5, tasks=20) as sandbox:
        yield sandbox


@pytest.fixture
def results_db(tmp_path: Path) -> Path:
    return tmp_path / "results.duckdb"


@pytest.fixture
def push_pipeline(tmp_path: Path, results_db: Path) -> Callable[..., dlt.Pipeline]:
    """Build a push pipeline against `webhook_url` whose results land in `results_db`."""

    def make(webhook_url: str, name: str = "push", **options: Any) -> dlt.Pipeline:
        options.setdefault("rate_limit", None)
        options.setdefault("progress", False)
        destination = bitrix24_destination(
            webhook_url=webhook_url,
            results_destination=dlt.destinations.duckdb(str(results_db)),
            results_dataset_name=RESULTS_DATASET,
            **options,
        )
        return make_pipeline(tmp_path, name, destination)

    return make


@pytest.fixture
def read_table(results_db: Path) -> Callable[[str], list[dict[str, Any]]]:
    """All rows of a result table in `results_db`, ordered by load, job and row number."""

    def read(table: str) -> list[dict[str, Any]]:
        return read_duckdb_table(results_db, RESULTS_DATASET, table, order_by="load_id, job_id, row_number")

    return read
