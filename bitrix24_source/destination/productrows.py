"""Deal product rows (``deal_products``) as a destination target: their pre-flight and re-run recognition.

One input row is one product row, written by its own command: a row with ``id`` is a
``crm.item.productrow.update``, one with ``_delete`` a ``crm.item.productrow.delete``, one without ``id`` a
``crm.item.productrow.add`` to the deal in its ``ownerId`` (``ownerType`` is ``D``). Why not
``crm.item.productrow.set``: it "will overwrite all existing product rows associated with the object"
(api-reference/crm/universal/product-rows/crm-item-productrow-set.md), so a frame holding one new row of a deal
would delete the deal's other rows, and its one answer per deal could not give each input row its own outcome;
the docs point to ``.add`` for adding a single row (product-rows/index.md).

Product rows have no field an outside system may write its id to (crm-item-productrow-fields.md lists none;
``xmlId`` appears in answers only), so an add cannot carry a marker. Instead the pre-flight reads the current
rows of every deal the adds name (``crm.item.productrow.list``), and an add whose values one of its deal's rows
already holds is ``already_applied`` with that row's id: k identical adds to a deal match at most k identical
rows, one each, and rows that other input rows update or delete are not matched. A re-run of the same input
therefore adds nothing; ``allow_duplicates=True`` adds such rows again on purpose. An add whose answer was lost
is recognised the same way (a matching row that was not there before) before it is resent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import replace
from typing import Any, Final

from dlt.common.destination.exceptions import DestinationTransientException

from bitrix24_source.destination.plan import Outcome, PlannedRow, holds_values
from bitrix24_source.destination.portal import NOT_FOUND_CODES, Portal, job_error
from bitrix24_source.destination.targets import DEAL_OWNER_TYPE, as_id
from bitrix24_source.errors import Bitrix24Error
from bitrix24_source.fields import EntityFields

OWNER_FIELD: Final = "ownerId"
_PAGE: Final = 50  # rows per crm.item.productrow.list page (crm-item-productrow-list.md, "start")
_OWNERS_PER_COMMAND: Final = 50


class ProductRowsPortal(Portal):
    """The deal product rows of one portal: reads by id and by deal, and recognition of lost adds."""

    def __init__(self, portal: Portal) -> None:
        super().__init__(portal.client, portal.target, portal.max_send_attempts)
        # Row ids each deal had when it was read: a lost add is a matching row that is not among them.
        self._seen: dict[int, set[int]] = {}

    def read_existing(
        self, ids: Sequence[int], fields: EntityFields, columns: Set[str] = frozenset()
    ) -> dict[int, dict[str, Any]] | None:
        """Pre-flight: the product rows `ids` name (id -> row); an id missing here does not exist.

        crm.item.productrow.list needs ``=ownerId`` in its filter (crm-item-productrow-list.md), which an
        update row need not give, so the rows are read one ``crm.item.productrow.get`` each, 50 to a batch.
        """
        return self.read_records(ids, ())

    def read_records(self, ids: Sequence[int], select: Sequence[str]) -> dict[int, dict[str, Any]]:
        """The product rows `ids` name, whole (``select`` is not needed: a row is small); used by the
        pre-flight and by the verification of rows whose answer was lost. One ``crm.item.productrow.get``
        per id: the list method needs the owner."""
        unique = sorted(set(ids))
        if not unique:
            return {}
        calls = [("crm.item.productrow.get", {"id": i}) for i in unique]
        try:
            batch = self.client.batch_by_chunk(calls, halt_on_error=False)
        except Bitrix24Error as exc:
            raise job_error(exc, "cannot read the product rows the input names") from None
        what = "cannot read the product rows the input names"
        found: dict[int, dict[str, Any]] = {}
        for id_, r in zip(unique, batch.results, strict=True):
            if r.error is not None and r.error.code.upper() in NOT_FOUND_CODES:
                continue  # crm-item-productrow-get.md: NOT_FOUND "Item not found"
            if r.error is not None:
                raise job_error(r.error, what)
            if not r.ok:
                raise DestinationTransientException(
                    f"bitrix24 destination: {what}: command {r.key} was not run"
                )
            row = r.result.get("productRow") if isinstance(r.result, Mapping) else None
            if isinstance(row, Mapping):
                found[id_] = dict(row)
        return found

    def read_deal_rows(self, deals: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
        """The product rows of `deals` now (deal id -> rows in id order); remembered as "seen".

        One ``crm.item.productrow.list`` per 50 deals (``=ownerId`` takes an array, crm-item-productrow-
        list.md), 50 commands to a batch; a full page is continued after its last id (``>id``).
        """
        wanted = sorted(set(deals))
        out: dict[int, list[dict[str, Any]]] = {d: [] for d in wanted}
        pending = [
            (wanted[k : k + _OWNERS_PER_COMMAND], 0) for k in range(0, len(wanted), _OWNERS_PER_COMMAND)
        ]
        while pending:
            calls = [("crm.item.productrow.list", _list_params(group, after)) for group, after in pending]
            results = self._read_all(calls, "cannot read the product rows of the deals the input names")
            following: list[tuple[list[int], int]] = []
            for (group, _), result in zip(pending, results, strict=True):
                rows = self.target.lookup_rows(result)
                for row in rows:
                    owner = as_id(row.get(OWNER_FIELD))
                    if owner in out and as_id(row.get("id")) is not None:
                        out[owner].append(row)
                if len(rows) >= _PAGE and (last := as_id(rows[-1].get("id"))) is not None:
                    following.append((group, last))
            pending = following
        for deal, rows in out.items():
            self._seen.setdefault(deal, set()).update(
                i for r in rows if (i := as_id(r.get("id"))) is not None
            )
        return out

    def recognise_adds(self, planned: Sequence[PlannedRow]) -> list[PlannedRow]:
        """Pre-flight: adds whose row their deal already holds get that row's id (``already_applied``)."""
        adds = [p for p in planned if _is_add(p)]
        if not adds:
            return list(planned)
        deal_rows = self.read_deal_rows([_owner(p) for p in adds])
        return match_added(planned, deal_rows)

    def _verify_adds(self, rows: Sequence[PlannedRow], outcomes: dict[int, Outcome]) -> None:
        """Adds whose outcome is unknown: a matching row of their deal that was not there when the deal was
        read is this add's (recorded ok, not resent)."""
        adds = [p for p in rows if _is_add(p)]
        if not adds:
            return
        claimed = {o.bitrix_id for o in outcomes.values() if o.bitrix_id is not None}
        seen = {deal: set(ids) for deal, ids in self._seen.items()}
        deal_rows = self.read_deal_rows([_owner(p) for p in adds])
        for p in adds:
            deal = _owner(p)
            fresh = [r for r in deal_rows.get(deal, []) if as_id(r.get("id")) not in seen.get(deal, set())]
            for row in fresh:
                row_id = as_id(row.get("id"))
                if row_id is not None and row_id not in claimed and holds_values(row, _sent(p)):
                    claimed.add(row_id)
                    outcomes[p.row_number] = Outcome("ok", row_id)
                    break


