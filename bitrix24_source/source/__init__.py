"""The `bitrix24` dlt source: CRM entities, deal product rows, users, tasks and task results.

How it reads (see queries.py for the pure planning):

* CRM entities and users: ID-keyset pages (`order id ASC`, `>id`, `start=-1`, §3.2) chained 50 to a v2 batch
  through `$result[...]` references (§4.3): up to 2,500 rows per HTTP request.
* Deal product rows: a transformer over each page of deals, `crm.item.productrow.list` per group of deal ids,
  batched, `>id` continuation for full pages.
* Tasks and task results: one v3 batch per page of tasks, the results of those tasks in the same request
  (`$refArray`, §5.6), and a one-row look-ahead for the listing's final task.
* Incremental: `updatedTime` (CRM) and `changed` (tasks) through `dlt.sources.incremental` with a lag window,
  merged on `id`. `detect_deletes=True` adds an id-only keyset scan and hard-deletes rows the portal no
  longer has, and the product rows of deals it no longer has.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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

from bitrix24_source.client import Bitrix24Client, OAuthTokens
from bitrix24_source.client.commands import CommandResult, TimeInfo
from bitrix24_source.errors import ApiError, Bitrix24Error, ConfigError
from bitrix24_source.fields import FieldMeta, parse_field_map
from bitrix24_source.source import queries
from bitrix24_source.source.credentials import Bitrix24OAuthCredentials
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


_NO_BOUNDARY_DEDUP: tuple[str, ...] = ()
"""Incremental `primary_key=()`: without a lag, dlt drops a row whose cursor equals the stored value when it
saw the same key at that value, which loses a record edited twice within one second (`updatedTime` and
`changed` have 1 s resolution). Every table merges on `id`, so re-reading the boundary is harmless."""

_RECENT_FIRST_PAGE = 10
"""Tasks in the first newest-first page of an incremental run (later pages ask for the full 50)."""

_MAX_SEAM_RESTARTS = 5
"""Newest-first task listings restarted this often because rows shifted between pages give up with an error."""


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
        self._scan_start: dict[str, _dt.datetime | None] = {}
        self._scan_lock = threading.Lock()

    # -- transport -----------------------------------------------------------------------------------

    def batch(
        self, resource: str, calls: Mapping[str, queries.Cmd], *, version: int = 2
    ) -> Sequence[CommandResult]:
        started = time.monotonic()
        try:
            answer = self.client.batch(dict(calls), halt_on_error=True, version=version)
            self._note_portal_time(resource, answer.time)
            return answer.results
        finally:
            self.stats.add_request(resource, time.monotonic() - started)

    def call(self, resource: str, method: str, params: Mapping[str, Any], *, version: int = 2) -> Any:
        started = time.monotonic()
        try:
            answer = self.client.call(method, dict(params), version=version)
            self._note_portal_time(resource, answer.time)
            return answer.result
        finally:
            self.stats.add_request(resource, time.monotonic() - started)

    # -- the portal time a scan started at (caps the incremental cursor, see `begin_scan`) -------------

    def begin_scan(self, resource: str) -> None:
        """Forget the start time of `resource`'s previous scan; the next answer's portal time is the new one.

        Rows are walked in id order while the cursor (`updatedTime`/`changed`) that dlt stores is the largest
        value seen. A row edited during the scan after its id was passed is not seen, while a row with a
        higher id edited even later is, so the stored cursor could jump past the missed edit for good. Rows
        changed after the scan's first answer are therefore left to the next run (`after_scan_start`), so the
        stored cursor never exceeds the scan's start and every edit made during a run is read by the next one.
        """
        with self._scan_lock:
            self._scan_start[resource] = None

    def after_scan_start(self, resource: str, value: Any) -> bool:
        """Whether a row's cursor value is later than the portal time at which `resource`'s scan started."""
        with self._scan_lock:
            start = self._scan_start.get(resource)
        if start is None or not isinstance(value, str) or not value:
            return False
        stamp = _dt.datetime.fromisoformat(value)
        if stamp.tzinfo is None:
            return False
        return stamp > start

    def _note_portal_time(self, resource: str, when: TimeInfo | None) -> None:
        if when is None or when.start is None:
            return
        with self._scan_lock:
            if resource in self._scan_start and self._scan_start[resource] is None:
                # `time.start` is the portal's clock (§2.1), so the cap does not depend on this machine's.
                self._scan_start[resource] = _dt.datetime.fromtimestamp(when.start, _dt.timezone.utc)

    # -- CRM / users keyset chains ---------------------------------------------------------------------

    def keyset_pages(
        self,
        resource: str,
        spec: EntitySpec,
        *,
        after: int = 0,
        extra_filter: Mapping[str, Any] | None = None,
        select: Sequence[str] = queries.CRM_SELECT_ALL,
        first_length: int = BATCH_LIMIT,
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield the table's rows in id order, one list per HTTP request (a 50-page chain, §3.2, §4.3).

        A whole chain (up to 2,500 rows) is one item, so transformers downstream (deal product rows) can
        batch their own requests per 2,500 parents instead of per 50.
        """
        length = first_length
        while True:
            commands = queries.keyset_chain(
                spec, after, length=length, select=select, extra_filter=extra_filter
            )
            chain = queries.split_chain(self.batch(resource, commands), spec)
            rows = [row for page in chain.pages for row in page]
            if rows:
                yield rows
            if chain.exhausted or chain.last_id is None:
                return
            after = chain.last_id
            length = BATCH_LIMIT

    def max_id(self, resource: str, spec: EntitySpec, extra_filter: Mapping[str, Any] | None) -> int:
        """The largest id of a CRM table (one `start=-1` page ordered by id DESC)."""
        params = queries.crm_page_params(spec, 0, select=("id",), extra_filter=extra_filter)
        params["order"] = {"id": "DESC"}
        rows = queries.rows_of(self.call(resource, spec.method, params), spec.list_key)
        return int(rows[0]["id"]) if rows else 0

    def partitioned_pages(
        self,
        resource: str,
        spec: EntitySpec,
        partitions: int,
        extra_filter: Mapping[str, Any] | None,
        select: Sequence[str] = queries.CRM_SELECT_ALL,
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

        def one(i: int) -> queries.ChainPages:
            upper = bounds[i][1]
            flt = dict(extra_filter or {})
            flt["<=id"] = upper
            commands = queries.keyset_chain(spec, cursors[i], select=select, extra_filter=flt)
            return queries.split_chain(self.batch(resource, commands), spec)

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
        """Product rows of the given deals: groups of deal ids per command, `>id` follow-ups of full pages."""
        pending: list[tuple[tuple[int, ...], int]] = [
            (group, 0) for group in queries.chunked(list(owner_ids), PRODUCT_ROWS_OWNERS_PER_COMMAND)
        ]
        while pending:
            current, pending = pending[:BATCH_LIMIT], pending[BATCH_LIMIT:]
            results = self.batch(resource, queries.product_rows_commands(current))
            queries.raise_first_error(results)
            for (owners, _after), res in zip(current, results, strict=True):
                rows = queries.rows_of(res.result, DEAL_PRODUCTS.list_key)
                if rows:
                    yield rows
                if len(rows) >= PAGE_SIZE:
                    pending.append((owners, int(rows[-1]["id"])))

    # -- tasks (v3) ------------------------------------------------------------------------------------

    def _tasks_exhausted(self, resource: str, tasks_command: queries.Cmd) -> bool:
        """Whether the tasks page of a rejected v3 batch is empty: the deliberate end-of-listing check.

        When the tasks page is empty, `{"$refArray": "tasks.id"}` resolves to an empty list, the portal
        rejects `in []` and, v3 batches being all-or-nothing (§5.6), the whole batch fails. Sending the
        same tasks query alone tells "the listing is over" (no rows) from a real error (rows: re-raise).
        Only a first batch can meet this (no task matches at all): later batches are sent only when the
        previous one's `last` look-ahead showed more tasks to come.
        """
        method, params = tasks_command
        rows = queries.rows_of(self.call(resource, method, params, version=TASKS.api_version), TASKS.list_key)
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
        seam: int | None = None  # newest-first: id of the last task of the previous page
        restarts = 0
        task_cap = queries.PageCap()
        result_cap = queries.PageCap()
        while True:
            if newest_first:
                # A small first page: an incremental run usually finds only a few changed tasks. Later pages
                # start one row early, so the seam with the previous page can be checked (see below).
                overlap = 1 if seam is not None else 0
                commands = queries.v3_tasks_recent_page(
                    offset - overlap,
                    limit=(_RECENT_FIRST_PAGE if offset == 0 else PAGE_SIZE) + overlap,
                    select=select,
                    results_select=results_select,
                    with_results=with_results,
                )
            else:
                commands = queries.v3_tasks_page(
                    after,
                    limit=PAGE_SIZE,
                    select=select,
                    results_select=results_select,
                    since=since_text,
                    with_results=with_results,
                )
            try:
                results = self.batch(resource, commands, version=TASKS.api_version)
                queries.raise_first_error(results)
            except ApiError as exc:
                if (
                    exc.permanent
                    and with_results
                    and self._tasks_exhausted(resource, commands[queries.TASKS_ALIAS])
                ):
                    return
                raise
            by_key = {res.key: res for res in results}
            tasks = queries.rows_of(by_key[queries.TASKS_ALIAS].result, TASKS.list_key)
            last = queries.rows_of(by_key[queries.LAST_ALIAS].result, TASKS.list_key)
            # A short page ends the listing; so does a full one holding the final task: no batch with an
            # empty tasks page (and an `in []` results filter the portal rejects) is ever sent for it.
            done = task_cap.is_last(len(tasks)) or queries.reaches_last_task(tasks, last)
            if newest_first:
                assert since is not None
                if seam is not None:
                    if not tasks or int(tasks[0]["id"]) != seam:
                        # Offset pages shift when tasks are deleted (or hidden) between two requests: a
                        # task would slip past the seam unseen and the stored cursor would move beyond it.
                        # Read the window again from the top; rows read twice merge on id.
                        restarts += 1
                        if restarts > _MAX_SEAM_RESTARTS:
                            raise Bitrix24Error(
                                f"tasks kept moving while they were paged newest-first "
                                f"({_MAX_SEAM_RESTARTS} restarts); run the load again",
                                code="LISTING_UNSTABLE",
                                method="tasks.task.list",
                            )
                        offset, seam = 0, None
                        task_cap = queries.PageCap()  # the short first page is not the end
                        continue
                    tasks = tasks[1:]
                fresh = [t for t in tasks if not _changed_before(t, since)]
                done = done or len(fresh) < len(tasks)
                offset += len(tasks)
                if tasks:
                    seam = int(tasks[-1]["id"])
            else:
                fresh = tasks
            task_results: list[dict[str, Any]] = []
            if with_results and tasks:
                task_results = queries.rows_of(by_key[queries.RESULTS_ALIAS].result, TASK_RESULTS.list_key)
                if result_cap.may_continue(len(task_results), PAGE_SIZE):
                    task_results.extend(
                        self._more_results(resource, tasks, task_results, results_select, result_cap)
                    )
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
        cap: queries.PageCap,
    ) -> list[dict[str, Any]]:
        """Results past the first full page: the page's task ids in groups, each continued by result id.

        The first page holds every result with id <= its last id (`order id ASC`), so each group starts
        after that id; groups run side by side in one v3 batch instead of one sequential page at a time.
        """
        seen = {int(r["id"]) for r in first_page}
        start_after = max(seen)
        pending: dict[tuple[int, ...], int | None] = {
            group: start_after
            for group in queries.chunked([int(t["id"]) for t in tasks], _RESULTS_TASKS_PER_COMMAND)
        }
        out: list[dict[str, Any]] = []
        while pending:
            batch_keys = list(pending)[:BATCH_LIMIT]
            current = {k: pending.pop(k) for k in batch_keys}
            results = self.batch(
                resource,
                queries.results_followups(current, limit=PAGE_SIZE, select=select),
                version=TASK_RESULTS.api_version,
            )
            queries.raise_first_error(results)
            for group, res in zip(current, results, strict=True):
                rows = queries.rows_of(res.result, TASK_RESULTS.list_key)
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
        select: Sequence[str] = ("id",) if spec.style == "crm_item" else queries.CRM_SELECT_ALL
        for page in self.keyset_pages(resource, spec, select=select):
            ids.update(int(row[spec.id_field]) for row in page)
        return ids


