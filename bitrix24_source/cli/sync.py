"""`bitrix24-dlt sync`: the source into any dlt destination, with progress and a per-table summary."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

from bitrix24_source.cli.config import find_credentials, token_saver
from bitrix24_source.cli.output import Output
from bitrix24_source.source.settings import (
    ALL_ENTITIES,
    ALL_RESOURCES,
    FIELD_DEFINITIONS_TABLE,
    SMART_PROCESSES,
    is_spa_name,
)

EXAMPLES = """\
examples:
  # the portal from .dlt/secrets.toml (or SOURCES__BITRIX24__WEBHOOK_URL) into ./bitrix24_sync.duckdb
  bitrix24-dlt sync

  # two tables into PostgreSQL (credentials: DESTINATION__POSTGRES__CREDENTIALS or .dlt/secrets.toml)
  bitrix24-dlt sync --destination postgres --dataset-name crm --resources deals,contacts

  # every smart process (spa_<entityTypeId> tables), their pipelines and stages
  bitrix24-dlt sync --resources smart_processes,spa_types,crm_categories,crm_statuses

  # start over: drop this pipeline's tables and state, then load everything again
  bitrix24-dlt sync --full-refresh --webhook-url https://example.bitrix24.com/rest/1/<code>/
"""

DEFAULT_RESOURCES = (*(spec.name for spec in ALL_ENTITIES if spec.default), FIELD_DEFINITIONS_TABLE)

DUCKDB_MEMORY_LIMIT = "100MB"
"""DuckDB's `memory_limit` for the warehouses this package builds. DuckDB's default is 80 % of RAM, and
loading and merging a large table fills its buffer pool: 500,000 deals took an end-to-end sync to 895 MB
(bench/results.json before this limit). Capped, DuckDB spills to disk and the peak stays under 400 MB."""


def duckdb_warehouse(path: str, memory_limit: str | None = DUCKDB_MEMORY_LIMIT) -> Any:
    """A dlt DuckDB destination writing to `path` with DuckDB's buffer pool capped at `memory_limit`
    (None: DuckDB's default, 80 % of RAM)."""
    import dlt
    from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

    settings = {"memory_limit": memory_limit} if memory_limit else None
    return dlt.destinations.duckdb(DuckDbCredentials(path, global_config=settings))


def sync_destination(name: str, pipeline_name: str, memory_limit: str | None) -> Any:
    """The destination for `--destination name`: DuckDB with a capped buffer pool (`duckdb_warehouse`) at the
    configured path or `<pipeline name>.duckdb`, unless its credentials are configured as a table (they may
    set `global_config` themselves); any other destination by its name."""
    import dlt

    if name != "duckdb" or not memory_limit:
        return name
    configured: Any = dlt.secrets.get("destination.duckdb.credentials")
    if configured is not None and not isinstance(configured, str):
        return name
    return duckdb_warehouse(configured or f"{pipeline_name}.duckdb", memory_limit)


def resource_list(text: str) -> tuple[str, ...]:
    """Parse `--resources deals,contacts` (or `all`; `smart_processes` and `spa_<entityTypeId>` for smart
    processes, whose names depend on the portal)."""
    if text.strip() == "all":
        return (*ALL_RESOURCES, SMART_PROCESSES)
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if not _known(name)]
    if unknown or not names:
        choices = ", ".join((*ALL_RESOURCES, SMART_PROCESSES, "spa_<entityTypeId>"))
        raise argparse.ArgumentTypeError(
            f"unknown resource {', '.join(unknown) or '(none)'}; choose from {choices} or all"
        )
    return names


def _known(name: str) -> bool:
    return name in ALL_RESOURCES or name == SMART_PROCESSES or is_spa_name(name)


def wants_smart_processes(names: Sequence[str]) -> bool:
    """Whether a selection names smart processes (else the source need not list the portal's types)."""
    return any(name == SMART_PROCESSES or is_spa_name(name) for name in names)


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "sync",
        help="load the portal into a warehouse (any dlt destination)",
        description="Read Bitrix24 into a warehouse with dlt. The first run loads everything; later runs "
        "of the same pipeline read only what changed (merged on id).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--destination",
        default="duckdb",
        help="dlt destination name: duckdb (default), postgres, bigquery, …",
    )
    parser.add_argument("--dataset-name", default="bitrix24", help="dataset (schema) name; default bitrix24")
    parser.add_argument(
        "--pipeline-name",
        default="bitrix24_sync",
        help="dlt pipeline name: keeps the incremental state; DuckDB's default file is <name>.duckdb",
    )
    parser.add_argument(
        "--resources",
        type=resource_list,
        default=DEFAULT_RESOURCES,
        help=f"comma-separated tables, or all; default {','.join(DEFAULT_RESOURCES)}",
    )
    parser.add_argument(
        "--full-refresh", action="store_true", help="drop the tables and state of these resources first"
    )
    parser.add_argument(
        "--detect-deletes",
        action="store_true",
        help="remove rows deleted in the portal (one id scan per table)",
    )
    parser.add_argument(
        "--rate-limit",
        default="default",
        choices=("default", "enterprise", "off"),
        help="client throttle: default (50 burst, 2/s), enterprise (250, 5/s), off",
    )
    parser.add_argument(
        "--duckdb-memory-limit",
        default=DUCKDB_MEMORY_LIMIT,
        help=f"DuckDB's memory_limit while loading (default {DUCKDB_MEMORY_LIMIT}; none: DuckDB's own, 80%% of RAM)",
    )
    parser.add_argument("--webhook-url", default=None, help="instead of the configured credentials")
    parser.add_argument(
        "--pipelines-dir", default=None, help="where dlt keeps pipeline state (~/.dlt/pipelines)"
    )
    parser.set_defaults(run=run)


