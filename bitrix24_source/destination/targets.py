"""Write targets: which methods write each entity, their parameters and their answers; no I/O.

CRM entities are written through the universal ``crm.item.*`` family with camelCase fields (§7.2); tasks
through v2 ``tasks.task.*`` with UPPER_CASE fields (§7.4). ``marker_field`` and ``key=`` must name fields the
portal will store (:func:`check_write_options`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from bitrix24_source.fields import EntityFields

Operation = Literal["add", "update", "delete"]
Family = Literal["crm_item", "tasks"]


@dataclass(frozen=True, slots=True)
class WriteTarget:
    """Where the rows of one table go: the method family and its parameter names.

    Attributes:
        entity: the table / entity name (``deals``, ``tasks``, ...).
        family: ``crm_item`` (crm.item.*, camelCase, §7.2) or ``tasks`` (v2 tasks.task.*, UPPER_CASE, §7.4).
        entity_type_id: crm.item entityTypeId (§7.1), None for tasks.
        marker_field: the field stamped with an idempotency marker on adds (canonical spelling).
    """

    entity: str
    family: Family
    entity_type_id: int | None
    marker_field: str

    @property
    def fields_method(self) -> str:
        return "crm.item.fields" if self.family == "crm_item" else "tasks.task.getFields"

    @property
    def list_method(self) -> str:
        return "crm.item.list" if self.family == "crm_item" else "tasks.task.list"

    @property
    def id_field(self) -> str:
        return "id" if self.family == "crm_item" else "ID"

    def fields_params(self) -> dict[str, Any]:
        return {"entityTypeId": self.entity_type_id} if self.family == "crm_item" else {}

    def command(
        self, operation: Operation, bitrix_id: int | None, fields: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """The (method, params) pair of one write."""
        if self.family == "crm_item":
            params: dict[str, Any] = {"entityTypeId": self.entity_type_id}
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
        """The rows of a lookup response (`items` for crm.item.list, `tasks` for tasks.task.list, §3.3)."""
        key = "items" if self.family == "crm_item" else "tasks"
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
WRITE_ENTITIES: Final = (*CRM_ENTITY_TYPE_IDS, "tasks")


def write_target(entity: str, marker_field: str | None = None) -> WriteTarget:
    """The write target of a table/entity name.

    Raises:
        ValueError: the entity cannot be written (the message lists the ones that can).
    """
    if entity in CRM_ENTITY_TYPE_IDS:
        # originId ("Item ID in data source") is the documented field for an outside system's id on leads,
        # deals, contacts and companies (api-reference/crm/universal/object-fields.md); they have no xmlId.
        return WriteTarget(entity, "crm_item", CRM_ENTITY_TYPE_IDS[entity], marker_field or "originId")
    if entity == "tasks":
        return WriteTarget(entity, "tasks", None, marker_field or "XML_ID")
    raise ValueError(
        f"Bitrix24 destination cannot write table {entity!r}: use one of {', '.join(WRITE_ENTITIES)} "
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
    if comm_key(key) is not None and target.entity not in COMM_ENTITY_TYPES:
        raise WriteOptionError(
            f"Bitrix24 destination option key={key!r}: upsert by {key} works for "
            f"{', '.join(COMM_ENTITY_TYPES)} (the portal's duplicate search), not for {target.entity}"
        )
    checks = [("marker_field", target.marker_field)] + ([("key", key)] if key and not comm_key(key) else [])
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
    """The id of the record an add created: ``{"item": {"id": 342}}`` (§7.2) or ``{"task": {"id": "3711"}}``
    (§7.4); a bare int id as the classic methods return (§7.3)."""
    node = result
    if isinstance(node, Mapping):
        node = node.get("item", node.get("task", node))
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
