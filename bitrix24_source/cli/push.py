"""`bitrix24-dlt push FILE` and `bitrix24-dlt results`: writes through `bitrix24_destination`, and their outcome."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bitrix24_source.cli.config import find_credentials
from bitrix24_source.cli.output import Output
from bitrix24_source.destination.targets import write_target
from bitrix24_source.errors import ConfigError

PUSH_EXAMPLES = """\
examples:
  # a CSV of deal changes: rows with id update, rows without id add, _delete=true deletes
  bitrix24-dlt push changes.csv --entity deals

  # upsert contacts by their originId; check first without writing anything
  bitrix24-dlt push contacts.parquet --entity contacts --key originId --dry-run

  # JSON lines, results into PostgreSQL instead of ./bitrix24_push_results.duckdb
  bitrix24-dlt push tasks.jsonl --entity tasks --results-destination postgres

  # items of the smart process with entityTypeId 128; deal product rows (one row each, never replaced)
  bitrix24-dlt push projects.csv --entity spa_128
  bitrix24-dlt push lines.csv --entity deal_products

exit status: 0 every row ok (or planned), 2 some rows failed (see `bitrix24-dlt results`), 1 a problem.
"""

RESULTS_EXAMPLES = """\
examples:
  bitrix24-dlt results                          # the last push of pipeline bitrix24_push
  bitrix24-dlt results --pipeline-name deals_push --limit 100
"""

ENTITIES = (
    "leads",
    "deals",
    "contacts",
    "companies",
    "quotes",
    "invoices",
    "spa_<entityTypeId>",
    "tasks",
    "deal_products",
)


def _entity(name: str) -> str:
    """An --entity the destination can write (`spa_<entityTypeId>` names any smart process)."""
    try:
        write_target(name)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{name!r} cannot be written: use one of {', '.join(ENTITIES)}"
        ) from None
    return name


RESULTS_TABLE = "bitrix24_write_results"
ERRORS_TABLE = "bitrix24_write_errors"
PLAN_TABLE = "bitrix24_write_plan"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results-destination",
        default=None,
        help="where the result tables are: a dlt destination name (postgres, …) or a .duckdb file; "
        "default ./<pipeline-name>_results.duckdb",
    )
    parser.add_argument("--results-dataset", default="bitrix24_writes", help="dataset of the result tables")
    parser.add_argument(
        "--pipeline-name", default="bitrix24_push", help="dlt pipeline of the push; default bitrix24_push"
    )
    parser.add_argument(
        "--pipelines-dir", default=None, help="where dlt keeps pipeline state (~/.dlt/pipelines)"
    )


def add_parsers(commands: Any) -> None:
    push = commands.add_parser(
        "push",
        help="write a CSV, Parquet or JSON-lines file to an entity",
        description="Write every row of FILE to Bitrix24 in batches of 50. Each row gets a result row; "
        "failed rows also get an error row with the original values.",
        epilog=PUSH_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    push.add_argument("file", type=Path, help="a .csv, .parquet or .jsonl/.ndjson file")
    push.add_argument(
        "--entity",
        required=True,
        type=_entity,
        metavar="ENTITY",
        help=f"what the rows are: {', '.join(ENTITIES)}",
    )
    push.add_argument("--key", default=None, help="upsert key column: rows without id are looked up by it")
    push.add_argument("--dry-run", action="store_true", help="validate and record the plan, write nothing")
    push.add_argument(
        "--rate-limit", default="default", choices=("default", "enterprise", "off"), help="client throttle"
    )
    push.add_argument("--webhook-url", default=None, help="instead of the configured webhook")
    _common(push)
    push.set_defaults(run=run_push)

    results = commands.add_parser(
        "results",
        help="show the last push's results and errors",
        description="Counts by operation and status of the last push, and its failed rows.",
        epilog=RESULTS_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    results.add_argument("--limit", type=int, default=20, help="failed rows to show; default 20")
    _common(results)
    results.set_defaults(run=run_results)


def read_rows(path: Path) -> Any:
    """The file's rows: a DataFrame (CSV), an Arrow table (Parquet), or a list of dicts (JSON lines).

    JSON lines stay dicts so values keep their JSON types (pandas would guess dates and widen integers).
    """
    if not path.is_file():
        raise ConfigError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        import pandas as pd

        return pd.read_csv(path)
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return pq.read_table(path)
    if suffix in (".jsonl", ".ndjson", ".json"):
        rows: list[dict[str, Any]] = []
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{path}:{number}: not JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise ConfigError(f"{path}:{number}: a line must be a JSON object")
                rows.append(row)
        return rows
    raise ConfigError(f"{path}: unknown file type {suffix or '(none)'}; use .csv, .parquet or .jsonl")


def _row_count(rows: Any) -> int:
    return int(rows.num_rows) if hasattr(rows, "num_rows") else len(rows)


def run_push(args: argparse.Namespace, out: Output) -> int:
    import dlt

    from bitrix24_source.destination import PushFailedError, bitrix24_destination, run_push

    credentials = find_credentials(args.webhook_url, destination=True)
    rows = read_rows(args.file)
    what = "dry run of" if args.dry_run else "pushing"
    out.line(f"{what} {_row_count(rows)} rows of {args.file.name} to {args.entity} on {credentials.portal}")
    destination = bitrix24_destination(
        webhook_url=credentials.webhook_url,
        results_destination=results_destination(args.results_destination, args.pipeline_name),
        results_dataset_name=args.results_dataset,
        entity=args.entity,
        key=args.key,
        dry_run=args.dry_run,
        progress=out.rich,
        rate_limit=None if args.rate_limit == "off" else args.rate_limit,
    )
    pipeline = dlt.pipeline(args.pipeline_name, destination=destination, pipelines_dir=args.pipelines_dir)
    # the destination draws its own progress bar in a terminal
    try:
        with out.step("writing" if not args.dry_run else "planning", spinner=False):
            run_push(pipeline, rows, table_name=args.entity)
    except PushFailedError as exc:
        # One line: what failed and what to do (the destination's own text); the rows that have an outcome
        # are in the result tables (`bitrix24-dlt results`) once a later push completes.
        out.problem(f"push: {exc}")
        return 1
    return show_results(out, _results_pipeline(args), limit=20)


def run_results(args: argparse.Namespace, out: Output) -> int:
    return show_results(out, _results_pipeline(args), limit=args.limit)


def _duckdb_file(value: str | None, pipeline_name: str) -> Path | None:
    if value is None:
        value = f"{pipeline_name}_results.duckdb"
    # Absolute: dlt would resolve a relative DuckDB path against an earlier run's directory.
    return Path(value).resolve() if value.endswith(".duckdb") else None


def results_destination(value: str | None, pipeline_name: str) -> Any:
    """The destination of the result tables: a DuckDB file, or a destination name dlt resolves."""
    import dlt

    path = _duckdb_file(value, pipeline_name)
    return dlt.destinations.duckdb(str(path)) if path is not None else value


def _results_pipeline(args: argparse.Namespace) -> Any:
    """The pipeline the destination loads its result tables with (README "Result tables")."""
    import dlt

    path = _duckdb_file(args.results_destination, args.pipeline_name)
    if path is not None and not path.exists():
        raise ConfigError(f"no push results in {path}: run `bitrix24-dlt push` first (same --pipeline-name)")
    return dlt.pipeline(
        pipeline_name=f"{args.pipeline_name}_bitrix24_results",
        destination=results_destination(args.results_destination, args.pipeline_name),
        dataset_name=args.results_dataset,
        pipelines_dir=args.pipelines_dir,
    )


def _where(pipeline: Any) -> str:
    destination = pipeline.destination.destination_name
    where = f"{destination} dataset {pipeline.dataset_name}"
    if destination == "duckdb":
        database = getattr(pipeline.destination_client().config.credentials, "database", None)
        if database:
            where += f" in {database}"
    return where


def _query(client: Any, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with client.execute_query(sql, *params) as cursor:
        return [tuple(row) for row in cursor.fetchall()]


def show_results(out: Output, pipeline: Any, *, limit: int) -> int:
    """Print the last push's counts and failed rows; exit status 2 when rows failed, else 0."""
    from dlt.destinations.exceptions import DatabaseUndefinedRelation

    try:
        return _show(out, pipeline, limit)
    except DatabaseUndefinedRelation:
        raise ConfigError(
            f"no push results in {_where(pipeline)}: run `bitrix24-dlt push` first (same --pipeline-name)"
        ) from None


