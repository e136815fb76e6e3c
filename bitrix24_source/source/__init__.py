"""The `bitrix24` dlt source and its resources, generated from the EntitySpec data (I/O through reader.py).

How it reads:

* CRM entities and users: ID-keyset pages chained 50 to a v2 batch, up to 2,500 rows per HTTP request
  (keyset.py; the commands are built in queries.py). The first batch also carries the entity's field list
  and a one-row `order id DESC` command (the last id: no batch of empty pages after a full last chain).
* Deal product rows: a transformer over each page of deals, `crm.item.productrow.list` per group of deal
  ids, batched, `>id` continuation for full pages (keyset.py).
* Every table but `field_definitions` and the directories leaves as pyarrow tables (one per HTTP request;
  tasks and task results one per page of tasks), typed column by column (schema.ArrowPages), and is loaded
  from parquet files.
* Quotes, invoices and smart processes (`spa_<entityTypeId>`, one resource per type crm.type.list lists when
  the source is created): read like deals (items.py); `enum_labels=True` adds enumeration labels.
* Directories (`spa_types`, `crm_statuses`, `crm_categories`, `departments`): offset pages, replaced each run
  (directories.py).
* Tasks and task results: several pages of tasks per v3 batch with the results of those tasks in the same
  request (`$refArray`, §5.6), paged by id or newest-first (task_pages.py).
* Incremental: `updatedTime` (CRM) and `changed` (tasks) through `dlt.sources.incremental` with a lag window,
  merged on `id`, the cursor capped at the scan's start (reader.py). `detect_deletes=True` adds an id-only
  keyset scan and hard-deletes rows the portal no longer has, and the product rows of deals it no longer
  has (deletes.py).
* Activities (activities.py): crm.activity.list keyset chains like the CRM tables, incremental on
  `LAST_UPDATED`. Stage history (history.py): crm.stagehistory.list per entity type, only ids after the last
  one loaded of each type.

Column types come from the portal's field lists (metadata.py, schema.py), read only for the selected
resources. `resource_stats` reads what each resource cost from the pipeline state.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import dlt
import pyarrow as pa
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
from bitrix24_source.source import directories
from bitrix24_source.source.activities import activities_resource, lower_id_column
from bitrix24_source.source.credentials import Bitrix24OAuthCredentials
from bitrix24_source.source.deletes import (
    DealIds,
    is_tombstone_table,
    product_row_tombstones,
    scan_deletes,
    task_result_tombstones,
    task_tombstones,
    tombstone_pages,
)
from bitrix24_source.source.history import history_column_hints, stage_history_resource
from bitrix24_source.source.items import (
    EnumLabels,
    SmartProcesses,
    discover_smart_processes,
    select_resources,
)
from bitrix24_source.source.keyset import (
    ProductRowReader,
    keyset_pages,
    partitioned_pages,
)
from bitrix24_source.source.metadata import ENTITY_ORDER, FieldStore, static_fields
from bitrix24_source.source.queries import format_since
from bitrix24_source.source.reader import PortalReader, ResourceStats, RunStats
from bitrix24_source.source.schema import (
    FIELD_DEFINITION_COLUMNS,
    ArrowPages,
    RowMapper,
    column_hints,
    field_definition_rows,
)
from bitrix24_source.source.settings import (
    ACTIVITIES,
    BATCH_LIMIT,
    CRM_CATEGORIES_TABLE,
    CRM_ENTITIES,
    CRM_ITEM_ENTITIES,
    CRM_STATUSES_TABLE,
    DEAL_PRODUCTS,
    DEALS,
    DEFAULT_LAG_SECONDS,
    DELETED_COLUMN,
    DEPARTMENTS_TABLE,
    FIELD_DEFINITIONS_TABLE,
    SPA_PREFIX,
    SPA_TYPES_TABLE,
    STAGE_HISTORY,
    TASK_RESULTS,
    TASKS,
    USERS,
    EntitySpec,
    spa_spec,
)
from bitrix24_source.source.task_pages import BLIND_TASK_SELECT, read_task_pages, task_pager

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
    enum_labels: bool = False,
    smart_processes: Sequence[int] | str = (),
) -> Any:
    """Bitrix24 -> warehouse.

    Resources (tables; primary key `id`, merge unless noted): `leads`, `deals`, `contacts`, `companies`
    (selected by default), `deal_products` (selected), `field_definitions` (replace, selected), `users`,
    `tasks`, `task_results`, `activities`, `stage_history` (primary key (`entity_type_id`, `id`)), `quotes`,
    `invoices`, `spa_<entityTypeId>` (one per smart process: `smart_processes="all"` lists them with
    crm.type.list when the source is made, or give their ids), and the directories `spa_types`, `crm_statuses`, `crm_categories` (key `entity_type_id`, `id`),
    `departments` (replace). Select them with `.with_resources(...)`, or with `select_resources(source,
    [...])`, which also takes `smart_processes`.

    Args:
        webhook_url: incoming webhook URL, `https://<portal>/rest/<user id>/<code>/` (a secret).
        oauth: OAuth application credentials instead of a webhook.
        lag_seconds: incremental lag window: rows changed up to this many seconds before the last seen
            `updatedTime`/`changed` are read again (clock skew, late commits).
        detect_deletes: after each CRM table, activities, users and tasks, scan the portal's ids (id only,
            about 2,500 per request) and hard-delete warehouse rows whose id the portal no longer has;
            deal_products also loses the rows of deleted deals, and rows a deal read in this run no longer
            lists; task_results loses the results of deleted tasks.
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
        enum_labels: add a `<field>_label` column next to each enumeration custom field of the CRM tables
            (text; a list of texts for a multiple field), from the field list's items.
        smart_processes: the entityTypeIds of the smart processes to offer as `spa_<id>` resources, or
            `"all"` to list them with one crm.type.list request when the source is made (which then fails
            in one line if the portal cannot be reached or refuses the webhook). Default: none, and making
            the source sends nothing.

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
    run = _Run(reader, stats, lag_seconds, detect_deletes, partitions, FieldStore(), enum_labels=enum_labels)
    _quiet_json_notice()
    resources = [_crm_resource(spec, run) for spec in CRM_ENTITIES]
    deals = resources[CRM_ENTITIES.index(DEALS)]
    resources.append(_deal_products_resource(deals, run))
    resources.append(_users_resource(run))
    resources += _task_resources(reader, run.fields, lag_seconds, stats, detect_deletes=detect_deletes)
    resources.append(
        activities_resource(
            reader=reader,
            stats=stats,
            fields=run.fields,
            tables=_Tables(detect_deletes, lower_id_column, cursor=ACTIVITIES.cursor_field),
            lag_seconds=lag_seconds,
            detect_deletes=detect_deletes,
            publish=_publish,
        )
    )
    # `smart_processes="all"`: one crm.type.list when the source is made (the `spa_<id>` resources depend on
    # the portal); by default nothing is sent here.
    spa = discover_smart_processes(reader, smart_processes)
    resources.append(
        stage_history_resource(
            reader=reader,
            stats=stats,
            tables=_Tables(False, history_column_hints),
            publish=_publish,
            staged_types=spa.staged,
        )
    )
    resources.append(_field_definitions_resource(run))
    for spec in (*CRM_ITEM_ENTITIES, *(spa_spec(type_id) for type_id in spa.ids)):
        run.fields.register(spec.name, spec)
        resources.append(_crm_resource(spec, run))
    resources.append(_directory_resource(SPA_TYPES_TABLE, directories.spa_type_rows, run))
    resources.append(_directory_resource(CRM_STATUSES_TABLE, directories.status_rows, run))
    resources.append(
        _directory_resource(
            CRM_CATEGORIES_TABLE,
            lambda r, name: directories.category_rows(r, name, _smart_process_ids(spa, r, name)),
            run,
        )
    )
    resources.append(_directory_resource(DEPARTMENTS_TABLE, directories.department_rows, run))
    return resources


