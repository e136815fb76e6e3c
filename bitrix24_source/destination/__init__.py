"""The Bitrix24 dlt destination, ``bitrix24_destination``: builds it from the modules below; no I/O of its own.

Dataframes / records -> v2 batch writes -> per-row results in a warehouse:

```python
import dlt
from bitrix24_source import bitrix24_destination

pipeline = dlt.pipeline("deals_push", destination=bitrix24_destination(webhook_url=...))
pipeline.run(df, table_name="deals")      # then read bitrix24_write_results / bitrix24_write_errors
run_push(pipeline, df, table_name="deals")  # the same; a failed push raises PushFailedError: one line
```

How a load runs (one dlt load job per file of input rows; jobs run one after another), module by module:

1. :mod:`.job`: the job reads its file (parquet for dataframes/arrow, typed jsonl for records; reading the
   file is :mod:`.dlt_adapter`'s; rows wrapped by :func:`.rows.bitrix24_rows` are decoded there) and numbers
   the rows.
2. Pre-flight, the same for dry and real runs (:mod:`.portal`): the field metadata, the records the rows'
   ids name (existence, current pipeline and the fields the rows fill in, one request per 2,500 ids; an
   update the record already holds is ``already_applied``), and the crm.status directories
   the values need. Then :mod:`.plan` plans every row of the file: a command, a row error, or "already on
   the portal". Every add carries a marker in ``originId`` (invoices and smart processes ``xmlId``, tasks
   ``XML_ID``): the ``key=`` value, the row's own value, or ``b24dlt:<hex>`` derived from the row's content
   and its occurrence number; the markers are looked up (2,500 per request) and adds already there are
   ``already_applied``. Deal product rows carry no marker: :mod:`.productrows` matches their adds with the
   deal's rows.
3. :mod:`.portal` sends the rest in chunks of 50 as v2 batches with ``halt=0`` (§4.2), with a checkpoint
   around each batch. Outcome unknown (the client reports ``outcome="unknown"`` after a timeout/reset,
   §6.6; or a resumed in-flight row), or an error that does not prove the command did not run: the row is
   checked on the portal before anything is resent or recorded (adds by marker, updates and deletes by
   reading the record back), so an add is never duplicated. Configuration, authentication and scope errors
   and an unreachable portal are terminal (one line, :class:`.dlt_adapter.JobFailedError`): rows in flight
   are checked on the portal, every other row without an outcome gets ``LOAD_ABORTED``, and dlt aborts the
   package (:func:`.dlt_adapter.abort_on_terminal_error`), so nothing is replayed by the next run.
   :func:`.run.run_push` raises that line as :class:`.run.PushFailedError`.
4. :mod:`.results` and :mod:`.journal`: each row's outcome is appended (fsync) to the job's journal. When dlt
   completes the load package, the journals are flushed to ``results_destination`` by a second dlt pipeline,
   a one-line summary is printed, and the journals are removed. dlt has no public hook for that moment:
   :mod:`.dlt_adapter` adds one. :func:`.results.last_results` reads them back as DataFrames.
"""

from __future__ import annotations

from typing import Any

import dlt
from dlt.common.destination import Destination
from dlt.common.typing import TSecretStrValue

from bitrix24_source.destination.dlt_adapter import completing_destination
from bitrix24_source.destination.job import LoadJob, complete_aborted_loads
from bitrix24_source.destination.options import DestinationOptions
from bitrix24_source.destination.portal import PortalCache
from bitrix24_source.destination.results import PushResults, Tallies, flush, last_results
from bitrix24_source.destination.rows import bitrix24_rows
from bitrix24_source.destination.run import PushFailedError, run_push

__all__ = [
    "PushFailedError",
    "PushResults",
    "bitrix24_destination",
    "bitrix24_rows",
    "last_results",
    "run_push",
]


def bitrix24_destination(
    webhook_url: str | None = None,
    *,
    results_destination: Any = None,
    results_dataset_name: str = "bitrix24_writes",
    entity: str | None = None,
    key: str | None = None,
    allow_duplicates: bool = False,
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
        entity: entity to write (``leads``, ``deals``, ``contacts``, ``companies``, ``quotes``, ``invoices``,
            ``spa_<entityTypeId>``, ``tasks``, ``deal_products``); default the table name of each load.
        key: upsert key column (e.g. ``originId``): rows without ``id`` are looked up by it first and become
            updates when found, adds otherwise.
        allow_duplicates: add rows again even when their markers are already on the portal (a re-run then
            adds again, on purpose); by default such rows are ``already_applied`` and not sent.
        dry_run: validate and record the plan (what would be sent) without writing to Bitrix24.
        marker_field: field stamped with the idempotency marker on adds (default ``originId`` for leads,
            deals, contacts and companies, ``xmlId`` for invoices and smart processes, tasks ``XML_ID``; quotes
            have none: their adds need `key` or this option).
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
        allow_duplicates=allow_duplicates,
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
    cache = PortalCache(options)
    tallies = Tallies()

    def bitrix24(items: Any, table: Any, webhook_url: TSecretStrValue = dlt.secrets.value) -> None:
        LoadJob(str(items), str(table["name"]), options).run(cache, str(webhook_url), tallies)

    def complete(load_id: str) -> None:
        cache.forget(load_id)
        complete_aborted_loads(load_id, tallies, dry_run=options.dry_run)
        flush(options.results_destination, options.results_dataset_name, tallies)

    config: dict[str, Any] = {} if webhook_url is None else {"webhook_url": webhook_url}
    destination = completing_destination(
        bitrix24,
        complete,
        destination_name=name,
        batch_size=0,  # one call per load job file: the job reads, numbers and checkpoints rows itself
        naming_convention="direct",  # keep Bitrix spellings (STAGE_ID, ufCrm_1) as they are
        skip_dlt_columns_and_tables=True,
        max_table_nesting=0,
        loader_parallelism_strategy="sequential",  # one portal, one limiter: parallel jobs gain nothing
        **config,
    )
    destination.bitrix24_options = options  # type: ignore[attr-defined]  # read by last_results()
    return destination
