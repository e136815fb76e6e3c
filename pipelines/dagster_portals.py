"""Many portals on a scheduler: Dagster runs one sync per portal, each with its own dlt pipeline, state and limiter.

    dagster dev -f pipelines/dagster_portals.py          # the portals of [bitrix24_portals.*] in .dlt/secrets.toml
    python pipelines/dagster_portals.py --sandboxes 3    # 3 local sandbox portals, materialized once, summary

Portals are configured like any dlt secret, one table per portal (the table name becomes the asset group, the
dlt pipeline `bitrix24_<name>` and the dataset `bitrix24_<name>`)::

    [bitrix24_portals.acme]
    webhook_url = "https://acme.bitrix24.com/rest/1/<code>/"
    [bitrix24_portals.globex]
    webhook_url = "https://globex.bitrix24.de/rest/7/<code>/"

Each portal is one Dagster multi-asset (one asset per table) whose op runs `pipeline.run(bitrix24_source(...))`.
The pipeline name keys dlt's state (incremental cursors) per portal; the client's limiter is keyed by the portal's
host and webhook user, so portals never share a rate budget, while two syncs of one portal would. The hourly
schedule materializes every portal; Dagster's default multiprocess executor runs them in parallel.

Why not dagster-dlt's `@dlt_assets`: it needs the source object when Dagster loads the code location, and
`bitrix24_source()` reads the portal's field metadata when it is created, so loading the definitions would call
every portal (and fail for all when one is down). The asset specs here come from the resource names (data), and
the portal is only called when an asset runs.

(No `from __future__ import annotations` here: Dagster checks the annotation of `context` as a type.)
"""

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import dlt
from dagster import AssetExecutionContext

from bitrix24_source import bitrix24_source
from bitrix24_source.cli.sync import DEFAULT_RESOURCES, summary_rows

DestinationFor = Callable[[str], Any]
"""Portal name -> the dlt destination its pipeline loads into."""


def duckdb_per_portal(directory: Path | str = ".") -> DestinationFor:
    """A DuckDB file per portal (`<name>.duckdb`): DuckDB allows one writer per file, and portals run in
    parallel. With PostgreSQL, pass `lambda name: "postgres"`: one database, a dataset (schema) per portal."""
    root = Path(directory).resolve()
    return lambda name: dlt.destinations.duckdb(str(root / f"{name}.duckdb"))


def portal_assets(
    name: str,
    webhook_url: str,
    *,
    destination_for: DestinationFor,
    resources: Sequence[str] = DEFAULT_RESOURCES,
    pipelines_dir: str | None = None,
    rate_limit: str | None = "default",
) -> dg.AssetsDefinition:
    """One portal's tables as Dagster assets, materialized together by one dlt pipeline run."""
    specs = [dg.AssetSpec(dg.AssetKey([name, table]), group_name=name, kinds={"dlt"}) for table in resources]

    @dg.multi_asset(name=f"bitrix24_{name}", specs=specs)
    def sync(context: AssetExecutionContext) -> Iterator[dg.MaterializeResult]:
        pipeline = dlt.pipeline(
            pipeline_name=f"bitrix24_{name}",
            destination=destination_for(name),
            dataset_name=f"bitrix24_{name}",
            pipelines_dir=pipelines_dir,
        )
        started = time.monotonic()
        source = bitrix24_source(webhook_url=webhook_url, rate_limit=rate_limit).with_resources(*resources)
        info = pipeline.run(source)
        context.log.info(f"{name}: {info}")
        by_table = {row[0]: row for row in summary_rows(pipeline)}
        for table in resources:
            _, in_db, read, requests, seconds = by_table.get(table, (table, 0, 0, 0, "0"))
            yield dg.MaterializeResult(
                asset_key=dg.AssetKey([name, table]),
                metadata={
                    "rows_in_warehouse": int(in_db) if in_db != "-" else 0,
                    "rows_read": int(read) if read != "-" else 0,
                    "requests": int(requests) if requests != "-" else 0,
                    "request_seconds": float(seconds) if seconds != "-" else 0.0,
                    "run_seconds": round(time.monotonic() - started, 1),
                },
            )

    return sync


def definitions(
    portals: Mapping[str, str],
    *,
    destination_for: DestinationFor | None = None,
    resources: Sequence[str] = DEFAULT_RESOURCES,
    pipelines_dir: str | None = None,
    rate_limit: str | None = "default",
) -> dg.Definitions:
    """Assets of every portal, and an hourly schedule that syncs them all."""
    target = destination_for or duckdb_per_portal()
    assets = [
        portal_assets(
            name,
            url,
            destination_for=target,
            resources=resources,
            pipelines_dir=pipelines_dir,
            rate_limit=rate_limit,
        )
        for name, url in portals.items()
    ]
    hourly = dg.ScheduleDefinition(
        name="bitrix24_hourly", target=dg.AssetSelection.all(), cron_schedule="0 * * * *"
    )
    return dg.Definitions(assets=assets, schedules=[hourly] if assets else [])


def configured_portals() -> dict[str, str]:
    """`[bitrix24_portals.<name>] webhook_url = ...` from .dlt/secrets.toml (or env BITRIX24_PORTALS__<NAME>__WEBHOOK_URL
    for a portal the file names too)."""
    table = dlt.secrets.get("bitrix24_portals") or {}
    return {str(name): str(dlt.secrets[f"bitrix24_portals.{name}.webhook_url"]) for name in table}


@contextlib.contextmanager
def _sandboxes(count: int) -> Iterator[dict[str, str]]:
    from bitrix24_source.sandbox import Sandbox

    with contextlib.ExitStack() as stack:
        portals = {}
        for i in range(count):
            portal = stack.enter_context(
                Sandbox(
                    seed=100 + i,
                    deals=500 * (i + 1),
                    leads=50,
                    contacts=100,
                    companies=20,
                    users=10,
                    tasks=20,
                )
            )
            portals[f"portal_{i + 1}"] = portal.webhook_url
        yield portals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sandboxes", type=int, default=3, help="how many local sandbox portals to sync")
    parser.add_argument("--dir", default="dagster_portals_demo", help="DuckDB files and dlt state go here")
    args = parser.parse_args(argv)
    root = Path(args.dir).resolve()
    root.mkdir(exist_ok=True)
    with _sandboxes(args.sandboxes) as portals:
        defs = definitions(
            portals,
            destination_for=duckdb_per_portal(root),
            pipelines_dir=str(root / "pipelines"),
            rate_limit=None,
        )
        started = time.monotonic()
        result = dg.materialize(list(defs.assets or []), instance=dg.DagsterInstance.ephemeral())
        seconds = time.monotonic() - started
    print(f"\n{'portal':<10}{'table':<20}{'rows in db':>12}{'rows read':>11}{'requests':>10}")
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        portal, table = materialization.asset_key.path
        meta = {k: v.value for k, v in materialization.metadata.items()}
        print(
            f"{portal:<10}{table:<20}{meta['rows_in_warehouse']:>12}{meta['rows_read']:>11}{meta['requests']:>10}"
        )
    print(f"\n{len(portals)} portals, {len(portals)} pipelines, success={result.success}, {seconds:.1f} s")
    return 0 if result.success else 1


defs = definitions(configured_portals()) if __name__ != "__main__" else None

if __name__ == "__main__":
    sys.exit(main())
