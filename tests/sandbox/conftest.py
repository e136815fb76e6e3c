"""Fixtures that start sandbox portals over real loopback HTTP.

``core_portal`` serves a small test-local state (:class:`StandInState`) whose methods are chosen to probe the
HTTP core (an ``echo`` method that returns the parameters it received, a paged classic list, crm.item-style
calls with int ids, v3 task calls). It keeps the HTTP-core tests independent of the data side's generator.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from bitrix24_source.sandbox import ApiError, CallContext, CostModel, MethodResult, Sandbox

PAGE = 50


class StandInState:
    """A deterministic, tiny portal state exposing the PortalState seam (``dispatch`` and friends)."""

    def __init__(self, leads: int = 120, cost: float = 0.1) -> None:
        self.lock = threading.RLock()
        self.cost = cost
        self.leads: dict[int, dict[str, Any]] = {
            i: {"ID": str(i), "TITLE": f"Lead {i} <b>/é"} for i in range(1, leads + 1)
        }
        self.items: dict[int, dict[str, Any]] = {i: {"id": i, "title": f"Item {i}"} for i in range(1, 11)}
        self.tasks: dict[int, dict[str, Any]] = {
            i: {"id": i, "title": f"Task {i}", "status": "pending"} for i in range(1, 8)
        }
        self.clock = 1_700_000_000.0
        self.calls: list[tuple[int, str, dict[str, Any], CallContext]] = []

    def is_write(self, method: str) -> bool:
        return method.endswith((".add", ".update", ".delete"))

    def dispatch(self, version: int, method: str, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        self.calls.append((version, method, params, ctx))
        handler = getattr(self, f"_v{version}_" + method.replace(".", "_"), None)
        if handler is None:
            if version == 3:
                raise ApiError(
                    "BITRIX_REST_V3_EXCEPTION_METHODNOTFOUNDEXCEPTION", f"Method '{method}' not found", 404
                )
            raise ApiError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
        result: MethodResult = handler(params, ctx)
        result.cost = result.cost or self.cost
        return result

    # v2 -----------------------------------------------------------------------------------------------

    def _v2_echo(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        return MethodResult({"params": params, "start": ctx.start, "start_given": ctx.start_given})

    def _v2_fail(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        raise ApiError("INVALID_ARG_VALUE", "Invalid filter", 400, extra={"argument": "filter"})

    def _v2_crm_lead_get(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        raw = params.get("id", params.get("ID"))
        if raw in (None, "", "0"):
            raise ApiError("", "ID is not defined or invalid.", 400)
        row = self.leads.get(int(raw))
        if row is None:
            raise ApiError("", "Not found", 400)
        return MethodResult(dict(row))

    def _v2_crm_lead_list(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        flt = params.get("filter") or {}
        above = int(flt.get(">ID", 0)) if isinstance(flt, dict) else 0
        rows = [row for i, row in sorted(self.leads.items()) if i > above]
        if ctx.start < 0:
            page = rows[:PAGE]
            return MethodResult(page, total=0, rows=len(page))
        page = rows[ctx.start : ctx.start + PAGE]
        nxt = ctx.start + len(page) if ctx.start + len(page) < len(rows) else None
        return MethodResult(page, total=len(rows), next=nxt, rows=len(page))

    def _v2_crm_lead_add(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        new_id = max(self.leads) + 1
        fields = params.get("fields") or {}
        self.leads[new_id] = {"ID": str(new_id), "TITLE": str(fields.get("TITLE", ""))}
        return MethodResult(new_id)

    def _v2_crm_item_get(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        row = self.items.get(int(params.get("id", 0)))
        if row is None:
            raise ApiError("NOT_FOUND", "Element not found", 400)
        return MethodResult({"item": dict(row)})

    def _v2_crm_item_delete(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        self.items.pop(int(params.get("id", 0)), None)
        return MethodResult({})

    def _v2_server_time(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        return MethodResult("2026-11-22T21:00:00+00:00")

    # v3 -----------------------------------------------------------------------------------------------

    def _v3_echo(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        return MethodResult({"item": {"params": params}})

    def _v3_tasks_task_get(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        task = self.tasks.get(int(params.get("id", 0)))
        if task is None:
            raise ApiError(
                "BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION",
                f"Record with ID = `{params.get('id')}` not found",
                400,
            )
        return MethodResult({"item": dict(task)})

    def _v3_tasks_task_list(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        rows = list(self.tasks.values())
        for cond in params.get("filter") or []:
            if isinstance(cond, list) and len(cond) == 3 and cond[1] == "in":
                rows = [r for r in rows if r[cond[0]] in cond[2]]
        return MethodResult({"items": [dict(r) for r in rows]}, rows=len(rows))

    def _v3_tasks_task_update(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        task = self.tasks.get(int(params.get("id", 0)))
        if task is None:
            raise ApiError("BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION", "Record not found", 400)
        task.update(params.get("fields") or {})
        return MethodResult({"result": True})

    # seam for the Sandbox inspection helpers --------------------------------------------------------------

    def rows(self, entity: str) -> list[dict[str, Any]]:
        return [dict(r) for r in {"leads": self.leads, "tasks": self.tasks}[entity].values()]

    def add_row(self, entity: str, fields: dict[str, Any]) -> dict[str, Any]:
        new_id = max(self.leads) + 1
        self.leads[new_id] = {"ID": str(new_id), **fields}
        return self.leads[new_id]

    def update_row(self, entity: str, id: int, fields: dict[str, Any]) -> dict[str, Any]:
        self.leads[id].update(fields)
        return self.leads[id]

    def delete_row(self, entity: str, id: int) -> None:
        del self.leads[id]

    def advance_clock(self, seconds: float) -> None:
        self.clock += seconds

    def now(self) -> float:
        return self.clock


@pytest.fixture
def core_state() -> StandInState:
    return StandInState()


@pytest.fixture
def core_portal(core_state: StandInState) -> Iterator[Sandbox]:
    with Sandbox(state=core_state, webhook_code="testcode123", cost_model=CostModel()) as portal:
        yield portal


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session