def _warehouse_rows(
    table: str, fields: Sequence[str], where_in: tuple[str, Sequence[int]] | None = None
) -> Iterator[tuple[Any, ...]]:
    """Stream `fields` of the running pipeline's destination table (nothing before the first load).

    Args:
        table: the table name.
        fields: Bitrix field names (normalised to column names by the pipeline's naming convention).
        where_in: (field, ints): keep only rows whose field is one of these values.
    """
    from dlt.destinations.exceptions import DatabaseUndefinedRelation

    pipeline = dlt.current.pipeline()
    if pipeline.destination is None:
        raise ConfigError("detect_deletes needs a pipeline with a destination (it compares ids with it)")
    naming = dlt.current.source_schema().naming
    try:
        with pipeline.sql_client() as client:

            def column(name: str) -> str:
                return client.escape_column_name(naming.normalize_identifier(name))

            columns = ", ".join(column(f) for f in fields)
            query = f"SELECT {columns} FROM {client.make_qualified_table_name(table)}"
            if where_in is not None:
                # ints only (int() below), so the values are safe to inline
                values = ", ".join(str(int(v)) for v in where_in[1])
                query += f" WHERE {column(where_in[0])} IN ({values})"
            with client.execute_query(query) as cursor:
                while chunk := cursor.fetchmany(10_000):
                    yield from chunk
    except DatabaseUndefinedRelation:
        return


