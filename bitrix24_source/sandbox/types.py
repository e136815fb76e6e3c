"""Values shared by the sandbox's HTTP core and its method implementations.

The sandbox is the other side of the wire: nothing here (or anywhere under sandbox/) imports the client's
modules, so one misunderstanding of the protocol cannot hide on both sides of a test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from bitrix24_source.sandbox.fields import CrmCatalogue
from bitrix24_source.sandbox.store import Table


class ApiError(Exception):
    """A Bitrix24 API error raised by a method implementation.

    The HTTP core renders it as the v2 envelope ``{"error", "error_description"}`` (§2.2) or the v3 envelope
    ``{"error": {"code", "message", "validation"?}}`` (§2.3), depending on the API version of the call. Inside
    a v2 batch it becomes a ``result_error`` entry (§4.2).
    """

    def __init__(
        self,
        code: str,
        description: str,
        status: int = 400,
        *,
        validation: list[dict[str, str]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.status = status
        self.validation = validation
        self.extra = extra or {}


@dataclass(frozen=True, slots=True)
class CallContext:
    """What a method implementation may know about the call besides its parameters."""

    version: int  # 2 or 3
    start: int = 0  # v2 only: intval(start) as the server computes it (§1.5 step 4); -1 means keyset page
    start_given: bool = False  # whether the request carried `start` at all
    user_id: int = 1
    in_batch: bool = False


@dataclass(slots=True)
class MethodResult:
    """What a method returns: the ``result`` payload plus list navigation and its simulated cost."""

    result: Any
    total: int | None = None  # v2 lists: moved to top-level `total` (§2.1); None = absent
    next: int | None = None  # v2 lists: `next` only when more rows remain (§3.1); None = absent
    cost: float = 0.0  # simulated operating seconds charged to this method (§6.1)
    rows: int = 0  # list rows served (for stats)


class PortalData(Protocol):
    """What a method implementation may use of the portal state (`state.PortalState` provides it).

    Typing the handlers against this instead of `PortalState` keeps the method modules free of imports of
    `state.py`, which imports them.
    """

    cost_model: CostModel
    crm: CrmCatalogue

    def table(self, entity: str) -> Table: ...
    def now(self) -> float: ...
    def v3_limit(self, method: str) -> int: ...
    def new_guid(self) -> str: ...
    def assign_fm_ids(self, row: dict[str, Any]) -> None: ...
    def delete_row(self, entity: str, id: int) -> None: ...


# A method implementation: (portal state, parameters, call context) -> result, or raises ApiError.
Handler = Callable[[PortalData, dict[str, Any], CallContext], MethodResult]


@dataclass(frozen=True, slots=True)
class CostModel:
    """Simulated operating cost of a call, in seconds (§6.1, DOCS settings/performance/huge-data.md).

    Offset pages cost more the deeper they go and counting the total costs extra, while ``start=-1`` keyset
    pages (offset 0, no count) stay cheap, as the huge-data page describes.
    """

    base: float = 0.002
    per_row: float = 0.0002
    per_offset_row: float = 0.00002
    count: float = 0.05
    write: float = 0.01

    def list_cost(self, *, offset: int, rows: int, counted: bool) -> float:
        return (
            self.base
            + self.per_row * rows
            + self.per_offset_row * max(offset, 0)
            + (self.count if counted else 0.0)
        )

    def call_cost(self, *, write: bool = False) -> float:
        return self.base + (self.write if write else 0.0)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Leaky bucket parameters (§6.1): `burst` requests, draining `drain` per second."""

    burst: int = 50
    drain: float = 2.0


ENTITIES = ("leads", "deals", "contacts", "companies", "users", "tasks", "task_results", "deal_products")


@dataclass(slots=True)
class SeedCounts:
    """How many rows of each entity the generator creates."""

    leads: int = 200
    deals: int = 500
    contacts: int = 300
    companies: int = 100
    users: int = 25
    tasks: int = 200
    results_per_task: tuple[int, int] = (0, 3)
    products_per_deal: tuple[int, int] = (0, 3)
    extra: dict[str, Any] = field(default_factory=dict)
