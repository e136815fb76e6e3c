"""Bulk update: read a CSV of deal changes with pandas, push it to Bitrix24, print the errors table.

    python pipelines/bulk_update.py                      # against a local sandbox portal (started here)
    python pipelines/bulk_update.py --webhook-url URL    # against a real portal (or env BITRIX24_WEBHOOK_URL)
    python pipelines/bulk_update.py --dry-run            # validate and record the plan, write nothing

Each CSV row is one change: a row with `id` updates the filled-in cells, a row without `id` adds a deal, a
row with `_delete = true` deletes it. Every row gets a line in `bitrix24_write_results`; failed rows also go
to `bitrix24_write_errors` with the original row as JSON. Both land in a DuckDB file next to the CSV run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pandas as pd

from bitrix24_source import bitrix24_destination

CSV_PATH = Path(__file__).resolve().parent / "data" / "deal_changes.csv"
RESULTS_DB = Path("deals_push_results.duckdb")
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
    webhook_url: str,
    csv_path: Path = CSV_PATH,
    results_db: Path = RESULTS_DB,
    *,
    dry_run: bool = False,
    pipelines_dir: str | None = None,
) -> Any:
    """Push the CSV's changes to the portal's deals; return dlt's load info."""
    changes = pd.read_csv(csv_path)
    destination = bitrix24_destination(
        webhook_url=webhook_url,
        results_destination=dlt.destinations.duckdb(str(results_db)),
        results_dataset_name=RESULTS_DATASET,
        dry_run=dry_run,
    )
    pipeline = dlt.pipeline("deals_push", destination=destination, pipelines_dir=pipelines_dir)
    return pipeline.run(changes, table_name="deals")


def errors_table(results_db: Path = RESULTS_DB) -> pd.DataFrame:
    """The rows that failed, with the portal's (or the validator's) error code and the original row."""
    with duckdb.connect(str(results_db), read_only=True) as con:
        return con.execute(
            f"select row_number, operation, key, error_code, error_description, row_json "
            f"from {RESULTS_DATASET}.bitrix24_write_errors order by load_id, row_number"
        ).df()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--webhook-url", default=os.environ.get("BITRIX24_WEBHOOK_URL"))
    parser.add_argument("--csv", type=Path, default=CSV_PATH)
    parser.add_argument("--results-db", type=Path, default=RESULTS_DB)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    with _portal(args.webhook_url) as webhook_url:
        load_info = push_deal_changes(webhook_url, args.csv, args.results_db, dry_run=args.dry_run)
    print(load_info)
    with pd.option_context("display.max_columns", None, "display.width", 160, "display.max_colwidth", 60):
        print(errors_table(args.results_db))


if __name__ == "__main__":
    main()