def _scan_deletes(reader: _Reader, spec: EntitySpec) -> tuple[set[int], set[int]]:
    """(every id the portal has for the table, warehouse ids the portal no longer has)."""
    portal_ids = reader.portal_ids(spec.name, spec)
    stored = {int(id_) for (id_,) in _warehouse_rows(spec.name, ("id",))}
    return portal_ids, stored - portal_ids


def _tombstone_pages(ids: Iterable[int], *, final_page: bool = False) -> Iterator[list[dict[str, Any]]]:
    """`{"id": ..., "_deleted": true}` rows (dlt's merge hard-deletes them), 1,000 per page.

    Args:
        ids: the ids to delete.
        final_page: yield a page even when there is nothing to delete (see `_DealIds`).
    """
    missing = sorted(ids)
    for i in range(0, len(missing), 1000):
        yield [{"id": id_, DELETED_COLUMN: True} for id_ in missing[i : i + 1000]]
    if final_page and not missing:
        yield []


class _DealIds:
    """The deals resource's delete scan (every deal id on the portal), handed to `deal_products`.

    Product rows whose deal is gone can only be found against the portal's complete set of deal ids, which
    exists once the deals resource has scanned them. The deals resource puts the set here and then yields
    one more page (possibly empty), so the transformer is called after the hand-over at least once.
    """

    def __init__(self) -> None:
        self._ids: set[int] | None = None
        self._lock = threading.Lock()

    def put(self, ids: set[int] | None) -> None:
        with self._lock:
            self._ids = ids

    def take(self) -> set[int] | None:
        """The scanned ids once (None before the scan or after they were taken)."""
        with self._lock:
            ids, self._ids = self._ids, None
            return ids


