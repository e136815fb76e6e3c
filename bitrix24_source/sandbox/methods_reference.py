"""CRM reference data of the sandbox portal: `crm.status.*` directories, deal pipelines and their stages.

Methods: `crm.status.list`, `crm.status.fields`, `crm.status.entity.items`, `crm.status.entity.types`,
`crm.category.list` and the deprecated `crm.dealcategory.stage.list` (DOCS api-reference/crm/status/*.md,
api-reference/crm/universal/category/crm-category-list.md,
api-reference/crm/outdated/category-old/crm-deal-category-stage-list.md; recorded fixtures call_batch.json,
crm_category_list.json, crm_dealcategory_stage_list*.json).

The directories are built from the same tuples in `fields` that the generator draws from and that
crm.item.add/update validate stages against, so every value a row holds is a `STATUS_ID` listed here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bitrix24_source.sandbox.fields import (
    COMPANY_TYPES,
    CONTACT_TYPES,
    DEAL_CATEGORIES,
    DEAL_STAGES,
    DEAL_TYPES,
    EMPLOYEES,
    HONORIFICS,
    INDUSTRIES,
    LEAD_STATUSES,
    SOURCES,
    rest_field,
    stage_semantic,
)
from bitrix24_source.sandbox.filters import FieldRef, compile_v2, execute, split_v2_key, strict_int, v2_order
from bitrix24_source.sandbox.methods_crm import param
from bitrix24_source.sandbox.types import ApiError, CallContext, Handler, MethodResult, PortalData

# Display names of a fresh cloud portal (English locale). Stage names are shared by every pipeline: a new
# pipeline copies the default one's stages under its `C<id>:` prefix.
_NAMES: dict[str, str] = {
    # lead statuses (ENTITY_ID "STATUS")
    "IN_PROCESS": "In progress",
    "PROCESSED": "Processed",
    "JUNK": "Junk lead",
    "CONVERTED": "Good lead",
    # deal stages (DOCS crm-status-list.md, response example)
    "NEW": "New",
    "PREPARATION": "Document preparation",
    "PREPAYMENT_INVOICE": "Prepayment invoice",
    "EXECUTING": "In progress",
    "FINAL_INVOICE": "Final invoice",
    "WON": "Deal successful",
    "LOSE": "Deal failed",
}
_DIRECTORY_NAMES: dict[str, dict[str, str]] = {
    "SOURCE": {
        "CALL": "Call",
        "EMAIL": "E-Mail",
        "WEB": "Website",
        "ADVERTISING": "Advertising",
        "PARTNER": "Existing client",
        "RECOMMENDATION": "By recommendation",
        "TRADE_SHOW": "Show/Exhibition",
        "OTHER": "Other",
    },
    "DEAL_TYPE": {
        "SALE": "Sales",
        "COMPLEX": "Complex sale",
        "GOODS": "Merchandise sale",
        "SERVICES": "Service sale",
        "SERVICE": "After-sale service",
    },
    "CONTACT_TYPE": {"CLIENT": "Clients", "SUPPLIER": "Suppliers", "PARTNER": "Partners", "OTHER": "Other"},
    "COMPANY_TYPE": {
        "CUSTOMER": "Client",
        "SUPPLIER": "Supplier",
        "COMPETITOR": "Competitor",
        "PARTNER": "Partner",
        "OTHER": "Other",
    },
    "INDUSTRY": {
        "IT": "Information Technology",
        "TELECOM": "Telecommunication",
        "MANUFACTURING": "Manufacturing",
        "BANKING": "Banking Services",
        "CONSULTING": "Consulting",
        "FINANCE": "Finance",
        "DELIVERY": "Delivery",
        "OTHER": "Other",
    },
    "EMPLOYEES": {
        "EMPLOYEES_1": "fewer than 50",
        "EMPLOYEES_2": "50-250",
        "EMPLOYEES_3": "250-500",
        "EMPLOYEES_4": "over 500",
    },
    "HONORIFIC": {"HNR_RU_1": "Mr.", "HNR_RU_2": "Mrs."},
}
_DIRECTORY_VALUES: dict[str, tuple[str, ...]] = {
    "SOURCE": SOURCES,
    "DEAL_TYPE": DEAL_TYPES,
    "CONTACT_TYPE": CONTACT_TYPES,
    "COMPANY_TYPE": COMPANY_TYPES,
    "INDUSTRY": INDUSTRIES,
    "EMPLOYEES": EMPLOYEES,
    "HONORIFIC": HONORIFICS,
}
# Stage colours of a fresh portal (DOCS crm-status-list.md, response example), by position in the pipeline.
_DIRECTORY_TITLES = {
    "SOURCE": "Sources",
    "CONTACT_TYPE": "Contact type",
    "COMPANY_TYPE": "Company type",
    "EMPLOYEES": "Number of employees",
    "INDUSTRY": "Industry",
    "DEAL_TYPE": "Deal type",
    "HONORIFIC": "Salutation",
}
_PROCESS_COLORS = ("#39A8EF", "#2FC6F6", "#55D0E0", "#47E4C2", "#FFA900")
_SEMANTIC_COLORS = {"S": "#7BD500", "F": "#FF5752"}
_EXTRA_SEMANTICS = {"P": "process", "S": "success", "F": "failure"}
_ENTITY_TYPE_NAMES = {1: "LEAD", 3: "CONTACT", 4: "COMPANY"}


def deal_stage_entity(category: int) -> str:
    """`ENTITY_ID` of a pipeline's stages: `DEAL_STAGE` for the default one, `DEAL_STAGE_<id>` otherwise."""
    return "DEAL_STAGE" if category == 0 else f"DEAL_STAGE_{category}"


