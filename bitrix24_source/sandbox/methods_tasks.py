"""Task methods of the sandbox portal: v2 `tasks.task.*` and v3 `tasks.task.*` / `tasks.task.result.list`
(§7.4, §5).

Tasks are stored in the v3 form (int ids, string status/priority, DOCS api-reference/tasks/fields-rest-v3.md).
v2 methods translate on the way in (UPPER_CASE names, numeric STATUS/PRIORITY codes) and out (camelCase keys,
every scalar a string, §2.4).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from bitrix24_source.sandbox.fields import (
    RESULT_DEFAULT_SELECT,
    RESULT_FIELDS,
    TASK_DEFAULT_GET,
    TASK_FIELDS,
    TASK_PRIORITY_V2,
    TASK_STATUS_V2,
    TASK_USER_DTO_FIELDS,
    TASK_USER_RELATIONS,
    TASK_V2_DEFAULT_SELECT,
    TASK_V2_NAMES,
    TASK_V2_SOURCE,
    SimpleField,
)
from bitrix24_source.sandbox.filters import (
    RESULT_LIST_VALIDATION_MESSAGE,
    TASK_WRITE_VALIDATION_MESSAGE,
    FieldRef,
    compile_v2,
    compile_v3,
    execute,
    split_v2_key,
    strict_int,
    to_iso,
    v2_list,
    v3_error,
    v3_order,
    v3_pagination,
    v3_validation,
    yn,
)
from bitrix24_source.sandbox.store import iso
from bitrix24_source.sandbox.types import ApiError, CallContext, Handler, MethodResult, PortalData

_STATUS_BY_CODE = {v: k for k, v in TASK_STATUS_V2.items()} | {"1": "pending"}
_PRIORITY_BY_CODE = {v: k for k, v in TASK_PRIORITY_V2.items()}
_V2_INPUT = {upper: TASK_V2_SOURCE[key] for upper, key in TASK_V2_NAMES.items() if upper != "REAL_STATUS"}
# DOCS fields-rest-v3.md: "a required field for creating a task".
_REQUIRED_ON_ADD = ("title", "creatorId", "responsibleId")
_NOT_EDITABLE_ON_ADD = frozenset(n for n, f in TASK_FIELDS.items() if not f.editable) - {"creatorId"}


class _Invalid(Exception):
    def __init__(self, field_name: str, type_name: str) -> None:
        super().__init__(field_name)
        self.field_name = field_name
        self.type_name = type_name


def _coerce(spec: SimpleField, value: Any) -> Any:
    if value is None or (isinstance(value, str) and value == "" and spec.type != "string"):
        return [] if spec.type == "array" else None
    if spec.type == "integer":
        number = strict_int(value)
        if number is None:
            raise _Invalid(spec.name, "int")
        return number
    if spec.type == "datetime":
        try:
            return to_iso(value)
        except (ValueError, TypeError):
            raise _Invalid(spec.name, "DateTime") from None
    if spec.type == "enum":
        if str(value) not in spec.values:
            raise _Invalid(spec.name, "enum")
        return str(value)
    if spec.type == "boolean":
        return yn(value) == "Y"
    if spec.type == "array":
        items = list(value.values()) if isinstance(value, Mapping) else value
        if not isinstance(items, list):
            raise _Invalid(spec.name, "array")
        if spec.name == "crmItemIds":
            return [str(x) for x in items]
        out = []
        for x in items:
            n = strict_int(x)
            if n is None:
                raise _Invalid(spec.name, "array")
            out.append(n)
        return out
    if isinstance(value, (dict, list)):
        raise _Invalid(spec.name, "string")
    return str(value)


def blank_task(*, user_id: int, now: float) -> dict[str, Any]:
    """A new task with every field present and the portal's defaults (pending, average priority)."""
    stamp = iso(now)
    row: dict[str, Any] = {name: ([] if f.type == "array" else None) for name, f in TASK_FIELDS.items()}
    row.update(
        description="",
        creatorId=user_id,
        responsibleId=user_id,
        created=stamp,
        changed=stamp,
        changedById=user_id,
        status="pending",
        statusChanged=stamp,
        priority="average",
        groupId=0,
        needsControl=False,
        estimatedTime=0,
        containsResults=False,
    )
    return row


