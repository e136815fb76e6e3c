"""Runnable scenarios of the `bitrix24` source, one function per scenario.

    python pipelines/bitrix24_pipeline.py demo                    # sandbox portal -> ./bitrix24_demo.duckdb + summary
    python pipelines/bitrix24_pipeline.py full [--sandbox]        # every resource, full/incremental merge
    python pipelines/bitrix24_pipeline.py selected [--sandbox]    # only deals + deal_products
    python pipelines/bitrix24_pipeline.py incremental [--sandbox] # run twice: the second run reads changes only
    python pipelines/bitrix24_pipeline.py deletes [--sandbox]     # hard-delete rows removed from the portal

Without `--sandbox` the scenarios read the portal configured in `.dlt/secrets.toml` (`[sources.bitrix24]`
`webhook_url = ...` or OAuth) or the env var `SOURCES__BITRIX24__WEBHOOK_URL`. With `--sandbox` they start
the local sandbox portal (a Bitrix24 emulator on 127.0.0.1) with seeded data and point the source at it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dlt

from bitrix24_source import bitrix24_source
from bitrix24_source.cli import sync as cli_sync
from bitrix24_source.cli.output import Output
from bitrix24_source.source import select_resources
from bitrix24_source.source.settings import ALL_RESOURCES, SMART_PROCESSES

EVERY_RESOURCE = (*ALL_RESOURCES, SMART_PROCESSES)
"""Every resource, the portal's smart processes (`spa_<entityTypeId>`) included."""

SCENARIO_DB = Path("bitrix24.duckdb")
DEMO_DB = Path("bitrix24_demo.duckdb")
DEMO_PIPELINE = "bitrix24_demo"
DEMO_DATASET = (
    "bitrix24"  # not the file's name: DuckDB names the catalog after the file and the two would clash
)


def _pipeline(
    name: str, db_path: Path | str, *, progress: str | None = None, fresh: bool = False
) -> dlt.Pipeline:
    """A DuckDB pipeline; one dataset per scenario (named after it) inside the same file.

    `fresh=True` (used against a freshly seeded sandbox, whose data has nothing to do with an earlier
    run's cursors) runs in dlt's dev mode: a new dataset and no state carried over.
    """
    return dlt.pipeline(
        pipeline_name=name,
        # An absolute path: dlt would otherwise resolve it against the directory of an earlier run of the
        # same pipeline name, which it keeps in its working state.
        destination=cli_sync.duckdb_warehouse(str(Path(db_path).resolve())),
        # not "bitrix24": DuckDB names the catalog after the file (bitrix24.duckdb) and the two would clash
        dataset_name=name,
        progress=progress,  # type: ignore[arg-type]
        dev_mode=fresh,
    )


def _source(webhook_url: str | None, **kwargs: Any) -> Any:
    # webhook_url=None lets dlt inject it from .dlt/secrets.toml or SOURCES__BITRIX24__WEBHOOK_URL.
    if webhook_url is None:
        return bitrix24_source(**kwargs)
    return bitrix24_source(webhook_url=webhook_url, **kwargs)


def print_summary(pipeline: dlt.Pipeline, seconds: float) -> None:
    """Print rows in the warehouse, HTTP requests and seconds per table of the last run."""
    cli_sync.print_summary(Output(), pipeline, seconds)


def full_load(
    webhook_url: str | None, db_path: Path | str = SCENARIO_DB, *, fresh: bool = False
) -> dlt.Pipeline:
    """Every resource; the first run is a full load, later runs merge changes (incremental CRM and tasks)."""
    pipeline = _pipeline("bitrix24_full", db_path, progress="log", fresh=fresh)
    started = time.monotonic()
    load_info = pipeline.run(select_resources(_source(webhook_url, smart_processes="all"), EVERY_RESOURCE))
    print(load_info)
    print_summary(pipeline, time.monotonic() - started)
    return pipeline


def selected_resources(
    webhook_url: str | None, db_path: Path | str = SCENARIO_DB, *, fresh: bool = False
) -> dlt.Pipeline:
    """Only deals and their product rows."""
    pipeline = _pipeline("bitrix24_selected", db_path, fresh=fresh)
    started = time.monotonic()
    load_info = pipeline.run(_source(webhook_url).with_resources("deals", "deal_products"))
    print(load_info)
    print_summary(pipeline, time.monotonic() - started)
    return pipeline


def _two_runs(
    pipeline: dlt.Pipeline, make_source: Callable[[], Any], between_runs: Callable[[], None] | None
) -> dlt.Pipeline:
    """Run a source twice on one pipeline, changing the portal in between (the second run shows the effect)."""
    for run in (1, 2):
        started = time.monotonic()
        print(f"run {run}:", pipeline.run(make_source()))
        print_summary(pipeline, time.monotonic() - started)
        if run == 1 and between_runs is not None:
            between_runs()
    return pipeline


def incremental_run(
    webhook_url: str | None,
    db_path: Path | str = SCENARIO_DB,
    between_runs: Callable[[], None] | None = None,
    *,
    fresh: bool = False,
) -> dlt.Pipeline:
    """Two runs of CRM + tasks: the second reads only rows changed since the first (minus the lag window)."""
    resources = ("leads", "deals", "contacts", "companies", "tasks", "task_results")
    return _two_runs(
        _pipeline("bitrix24_incremental", db_path, fresh=fresh),
        lambda: _source(webhook_url).with_resources(*resources),
        between_runs,
    )


