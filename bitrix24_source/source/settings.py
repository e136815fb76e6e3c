"""Entity specs of the Bitrix24 source, as data (STYLE.md rule 7: resources are generated from these).

Nothing here does I/O. `source.py` turns each spec into a dlt resource; `readers.py` turns a spec plus a
cursor into REST commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

PAGE_SIZE: Final = 50
"""v2 list page size, fixed by the server (§3.1)."""

BATCH_LIMIT: Final = 50
"""Commands per batch, v2 and v3 (§4.5, §5.6)."""

ListStyle = Literal["crm_item", "user", "tasks_v3", "task_results_v3", "product_rows"]


@dataclass(frozen=True, slots=True)
class EntitySpec:
    """How one Bitrix24 entity is listed and loaded.

    Attributes:
        name: dlt resource and table name (plural snake_case).
        method: the list method.
        style: which request/response dialect the list method speaks (see readers.py).
        id_field: the id field as the response carries it (`id` for crm.item / v3, `ID` for user.get).
        list_key: the wrapper key of the rows in `result` (`items`, `productRows`), or None for a bare list.
        cursor_field: the modification-time field used for incremental loads, or None (full merge each run).
        entity_type_id: crm.item entityTypeId (§7.1), None for non-CRM entities.
        fields_method: the method describing the entity's fields (types for the schema), if any.
        api_version: 2 or 3.
        default: whether `bitrix24_source()` selects this resource by default.
    """

    name: str
    method: str
    style: ListStyle
    id_field: str = "id"
    list_key: str | None = "items"
    cursor_field: str | None = None
    entity_type_id: int | None = None
    fields_method: str | None = None
    api_version: int = 2
    default: bool = True


def _crm(name: str, entity_type_id: int) -> EntitySpec:
    """A crm.item entity (§7.2): `items` rows with an `id`, incremental on `updatedTime`."""
    return EntitySpec(
        name,
        "crm.item.list",
        "crm_item",
        cursor_field="updatedTime",
        entity_type_id=entity_type_id,
        fields_method="crm.item.fields",
    )


LEADS: Final = _crm("leads", 1)
DEALS: Final = _crm("deals", 2)
CONTACTS: Final = _crm("contacts", 3)
COMPANIES: Final = _crm("companies", 4)

CRM_ENTITIES: Final = (LEADS, DEALS, CONTACTS, COMPANIES)

DEAL_PRODUCTS: Final = EntitySpec(
    "deal_products",
    "crm.item.productrow.list",
    "product_rows",
    list_key="productRows",
    fields_method="crm.item.productrow.fields",
)

USERS: Final = EntitySpec(
    name="users",
    method="user.get",
    style="user",
    id_field="ID",
    list_key=None,
    fields_method="user.fields",
    default=False,
)


def _v3(name: str, method: str, style: ListStyle, **extra: Any) -> EntitySpec:
    """A REST v3 list (§5.2): `items` rows with an `id`, not selected by default."""
    return EntitySpec(name=name, method=method, style=style, api_version=3, default=False, **extra)


TASKS: Final = _v3(
    "tasks", "tasks.task.list", "tasks_v3", cursor_field="changed", fields_method="tasks.task.field.list"
)
TASK_RESULTS: Final = _v3("task_results", "tasks.task.result.list", "task_results_v3")

ALL_ENTITIES: Final = (*CRM_ENTITIES, DEAL_PRODUCTS, USERS, TASKS, TASK_RESULTS)
SPECS_BY_NAME: Final = {spec.name: spec for spec in ALL_ENTITIES}

FIELD_DEFINITIONS_TABLE: Final = "field_definitions"

ALL_RESOURCES: Final = (*(spec.name for spec in ALL_ENTITIES), FIELD_DEFINITIONS_TABLE)
"""Every resource of the source, in load order (`bitrix24_source().with_resources(*ALL_RESOURCES)`)."""
DELETED_COLUMN: Final = "_deleted"
"""Hard-delete marker column: rows with `_deleted = true` are removed by dlt's merge (hard_delete hint)."""

DEFAULT_LAG_SECONDS: Final = 300.0
"""Incremental lag window, seconds: rows changed this long before the last seen cursor are read again, so
clock skew between the portal's app servers (and writes committed late) cannot hide a change."""

PRODUCT_ROWS_OWNERS_PER_COMMAND: Final = 20
"""Deals per crm.item.productrow.list command: most deals carry a few product rows, so 20 owners usually fit
in one 50-row page; a full page is continued with an `>id` keyset follow-up."""
