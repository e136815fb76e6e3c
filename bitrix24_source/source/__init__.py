"""The `bitrix24` dlt source and its resources, generated from the EntitySpec data (I/O through reader.py).

How it reads:

* CRM entities and users: ID-keyset pages chained 50 to a v2 batch, up to 2,500 rows per HTTP request
  (keyset.py; the commands are built in queries.py).
* Deal product rows: a transformer over each page of deals, `crm.item.productrow.list` per group of deal
  ids, batched, `>id` continuation for full pages (keyset.py).
* Tasks and task results: several pages of tasks per v3 batch with the results of those tasks in the same
  request (`$refArray`, §5.6), paged by id or newest-first (task_pages.py).
* Incremental: `updatedTime` (CRM) and `changed` (tasks) through `dlt.sources.incremental` with a lag window,
  merged on `id`, the cursor capped at the scan's start (reader.py). `detect_deletes=True` adds an id-only
  keyset scan and hard-deletes rows the portal no longer has, and the product rows of deals it no longer
  has (deletes.py).

Column types come from the portal's field lists (metadata.py, schema.py). `resource_stats` reads what each
resource cost from the pipeline state.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dlt
from dlt.common.exceptions import (
    PipelineStateNotAvailable,
    ResourceNameNotAvailable,
    SourceSectionNotAvailable,
)
from dlt.common.schema.typing import TColumnSchema
from dlt.extract.exceptions import CurrentSourceNotAvailable
from dlt.extract.resource import DltResource
from dlt.sources import DltSource

from bitrix24_source.client import Bitrix24Client, OAuthTokens
from bitrix24_source.errors import ConfigError
from bitrix24_source.fields import FieldMeta
from bitrix24_source.source.credentials import Bitrix24OAuthCredentials
from bitrix24_source.source.deletes import DealIds, product_row_tombstones, scan_deletes, tombstone_pages
from bitrix24_source.source.keyset import keyset_pages, partitioned_pages, product_row_pages
from bitrix24_source.source.metadata import fetch_metadata
from bitrix24_source.source.queries import format_since
from bitrix24_source.source.reader import PortalReader, ResourceStats, RunStats
from bitrix24_source.source.schema import (
    FIELD_DEFINITION_COLUMNS,
    RowMapper,
    column_hints,
    field_definition_rows,
)
from bitrix24_source.source.settings import (
    BATCH_LIMIT,
    CRM_ENTITIES,
    DEAL_PRODUCTS,
    DEALS,
    DEFAULT_LAG_SECONDS,
    DELETED_COLUMN,
    FIELD_DEFINITIONS_TABLE,
    TASK_RESULTS,
    TASKS,
    USERS,
    EntitySpec,
)
from bitrix24_source.source.task_pages import read_task_pages, task_pager

logger = logging.getLogger(__name__)


_NO_BOUNDARY_DEDUP: tuple[str, ...] = ()
"""Incremental `primary_key=()`: without a lag, dlt drops a row whose cursor equals the stored value when it
saw the same key at that value, which loses a record edited twice within one second (`updatedTime` and
`changed` have 1 s resolution). Every table merges on `id`, so re-reading the boundary is harmless."""


def _hints(fields: Mapping[str, FieldMeta], *, detect_deletes: bool) -> dict[str, TColumnSchema]:
    columns = column_hints(fields)
    if detect_deletes:
        columns[DELETED_COLUMN] = {
            "name": DELETED_COLUMN,
            "data_type": "bool",
            "nullable": True,
            "hard_delete": True,
        }
    return columns


def _make_client(
    webhook_url: str | None,
    oauth: Bitrix24OAuthCredentials | None,
    *,
    rate_limit: Any,
    operating_limit: float | None,
    timeout: float,
    verify: bool | str,
    on_token_refresh: Callable[[OAuthTokens], None] | None,
) -> Bitrix24Client:
    if bool(webhook_url) == (oauth is not None):
        raise ConfigError(
            "configure exactly one of `webhook_url` (sources.bitrix24.webhook_url) or OAuth credentials "
            "(sources.bitrix24.oauth.*)"
        )
    return Bitrix24Client(
        webhook_url=webhook_url or None,
        oauth=oauth,
        timeout=timeout,
        rate_limit=rate_limit,
        operating_limit=operating_limit,
        verify=verify,
        on_token_refresh=on_token_refresh,
    )


@dlt.source(name="bitrix24", section="bitrix24", max_table_nesting=0)
def bitrix24_source(
    webhook_url: str | None = dlt.secrets.value,
    oauth: Bitrix24OAuthCredentials | None = None,
    lag_seconds: float = DEFAULT_LAG_SECONDS,
    detect_deletes: bool = False,
    partitions: int = 1,
    rate_limit: str | None = "default",
    operating_limit: float | None = 480.0,
    timeout: float = 30.0,
    verify: bool = True,
    ca_bundle: str | None = None,
    on_token_refresh: Callable[[OAuthTokens], None] | None = None,
) -> Any:
    """Bitrix24 -> warehouse.

    Resources (tables; primary key `id`, merge unless noted): `leads`, `deals`, `contacts`, `companies`
    (selected by default), `deal_products` (selected), `field_definitions` (replace, selected), `users`,
    `tasks`, `task_results` (select with `.with_resources(...)`).

    Args:
        webhook_url: incoming webhook URL, `https://<portal>/rest/<user id>/<code>/` (a secret).
        oauth: OAuth application credentials instead of a webhook.
        lag_seconds: incremental lag window: rows changed up to this many seconds before the last seen
            `updatedTime`/`changed` are read again (clock skew, late commits).
        detect_deletes: after each CRM table and users, scan the portal's ids (id only, 2,500 per request)
            and hard-delete warehouse rows whose id the portal no longer has; deal_products also loses the
            rows of deleted deals, and rows a deal read in this run no longer lists.
        partitions: read each CRM table as this many id ranges in parallel threads (the limiter is shared).
        rate_limit: `"default"` (burst 50, 2/s), `"enterprise"` (250, 5/s), or None / `"off"` (no client
            throttle).
        operating_limit: per-method operating-time budget in seconds per 10 minutes (§6.1), None = off.
        timeout: HTTP timeout in seconds.
        verify: verify TLS certificates.
        ca_bundle: path of a CA bundle for TLS verification (e.g. the sandbox's self-signed CA).
        on_token_refresh: OAuth only: called with the new `OAuthTokens` after every refresh. Bitrix24 rotates
            refresh tokens (the old one stops working), so persist them, e.g. with
            `bitrix24_source.source.credentials.save_tokens_to_toml(".dlt/secrets.toml")`.

    Returns:
        The dlt resources.
    """
    if partitions < 1:
        raise ConfigError(f"partitions must be >= 1, got {partitions}")
    client = _make_client(
        webhook_url,
        oauth,
        rate_limit=None if rate_limit in (None, "", "off", "none") else rate_limit,
        operating_limit=operating_limit,
        timeout=timeout,
        verify=ca_bundle or verify,
        on_token_refresh=on_token_refresh,
    )
    stats = RunStats()
    reader = PortalReader(client, stats)
    run = _Run(reader, stats, lag_seconds, detect_deletes, partitions)
    meta = fetch_metadata(reader)
    resources = [_crm_resource(spec, run, meta[spec.name]) for spec in CRM_ENTITIES]
    deals = resources[CRM_ENTITIES.index(DEALS)]
    resources.append(_deal_products_resource(deals, run, meta[DEAL_PRODUCTS.name]))
    resources.append(_users_resource(run, meta[USERS.name]))
    resources += _task_resources(reader, meta, lag_seconds, stats)
    resources.append(_field_definitions_resource(meta, stats))
    return resources


@dataclass(slots=True)
class _Run:
    """What the resources of one source instance share."""

    reader: PortalReader
    stats: RunStats
    lag_seconds: float
    detect_deletes: bool
    partitions: int
    deal_ids: DealIds = field(default_factory=DealIds)


def _crm_resource(spec: EntitySpec, run: _Run, fields: Mapping[str, FieldMeta]) -> DltResource:
    columns = _hints(fields, detect_deletes=run.detect_deletes)
    mapper = RowMapper(columns)
    reader, stats = run.reader, run.stats
    assert spec.cursor_field is not None
    cursor = spec.cursor_field

    def rows(
        updated: dlt.sources.incremental[Any] = dlt.sources.incremental(  # noqa: B008
            spec.cursor_field,
            initial_value=None,
            lag=run.lag_seconds,
            on_cursor_value_missing="include",
            primary_key=_NO_BOUNDARY_DEDUP,
        ),
    ) -> Iterator[list[dict[str, Any]]]:
        own = stats.reset(spec.name)
        reader.begin_scan(spec.name)
        if spec is DEALS:
            stats.reset(DEAL_PRODUCTS.name)
            run.deal_ids.put(None)
        since = format_since(updated.start_value)
        extra = {f">={spec.cursor_field}": since} if since is not None else None
        try:
            if run.partitions > 1:
                pages = partitioned_pages(reader, spec.name, spec, run.partitions, extra)
            else:
                pages = keyset_pages(
                    reader,
                    spec.name,
                    spec,
                    extra_filter=extra,
                    first_length=1 if since is not None else BATCH_LIMIT,
                )
            for page in pages:
                own.rows += len(page)
                kept = [row for row in page if not reader.after_scan_start(spec.name, row.get(cursor))]
                if kept:
                    yield [mapper(row) for row in kept]
            if run.detect_deletes:
                portal_ids, gone = scan_deletes(reader, spec)
                if spec is DEALS:
                    run.deal_ids.put(portal_ids)
                yield from tombstone_pages(gone, final_page=spec is DEALS)
        finally:
            _publish(spec.name, own)

    return dlt.resource(
        rows,
        name=spec.name,
        primary_key="id",
        write_disposition="merge",
        columns=columns,
        selected=spec.default,
    )


def _deal_products_resource(deals: DltResource, run: _Run, fields: Mapping[str, FieldMeta]) -> DltResource:
    columns = _hints(fields, detect_deletes=run.detect_deletes)
    mapper = RowMapper(columns)
    name = DEAL_PRODUCTS.name

    def product_rows(deal_page: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        own = run.stats.get(name)
        owner_ids = [int(d["id"]) for d in deal_page if not d.get(DELETED_COLUMN)]
        read_ids: set[int] = set()
        for page in product_row_pages(run.reader, name, owner_ids):
            own.rows += len(page)
            read_ids.update(int(row["id"]) for row in page)
            yield [mapper(row) for row in page]
        if run.detect_deletes:
            yield from product_row_tombstones(owner_ids, read_ids, run.deal_ids.take())
        _save_state(name, own)

    return dlt.transformer(
        product_rows,
        data_from=deals,
        name=name,
        primary_key="id",
        write_disposition="merge",
        columns=columns,
        selected=DEAL_PRODUCTS.default,
    )


def _users_resource(run: _Run, fields: Mapping[str, FieldMeta]) -> DltResource:
    columns = _hints(fields, detect_deletes=run.detect_deletes)
    columns.pop("ID", None)
    columns["id"] = {"name": "id", "data_type": "bigint", "nullable": False}
    mapper = RowMapper(columns)

    def users() -> Iterator[list[dict[str, Any]]]:
        # No incremental cursor for users: user.get documents no modification time to filter on. Its filter
        # takes the user.add fields (TIMESTAMP_X is not one), and its documented answer carries
        # `"TIMESTAMP_X": {}`, an unserialised object (DOCS api-reference/user/user-get.md, §7.5). Users are
        # few, so every run reads them all (2,500 per request) and merges on id.
        own = run.stats.reset(USERS.name)
        try:
            for page in keyset_pages(run.reader, USERS.name, USERS):
                own.rows += len(page)
                yield [mapper(_lower_id(row)) for row in page]
            if run.detect_deletes:
                yield from tombstone_pages(scan_deletes(run.reader, USERS)[1])
        finally:
            _publish(USERS.name, own)

    return dlt.resource(
        users, name=USERS.name, primary_key="id", write_disposition="merge", columns=columns, selected=False
    )


def _lower_id(row: dict[str, Any]) -> dict[str, Any]:
    """user.get rows carry `ID`; the table's primary key column is `id` like every other table."""
    row["id"] = row.pop("ID")
    return row


class _ResultStash:
    """Task results fetched with their tasks, waiting for the `task_results` transformer.

    Keyed by task id, so the hand-over does not depend on the order in which dlt runs the transformer.
    """

    def __init__(self) -> None:
        self._by_task: dict[int, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def put(self, tasks: Sequence[Mapping[str, Any]], results: Sequence[dict[str, Any]]) -> None:
        with self._lock:
            for task in tasks:
                self._by_task.setdefault(int(task["id"]), [])
            for row in results:
                self._by_task.setdefault(int(row["taskId"]), []).append(row)

    def take(self, task_ids: Sequence[int]) -> list[dict[str, Any]]:
        with self._lock:
            out: list[dict[str, Any]] = []
            for id_ in task_ids:
                out.extend(self._by_task.pop(id_, []))
            return out


def _task_select(fields: Mapping[str, FieldMeta]) -> list[str]:
    return list(fields) or ["id"]


def _selected(name: str) -> bool:
    try:
        return name in dlt.current.source().selected_resources
    except CurrentSourceNotAvailable:
        # a resource iterated directly, outside a pipeline: no transformer downstream can consume it
        return False


def _task_resources(
    reader: PortalReader,
    meta: Mapping[str, Mapping[str, FieldMeta]],
    lag_seconds: float,
    stats: RunStats,
) -> tuple[DltResource, DltResource]:
    task_columns = column_hints(meta[TASKS.name])
    result_columns = column_hints(meta[TASK_RESULTS.name])
    task_mapper = RowMapper(task_columns)
    result_mapper = RowMapper(result_columns)
    stash = _ResultStash()
    select = _task_select(meta[TASKS.name])
    changed_meta = meta[TASKS.name].get(TASKS.cursor_field or "changed")
    changed_filterable = bool(changed_meta is not None and changed_meta.filterable)
    results_select = list(meta[TASK_RESULTS.name]) or None
    assert TASKS.cursor_field is not None
    cursor = TASKS.cursor_field

    def tasks(
        changed: dlt.sources.incremental[Any] = dlt.sources.incremental(  # noqa: B008
            TASKS.cursor_field, initial_value=None, lag=lag_seconds, primary_key=_NO_BOUNDARY_DEDUP
        ),
    ) -> Iterator[list[dict[str, Any]]]:
        own = stats.reset(TASKS.name)
        stats.reset(TASK_RESULTS.name)
        reader.begin_scan(TASKS.name)
        want_results = _selected(TASK_RESULTS.name)
        try:
            pager = task_pager(
                select=select,
                results_select=results_select,
                since=_as_datetime(changed.start_value),
                changed_filterable=changed_filterable,
                with_results=want_results,
            )
            pages = read_task_pages(reader, TASKS.name, pager)
            for task_page, result_page in pages:
                own.rows += len(task_page)
                # Tasks changed after the scan started wait for the next run (see PortalReader.begin_scan).
                kept = [t for t in task_page if not reader.after_scan_start(TASKS.name, t.get(cursor))]
                if not kept:
                    continue
                if want_results:
                    kept_ids = {int(t["id"]) for t in kept}
                    stash.put(kept, [result_mapper(r) for r in result_page if int(r["taskId"]) in kept_ids])
                yield [task_mapper(t) for t in kept]
        finally:
            _publish(TASKS.name, own)

    tasks_resource = dlt.resource(
        tasks,
        name=TASKS.name,
        primary_key="id",
        write_disposition="merge",
        columns=task_columns,
        selected=False,
    )

    def task_results(task_page: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        # The rows came in the tasks' own requests, so this table costs no requests of its own.
        rows = stash.take([int(t["id"]) for t in task_page])
        own = stats.get(TASK_RESULTS.name)
        own.rows += len(rows)
        _save_state(TASK_RESULTS.name, own)
        if rows:
            yield rows

    results_resource = dlt.transformer(
        task_results,
        data_from=tasks_resource,
        name=TASK_RESULTS.name,
        primary_key="id",
        write_disposition="merge",
        columns=result_columns,
        selected=False,
    )
    return tasks_resource, results_resource


def _field_definitions_resource(meta: Mapping[str, Mapping[str, FieldMeta]], stats: RunStats) -> DltResource:
    def field_definitions() -> Iterator[list[dict[str, Any]]]:
        # The metadata was read once when the source was created (its requests are counted here).
        own = stats.get(FIELD_DEFINITIONS_TABLE)
        own.rows = 0
        for entity, fields in meta.items():
            rows = field_definition_rows(entity, fields)
            own.rows += len(rows)
            yield rows
        _save_state(FIELD_DEFINITIONS_TABLE, own)

    return dlt.resource(
        field_definitions,
        name=FIELD_DEFINITIONS_TABLE,
        primary_key="id",
        write_disposition="replace",
        columns=FIELD_DEFINITION_COLUMNS,
    )


def resource_stats(pipeline: dlt.Pipeline) -> dict[str, dict[str, Any]]:
    """Rows, requests and seconds of each resource in the pipeline's last run (from the resource state).

    Args:
        pipeline: a pipeline that has run the `bitrix24` source.

    Returns:
        resource name -> {"rows", "requests", "seconds"}.
    """
    sources = pipeline.state.get("sources", {})
    resources = sources.get("bitrix24", {}).get("resources", {})
    return {name: dict(state["last_run"]) for name, state in resources.items() if "last_run" in state}


def _as_datetime(value: Any) -> _dt.datetime | None:
    if value is None or isinstance(value, _dt.datetime):
        return value
    if isinstance(value, str):
        return _dt.datetime.fromisoformat(value)
    raise ConfigError(f"incremental `changed` value must be a datetime, got {value!r}")


def _publish(resource: str, stats: ResourceStats) -> None:
    logger.info(
        "bitrix24 %s: %d rows in %d requests, %.2f s", resource, stats.rows, stats.requests, stats.seconds
    )
    _save_state(resource, stats)


def _save_state(resource: str, stats: ResourceStats) -> None:
    try:
        dlt.current.resource_state()["last_run"] = stats.as_dict()
    except (SourceSectionNotAvailable, PipelineStateNotAvailable, ResourceNameNotAvailable) as exc:
        # a resource iterated directly, outside a pipeline, has no state to write to (the log line stays)
        logger.debug("no resource state for %s: %s", resource, exc)


__all__ = ["Bitrix24OAuthCredentials", "DltSource", "ResourceStats", "bitrix24_source", "resource_stats"]
