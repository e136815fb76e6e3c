"""The result tables: a row's outcome -> its result/error/plan rows (pure), and the flush that loads them (I/O).

Every input row gets one row in ``bitrix24_write_results``; rejected and failed rows also get one in
``bitrix24_write_errors`` (with the input row as JSON), and dry runs record the command that would have been
sent in ``bitrix24_write_plan``. The rows are kept in the journals while a load runs; when dlt completes the
load package, :func:`flush` loads them into ``results_destination`` with a second dlt pipeline (merged on
``load_id, job_id, row_number``, so a repeated flush cannot duplicate rows), prints a one-line summary per
table and removes the journals.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

import dlt
from dlt.common.destination.exceptions import DestinationTransientException

from bitrix24_source.destination.coerce import json_safe
from bitrix24_source.destination.journal import JournalRecord, records_of, unflushed_loads
from bitrix24_source.destination.plan import Outcome, PlannedRow

logger = logging.getLogger(__name__)

RESULTS_TABLE: Final = "bitrix24_write_results"
ERRORS_TABLE: Final = "bitrix24_write_errors"
PLAN_TABLE: Final = "bitrix24_write_plan"

_RESULT_COLUMNS: Final[dict[str, Any]] = {
    "load_id": {"data_type": "text", "nullable": False, "primary_key": True},
    "table_name": {"data_type": "text", "nullable": False},
    "job_id": {"data_type": "text", "nullable": False, "primary_key": True},
    "row_number": {"data_type": "bigint", "nullable": False, "primary_key": True},
    "input_index": {"data_type": "text", "nullable": True},
    "key": {"data_type": "text", "nullable": True},
    "operation": {"data_type": "text", "nullable": True},
    "bitrix_id": {"data_type": "bigint", "nullable": True},
    "status": {"data_type": "text", "nullable": False},
    "error_code": {"data_type": "text", "nullable": True},
    "error_description": {"data_type": "text", "nullable": True},
    "written_at": {"data_type": "timestamp", "nullable": False},
}
_IDENTITY_COLUMNS: Final = (
    "load_id",
    "table_name",
    "job_id",
    "row_number",
    "input_index",
    "key",
    "operation",
)
_ERROR_COLUMNS: Final[dict[str, Any]] = {
    **{k: v for k, v in _RESULT_COLUMNS.items() if k not in {"bitrix_id", "status"}},
    "field": {"data_type": "text", "nullable": True},
    "row_json": {"data_type": "text", "nullable": False},
}
_PLAN_COLUMNS: Final[dict[str, Any]] = {
    **{k: _RESULT_COLUMNS[k] for k in _IDENTITY_COLUMNS},
    "method": {"data_type": "text", "nullable": True},
    "params_json": {"data_type": "text", "nullable": True},
}


# --- rows (pure) ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobIdentity:
    """The columns that name a load job file in every result table."""

    load_id: str
    table: str
    job_id: str


def _identity(planned: PlannedRow, *, load_id: str, table: str, job_id: str) -> dict[str, Any]:
    """The columns that name an input row, shared by the results, errors and plan tables."""
    return {
        "load_id": load_id,
        "table_name": table,
        "job_id": job_id,
        "row_number": planned.row_number,
        "input_index": index_text(planned.index),
        "key": planned.key,
        "operation": planned.operation,
    }


def index_text(index: Any) -> str | None:
    """A row's own index value (a DataFrame's label) as text: labels may be ints, strings or tuples."""
    if index is None:
        return None
    if isinstance(index, str):
        return index
    return json.dumps(json_safe(index), ensure_ascii=False)


def result_row(
    planned: PlannedRow, outcome: Outcome, *, load_id: str, table: str, job_id: str, written_at: datetime
) -> dict[str, Any]:
    """One row of ``bitrix24_write_results``."""
    return {
        **_identity(planned, load_id=load_id, table=table, job_id=job_id),
        "bitrix_id": outcome.bitrix_id if outcome.bitrix_id is not None else planned.bitrix_id,
        "status": outcome.status,
        "error_code": outcome.error_code,
        "error_description": outcome.error_description,
        "written_at": written_at,
    }


def error_row(result: Mapping[str, Any], planned: PlannedRow) -> dict[str, Any]:
    """One row of ``bitrix24_write_errors``: the result row plus the original input row as JSON."""
    return {
        **{column: result[column] for column in _IDENTITY_COLUMNS},
        "error_code": result["error_code"],
        "error_description": result["error_description"],
        "field": planned.error_field,
        "row_json": json.dumps(planned.original, ensure_ascii=False, sort_keys=True),
        "written_at": result["written_at"],
    }


def plan_row_record(planned: PlannedRow, *, load_id: str, table: str, job_id: str) -> dict[str, Any]:
    """One row of ``bitrix24_write_plan`` (dry runs): the command that would be sent."""
    return {
        **_identity(planned, load_id=load_id, table=table, job_id=job_id),
        "method": planned.method,
        "params_json": json.dumps(json_safe(planned.params), ensure_ascii=False, sort_keys=True),
    }


def journal_records(
    planned: Sequence[PlannedRow], outcomes: Mapping[int, Outcome], job: JobIdentity, *, dry_run: bool
) -> list[JournalRecord]:
    """The journal records of a chunk: `outcomes` holds those of the valid rows, rejected rows carry theirs."""
    written_at = datetime.now(timezone.utc)
    ids = {"load_id": job.load_id, "table": job.table, "job_id": job.job_id}
    records: list[JournalRecord] = []
    for p in planned:
        outcome = (
            outcomes[p.row_number]
            if p.is_valid
            else Outcome("error", None, p.error_code, p.error_description)
        )
        result = result_row(p, outcome, **ids, written_at=written_at)
        records.append(
            {
                "result": result,
                "error": error_row(result, p) if result["status"] == "error" else None,
                "plan": plan_row_record(p, **ids) if dry_run and p.is_valid else None,
            }
        )
    return records


# --- tallies and the flush (I/O) --------------------------------------------------------------------------


@dataclass(slots=True)
class Tally:
    """What one table of one load did so far: row outcomes, HTTP requests and seconds spent."""

    rows: int = 0
    ok: int = 0
    errors: int = 0
    planned: int = 0
    already_applied: int = 0
    requests: int = 0
    seconds: float = 0.0

    def add(self, status: str) -> None:
        self.rows += 1
        if status == "ok":
            self.ok += 1
        elif status == "planned":
            self.planned += 1
        elif status == "already_applied":
            self.already_applied += 1
        else:
            self.errors += 1

    def count(self, records: Sequence[JournalRecord]) -> None:
        for record in records:
            self.add(record["result"]["status"])


class Tallies:
    """The tallies of the loads in progress, by load id and table (jobs may run on several threads)."""

    def __init__(self) -> None:
        self._tallies: dict[str, dict[str, Tally]] = {}
        self._lock = threading.Lock()

    def of(self, load_id: str, table_name: str) -> Tally:
        with self._lock:
            return self._tallies.setdefault(load_id, {}).setdefault(table_name, Tally())

    def pop(self, load_id: str) -> dict[str, Tally]:
        with self._lock:
            return self._tallies.pop(load_id, {})


def flush(results_destination: Any, dataset_name: str, tallies: Tallies) -> None:
    """Load the journals into `results_destination`, print the summary, drop the journals.

    Besides the completed load's own journals this takes those that packages dlt aborted left behind
    (``abort_packages``, ``auto_abort_on_terminal_error``: dlt does not complete an aborted package, so its
    writes would never get their result rows otherwise). A pending package cannot have journals here: dlt
    loads packages in order and stops at the first that fails.
    """
    pipeline = dlt.current.pipeline()
    directories = unflushed_loads(pipeline.working_dir)
    if not directories:
        return
    results: dict[str, list[dict[str, Any]]] = {}
    errors: list[dict[str, Any]] = []
    plans: list[dict[str, Any]] = []
    for directory in directories:
        own = results.setdefault(directory.name, [])
        for record in records_of(directory):
            own.append(_with_time(record["result"]))
            if record.get("error"):
                errors.append(_with_time(record["error"] or {}))
            if record.get("plan"):
                plans.append(record["plan"] or {})
    resources = [
        _result_resource([row for rows in results.values() for row in rows], RESULTS_TABLE, _RESULT_COLUMNS),
        _result_resource(errors, ERRORS_TABLE, _ERROR_COLUMNS),
    ]
    if plans:
        resources.append(_result_resource(plans, PLAN_TABLE, _PLAN_COLUMNS))
    where = _load(pipeline, results_destination, dataset_name, resources)
    for directory in directories:
        shutil.rmtree(directory, ignore_errors=True)
    for load_id, rows in results.items():
        _summarise(load_id, rows, tallies.pop(load_id), where)


def _load(outer: Any, results_destination: Any, dataset_name: str, resources: list[Any]) -> str:
    """Load the result tables; where they went, for the summary."""
    destination = results_destination_of(results_destination, outer.pipeline_name)
    failure: list[Exception] = []

    def run() -> None:
        try:
            inner = dlt.pipeline(
                pipeline_name=f"{outer.pipeline_name}_bitrix24_results",
                pipelines_dir=outer.pipelines_dir,
                destination=destination,
                dataset_name=dataset_name,
            )
            inner.run(resources)
        except Exception as exc:  # handed to the calling thread below and raised there
            failure.append(exc)

    # dlt's injection contexts are per thread: a fresh thread keeps the results pipeline from replacing
    # the pipeline that is loading right now (the loader calls us from inside its own load step).
    worker = threading.Thread(target=run, name="bitrix24-results-flush")
    worker.start()
    worker.join()
    if failure:
        raise DestinationTransientException(
            f"bitrix24 destination: could not load the write results: {failure[0]}"
        ) from failure[0]
    credentials = destination.config_params.get("credentials")
    place = credentials if isinstance(credentials, str) else destination.destination_name
    return f"{place}, dataset {dataset_name}"


def _summarise(
    load_id: str, results: Sequence[Mapping[str, Any]], tallies: Mapping[str, Tally], where: str
) -> None:
    by_table: dict[str, Tally] = {}
    for row in results:
        by_table.setdefault(str(row["table_name"]), Tally()).add(str(row["status"]))
    for table_name, t in sorted(by_table.items()):
        live = tallies.get(table_name, Tally())
        planned = f", {t.planned} planned (dry run)" if t.planned else ""
        applied = f", {t.already_applied} already applied" if t.already_applied else ""
        line = (
            f"bitrix24 destination: {table_name}: {t.rows} rows, {t.ok} ok, {t.errors} errors{applied}"
            f"{planned}, {live.requests} requests, {live.seconds:.1f} s (load {load_id}); results in {where}"
        )
        logger.info(line)
        print(line)


def _result_resource(rows: list[dict[str, Any]], name: str, columns: dict[str, Any]) -> Any:
    """A result table, merged on the row's identity so that a repeated flush cannot duplicate rows."""
    return dlt.resource(
        _rows_or_empty(rows),
        name=name,
        columns=columns,
        write_disposition="merge",
        primary_key=("load_id", "job_id", "row_number"),
    )