def _stage_rows(
    entity_id: str, entity: str, stages: tuple[str, ...], category: int | None
) -> Iterator[dict[str, Any]]:
    process = 0
    # Pipelines list the stages in progress first, then success, then failure (fixture call_batch.json).
    rank = {"P": 0, "S": 1, "F": 2}
    ordered = sorted(stages, key=lambda s: rank[stage_semantic(entity, s)])
    for pos, stage in enumerate(ordered):
        code = stage.split(":")[-1]
        semantic = stage_semantic(entity, stage)
        # The first stage and the final ones are the undeletable system stages (SYSTEM "Y").
        system = pos == 0 or semantic != "P"
        name = "Unassigned" if entity == "leads" and code == "NEW" else _NAMES[code]
        if semantic == "P":
            color = _PROCESS_COLORS[min(process, len(_PROCESS_COLORS) - 1)]
            process += 1
        else:
            color = _SEMANTIC_COLORS[semantic]
        yield {
            "ENTITY_ID": entity_id,
            "STATUS_ID": stage,
            "NAME": name,
            "NAME_INIT": name if system else "",
            "SORT": 10 * (pos + 1),
            "SYSTEM": "Y" if system else "N",
            "CATEGORY_ID": category,
            "COLOR": color,
            "SEMANTICS": None if semantic == "P" else semantic,
        }


def status_rows() -> Iterator[dict[str, Any]]:
    """Every directory item of the portal in canonical form (native `SORT`/`CATEGORY_ID`), in id order."""
    yield from _stage_rows("STATUS", "leads", LEAD_STATUSES, None)
    for category, stages in DEAL_STAGES.items():
        yield from _stage_rows(deal_stage_entity(category), "deals", stages, category or None)
    for entity_id, values in _DIRECTORY_VALUES.items():
        names = _DIRECTORY_NAMES[entity_id]
        for pos, value in enumerate(values):
            yield {
                "ENTITY_ID": entity_id,
                "STATUS_ID": value,
                "NAME": names[value],
                "NAME_INIT": names[value],
                "SORT": 10 * (pos + 1),
                "SYSTEM": "N",
                "CATEGORY_ID": None,
                "COLOR": None,
                "SEMANTICS": None,
            }


def _is_stage(entity_id: str) -> bool:
    return entity_id == "STATUS" or entity_id.startswith("DEAL_STAGE")


