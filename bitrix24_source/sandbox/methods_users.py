"""User and server methods of the sandbox portal: `user.get`, `user.current`, `user.fields` (§7.5) and
`server.time`.

`user.get` is the odd one among lists: the filter comes as top-level keys (or under `FILTER`), and sorting
uses top-level `SORT`/`ORDER` strings instead of an `order` object.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bitrix24_source.sandbox.fields import USER_FIELD_LABELS, USER_TYPES
from bitrix24_source.sandbox.filters import FieldRef, compile_v2, split_v2_key, v2_list
from bitrix24_source.sandbox.store import iso
from bitrix24_source.sandbox.types import ApiError, CallContext, Handler, MethodResult, PortalData

_KINDS = {"id": "id", "bool": "bool", "string": "str", "datetime": "datetime", "list_int": "list_int"}
# Top-level keys of user.get that are not filter conditions.
_CONTROL_KEYS = frozenset({"SORT", "ORDER", "FILTER", "ADMIN_MODE"})


def _resolve(name: str) -> FieldRef | None:
    kind = USER_TYPES.get(name.upper())
    return FieldRef(name.upper(), _KINDS[kind]) if kind else None


def _user_filter(params: Mapping[str, Any]) -> dict[str, Any]:
    upper = {str(k).upper(): v for k, v in params.items()}
    raw = upper.get("FILTER")
    source: Mapping[Any, Any] = (
        raw
        if isinstance(raw, Mapping)
        else {k: v for k, v in params.items() if str(k).upper() not in _CONTROL_KEYS}
    )
    # CUser::GetList skips keys it does not know instead of failing.
    return {str(k): v for k, v in source.items() if _resolve(split_v2_key(str(k))[1]) is not None}


def user_get(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    upper = {str(k).upper(): v for k, v in params.items()}
    compiled = compile_v2(_user_filter(params), _resolve)
    sort_ref = _resolve(str(upper.get("SORT") or "ID"))
    desc = str(upper.get("ORDER") or "ASC").upper() == "DESC"
    order = [(sort_ref.key, desc)] if sort_ref else [("ID", False)]
    page, total, nxt, cost = v2_list(state.table("users"), compiled, order, ctx, state.cost_model)
    rows = [_copy(r) for r in page]
    return MethodResult(rows, total=total, next=nxt, cost=cost, rows=len(rows))


def _copy(row: Mapping[str, Any]) -> dict[str, Any]:
    # Real portals print TIMESTAMP_X and LAST_ACTIVITY_DATE in user.get as empty objects {} (DOCS
    # api-reference/user/user-get.md, response example); the sandbox prints their value like the other dates
    # so that warehouse tests can compare them. Both filter as dates either way.
    return {k: list(v) if isinstance(v, list) else v for k, v in row.items()}


def user_current(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    row = state.table("users").get(ctx.user_id)
    if row is None:
        # §2.2 error table: the webhook user does not exist.
        raise ApiError("NO_AUTH_FOUND", "Wrong authorization data", 401)
    # user.current has no TIMESTAMP_X and prints LAST_ACTIVITY_DATE as "Y-m-d H:i:s" in portal time
    # (DOCS api-reference/user/user-current.md, response example).
    out = {k: v for k, v in _copy(row).items() if k != "TIMESTAMP_X"}
    activity = row.get("LAST_ACTIVITY_DATE")
    if isinstance(activity, str):
        out["LAST_ACTIVITY_DATE"] = activity[:19].replace("T", " ")
    return MethodResult(out, cost=state.cost_model.call_cost())


def user_fields(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    return MethodResult(dict(USER_FIELD_LABELS), cost=state.cost_model.call_cost())


def server_time(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    return MethodResult(iso(state.now()), cost=state.cost_model.call_cost())


METHODS_V2: dict[str, Handler] = {
    "user.get": user_get,
    "user.current": user_current,
    "user.fields": user_fields,
    "server.time": server_time,
}
