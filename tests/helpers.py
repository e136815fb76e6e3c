"""Helpers shared by the pipeline tests: pipelines that keep their files under the test's own directory, and
readers of the DuckDB tables they load.

Import them as ``from tests.helpers import ...`` (pytest runs from the repository root).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dlt
import duckdb


def make_pipeline(path: Path, name: str = "b24_test", destination: Any = None, **kwargs: Any) -> dlt.Pipeline:
    """A pipeline whose working files live in ``path/pipelines``, never in the global dlt directory.

    Without `destination` it loads into a DuckDB warehouse at ``path/warehouse.duckdb``, dataset ``bitrix24``,
    in dev_mode (a fresh dataset per pipeline object). Any other destination is used as given; `kwargs` go
    to ``dlt.pipeline`` either way.
    """
    if destination is None:
        destination = dlt.destinations.duckdb(str(path / "warehouse.duckdb"))
        kwargs = {"dataset_name": "bitrix24", "dev_mode": True, **kwargs}
    return dlt.pipeline(
        pipeline_name=name, pipelines_dir=str(path / "pipelines"), destination=destination, **kwargs
    )


def fetch_table(pipeline: dlt.Pipeline, table: str) -> list[dict[str, Any]]:
    """All rows of `table` in the pipeline's own dataset, through its SQL client."""
    with pipeline.sql_client() as client:
        qualified = client.make_qualified_table_name(table)
        with client.execute_query(f"SELECT * FROM {qualified}") as cursor:
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def column_types(pipeline: dlt.Pipeline, table: str) -> dict[str, str]:
    """Column name -> DuckDB type of `table` in the pipeline's own dataset."""
    with pipeline.sql_client() as client:
        rows = client.execute_sql(f"DESCRIBE {client.make_qualified_table_name(table)}")
    return {str(r[0]): str(r[1]) for r in rows or []}


def read_duckdb_table(database: Path, dataset: str, table: str, order_by: str) -> list[dict[str, Any]]:
    """All rows of ``dataset.table`` in a DuckDB file that no pipeline of the test owns, in `order_by` order."""
    with duckdb.connect(str(database), read_only=True) as con:
        cursor = con.execute(f"select * from {dataset}.{table} order by {order_by}")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
