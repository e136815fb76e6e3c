"""CRM activities of the sandbox portal: `crm.activity.list`, `.fields`, `.add`, `.update`, `.delete`.

DOCS api-reference/crm/timeline/activities/activity-base/crm-activity-*.md. A classic (§7.3) method family:
UPPER_CASE keys, every scalar printed as a string, errors as HTTP 400 with an empty `error` code. Rows are
stored with native ints and rendered as the list page's response example shows them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bitrix24_source.sandbox.fields import ENTITY_BY_TYPE_ID, rest_field
from bitrix24_source.sandbox.filters import (
    FieldRef,
    compile_v2,
    split_v2_key,
    strict_int,
    to_iso,
    v2_list,
    v2_order,
)
from bitrix24_source.sandbox.methods_crm import as_list, param
from bitrix24_source.sandbox.store import iso
from bitrix24_source.sandbox.types import ApiError, CallContext, Handler, MethodResult, PortalData

# DOCS crm-activity-fields.md, response example, in its order: (name, type, required, read-only, immutable,
# multiple, title).
_FIELDS: tuple[tuple[str, str, bool, bool, bool, bool, str], ...] = (
    ("ID", "integer", False, True, False, False, "ID"),
    ("OWNER_ID", "integer", False, False, True, False, "Owner ID"),
    ("OWNER_TYPE_ID", "crm_enum_ownertype", False, False, True, False, "Owner Type"),
    ("TYPE_ID", "crm_enum_activitytype", True, False, True, False, "Type"),
    ("PROVIDER_ID", "string", False, False, False, False, "Provider ID"),
    ("PROVIDER_TYPE_ID", "string", False, False, False, False, "Provider Type"),
    ("PROVIDER_GROUP_ID", "string", False, False, False, False, "Connector Type"),
    ("ASSOCIATED_ENTITY_ID", "integer", False, True, False, False, "Associated Entity ID"),
    ("SUBJECT", "string", True, False, False, False, "Subject"),
    ("START_TIME", "datetime", False, False, False, False, "Start"),
    ("END_TIME", "datetime", False, False, False, False, "Deadline"),
    ("DEADLINE", "datetime", False, False, False, False, "Execution Deadline"),
    ("COMPLETED", "char", False, False, False, False, "Completed"),
    ("STATUS", "crm_enum_activitystatus", False, False, False, False, "Status"),
    ("RESPONSIBLE_ID", "user", True, False, False, False, "Responsible"),
    ("PRIORITY", "crm_enum_activitypriority", False, False, False, False, "Priority"),
    ("NOTIFY_TYPE", "crm_enum_activitynotifytype", False, False, False, False, "Notification Type"),
    ("NOTIFY_VALUE", "integer", False, False, False, False, "Notification Parameter"),
    ("DESCRIPTION", "string", False, False, False, False, "Description"),
    ("DESCRIPTION_TYPE", "crm_enum_contenttype", False, False, False, False, "Description Type"),
    ("DIRECTION", "crm_enum_activitydirection", False, False, False, False, "Direction"),
    ("LOCATION", "string", False, False, False, False, "Location"),
    ("CREATED", "datetime", False, True, False, False, "Creation Date"),
    ("AUTHOR_ID", "user", False, True, False, False, "Created By"),
    ("LAST_UPDATED", "datetime", False, True, False, False, "Last Updated Date"),
    ("EDITOR_ID", "user", False, True, False, False, "Edited By"),
    ("SETTINGS", "object", False, False, False, False, "Settings"),
    ("ORIGIN_ID", "string", False, False, False, False, "External Code"),
    ("ORIGINATOR_ID", "string", False, False, False, False, "External Source"),
    ("RESULT_STATUS", "integer", False, False, False, False, "RESULT_STATUS"),
    ("RESULT_STREAM", "integer", False, False, False, False, "RESULT_STREAM"),
    ("RESULT_SOURCE_ID", "string", False, False, False, False, "RESULT_SOURCE_ID"),
    ("PROVIDER_PARAMS", "object", False, False, False, False, "Provider Parameters"),
    ("PROVIDER_DATA", "string", False, False, False, False, "Provider Data"),
    ("RESULT_MARK", "integer", False, False, False, False, "RESULT_MARK"),
    ("RESULT_VALUE", "double", False, False, False, False, "RESULT_VALUE"),
    ("RESULT_SUM", "double", False, False, False, False, "RESULT_SUM"),
    ("RESULT_CURRENCY_ID", "string", False, False, False, False, "RESULT_CURRENCY_ID"),
    ("AUTOCOMPLETE_RULE", "integer", False, False, False, False, "Autocomplete"),
    ("BINDINGS", "crm_activity_binding", False, True, False, True, "Bindings"),
    ("COMMUNICATIONS", "crm_activity_communication", True, False, False, True, "Communication Channel"),
    ("FILES", "diskfile", False, False, False, True, "Files"),
    ("WEBDAV_ELEMENTS", "diskfile", False, False, False, True, "Added Files"),
    ("IS_INCOMING_CHANNEL", "char", False, True, False, False, "IS_INCOMING_CHANNEL"),
)
# The keys of a list row, in the order of crm-activity-list.md's response example (`select: ["*"]` gives
# neither the multiple fields nor IS_INCOMING_CHANNEL there).
ROW_KEYS: tuple[str, ...] = (
    "ID", "OWNER_ID", "OWNER_TYPE_ID", "TYPE_ID", "PROVIDER_ID", "PROVIDER_TYPE_ID", "PROVIDER_GROUP_ID",
    "ASSOCIATED_ENTITY_ID", "SUBJECT", "CREATED", "LAST_UPDATED", "START_TIME", "END_TIME", "DEADLINE",
    "COMPLETED", "STATUS", "RESPONSIBLE_ID", "PRIORITY", "NOTIFY_TYPE", "NOTIFY_VALUE", "DESCRIPTION",
    "DESCRIPTION_TYPE", "DIRECTION", "LOCATION", "SETTINGS", "ORIGINATOR_ID", "ORIGIN_ID", "AUTHOR_ID",
    "EDITOR_ID", "PROVIDER_PARAMS", "PROVIDER_DATA", "RESULT_MARK", "RESULT_VALUE", "RESULT_SUM",
    "RESULT_CURRENCY_ID", "RESULT_STATUS", "RESULT_STREAM", "RESULT_SOURCE_ID", "AUTOCOMPLETE_RULE",
)  # fmt: skip
_TYPES = {name: type_ for name, type_, *_ in _FIELDS}
_INT_TYPES = frozenset(
    {
        "integer",
        "user",
        "crm_enum_ownertype",
        "crm_enum_activitytype",
        "crm_enum_activitystatus",
        "crm_enum_activitypriority",
        "crm_enum_activitynotifytype",
        "crm_enum_contenttype",
        "crm_enum_activitydirection",
    }
)
_WRITABLE = frozenset(name for name, _, _, ro, _, _, _ in _FIELDS if not ro and name in ROW_KEYS)
_IMMUTABLE = frozenset(name for name, _, _, _, imm, _, _ in _FIELDS if imm)


def _kind(name: str) -> str | None:
    if name == "ID":
        return "id"
    type_ = _TYPES.get(name)
    if type_ is None or name not in ROW_KEYS or type_ == "object":
        return None
    if type_ in _INT_TYPES:
        return "int"
    if type_ == "double":
        return "float"
    if type_ == "datetime":
        return "datetime"
    return "str"


def _resolve(name: str) -> FieldRef | None:
    kind = _kind(name.upper())
    return FieldRef(name.upper(), kind) if kind else None


def _render(row: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    # crm-activity-list.md, response example: ints as strings ("ID": "20"), nulls and lists as they are.
    out: dict[str, Any] = {}
    for key in keys:
        value = row.get(key)
        if isinstance(value, bool) or value is None or isinstance(value, (list, dict, str)):
            out[key] = value
        elif isinstance(value, float):
            out[key] = format(value, "g")
        else:
            out[key] = str(value)
    return out


def blank_activity(*, user_id: int, now: float) -> dict[str, Any]:
    """A new activity with the defaults the list example shows (a call, not completed, medium priority)."""
    stamp = iso(now)
    return {
        "OWNER_ID": None,
        "OWNER_TYPE_ID": None,
        "TYPE_ID": 2,
        "PROVIDER_ID": "VOXIMPLANT_CALL",
        "PROVIDER_TYPE_ID": "CALL",
        "PROVIDER_GROUP_ID": None,
        "ASSOCIATED_ENTITY_ID": 0,
        "SUBJECT": "",
        "CREATED": stamp,
        "LAST_UPDATED": stamp,
        "START_TIME": stamp,
        "END_TIME": stamp,
        "DEADLINE": stamp,
        "COMPLETED": "N",
        "STATUS": 1,
        "RESPONSIBLE_ID": user_id,
        "PRIORITY": 2,
        "NOTIFY_TYPE": 1,
        "NOTIFY_VALUE": 15,
        "DESCRIPTION": "",
        "DESCRIPTION_TYPE": 1,
        "DIRECTION": 2,
        "LOCATION": "",
        "SETTINGS": [],
        "ORIGINATOR_ID": None,
        "ORIGIN_ID": None,
        "AUTHOR_ID": user_id,
        "EDITOR_ID": user_id,
        "PROVIDER_PARAMS": [],
        "PROVIDER_DATA": None,
        "RESULT_MARK": 0,
        "RESULT_VALUE": None,
        "RESULT_SUM": None,
        "RESULT_CURRENCY_ID": None,
        "RESULT_STATUS": 0,
        "RESULT_STREAM": 0,
        "RESULT_SOURCE_ID": None,
        "AUTOCOMPLETE_RULE": 0,
    }


def _error(description: str) -> ApiError:
    # crm-activity-add.md / -update.md / -delete.md, "Error Handling": HTTP 400, empty `error`.
    return ApiError("", description, 400)


def activity_list(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    raw = param(params, "filter")
    # Unknown filter keys are skipped, as CCrmActivity::GetList does for the classic lists (the page lists no
    # filter error).
    kept = {
        k: v
        for k, v in (raw.items() if isinstance(raw, Mapping) else ())
        if _resolve(split_v2_key(str(k))[1]) is not None
    }
    compiled = compile_v2(kept, _resolve)
    order = v2_order(param(params, "order") or {}, _resolve, strict=False)
    page, total, nxt, cost = v2_list(state.table("activities"), compiled, order, ctx, state.cost_model)
    keys = _selection(param(params, "select"))
    rows = [_render(r, keys) for r in page]
    return MethodResult(rows, total=total, next=nxt, cost=cost, rows=len(rows))


def _selection(select: Any) -> tuple[str, ...]:
    names = [str(x).upper() for x in as_list(select) or []]
    if not names or "*" in names:
        return ROW_KEYS
    wanted = {"ID", *names}
    return tuple(k for k in ROW_KEYS if k in wanted)


def activity_fields(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    out = {}
    for name, type_, req, ro, imm, mult, title in _FIELDS:
        out[name] = rest_field(type_, required=req, read_only=ro, immutable=imm, multiple=mult)
        if name == "WEBDAV_ELEMENTS":
            # crm-activity-fields.md: the old file field is marked deprecated, before its title.
            out[name]["isDeprecated"] = True
        out[name]["title"] = title
    return MethodResult(out, cost=state.cost_model.call_cost())


def _coerce(name: str, value: Any) -> Any:
    kind = _kind(name)
    if value is None or value == "":
        return None if kind in ("int", "float", "datetime") else value
    if kind == "int":
        number = strict_int(value)
        if number is None:
            raise _error(f"The field {name} is not defined or invalid")
        return number
    if kind == "float":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise _error(f"The field {name} is not defined or invalid") from None
    if kind == "datetime":
        try:
            return to_iso(value)
        except ValueError:
            raise _error(f"The field {name} is not defined or invalid") from None
    return value if isinstance(value, (list, dict)) else str(value)


def _changes(fields: Mapping[str, Any], *, adding: bool) -> dict[str, Any]:
    out = {}
    for key, value in fields.items():
        name = str(key).upper()
        if name in _WRITABLE and (adding or name not in _IMMUTABLE):
            out[name] = _coerce(name, value)
    return out


def _fields(params: Mapping[str, Any]) -> Mapping[str, Any]:
    fields = param(params, "fields")
    if not isinstance(fields, Mapping):
        # crm-activity-add.md error table: the required fields are reported one by one; SUBJECT comes first.
        raise _error("The field SUBJECT is not defined or empty")
    return fields


def _owner_exists(state: PortalData, owner_type: Any, owner_id: Any) -> bool:
    entity = ENTITY_BY_TYPE_ID.get(owner_type) if isinstance(owner_type, int) else None
    return entity is not None and isinstance(owner_id, int) and state.table(entity).get(owner_id) is not None


def activity_add(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    fields = _fields(params)
    changes = _changes(fields, adding=True)
    # crm-activity-add.md, "Possible Error Codes", in the order the page lists them.
    if not changes.get("SUBJECT"):
        raise _error("The field SUBJECT is not defined or empty")
    if (
        not isinstance(changes.get("RESPONSIBLE_ID"), int)
        or state.table("users").get(changes["RESPONSIBLE_ID"]) is None
    ):
        raise _error("The field RESPONSIBLE_ID is not defined or invalid")
    if not isinstance(changes.get("TYPE_ID"), int):
        raise _error("The field TYPE_ID is not defined or invalid")
    communications = param(fields, "COMMUNICATIONS")
    if not as_list(communications):
        raise _error("The field COMMUNICATIONS is not defined or invalid")
    if not _owner_exists(state, changes.get("OWNER_TYPE_ID"), changes.get("OWNER_ID")):
        raise _error(
            "Could not build binding. Please ensure that owner info and communications are defined correctly"
        )
    row = blank_activity(user_id=ctx.user_id, now=state.now())
    row.update(changes)
    row["COMPLETED"] = "Y" if str(row.get("COMPLETED")).upper() == "Y" else "N"
    row["STATUS"] = 2 if row["COMPLETED"] == "Y" else 1
    out = state.table("activities").insert(row)
    # crm-activity-add.md: the result is the new activity's id, an integer.
    return MethodResult(out["ID"], cost=state.cost_model.call_cost(write=True))


def _existing(state: PortalData, params: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
    id_ = strict_int(param(params, "id"))
    row = state.table("activities").get(id_) if id_ is not None else None
    if id_ is None or row is None:
        # crm-activity-update.md / crm-activity-delete.md, "Possible Error Codes".
        raise _error("Activity is not found")
    return id_, row


def activity_update(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    id_, old = _existing(state, params)
    changes = _changes(_fields(params), adding=False)
    if "SUBJECT" in changes and not changes["SUBJECT"]:
        raise _error("The field SUBJECT is not defined or empty")
    if "RESPONSIBLE_ID" in changes and (
        not isinstance(changes["RESPONSIBLE_ID"], int)
        or state.table("users").get(changes["RESPONSIBLE_ID"]) is None
    ):
        raise _error("The field RESPONSIBLE_ID is not defined or invalid")
    row = dict(old)
    row.update(changes)
    if "COMPLETED" in changes:
        row["COMPLETED"] = "Y" if str(changes["COMPLETED"]).upper() == "Y" else "N"
        row["STATUS"] = 2 if row["COMPLETED"] == "Y" else 1
    row["LAST_UPDATED"], row["EDITOR_ID"] = iso(state.now()), ctx.user_id
    state.table("activities").replace(id_, row)
    # crm-activity-update.md: `true` on success.
    return MethodResult(True, cost=state.cost_model.call_cost(write=True))


def activity_delete(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    id_, _ = _existing(state, params)
    state.table("activities").delete(id_)
    # crm-activity-delete.md: `true` on success.
    return MethodResult(True, cost=state.cost_model.call_cost(write=True))


METHODS_V2: dict[str, Handler] = {
    "crm.activity.list": activity_list,
    "crm.activity.fields": activity_fields,
    "crm.activity.add": activity_add,
    "crm.activity.update": activity_update,
    "crm.activity.delete": activity_delete,
}
WRITES = frozenset({"crm.activity.add", "crm.activity.update", "crm.activity.delete"})