def _smart_process_ids(spa: SmartProcesses, reader: PortalReader, resource: str) -> list[int]:
    """The smart processes the source was made with, or (none given or listed) the portal's, listed now."""
    if spa.ids or spa.listed:
        return spa.ids
    return sorted({int(row["entityTypeId"]) for row in directories.spa_type_rows(reader, resource)})


@dataclass(slots=True)
class _Run:
    """What the resources of one source instance share."""

    reader: PortalReader
    stats: RunStats
    lag_seconds: float
    detect_deletes: bool
    partitions: int
    fields: FieldStore
    deal_ids: DealIds = field(default_factory=DealIds)
    enum_labels: bool = False


class _Tables:
    """Turns one resource's pages into typed Arrow tables once its field metadata is known.

    Each table carries the column hints (`dlt.mark.with_hints`): the hints come from metadata read inside the
    resource's first batch, after dlt created the resource.
    """

    __slots__ = ("_adjust", "_build", "_cursor", "_detect_deletes", "_hints")

    def __init__(
        self,
        detect_deletes: bool,
        adjust: Callable[[dict[str, TColumnSchema]], None] | None = None,
        cursor: str | None = None,
    ) -> None:
        self._detect_deletes = detect_deletes
        self._cursor = cursor
        self._adjust = adjust
        self._build: ArrowPages | None = None
        self._hints: dict[str, TColumnSchema] = {}

    def set_fields(self, fields: Mapping[str, FieldMeta]) -> None:
        self._hints = _hints(fields, detect_deletes=self._detect_deletes)
        if self._adjust is not None:
            self._adjust(self._hints)
        self._build = ArrowPages(self._hints)

    def page(self, rows: Sequence[Mapping[str, Any]]) -> Any:
        assert self._build is not None, "field metadata arrives before the first page"
        table = self._build(rows)
        if self._build.found.keys() - self._hints.keys():
            self._hints = {**self._hints, **self._build.found}
        return self._mark(table)

    def tombstones(self, pages: Iterator[list[dict[str, Any]]]) -> Iterator[Any]:
        for page in pages:
            # an empty page is the deals' hand-over signal to deal_products (deletes.DealIds)
            if not page:
                yield []
                continue
            table = ArrowPages.tombstones([int(r["id"]) for r in page], DELETED_COLUMN)
            if self._cursor is not None:
                # dlt's incremental needs the cursor column in an Arrow table; a NULL cursor is kept
                # (`on_cursor_value_missing="include"`)
                cursor_type = pa.timestamp("us", tz="UTC")
                table = table.append_column(self._cursor, pa.nulls(table.num_rows, cursor_type))
            yield self._mark(table)

    def unset(self) -> bool:
        return self._build is None

    def _mark(self, table: Any) -> Any:
        return dlt.mark.with_hints(table, dlt.mark.make_hints(columns=self._hints)) if self._hints else table


