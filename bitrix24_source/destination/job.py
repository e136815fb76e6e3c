"""One load job: a file of input rows written to Bitrix24 chunk by chunk, with checkpoints; I/O through its parts.

A chunk's rows travel one way: :func:`~.plan.plan_chunk` decides what to send, :meth:`~.portal.Portal.send`
sends the valid rows until each has a known outcome, :func:`~.results.journal_records` turns the outcomes into
result rows, and the journal appends them.

Checkpoint: before a batch is sent, its row numbers are committed to dlt's destination state (the load
package state) as "in flight"; after the outcomes are appended (fsync) to the job's journal, the in-flight list
is cleared. A job that dlt retries, or a pipeline that is killed and run again, skips rows the journal already
holds and treats in-flight rows as "outcome unknown" (verified before any resend: :mod:`.portal`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import dlt
from dlt.common.destination.exceptions import DestinationTerminalException, DestinationTransientException

from bitrix24_source.client.batch import MAX_BATCH, chunked
from bitrix24_source.destination.directories import needed_directories
from bitrix24_source.destination.dlt_adapter import (
    JobFailedError,
    commit_destination_state,
    job_file_id,
    read_rows,
)
from bitrix24_source.destination.journal import (
    Journal,
    JournalRecord,
    journal_path,
    orphaned_loads,
    unflushed_loads,
)
from bitrix24_source.destination.options import DestinationOptions
from bitrix24_source.destination.plan import (
    NOT_FOUND,
    Outcome,
    PlannedRow,
    PlanOptions,
    aborted_row,
    as_id_or_none,
    plan_rows,
    row_id,
)
from bitrix24_source.destination.portal import Portal, PortalCache
from bitrix24_source.destination.productrows import ProductRowsPortal
from bitrix24_source.destination.results import JobIdentity, Tallies, journal_records
from bitrix24_source.destination.rows import ROW_COLUMN, decode_row, is_encoded
from bitrix24_source.destination.targets import WriteOptionError, check_write_options, write_target
from bitrix24_source.errors import Bitrix24Error


class LoadJob:
    """One load job file: its rows, its journal, its checkpoint in dlt's destination state, its progress."""

    def __init__(self, path: str, table_name: str, options: DestinationOptions) -> None:
        self.path = path
        self.options = options
        load_id = str(dlt.current.load_package_state()["load_id"])
        self.identity = JobIdentity(load_id=load_id, table=table_name, job_id=job_file_id(path))
        try:
            self.target = write_target(options.entity or table_name, options.marker_field)
        except ValueError as exc:
            raise JobFailedError(str(exc)) from exc
        working_dir = dlt.current.pipeline().working_dir
        self.journal = Journal(journal_path(working_dir, load_id, table_name, self.identity.job_id))
        state = dlt.current.destination_state()
        key = f"bitrix24:{table_name}.{self.identity.job_id}"
        self.first_run = key not in state
        self.checkpoint: dict[str, Any] = state.setdefault(key, {"inflight": [], "done": 0})
        self.portal: Portal | None = None
        self.planned: dict[int, PlannedRow] = {}

    def run(self, cache: PortalCache, webhook_url: str, tallies: Tallies) -> None:
        """Plan every row, then write the rows the journal does not hold yet, chunk by chunk; rows left in
        flight are verified before a resend."""
        done = self.journal.load()
        maybe_sent = {int(n) for n in self.checkpoint.get("inflight", [])} - done.keys()
        rows, indexes = input_rows(read_rows(self.path))
        try:
            self._check_journal(done)
            self._check_orphans()
            if self.first_run:
                commit_destination_state()  # from now on, a journal without this checkpoint means a lost state
            self._run(cache, webhook_url, tallies, rows, indexes, done, maybe_sent)
        except DestinationTerminalException as exc:
            # The load fails for good: the package is aborted (dlt_adapter.abort_on_terminal_error), so
            # nothing stays pending to be replayed; the rows without an outcome get theirs now.
            self._record_abort(rows, indexes, exc, maybe_sent, tallies)
            raise

    def _run(
        self,
        cache: PortalCache,
        webhook_url: str,
        tallies: Tallies,
        rows: list[dict[str, Any]],
        indexes: dict[int, Any],
        done: Mapping[int, JournalRecord],
        maybe_sent: set[int],
    ) -> None:
        load_id, table_name = self.identity.load_id, self.identity.table
        portal = cache.portal(webhook_url, self.target)
        if self.target.family == "product_rows":
            portal = ProductRowsPortal(portal)
        self.portal = portal
        tally = tallies.of(load_id, table_name)
        requests_before = portal.client.stats.http_requests
        started = time.monotonic()
        bar = None
        try:
            fields = cache.fields(portal, load_id)
            try:
                check_write_options(self.target, fields, self.options.key)
            except WriteOptionError as exc:
                raise JobFailedError(str(exc)) from exc
            # Pre-flight, shared by dry and real runs: do the ids exist, and in which pipeline are they now.
            ids = {n: i for n, row in enumerate(rows) if (i := row_id(row)) is not None}
            columns = {str(c) for n in ids for c in rows[n]}
            existing = portal.read_existing(list(ids.values()), fields, columns)
            categories = {
                n: category
                for n, i in ids.items()
                if (category := as_id_or_none((existing or {}).get(i, {}).get("categoryId"))) is not None
            }
            directories = (
                cache.directories(portal, load_id, needed_directories(fields, rows, categories))
                if self.target.family == "crm_item"
                else None
            )
            plan_options = PlanOptions(
                key=self.options.key,
                existing=existing,
                directories=directories,
                allow_duplicates=self.options.allow_duplicates,
                salt=load_id if self.options.allow_duplicates else "",
            )
            planned = plan_rows(
                dict(enumerate(rows)), self.target, fields, plan_options, portal.lookup, indexes
            )
            if isinstance(portal, ProductRowsPortal) and not self.options.allow_duplicates:
                planned = portal.recognise_adds(planned)  # product rows carry no marker: .productrows
            planned = [_deleted_by_a_lost_attempt(p) if p.row_number in maybe_sent else p for p in planned]
            self.planned = {p.row_number: p for p in planned}
            bar = self._progress_bar(len(rows), len(done))
            for chunk in chunked([p for p in planned if p.row_number not in done], MAX_BATCH):
                records = self._write_chunk(portal, chunk, maybe_sent)
                self.journal.append(records)
                self.checkpoint["inflight"] = []
                self.checkpoint["done"] = int(self.checkpoint.get("done", 0)) + len(chunk)
                commit_destination_state()
                tally.count(records)
                if bar is not None:
                    bar.update(len(chunk))
                    bar.set_postfix(
                        errors=tally.errors,
                        requests=tally.requests + portal.client.stats.http_requests - requests_before,
                    )
        finally:
            tally.requests += portal.client.stats.http_requests - requests_before
            tally.seconds += time.monotonic() - started
            if bar is not None:
                bar.close()

    def _check_journal(self, done: Mapping[int, JournalRecord]) -> None:
        """Stop when the journal and the load package state disagree about what was written.

        Every chunk is appended (fsync) to the journal before the state counts it done, so fewer journal
        records mean the journal was removed or truncated: the rows it lost cannot be told from rows never
        sent, and resending them blindly is what the journal exists to prevent. The checkpoint is committed
        before the first journal record, so a journal with records and no checkpoint means the package state
        was removed or reset: the rows that were in flight are not known any more.
        """
        recorded = int(self.checkpoint.get("done", 0))
        where = f"{self.identity.table} (load {self.identity.load_id})"
        if len(done) < recorded:
            raise JobFailedError(
                f"bitrix24 destination: the journal {self.journal.path} holds {len(done)} row outcomes, but "
                f"the load package state counts {recorded} rows of {where} as written: the journal was removed "
                "or truncated. The load is aborted (rows without an outcome are recorded LOAD_ABORTED); push "
                "the frame again: adds already on the portal are found by their markers and reported "
                "already_applied, updates are sent again"
            )
        if done and self.first_run:
            raise JobFailedError(
                f"bitrix24 destination: the journal {self.journal.path} holds {len(done)} row outcomes of "
                f"{where}, but the load package state has no checkpoint for them: the package state was "
                "removed or reset, so the rows that were being sent are not known. The load is aborted (rows "
                "without an outcome are recorded LOAD_ABORTED); push the frame again without "
                "allow_duplicates: adds already on the portal are found by their markers and reported "
                "already_applied"
            )

    def _check_orphans(self) -> None:
        """Stop once when the journal of an earlier load outlived its package (dropped or deleted): that load's
        rows without a recorded outcome may have been written, and only a push of its frame can tell."""
        pipeline = dlt.current.pipeline()
        known = {self.identity.load_id}
        known.update(pipeline.list_normalized_load_packages())
        known.update(pipeline.list_completed_load_packages())
        orphans = orphaned_loads(pipeline.working_dir, known)
        if orphans:
            count = sum(len(Journal(path).load()) for d in orphans for path in d.glob("*.jsonl"))
            raise JobFailedError(
                f"bitrix24 destination: the load package of load {', '.join(d.name for d in orphans)} is gone "
                f"(dropped or deleted) but its journal in {orphans[0].parent} holds {count} row outcomes: the "
                "rows of that load without an outcome may have been written. This load is aborted; push that "
                "frame again (without allow_duplicates): adds already on the portal are found by their markers "
                "and reported already_applied. The outcomes recorded so far are loaded with the next completed "
                "load"
            )

    def _record_abort(
        self,
        rows: Sequence[Mapping[str, Any]],
        indexes: Mapping[int, Any],
        exc: Exception,
        maybe_sent: set[int],
        tallies: Tallies,
    ) -> None:
        """Journal a result for every row that has none: the load was aborted before its outcome was known.

        Rows that were being sent (their answer was lost, or the job failed before it came) are checked on
        the portal first: one that is there is ``ok``. Only when the portal cannot be asked either are they
        recorded ``LOAD_ABORTED`` with a note to check them there.
        """
        done = self.journal.load()
        inflight = ({int(n) for n in self.checkpoint.get("inflight", [])} | maybe_sent) - done.keys()
        applied, checked = self._applied(inflight)
        reason = str(exc)
        planned: list[PlannedRow] = []
        for n, row in enumerate(rows):
            if n in done or n in applied:
                continue
            if n not in inflight:
                state = "not sent"
            elif checked:
                state = "sent, and not applied on the portal (checked)"
            else:
                state = "it was being sent: check it on the portal"
            planned.append(aborted_row(n, row, indexes.get(n), f"{state}: the load was aborted: {reason}"))
        verified = [self.planned[n] for n in sorted(applied)]
        records = journal_records(verified, applied, self.identity, dry_run=self.options.dry_run)
        records += journal_records(planned, {}, self.identity, dry_run=self.options.dry_run)
        self.journal.append(sorted(records, key=lambda r: int(r["result"]["row_number"])))
        tallies.of(self.identity.load_id, self.identity.table).count(records)

    def _applied(self, inflight: set[int]) -> tuple[dict[int, Outcome], bool]:
        """The in-flight rows the portal shows applied, and whether the portal could be asked at all."""
        rows = [self.planned[n] for n in sorted(inflight) if n in self.planned and self.planned[n].to_send]
        if not rows or self.portal is None:
            return {}, False
        try:
            return self.portal.verify(rows), True
        except (Bitrix24Error, DestinationTerminalException, DestinationTransientException):
            return {}, False  # the portal cannot be asked either: the rows keep the note to check them

    def _write_chunk(
        self, portal: Portal, planned: Sequence[PlannedRow], maybe_sent: set[int]
    ) -> list[JournalRecord]:
        """Send the rows of one chunk that need sending; the journal records of all of them."""
        outcomes: dict[int, Outcome] = {
            # A marker found before sending: on the portal already (a re-run), or our own lost attempt.
            p.row_number: Outcome("ok" if p.row_number in maybe_sent else "already_applied", p.existing_id)
            for p in planned
            if p.is_valid and p.existing_id is not None
        }
        to_send = [p for p in planned if p.to_send]
        if self.options.dry_run:
            outcomes.update({p.row_number: Outcome("planned") for p in to_send})
        elif to_send:
            self.checkpoint["inflight"] = [p.row_number for p in to_send]
            commit_destination_state()
            try:
                portal.send(to_send, maybe_sent, outcomes)
            except Exception:
                # Keep what is known: the rows with an outcome are journaled (so neither a retry of the job
                # nor an abort resends or misreports them); the rest stay in flight.
                known = [p for p in planned if not p.is_valid or p.row_number in outcomes]
                self.journal.append(journal_records(known, outcomes, self.identity, dry_run=False))
                raise
        return journal_records(planned, outcomes, self.identity, dry_run=self.options.dry_run)

    def _progress_bar(self, total: int, initial: int) -> Any:
        enabled = self.options.progress if self.options.progress is not None else sys.stderr.isatty()
        if not enabled:
            return None
        from tqdm.auto import tqdm

        return tqdm(
            total=total,
            initial=initial,
            unit="row",
            desc=f"bitrix24 {self.identity.table}",
            dynamic_ncols=True,
        )


