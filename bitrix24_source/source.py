"""The `bitrix24` dlt source: CRM entities, deal product rows, users, tasks and task results.

How it reads (see readers.py for the pure planning):

* CRM entities and users: ID-keyset pages (`order id ASC`, `>id`, `start=-1`, §3.2) chained 50 to a v2 batch
  through `$result[...]` references (§4.3): up to 2,500 rows per HTTP request.
* Deal product rows: a transformer over each page of deals, `crm.item.productrow.list` per group of deal ids,
  batched, `>id` continuation for full pages.
* Tasks and task results: one v3 batch per page of tasks, the results of those tasks in the same request
  (`$refArray`, §5.6).
* Incremental: `updatedTime` (CRM) and `changed` (tasks) through `dlt.sources.incremental` with a lag window,
  merged on `id`. `detect_deletes=True` adds an id-only keyset scan and hard-deletes rows the portal no
  longer has.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
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

from bitrix24_source import readers
from bitrix24_source.client import Bitrix24Client
from bitrix24_source.commands import CommandResult
from bitrix24_source.config import Bitrix24OAuthCredentials
from bitrix24_source.errors import ApiError, ConfigError
from bitrix24_source.schema import (
    FIELD_DEFINITION_COLUMNS,
    FieldMeta,
    RowMapper,
    column_hints,
    field_definition_rows,
    parse_field_map,
)
from bitrix24_source.settings import (
    BATCH_LIMIT,
    CRM_ENTITIES,
    DEAL_PRODUCTS,
    DEALS,
    DEFAULT_LAG_SECONDS,
    DELETED_COLUMN,
    FIELD_DEFINITIONS_TABLE,
    PAGE_SIZE,
    PRODUCT_ROWS_OWNERS_PER_COMMAND,
    TASK_RESULTS,
    TASKS,
    USERS,
    EntitySpec,
)

logger = logging.getLogger(__name__)

_RESULTS_TASKS_PER_COMMAND = 10
"""Task ids per follow-up `tasks.task.result.list` command when one page of results overflowed the cap."""


_RECENT_FIRST_PAGE = 10
"""Tasks in the first newest-first page of an incremental run (later pages ask for the full 50)."""


@dataclass(slots=True)
class ResourceStats:
    """What one resource cost in the current run.

    Attributes:
        rows: rows read from the portal (before dlt's incremental filtering).
        requests: HTTP requests the resource made (batches count once; task results ride with tasks).
        seconds: time spent waiting for those requests, client-side rate limiting included.
    """

    rows: int = 0
    requests: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "requests": self.requests, "seconds": round(self.seconds, 3)}


@dataclass(slots=True)
class _Stats:
    by_resource: dict[str, ResourceStats] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_request(self, resource: str, seconds: float) -> None:
        with self.lock:
            own = self.by_resource.setdefault(resource, ResourceStats())
            own.requests += 1
            own.seconds += seconds

    def get(self, resource: str) -> ResourceStats:
        with self.lock:
            return self.by_resource.setdefault(resource, ResourceStats())

    def reset(self, resource: str) -> ResourceStats:
        """Start a new run of `resource` (a source object may be run more than once)."""
        with self.lock:
            fresh = self.by_resource[resource] = ResourceStats()
            return fresh


class _Reader:
    """The I/O loops of the source over one shared client (its limiter is process-wide per portal)."""

    def __init__(self, client: Bitrix24Client, stats: _Stats) -> None:
        self.client = client
        self.stats = stats

    # -- transport -----------------------------------------------------------------------------------

    def batch(
        self, resource: str, calls: Mapping[str, readers.Cmd], *, version: int = 2
    ) -> Sequence[CommandResult]:
        started = time.monotonic()
        try:
            return self.client.batch(dict(calls), halt_on_error=True, version=version).results
        finally:
            self.stats.add_request(resource, time.monotonic() - started)

    def call(self, resource: str, method: str, params: Mapping[str, Any], *, version: int = 2) -> Any:
        started = time.monotonic()
        try:
            return self.client.call(method, dict(params), version=version).result
        finally:
            self.stats.add_request(resource, time.monotonic() - started)

    # -- CRM / users keyset chains ---------------------------------------------------------------------

    def keyset_pages(
        self,
        resource: str,
        spec: EntitySpec,
        *,
        after: int = 0,
        extra_filter: Mapping[str, Any] | None = None,
        select: Sequence[str] = readers.CRM_SELECT_ALL,
        first_length: int = BATCH_LIMIT,
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield the table's rows in id order, one list per HTTP request (a 50-page chain, §3.2, §4.3).

        A whole chain (up to 2,500 rows) is one item, so transformers downstream (deal product rows) can
        batch their own requests per 2,500 parents instead of per 50.
        """
        length = first_length
        while True:
            commands = readers.keyset_chain(
                spec, after, length=length, select=select, extra_filter=extra_filter
            )
            chain = readers.split_chain(self.batch(resource, commands), spec)
            rows = [row for page in chain.pages for row in page]
            if rows:
                yield rows
            if chain.exhausted or chain.last_id is None:
                return
            after = chain.last_id
            length = BATCH_LIMIT

    def max_id(self, resource: str, spec: EntitySpec, extra_filter: Mapping[str, Any] | None) -> int:
        """The largest id of a CRM table (one `start=-1` page ordered by id DESC)."""
        params = readers.crm_page_params(spec, 0, select=("id",), extra_filter=extra_filter)
        params["order"] = {"id": "DESC"}
        rows = readers.rows_of(self.call(resource, spec.method, params), spec.list_key)
        return int(rows[0]["id"]) if rows else 0

    def partitioned_pages(
        self,
        resource: str,
        spec: EntitySpec,
        partitions: int,
        extra_filter: Mapping[str, Any] | None,
        select: Sequence[str] = readers.CRM_SELECT_ALL,
    ) -> Iterator[list[dict[str, Any]]]:
        """Read id ranges in parallel threads; every request still goes through the shared limiter.

        Each round runs one chain batch per live partition concurrently and yields their pages, so at most
        `partitions` x 2,500 rows are held in memory.
        """
        top = self.max_id(resource, spec, extra_filter)
        if top == 0:
            return
        step = -(-top // partitions)
        bounds = [(lo, min(lo + step, top)) for lo in range(0, top, step)]
        cursors: dict[int, int] = {i: lo for i, (lo, _) in enumerate(bounds)}

        def one(i: int) -> readers.ChainPages:
            upper = bounds[i][1]
            flt = dict(extra_filter or {})
            flt["<=id"] = upper
            commands = readers.keyset_chain(spec, cursors[i], select=select, extra_filter=flt)
            return readers.split_chain(self.batch(resource, commands), spec)

        with ThreadPoolExecutor(max_workers=partitions, thread_name_prefix=f"b24-{resource}") as pool:
            while cursors:
                live = sorted(cursors)
                for i, chain in zip(live, pool.map(one, live), strict=True):
                    rows = [row for page in chain.pages for row in page]
                    if rows:
                        yield rows
                    if chain.exhausted or chain.last_id is None:
                        del cursors[i]
                    else:
                        cursors[i] = chain.last_id

    # -- deal product rows -----------------------------------------------------------------------------

    def product_rows(self, resource: str, owner_ids: Sequence[int]) -> Iterator[list[dict[str, Any]]]:
        """Product rows of the given deals: groups of deal ids per command, `>id` follow-ups for full pages."""
        pending: list[tuple[tuple[int, ...], int]] = [
            (group, 0) for group in readers.chunked(list(owner_ids), PRODUCT_ROWS_OWNERS_PER_COMMAND)
        ]
        while pending:
            current, pending = pending[:BATCH_LIMIT], pending[BATCH_LIMIT:]
            results = self.batch(resource, readers.product_rows_commands(current))
            readers.raise_first_error(results)
            for (owners, _after), res in zip(current, results, strict=True):
                rows = readers.rows_of(res.result, DEAL_PRODUCTS.list_key)
                if rows:
                    yield rows
                if len(rows) >= PAGE_SIZE:
                    pending.append((owners, int(rows[-1]["id"])))

    # -- tasks (v3) ------------------------------------------------------------------------------------

    def _tasks_exhausted(self, resource: str, tasks_command: readers.Cmd) -> bool:
        """Whether the tasks page of a rejected v3 batch is empty: the deliberate end-of-listing check.

        When the tasks page is empty, `{"$refArray": "tasks.id"}` resolves to an empty list, the portal
        rejects `in []` and, v3 batches being all-or-nothing (§5.6), the whole batch fails. Sending the
        same tasks query alone tells "the listing is over" (no rows) from a real error (rows: re-raise).
        """
        method, params = tasks_command
        rows = readers.rows_of(self.call(resource, method, params, version=TASKS.api_version), TASKS.list_key)
        return not rows

    def task_pages(
        self,
        resource: str,
        *,
        select: Sequence[str],
        results_select: Sequence[str] | None,
        since: _dt.datetime | None,
        changed_filterable: bool,
        with_results: bool,
    ) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
        """Yield (tasks, results of those tasks) per page of tasks, one v3 batch per page (§5.2, §5.6).

        Full loads (and incremental loads where the portal lets `changed` be filtered) walk a keyset on
        task id. When `changed` is not filterable (the v3 docs promise filtering by `id` only, and the
        field list says `filterable: false`), an incremental load walks tasks newest-first instead
        (`order changed DESC, id DESC`) and stops at the first task changed before `since`, so it still
        reads only the changed tasks.
        """
        newest_first = since is not None and not changed_filterable
        since_text = _format_since(since)
        after = 0
        offset = 0
        task_cap = readers.PageCap()
        result_cap = readers.PageCap()
        while True:
            if newest_first:
                # A small first page: an incremental run usually finds only a few changed tasks.
                commands = readers.v3_tasks_recent_page(
                    offset,
                    limit=_RECENT_FIRST_PAGE if offset == 0 else PAGE_SIZE,
                    select=select,
                    results_select=results_select,
                    with_results=with_results,
                )
            else:
                commands = readers.v3_tasks_page(
                    after,
                    limit=PAGE_SIZE,
                    select=select,
                    results_select=results_select,
                    since=since_text,
                    with_results=with_results,
                )
            try:
                results = self.batch(resource, commands, version=TASKS.api_version)
                readers.raise_first_error(results)
            except ApiError as exc:
                if (
                    exc.permanent
                    and with_results
                    and self._tasks_exhausted(resource, commands[readers.TASKS_ALIAS])
                ):
                    return
                raise
            tasks = readers.rows_of(results[0].result, TASKS.list_key)
            done = task_cap.is_last(len(tasks))
            if newest_first:
                assert since is not None
                fresh = [t for t in tasks if not _changed_before(t, since)]
                done = done or len(fresh) < len(tasks)
                offset += len(tasks)
            else:
                fresh = tasks
            task_results: list[dict[str, Any]] = []
            if with_results and tasks:
                task_results = readers.rows_of(results[1].result, TASK_RESULTS.list_key)
                if result_cap.may_continue(len(task_results), PAGE_SIZE):
                    task_results.extend(
                        self._more_results(resource, tasks, task_results, results_select, result_cap)
                    )
                if len(fresh) < len(tasks):
                    keep = {int(t["id"]) for t in fresh}
                    task_results = [r for r in task_results if int(r["taskId"]) in keep]
            yield fresh, task_results
            if done:
                return
            after = int(tasks[-1]["id"])

    def _more_results(
        self,
        resource: str,
        tasks: Sequence[Mapping[str, Any]],
        first_page: Sequence[Mapping[str, Any]],
        select: Sequence[str] | None,
        cap: readers.PageCap,
    ) -> list[dict[str, Any]]:
        """Results past the first full page: the page's task ids in groups, each continued by result id.

        The first page holds every result with id <= its last id (`order id ASC`), so each group starts
        after that id; groups run side by side in one v3 batch instead of one sequential page at a time.
        """
        seen = {int(r["id"]) for r in first_page}
        start_after = max(seen)
        pending: dict[tuple[int, ...], int | None] = {
            group: start_after
            for group in readers.chunked([int(t["id"]) for t in tasks], _RESULTS_TASKS_PER_COMMAND)
        }
        out: list[dict[str, Any]] = []
        while pending:
            batch_keys = list(pending)[:BATCH_LIMIT]
            current = {k: pending.pop(k) for k in batch_keys}
            results = self.batch(
                resource,
                readers.results_followups(current, limit=PAGE_SIZE, select=select),
                version=TASK_RESULTS.api_version,
            )
            readers.raise_first_error(results)
            for group, res in zip(current, results, strict=True):
                rows = readers.rows_of(res.result, TASK_RESULTS.list_key)
                for row in rows:
                    if int(row["id"]) not in seen:
                        seen.add(int(row["id"]))
                        out.append(row)
                if cap.may_continue(len(rows), PAGE_SIZE):
                    pending[group] = int(rows[-1]["id"])
        return out

    # -- deletes ---------------------------------------------------------------------------------------

    def portal_ids(self, resource: str, spec: EntitySpec) -> set[int]:
        """Every id the portal has for a table: an id-only keyset scan, 2,500 ids per request."""
        ids: set[int] = set()
        select: Sequence[str] = ("id",) if spec.style == "crm_item" else readers.CRM_SELECT_ALL
        for page in self.keyset_pages(resource, spec, select=select):
            ids.update(int(row[spec.id_field]) for row in page)
        return ids


def _warehouse_ids(table: str) -> set[int]:
    """Ids currently in the destination table of the running pipeline (empty before the first load)."""
    from dlt.destinations.exceptions import DatabaseUndefinedRelation

    pipeline = dlt.current.pipeline()
    if pipeline.destination is None:
        raise ConfigError("detect_deletes needs a pipeline with a destination (it compares ids with it)")
    ids: set[int] = set()
    try:
        with pipeline.sql_client() as client:
            qualified = client.make_qualified_table_name(table)
            with client.execute_query(f"SELECT id FROM {qualified}") as cursor:
                while chunk := cursor.fetchmany(10_000):
                    ids.update(int(row[0]) for row in chunk)
    except DatabaseUndefinedRelation:
        return set()
    return ids


def _tombstones(spec: EntitySpec, reader: _Reader, resource: str) -> Iterator[list[dict[str, Any]]]:
    missing = sorted(_warehouse_ids(resource) - reader.portal_ids(resource, spec))
    for i in range(0, len(missing), 1000):
        yield [{"id": id_, DELETED_COLUMN: True} for id_ in missing[i : i + 1000]]


def _changed_before(task: Mapping[str, Any], since: _dt.datetime) -> bool:
    value = task.get(TASKS.cursor_field or "changed")
    if not isinstance(value, str) or not value:
        return False
    changed = _dt.datetime.fromisoformat(value)
    if changed.tzinfo is None or since.tzinfo is None:
        return changed.replace(tzinfo=None) < since.replace(tzinfo=None)
    return changed < since


def _as_datetime(value: Any) -> _dt.datetime | None:
    if value is None or isinstance(value, _dt.datetime):
        return value
    if isinstance(value, str):
        return _dt.datetime.fromisoformat(value)
    raise ConfigError(f"incremental `changed` value must be a datetime, got {value!r}")


def _format_since(value: Any) -> str | None:
    """The incremental lower bound as the portal prints datetimes (ISO 8601 with offset)."""
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


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


_USER_FIELD_TYPES: dict[str, str] = {
    "ID": "integer",
    "ACTIVE": "boolean",
    "IS_ONLINE": "char",
    "LAST_LOGIN": "datetime",
    "DATE_REGISTER": "datetime",
    "TIMESTAMP_X": "datetime",
    "LAST_ACTIVITY_DATE": "datetime",
    "PERSONAL_BIRTHDAY": "date",
    "UF_EMPLOYMENT_DATE": "date",
    "UF_DEPARTMENT": "integer",
}
"""user.fields returns labels only (recorded: user_fields.json), so user field types are the ones documented
for user.get (DOCS api-reference/user/user-get.md); fields not listed are left to dlt's inference."""

_PRODUCT_ROW_FIELDS: dict[str, str] = {
    "id": "integer",
    "ownerId": "integer",
    "ownerType": "string",
    "productId": "integer",
    "productName": "string",
    "price": "money",
    "priceAccount": "money",
    "priceExclusive": "money",
    "priceNetto": "money",
    "priceBrutto": "money",
    "quantity": "double",
    "discountTypeId": "integer",
    "discountRate": "double",
    "discountSum": "money",
    "taxRate": "double",
    "taxIncluded": "char",
    "customized": "char",
    "measureCode": "integer",
    "measureName": "string",
    "sort": "integer",
    "xmlId": "string",
    "type": "integer",
}
"""crm.item.productrow fields and types (DOCS api-reference/crm/universal/product-rows; recorded:
crm_item_productrow_list.json). There is no field-description method for product rows."""


_TASK_RESULT_FIELDS: dict[str, str] = {
    "id": "integer",
    "taskId": "integer",
    "text": "string",
    "authorId": "integer",
    "createdAt": "datetime",
    "updatedAt": "datetime",
    "status": "string",
    "fileIds": "array",
    "messageId": "integer",
}
"""tasks.task.result.list fields (DOCS api-reference/tasks/result; no v3 field-list method for results).
They are also the `select` sent: v3 rejects unknown fields in `select` of related DTOs (§2.3)."""


def _static_fields(types: Mapping[str, str], multiple: frozenset[str] = frozenset()) -> dict[str, FieldMeta]:
    return {
        name: FieldMeta(name=name, type=t, title=name, is_multiple=name in multiple)
        for name, t in types.items()
    }


def _fetch_metadata(reader: _Reader) -> dict[str, dict[str, FieldMeta]]:
    """Field metadata of every entity: the four crm.item.fields calls in one v2 batch, task fields via v3."""
    meta: dict[str, dict[str, FieldMeta]] = {}
    commands = {
        spec.name: ("crm.item.fields", {"entityTypeId": spec.entity_type_id}) for spec in CRM_ENTITIES
    }
    results = reader.batch("field_definitions", commands)
    readers.raise_first_error(results)
    for spec, res in zip(CRM_ENTITIES, results, strict=True):
        meta[spec.name] = parse_field_map(res.result)
    assert USERS.fields_method is not None
    labels = parse_field_map(reader.call("field_definitions", USERS.fields_method, {}))
    typed = _static_fields(_USER_FIELD_TYPES, frozenset({"UF_DEPARTMENT"}))
    # Fields without a documented type are strings in user.get rows (§7.5).
    meta[USERS.name] = {
        name: FieldMeta(
            name=name,
            type=typed[name].type if name in typed else "string",
            title=f.title,
            is_multiple=typed[name].is_multiple if name in typed else False,
        )
        for name, f in labels.items()
    }
    assert TASKS.fields_method is not None
    meta[TASKS.name] = parse_field_map(
        reader.call("field_definitions", TASKS.fields_method, {}, version=TASKS.api_version)
    )
    meta[TASK_RESULTS.name] = _static_fields(_TASK_RESULT_FIELDS, frozenset({"fileIds"}))
    meta[DEAL_PRODUCTS.name] = _static_fields(_PRODUCT_ROW_FIELDS)
    return meta


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
        detect_deletes: after each CRM table, scan the portal's ids (id only, 2,500 per request) and
            hard-delete warehouse rows whose id the portal no longer has.
        partitions: read each CRM table as this many id ranges in parallel threads (the limiter is shared).
        rate_limit: `"default"` (burst 50, 2/s), `"enterprise"` (250, 5/s), or None / `"off"` (no client
            throttle).
        operating_limit: per-method operating-time budget in seconds per 10 minutes (§6.1), None = off.
        timeout: HTTP timeout in seconds.
        verify: verify TLS certificates.
        ca_bundle: path of a CA bundle for TLS verification (e.g. the sandbox's self-signed CA).

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
    )
    stats = _Stats()
    reader = _Reader(client, stats)
    meta = _fetch_metadata(reader)
    resources: list[DltResource] = []

    for spec in CRM_ENTITIES:
        resources.append(
            _crm_resource(spec, reader, meta[spec.name], lag_seconds, detect_deletes, partitions, stats)
        )
    deals = resources[CRM_ENTITIES.index(DEALS)]
    resources.append(_deal_products_resource(deals, reader, meta[DEAL_PRODUCTS.name], stats))
    resources.append(_users_resource(reader, meta[USERS.name], detect_deletes, stats))
    tasks, task_results = _task_resources(reader, meta, lag_seconds, stats)
    resources += [tasks, task_results]
    resources.append(_field_definitions_resource(meta, stats))
    return resources


def _crm_resource(
    spec: EntitySpec,
    reader: _Reader,
    fields: Mapping[str, FieldMeta],
    lag_seconds: float,
    detect_deletes: bool,
    partitions: int,
    stats: _Stats,
) -> DltResource:
    columns = _hints(fields, detect_deletes=detect_deletes)
    mapper = RowMapper(columns)
    assert spec.cursor_field is not None

    def rows(
        updated: dlt.sources.incremental[Any] = dlt.sources.incremental(  # noqa: B008
            spec.cursor_field, initial_value=None, lag=lag_seconds, on_cursor_value_missing="include"
        ),
    ) -> Iterator[list[dict[str, Any]]]:
        own = stats.reset(spec.name)
        if spec is DEALS:
            stats.reset(DEAL_PRODUCTS.name)
        since = _format_since(updated.start_value)
        extra = {f">={spec.cursor_field}": since} if since is not None else None
        try:
            if partitions > 1:
                pages = reader.partitioned_pages(spec.name, spec, partitions, extra)
            else:
                pages = reader.keyset_pages(
                    spec.name, spec, extra_filter=extra, first_length=1 if since is not None else BATCH_LIMIT
                )
            for page in pages:
                own.rows += len(page)
                yield [mapper(row) for row in page]
            if detect_deletes:
                yield from _tombstones(spec, reader, spec.name)
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


def _deal_products_resource(
    deals: DltResource, reader: _Reader, fields: Mapping[str, FieldMeta], stats: _Stats
) -> DltResource:
    columns = column_hints(fields)
    mapper = RowMapper(columns)
    name = DEAL_PRODUCTS.name

    def product_rows(deal_page: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        own = stats.get(name)
        owner_ids = [int(d["id"]) for d in deal_page if not d.get(DELETED_COLUMN)]
        for page in reader.product_rows(name, owner_ids):
            own.rows += len(page)
            yield [mapper(row) for row in page]
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


def _users_resource(
    reader: _Reader, fields: Mapping[str, FieldMeta], detect_deletes: bool, stats: _Stats
) -> DltResource:
    columns = _hints(fields, detect_deletes=detect_deletes)
    columns.pop("ID", None)
    columns["id"] = {"name": "id", "data_type": "bigint", "nullable": False}
    mapper = RowMapper(columns)

    def users() -> Iterator[list[dict[str, Any]]]:
        # user.get has no modification-time filter we can rely on across portals (TIMESTAMP_X is not
        # documented as filterable, §7.5): users are small, so every run reads them all and merges on id.
        own = stats.reset(USERS.name)
        try:
            for page in reader.keyset_pages(USERS.name, USERS):
                own.rows += len(page)
                yield [mapper(_lower_id(row)) for row in page]
            if detect_deletes:
                yield from _tombstones(USERS, reader, USERS.name)
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
    reader: _Reader,
    meta: Mapping[str, Mapping[str, FieldMeta]],
    lag_seconds: float,
    stats: _Stats,
) -> tuple[DltResource, DltResource]:
    task_columns = column_hints(meta[TASKS.name])
    result_columns = column_hints(meta[TASK_RESULTS.name])
    task_mapper = RowMapper(task_columns)
    result_mapper = RowMapper(result_columns)
    stash = _ResultStash()
    select = _task_select(meta[TASKS.name])
    changed_meta = meta[TASKS.name].get(TASKS.cursor_field or "changed")
    changed_filterable = bool(changed_meta is not None and changed_meta.is_filterable)
    results_select = list(meta[TASK_RESULTS.name]) or None
    assert TASKS.cursor_field is not None

    def tasks(
        changed: dlt.sources.incremental[Any] = dlt.sources.incremental(  # noqa: B008
            TASKS.cursor_field, initial_value=None, lag=lag_seconds
        ),
    ) -> Iterator[list[dict[str, Any]]]:
        own = stats.reset(TASKS.name)
        stats.reset(TASK_RESULTS.name)
        want_results = _selected(TASK_RESULTS.name)
        try:
            pages = reader.task_pages(
                TASKS.name,
                select=select,
                results_select=results_select,
                since=_as_datetime(changed.start_value),
                changed_filterable=changed_filterable,
                with_results=want_results,
            )
            for task_page, result_page in pages:
                if not task_page:
                    continue
                own.rows += len(task_page)
                if want_results:
                    stash.put(task_page, [result_mapper(r) for r in result_page])
                yield [task_mapper(t) for t in task_page]
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


def _field_definitions_resource(meta: Mapping[str, Mapping[str, FieldMeta]], stats: _Stats) -> DltResource:
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


__all__ = ["Bitrix24OAuthCredentials", "DltSource", "ResourceStats", "bitrix24_source", "resource_stats"]