_ARROW_RESOURCES = frozenset(
    {
        *(spec.name for spec in (*CRM_ENTITIES, *CRM_ITEM_ENTITIES)),
        DEAL_PRODUCTS.name,
        USERS.name,
        ACTIVITIES.name,
        STAGE_HISTORY.name,
        TASKS.name,
        TASK_RESULTS.name,
    }
)


class _JsonAsTextNotice(logging.Filter):
    """Drops dlt's per-table WARNING that an Arrow column hinted `json` is `string` in the table.

    dlt carries json as Arrow `string` itself (dlt/common/libs/pyarrow.py `get_py_arrow_datatype`), keeps the
    `json` hint and loads the text as JSON; every other column's Arrow type is built from its hint
    (schema.arrow_type), so for these resources the notice says nothing and would repeat for every page.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "when merging arrow schema with dlt schema" not in message:
            return True
        if message.startswith(f"In resource: {SPA_PREFIX}"):
            return False
        return not any(message.startswith(f"In resource: {name},") for name in _ARROW_RESOURCES)


def _quiet_json_notice() -> None:
    dlt_logger = logging.getLogger("dlt")
    if not any(isinstance(f, _JsonAsTextNotice) for f in dlt_logger.filters):
        dlt_logger.addFilter(_JsonAsTextNotice())


def _crm_resource(spec: EntitySpec, run: _Run) -> DltResource:
    reader, stats = run.reader, run.stats
    assert spec.cursor_field is not None
    cursor = spec.cursor_field
    tables = _Tables(run.detect_deletes, cursor=cursor)
    labels = EnumLabels(run.enum_labels)

    def rows(
        updated: dlt.sources.incremental[Any] = dlt.sources.incremental(  # noqa: B008
            spec.cursor_field,
            initial_value=None,
            lag=run.lag_seconds,
            on_cursor_value_missing="include",
            primary_key=_NO_BOUNDARY_DEDUP,
        ),
    ) -> Iterator[Any]:
        own = stats.reset(spec.name)
        reader.begin_scan(spec.name)
        if spec is DEALS:
            stats.reset(DEAL_PRODUCTS.name)
            run.deal_ids.put(None)
        since = format_since(updated.start_value)
        extra = {f">={spec.cursor_field}": since} if since is not None else None
        head = run.fields.command(spec.name)

        def on_head(results: Mapping[str, Any]) -> None:
            tables.set_fields(labels.fields(run.fields.accept(spec.name, results)))

        try:
            if run.partitions > 1:
                pages = partitioned_pages(
                    reader, spec.name, spec, run.partitions, extra, head=head, on_head=on_head
                )
            else:
                pages = keyset_pages(
                    reader,
                    spec.name,
                    spec,
                    extra_filter=extra,
                    first_length=1 if since is not None else BATCH_LIMIT,
                    head=head,
                    on_head=on_head,
                )
            for page in pages:
                own.rows += len(page)
                kept = [row for row in page if not reader.after_scan_start(spec.name, row.get(cursor))]
                if kept:
                    yield tables.page(labels.rows(kept))
            if spec is DEALS:
                # the end of the deals: deal_products reads what it left for later pages of deals (_Pending)
                yield []
            if run.detect_deletes:
                portal_ids, gone = scan_deletes(reader, spec)
                if spec is DEALS:
                    run.deal_ids.put(portal_ids)
                yield from tables.tombstones(tombstone_pages(gone, final_page=spec is DEALS))
        finally:
            _publish(spec.name, own)

    return dlt.resource(
        rows,
        name=spec.name,
        primary_key="id",
        write_disposition="merge",
        file_format="parquet",
        selected=spec.default,
    )


def _deal_ids(deal_page: Any) -> list[int]:
    """The ids of a deals item (an Arrow table, or an empty list), tombstones left out."""
    if not isinstance(deal_page, pa.Table) or deal_page.num_rows == 0:
        return []
    ids = deal_page.column("id").to_pylist()
    if DELETED_COLUMN not in deal_page.column_names:
        return [int(i) for i in ids]
    deleted = deal_page.column(DELETED_COLUMN).to_pylist()
    return [int(i) for i, gone in zip(ids, deleted, strict=True) if not gone]


def _deal_products_resource(deals: DltResource, run: _Run) -> DltResource:
    name = DEAL_PRODUCTS.name
    tables = _Tables(run.detect_deletes)
    product_reader = ProductRowReader(run.reader, name)
    pending = _Pending()

    def product_rows(deal_page: Any) -> Iterator[Any]:
        with pending.call(is_end=isinstance(deal_page, list)):
            yield from _product_rows(deal_page)

    def _product_rows(deal_page: Any) -> Iterator[Any]:
        own = run.stats.get(name)
        owner_ids = _deal_ids(deal_page)
        read_ids: set[int] = set()
        head = run.fields.command(name)

        def on_head(results: Mapping[str, Any]) -> None:
            tables.set_fields(run.fields.accept(name, results))

        if not head and tables.unset():
            on_head({})
        # Without delete detection, commands may wait for the next page of deals until the deals are read.
        may_defer = None if run.detect_deletes else pending.may_defer
        for page in product_reader.pages(owner_ids, may_defer=may_defer, head=head, on_head=on_head):
            own.rows += len(page)
            read_ids.update(int(row["id"]) for row in page)
            yield tables.page(page)
        if run.detect_deletes:
            if tables.unset():
                tables.set_fields(run.fields.fetch(run.reader, name, [name])[name])
            yield from tables.tombstones(product_row_tombstones(owner_ids, read_ids, run.deal_ids.take()))
        _save_state(name, own)

    return dlt.transformer(
        product_rows,
        data_from=deals,
        name=name,
        primary_key="id",
        write_disposition="merge",
        file_format="parquet",
        selected=DEAL_PRODUCTS.default,
    )


class _Pending:
    """When deal_products may leave commands for a later call: until the deals' end (an empty list) came
    and no other call is still running. dlt interleaves the generators of a transformer's calls, so the
    last call to finish after the end reads what is left."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._end_seen = False

    @contextmanager
    def call(self, *, is_end: bool) -> Iterator[None]:
        with self._lock:
            self._active += 1
            self._end_seen = self._end_seen or is_end
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1

    def may_defer(self) -> bool:
        with self._lock:
            return not (self._end_seen and self._active == 1)


