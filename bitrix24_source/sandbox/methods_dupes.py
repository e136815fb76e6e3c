"""The sandbox's duplicate search by communication: ``crm.duplicate.findbycomm``.

DOCS api-reference/crm/duplicates/crm-duplicate-find-by-comm.md: ``type`` (``EMAIL`` / ``PHONE``, required),
``values`` (required, at most 20), optional ``entity_type`` (``LEAD`` / ``CONTACT`` / ``COMPANY``; all three
when absent). The result maps the entity types that hold any of the values to the ids found, e.g.
``{"CONTACT": [275, 2297]}``; it does not say which value matched which id. "The search does not consider
the phone extension": phones are compared by their digits. An empty match is rendered as ``[]`` (an empty PHP
array, as every empty result of a v2 method, §2.4). Errors are the page's 400 texts.
"""

from __future__ import annotations

import re
from typing import Any

from bitrix24_source.sandbox.methods_crm import param
from bitrix24_source.sandbox.types import ApiError, CallContext, Handler, MethodResult, PortalData

_ENTITIES = {"LEAD": "leads", "CONTACT": "contacts", "COMPANY": "companies"}
_MAX_VALUES = 20


def _comparable(kind: str, value: Any) -> str:
    text = str(value).strip()
    if kind == "PHONE":
        return re.sub(r"\D", "", text)
    return text.lower()


def duplicate_findbycomm(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    kind = str(param(params, "type") or "").upper()
    if not kind:
        raise ApiError("Communication type is not defined", "Parameter 'type' is required.")
    if kind not in ("EMAIL", "PHONE"):
        raise ApiError(
            f"Communication type '{kind}' is not supported in current context", "Unsupported type."
        )
    raw = param(params, "values")
    values = list(raw.values()) if isinstance(raw, dict) else raw if isinstance(raw, list) else None
    if not values:
        raise ApiError("Communication values is not defined", "Parameter 'values' is required.")
    wanted = {_comparable(kind, v) for v in values[:_MAX_VALUES]}
    entity_type = str(param(params, "entity_type") or "").upper()
    types = [entity_type] if entity_type in _ENTITIES else list(_ENTITIES)
    found: dict[str, list[int]] = {}
    for name in types:
        ids = [
            int(row["id"])
            for row in state.table(_ENTITIES[name]).all()
            if any(
                x.get("typeId") == kind and _comparable(kind, x.get("value")) in wanted
                for x in row.get("fm") or []
            )
        ]
        if ids:
            found[name] = sorted(ids)
    result: Any = found or []
    return MethodResult(result, cost=state.cost_model.call_cost(), rows=sum(len(v) for v in found.values()))


METHODS_V2: dict[str, Handler] = {"crm.duplicate.findbycomm": duplicate_findbycomm}