def _product_row_tombstones(
    owner_ids: Sequence[int], read_ids: set[int], portal_deal_ids: set[int] | None
) -> Iterator[list[dict[str, Any]]]:
    """Product rows to hard-delete: rows of the deals just read that the portal no longer lists, and (when
    the deals scan is handed over) rows whose deal the portal no longer has."""
    table = DEAL_PRODUCTS.name
    gone: set[int] = set()
    if owner_ids:
        rows = _warehouse_rows(table, ("id",), where_in=("ownerId", owner_ids))
        gone.update(int(id_) for (id_,) in rows if int(id_) not in read_ids)
    if portal_deal_ids is not None:
        rows = _warehouse_rows(table, ("id", "ownerId"))
        gone.update(int(id_) for id_, owner in rows if owner is None or int(owner) not in portal_deal_ids)
    yield from _tombstone_pages(gone)


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
crm_item_productrow_list.json): used only when the portal has no `crm.item.productrow.fields`."""

_PRODUCT_ROW_UNDESCRIBED: frozenset[str] = frozenset({"priceAccount", "xmlId"})
"""Row fields that `crm.item.productrow.fields` does not describe (they cannot be written): typed from the
table above."""


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
        name: FieldMeta(name=name, type=t, title=name, multiple=name in multiple) for name, t in types.items()
    }


def _fetch_metadata(reader: _Reader) -> dict[str, dict[str, FieldMeta]]:
    """Field metadata of every entity: the four crm.item.fields calls in one v2 batch, task fields via v3."""
    meta: dict[str, dict[str, FieldMeta]] = {}
    commands: dict[str, queries.Cmd] = {
        spec.name: ("crm.item.fields", {"entityTypeId": spec.entity_type_id}) for spec in CRM_ENTITIES
    }
    assert DEAL_PRODUCTS.fields_method is not None
    # Last in the batch: if the portal lacks the method, the halt stops nothing after it.
    commands[DEAL_PRODUCTS.name] = (DEAL_PRODUCTS.fields_method, {})
    results = reader.batch("field_definitions", commands)
    crm_results, product_result = results[: len(CRM_ENTITIES)], results[len(CRM_ENTITIES)]
    queries.raise_first_error(crm_results)
    for spec, res in zip(CRM_ENTITIES, crm_results, strict=True):
        meta[spec.name] = parse_field_map(res.result)
    meta[DEAL_PRODUCTS.name] = _product_row_fields(product_result)
    assert USERS.fields_method is not None
    labels = parse_field_map(reader.call("field_definitions", USERS.fields_method, {}))
    typed = _static_fields(_USER_FIELD_TYPES, frozenset({"UF_DEPARTMENT"}))
    # Fields without a documented type are strings in user.get rows (§7.5).
    meta[USERS.name] = {
        name: FieldMeta(
            name=name,
            type=typed[name].type if name in typed else "string",
            title=f.title,
            multiple=typed[name].multiple if name in typed else False,
        )
        for name, f in labels.items()
    }
    assert TASKS.fields_method is not None
    meta[TASKS.name] = parse_field_map(
        reader.call("field_definitions", TASKS.fields_method, {}, version=TASKS.api_version)
    )
    meta[TASK_RESULTS.name] = _static_fields(_TASK_RESULT_FIELDS, frozenset({"fileIds"}))
    return meta


def _product_row_fields(res: CommandResult) -> dict[str, FieldMeta]:
    """deal_products field metadata from `crm.item.productrow.fields`, or the built-in table without it.

    Raises:
        Bitrix24Error: the call failed for any reason other than the method missing on the portal.
    """
    if res.ok:
        described = parse_field_map(res.result)
        # The description leaves out priceAccount and xmlId, which rows do carry
        # (DOCS api-reference/crm/universal/product-rows/crm-item-productrow-fields.md).
        undescribed = {k: t for k, t in _PRODUCT_ROW_FIELDS.items() if k in _PRODUCT_ROW_UNDESCRIBED}
        return {**described, **_static_fields(undescribed)}
    if res.error is not None and res.error.category == "method":
        logger.warning(
            "%s is not available on this portal (%s): deal_products column types come from the built-in "
            "field table",
            DEAL_PRODUCTS.fields_method,
            res.error.code,
        )
        return _static_fields(_PRODUCT_ROW_FIELDS)
    raise res.error or ApiError(
        f"{DEAL_PRODUCTS.fields_method}: command {res.key} was not executed", code="NOT_EXECUTED"
    )


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
    stats = _Stats()
    reader = _Reader(client, stats)
    run = _Run(reader, stats, lag_seconds, detect_deletes, partitions)
    meta = _fetch_metadata(reader)
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

    reader: _Reader
    stats: _Stats
    lag_seconds: float
    detect_deletes: bool
    partitions: int
    deal_ids: _DealIds = field(default_factory=_DealIds)


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
        since = _format_since(updated.start_value)
        extra = {f">={spec.cursor_field}": since} if since is not None else None
        try:
            if run.partitions > 1:
                pages = reader.partitioned_pages(spec.name, spec, run.partitions, extra)
            else:
                pages = reader.keyset_pages(
                    spec.name, spec, extra_filter=extra, first_length=1 if since is not None else BATCH_LIMIT
                )
            for page in pages:
                own.rows += len(page)
                kept = [row for row in page if not reader.after_scan_start(spec.name, row.get(cursor))]
                if kept:
                    yield [mapper(row) for row in kept]
            if run.detect_deletes:
                portal_ids, gone = _scan_deletes(reader, spec)
                if spec is DEALS:
                    run.deal_ids.put(portal_ids)
                yield from _tombstone_pages(gone, final_page=spec is DEALS)
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
        for page in run.reader.product_rows(name, owner_ids):
            own.rows += len(page)
            read_ids.update(int(row["id"]) for row in page)
            yield [mapper(row) for row in page]
        if run.detect_deletes:
            yield from _product_row_tombstones(owner_ids, read_ids, run.deal_ids.take())
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
            for page in run.reader.keyset_pages(USERS.name, USERS):
                own.rows += len(page)
                yield [mapper(_lower_id(row)) for row in page]
            if run.detect_deletes:
                yield from _tombstone_pages(_scan_deletes(run.reader, USERS)[1])
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
            pages = reader.task_pages(
                TASKS.name,
                select=select,
                results_select=results_select,
                since=_as_datetime(changed.start_value),
                changed_filterable=changed_filterable,
                with_results=want_results,
            )
            for task_page, result_page in pages:
                own.rows += len(task_page)
                # Tasks changed after the scan started wait for the next run (see _Reader.begin_scan).
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