def _render(row: dict[str, Any]) -> dict[str, Any]:
    # crm.status.list prints every scalar as a string (ID, SORT, CATEGORY_ID) and adds EXTRA to stages only
    # (DOCS crm-status-list.md, response example).
    out = dict(row)
    out["SORT"] = str(row["SORT"])
    out["CATEGORY_ID"] = None if row["CATEGORY_ID"] is None else str(row["CATEGORY_ID"])
    if _is_stage(row["ENTITY_ID"]):
        out["EXTRA"] = {
            "SEMANTICS": _EXTRA_SEMANTICS[row["SEMANTICS"] or "P"],
            "COLOR": row["COLOR"],
        }
    return out


def _short(row: dict[str, Any]) -> dict[str, Any]:
    # crm.status.entity.items and crm.dealcategory.stage.list: three keys, SORT an int (fixture call_batch.json).
    return {"NAME": row["NAME"], "SORT": row["SORT"], "STATUS_ID": row["STATUS_ID"]}


_STATUS_KINDS = {
    "ID": "id",
    "ENTITY_ID": "str",
    "STATUS_ID": "str",
    "NAME": "str",
    "NAME_INIT": "str",
    "SORT": "int",
    "SYSTEM": "str",
    "CATEGORY_ID": "int",
    "COLOR": "str",
    "SEMANTICS": "str",
}


def _status_ref(name: str) -> FieldRef | None:
    kind = _STATUS_KINDS.get(name.upper())
    return FieldRef(name.upper(), kind) if kind else None


def _entity_items(state: PortalData, entity_id: str) -> list[dict[str, Any]]:
    table = state.table("statuses")
    rows = [table.get(i) for i in table.ids_by("ENTITY_ID", [entity_id])]
    return sorted((r for r in rows if r is not None), key=lambda r: (r["SORT"], int(r["ID"])))