def complete_aborted_loads(current_load_id: str, tallies: Tallies, *, dry_run: bool) -> None:
    """Give every row of the packages that were aborted from outside the destination (``abort_packages``)
    its result row before their journals are flushed.

    A package the destination aborts itself has all its rows journaled (:meth:`LoadJob._record_abort`). One
    that the user aborted while a job was pending has only the rows written so far; the rest are read from
    the package's own job files (dlt keeps an aborted package among the loaded ones) and recorded
    ``LOAD_ABORTED``.
    """
    pipeline = dlt.current.pipeline()
    completed = set(pipeline.list_completed_load_packages())
    for directory in unflushed_loads(pipeline.working_dir):
        load_id = directory.name
        if load_id == current_load_id or load_id not in completed:
            continue
        package = pipeline.get_load_package_info(load_id)
        for jobs in package.jobs.values():
            for job in jobs:
                parsed = job.job_file_info
                path = directory / f"{parsed.table_name}.{parsed.file_id}.jsonl"
                if not path.exists():
                    continue  # a job of the package that never started, or not this destination's table
                journal = Journal(path)
                done = journal.load()
                rows, indexes = input_rows(read_rows(job.file_path))
                missing = [
                    aborted_row(
                        n,
                        row,
                        indexes.get(n),
                        "the load package was aborted (abort_packages) before this row had a recorded outcome; "
                        "if it was being sent, push the frame again to settle it (adds already on the portal "
                        "are found by their markers)",
                    )
                    for n, row in enumerate(rows)
                    if n not in done
                ]
                identity = JobIdentity(load_id=load_id, table=parsed.table_name, job_id=parsed.file_id)
                records = journal_records(missing, {}, identity, dry_run=dry_run)
                journal.append(records)
                tallies.of(load_id, parsed.table_name).count(records)


def input_rows(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[int, Any]]:
    """The rows as the user wrote them, and their own index values when :func:`~.rows.bitrix24_rows` wrapped
    them (otherwise none: dlt does not carry a DataFrame's index)."""
    if not rows or not is_encoded(rows[0]):
        return list(rows), {}
    decoded: list[dict[str, Any]] = []
    indexes: dict[int, Any] = {}
    for n, row in enumerate(rows):
        values, index = decode_row(str(row[ROW_COLUMN]))
        decoded.append(values)
        indexes[n] = index
    return decoded, indexes


def _deleted_by_a_lost_attempt(planned: PlannedRow) -> PlannedRow:
    """A delete that was in flight when the run died and whose record is gone now: the lost attempt did it.

    The pre-flight finds the record missing (``NOT_FOUND``); a delete that was never sent gets that error,
    but this one may have run, and the record was there when it was planned the first time.
    """
    if planned.operation == "delete" and planned.error_code == NOT_FOUND and planned.key is not None:
        deleted = int(planned.key)
        return replace(
            planned, error_code=None, error_description=None, bitrix_id=deleted, existing_id=deleted
        )
    return planned