def _users_resource(run: _Run) -> DltResource:
    def id_column(columns: dict[str, TColumnSchema]) -> None:
        columns.pop("ID", None)
        columns["id"] = {"name": "id", "data_type": "bigint", "nullable": False}

    tables = _Tables(run.detect_deletes, id_column)

    def users() -> Iterator[Any]:
        # No incremental cursor for users: user.get documents no modification time to filter on. Its filter
        # takes the user.add fields (TIMESTAMP_X is not one), and its documented answer carries
        # `"TIMESTAMP_X": {}`, an unserialised object (DOCS api-reference/user/user-get.md, §7.5). Users are
        # few, so every run reads them all (2,500 per request) and merges on id.
        own = run.stats.reset(USERS.name)

        def on_head(results: Mapping[str, Any]) -> None:
            tables.set_fields(run.fields.accept(USERS.name, results))

        try:
            head = run.fields.command(USERS.name)
            for page in keyset_pages(run.reader, USERS.name, USERS, head=head, on_head=on_head):
                own.rows += len(page)
                yield tables.page([_lower_id(row) for row in page])
            if run.detect_deletes:
                yield from tables.tombstones(tombstone_pages(scan_deletes(run.reader, USERS)[1]))
        finally:
            _publish(USERS.name, own)

    return dlt.resource(
        users,
        name=USERS.name,
        primary_key="id",
        write_disposition="merge",
        file_format="parquet",
        selected=False,
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
        self._by_task: dict[int, list[Mapping[str, Any]]] = {}
        self._lock = threading.Lock()

    def put(self, tasks: Sequence[Mapping[str, Any]], results: Sequence[Mapping[str, Any]]) -> None:
        with self._lock:
            for task in tasks:
                self._by_task.setdefault(int(task["id"]), [])
            for row in results:
                self._by_task.setdefault(int(row["taskId"]), []).append(row)

    def take(self, task_ids: Sequence[int]) -> list[Mapping[str, Any]]:
        with self._lock:
            out: list[Mapping[str, Any]] = []
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
    store: FieldStore,
    lag_seconds: float,
    stats: RunStats,
    *,
    detect_deletes: bool = False,
) -> tuple[DltResource, DltResource]:
    # The task field list rides in the first v3 batch of `tasks`; the result fields are a static table (no
    # request).
    result_fields = store.fetch(reader, TASKS.name, [TASK_RESULTS.name])[TASK_RESULTS.name]
    result_tables = _Tables(detect_deletes)
    result_tables.set_fields(result_fields)
    stash = _ResultStash()
    results_select = list(result_fields) or None
    assert TASKS.cursor_field is not None
    cursor = TASKS.cursor_field
    tables = _Tables(detect_deletes, cursor=cursor)

    def tasks(
        changed: dlt.sources.incremental[Any] = dlt.sources.incremental(  # noqa: B008
            TASKS.cursor_field,
            initial_value=None,
            lag=lag_seconds,
            # tombstone rows (detect_deletes) carry no `changed`
            on_cursor_value_missing="include",
            primary_key=_NO_BOUNDARY_DEDUP,
        ),
    ) -> Iterator[Any]:
        own = stats.reset(TASKS.name)
        stats.reset(TASK_RESULTS.name)
        reader.begin_scan(TASKS.name)
        want_results = _selected(TASK_RESULTS.name)
        since = _as_datetime(changed.start_value)
        try:
            task_fields = store.known(TASKS.name)
            if task_fields is None and since is not None:
                # An incremental load pages by `changed` only where the portal filters it: the field list
                # decides the pager before the first batch.
                task_fields = store.fetch(reader, TASKS.name, [TASKS.name])[TASKS.name]

            def on_head(results: Mapping[str, Any]) -> list[str]:
                fields = store.accept(TASKS.name, results)
                tables.set_fields(fields)
                return _task_select(fields)

            if task_fields is not None:
                # Known already (read above, or by an earlier run of this source object): the first batch
                # carries no field list (`store.command` is empty) and the pages select exactly these fields.
                on_head({})
            changed_meta = (task_fields or {}).get(cursor)
            pager = task_pager(
                select=_task_select(task_fields) if task_fields is not None else BLIND_TASK_SELECT,
                results_select=results_select,
                since=since,
                changed_filterable=bool(changed_meta is not None and changed_meta.filterable),
                with_results=want_results,
            )
            head = store.command(TASKS.name)
            pages = read_task_pages(reader, TASKS.name, pager, head=head, on_head=on_head)
            for task_page, result_page in pages:
                own.rows += len(task_page)
                # Tasks changed after the scan started wait for the next run (see PortalReader.begin_scan).
                kept = [t for t in task_page if not reader.after_scan_start(TASKS.name, t.get(cursor))]
                if not kept:
                    continue
                if want_results:
                    kept_ids = {int(t["id"]) for t in kept}
                    stash.put(kept, [r for r in result_page if int(r["taskId"]) in kept_ids])
                yield tables.page(kept)
            if detect_deletes:
                if tables.unset():
                    # no batch answered the field list (a portal without tasks): the tombstones need its hints
                    tables.set_fields(store.fetch(reader, TASKS.name, [TASKS.name])[TASKS.name])
                yield from tables.tombstones(task_tombstones(reader, TASKS.name))
        finally:
            _publish(TASKS.name, own)

    tasks_resource = dlt.resource(
        tasks,
        name=TASKS.name,
        primary_key="id",
        write_disposition="merge",
        file_format="parquet",
        selected=False,
    )

    def task_results(task_page: pa.Table) -> Iterator[Any]:
        task_ids = [int(id_) for id_ in task_page.column("id").to_pylist()]
        if is_tombstone_table(task_page):
            # deleted tasks take their results with them (warehouse reads only)
            yield from result_tables.tombstones(task_result_tombstones(task_ids))
            return
        # The rows came in the tasks' own requests, so this table costs no requests of its own.
        rows = stash.take(task_ids)
        own = stats.get(TASK_RESULTS.name)
        own.rows += len(rows)
        _save_state(TASK_RESULTS.name, own)
        if rows:
            yield result_tables.page(rows)

    results_resource = dlt.transformer(
        task_results,
        data_from=tasks_resource,
        name=TASK_RESULTS.name,
        primary_key="id",
        write_disposition="merge",
        file_format="parquet",
        selected=False,
    )
    return tasks_resource, results_resource


