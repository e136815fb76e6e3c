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
from collections.abc import Mapping
from typing import Any

import dlt
from dlt.common.destination.exceptions import DestinationTerminalException

from bitrix24_source.client.batch import MAX_BATCH, chunked
from bitrix24_source.destination.directories import needed_directories
from bitrix24_source.destination.dlt_adapter import commit_destination_state, job_file_id, read_rows
from bitrix24_source.destination.journal import Journal, JournalRecord, journal_path
from bitrix24_source.destination.options import DestinationOptions
from bitrix24_source.destination.plan import Outcome, PlanOptions, plan_chunk
from bitrix24_source.destination.portal import Portal, PortalCache
from bitrix24_source.destination.results import JobIdentity, Tallies, journal_records
from bitrix24_source.destination.targets import WriteOptionError, check_write_options, write_target
from bitrix24_source.fields import EntityFields


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
            raise DestinationTerminalException(str(exc)) from exc
        working_dir = dlt.current.pipeline().working_dir
        self.journal = Journal(journal_path(working_dir, load_id, table_name, self.identity.job_id))
        self.checkpoint: dict[str, Any] = dlt.current.destination_state().setdefault(
            f"bitrix24:{table_name}.{self.identity.job_id}", {"inflight": [], "done": 0}
        )

    def run(self, cache: PortalCache, webhook_url: str, tallies: Tallies) -> None:
        """Write the rows the journal does not hold yet; rows left in flight are verified before a resend."""
        load_id, table_name = self.identity.load_id, self.identity.table
        done = self.journal.load()
        maybe_sent = {int(n) for n in self.checkpoint.get("inflight", [])} - done.keys()
        rows = read_rows(self.path)
        portal = cache.portal(webhook_url, self.target)
        tally = tallies.of(load_id, table_name)
        requests_before = portal.client.stats.http_requests
        started = time.monotonic()
        bar = None
        try:
            fields = cache.fields(portal, load_id)
            try:
                check_write_options(self.target, fields, self.options.key)
            except WriteOptionError as exc:
                raise DestinationTerminalException(str(exc)) from exc
            directories = (
                cache.directories(portal, load_id, needed_directories(fields, rows))
                if self.target.family == "crm_item"
                else None
            )
            plan_options = PlanOptions(
                key=self.options.key,
                marker_prefix=f"b24w:{load_id}:{self.identity.job_id}",
                directories=directories,
            )
            bar = self._progress_bar(len(rows), len(done))
            for chunk in chunked([n for n in range(len(rows)) if n not in done], MAX_BATCH):
                records = self._write_chunk(
                    portal, fields, plan_options, {n: rows[n] for n in chunk}, maybe_sent
                )
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

    def _write_chunk(
        self,
        portal: Portal,
        fields: EntityFields,
        plan_options: PlanOptions,
        rows: Mapping[int, Mapping[str, Any]],
        maybe_sent: set[int],
    ) -> list[JournalRecord]:
        """Plan, send, record: the journal records of one chunk."""
        planned = plan_chunk(rows, self.target, fields, plan_options, portal.lookup, maybe_sent)
        valid = [p for p in planned if p.is_valid]
        outcomes: dict[int, Outcome] = {}
        if self.options.dry_run:
            outcomes = {p.row_number: Outcome("planned") for p in valid}
        elif valid:
            self.checkpoint["inflight"] = [p.row_number for p in valid]
            commit_destination_state()
            outcomes = portal.send(valid, maybe_sent)
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
