"""The Bitrix24 dlt destination: dataframes / records -> v2 batch writes -> per-row results in a warehouse.

```python
import dlt
from bitrix24_source import bitrix24_destination

pipeline = dlt.pipeline("deals_push", destination=bitrix24_destination(webhook_url=...))
pipeline.run(df, table_name="deals")      # then read bitrix24_write_results / bitrix24_write_errors
```

How a load runs (one dlt load job per file of input rows; jobs run one after another):

1. The job reads its file (parquet for dataframes/arrow, typed jsonl for records) and numbers the rows.
2. Rows are planned in chunks of 50 by :mod:`bitrix24_source.destination.plan` against the portal's field metadata
   and the crm.status directories their stage/source/type values need (both fetched once per load and
   entity). Rejected rows get their result at once; the rest become one v2 batch with ``halt=0`` (§4.2),
   sent through the client and its shared limiter. v3 batches are all-or-nothing (§5.6), so they could not
   report per-row outcomes and are not used.
3. Checkpoint: before a batch is sent, its row numbers are committed to dlt's destination state (the load
   package state) as "in flight"; after the outcomes are appended (fsync) to the job's journal file in the
   pipeline's working directory, the in-flight list is cleared. A job that dlt retries, or a pipeline that is
   killed and run again, skips rows the journal already holds and treats in-flight rows as "outcome unknown".
4. Outcome unknown (the client reports ``outcome="unknown"`` after a timeout/reset, §6.6; or a resumed
   in-flight row): adds carry an idempotency marker (the upsert key, a user-supplied marker field value, or
   ``b24w:<load_id>:<file_id>:<row>`` stamped into ``xmlId`` / tasks ``XML_ID``) that is looked up with one
   batched list call before anything is resent, so an add is never duplicated. A user-supplied marker is
   looked up before its first send as well: one already on the portal rejects the row
   (``DUPLICATE_MARKER_ON_PORTAL``), since finding it later would prove nothing. ``marker_field`` and ``key``
   are checked against the field metadata when a job starts; an unusable one is a terminal error. Updates
   are resent (same values, idempotent). A resent delete that answers ``NOT_FOUND`` counts as ok: the lost
   attempt did it.
5. When dlt completes the load package, the journals are flushed to ``results_destination`` by a second dlt
   pipeline (merge on ``load_id, job_id, row_number``, so a repeated flush cannot duplicate rows), a
   one-line summary is printed, and the journals are removed. dlt has no public hook for that moment: see the
   "dlt adapter" section at the end of this module.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import FunctionType
from typing import TYPE_CHECKING, Any, ClassVar, Final

import dlt
from dlt.common.destination import Destination
from dlt.common.destination.exceptions import (
    DestinationTerminalException,
    DestinationTransientException,
)
from dlt.common.normalizers.naming.direct import NamingConvention as DirectNamingConvention
from dlt.common.storages import FileStorage
from dlt.common.storages.load_package import commit_load_package_state, destination_state, load_package_state
from dlt.common.storages.load_storage import ParsedLoadJobFileName
from dlt.common.typing import TSecretStrValue
from dlt.destinations.impl.destination.destination import DestinationClient as _CustomDestinationClient
from dlt.destinations.impl.destination.factory import destination as _CustomDestinationFactory

from bitrix24_source.destination.plan import (
    ERRORS_TABLE,
    PLAN_TABLE,
    RESULTS_TABLE,
    Outcome,
    PlannedRow,
    PlanOptions,
    WriteOptionError,
    WriteTarget,
    added_id,
    as_id,
    check_write_options,
    error_row,
    is_missing,
    key_value,
    mark_duplicate_keys,
    needed_directories,
    parse_directory,
    plan_row_or_reject,
    plan_row_record,
    reject_existing_markers,
    result_row,
    write_target,
)
from bitrix24_source.errors import Bitrix24Error, mask
from bitrix24_source.fields import EntityFields, parse_crm_item_fields, parse_task_fields

if TYPE_CHECKING:
    from bitrix24_source.client import Bitrix24Client

__all__ = ["bitrix24_destination"]

logger = logging.getLogger(__name__)

BATCH_SIZE: Final = 50  # v2 batch limit (§4.5)
JOURNAL_DIR: Final = "bitrix24_writes"
NOT_FOUND_CODES: Final = frozenset({"NOT_FOUND", "ERROR_ENTITY_NOT_FOUND"})
_REQUEST_LEVEL_CATEGORIES: Final = frozenset({"auth", "rate_limit"})

_RESULT_COLUMNS: Final[dict[str, Any]] = {
    "load_id": {"data_type": "text", "nullable": False, "primary_key": True},
    "table_name": {"data_type": "text", "nullable": False},
    "job_id": {"data_type": "text", "nullable": False, "primary_key": True},
    "row_number": {"data_type": "bigint", "nullable": False, "primary_key": True},
    "key": {"data_type": "text", "nullable": True},
    "operation": {"data_type": "text", "nullable": True},
    "bitrix_id": {"data_type": "bigint", "nullable": True},
    "status": {"data_type": "text", "nullable": False},
    "error_code": {"data_type": "text", "nullable": True},
    "error_description": {"data_type": "text", "nullable": True},
    "written_at": {"data_type": "timestamp", "nullable": False},
}
_ERROR_COLUMNS: Final[dict[str, Any]] = {
    **{k: v for k, v in _RESULT_COLUMNS.items() if k not in {"bitrix_id", "status"}},
    "row_json": {"data_type": "text", "nullable": False},
}
_PLAN_COLUMNS: Final[dict[str, Any]] = {
    **{k: _RESULT_COLUMNS[k] for k in ("load_id", "table_name", "job_id", "row_number", "key", "operation")},
    "method": {"data_type": "text", "nullable": True},
    "params_json": {"data_type": "text", "nullable": True},
}


@dataclass(frozen=True, slots=True)
class DestinationOptions:
    """Settings of one :func:`bitrix24_destination` (see its docstring)."""

    entity: str | None = None
    key: str | None = None
    dry_run: bool = False
    marker_field: str | None = None
    progress: bool | None = None
    timeout: float = 30.0
    rate_limit: Any = "default"
    operating_limit: float | None = 480.0
    verify: bool | str = True
    results_destination: Any = None
    results_dataset_name: str = "bitrix24_writes"
    max_send_attempts: int = 3


@dataclass(slots=True)
class _Tally:
    rows: int = 0
    ok: int = 0
    errors: int = 0
    planned: int = 0
    requests: int = 0
    seconds: float = 0.0

    def add(self, status: str) -> None:
        self.rows += 1
        if status == "ok":
            self.ok += 1
        elif status == "planned":
            self.planned += 1
        else:
            self.errors += 1


class _Journal:
    """Append-only JSON lines with one outcome record per input row of one load job file.

    Each line is ``{"result": {...}, "error": {...} | null, "plan": {...} | null}``. A row may appear twice
    when a crash hit between the append and the checkpoint; the last record wins.

    Hand-written rather than kept in dlt's load package state: that state is one JSON document rewritten on
    every commit, so per-row outcomes there would cost O(rows) per batch; appending is O(batch).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[int, dict[str, Any]]:
        records: dict[int, dict[str, Any]] = {}
        if not self.path.exists():
            return records
        with self.path.open("r", encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    # A torn last line from a crash mid-write: its rows were never checkpointed as done.
                    logger.warning("bitrix24 destination: ignoring a torn line in %s", self.path.name)
                    continue
                records[int(record["result"]["row_number"])] = record
        return records

    def append(self, records: Sequence[Mapping[str, Any]]) -> None:
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            if self._ends_torn():
                f.write("\n")  # close a torn line so that it cannot swallow the first new record
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False, default=_json_default) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _ends_torn(self) -> bool:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return False
        with self.path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _journal_dir(working_dir: str, load_id: str) -> Path:
    return Path(working_dir) / JOURNAL_DIR / load_id