def _rows_or_empty(rows: list[dict[str, Any]]) -> Iterator[Any]:
    """The rows, or dlt's marker that creates the (empty) table: an errors table with no rows still exists."""
    if rows:
        yield rows
    else:
        yield dlt.mark.materialize_table_schema()


def _with_time(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    if isinstance(out.get("written_at"), str):
        out["written_at"] = datetime.fromisoformat(out["written_at"])
    return out


# --- reading them back -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PushResults:
    """The result rows of one push (one load of the push pipeline), as pandas DataFrames.

    Attributes:
        load_id: the push's dlt load id (None when the pipeline has pushed nothing yet).
        results: ``bitrix24_write_results`` rows of that load, one per input row, in input order.
        errors: ``bitrix24_write_errors`` rows of that load (the failed rows, with ``row_json``).
    """

    load_id: str | None
    results: Any
    errors: Any

    def __repr__(self) -> str:
        if self.load_id is None:
            return "PushResults(no push yet)"
        counts = self.results["status"].value_counts().to_dict() if len(self.results) else {}
        shown = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        return f"PushResults(load {self.load_id}: {len(self.results)} rows: {shown})"


def last_results(pipeline: Any) -> PushResults:
    """The results and errors of the last push of `pipeline` whose results were loaded.

    They are read from where the destination loaded them (its ``results_destination`` and
    ``results_dataset_name``). The results of a push that failed for good are loaded with the next push
    that completes.

    Args:
        pipeline: the dlt pipeline that pushed to ``bitrix24_destination``.

    Returns:
        A :class:`PushResults` with pandas DataFrames filtered to that push's load id.

    Raises:
        ValueError: `pipeline` does not push to a ``bitrix24_destination``.
    """
    options = getattr(pipeline.destination, "bitrix24_options", None)
    if options is None:
        raise ValueError(f"pipeline {pipeline.pipeline_name!r} does not push to a bitrix24_destination")
    reader = dlt.pipeline(
        pipeline_name=f"{pipeline.pipeline_name}_bitrix24_results",
        pipelines_dir=pipeline.pipelines_dir,
        destination=results_destination_of(options.results_destination, pipeline.pipeline_name),
        dataset_name=options.results_dataset_name,
    )
    try:
        return _read_last(reader)
    finally:
        pipeline.activate()  # dlt.pipeline() made the reader the current pipeline


def _read_last(reader: Any) -> PushResults:
    with reader.sql_client() as client:
        results_table = client.make_qualified_table_name(RESULTS_TABLE)
        errors_table = client.make_qualified_table_name(ERRORS_TABLE)
        with client.execute_query(f"SELECT max(load_id) FROM {results_table}") as cursor:
            row = cursor.fetchone()
        load_id = None if row is None or row[0] is None else str(row[0])
        if load_id is None:
            return PushResults(None, _frame([], []), _frame([], []))
        quoted = load_id.replace("'", "''")
        frames = []
        for table in (results_table, errors_table):
            query = f"SELECT * FROM {table} WHERE load_id = '{quoted}' ORDER BY job_id, row_number"
            with client.execute_query(query) as cursor:
                names = [d[0] for d in cursor.description]
                frames.append(_frame(names, cursor.fetchall()))
    return PushResults(load_id, frames[0], frames[1])


def results_destination_of(results_destination: Any, pipeline_name: str) -> Any:
    """The destination of the result tables: the option, or a DuckDB file named after the push pipeline in
    the current directory."""
    return results_destination or dlt.destinations.duckdb(os.path.abspath(f"{pipeline_name}_results.duckdb"))


def _frame(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Any:
    import pandas as pd

    frame = pd.DataFrame.from_records(list(rows), columns=list(columns))
    return frame.drop(columns=[c for c in frame.columns if str(c).startswith("_dlt_")])
