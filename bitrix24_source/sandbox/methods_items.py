"""Smart-process types and stage history of the sandbox portal: `crm.type.list` and `crm.stagehistory.list`.

DOCS api-reference/crm/universal/user-defined-object-types/crm-type-list.md and
api-reference/crm/crm-stage-history-list.md. Items of quotes, invoices and smart processes are served by the
crm.item.* handlers of `methods_crm`; their pipelines and stages by `methods_reference`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bitrix24_source.sandbox.fields import ITEM_ENTITY_BY_TYPE_ID, ITEM_TYPES
from bitrix24_source.sandbox.filters import FieldRef, compile_v2, strict_int, v2_list, v2_order
from bitrix24_source.sandbox.generator import HISTORY_TYPES
from bitrix24_source.sandbox.methods_crm import as_list, param
from bitrix24_source.sandbox.store import iso
from bitrix24_source.sandbox.types import ApiError, CallContext, Handler, MethodResult, PortalData

# 2024-05-01T10:00:00+03:00, when the sandbox's smart processes were "created".
_TYPES_CREATED = 1714546800

# crm.type.list rows: the keys and value kinds of the response example (crm-type-list.md). Every option
# that object-fields.md's "Available only when" smart-process fields depend on is switched on, so those
# fields exist (fields.ITEM_TYPES).
_TYPE_FLAGS: tuple[str, ...] = (
    "isCategoriesEnabled",
    "isStagesEnabled",
    "isBeginCloseDatesEnabled",
    "isClientEnabled",
    "isUseInUserfieldEnabled",
    "isLinkWithProductsEnabled",
    "isMycompanyEnabled",
    "isDocumentsEnabled",
    "isSourceEnabled",
    "isObserversEnabled",
    "isRecyclebinEnabled",
    "isAutomationEnabled",
    "isBizProcEnabled",
    "isSetOpenPermissions",
    "isPaymentsEnabled",
    "isCountersEnabled",
)
_FLAGS_OFF = frozenset({"isDocumentsEnabled", "isRecyclebinEnabled", "isPaymentsEnabled"})


def spa_type_rows() -> Iterator[dict[str, Any]]:
    """The crm.type.list rows of the portal's smart processes, in `id` order (the same for every seed)."""
    for item in ITEM_TYPES.values():
        if item.type_id is None:
            continue
        stamp = iso(_TYPES_CREATED + item.type_id * 3600)
        row: dict[str, Any] = {
            "id": item.type_id,
            "title": item.title,
            "code": "",
            "createdBy": 1,
            "entityTypeId": item.entity_type_id,
            "customSectionId": None,
        }
        for flag in _TYPE_FLAGS:
            single = flag == "isCategoriesEnabled" and len(item.pipelines) == 1
            row[flag] = "N" if flag in _FLAGS_OFF or single else "Y"
        row.update(createdTime=stamp, updatedTime=stamp, updatedBy=1)
        yield row


_TYPE_KINDS = {
    "id": "id",
    "title": "str",
    "code": "str",
    "createdBy": "int",
    "entityTypeId": "int",
    "customSectionId": "int",
    "createdTime": "datetime",
    "updatedTime": "datetime",
    "updatedBy": "int",
    **dict.fromkeys(_TYPE_FLAGS, "yn"),
}


def _type_ref(name: str) -> FieldRef | None:
    kind = _TYPE_KINDS.get(name)
    return FieldRef(name, kind) if kind else None


def type_list(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    # crm-type-list.md: filter and order name fields of the `type` object (an unknown one is
    # INVALID_ARG_VALUE "Invalid filter: field 'x' is not allowed in filter"), pages of 50 by `start`.
    compiled = compile_v2(params.get("filter") or {}, _type_ref)
    order = v2_order(params.get("order") or {}, _type_ref, strict=True)
    page, total, nxt, cost = v2_list(state.table("spa_types"), compiled, order, ctx, state.cost_model)
    rows = [dict(r) for r in page]
    return MethodResult({"types": rows}, total=total, next=nxt, cost=cost, rows=len(rows))


# crm-stage-history-list.md, "Object items" and the per-type tabs.
_HISTORY_COMMON = {"ID": "id", "TYPE_ID": "int", "OWNER_ID": "int", "CREATED_TIME": "datetime"}
_HISTORY_LEAD = {**_HISTORY_COMMON, "STATUS_SEMANTIC_ID": "str", "STATUS_ID": "str"}
_HISTORY_STAGE = {**_HISTORY_COMMON, "CATEGORY_ID": "int", "STAGE_SEMANTIC_ID": "str", "STAGE_ID": "str"}
# Entity type names for ENTITY_TYPE_NOT_SUPPORTED (crm-stage-history-list.md, error table: "Entity type
# `TYPE` is not supported"; crm-category-list.md words it the same way).
_TYPE_NAMES = {3: "CONTACT", 4: "COMPANY", 7: "QUOTE"}


def _history_ref(kinds: dict[str, str]) -> Any:
    def resolve(name: str) -> FieldRef | None:
        kind = kinds.get(name.upper())
        return FieldRef(name.upper(), kind) if kind else None

    return resolve


def stagehistory_list(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    type_id = strict_int(param(params, "entityTypeId"))
    entity = ITEM_ENTITY_BY_TYPE_ID.get(type_id) if type_id is not None else None
    if entity is None or entity not in HISTORY_TYPES:
        name = _TYPE_NAMES.get(type_id or 0, str(type_id))
        raise ApiError("ENTITY_TYPE_NOT_SUPPORTED", f"Entity type {name} is not supported")
    kinds = _HISTORY_LEAD if entity == "leads" else _HISTORY_STAGE
    resolve = _history_ref(kinds)
    compiled = compile_v2(param(params, "filter") or {}, resolve)
    order = v2_order(param(params, "order") or {}, resolve, strict=True)
    table = state.table(f"stage_history_{type_id}")
    page, total, nxt, cost = v2_list(table, compiled, order, ctx, state.cost_model)
    wanted = [str(x).upper() for x in as_list(param(params, "select")) or []]
    keys = [k for k in kinds if k in wanted] if wanted and "*" not in wanted else list(kinds)
    items = [{k: r[k] for k in keys} for r in page]
    return MethodResult({"items": items}, total=total, next=nxt, cost=cost, rows=len(items))


METHODS_V2: dict[str, Handler] = {
    "crm.type.list": type_list,
    "crm.stagehistory.list": stagehistory_list,
}
