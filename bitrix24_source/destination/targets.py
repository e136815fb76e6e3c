"""Write targets: which methods write each entity, their parameters and their answers; no I/O.

CRM entities (leads, deals, contacts, companies, quotes, invoices and smart processes ``spa_<entityTypeId>``)
are written through the universal ``crm.item.*`` family with camelCase fields (§7.2); tasks through v2
``tasks.task.*`` with UPPER_CASE fields (§7.4); deal product rows (``deal_products``) one row per command
through ``crm.item.productrow.add`` / ``.update`` / ``.delete`` (:mod:`.productrows` says why not ``.set``).
``marker_field`` and ``key=`` must name fields the portal will store (:func:`check_write_options`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from bitrix24_source.fields import EntityFields

Operation = Literal["add", "update", "delete"]
Family = Literal["crm_item", "tasks", "product_rows"]


@dataclass(frozen=True, slots=True)
class WriteTarget:
    """Where the rows of one table go: the method family and its parameter names.

    Attributes:
        entity: the table / entity name (``deals``, ``tasks``, ``spa_128``, ``deal_products``, ...).
        family: ``crm_item`` (crm.item.*, camelCase, §7.2), ``tasks`` (v2 tasks.task.*, UPPER_CASE, §7.4) or
            ``product_rows`` (crm.item.productrow.*, camelCase).
        entity_type_id: crm.item entityTypeId (§7.1): of the entity, or of the product rows' owner; None for
            tasks.
        marker_field: the field stamped with an idempotency marker on adds (canonical spelling); None when
            the entity has no field for an outside id (quotes, product rows): then adds need ``key=`` or
            ``marker_field=`` (quotes) or are recognised another way (product rows, :mod:`.productrows`).
        fixed_fields: values every add carries whatever the row says (the product rows' ``ownerType``); a
            row that gives another value is rejected.
    """

    entity: str
    family: Family
    entity_type_id: int | None
    marker_field: str | None
    fixed_fields: Mapping[str, Any] = field(default_factory=dict)

    @property
    def fields_method(self) -> str:
        return {
            "crm_item": "crm.item.fields",
            "tasks": "tasks.task.getFields",
            "product_rows": "crm.item.productrow.fields",
        }[self.family]

    @property
    def list_method(self) -> str:
        return {
            "crm_item": "crm.item.list",
            "tasks": "tasks.task.list",
            "product_rows": "crm.item.productrow.list",
        }[self.family]

    @property
    def id_field(self) -> str:
        return "ID" if self.family == "tasks" else "id"

    def fields_params(self) -> dict[str, Any]:
        # crm.item.productrow.fields takes no parameters (crm-item-productrow-fields.md).
        return {"entityTypeId": self.entity_type_id} if self.family == "crm_item" else {}

    def command(
        self, operation: Operation, bitrix_id: int | None, fields: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """The (method, params) pair of one write."""
        if self.family == "product_rows":
            # api-reference/crm/universal/product-rows/crm-item-productrow-add.md: {"fields": {ownerId,
            # ownerType, ...}}; -update.md: {"id", "fields"}; -delete.md: {"id"}.
            params: dict[str, Any] = {} if bitrix_id is None else {"id": bitrix_id}
            if operation != "delete":
                params["fields"] = dict(fields)
            return f"crm.item.productrow.{operation}", params
        if self.family == "crm_item":
            params = {"entityTypeId": self.entity_type_id}
            if bitrix_id is not None:
                params["id"] = bitrix_id
            if operation != "delete":
                params["fields"] = dict(fields)
            return f"crm.item.{operation}", params
        params = {}
        if bitrix_id is not None:
            params["taskId"] = bitrix_id
        if operation != "delete":
            params["fields"] = dict(fields)
        return f"tasks.task.{operation}", params

    def lookup_params(self, field_name: str, value: Any) -> dict[str, Any]:
        """A list request for the records whose `field_name` equals `value` (one page: up to 50 of them)."""
        if self.family == "crm_item":
            # `=` is the "equals" prefix of the crm.item.list filter (§7.2).
            return {
                "entityTypeId": self.entity_type_id,
                "filter": {f"={field_name}": value},
                "select": ["id", field_name],
                "order": {"id": "ASC"},
            }
        return {"filter": {field_name: value}, "select": ["ID", field_name], "order": {"ID": "ASC"}}

    def lookup_many_params(self, field_name: str, values: list[str]) -> dict[str, Any] | None:
        """A list request for the records whose `field_name` is any of `values` (one page: up to 50 rows), or
        None when the family has no documented "in" filter (tasks: one request per value)."""
        if self.family != "crm_item":
            return None
        # `@` is the "in" prefix of the crm.item.list filter (api-reference/crm/universal/crm-item-list.md).
        return {
            "entityTypeId": self.entity_type_id,
            "filter": {f"@{field_name}": values},
            "select": ["id", field_name],
            "order": {"id": "ASC"},
        }

    def comm_lookup_params(self, kind: str, value: str) -> dict[str, Any]:
        """A crm.duplicate.findbycomm request for the records of this entity holding one email / phone (one
        value per command: the answer does not say which value matched which record)."""
        return {"type": kind, "values": [value], "entity_type": COMM_ENTITY_TYPES[self.entity]}

    def comm_ids(self, result: Any) -> list[int]:
        """The ids of this entity in a crm.duplicate.findbycomm result (``{"CONTACT": [275]}``; an empty
        match may come as ``[]``)."""
        ids = result.get(COMM_ENTITY_TYPES[self.entity]) if isinstance(result, Mapping) else None
        return sorted({i for v in ids or [] if (i := as_id(v)) is not None})

    def lookup_rows(self, result: Any) -> list[dict[str, Any]]:
        """The rows of a lookup response (`items` for crm.item.list, `tasks` for tasks.task.list, §3.3;
        `productRows` for crm.item.productrow.list, crm-item-productrow-list.md)."""
        key = {"crm_item": "items", "tasks": "tasks", "product_rows": "productRows"}[self.family]
        rows = result.get(key) if isinstance(result, Mapping) else result
        return [dict(row) for row in rows or [] if isinstance(row, Mapping)]


# The words the v3 task fields use (and the source writes) -> the v2 codes tasks.task.* takes, so that a
# source -> edit -> destination round trip works: api-reference/tasks/fields-rest-v3.md (words) and
# api-reference/tasks/fields.md (codes). "declined" has no documented v2 code and stays as written.
TASK_WORDS: Final[dict[str, dict[str, str]]] = {
    "PRIORITY": {"low": "0", "average": "1", "high": "2"},
    "STATUS": {
        "pending": "2",
        "in_progress": "3",
        "supposedly_completed": "4",
        "completed": "5",
        "deferred": "6",
    },
}


def task_word(field_name: str, value: Any) -> Any:
    """A task STATUS / PRIORITY word as its v2 code; any other value as it is."""
    words = TASK_WORDS.get(field_name)
    if words is not None and isinstance(value, str) and value.strip().lower() in words:
        return words[value.strip().lower()]
    return value


# key="email" / key="phone": upsert by a communication (multi-field ``fm``), found with
# crm.duplicate.findbycomm (api-reference/crm/duplicates/crm-duplicate-find-by-comm.md), which searches
# leads, contacts and companies only.
COMM_KEYS: Final = {"email": "EMAIL", "phone": "PHONE"}
COMM_ENTITY_TYPES: Final = {"leads": "LEAD", "contacts": "CONTACT", "companies": "COMPANY"}


def comm_key(key: str | None) -> str | None:
    """The communication type (EMAIL / PHONE) a ``key=`` names, or None for a field key."""
    return COMM_KEYS.get(key.lower()) if key else None


CRM_ENTITY_TYPE_IDS: Final = {"leads": 1, "deals": 2, "contacts": 3, "companies": 4}  # §7.1
# Quotes ("estimates") and new invoices are crm.item types 7 and 31 (api-reference/crm/universal/index.md,
# invoice.md); smart processes are spa_<entityTypeId>.
ITEM_ENTITY_TYPE_IDS: Final = {"quotes": 7, "invoices": 31}
SPA_PREFIX: Final = "spa_"
_SPA_NAME: Final = re.compile(r"spa_([1-9]\d*)")
PRODUCT_ROWS_ENTITY: Final = "deal_products"
# crm-item-productrow-add.md: ownerType is the short symbolic code of the owner's type, "D" for deals
# (api-reference/crm/data-types.md#object_type).
DEAL_OWNER_TYPE: Final = "D"
WRITE_ENTITIES: Final = (
    *CRM_ENTITY_TYPE_IDS,
    *ITEM_ENTITY_TYPE_IDS,
    f"{SPA_PREFIX}<entityTypeId>",
    "tasks",
    PRODUCT_ROWS_ENTITY,
)


def smart_process_type_id(entity: str) -> int | None:
    """The entityTypeId a ``spa_<entityTypeId>`` name carries, when it is one a smart process can have: 128
    to 192, or an even number from 1030 on (api-reference/crm/universal/user-defined-object-types/
    crm-type-add.md)."""
    match = _SPA_NAME.fullmatch(entity)
    if match is None:
        return None
    type_id = int(match.group(1))
    return type_id if 128 <= type_id <= 192 or (type_id >= 1030 and type_id % 2 == 0) else None


def write_target(entity: str, marker_field: str | None = None) -> WriteTarget:
    """The write target of a table/entity name.

    Raises:
        ValueError: the entity cannot be written (the message lists the ones that can).
    """
    if entity in CRM_ENTITY_TYPE_IDS:
        # originId ("Item ID in data source") is the documented field for an outside system's id on leads,
        # deals, contacts and companies (api-reference/crm/universal/object-fields.md); they have no xmlId.
        return WriteTarget(entity, "crm_item", CRM_ENTITY_TYPE_IDS[entity], marker_field or "originId")
    spa_type_id = smart_process_type_id(entity)
    if entity == "invoices" or spa_type_id is not None:
        # Invoices and smart processes have no originId; their field for an outside id is xmlId ("External
        # code", object-fields.md #invoice and #spa).
        type_id = spa_type_id if spa_type_id is not None else ITEM_ENTITY_TYPE_IDS[entity]
        return WriteTarget(entity, "crm_item", type_id, marker_field or "xmlId")
    if entity == "quotes":
        # Quotes have neither originId nor xmlId (object-fields.md #quote): no default marker field.
        return WriteTarget(entity, "crm_item", ITEM_ENTITY_TYPE_IDS[entity], marker_field)
    if entity == "tasks":
        return WriteTarget(entity, "tasks", None, marker_field or "XML_ID")
    if entity == PRODUCT_ROWS_ENTITY:
        if marker_field is not None:
            raise ValueError(
                f"Bitrix24 destination cannot stamp markers on {entity}: product rows have no writable field "
                "for an outside id (crm-item-productrow-fields.md); leave marker_field unset"
            )
        return WriteTarget(
            entity, "product_rows", CRM_ENTITY_TYPE_IDS["deals"], None, {"ownerType": DEAL_OWNER_TYPE}
        )
    hint = ""
    if _SPA_NAME.fullmatch(entity):
        hint = " (a smart process's entityTypeId is 128-192 or an even number from 1030 on)"
    raise ValueError(
        f"Bitrix24 destination cannot write table {entity!r}{hint}: use one of {', '.join(WRITE_ENTITIES)} "
        "as the table name or pass entity=..."
    )


class WriteOptionError(ValueError):
    """A destination option names a field the portal cannot use for it (a configuration error)."""


# Generated markers (``b24w:...``) are text: a field of another type could not hold them.
_MARKER_TYPES: Final = frozenset({"string", "text"})


def check_write_options(target: WriteTarget, fields: EntityFields, key: str | None) -> None:
    """Check that ``marker_field`` and ``key=`` are fields the portal will store, before any row is sent.

    crm.item.add drops unknown fields without an error (§7.2) and the portal ignores values for read-only
    ones, so a marker or key written there would never be found again: every resend would duplicate the add.

    Raises:
        WriteOptionError: the option and the field it names, and what is wrong with it.
    """
    if key and target.family == "product_rows":
        raise WriteOptionError(
            f"Bitrix24 destination option key={key!r}: product rows are updated by their id; rows without "
            "id are added (and recognised on a re-run by the deal's existing rows), so key= does not apply"
        )
    if comm_key(key) is not None and target.entity not in COMM_ENTITY_TYPES:
        raise WriteOptionError(
            f"Bitrix24 destination option key={key!r}: upsert by {key} works for "
            f"{', '.join(COMM_ENTITY_TYPES)} (the portal's duplicate search), not for {target.entity}"
        )
    checks = [("marker_field", target.marker_field)] if target.marker_field is not None else []
    checks += [("key", key)] if key and not comm_key(key) else []
    for option, name in checks:
        canonical = fields.resolve(name)
        if canonical is None:
            raise WriteOptionError(
                f"Bitrix24 destination option {option}={name!r}: {target.entity} has no field {name!r} "
                f"(the portal would silently drop its values, so the rows could never be found again)"
            )
        meta = fields.fields[canonical]
        if meta.read_only:
            raise WriteOptionError(
                f"Bitrix24 destination option {option}={name!r}: field {canonical!r} of {target.entity} is "
                "read-only (the portal would not store its values, so the rows could never be found again)"
            )
        if option == "marker_field" and (meta.type not in _MARKER_TYPES or meta.multiple):
            kind = f"a multiple {meta.type}" if meta.multiple else meta.type
            raise WriteOptionError(
                f"Bitrix24 destination option marker_field={name!r}: field {canonical!r} of {target.entity} "
                f"is {kind}, but markers are text: choose a single-valued string field"
            )


def added_id(method: str, result: Any) -> int | None:
    """The id of the record an add created: ``{"item": {"id": 342}}`` (§7.2), ``{"task": {"id": "3711"}}``
    (§7.4) or ``{"productRow": {"id": 17647}}`` (crm-item-productrow-add.md); a bare int id as the classic
    methods return (§7.3)."""
    node = result
    if isinstance(node, Mapping):
        node = node.get("item", node.get("task", node.get("productRow", node)))
    if isinstance(node, Mapping):
        node = node.get("id", node.get("ID"))
    return as_id(node)


def as_id(value: Any) -> int | None:
    """A record id as the portal prints it: an int, or a string of digits (classic methods, §2.4)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