def progress(out: Output) -> Any:
    """dlt's progress collector for `out`: live bars in a terminal, a plain counters line otherwise."""
    import dlt

    if out.rich:
        return "tqdm"
    # Not a terminal (a scheduler's log): one plain line of counters every 10 seconds.
    return dlt.progress.log(log_period=10.0, dump_system_stats=False)


def run_steps(out: Output, pipeline: Any, source: Any, *, full_refresh: bool = False) -> Any:
    """Extract, normalize and load as three visible steps (dlt's `run` is one long silent call); load info."""
    names = ", ".join(source.selected_resources)
    with out.step(f"extracting {names}", spinner=False):
        pipeline.extract(source, refresh="drop_sources" if full_refresh else None)
    with out.step("normalizing", spinner=False):
        pipeline.normalize()
    with out.step(f"loading into {pipeline.destination.destination_name}", spinner=False):
        return pipeline.load()


def run(args: argparse.Namespace, out: Output) -> int:
    import dlt

    from bitrix24_source import bitrix24_source
    from bitrix24_source.source import select_resources

    credentials = find_credentials(args.webhook_url)
    out.line(
        f"portal {credentials.portal} ({credentials.kind}) -> {args.destination}, dataset {args.dataset_name}, "
        f"pipeline {args.pipeline_name}"
    )
    memory_limit = None if args.duckdb_memory_limit.lower() == "none" else args.duckdb_memory_limit
    pipeline = dlt.pipeline(
        pipeline_name=args.pipeline_name,
        destination=sync_destination(args.destination, args.pipeline_name, memory_limit),
        dataset_name=args.dataset_name,
        pipelines_dir=args.pipelines_dir,
        progress=progress(out),
    )
    started = time.monotonic()
    with out.step("reading field metadata"):
        source = bitrix24_source(
            webhook_url=credentials.webhook_url,
            oauth=credentials.oauth,
            detect_deletes=args.detect_deletes,
            rate_limit=args.rate_limit,
            on_token_refresh=token_saver(credentials),
            # the crm.type.list request only when smart processes are asked for
            smart_processes="all" if wants_smart_processes(args.resources) else (),
        )
        source = select_resources(source, args.resources)
    info = run_steps(out, pipeline, source, full_refresh=args.full_refresh)
    print_summary(out, pipeline, time.monotonic() - started)
    if info.has_failed_jobs:
        out.problem(f"some load jobs failed: see `dlt pipeline {args.pipeline_name} failed-jobs`")
        return 1
    return 0


def table_counts(pipeline: Any, tables: Sequence[str]) -> dict[str, int] | None:
    """Rows per table in the warehouse (tables the schema has seen data for); None when the destination
    cannot be queried with SQL (a bucket of files, for instance)."""
    from dlt.common.destination.exceptions import SqlClientNotAvailable

    loaded = set(pipeline.default_schema.data_table_names(seen_data_only=True))
    counts: dict[str, int] = {}
    try:
        client = pipeline.sql_client()
    except SqlClientNotAvailable:
        return None
    with client:
        for table in tables:
            if table not in loaded:
                continue
            qualified = client.make_qualified_table_name(table)
            with client.execute_query(f"SELECT count(*) FROM {qualified}") as cursor:
                counts[table] = int(cursor.fetchone()[0])
    return counts


def summary_rows(pipeline: Any) -> list[tuple[str, int | str, int | str, int | str, str]]:
    """(table, rows in the warehouse, rows read, requests, seconds) per table of the last run ("-": unknown)."""
    from bitrix24_source.source import resource_stats

    stats = resource_stats(pipeline)
    tables = (*ALL_RESOURCES, *sorted(name for name in stats if is_spa_name(name)))
    counts = table_counts(pipeline, tables)
    rows: list[tuple[str, int | str, int | str, int | str, str]] = []
    for table in tables:
        if (counts is None or table not in counts) and table not in stats:
            continue
        own = stats.get(table, {})
        seconds = own.get("seconds")
        rows.append(
            (
                table,
                "-" if counts is None else counts.get(table, 0),
                own.get("rows", "-"),
                own.get("requests", "-"),
                "-" if seconds is None else f"{float(seconds):.2f}",
            )
        )
    return rows


def print_summary(out: Output, pipeline: Any, seconds: float) -> None:
    """The per-table summary: rows in the warehouse, rows read, requests, seconds spent in requests."""
    rows = summary_rows(pipeline)
    total_rows: int | str = "-" if any(r[1] == "-" for r in rows) else sum(int(r[1]) for r in rows)
    total_requests = sum(int(r[3]) for r in rows if r[3] != "-")
    rows.append(("total", total_rows, "", total_requests, ""))
    out.table(
        f"{pipeline.pipeline_name} -> {pipeline.destination.destination_name} dataset {pipeline.dataset_name}",
        ("table", " rows in db", " rows read", " requests", " seconds"),
        rows,
    )
    out.line(
        f"run took {seconds:.1f} s wall time (per-table seconds are time spent in that table's requests, "
        "client-side rate limiting included; the rest is dlt normalizing and loading)"
    )