def _apply_status(row: dict[str, Any], old_status: str | None, user_id: int, stamp: str) -> None:
    if row["status"] != old_status:
        row["statusChanged"] = stamp
    if row["status"] == "completed":
        if row.get("closed") is None:
            row["closed"], row["closedById"] = stamp, user_id
    else:
        row["closed"], row["closedById"] = None, None


def create_task(state: PortalData, values: dict[str, Any], *, user_id: int) -> dict[str, Any]:
    """Store a new task from canonical values (shared by the v2 and v3 add methods and `add_row`)."""
    row = blank_task(user_id=user_id, now=state.now())
    row.update(values)
    row["guid"] = row.get("guid") or state.new_guid()
    _apply_status(row, "pending", user_id, row["created"])
    return state.table("tasks").insert(row)


def update_task(state: PortalData, id_: int, changes: dict[str, Any], *, user_id: int) -> dict[str, Any]:
    """Apply canonical changes: `changed` moves, and `closed` follows the status (set on completion)."""
    table = state.table("tasks")
    old = table.get(id_)
    if old is None:
        raise KeyError(id_)
    row = dict(old)
    row.update(changes)
    stamp = iso(state.now())
    row["changed"], row["changedById"] = stamp, user_id
    _apply_status(row, old.get("status"), user_id, stamp)
    return table.replace(id_, row)


# ---------------------------------------------------------------------------------------------------------
# v3


def _user_dto(state: PortalData, user_id: Any, wanted: list[str]) -> dict[str, Any] | None:
    user = state.table("users").get(user_id) if isinstance(user_id, int) else None
    if user is None:
        return None
    full = {
        "id": int(user["ID"]),
        "name": f"{user['NAME']} {user['LAST_NAME']}".strip(),
        "email": user.get("EMAIL"),
        "gender": user.get("PERSONAL_GENDER"),
        "role": "employee",
    }
    return {k: full[k] for k in wanted}


def _parse_select(select: Any, default: tuple[str, ...]) -> tuple[list[str], dict[str, list[str]]]:
    """v3 `select` -> (own fields, relation -> user fields). Unknown own fields are dropped (§2.3)."""
    names = list(select.values()) if isinstance(select, Mapping) else select
    if not isinstance(names, list) or not names:
        names = list(default)
    own: list[str] = []
    rel: dict[str, list[str]] = {}
    for raw in names:
        name = str(raw)
        head, _, tail = name.partition(".")
        if head in TASK_USER_RELATIONS:
            if tail and tail not in TASK_USER_DTO_FIELDS:
                # §2.3 table and DOCS rest-v3.md: an unknown related field in select is an error.
                raise v3_error("UNKNOWNDTOPROPERTYEXCEPTION", f"Unknown field `{tail}` for entity `UserDto`")
            fields = rel.setdefault(head, [])
            for f in [tail] if tail else TASK_USER_DTO_FIELDS:
                if f not in fields:
                    fields.append(f)
        elif tail:
            # DOCS tasks-task-get-rest-v3.md, "Possible Error Codes".
            raise v3_error("UNKNOWNDTOPROPERTYEXCEPTION", f"Unknown field `{head}` for entity `TaskDto`")
        elif name in TASK_FIELDS and name not in own:
            own.append(name)
    if "id" not in own:
        own.insert(0, "id")
    return own, rel