def status_list(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    raw = param(params, "filter")
    # CCrmStatus::GetList skips keys it does not know; `select` and navigation are not supported, so the
    # whole match comes back at once with its `total` (DOCS crm-status-list.md, ru edition).
    kept = {
        k: v
        for k, v in (raw.items() if isinstance(raw, dict) else ())
        if _status_ref(split_v2_key(str(k))[1])
    }
    table = state.table("statuses")
    compiled = compile_v2(kept, _status_ref, indexed=table.indexed)
    order = v2_order(param(params, "order") or {}, _status_ref, strict=False)
    rows, total = execute(table, compiled, order=order, offset=0, limit=len(table), count=True)
    out = [_render(r) for r in rows]
    cost = state.cost_model.list_cost(offset=0, rows=len(out), counted=True)
    return MethodResult(out, total=total or 0, cost=cost, rows=len(out))


def status_entity_items(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    entity_id = param(params, "entityId")
    items = _entity_items(state, str(entity_id)) if isinstance(entity_id, str) else []
    if not items:
        # DOCS crm-status-entity-items.md, error table.
        raise ApiError("", "The parameter entityId is not defined or invalid.", 400)
    return MethodResult([_short(r) for r in items], cost=state.cost_model.call_cost(), rows=len(items))


def _semantic_info(stages: tuple[str, ...], entity: str) -> dict[str, Any]:
    final = {stage_semantic(entity, s): s for s in stages if stage_semantic(entity, s) != "P"}
    return {
        "START_FIELD": stages[0],
        "FINAL_SUCCESS_FIELD": final["S"],
        "FINAL_UNSUCCESS_FIELD": final["F"],
        "FINAL_SORT": 0,
    }


def status_entity_types(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    # DOCS crm-status-entity-types.md, response example: stage directories carry SEMANTIC_INFO and their
    # pipeline; a non-default pipeline's CATEGORY_ID is a string there, the default one's an int.
    out: list[dict[str, Any]] = [
        {
            "ID": "STATUS",
            "NAME": "Lead stages",
            "SEMANTIC_INFO": _semantic_info(LEAD_STATUSES, "leads"),
            "ENTITY_TYPE_ID": 1,
        }
    ]
    out.extend({"ID": key, "NAME": _DIRECTORY_TITLES[key]} for key in _DIRECTORY_VALUES)
    for category, (name, _sort) in DEAL_CATEGORIES.items():
        entry: dict[str, Any] = {"ID": deal_stage_entity(category), "NAME": f"{name} deal stages"}
        if category:
            entry["PARENT_ID"] = "DEAL_STAGE"
        entry["SEMANTIC_INFO"] = _semantic_info(DEAL_STAGES[category], "deals")
        if category:
            entry["PREFIX"] = f"C{category}"
        entry["FIELD_ATTRIBUTE_SCOPE"] = f"category_{category}" if category else ""
        entry["ENTITY_TYPE_ID"] = 2
        entry["CATEGORY_ID"] = str(category) if category else 0
        out.append(entry)
    return MethodResult(out, cost=state.cost_model.call_cost())


# DOCS crm-status-fields.md, response example.
_STATUS_FIELDS = {
    "ID": rest_field("integer", "ID", read_only=True),
    "ENTITY_ID": rest_field("string", "Entity ID", required=True, immutable=True),
    "STATUS_ID": rest_field("string", "Status", required=True, immutable=True),
    "SORT": rest_field("integer", "Sorting"),
    "NAME": rest_field("string", "Name", required=True),
    "NAME_INIT": rest_field("string", "Default Name", read_only=True),
    "SYSTEM": rest_field("char", "System", read_only=True),
    "CATEGORY_ID": rest_field("integer", "CATEGORY_ID", immutable=True),
    "COLOR": rest_field("string", "COLOR"),
    "SEMANTICS": rest_field("char", "SEMANTICS", immutable=True),
    "EXTRA": rest_field("crm_status_extra", "Additional Fields"),
}


def status_fields(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    return MethodResult({k: dict(v) for k, v in _STATUS_FIELDS.items()}, cost=state.cost_model.call_cost())


def category_list(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    type_id = strict_int(params.get("entityTypeId"))
    if type_id in _ENTITY_TYPE_NAMES:
        # Leads have no pipelines; contacts and companies are left at that too (their categories are a
        # separate, rarely used feature the sandbox does not model). DOCS crm-category-list.md, error table:
        # "Entity type `{entityTypeName}` is not supported".
        raise ApiError(
            "ENTITY_TYPE_NOT_SUPPORTED", f"Entity type {_ENTITY_TYPE_NAMES[type_id]} is not supported"
        )
    if type_id != 2:
        # DOCS crm-category-list.md, error table.
        raise ApiError("NOT_FOUND", "Smart process not found")
    out = []
    for category, (name, sort) in sorted(DEAL_CATEGORIES.items(), key=lambda kv: (kv[1][1], kv[0])):
        row: dict[str, Any] = {
            "id": category,
            "name": name,
            "sort": sort,
            "entityTypeId": 2,
            "isDefault": "Y" if category == 0 else "N",
        }
        if category:
            # The default pipeline has no origin keys at all (fixture crm_category_list.json).
            row.update(originId="", originatorId="")
        out.append(row)
    cost = state.cost_model.list_cost(offset=0, rows=len(out), counted=True)
    return MethodResult({"categories": out}, total=len(out), cost=cost, rows=len(out))


def dealcategory_stage_list(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    # DOCS crm-deal-category-stage-list.md: no id or 0 is the default pipeline; an unknown id gives nothing.
    category = strict_int(param(params, "id")) or 0
    rows = _entity_items(state, deal_stage_entity(category)) if category in DEAL_CATEGORIES else []
    return MethodResult([_short(r) for r in rows], cost=state.cost_model.call_cost(), rows=len(rows))


METHODS_V2: dict[str, Handler] = {
    "crm.status.list": status_list,
    "crm.status.fields": status_fields,
    "crm.status.entity.items": status_entity_items,
    "crm.status.entity.types": status_entity_types,
    "crm.category.list": category_list,
    "crm.dealcategory.stage.list": dealcategory_stage_list,
}
