"""The sandbox portal's state: its tables, clock and method dispatch.

`PortalState` is the seam between the HTTP core (routing, auth, envelopes, batches, limits) and the data
side: the server parses a request, then calls `dispatch(version, method, params, ctx)` and renders the
`MethodResult` or `ApiError` it gets back. Nothing here knows about HTTP.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from typing import Any

from bitrix24_source.sandbox import (
    methods_activity,
    methods_crm,
    methods_dupes,
    methods_items,
    methods_productrows,
    methods_reference,
    methods_tasks,
    methods_users,
)
from bitrix24_source.sandbox.fields import (
    CATALOGUES,
    CRM_ENTITIES,
    FM_ENTITIES,
    ITEM_ENTITY_TYPE_IDS,
    ITEM_TYPES,
    CrmCatalogue,
    stage_semantic,
)
from bitrix24_source.sandbox.generator import (
    HISTORY_CREATED,
    HISTORY_FINAL,
    HISTORY_MOVED,
    HISTORY_PIPELINE,
    HISTORY_TYPES,
    generate,
    product_row,
    stage_history_row,
)
from bitrix24_source.sandbox.store import Clock, Table, iso
from bitrix24_source.sandbox.types import (
    ENTITIES,
    ApiError,
    CallContext,
    CostModel,
    Handler,
    MethodResult,
    SeedCounts,
)

_V2: dict[str, Handler] = {
    **methods_crm.METHODS_V2,
    **methods_reference.METHODS_V2,
    **methods_users.METHODS_V2,
    **methods_tasks.METHODS_V2,
    **methods_items.METHODS_V2,
    **methods_activity.METHODS_V2,
    **methods_dupes.METHODS_V2,
    **methods_productrows.METHODS_V2,
}
_V3: dict[str, Handler] = dict(methods_tasks.METHODS_V3)
_WRITES = methods_crm.WRITES | methods_tasks.WRITES | methods_activity.WRITES | methods_productrows.WRITES
DEFAULT_V3_LIMITS = {"tasks.task.list": 50, "tasks.task.result.list": 50}

# Which key each entity bumps when a row changes (crm.item `updatedTime`, v3 task `changed`, …).
_CHANGED_KEY = {
    **dict.fromkeys(ITEM_ENTITY_TYPE_IDS, "updatedTime"),
    "activities": "LAST_UPDATED",
    "tasks": "changed",
    "task_results": "updatedAt",
    "users": "TIMESTAMP_X",
}


# Every entity crm.item.* reads and writes: the four classic ones, quotes, invoices and smart processes.
_ITEM_ENTITIES = frozenset(ITEM_ENTITY_TYPE_IDS)
# Names `rows()` and friends accept besides the table names (the warehouse tables' names).
_ALIASES = {"crm_statuses": "statuses"}


# Keys blank_crm_row stamps with the clock; a generated row always has its own.
_STAMPS = frozenset({"createdTime", "updatedTime", "movedTime"})


def _copy_row(row: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, list):
            out[key] = [dict(x) if isinstance(x, dict) else x for x in value]
        else:
            out[key] = value
    return out


class PortalState:
    """All data of one sandbox portal and the Bitrix24 methods that read and change it.

    Args:
        seed: seed of the data generator; the same seed and counts give the same portal.
        counts: how many rows of each entity to generate.
        cost_model: simulated operating cost of each call (§6.1), reported in `MethodResult.cost`.
        v3_limits: per-method caps of v3 `pagination.limit` (§5.2); defaults to 50 for the task lists.
        catalogue: `"docs"` (default) serves exactly the documented catalogue: CRM fields of object-fields.md (no `xmlId`; `originId`/`originatorId`),
            `entityTypeId` on whole-item list rows, and the PHP type words of the documented
            tasks.task.field.list answer. docs/sandbox-deviations.md lists what still differs. `"legacy"` keeps
            the older, invented field set: `xmlId` on every CRM entity, v3 task field-list type words
            `integer`/`datetime`/`enum`/`boolean`.
    """

    def __init__(
        self,
        *,
        seed: int,
        counts: SeedCounts,
        cost_model: CostModel,
        v3_limits: dict[str, int] | None = None,
        catalogue: str = "docs",
    ) -> None:
        if catalogue not in CATALOGUES:
            raise ValueError(f"unknown catalogue {catalogue!r}; expected one of {', '.join(CATALOGUES)}")
        self.crm: CrmCatalogue = CATALOGUES[catalogue]
        self.lock = threading.RLock()
        self.seed = seed
        self.counts = counts
        self.cost_model = cost_model
        self._v3_limits = {**DEFAULT_V3_LIMITS, **(v3_limits or {})}
        self._clock = Clock()
        self._rng = random.Random(seed + 1)
        self._tables: dict[str, Table] = {
            name: Table(name, self.lock)
            for name in ENTITIES
            if name not in ("users", "deal_products", "task_results")
        }
        self._tables["users"] = Table("users", self.lock, id_key="ID", id_as_str=True)
        self._tables["deal_products"] = Table("deal_products", self.lock, indexed=("ownerId",))
        self._tables["task_results"] = Table("task_results", self.lock, indexed=("taskId",))
        # Reference data (crm.status.*), the same for every seed; not one of ENTITIES.
        self._tables["statuses"] = Table(
            "statuses", self.lock, id_key="ID", id_as_str=True, indexed=("ENTITY_ID",)
        )
        for status in methods_reference.status_rows():
            self._tables["statuses"].insert(status)
        for entity in ITEM_TYPES:
            self._tables[entity] = Table(entity, self.lock)
        self._tables["spa_types"] = Table("spa_types", self.lock)
        for spa_type in methods_items.spa_type_rows():
            self._tables["spa_types"].insert(spa_type)
        self._tables["crm_categories"] = Table("crm_categories", self.lock, indexed=("entityTypeId",))
        for category in methods_reference.category_rows():
            self._tables["crm_categories"].insert(category, category["id"])
        self._tables["departments"] = Table("departments", self.lock, id_key="ID")
        self._tables["activities"] = Table("activities", self.lock, id_key="ID")
        for type_id in HISTORY_TYPES.values():
            name = f"stage_history_{type_id}"
            self._tables[name] = Table(name, self.lock, id_key="ID")
        with self.lock:
            generate(seed, counts, self._tables)
            if self.crm.name != "legacy":
                self._conform_rows()
            self._fm_next = 1 + max(
                (
                    fm["id"]
                    for e in FM_ENTITIES
                    for row in self._tables[e].all()
                    for fm in row.get("fm") or []
                ),
                default=0,
            )

    # -- seam -----------------------------------------------------------------------------------------------
    def dispatch(self, version: int, method: str, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        """Run one method call. Raises `ApiError` exactly where the real portal answers with an error."""
        handler = (_V3 if version == 3 else _V2).get(method)
        if handler is None:
            if version == 3:
                # §2.3 table (status not documented; 404 like v2).
                raise ApiError("BITRIX_REST_V3_EXCEPTION_METHODNOTFOUNDEXCEPTION", "Method not found", 404)
            # §2.2 error table.
            raise ApiError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
        with self.lock:
            return handler(self, params if isinstance(params, dict) else {}, ctx)

    def is_write(self, method: str) -> bool:
        """Whether the method changes data (the HTTP core uses this for `phase="after"` faults)."""
        return method in _WRITES

    def rows(self, entity: str) -> list[dict[str, Any]]:
        """Copies of all rows of `entity` in canonical form, ordered by id.

        `stage_history` is every crm.stagehistory.list row with its `entityTypeId` in front, ordered by
        (entityTypeId, ID): the history ids are numbered per entity type.
        """
        with self.lock:
            if entity == "stage_history":
                return [
                    {"entityTypeId": type_id, **_copy_row(r)}
                    for type_id in sorted(HISTORY_TYPES.values())
                    for r in self.table(f"stage_history_{type_id}").all()
                ]
            return [_copy_row(r) for r in self.table(_ALIASES.get(entity, entity)).all()]

    def add_row(self, entity: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Insert a row given in canonical form; defaults and creation/change timestamps are filled in."""
        with self.lock:
            now = self.now()
            if entity == "stage_history":
                values = dict(fields)
                type_id = values.pop("entityTypeId")
                return _copy_row(self.table(f"stage_history_{type_id}").insert(values))
            entity = _ALIASES.get(entity, entity)
            if entity in _ITEM_ENTITIES:
                row = methods_crm.blank_crm_row(self.crm, entity, user_id=1, now=now)
                row.update(fields)
                if "stageId" in fields and entity in CRM_ENTITIES:
                    row["stageSemanticId"] = stage_semantic(entity, row["stageId"])
                self.assign_fm_ids(row)
                methods_crm.derive_flags(self.crm, entity, row)
                out = self.table(entity).insert(row)
                if "title" in out and not out["title"]:
                    out["title"] = f"{entity[:-1].title()} #{out['id']}"
                self.record_stage(entity, out, None)
            elif entity == "tasks":
                out = methods_tasks.create_task(self, dict(fields), user_id=int(fields.get("creatorId") or 1))
            else:
                row = self._blank(entity, now)
                row.update(fields)
                out = self.table(entity).insert(row)
                if entity == "task_results":
                    self._mark_results(out.get("taskId"))
            return _copy_row(out)

    def update_row(self, entity: str, id: int, fields: dict[str, Any]) -> dict[str, Any]:
        """Change a row in place like a user edit would: the entity's change timestamp moves to now."""
        with self.lock:
            entity = _ALIASES.get(entity, entity)
            table = self.table(entity)
            old = table.get(id)
            if old is None:
                raise KeyError(f"{entity}: no row with id {id}")
            row = dict(old)
            row.update(fields)
            if entity in CRM_ENTITIES and "stageId" in fields:
                row["stageSemanticId"] = stage_semantic(entity, row["stageId"])
            key = _CHANGED_KEY.get(entity)
            if key is not None:
                row[key] = iso(self.now())
            self.assign_fm_ids(row)
            if entity in _ITEM_ENTITIES:
                methods_crm.derive_flags(self.crm, entity, row)
            out = table.replace(id, row)
            self.record_stage(entity, out, old)
            return _copy_row(out)

    def delete_row(self, entity: str, id: int) -> None:
        """Delete a row and what hangs on it (a deal's product rows, a task's results)."""
        with self.lock:
            entity = _ALIASES.get(entity, entity)
            self.table(entity).delete(id)
            if entity == "deals":
                products = self.table("deal_products")
                for pid in products.ids_by("ownerId", [id]):
                    products.delete(pid)
            elif entity == "tasks":
                results = self.table("task_results")
                for rid in results.ids_by("taskId", [id]):
                    results.delete(rid)

    def advance_clock(self, seconds: float) -> None:
        """Move the portal clock forward; later writes are stamped that much later."""
        self._clock.advance(seconds)

    def now(self) -> float:
        """The portal's current unix time (wall time plus every `advance_clock`)."""
        return self._clock.now()

    # -- helpers for the method modules -------------------------------------------------------------------
    def table(self, entity: str) -> Table:
        """The live table of `entity` (for the method modules; callers must hold `lock`)."""
        try:
            return self._tables[entity]
        except KeyError:
            names = (*ENTITIES, *(n for n in self._tables if n not in ENTITIES), *_ALIASES, "stage_history")
            raise ValueError(f"unknown entity {entity!r}; expected one of {', '.join(names)}") from None

    def v3_limit(self, method: str) -> int:
        """The cap of `pagination.limit` for a v3 list method (§5.2)."""
        return self._v3_limits.get(method, 50)

    def new_guid(self) -> str:
        with self.lock:
            bits = self._rng.getrandbits(128)
        h = f"{bits:032x}"
        return "{" + f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}" + "}"

    def record_stage(self, entity: str, row: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
        """Append the crm.stagehistory.list row a write causes: creation (`old` None), a stage move or a
        pipeline change (TYPE_ID 1, 2/3, 5; DOCS api-reference/crm/crm-stage-history-list.md)."""
        type_id = HISTORY_TYPES.get(entity)
        stage = row.get("stageId")
        if type_id is None or stage is None:
            return
        category = row.get("categoryId")
        if old is None:
            kind = HISTORY_CREATED
        elif old.get("stageId") == stage:
            return
        elif category != old.get("categoryId"):
            kind = HISTORY_PIPELINE
        else:
            kind = HISTORY_FINAL if stage_semantic(entity, stage) != "P" else HISTORY_MOVED
        record = stage_history_row(entity, row["id"], kind, iso(self.now()), stage, category)
        self.table(f"stage_history_{type_id}").insert(record)

    def assign_fm_ids(self, row: dict[str, Any]) -> None:
        """Give new communications (`fm` entries) portal-wide ids, as Bitrix numbers them."""
        with self.lock:
            for fm in row.get("fm") or []:
                if fm.get("id") is None:
                    fm["id"] = self._fm_next
                    self._fm_next += 1

    def _conform_rows(self) -> None:
        """Give generated CRM rows exactly the catalogue's fields (missing ones as blanks)."""
        for entity in CRM_ENTITIES:
            table = self.table(entity)
            for row in list(table.all()):
                blank = methods_crm.blank_crm_row(self.crm, entity, user_id=1, now=0.0)
                kept = {k: (row[k] if k in row else blank[k]) for k in blank if k in row or k not in _STAMPS}
                methods_crm.derive_flags(self.crm, entity, kept)
                table.replace(row["id"], kept)

    def _mark_results(self, task_id: Any) -> None:
        task = self.table("tasks").get(task_id) if isinstance(task_id, int) else None
        if task is not None:
            task["containsResults"] = True

    def _blank(self, entity: str, now: float) -> dict[str, Any]:
        stamp = iso(now)
        if entity == "task_results":
            return {
                "taskId": None,
                "text": "",
                "authorId": 1,
                "createdAt": stamp,
                "updatedAt": stamp,
                "status": "open",
                "messageId": None,
                "fileIds": [],
            }
        if entity == "users":
            return {
                "XML_ID": None,
                "ACTIVE": True,
                "NAME": "",
                "LAST_NAME": "",
                "SECOND_NAME": None,
                "EMAIL": None,
                "LAST_LOGIN": None,
                "DATE_REGISTER": stamp,
                "TIMESTAMP_X": stamp,
                "LAST_ACTIVITY_DATE": None,
                "IS_ONLINE": "N",
                "TIME_ZONE": "Europe/Moscow",
                "PERSONAL_GENDER": None,
                "PERSONAL_BIRTHDAY": None,
                "PERSONAL_MOBILE": None,
                "PERSONAL_CITY": None,
                "WORK_PHONE": None,
                "WORK_POSITION": None,
                "UF_DEPARTMENT": [1],
                "UF_EMPLOYMENT_DATE": None,
                "USER_TYPE": "employee",
            }
        if entity == "deal_products":
            return product_row(None, 0, "", 0.0, 1.0, 10)
        if entity == "activities":
            return methods_activity.blank_activity(user_id=1, now=now)
        if entity == "departments":
            return {"NAME": "", "SORT": 500, "PARENT": 1, "UF_HEAD": None}
        if entity in ("spa_types", "crm_categories", "statuses"):
            # Reference rows: the caller gives every key.
            return {}
        raise ValueError(f"unknown entity {entity!r}")
