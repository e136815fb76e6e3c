"""Entity specs and field-type tables of the Bitrix24 source, as data. No I/O.

The source's `__init__.py` turns each spec into a dlt resource (one generic resource per list style instead
of a class per REST method); queries.py turns a spec plus a cursor into REST commands. The static field
tables type the entities whose field-list methods describe no types (users, task results) or may be missing
(deal product rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

PAGE_SIZE: Final = 50
"""v2 list page size, fixed by the server (§3.1)."""

BATCH_LIMIT: Final = 50
"""Commands per batch, v2 and v3 (§4.5, §5.6)."""

ListStyle = Literal["crm_item", "user", "classic", "tasks_v3", "task_results_v3", "product_rows"]


@dataclass(frozen=True, slots=True)
class EntitySpec:
    """How one Bitrix24 entity is listed and loaded.

    Attributes:
        name: dlt resource and table name (plural snake_case).
        method: the list method.
        style: which request/response dialect the list method speaks (see queries.py).
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


def _crm(name: str, entity_type_id: int, *, default: bool = True) -> EntitySpec:
    """A crm.item entity (§7.2): `items` rows with an `id`, incremental on `updatedTime`."""
    return EntitySpec(
        name,
        "crm.item.list",
        "crm_item",
        cursor_field="updatedTime",
        entity_type_id=entity_type_id,
        fields_method="crm.item.fields",
        default=default,
    )


LEADS: Final = _crm("leads", 1)
DEALS: Final = _crm("deals", 2)
CONTACTS: Final = _crm("contacts", 3)
COMPANIES: Final = _crm("companies", 4)

CRM_ENTITIES: Final = (LEADS, DEALS, CONTACTS, COMPANIES)

QUOTES: Final = _crm("quotes", 7, default=False)
INVOICES: Final = _crm("invoices", 31, default=False)
"""Quotes and smart invoices are crm.item types like deals (DOCS api-reference/crm/universal/index.md)."""

CRM_ITEM_ENTITIES: Final = (QUOTES, INVOICES)
"""crm.item types beyond the four classic entities with a fixed name; smart processes are `spa_spec(...)`."""

SPA_PREFIX: Final = "spa_"
SMART_PROCESSES: Final = "smart_processes"
"""Selector name (CLI `--resources`, `select_resources`) for every `spa_<entityTypeId>` resource of a portal."""


def spa_spec(entity_type_id: int) -> EntitySpec:
    """The `spa_<entityTypeId>` resource of one smart-process type (discovered with crm.type.list)."""
    return _crm(f"{SPA_PREFIX}{entity_type_id}", entity_type_id, default=False)


def is_spa_name(name: str) -> bool:
    """Whether `name` is a smart-process resource name (`spa_<entityTypeId>`)."""
    return name.startswith(SPA_PREFIX) and name[len(SPA_PREFIX) :].isdigit()


SPA_TYPES_TABLE: Final = "spa_types"
CRM_STATUSES_TABLE: Final = "crm_statuses"
CRM_CATEGORIES_TABLE: Final = "crm_categories"
DEPARTMENTS_TABLE: Final = "departments"
DIRECTORY_TABLES: Final = (SPA_TYPES_TABLE, CRM_STATUSES_TABLE, CRM_CATEGORIES_TABLE, DEPARTMENTS_TABLE)
"""Small reference lists read whole and replaced each run (source/directories.py)."""

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

ACTIVITIES: Final = EntitySpec(
    name="activities",
    method="crm.activity.list",
    style="classic",
    id_field="ID",
    list_key=None,
    cursor_field="LAST_UPDATED",
    fields_method="crm.activity.fields",
    default=False,
)
"""crm.activity.list: a bare list of UPPER_CASE rows (DOCS api-reference/crm/timeline/activities/activity-base/
crm-activity-list.md), keyset on `ID`, incremental on `LAST_UPDATED`."""

STAGE_HISTORY: Final = EntitySpec(
    name="stage_history",
    method="crm.stagehistory.list",
    style="classic",
    id_field="ID",
    default=False,
)
"""crm.stagehistory.list: `items` rows, ids numbered per entity type (DOCS api-reference/crm/
crm-stage-history-list.md). One spec per entity type is made from it with its `entity_type_id`."""

ALL_ENTITIES: Final = (*CRM_ENTITIES, DEAL_PRODUCTS, USERS, TASKS, TASK_RESULTS, ACTIVITIES, STAGE_HISTORY)
SPECS_BY_NAME: Final = {spec.name: spec for spec in (*ALL_ENTITIES, *CRM_ITEM_ENTITIES)}

FIELD_DEFINITIONS_TABLE: Final = "field_definitions"

ALL_RESOURCES: Final = (
    *(spec.name for spec in ALL_ENTITIES),
    FIELD_DEFINITIONS_TABLE,
    *(spec.name for spec in CRM_ITEM_ENTITIES),
    *DIRECTORY_TABLES,
)
"""Every resource of the source with a fixed name, in load order (`bitrix24_source().with_resources(
*ALL_RESOURCES)`); the `spa_<entityTypeId>` resources depend on the portal (`select_resources`)."""
DELETED_COLUMN: Final = "_deleted"
"""Hard-delete marker column: rows with `_deleted = true` are removed by dlt's merge (hard_delete hint)."""

