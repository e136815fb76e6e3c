"""Bulk update: read a CSV of deal changes with pandas, push it to Bitrix24, print the results and errors.

    python pipelines/bulk_update.py                      # against a local sandbox portal (started here)
    python pipelines/bulk_update.py --webhook-url URL    # against a real portal (or env BITRIX24_WEBHOOK_URL)
    python pipelines/bulk_update.py --dry-run            # validate and record the plan, write nothing
    python pipelines/bulk_update.py --run-dir DIR        # where the pipeline and its results live

Each CSV row is one change: a row with `id` updates the filled-in cells, a row without `id` adds a deal, a
row with `_delete = true` deletes it. Every row gets a line in `bitrix24_write_results`; failed rows also go
to `bitrix24_write_errors` with the original row as JSON. Both land in `<run dir>/results.duckdb`, and the
pipeline's own files in `<run dir>/pipelines`, so this example never touches another pipeline's files.
Running it twice against the same portal is safe: the second run reports the adds as `already_applied`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import pandas as pd

from bitrix24_source import bitrix24_destination, bitrix24_rows, last_results

CSV_PATH = Path(__file__).resolve().parent / "data" / "deal_changes.csv"
PIPELINE_NAME = "bulk_update_script"
RESULTS_DATASET = "bitrix24_writes"


@contextlib.contextmanager
def _portal(webhook_url: str | None) -> Iterator[str]:
    """The given webhook URL, or a local sandbox portal with seeded deals for the duration of the run."""
    if webhook_url:
        yield webhook_url
        return
    from bitrix24_source.sandbox import Sandbox

    with Sandbox(seed=7, deals=50, leads=0, contacts=10, companies=5, users=5, tasks=0) as portal:
        yield portal.webhook_url


def push_deal_changes(
    webhook_url: str, run_dir: Path, csv_path: Path = CSV_PATH, *, dry_run: bool = False
) -> Any:
    """Push the CSV's changes to the portal's deals; return the pipeline (read its results with
    :func:`bitrix24_source.last_results`)."""
    run_dir = run_dir.resolve()  # dlt resolves a relative DuckDB path against the first run's directory
    changes = pd.read_csv(csv_path)
    destination = bitrix24_destination(
        webhook_url=webhook_url,
        results_destination=dlt.destinations.duckdb(str(run_dir / "results.duckdb")),
        results_dataset_name=RESULTS_DATASET,
        dry_run=dry_run,
    )
    pipeline = dlt.pipeline(PIPELINE_NAME, destination=destination, pipelines_dir=str(run_dir / "pipelines"))
    pipeline.run(bitrix24_rows(changes, table_name="deals"))
    return pipeline


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--webhook-url", default=os.environ.get("BITRIX24_WEBHOOK_URL"))
    parser.add_argument("--csv", type=Path, default=CSV_PATH)
    parser.add_argument("--run-dir", type=Path, default=Path("bulk_update_run"))
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    with _portal(args.webhook_url) as webhook_url:
        pipeline = push_deal_changes(webhook_url, args.run_dir, args.csv, dry_run=args.dry_run)
    pushed = last_results(pipeline)
    with pd.option_context("display.max_columns", None, "display.width", 160, "display.max_colwidth", 60):
        print(pushed.results[["row_number", "input_index", "operation", "bitrix_id", "status", "error_code"]])
        print(pushed.errors[["row_number", "field", "error_code", "error_description", "row_json"]])


if __name__ == "__main__":
    main()