def _render_v3(
    state: PortalData, row: Mapping[str, Any], own: list[str], rel: dict[str, list[str]]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in own:
        value = row.get(name)
        out[name] = list(value) if isinstance(value, list) else value
    for head, fields in rel.items():
        out[head] = _user_dto(state, row.get(TASK_USER_RELATIONS[head]), fields)
    return out


def _v3_id(params: Mapping[str, Any]) -> int:
    # DOCS api-reference/rest-v3.md, error example: "Required field `id` is not specified".
    if "id" not in params or params["id"] in (None, ""):
        raise v3_validation("id", "Required field `id` is not specified")
    id_ = strict_int(params["id"])
    if id_ is None:
        raise v3_validation("id", "Field `id` requires data type `int` for this request")
    return id_


def _not_found(id_: int) -> ApiError:
    # DOCS tasks-task-get-rest-v3.md, "Data Not Found Errors".
    return v3_error("ENTITYNOTFOUNDEXCEPTION", f"Record with ID = `{id_}` not found")


def _no_access() -> ApiError:
    # DOCS tasks-task-update-rest-v3.md ("No access to the task or the task does not exist") and
    # tasks-task-delete-rest-v3.md, whose error example is this body: writes to a missing task are denied.
    return v3_error("ACCESSDENIEDEXCEPTION", "Access denied")


def _v3_fields(params: Mapping[str, Any], *, adding: bool) -> dict[str, Any]:
    raw = params.get("fields")
    if not isinstance(raw, Mapping) or not raw:
        raise v3_validation(
            "fields", "Required field `fields` is not specified", summary=TASK_WRITE_VALIDATION_MESSAGE
        )
    out: dict[str, Any] = {}
    for key, value in raw.items():
        spec = TASK_FIELDS.get(str(key))
        if spec is None:
            # §2.3 table: an unknown field of the DTO.
            raise v3_error("UNKNOWNDTOPROPERTYEXCEPTION", f"Unknown field `{key}` for entity `TaskDto`")
        if (key in _NOT_EDITABLE_ON_ADD) if adding else not spec.editable:
            # DOCS tasks-task-update-rest-v3.md, "Error Handling": the documented envelope and text.
            raise v3_validation(
                str(key),
                f"In DTO `TaskDto`, the field `{key}` requires the presence of the `Editable` attribute "
                "for such a request",
                summary=TASK_WRITE_VALIDATION_MESSAGE,
            )
        try:
            out[spec.name] = _coerce(spec, value)
        except _Invalid as err:
            raise v3_validation(
                err.field_name,
                f"Field `{err.field_name}` requires data type `{err.type_name}` for this request",
                summary=TASK_WRITE_VALIDATION_MESSAGE,
            ) from None
    if adding:
        missing = [n for n in _REQUIRED_ON_ADD if out.get(n) in (None, "")]
        if missing:
            raise v3_error(
                "VALIDATION_REQUESTVALIDATIONEXCEPTION",
                TASK_WRITE_VALIDATION_MESSAGE,
                validation=[
                    {"message": f"Required field `{n}` is not specified", "field": n} for n in missing
                ],
            )
    return out


def v3_task_list(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    # DOCS tasks-task-list-rest-v3.md: "If `select` is not specified, the method returns only the `id`".
    own, rel = _parse_select(params.get("select"), ("id",))
    table = state.table("tasks")
    compiled = compile_v3(params.get("filter"), TASK_FIELDS, "TaskDto", indexed=table.indexed)
    # DOCS tasks-task-list-rest-v3.md: "By default, tasks are sorted by `id` in ascending order".
    order = v3_order(params.get("order"), TASK_FIELDS, "TaskDto") or [("id", False)]
    offset, limit = v3_pagination(params.get("pagination"), state.v3_limit("tasks.task.list"))
    page, _ = execute(table, compiled, order=order, offset=offset, limit=limit, count=False)
    items = [_render_v3(state, r, own, rel) for r in page]
    cost = state.cost_model.list_cost(offset=offset, rows=len(items), counted=False)
    return MethodResult({"items": items}, cost=cost, rows=len(items))


def v3_task_get(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    id_ = _v3_id(params)
    own, rel = _parse_select(params.get("select"), TASK_DEFAULT_GET)
    row = state.table("tasks").get(id_)
    if row is None:
        raise _not_found(id_)
    return MethodResult({"item": _render_v3(state, row, own, rel)}, cost=state.cost_model.call_cost())


def v3_task_add(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    values = _v3_fields(params, adding=True)
    row = create_task(state, values, user_id=ctx.user_id)
    names = list(TASK_FIELDS)
    if state.crm.name == "docs":
        names = [n for n in names if n not in _ADD_ANSWER_OMITS]
    item = _render_v3(state, row, names, {})
    return MethodResult({"item": item}, cost=state.cost_model.call_cost(write=True))


# catalogue="docs": the captured answer of tasks-task-add-rest-v3.md has no user ids, `created`, `groupId`
# or participant lists (they come as related objects through tasks.task.get's `select`).
_ADD_ANSWER_OMITS = frozenset(
    {
        "creatorId",
        "responsibleId",
        "created",
        "groupId",
        "changedById",
        "closedById",
        "accomplices",
        "auditors",
    }
)


def v3_task_update(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    id_ = _v3_id(params)
    if state.table("tasks").get(id_) is None:
        raise _no_access()
    changes = _v3_fields(params, adding=False)
    if changes.get("parentId") == id_:
        # DOCS tasks-task-update-rest-v3.md, "Request Validation Errors".
        raise v3_validation("parentId", "Cannot bind a node to itself", summary=TASK_WRITE_VALIDATION_MESSAGE)
    update_task(state, id_, changes, user_id=ctx.user_id)
    return MethodResult({"result": True}, cost=state.cost_model.call_cost(write=True))


def v3_task_delete(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    id_ = _v3_id(params)
    if state.table("tasks").get(id_) is None:
        raise _no_access()
    state.delete_row("tasks", id_)
    return MethodResult({"result": True}, cost=state.cost_model.call_cost(write=True))


# DOCS tasks-task-field-list.md: the keys `select` may ask for, in the documented order.
_FIELD_LIST_KEYS = (
    "name",
    "type",
    "title",
    "description",
    "validationRules",
    "requiredGroups",
    "filterable",
    "sortable",
    "editable",
    "multiple",
    "elementType",
)
# catalogue="docs": the type word is the PHP type of the TaskDto property, as the documented answer shows
# ("int" for id/creatorId, "string" for title, "object" for the DateTime `created` and for `creator`,
# "array" for lists). `bool` is PHP's word for the boolean properties; the documented excerpt has none.
_PHP_TYPES = {
    "integer": "int",
    "string": "string",
    "datetime": "object",
    "enum": "string",
    "boolean": "bool",
    "array": "array",
}


def _legacy_field_list(state: PortalData) -> MethodResult:
    items = [
        {
            "name": f.name,
            "type": f.type,
            "title": f.title,
            "filterable": f.filterable,
            "sortable": f.sortable,
            "editable": f.editable,
        }
        for f in TASK_FIELDS.values()
    ]
    return MethodResult({"items": items}, cost=state.cost_model.call_cost())


def v3_task_field_list(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    if state.crm.name == "legacy":
        return _legacy_field_list(state)
    select = params.get("select")
    if select in (None, [], {}):
        # The keys of the documented answer; what the portal returns without `select` is not documented.
        keys = ["name", "type", "title", "description", "filterable", "sortable", "multiple"]
    elif isinstance(select, list) and all(isinstance(x, str) for x in select):
        keys = []
        for name in select:
            if name not in _FIELD_LIST_KEYS:
                raise v3_error(
                    "UNKNOWNDTOPROPERTYEXCEPTION", f"Unknown field `{name}` for entity `DtoFieldDto`"
                )
            keys.append(name)
    else:
        raise v3_error("INVALIDSELECTEXCEPTION", f"Unable to recognize select expression `{select}`")
    relations = {id_key: rel for rel, id_key in TASK_USER_RELATIONS.items()}
    entries: list[tuple[str, str, SimpleField]] = []
    for f in TASK_FIELDS.values():
        entries.append((f.name, _PHP_TYPES[f.type], f))
        if f.name in relations:
            # The documented answer lists the relation (`creator`, `responsible`) after its id, as "object".
            entries.append(
                (relations[f.name], "object", SimpleField(relations[f.name], "object", editable=False))
            )
    items = []
    for name, type_, f in entries:
        full: dict[str, Any] = {
            "name": name,
            "type": type_,
            # The documented answer's title is the field name itself, and its description null.
            "title": name,
            "description": None,
            "validationRules": [],
            "requiredGroups": [],
            "filterable": f.filterable,
            "sortable": f.sortable,
            "editable": f.editable,
            "multiple": False,
            "elementType": None,
        }
        items.append({k: full[k] for k in keys})
    return MethodResult({"items": items}, cost=state.cost_model.call_cost())


def _has_task_id(filter_: Any) -> bool:
    nodes = list(filter_.values()) if isinstance(filter_, Mapping) else filter_
    if not isinstance(nodes, list):
        return False
    for node in nodes:
        cond = list(node.values()) if isinstance(node, Mapping) and "logic" not in node else node
        if isinstance(cond, list) and cond and cond[0] == "taskId":
            op = "=" if len(cond) == 2 else str(cond[1]).lower()
            if op in ("=", "in"):
                return True
    return False


def v3_result_list(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    filter_ = params.get("filter")
    if filter_ in (None, "", [], {}):
        raise v3_validation(
            "filter", "The field value cannot be empty", summary=RESULT_LIST_VALIDATION_MESSAGE
        )
    if not _has_task_id(filter_):
        # DOCS tasks-task-result-list-rest-v3.md: the filter must hold a `taskId` condition.
        raise v3_validation(
            "filter.taskId",
            "A filter for the required field `taskId` must be specified",
            code="VALIDATION_REQUESTFILTERVALIDATIONEXCEPTION",
            summary=RESULT_LIST_VALIDATION_MESSAGE,
        )
    table = state.table("task_results")
    compiled = compile_v3(filter_, RESULT_FIELDS, "ResultDto", indexed=table.indexed)
    # The default order is not documented; id ascending, like tasks.task.list's documented default.
    order = v3_order(params.get("order"), RESULT_FIELDS, "ResultDto") or [("id", False)]
    offset, limit = v3_pagination(params.get("pagination"), state.v3_limit("tasks.task.result.list"))
    select = params.get("select")
    names = [str(x) for x in (select if isinstance(select, list) and select else RESULT_DEFAULT_SELECT)]
    for name in names:
        if name not in RESULT_FIELDS and name != "author":
            # §2.3 table: an unknown field of the DTO.
            raise v3_error("UNKNOWNDTOPROPERTYEXCEPTION", f"Unknown field `{name}` for entity `ResultDto`")
    page, _ = execute(table, compiled, order=order, offset=offset, limit=limit, count=False)
    items = []
    for row in page:
        item: dict[str, Any] = {}
        for name in names:
            if name == "author":
                item["author"] = _user_dto(state, row.get("authorId"), ["id", "name"])
            else:
                value = row.get(name)
                item[name] = list(value) if isinstance(value, list) else value
        items.append(item)
    cost = state.cost_model.list_cost(offset=offset, rows=len(items), counted=False)
    return MethodResult({"items": items}, cost=cost, rows=len(items))


# ---------------------------------------------------------------------------------------------------------
# v2


def _v2_value(key: str, value: Any) -> Any:
    if key in ("status", "realStatus"):
        return TASK_STATUS_V2.get(value, value)
    if key == "priority":
        return TASK_PRIORITY_V2.get(value, value)
    if key == "ufCrmTask":
        # No CRM links print as `false` (recorded fixture tests/fixtures/real-responses/single_add.json).
        return list(value) if value else False
    if isinstance(value, list):  # ACCOMPLICES / AUDITORS: user ids as strings, like every v2 number (§2.4)
        return [str(v) for v in value]
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "Y" if value else "N"
    return str(value)


def _v2_keys(select: Any) -> list[str]:
    names = [str(x).upper() for x in (list(select.values()) if isinstance(select, Mapping) else select or [])]
    if not names:
        names = list(TASK_V2_DEFAULT_SELECT)
    if "*" in names:
        names = list(TASK_V2_NAMES)
    keys = ["id"]
    for name in names:
        key = TASK_V2_NAMES.get(name)
        if key and key not in keys:
            keys.append(key)
    return keys


def _render_v2(
    state: PortalData, row: Mapping[str, Any], keys: list[str], *, full: bool = False
) -> dict[str, Any]:
    out = {key: _v2_value(key, row.get(TASK_V2_SOURCE[key])) for key in keys}
    if "status" in out:
        out["subStatus"] = "-1"
    out["group"] = []
    if full:
        for rel, id_key in (("creator", "creatorId"), ("responsible", "responsibleId")):
            dto = _user_dto(state, row.get(id_key), ["id", "name"])
            if dto is not None:
                uid = str(dto["id"])
                user = state.table("users").get(dto["id"]) or {}
                # DOCS tasks-task-get.md, response example: {id, name, link, icon, workPosition}.
                out[rel] = {
                    "id": uid,
                    "name": dto["name"],
                    "link": f"/company/personal/user/{uid}/",
                    "icon": "/bitrix/images/tasks/default_avatar.png",
                    "workPosition": user.get("WORK_POSITION"),
                }
    return out


def _v2_convert(kind: str) -> Callable[[Any], Any] | None:
    if kind == "status":
        return lambda v: _STATUS_BY_CODE.get(str(v), str(v))
    if kind == "priority":
        return lambda v: _PRIORITY_BY_CODE.get(str(v), str(v))
    return None


def _v2_resolve(name: str) -> FieldRef | None:
    key = TASK_V2_NAMES.get(name.upper())
    if key is None:
        return None
    canonical = TASK_V2_SOURCE[key]
    spec = TASK_FIELDS[canonical]
    if canonical == "id":
        return FieldRef("id", "id")
    if canonical in ("status", "priority"):
        return FieldRef(canonical, "str", _v2_convert(canonical))
    kind = {"integer": "int", "datetime": "datetime", "boolean": "bool"}.get(spec.type, "str")
    if canonical == "crmItemIds":
        kind = "list_str"
    return FieldRef(canonical, kind)


def _v2_task(state: PortalData, params: Mapping[str, Any], *, denied: ApiError) -> tuple[int, dict[str, Any]]:
    """The id and stored row of the task a v2 call names (`taskId`/`id`).

    DOCS tasks-task-get.md / -update.md / -delete.md, "Possible Error Codes": no `taskId` is "100", a
    `taskId` of the wrong type "0" "wrong task id". A task the user cannot reach answers `denied`, the
    method's access error; the pages give no separate answer for a task that does not exist.
    """
    value = next((v for k, v in params.items() if k.lower() in ("taskid", "id")), None)
    if value is None or value == "":
        raise ApiError(
            "100", "CTaskItem All parameters in the constructor must have real class type (internal error)"
        )
    id_ = strict_int(value)
    if id_ is None:
        raise ApiError("0", "wrong task id")
    row = state.table("tasks").get(id_) if id_ > 0 else None
    if row is None:
        raise denied
    return id_, row


# DOCS tasks-task-update.md, "Possible Error Codes" (tasks.task.get documents no access error; it gets the same).
_UPDATE_DENIED = ApiError("0", "Action on the task is not allowed (internal error)")
# DOCS tasks-task-delete.md, "Possible Error Codes".
_DELETE_DENIED = ApiError("1048582", "No access to delete the task")


def _v2_input(fields: Any, *, adding: bool) -> dict[str, Any]:
    if not isinstance(fields, Mapping) or not fields:
        # DOCS tasks-task-add.md and tasks-task-update.md, "Possible Error Codes".
        raise ApiError("100", "Could not find value for parameter {fields} (internal error)")
    out: dict[str, Any] = {}
    for key, value in fields.items():
        upper = str(key).upper()
        canonical = _V2_INPUT.get(upper)
        if canonical is None or canonical in ("id", "created", "changed", "guid"):
            continue
        if canonical == "status":
            value = _STATUS_BY_CODE.get(str(value), value)
        elif canonical == "priority":
            value = _PRIORITY_BY_CODE.get(str(value), value)
        try:
            out[canonical] = _coerce(TASK_FIELDS[canonical], value)
        except _Invalid:
            if canonical == "status":
                # DOCS tasks-task-update.md, "Possible Error Codes".
                raise ApiError("ERROR_CORE", "Invalid status<br>") from None
            # Undocumented: the sandbox refuses a value it cannot store in the field's type rather than
            # guess what the portal would keep (docs/sandbox-deviations.md).
            raise ApiError("ERROR_CORE", f"Invalid value of field {upper}<br>") from None
    if adding and not out.get("title"):
        # §7.4, recorded text of the v2 error.
        raise ApiError("ERROR_CORE", "Task title is not specified<br>")
    return out


def v2_task_list(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    raw_filter = params.get("filter") or {}
    kept = {}
    if isinstance(raw_filter, Mapping):
        # The legacy task list skips filter keys it does not know.
        kept = {k: v for k, v in raw_filter.items() if _v2_resolve(split_v2_key(str(k))[1]) is not None}
    compiled = compile_v2(kept, _v2_resolve)
    order = []
    raw_order = params.get("order") or {}
    for key, direction in raw_order.items() if isinstance(raw_order, Mapping) else []:
        ref = _v2_resolve(str(key))
        if ref is None:
            # DOCS tasks-task-list.md, "Possible Error Codes".
            raise ApiError("0", "Invalid sorting key (internal error)")
        order.append((ref.key, str(direction).upper() == "DESC"))
    page, total, nxt, cost = v2_list(state.table("tasks"), compiled, order, ctx, state.cost_model)
    keys = _v2_keys(params.get("select"))
    tasks = [_render_v2(state, r, keys) for r in page]
    return MethodResult({"tasks": tasks}, total=total, next=nxt, cost=cost, rows=len(tasks))


def v2_task_get(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    _, row = _v2_task(state, params, denied=_UPDATE_DENIED)
    keys = _v2_keys(params.get("select"))
    return MethodResult({"task": _render_v2(state, row, keys, full=True)}, cost=state.cost_model.call_cost())


def v2_task_add(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    values = _v2_input(params.get("fields"), adding=True)
    row = create_task(state, values, user_id=ctx.user_id)
    task = _render_v2(state, row, _v2_keys(["*"]), full=True)
    return MethodResult({"task": task}, cost=state.cost_model.call_cost(write=True))


def v2_task_update(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    id_, _ = _v2_task(state, params, denied=_UPDATE_DENIED)
    changes = _v2_input(params.get("fields"), adding=False)
    if changes.get("parentId") == id_:
        # DOCS tasks-task-update.md, "Error Handling".
        raise ApiError("ERROR_CORE", "Cannot bind the node to itself<br>")
    row = update_task(state, id_, changes, user_id=ctx.user_id)
    task = _render_v2(state, row, _v2_keys(["*"]), full=True)
    return MethodResult({"task": task}, cost=state.cost_model.call_cost(write=True))


def v2_task_delete(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    id_, _ = _v2_task(state, params, denied=_DELETE_DENIED)
    state.delete_row("tasks", id_)
    return MethodResult({"task": True}, cost=state.cost_model.call_cost(write=True))


# DOCS tasks-task-get-fields.md, response example, for the fields the sandbox stores: title, type and the
# optional `primary` / `required` / `default` / `values` keys as documented. REAL_STATUS is not listed there.
_GETFIELDS: dict[str, dict[str, Any]] = {
    "ID": {"title": "ID", "type": "integer", "primary": True},
    "PARENT_ID": {"title": "Base Task ID", "type": "integer", "default": 0},
    "TITLE": {"title": "Title", "type": "string", "required": True},
    "DESCRIPTION": {"title": "Description", "type": "string"},
    "PRIORITY": {
        "title": "Priority",
        "type": "enum",
        "values": {"2": "High", "1": "Medium", "0": "Low"},
        "default": 1,
    },
    "STATUS": {
        "title": "Status",
        "type": "enum",
        # The documented list stops at 6; tasks the sandbox generates can be declined (7, fields.md), so the
        # value every stored status maps to is listed.
        "values": {
            "2": "Pending",
            "3": "In Progress",
            "4": "Awaiting Review",
            "5": "Completed",
            "6": "Deferred",
            "7": "Declined",
        },
        "default": 2,
    },
    "GROUP_ID": {"title": "Project", "type": "integer", "default": 0},
    "CREATED_BY": {"title": "Creator", "type": "integer", "required": True},
    "CREATED_DATE": {"title": None, "type": "datetime"},
    "RESPONSIBLE_ID": {"title": "Participant", "type": "integer", "required": True},
    "CHANGED_BY": {"title": "Modified By", "type": "integer"},
    "CHANGED_DATE": {"title": "Modification Date", "type": "datetime"},
    "CLOSED_BY": {"title": "Closed By", "type": "integer", "default": None},
    "CLOSED_DATE": {"title": "Closure Date", "type": "datetime", "default": None},
    "DEADLINE": {"title": "Deadline", "type": "datetime", "default": None},
    "START_DATE_PLAN": {"title": "Planned Start", "type": "datetime", "default": None},
    "END_DATE_PLAN": {"title": "Planned Completion", "type": "datetime", "default": None},
    "GUID": {"title": "GUID", "type": "string", "default": None},
    "XML_ID": {"title": "XML_ID", "type": "string", "default": None},
    "TIME_ESTIMATE": {"title": "Estimated Time", "type": "integer"},
    "UF_CRM_TASK": {"title": "CRM Entities", "type": "crm"},
    "ACCOMPLICES": {"title": "Participants", "type": "array"},
    "AUDITORS": {"title": "Observers", "type": "array"},
}


def v2_task_getfields(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    """`tasks.task.getFields` (the server lowercases method names, §1.1): ``{"fields": {UPPER: {...}}}``."""
    fields = {
        name: {**spec, **({"values": dict(spec["values"])} if "values" in spec else {})}
        for name, spec in _GETFIELDS.items()
    }
    return MethodResult({"fields": fields}, cost=state.cost_model.call_cost())


_BB = re.compile(r"\[(B|I|U|S)\](.*?)\[/\1\]", re.I | re.S)


def _bb_html(text: str) -> str:
    """`formattedText`: the result text with BB code as HTML (tasks-task-result-list.md example:
    ``[B]Monday[/B]`` -> ``<b>Monday</b>``)."""
    return _BB.sub(lambda m: f"<{m.group(1).lower()}>{m.group(2)}</{m.group(1).lower()}>", text)


def v2_result_list(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    """v2 `tasks.task.result.list` (DOCS api-reference/tasks/result/tasks-task-result-list.md): the results of
    one task as a bare array, newest first as in the documented answer, no paging."""
    raw = next((v for k, v in params.items() if k.lower() == "taskid"), None)
    id_ = strict_int(raw)
    if id_ is None:
        # Documented error "100"; the page's text names the parameter `{commentId}`, the sandbox names the
        # parameter it checks (docs/sandbox-deviations.md).
        raise ApiError(
            "100",
            f"Invalid value {'' if raw is None else raw} to match with parameter {{taskId}}. "
            "Should be value of type int.",
        )
    if state.table("tasks").get(id_) is None:
        # DOCS tasks-task-result-list.md, "Possible Error Codes": "0", no access to the task or no such task.
        raise ApiError("0", "Access denied.")
    results = state.table("task_results")
    rows = []
    for rid in sorted(results.ids_by("taskId", [id_]), reverse=True):
        r = results.get(rid)
        if r is None:
            continue
        rows.append(
            {
                "id": r["id"],
                "taskId": r["taskId"],
                "commentId": r.get("messageId"),
                "createdBy": r.get("authorId"),
                "createdAt": r.get("createdAt"),
                "updatedAt": r.get("updatedAt"),
                "status": 1 if r.get("status") == "closed" else 0,
                "text": r.get("text") or "",
                "formattedText": _bb_html(r.get("text") or ""),
                "files": list(r.get("fileIds") or []),
            }
        )
    return MethodResult(rows, cost=state.cost_model.call_cost(), rows=len(rows))


METHODS_V2: dict[str, Handler] = {
    "tasks.task.list": v2_task_list,
    "tasks.task.get": v2_task_get,
    "tasks.task.add": v2_task_add,
    "tasks.task.update": v2_task_update,
    "tasks.task.delete": v2_task_delete,
    "tasks.task.getfields": v2_task_getfields,
    "tasks.task.result.list": v2_result_list,
}
METHODS_V3: dict[str, Handler] = {
    "tasks.task.list": v3_task_list,
    "tasks.task.get": v3_task_get,
    "tasks.task.add": v3_task_add,
    "tasks.task.update": v3_task_update,
    "tasks.task.delete": v3_task_delete,
    "tasks.task.field.list": v3_task_field_list,
    "tasks.task.result.list": v3_result_list,
}
WRITES = frozenset({"tasks.task.add", "tasks.task.update", "tasks.task.delete"})