DEFAULT_LAG_SECONDS: Final = 300.0
"""Incremental lag window, seconds: rows changed this long before the last seen cursor are read again, so
clock skew between the portal's app servers (and writes committed late) cannot hide a change."""

PRODUCT_ROWS_OWNERS_PER_COMMAND: Final = 20
"""Deals per crm.item.productrow.list command before any product rows were read: most deals carry a few
product rows, so 20 owners usually fit in one 50-row page; a full page is continued with an `>id` keyset
follow-up. After the first page of deals the group size follows the rows per deal seen (PRODUCT_ROWS_PER_COMMAND)."""

PRODUCT_ROWS_PER_COMMAND: Final = 40
"""Rows aimed at per 50-row product-row page: at 1.5 rows per deal, 26 deals per command, 97 commands (two
batches, about 1,900 rows each) per 2,500 deals, and under 2 % of pages overflow into a follow-up."""

MAX_OWNERS_PER_COMMAND: Final = 500
"""Upper bound of deal ids in one command's `@ownerId` (portals where few deals have product rows)."""

USER_FIELD_TYPES: Final[dict[str, str]] = {
    "ID": "integer",
    "ACTIVE": "boolean",
    "IS_ONLINE": "char",
    "LAST_LOGIN": "datetime",
    "DATE_REGISTER": "datetime",
    "TIMESTAMP_X": "datetime",
    "LAST_ACTIVITY_DATE": "datetime",
    "PERSONAL_BIRTHDAY": "date",
    "UF_EMPLOYMENT_DATE": "date",
    "UF_DEPARTMENT": "integer",
}
"""user.fields returns labels only (recorded: user_fields.json), so user field types are the ones documented
for user.get (DOCS api-reference/user/user-get.md); fields not listed are left to dlt's inference."""

USER_MULTIPLE_FIELDS: Final = frozenset({"UF_DEPARTMENT"})
"""User fields that hold a list (the department ids, DOCS api-reference/user/user-get.md)."""

PRODUCT_ROW_FIELDS: Final[dict[str, str]] = {
    "id": "integer",
    "ownerId": "integer",
    "ownerType": "string",
    "productId": "integer",
    "productName": "string",
    "price": "money",
    "priceAccount": "money",
    "priceExclusive": "money",
    "priceNetto": "money",
    "priceBrutto": "money",
    "quantity": "double",
    "discountTypeId": "integer",
    "discountRate": "double",
    "discountSum": "money",
    "taxRate": "double",
    "taxIncluded": "char",
    "customized": "char",
    "measureCode": "integer",
    "measureName": "string",
    "sort": "integer",
    "xmlId": "string",
    "type": "integer",
}
"""crm.item.productrow fields and types (DOCS api-reference/crm/universal/product-rows; recorded:
crm_item_productrow_list.json): used only when the portal has no `crm.item.productrow.fields`."""

PRODUCT_ROW_UNDESCRIBED: Final = frozenset({"priceAccount", "xmlId"})
"""Row fields that `crm.item.productrow.fields` does not describe (they cannot be written): typed from the
table above."""

TASK_RESULT_FIELDS: Final[dict[str, str]] = {
    "id": "integer",
    "taskId": "integer",
    "text": "string",
    "authorId": "integer",
    "createdAt": "datetime",
    "updatedAt": "datetime",
    "status": "string",
    "fileIds": "array",
    "messageId": "integer",
}
"""tasks.task.result.list fields (DOCS api-reference/tasks/result; no v3 field-list method for results).
They are also the `select` sent: v3 rejects unknown fields in `select` of related DTOs (§2.3)."""

TASK_RESULT_MULTIPLE_FIELDS: Final = frozenset({"fileIds"})
"""Task result fields that hold a list (the attached file ids)."""

STAGE_HISTORY_FIELDS: Final[dict[str, str]] = {
    "ID": "integer",
    "TYPE_ID": "integer",
    "OWNER_ID": "integer",
    "CREATED_TIME": "datetime",
    "CATEGORY_ID": "integer",
    "STAGE_SEMANTIC_ID": "string",
    "STAGE_ID": "crm_status",
    "STATUS_SEMANTIC_ID": "string",
    "STATUS_ID": "crm_status",
}
"""crm.stagehistory.list item fields and types (DOCS api-reference/crm/crm-stage-history-list.md, "Object
items" and its per-type tabs: leads carry STATUS_*, deals, invoices and smart processes CATEGORY_ID and
STAGE_*). The method has no field-list method, so this table types the `stage_history` columns."""

STAGE_HISTORY_FIXED_TYPES: Final = (1, 2, 31)
"""Entity types whose stage history every portal has: leads, deals and (new) invoices (DOCS
api-reference/crm/crm-stage-history-list.md, `entityTypeId`); smart processes are added from crm.type.list.
Old invoices (5) are left out: their list method is deprecated and the `invoices` table is entity type 31."""