def _read_rows(path: str) -> list[dict[str, Any]]:
    """All rows of a load job file, in file order, without dlt's own columns."""
    parsed = ParsedLoadJobFileName.parse(path)
    if parsed.file_format == "parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    else:
        from dlt.common.json import json as dlt_json

        rows = []
        with FileStorage.open_zipsafe_ro(path) as f:
            for line in f:
                if line.strip():
                    loaded = dlt_json.typed_loads(line)
                    rows.extend(loaded if isinstance(loaded, list) else [loaded])
    return [_fold_variants(row) for row in rows]


# dlt stores a value whose type differs from its column's in a variant column `<name>▶v_<type>` (direct
# naming convention's path separator); the user wrote `<name>`, so validation must see `<name>`.
_VARIANT_MARK: Final = f"{DirectNamingConvention.PATH_SEPARATOR}v_"


def _fold_variants(row: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for column, value in row.items():
        if column.startswith("_dlt_"):
            continue
        base = column.split(_VARIANT_MARK, 1)[0] if _VARIANT_MARK in column else column
        if base not in out or out[base] is None:
            out[base] = value
    return out


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _squashed_get(row: Mapping[str, Any], name: str) -> Any:
    if name in row:
        return row[name]
    wanted = name.replace("_", "").lower()
    for k, v in row.items():
        if str(k).replace("_", "").lower() == wanted:
            return v
    return None


class _Pusher:
    """Runs the load jobs of one destination instance and flushes their results at the end of a load."""

    def __init__(self, options: DestinationOptions) -> None:
        self.options = options
        self._client: Bitrix24Client | None = None
        self._client_url: str | None = None
        self._fields: dict[tuple[str, str], EntityFields] = {}
        self._directories: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
        self._tallies: dict[str, dict[str, _Tally]] = {}
        self._lock = threading.Lock()

    # --- client and metadata ------------------------------------------------------------------------

    def client(self, webhook_url: str) -> Bitrix24Client:
        from bitrix24_source.client import Bitrix24Client

        with self._lock:
            if self._client is None or self._client_url != webhook_url:
                o = self.options
                self._client = Bitrix24Client(
                    webhook_url=webhook_url,
                    timeout=o.timeout,
                    rate_limit=o.rate_limit,
                    operating_limit=o.operating_limit,
                    verify=o.verify,
                )
                self._client_url = webhook_url
            return self._client

    def fields(self, client: Bitrix24Client, target: WriteTarget, load_id: str) -> EntityFields:
        """Field metadata of the target entity, fetched once per load (crm.item.fields / tasks.task.getFields)."""
        cache_key = (load_id, target.entity)
        if cache_key not in self._fields:
            result = self._call_fields(client, target)
            parse = parse_crm_item_fields if target.family == "crm_item" else parse_task_fields
            self._fields[cache_key] = parse(result)
        return self._fields[cache_key]

    @staticmethod
    def _call_fields(client: Bitrix24Client, target: WriteTarget) -> Any:
        try:
            return client.call(target.fields_method, target.fields_params()).result
        except Bitrix24Error as exc:
            raise _job_error(exc, f"cannot read the field metadata of {target.entity}") from exc

    def directories(
        self, client: Bitrix24Client, target: WriteTarget, load_id: str, needed: set[str]
    ) -> dict[str, dict[str, str]]:
        """The crm.status directories (stages, sources, types) that `needed` names, read once per load.

        All of them come in one v2 batch of ``crm.status.list`` calls, one per ENTITY_ID; the method has no
        paging (DOCS crm-status-list.md: "select" and navigation are not supported), so one call is the whole
        directory. A later job of the same load only asks for directories it is the first to need.
        """
        cache = self._directories.setdefault((load_id, target.entity), {})
        missing = sorted(needed - cache.keys())
        if not missing:
            return cache
        calls = [
            ("crm.status.list", {"filter": {"ENTITY_ID": entity_id}, "order": {"SORT": "ASC"}})
            for entity_id in missing
        ]
        results = _read_all(client, calls, f"cannot read the crm.status directories of {target.entity}")
        for entity_id, result in zip(missing, results, strict=True):
            cache[entity_id] = parse_directory(result)
        return cache

    def lookup(
        self, client: Bitrix24Client, target: WriteTarget, field_name: str, values: Sequence[str]
    ) -> dict[str, list[int]]:
        """Map each of `values` to the ids of the records whose `field_name` holds it (absent: none).

        One list command per value, batched 50 to a request: a single ``@field`` list call would return one
        page of 50 rows (§3.1) shared by all values, so values held by many records could crowd others out.
        """
        found: dict[str, list[int]] = {}
        unique = sorted(set(values))
        if not unique:
            return found
        calls = [(target.list_method, target.lookup_params(field_name, value)) for value in unique]
        results = _read_all(client, calls, f"cannot look up {field_name} on {target.entity}")
        for value, result in zip(unique, results, strict=True):
            ids = {
                record_id
                for row in target.lookup_rows(result)
                if str(_squashed_get(row, field_name)) == value
                and (record_id := as_id(_squashed_get(row, target.id_field))) is not None
            }
            if ids:
                found[value] = sorted(ids)
        return found

    # --- one load job ----------------------------------------------------------------------------------

    def push_file(self, path: str, table: Mapping[str, Any], webhook_url: str) -> None:
        pipeline = dlt.current.pipeline()
        load_id = load_package_state()["load_id"]
        parsed = ParsedLoadJobFileName.parse(path)
        table_name = str(table["name"])
        job_id = parsed.file_id
        try:
            target = write_target(self.options.entity or table_name, self.options.marker_field)
        except ValueError as exc:
            raise DestinationTerminalException(str(exc)) from exc

        journal = _Journal(_journal_dir(pipeline.working_dir, load_id) / f"{table_name}.{job_id}.jsonl")
        done = journal.load()
        state = destination_state()
        checkpoint = state.setdefault(f"bitrix24:{table_name}.{job_id}", {"inflight": [], "done": 0})
        maybe_sent = {int(n) for n in checkpoint.get("inflight", [])} - done.keys()

        rows = _read_rows(path)
        client = self.client(webhook_url)
        tally = self._tally(load_id, table_name)
        requests_before = client.stats.http_requests
        started = time.monotonic()
        bar = None
        try:
            fields = self.fields(client, target, load_id)
            try:
                check_write_options(target, fields, self.options.key)
            except WriteOptionError as exc:
                raise DestinationTerminalException(str(exc)) from exc
            directories = (
                self.directories(client, target, load_id, needed_directories(fields, rows))
                if target.family == "crm_item"
                else None
            )
            pending = [n for n in range(len(rows)) if n not in done]
            bar = self._progress_bar(len(rows), len(done), table_name)
            for chunk in _chunks(pending, BATCH_SIZE):
                records = self._write_chunk(
                    client,
                    target,
                    fields,
                    directories,
                    rows,
                    chunk,
                    maybe_sent,
                    checkpoint,
                    load_id,
                    table_name,
                    job_id,
                )
                journal.append(records)
                checkpoint["inflight"] = []
                checkpoint["done"] = int(checkpoint.get("done", 0)) + len(chunk)
                commit_load_package_state()
                self._count(tally, records)
                if bar is not None:
                    bar.update(len(chunk))
                    bar.set_postfix(
                        errors=tally.errors,
                        requests=tally.requests + client.stats.http_requests - requests_before,
                    )
        finally:
            tally.requests += client.stats.http_requests - requests_before
            tally.seconds += time.monotonic() - started
            if bar is not None:
                bar.close()

    def _write_chunk(
        self,
        client: Bitrix24Client,
        target: WriteTarget,
        fields: EntityFields,
        directories: Mapping[str, Mapping[str, str]] | None,
        rows: Sequence[Mapping[str, Any]],
        chunk: Sequence[int],
        maybe_sent: set[int],
        checkpoint: dict[str, Any],
        load_id: str,
        table_name: str,
        job_id: str,
    ) -> list[dict[str, Any]]:
        options = self.options
        matches: dict[str, list[int]] = {}
        if options.key:
            key_field = fields.resolve(options.key) or options.key
            values = [
                v
                for n in chunk
                if not any(c in rows[n] and not is_missing(rows[n][c]) for c in ("id", "ID"))
                and (v := key_value(rows[n], options.key, fields)) is not None
            ]
            if values:
                matches = self.lookup(client, target, key_field, values)
        plan_options = PlanOptions(
            key=options.key,
            resolved_ids={value: ids[0] for value, ids in matches.items() if len(ids) == 1},
            ambiguous_keys={value: ids for value, ids in matches.items() if len(ids) > 1},
            marker_prefix=f"b24w:{load_id}:{job_id}",
            directories=directories,
        )
        planned = mark_duplicate_keys(
            [plan_row_or_reject(rows[n], n, target, fields, plan_options) for n in chunk]
        )
        planned = self._check_own_markers(client, target, planned, maybe_sent)

        outcomes: dict[int, Outcome] = {}
        for p in planned:
            if not p.is_valid:
                outcomes[p.row_number] = Outcome("error", None, p.error_code, p.error_description)
        valid = [p for p in planned if p.is_valid]
        if options.dry_run:
            for p in valid:
                outcomes[p.row_number] = Outcome("planned")
        elif valid:
            checkpoint["inflight"] = [p.row_number for p in valid]
            commit_load_package_state()
            outcomes.update(self._send(client, target, valid, maybe_sent))

        written_at = datetime.now(timezone.utc)
        records = []
        for p in planned:
            result = result_row(
                p,
                outcomes[p.row_number],
                load_id=load_id,
                table=table_name,
                job_id=job_id,
                written_at=written_at,
            )
            records.append(
                {
                    "result": result,
                    "error": error_row(result, p) if result["status"] == "error" else None,
                    "plan": plan_row_record(p, load_id=load_id, table=table_name, job_id=job_id)
                    if options.dry_run and p.is_valid
                    else None,
                }
            )
        return records

    def _check_own_markers(
        self,
        client: Bitrix24Client,
        target: WriteTarget,
        planned: Sequence[PlannedRow],
        maybe_sent: set[int],
    ) -> list[PlannedRow]:
        """Look up the user's own markers of adds before their first send (one batch request per chunk).

        A marker already on the portal would later be "found" after an unknown outcome whether or not the
        add landed, so that add is rejected now. Rows that may have been sent before passed this check before
        they went in flight; key markers were looked up as upsert keys and generated ones are unique.
        """
        # Supplied markers all live in the target's marker field (plan_row), so one look-up covers them.
        fresh = [
            p
            for p in planned
            if p.is_valid and p.operation == "add" and p.marker_supplied and p.row_number not in maybe_sent
        ]
        markers = [p.marker for p in fresh if p.marker is not None]
        field_name = next((p.marker_field for p in fresh if p.marker_field is not None), None)
        if field_name is None or not markers:
            return list(planned)
        return reject_existing_markers(planned, self.lookup(client, target, field_name, markers))

    def _send(
        self, client: Bitrix24Client, target: WriteTarget, valid: Sequence[PlannedRow], maybe_sent: set[int]
    ) -> dict[int, Outcome]:
        """Send the valid rows of a chunk as v2 batches (halt=0) until every row has a known outcome."""
        outcomes: dict[int, Outcome] = {}
        uncertain = {p.row_number for p in valid if p.row_number in maybe_sent}
        self._verify_adds(client, target, [p for p in valid if p.row_number in uncertain], outcomes)
        to_send = [p for p in valid if p.row_number not in outcomes]
        attempt = 0
        while to_send:
            attempt += 1
            try:
                batch = client.batch([(p.method, p.params) for p in to_send], halt_on_error=False)
            except Bitrix24Error as exc:
                raise _job_error(exc, f"batch write to {target.entity} failed") from exc
            retry: list[PlannedRow] = []
            for p, r in zip(to_send, batch.results, strict=True):
                if (
                    r.error is not None
                    and r.error.category in _REQUEST_LEVEL_CATEGORIES
                    and r.outcome != "unknown"
                ):
                    # Auth and rate-limit failures concern the request, not the row: fail (or retry) the job,
                    # the in-flight checkpoint makes the next attempt verify what may have landed.
                    raise _job_error(r.error, f"batch write to {target.entity} failed")
                if r.outcome == "ok":
                    new_id = added_id(r.method, r.result) if p.operation == "add" else p.bitrix_id
                    outcomes[p.row_number] = Outcome("ok", new_id)
                elif r.outcome == "error":
                    code = r.error.code if r.error is not None else ""
                    text = r.error.description if r.error is not None else "unknown error"
                    if (
                        p.operation == "delete"
                        and p.row_number in uncertain
                        and code.upper() in NOT_FOUND_CODES
                    ):
                        # The lost attempt deleted it (documented in the README).
                        outcomes[p.row_number] = Outcome("ok", p.bitrix_id)
                    else:
                        outcomes[p.row_number] = Outcome("error", None, code, mask(text))
                else:
                    # "unknown": it may have been applied; "not_executed": it was not. Both go round again,
                    # adds only after their markers were looked up.
                    if r.outcome == "unknown":
                        uncertain.add(p.row_number)
                    retry.append(p)
            if retry and attempt >= self.options.max_send_attempts:
                raise DestinationTransientException(
                    f"bitrix24 destination: {len(retry)} writes to {target.entity} still have no known outcome "
                    f"after {attempt} attempts; the job will be retried and will verify them first"
                )
            self._verify_adds(client, target, [p for p in retry if p.row_number in uncertain], outcomes)
            to_send = [p for p in retry if p.row_number not in outcomes]
        return outcomes

    def _verify_adds(
        self,
        client: Bitrix24Client,
        target: WriteTarget,
        rows: Sequence[PlannedRow],
        outcomes: dict[int, Outcome],
    ) -> None:
        """Look up the markers of adds whose outcome is unknown; record found ones as ok (no resend)."""
        by_field: dict[str, list[PlannedRow]] = {}
        for p in rows:
            if p.operation == "add" and p.marker is not None and p.marker_field is not None:
                by_field.setdefault(p.marker_field, []).append(p)
        for field_name, group in by_field.items():
            found = self.lookup(client, target, field_name, [p.marker for p in group if p.marker is not None])
            for p in group:
                if p.marker in found:
                    outcomes[p.row_number] = Outcome("ok", found[p.marker][0])

    # --- progress, tallies, flush --------------------------------------------------------------------

    def _progress_bar(self, total: int, initial: int, table_name: str) -> Any:
        enabled = self.options.progress if self.options.progress is not None else sys.stderr.isatty()
        if not enabled:
            return None
        from tqdm.auto import tqdm

        return tqdm(
            total=total, initial=initial, unit="row", desc=f"bitrix24 {table_name}", dynamic_ncols=True
        )

    def _tally(self, load_id: str, table_name: str) -> _Tally:
        with self._lock:
            return self._tallies.setdefault(load_id, {}).setdefault(table_name, _Tally())

    @staticmethod
    def _count(tally: _Tally, records: Sequence[Mapping[str, Any]]) -> None:
        for record in records:
            tally.add(record["result"]["status"])

    def _forget(self, load_id: str) -> None:
        """Drop the metadata read for a load that is complete (a long-lived process runs many loads)."""
        with self._lock:
            for cache in (self._fields, self._directories):
                for cache_key in [k for k in cache if k[0] == load_id]:
                    del cache[cache_key]

    def flush(self, load_id: str) -> None:
        """Load the journals into ``results_destination``, print the summary, drop the journals.

        Besides `load_id`'s own journals this takes those that packages dlt aborted left behind
        (``abort_packages``, ``auto_abort_on_terminal_error``: dlt does not complete an aborted package, so
        its writes would never get their result rows otherwise). A pending package cannot have journals here:
        dlt loads packages in order and stops at the first that fails.
        """
        pipeline = dlt.current.pipeline()
        self._forget(load_id)
        root = Path(pipeline.working_dir) / JOURNAL_DIR
        directories = sorted(d for d in root.iterdir() if d.is_dir()) if root.exists() else []
        if not directories:
            return
        results: dict[str, list[dict[str, Any]]] = {}
        errors: list[dict[str, Any]] = []
        plans: list[dict[str, Any]] = []
        for directory in directories:
            own = results.setdefault(directory.name, [])
            for path in sorted(directory.glob("*.jsonl")):
                for record in _Journal(path).load().values():
                    own.append(_with_time(record["result"]))
                    if record.get("error"):
                        errors.append(_with_time(record["error"]))
                    if record.get("plan"):
                        plans.append(record["plan"])
        self._load_results(pipeline, [row for rows in results.values() for row in rows], errors, plans)
        for directory in directories:
            shutil.rmtree(directory, ignore_errors=True)
        for journal_load_id, rows in results.items():
            self._summarise(journal_load_id, rows)

    def _load_results(
        self,
        outer: Any,
        results: list[dict[str, Any]],
        errors: list[dict[str, Any]],
        plans: list[dict[str, Any]],
    ) -> None:
        options = self.options
        resources = [
            _result_resource(results, RESULTS_TABLE, _RESULT_COLUMNS),
            _result_resource(errors, ERRORS_TABLE, _ERROR_COLUMNS),
        ]
        if plans:
            resources.append(_result_resource(plans, PLAN_TABLE, _PLAN_COLUMNS))
        results_destination = options.results_destination or dlt.destinations.duckdb(
            os.path.abspath(f"{outer.pipeline_name}_results.duckdb")
        )
        failure: list[Exception] = []

        def run() -> None:
            try:
                inner = dlt.pipeline(
                    pipeline_name=f"{outer.pipeline_name}_bitrix24_results",
                    pipelines_dir=outer.pipelines_dir,
                    destination=results_destination,
                    dataset_name=options.results_dataset_name,
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

    def _summarise(self, load_id: str, results: Sequence[Mapping[str, Any]]) -> None:
        tallies = self._tallies.pop(load_id, {})
        by_table: dict[str, _Tally] = {}
        for row in results:
            by_table.setdefault(str(row["table_name"]), _Tally()).add(str(row["status"]))
        for table_name, t in sorted(by_table.items()):
            live = tallies.get(table_name, _Tally())
            planned = f", {t.planned} planned (dry run)" if t.planned else ""
            line = (
                f"bitrix24 destination: {table_name}: {t.rows} rows, {t.ok} ok, {t.errors} errors{planned}, "
                f"{live.requests} requests, {live.seconds:.1f} s (load {load_id})"
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


def _read_all(client: Bitrix24Client, calls: Sequence[tuple[str, dict[str, Any]]], what: str) -> list[Any]:
    """The results of read commands, batched 50 to a request; any failed command fails the job."""
    try:
        batch = client.batch_by_chunk(calls, halt_on_error=False)
    except Bitrix24Error as exc:
        raise _job_error(exc, what) from exc
    for r in batch.results:
        if r.error is not None:
            raise _job_error(r.error, what)
        if not r.ok:
            raise DestinationTransientException(f"bitrix24 destination: {what}: command {r.key} was not run")
    return [r.result for r in batch.results]


def _job_error(exc: Bitrix24Error, what: str) -> Exception:
    """dlt retries transient job errors and fails terminal ones; map a client error to the right kind."""
    text = mask(f"bitrix24 destination: {what}: {exc}")
    if exc.permanent or exc.category == "auth":
        return DestinationTerminalException(text)
    return DestinationTransientException(text)


# --- dlt adapter -------------------------------------------------------------------------------------------
#
# The results are flushed when dlt completes a load package. dlt 1.31 has no public hook for that moment:
#
# * the @dlt.destination callable sees one job at a time and cannot tell the last one (dlt may retry jobs);
# * trace and collector callbacks (dlt.pipeline.trace.TRACKING_MODULES, Collector.on_end_trace_step) run after
#   the load step and swallow their exceptions (suppress_and_warn), so a failed flush would go unnoticed;
# * a wrapper around pipeline.run() would miss packages that a plain pipeline.run() / pipeline.load() resumes.
#
# The loader calls the job client's complete_load(load_id) once per package, after every job completed and
# before the package is marked loaded; an exception there leaves the package pending, and the next run calls
# it again. So the flush hooks in there, by subclassing dlt's custom-destination factory and job client
# (dlt.destinations.impl.destination.*, not public API). Everything that depends on them is in this section;
# _check_dlt_internals() refuses to build the destination if they change, and
# tests/destination/test_dlt_adapter.py pins the behaviour the flush relies on.

_DLT_INTERNALS: Final = (
    (_CustomDestinationFactory, "client_class", property),
    (_CustomDestinationClient, "complete_load", FunctionType),
    (_CustomDestinationClient, "__init__", FunctionType),
)


def _check_dlt_internals() -> None:
    """Fail loudly (instead of never flushing the results) when dlt changed what the adapter overrides."""
    missing = [
        f"{owner.__module__}.{owner.__qualname__}.{name}"
        for owner, name, kind in _DLT_INTERNALS
        if not isinstance(inspect.getattr_static(owner, name, None), kind)
    ]
    if missing:
        raise RuntimeError(
            f"bitrix24 destination: dlt {dlt.__version__} no longer has {', '.join(missing)}, which the "
            "destination hooks to record its write results (it was built against dlt 1.31)"
        )


class _CompletingClient(_CustomDestinationClient):
    """dlt's custom-destination job client that also runs ``on_load_complete(load_id)`` when a load ends."""

    on_load_complete: ClassVar[Callable[[str], None]]

    def complete_load(self, load_id: str) -> None:
        super().complete_load(load_id)
        type(self).on_load_complete(load_id)


class _CompletingFactory(_CustomDestinationFactory):
    """dlt's custom-destination factory whose job client runs a completion hook (see the section comment).

    It keeps the base class's ``__init__``: dlt reads the factory's options from that signature.
    """

    _client_class: type[_CompletingClient]

    @property
    def client_class(self) -> type[_CustomDestinationClient]:
        return self._client_class


def _completing_destination(
    destination_callable: Callable[..., None], on_load_complete: Callable[[str], None], **kwargs: Any
) -> Destination[Any, Any]:
    """What ``@dlt.destination(**kwargs)`` builds from `destination_callable`, plus a call to
    ``on_load_complete(load_id)`` when dlt completes a load package."""
    _check_dlt_internals()
    factory = _CompletingFactory(destination_callable=destination_callable, **kwargs)
    # A client class per factory: dlt builds the job client from the class alone (Destination.client()).
    factory._client_class = type(
        "_Bitrix24JobClient", (_CompletingClient,), {"on_load_complete": staticmethod(on_load_complete)}
    )
    return factory


def bitrix24_destination(
    webhook_url: str | None = None,
    *,
    results_destination: Any = None,
    results_dataset_name: str = "bitrix24_writes",
    entity: str | None = None,
    key: str | None = None,
    dry_run: bool = False,
    marker_field: str | None = None,
    progress: bool | None = None,
    timeout: float = 30.0,
    rate_limit: Any = "default",
    operating_limit: float | None = 480.0,
    verify: bool | str = True,
    name: str = "bitrix24",
) -> Destination[Any, Any]:
    """A dlt destination that writes rows to Bitrix24 and records one result row per input row.

    Args:
        webhook_url: incoming webhook URL (``https://<portal>/rest/<user>/<code>/``). When None it is read from
            dlt secrets: ``[destination.bitrix24] webhook_url = "..."`` (section named after `name`).
        results_destination: any dlt destination for ``bitrix24_write_results`` / ``bitrix24_write_errors``
            (and ``bitrix24_write_plan`` on dry runs); default a DuckDB file ``<pipeline>_results.duckdb`` in
            the current directory.
        results_dataset_name: dataset (schema) of the result tables.
        entity: entity to write (``leads``, ``deals``, ``contacts``, ``companies``, ``tasks``); default the
            table name of each load.
        key: upsert key column (e.g. ``originId``): rows without ``id`` are looked up by it first and become
            updates when found, adds otherwise.
        dry_run: validate and record the plan (what would be sent) without writing to Bitrix24.
        marker_field: field stamped with the idempotency marker on adds (default ``xmlId``, tasks ``XML_ID``).
        progress: show a tqdm progress bar; default only when stderr is a terminal.
        timeout: HTTP timeout of one request, seconds.
        rate_limit: client limiter (``"default"`` = 50 burst / 2 per s, ``"enterprise"``, a ``RateLimit`` or
            None to disable).
        operating_limit: per-method operating budget, seconds per 10 minutes (§6.1); None disables.
        verify: TLS verification (True, False or a CA bundle path).
        name: dlt destination name (also the config section).

    Returns:
        A dlt destination to pass to ``dlt.pipeline(destination=...)``.
    """
    options = DestinationOptions(
        entity=entity,
        key=key,
        dry_run=dry_run,
        marker_field=marker_field,
        progress=progress,
        timeout=timeout,
        rate_limit=rate_limit,
        operating_limit=operating_limit,
        verify=verify,
        results_destination=results_destination,
        results_dataset_name=results_dataset_name,
    )
    pusher = _Pusher(options)

    def bitrix24(items: Any, table: Any, webhook_url: TSecretStrValue = dlt.secrets.value) -> None:
        pusher.push_file(str(items), table, str(webhook_url))

    config: dict[str, Any] = {} if webhook_url is None else {"webhook_url": webhook_url}
    return _completing_destination(
        bitrix24,
        pusher.flush,
        destination_name=name,
        batch_size=0,  # one call per load job file: the job reads, numbers and checkpoints rows itself
        naming_convention="direct",  # keep Bitrix spellings (STAGE_ID, ufCrm_1) as they are
        skip_dlt_columns_and_tables=True,
        max_table_nesting=0,
        loader_parallelism_strategy="sequential",  # one portal, one limiter: parallel jobs gain nothing
        **config,
    )