def match_added(
    planned: Sequence[PlannedRow], deal_rows: Mapping[int, Sequence[Mapping[str, Any]]]
) -> list[PlannedRow]:
    """Give each add the id of a row of its deal that holds all of its values, one row per add, in input
    order; rows that other input rows update or delete are left alone (pure)."""
    touched = {
        p.bitrix_id for p in planned if p.operation in ("update", "delete") and p.bitrix_id is not None
    }
    claimed: set[int] = set()
    out: list[PlannedRow] = []
    for p in planned:
        if _is_add(p) and p.existing_id is None:
            for row in deal_rows.get(_owner(p), ()):
                row_id = as_id(row.get("id"))
                if row_id is None or row_id in touched or row_id in claimed:
                    continue
                if holds_values(row, _sent(p)):
                    claimed.add(row_id)
                    p = replace(p, existing_id=row_id)
                    break
        out.append(p)
    return out


def _list_params(deals: Sequence[int], after: int) -> dict[str, Any]:
    # crm-item-productrow-list.md: the filter must hold =ownerType and =ownerId ("=" works with arrays).
    flt: dict[str, Any] = {"=ownerType": DEAL_OWNER_TYPE, "=ownerId": list(deals)}
    if after:
        flt[">id"] = after
    return {"filter": flt, "order": {"id": "ASC"}}


def _is_add(p: PlannedRow) -> bool:
    return p.is_valid and p.operation == "add" and p.params is not None


def _sent(p: PlannedRow) -> Mapping[str, Any]:
    assert p.params is not None
    fields: Mapping[str, Any] = p.params["fields"]
    return fields


def _owner(p: PlannedRow) -> int:
    return as_id(_sent(p).get(OWNER_FIELD)) or 0