def _field_definitions_resource(run: _Run) -> DltResource:
    def field_definitions() -> Iterator[list[dict[str, Any]]]:
        # The entities of the selected resources (all of them when none is selected); their field lists were
        # read by their own first batches, or are read here (the requests are counted here).
        own = run.stats.get(FIELD_DEFINITIONS_TABLE)
        own.rows = 0
        chosen = [e for e in (*ENTITY_ORDER, *run.fields.registered()) if _selected(e)] or list(ENTITY_ORDER)
        for entity, fields in run.fields.fetch(run.reader, FIELD_DEFINITIONS_TABLE, chosen).items():
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


def _directory_resource(
    name: str, read: Callable[[PortalReader, str], list[dict[str, Any]]], run: _Run
) -> DltResource:
    """A reference list read whole and replaced each run (directories.py), typed from its documented fields."""
    fields = static_fields(directories.DIRECTORY_FIELDS[name])
    run.fields.register(name, fields=fields)
    columns = column_hints(fields)
    mapper = RowMapper(columns)

    def rows() -> Iterator[list[dict[str, Any]]]:
        own = run.stats.reset(name)
        try:
            found = read(run.reader, name)
            own.rows = len(found)
            if found:
                yield [mapper(row) for row in found]
        finally:
            _publish(name, own)

    return dlt.resource(
        rows,
        name=name,
        primary_key=directories.DIRECTORY_KEYS[name],
        write_disposition="replace",
        columns=columns,
        selected=False,
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


__all__ = [
    "Bitrix24OAuthCredentials",
    "DltSource",
    "ResourceStats",
    "bitrix24_source",
    "resource_stats",
    "select_resources",
]