def _show(out: Output, pipeline: Any, limit: int) -> int:
    with pipeline.sql_client() as client:
        results = client.make_qualified_table_name(RESULTS_TABLE)
        errors = client.make_qualified_table_name(ERRORS_TABLE)
        last = _query(client, f"SELECT max(load_id) FROM {results}")[0][0]
        if last is None:
            raise ConfigError(f"no rows pushed yet ({_where(pipeline)})")
        counts = _query(
            client,
            f"SELECT table_name, coalesce(operation, '-'), status, count(*) FROM {results} "
            "WHERE load_id = %s GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            last,
        )
        failed = _query(
            client,
            f"SELECT row_number, coalesce(operation, '-'), key, error_code, error_description, row_json "
            f"FROM {errors} WHERE load_id = %s ORDER BY job_id, row_number LIMIT {int(limit)}",
            last,
        )
        n_failed = _query(client, f"SELECT count(*) FROM {errors} WHERE load_id = %s", last)[0][0]
    out.table(f"push {last}: rows by outcome", ("table", "operation", "status", " rows"), counts)
    if n_failed:
        shown = f" (first {len(failed)})" if n_failed > len(failed) else ""
        out.table(
            f"failed rows: {n_failed}{shown}",
            (" row", "operation", "key", "error", "description", "row"),
            [(*r[:4], _clip(r[4], 70), _clip(r[5], 60)) for r in failed],
        )
    where = _where(pipeline)
    out.line(f"results: {RESULTS_TABLE}, errors: {ERRORS_TABLE} (plans: {PLAN_TABLE}) in {where}")
    return 2 if n_failed else 0


def _clip(value: Any, width: int) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"
