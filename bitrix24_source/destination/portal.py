"""The destination's side of the wire: field metadata, directories, look-ups and sending; I/O through the client.

:class:`Portal` is one entity of one portal as a load job writes it: it reads what planning needs and sends a
chunk's commands as v2 batches with ``halt=0`` (§4.2) until every row has a known outcome. v3 batches are
all-or-nothing (§5.6), so they could not report per-row outcomes and are not used. :class:`PortalCache` is
what the jobs of one destination share: the client (and its limiter), and the metadata read once per load.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from bitrix24_source.destination.directories import parse_directory
from bitrix24_source.destination.dlt_adapter import JobFailedError, JobRetryError
from bitrix24_source.destination.options import DestinationOptions
from bitrix24_source.destination.plan import Outcome, PlannedRow, holds_values, normalise_key
from bitrix24_source.destination.targets import WriteTarget, added_id, as_id, comm_key
from bitrix24_source.errors import Bitrix24Error, mask
from bitrix24_source.fields import EntityFields, parse_crm_item_fields, parse_task_fields

if TYPE_CHECKING:
    from bitrix24_source.client import Bitrix24Client

NOT_FOUND_CODES: Final = frozenset({"NOT_FOUND", "ERROR_ENTITY_NOT_FOUND"})
_REQUEST_LEVEL_CATEGORIES: Final = frozenset({"auth", "rate_limit"})
# Error categories in which the portal refused the command, so it did not run (bitrix24_source.errors).
_REJECTED_CATEGORIES: Final = frozenset({"validation", "not_found", "access", "method", "auth", "rate_limit"})
_LOOKUP_GROUP: Final = 50  # values per "in" filter command, and rows per list page (§3.1)


class Portal:
    """One target entity of one portal, through one client."""

    def __init__(
        self, client: Bitrix24Client, target: WriteTarget, max_send_attempts: int, host: str | None = None
    ) -> None:
        self.client = client
        self.target = target
        self.max_send_attempts = max_send_attempts
        self.host = host  # the portal's host[:port], for errors that are about reaching it

    def read_fields(self) -> EntityFields:
        """The entity's field metadata (crm.item.fields / tasks.task.getFields).

        This is a load's first request, sent once: a portal that refuses the connection or whose name does not
        resolve, and a webhook the portal refuses, fail the load at once with that label, instead of after
        the client's backoff (and dlt's job retries after it): a wrong URL, a portal that is down or a wrong
        webhook do not fix themselves meanwhile. Any other failure is sent again as the client's retry
        policy says.
        """
        target = self.target
        what = f"cannot read the field metadata of {target.entity}"
        policy = self.client.retry
        self.client.retry = replace(policy, max_attempts=1)
        try:
            result = self.client.call(target.fields_method, target.fields_params()).result
        except Bitrix24Error as exc:
            error = job_error(exc, what, self.host)
            if isinstance(error, JobFailedError) or policy.max_attempts <= 1:
                raise error from None
            self.client.retry = replace(policy, max_attempts=policy.max_attempts - 1)
            try:
                result = self.client.call(target.fields_method, target.fields_params()).result
            except Bitrix24Error as again:
                raise job_error(again, what, self.host) from None
        finally:
            self.client.retry = policy
        parse = parse_task_fields if target.family == "tasks" else parse_crm_item_fields
        return parse(result)

    def read_directories(self, entity_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """The crm.status directories (stages, sources, types) named by `entity_ids`.

        All of them come in one v2 batch of ``crm.status.list`` calls, one per ENTITY_ID; the method has no
        paging (DOCS crm-status-list.md: "select" and navigation are not supported), so one call is the whole
        directory.
        """
        calls = [
            ("crm.status.list", {"filter": {"ENTITY_ID": entity_id}, "order": {"SORT": "ASC"}})
            for entity_id in entity_ids
        ]
        results = self._read_all(calls, f"cannot read the crm.status directories of {self.target.entity}")
        return {entity_id: parse_directory(r) for entity_id, r in zip(entity_ids, results, strict=True)}

    def lookup(self, field_name: str, values: Sequence[str]) -> dict[str, list[int]]:
        """Map each of `values` to the ids of the records whose `field_name` holds it (absent: none).

        CRM: one ``crm.item.list`` with an ``@field`` ("in") filter per 50 values, 50 such commands chained to
        a batch request, so 2,500 values cost one request. One page holds 50 rows (§3.1): a command whose
        page is full may have missed holders, and its values are asked again one command each. Tasks have
        no documented "in" filter for their marker field: one command per value.
        """
        unique = sorted(set(values))
        if not unique:
            return {}
        target = self.target
        kind = comm_key(field_name)
        if kind is not None and target.family == "crm_item":
            return self._lookup_comm(kind, unique)
        groups = [unique[k : k + _LOOKUP_GROUP] for k in range(0, len(unique), _LOOKUP_GROUP)]
        if target.lookup_many_params(field_name, groups[0]) is None:
            return self._lookup_each(field_name, unique)
        calls = [(target.list_method, target.lookup_many_params(field_name, g) or {}) for g in groups]
        results = self._read_all(calls, f"cannot look up {field_name} on {target.entity}")
        found: dict[str, set[int]] = {}
        crowded: list[str] = []
        for group, result in zip(groups, results, strict=True):
            rows = target.lookup_rows(result)
            if len(rows) >= _LOOKUP_GROUP:
                crowded.extend(group)
                continue
            wanted = set(group)
            for row in rows:
                value = _held(row, field_name)
                if value in wanted and (record_id := as_id(_squashed_get(row, target.id_field))) is not None:
                    found.setdefault(value, set()).add(record_id)
        out = {value: sorted(ids) for value, ids in found.items()}
        out.update(self._lookup_each(field_name, crowded))
        return out

    def read_existing(
        self, ids: Sequence[int], fields: EntityFields, columns: Set[str] = frozenset()
    ) -> dict[int, dict[str, Any]] | None:
        """Pre-flight: the records `ids` name as they are now: ``categoryId`` when the entity has one, and the
        fields the input `columns` name (so that an update that would change nothing can be skipped).

        One request per 2,500 ids (:meth:`read_records`); a page holds the 50 records of its 50 ids. Records
        are keyed by the canonical field names of `fields` (tasks list camelCase, their fields are
        UPPER_CASE).
        """
        named = {canonical for c in columns if (canonical := fields.resolve(c)) is not None}
        wanted = named | ({"categoryId"} if self.target.family == "crm_item" else set())
        select = sorted(name for name in wanted if name in fields.fields and name.lower() != "id")
        records = self.read_records(ids, select) if ids else {}
        return {i: _canonical(row, select) for i, row in records.items()}

    def read_records(self, ids: Sequence[int], select: Sequence[str]) -> dict[int, dict[str, Any]]:
        """The records `ids` name (id -> row with the `select` fields, in the list method's spelling); absent
        ids are not there. 50 ids per list command ("in" filter), 50 commands per batch request.

        CRM: ``crm.item.list`` with ``@id`` (api-reference/crm/universal/crm-item-list.md). Tasks:
        ``tasks.task.list`` with an array of ids under ``ID``, the task filter's "in" form
        (api-reference/tasks/deprecated/task-item/task-item-list.md filters ``'ID' => [1, 2, ...]``; the list
        methods share that filter). A task the webhook's user cannot see is not listed, as if absent: the
        portal would refuse to write it too.
        """
        target = self.target
        unique = sorted(set(ids))
        groups = [unique[k : k + _LOOKUP_GROUP] for k in range(0, len(unique), _LOOKUP_GROUP)]
        calls = [(target.list_method, _records_params(target, group, select)) for group in groups]
        records: dict[int, dict[str, Any]] = {}
        results = self._read_all(calls, f"cannot read records of {target.entity}") if calls else []
        for group, result in zip(groups, results, strict=True):
            wanted = set(group)
            rows = target.lookup_rows(result)
            listed = {as_id(_squashed_get(row, target.id_field)) for row in rows}
            if listed - wanted:
                # The filter was not applied (a portal that ignores an array under ID would list any 50
                # tasks): absent ids could not be told from unlisted ones, so nothing is concluded.
                raise JobFailedError(
                    f"bitrix24 destination: cannot read records of {target.entity}: {target.list_method} "
                    f"ignored the id filter (listed ids {_some_ids(listed - wanted)} that were not asked for)"
                )
            for row in rows:
                record_id = as_id(_squashed_get(row, target.id_field))
                if record_id is not None:
                    records[record_id] = row
        return records

    def _lookup_comm(self, kind: str, values: Sequence[str]) -> dict[str, list[int]]:
        """Emails / phones -> the ids of this entity's records holding them: one crm.duplicate.findbycomm
        per value (its answer does not say which value matched), 50 to a batch request."""
        calls = [("crm.duplicate.findbycomm", self.target.comm_lookup_params(kind, v)) for v in values]
        results = self._read_all(calls, f"cannot look up {kind.lower()} on {self.target.entity}")
        return {v: ids for v, r in zip(values, results, strict=True) if (ids := self.target.comm_ids(r))}

    def _lookup_each(self, field_name: str, values: Sequence[str]) -> dict[str, list[int]]:
        """One list command per value, batched 50 to a request."""
        target = self.target
        found: dict[str, list[int]] = {}
        if not values:
            return found
        calls = [(target.list_method, target.lookup_params(field_name, value)) for value in values]
        results = self._read_all(calls, f"cannot look up {field_name} on {target.entity}")
        for value, result in zip(values, results, strict=True):
            ids = {
                record_id
                for row in target.lookup_rows(result)
                if _held(row, field_name) == value
                and (record_id := as_id(_squashed_get(row, target.id_field))) is not None
            }
            if ids:
                found[value] = sorted(ids)
        return found

    def send(self, valid: Sequence[PlannedRow], maybe_sent: Set[int], outcomes: dict[int, Outcome]) -> None:
        """Send the valid rows of a chunk as v2 batches (halt=0) until every row has a known outcome.

        Each outcome is put into `outcomes` as soon as it is known, so that the caller keeps them when a later
        request of the chunk fails the job. Rows in `maybe_sent` may have landed in an earlier attempt: they
        are verified on the portal first (:meth:`verify`), and a delete of theirs that answers
        ``NOT_FOUND`` counts as ok (the lost attempt did it).
        """
        uncertain = {p.row_number for p in valid if p.row_number in maybe_sent}
        outcomes.update(self.verify([p for p in valid if p.row_number in uncertain]))
        to_send = [p for p in valid if p.row_number not in outcomes]
        attempt = 0
        while to_send:
            attempt += 1
            retry = self._send_once(to_send, uncertain, outcomes)
            if retry and attempt >= self.max_send_attempts:
                raise JobRetryError(
                    f"bitrix24 destination: {len(retry)} writes to {self.target.entity} still have no known "
                    f"outcome after {attempt} attempts; the job will be retried and will verify them first"
                )
            outcomes.update(self.verify([p for p in retry if p.row_number in uncertain]))
            to_send = [p for p in retry if p.row_number not in outcomes]

    def _send_once(
        self, to_send: Sequence[PlannedRow], uncertain: set[int], outcomes: dict[int, Outcome]
    ) -> list[PlannedRow]:
        """One batch request: record the known outcomes, return the rows that have to go round again."""
        what = f"batch write to {self.target.entity} failed"
        try:
            batch = self.client.batch([(p.method, p.params) for p in to_send], halt_on_error=False)
        except Bitrix24Error as exc:
            raise job_error(exc, what, self.host) from None
        retry: list[PlannedRow] = []
        unproven: dict[int, tuple[PlannedRow, Outcome]] = {}
        refused: Bitrix24Error | None = None
        for p, r in zip(to_send, batch.results, strict=True):
            if (
                r.error is not None
                and r.error.category in _REQUEST_LEVEL_CATEGORIES
                and r.outcome != "unknown"
            ):
                # Auth and rate-limit failures concern the request, not the row: fail (or retry) the job
                # once the other rows' outcomes are recorded; the in-flight checkpoint makes the next attempt
                # verify what may have landed.
                refused = refused or r.error
                continue
            if r.outcome == "ok":
                new_id = added_id(r.method, r.result) if p.operation == "add" else p.bitrix_id
                outcomes[p.row_number] = Outcome("ok", new_id)
            elif r.outcome == "error":
                code = r.error.code if r.error is not None else ""
                text = r.error.description if r.error is not None else "unknown error"
                if p.operation == "delete" and p.row_number in uncertain and code.upper() in NOT_FOUND_CODES:
                    # The lost attempt deleted it (the pre-flight saw the record before that attempt).
                    outcomes[p.row_number] = Outcome("ok", p.bitrix_id)
                elif r.error is None or r.error.category not in _REJECTED_CATEGORIES:
                    # A server error (or an empty one) does not prove the command did not run.
                    unproven[p.row_number] = (p, Outcome("error", None, code, mask(text)))
                else:
                    outcomes[p.row_number] = Outcome("error", None, code, mask(text))
            else:
                # "unknown": it may have been applied; "not_executed": it was not. Both go round again,
                # adds only after their markers were looked up.
                if r.outcome == "unknown":
                    uncertain.add(p.row_number)
                retry.append(p)
        if unproven:
            outcomes.update(self._verify_errors(list(unproven.values())))
        if refused is not None:
            raise job_error(refused, what, self.host)
        return retry

    def _verify_errors(self, failed: Sequence[tuple[PlannedRow, Outcome]]) -> dict[int, Outcome]:
        """Check on the portal whether commands that answered an error that proves nothing ran anyway; what
        cannot be shown to have run keeps the portal's error."""
        out = {p.row_number: outcome for p, outcome in failed}
        out.update(self.verify([p for p, _ in failed]))
        return out

    def verify(self, rows: Sequence[PlannedRow]) -> dict[int, Outcome]:
        """The rows of `rows` that the portal shows applied, as ``ok`` outcomes; the others are left out.

        Adds are looked up by marker (looked up before their first send, so finding it proves the add);
        deletes and updates are read back by id: a deleted record is gone, an updated one holds every value
        that was sent.
        """
        verified: dict[int, Outcome] = {}
        self._verify_adds([p for p in rows if p.operation == "add"], verified)
        others = [p for p in rows if p.operation in ("update", "delete") and p.bitrix_id is not None]
        if others:
            select = sorted({name for p in others for name in (p.params or {}).get("fields", {})})
            records = self.read_records([p.bitrix_id for p in others if p.bitrix_id is not None], select)
            for p in others:
                held = records.get(p.bitrix_id or 0)
                sent = (p.params or {}).get("fields", {})
                if (p.operation == "delete" and held is None) or (
                    p.operation == "update"
                    and held is not None
                    and holds_values(_canonical(held, sent), sent)
                ):
                    verified[p.row_number] = Outcome("ok", p.bitrix_id)
        return verified

    def _verify_adds(self, rows: Sequence[PlannedRow], outcomes: dict[int, Outcome]) -> None:
        """Look up the markers of adds whose outcome is unknown; record found ones as ok (no resend)."""
        by_field: dict[str, list[PlannedRow]] = {}
        for p in rows:
            if p.operation == "add" and p.marker is not None and p.marker_field is not None:
                by_field.setdefault(p.marker_field, []).append(p)
        for field_name, group in by_field.items():
            found = self.lookup(field_name, [p.marker for p in group if p.marker is not None])
            for p in group:
                if p.marker in found:
                    outcomes[p.row_number] = Outcome("ok", found[p.marker][0])

    def _read_all(self, calls: Sequence[tuple[str, dict[str, Any]]], what: str) -> list[Any]:
        """The results of read commands, batched 50 to a request; any failed command fails the job."""
        try:
            batch = self.client.batch_by_chunk(calls, halt_on_error=False)
        except Bitrix24Error as exc:
            raise job_error(exc, what, self.host) from None
        for r in batch.results:
            if r.error is not None:
                raise job_error(r.error, what)
            if not r.ok:
                raise JobRetryError(f"bitrix24 destination: {what}: command {r.key} was not run")
        return [r.result for r in batch.results]


class PortalCache:
    """What the load jobs of one destination share: the client, and the metadata read once per load."""

    def __init__(self, options: DestinationOptions) -> None:
        self.options = options
        self._client: Bitrix24Client | None = None
        self._client_url: str | None = None
        self._fields: dict[tuple[str, str], EntityFields] = {}
        self._directories: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
        self._lock = threading.Lock()

    def portal(self, webhook_url: str, target: WriteTarget) -> Portal:
        """`target` on the portal of `webhook_url`, through the one client (and limiter) of this destination."""
        from bitrix24_source.client import Bitrix24Client

        o = self.options
        with self._lock:
            if self._client is None or self._client_url != webhook_url:
                self._client = Bitrix24Client(
                    webhook_url=webhook_url,
                    timeout=o.timeout,
                    rate_limit=o.rate_limit,
                    operating_limit=o.operating_limit,
                    verify=o.verify,
                )
                self._client_url = webhook_url
            return Portal(self._client, target, o.max_send_attempts, urlsplit(webhook_url).netloc)

    def fields(self, portal: Portal, load_id: str) -> EntityFields:
        """The target's field metadata, read once per load."""
        cache_key = (load_id, portal.target.entity)
        if cache_key not in self._fields:
            self._fields[cache_key] = portal.read_fields()
        return self._fields[cache_key]

    def directories(self, portal: Portal, load_id: str, needed: set[str]) -> dict[str, dict[str, str]]:
        """The directories `needed` names; a later job of the load only reads those it is the first to need."""
        cache = self._directories.setdefault((load_id, portal.target.entity), {})
        missing = sorted(needed - cache.keys())
        if missing:
            cache.update(portal.read_directories(missing))
        return cache

    def forget(self, load_id: str) -> None:
        """Drop the metadata read for a load that is complete (a long-lived process runs many loads)."""
        with self._lock:
            for cache in (self._fields, self._directories):
                for cache_key in [k for k in cache if k[0] == load_id]:
                    del cache[cache_key]


# The portal cannot be reached at all (the client already retried): retrying the job would only replay the
# same wait, and the fix (the URL, the network) is the user's.
UNREACHABLE_CODES: Final = frozenset({"CONNECTION_REFUSED", "DNS_ERROR"})


def job_error(exc: Bitrix24Error, what: str, host: str | None = None) -> Exception:
    """dlt retries transient job errors and fails terminal ones; map a client error to the right kind.

    Terminal: configuration, authentication and scope errors, and a portal that cannot be reached. The text
    is one line with the error's code; callers raise it ``from None``: dlt prints a failed job's traceback
    into its message and its log, and the client's chain under it (urllib3, requests, retries) told the
    user nothing the code does not.
    """
    description = exc.description
    if exc.code == "CONNECTION_REFUSED":
        # The client's text carries urllib3's whole repr (pool, url, request id): the host says it all.
        description = (
            f"connection refused{f' by {host}' if host else ''}: the portal is down or the URL is wrong"
        )
    text = mask(f"bitrix24 destination: {what}: [{exc.code}] {description}")
    if exc.permanent or exc.category in ("auth", "access", "config") or exc.code in UNREACHABLE_CODES:
        return JobFailedError(text)
    return JobRetryError(text)


def _records_params(target: WriteTarget, ids: Sequence[int], select: Sequence[str]) -> dict[str, Any]:
    """A list command for the records `ids` (at most one page of them) with the `select` fields."""
    if target.family == "crm_item":
        return {
            "entityTypeId": target.entity_type_id,
            "filter": {"@id": list(ids)},
            "select": ["id", *select],
            "order": {"id": "ASC"},
        }
    return {"filter": {"ID": list(ids)}, "select": ["ID", *select], "order": {"ID": "ASC"}}


def _canonical(row: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The fields `names` of a listed record, under those names (the list may spell them otherwise: a task
    lists ``responsibleId`` for ``RESPONSIBLE_ID``); fields the record does not list are left out."""
    out: dict[str, Any] = {}
    for name in names:
        key = name if name in row else _squashed_key(row, name)
        if key is not None:
            out[name] = row[key]
    return out


def _some_ids(ids: Iterable[int | None]) -> str:
    shown = sorted(i for i in ids if i is not None)
    return ", ".join(str(i) for i in shown[:5]) + (", ..." if len(shown) > 5 else "")


def _held(row: Mapping[str, Any], field_name: str) -> str | None:
    """The key a record holds in `field_name`, normalised like the input's keys (a numeric field comes back
    as a number or a string of digits)."""
    value = _squashed_get(row, field_name)
    return None if value is None else normalise_key(value)


def _squashed_get(row: Mapping[str, Any], name: str) -> Any:
    """`row[name]`, or the value of the column that spells `name` with other case or underscores."""
    if name in row:
        return row[name]
    key = _squashed_key(row, name)
    return None if key is None else row[key]


def _squashed_key(row: Mapping[str, Any], name: str) -> str | None:
    wanted = name.replace("_", "").lower()
    return next((str(k) for k in row if str(k).replace("_", "").lower() == wanted), None)