def deletes_detection(
    webhook_url: str | None,
    db_path: Path | str = SCENARIO_DB,
    between_runs: Callable[[], None] | None = None,
    *,
    fresh: bool = False,
) -> dlt.Pipeline:
    """CRM tables and deal product rows with `detect_deletes=True`: rows deleted in the portal (and the
    product rows of deleted deals) disappear from the warehouse."""
    resources = ("leads", "deals", "contacts", "companies", "deal_products")
    return _two_runs(
        _pipeline("bitrix24_deletes", db_path, fresh=fresh),
        lambda: _source(webhook_url, detect_deletes=True).with_resources(*resources),
        between_runs,
    )


@contextlib.contextmanager
def sandbox_portal(*, deals: int = 2000, rate_limited: bool = False) -> Iterator[Any]:
    """A seeded in-process sandbox portal (imported lazily: a real-portal run never needs it)."""
    from bitrix24_source.sandbox import RateLimit, Sandbox

    with Sandbox(
        seed=7,
        deals=deals,
        leads=max(deals // 5, 50),
        contacts=max(deals // 4, 50),
        companies=max(deals // 10, 20),
        users=50,
        tasks=max(deals // 20, 50),
        rate_limit=RateLimit(burst=50, drain=2.0) if rate_limited else None,
    ) as portal:
        yield portal


def _made_by_demo(path: Path) -> bool:
    """Whether `path` holds only what an earlier demo wrote: its one dataset, loaded by its pipeline."""
    import duckdb

    try:
        with duckdb.connect(str(path), read_only=True) as con:
            schemas = {
                row[0]
                for row in con.execute(
                    "select schema_name from information_schema.schemata where catalog_name = current_database()"
                ).fetchall()
            }
            loaded_by = con.execute(
                f"select distinct pipeline_name from {DEMO_DATASET}._dlt_pipeline_state"
            ).fetchall()
    except duckdb.Error:
        return False
    # dlt's merge loads through a `<dataset>_staging` schema next to the dataset
    return schemas <= {"main", DEMO_DATASET, f"{DEMO_DATASET}_staging"} and loaded_by == [(DEMO_PIPELINE,)]


def demo(db_path: Path | str = DEMO_DB) -> None:
    """`make demo`: a sandbox with 20,000 deals (+ leads, contacts, companies, products, users, tasks,
    activities, stage history) and the cloud's default rate limit (burst 50, 2 requests/s) switched ON,
    synced into ./bitrix24_demo.duckdb.

    The limiter stays on because the whole sync needs well under a hundred HTTP requests (2,500 rows per
    request): reading takes ~25 s even at 2 requests/s, and the whole demo one to two minutes on a 2-core
    machine, most of it dlt normalizing and loading ~112k rows (48k of them stage history) into DuckDB. The demo replaces its own file
    from an earlier run, and refuses to touch a file of that name that something else wrote.
    """
    out = Output()
    path = Path(db_path).resolve()
    if path.exists():
        if not _made_by_demo(path):
            raise SystemExit(f"{path} exists and was not written by the demo: move it away or pass --db")
        path.unlink()
    with contextlib.ExitStack() as stack:
        with out.step("seeding the sandbox portal (20,000 deals, rate limit 50 burst / 2 per s)"):
            portal = stack.enter_context(sandbox_portal(deals=20_000, rate_limited=True))
        # A fresh portal every time: drop the local state (incremental cursors, pending packages) that a
        # previous demo left behind, as the warehouse file was deleted above.
        destination = dlt.destinations.duckdb(str(path))
        dlt.pipeline(DEMO_PIPELINE, destination=destination, dataset_name=DEMO_DATASET).drop()
        pipeline = dlt.pipeline(
            DEMO_PIPELINE,
            destination=destination,
            dataset_name=DEMO_DATASET,
            progress=cli_sync.progress(out),
        )
        started = time.monotonic()
        with out.step("reading field metadata"):
            source = select_resources(_source(portal.webhook_url, smart_processes="all"), EVERY_RESOURCE)
        load_info = cli_sync.run_steps(out, pipeline, source)
        seconds = time.monotonic() - started
        out.line(str(load_info))
        cli_sync.print_summary(out, pipeline, seconds)
        out.line(f"portal saw {portal.stats().http_requests} HTTP requests; warehouse: {path}")


def _changes(portal: Any) -> Callable[[], None]:
    def change() -> None:
        deal = portal.rows("deals")[0]
        portal.advance_clock(3600)
        portal.update_row("deals", deal["id"], {"title": f"{deal['title']} (edited)"})
        portal.add_row("deals", {"title": "New deal from the scenario", "opportunity": 1234.5})
        portal.delete_row("deals", portal.rows("deals")[1]["id"])
        print("\nportal changed: 1 deal updated, 1 added, 1 deleted (with its product rows)")

    return change


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenario", choices=["demo", "full", "selected", "incremental", "deletes"])
    parser.add_argument("--sandbox", action="store_true", help="run against a local sandbox portal")
    parser.add_argument(
        "--db",
        default=None,
        help="DuckDB file (default: ./bitrix24_demo.duckdb for demo, else ./bitrix24.duckdb)",
    )
    args = parser.parse_args(argv)
    if args.scenario == "demo":
        demo(args.db or DEMO_DB)
        return 0
    args.db = args.db or str(SCENARIO_DB)
    with contextlib.ExitStack() as stack:
        portal = stack.enter_context(sandbox_portal()) if args.sandbox else None
        url = portal.webhook_url if portal is not None else None
        hook = _changes(portal) if portal is not None else None
        fresh = portal is not None
        if args.scenario == "full":
            full_load(url, args.db, fresh=fresh)
        elif args.scenario == "selected":
            selected_resources(url, args.db, fresh=fresh)
        elif args.scenario == "incremental":
            incremental_run(url, args.db, hook, fresh=fresh)
        else:
            deletes_detection(url, args.db, hook, fresh=fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
