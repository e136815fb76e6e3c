"""The one field model of the package (no I/O): what a portal says about an entity's fields.

Every field description the portal sends — ``crm.item.fields`` (``{"fields": {name: {...}}}``, §7.2), the
classic ``crm.*.fields`` maps, ``crm.item.productrow.fields``, ``user.fields`` (``{name: label}``), the v2
``tasks.task.getFields`` and the v3 ``*.field.list`` answers (``{"items": [{"name", "type", ...}]}``) — is
parsed here into :class:`FieldMeta`. The source turns them into column types (source/schema.py), the
destination validates writes against them (destination/plan.py); both read a field's type through
:func:`kind_of`, so one table decides what a Bitrix type word means.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

__all__ = [
    "TASK_V3_DOCUMENTED",
    "TYPE_KINDS",
    "EntityFields",
    "FieldMeta",
    "Kind",
    "kind_of",
    "parse_crm_item_fields",
    "parse_field_map",
    "parse_task_fields",
    "truthy",
    "with_documented_types",
]

Kind = Literal["int", "float", "money", "bool", "date", "datetime", "text", "json", "enumeration"]

TYPE_KINDS: Final[dict[str, Kind]] = {
    "integer": "int",
    "int": "int",
    "user": "int",
    "employee": "int",
    "crm_lead": "int",
    "crm_deal": "int",
    "crm_contact": "int",
    "crm_company": "int",
    "crm_quote": "int",
    "crm_invoice": "int",
    "crm_category": "int",
    "iblock_element": "int",
    "iblock_section": "int",
    "group": "int",
    # Activity enumerations: "The field value is an integer from a fixed set" (DOCS api-reference/crm/
    # data-types.md, "Activity Enumerations"); crm.activity.list prints them as strings ("TYPE_ID": "2").
    "crm_enum_ownertype": "int",
    "crm_enum_activitytype": "int",
    "crm_enum_activitystatus": "int",
    "crm_enum_activitypriority": "int",
    "crm_enum_activitynotifytype": "int",
    "crm_enum_activitydirection": "int",
    "crm_enum_contenttype": "int",
    "double": "float",
    "float": "float",
    "number": "float",
    "money": "money",
    "boolean": "bool",
    "bool": "bool",
    "char": "bool",
    "date": "date",
    "datetime": "datetime",
    "string": "text",
    "text": "text",
    "url": "text",
    "crm_status": "text",
    "crm_currency": "text",
    # crm_entity values may be prefixed ("D_12") when a field links several entity types (§7.2).
    "crm_entity": "text",
    "location": "text",
    "address": "text",
    "enum": "text",
    "product_property": "text",
    "crm_multifield": "json",
    "file": "json",
    "diskfile": "json",
    "disk_file": "json",
    "object": "json",
    "array": "json",
    "enumeration": "enumeration",
}
"""Bitrix type word (crm.item.fields `type`, §7.2; task and user field lists) -> what its values are.
Type words not listed have no kind: the source leaves such columns to dlt's inference and the destination
passes their values through unchanged."""


@dataclass(frozen=True, slots=True)
class FieldMeta:
    """One field of a Bitrix24 entity, normalised from the portal's field description.

    Attributes:
        name: the field name as rows carry it (camelCase for crm.item / v3, UPPER_CASE for user.get and
            v2 tasks).
        type: the Bitrix type word, lower-cased (`integer`, `datetime`, `enumeration`, `crm_status`, ...);
            "" when the portal gives none (`user.fields`).
        title: the human label.
        required: the portal requires the field on add.
        read_only: the field cannot be written.
        immutable: the field can be set on add but not changed by an update.
        multiple: the value is a list.
        items: enumeration items as (id, label) pairs; None when the description lists none.
        upper_name: the UPPER_CASE name (crm.item `upperName`), if known.
        filterable: the v3 field list's `filterable` flag (§5.1), None when the portal does not say.
        status_type: for crm_status fields, the crm.status directory (ENTITY_ID) of the values.
    """

    name: str
    type: str
    title: str = ""
    required: bool = False
    read_only: bool = False
    immutable: bool = False
    multiple: bool = False
    items: tuple[tuple[str, str], ...] | None = None
    upper_name: str | None = None
    filterable: bool | None = None
    status_type: str | None = None

    @property
    def enum_values(self) -> dict[str, str] | None:
        """Allowed id -> label of an enumeration, or None when the portal lists no values."""
        return None if self.items is None else dict(self.items)


def kind_of(meta: FieldMeta) -> Kind | None:
    """What the values of `meta` are (see TYPE_KINDS), or None for a type word we have no evidence for."""
    return TYPE_KINDS.get(meta.type)


def truthy(value: Any) -> bool:
    """A Bitrix yes/no flag: "Y"/"N" in v2 answers, booleans in v3 and crm.item.fields."""
    if isinstance(value, str):
        return value.strip().upper() in {"Y", "YES", "TRUE", "1"}
    return bool(value)


def _enum_items(raw: Any) -> tuple[tuple[str, str], ...] | None:
    """Enumeration items of a description: crm.item.fields `items: [{ID, VALUE}]`
    (api-reference/crm/universal/crm-item-fields.md) or tasks.task.getFields `values: {id: label}`
    (api-reference/tasks/tasks-task-get-fields.md). An absent or empty list means "no list given"."""
    if isinstance(raw, Mapping):
        return tuple((str(k), str(v)) for k, v in raw.items())
    if not isinstance(raw, list) or not raw:
        return None
    out: list[tuple[str, str]] = []
    for item in raw:
        if isinstance(item, Mapping):
            key = item.get("ID", item.get("id", item.get("value")))
            label = item.get("VALUE", item.get("value", item.get("title", key)))
            out.append((str(key), str(label)))
    return tuple(out)


def _entries(payload: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(payload, Mapping) and isinstance(payload.get("fields"), Mapping):
        payload = payload["fields"]
    elif isinstance(payload, Mapping) and isinstance(payload.get("items"), list):
        payload = payload["items"]
    if isinstance(payload, Mapping):
        yield from ((str(name), desc) for name, desc in payload.items())
    elif isinstance(payload, list):
        yield from ((str(d.get("name", d.get("id", ""))), d) for d in payload if isinstance(d, Mapping))
    else:
        raise ValueError(f"unrecognised field description payload: {type(payload).__name__}")


def parse_field_map(payload: Any) -> dict[str, FieldMeta]:
    """Normalise any field description payload into `FieldMeta` by field name, in the portal's order.

    Accepts the `crm.item.fields` result (`{"fields": {name: {...}}}`, §7.2), a bare `{name: {...}}` map
    (classic `crm.*.fields`, recorded in tests/fixtures/real-responses/crm_lead_fields_success.json), a v3
    field list (`{"items": [{"name", "type", ...}]}`) and `user.fields` (`{name: label}`, no types: such
    fields get type "").

    Raises:
        ValueError: the payload has none of these shapes.
    """
    fields: dict[str, FieldMeta] = {}
    for name, desc in _entries(payload):
        if not name:
            continue
        if not isinstance(desc, Mapping):
            fields[name] = FieldMeta(name=name, type="", title=str(desc))
            continue
        fields[name] = FieldMeta(
            name=name,
            type=str(desc.get("type", "")).lower(),
            title=str(desc.get("title") or desc.get("formLabel") or desc.get("listLabel") or name),
            required=truthy(desc.get("isRequired", desc.get("required", False))),
            read_only=truthy(desc.get("isReadOnly", desc.get("readOnly", False))),
            immutable=truthy(desc.get("isImmutable", False)),
            multiple=truthy(desc.get("isMultiple", desc.get("multiple", False))),
            items=_enum_items(desc.get("items", desc.get("values"))),
            upper_name=desc.get("upperName") or None,
            filterable=truthy(desc["filterable"]) if "filterable" in desc else None,
            status_type=str(desc["statusType"]) if desc.get("statusType") else None,
        )
    return fields


# crm.item (camelCase) <-> classic UPPER_CASE names that the generic rule cannot derive (§7.3).
_CLASSIC_TO_CRM_ITEM: Final = {
    "CREATED_BY_ID": "createdBy",
    "MODIFY_BY_ID": "updatedBy",
    "DATE_CREATE": "createdTime",
    "DATE_MODIFY": "updatedTime",
    "MOVED_BY_ID": "movedBy",
    "MOVED_TIME": "movedTime",
}


def _squash(name: str) -> str:
    return name.replace("_", "").lower()


@dataclass(frozen=True, slots=True)
class EntityFields:
    """The field metadata of one entity, with every accepted spelling of a name resolved to the field."""

    fields: Mapping[str, FieldMeta]
    _aliases: Mapping[str, str] = field(default_factory=dict)
    _squashed: Mapping[str, str | None] = field(default_factory=dict)

    @classmethod
    def build(cls, metas: Iterable[FieldMeta]) -> EntityFields:
        fields = {meta.name: meta for meta in metas}
        aliases: dict[str, str] = {}
        for meta in fields.values():
            if meta.upper_name:
                aliases.setdefault(meta.upper_name, meta.name)
        for classic, canonical in _CLASSIC_TO_CRM_ITEM.items():
            if canonical in fields:
                aliases.setdefault(classic, canonical)
        squashed: dict[str, str | None] = {}
        for name in fields:
            key = _squash(name)
            # Two fields that squash alike (ufCrm10_1 / ufCrm_101) make the match ambiguous: refuse it.
            squashed[key] = None if key in squashed else name
        return cls(fields, aliases, squashed)

    def resolve(self, column: str) -> str | None:
        """The canonical field name of an input column, or None if the portal has no such field."""
        if column in self.fields:
            return column
        if column in self._aliases:
            return self._aliases[column]
        return self._squashed.get(_squash(column))

    @property
    def required(self) -> list[str]:
        return [m.name for m in self.fields.values() if m.required and not m.read_only]


def parse_crm_item_fields(result: Any) -> EntityFields:
    """Parse a ``crm.item.fields`` result: ``{"fields": {name: {type, isRequired, isReadOnly, ...}}}``."""
    return EntityFields.build(parse_field_map(result).values())


# tasks.task.getFields carries no read-only flag; these are set by the portal itself (§7.4).
_TASK_READ_ONLY: Final = frozenset(
    {"ID", "CREATED_DATE", "CHANGED_DATE", "CHANGED_BY", "STATUS_CHANGED_DATE", "STATUS_CHANGED_BY"}
    | {"CLOSED_DATE", "CLOSED_BY", "VIEWED_DATE", "DATE_START", "ACTIVITY_DATE", "FORUM_TOPIC_ID", "GUID"}
    | {"COMMENTS_COUNT", "SERVICE_COMMENTS_COUNT", "NEW_COMMENTS_COUNT", "OUTLOOK_VERSION", "EXCHANGE_ID"}
)

# getFields marks CREATED_BY required, but an add without it is made by the calling user: the documented
# example sends only TITLE and RESPONSIBLE_ID (api-reference/tasks/tasks-task-add.md).
_TASK_CALLER_DEFAULTS: Final = frozenset({"CREATED_BY"})


def parse_task_fields(result: Any) -> EntityFields:
    """Parse a ``tasks.task.getFields`` result: ``{"fields": {NAME: {title, type, required?, values?}}}``.

    ``enum`` fields list their allowed values as a ``values`` map id -> label
    (api-reference/tasks/tasks-task-get-fields.md); ``array`` types are lists.
    """
    metas = []
    for name, meta in parse_field_map(result).items():
        raw = result.get("fields", result).get(name, {}) if isinstance(result, Mapping) else {}
        primary = truthy(raw.get("primary", False)) if isinstance(raw, Mapping) else False
        metas.append(
            FieldMeta(
                name=name,
                type=meta.type,
                title=meta.title,
                required=meta.required and name not in _TASK_CALLER_DEFAULTS,
                read_only=name in _TASK_READ_ONLY or primary,
                multiple=meta.type.startswith("array") or meta.multiple,
                items=meta.items
                if isinstance(raw, Mapping) and isinstance(raw.get("values"), Mapping)
                else None,
            )
        )
    return EntityFields.build(metas)


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# The REST 3.0 task object as documented (api-reference/tasks/fields-rest-v3.md, "Task Object", b24restdocs
# commit 5988ed1). tasks.task.field.list answers with PHP property types instead (its captured answer in
# api-reference/tasks/tasks-task-field-list.md says "object" for `created`, a DateTime, as for `creator`), so
# the documented type decides where the field list's word is one of those generic words.
TASK_V3_DOCUMENTED: Final[dict[str, str]] = {
    **dict.fromkeys(
        _names(
            "id creatorId responsibleId groupId stageId epicId storyPoints flowId parentId numberOfReminders "
            "chatId plannedDuration actualDuration estimatedTime changedById statusChangedById closedById "
            "outlookVersion forkedByTemplateId maxDeadlineChanges emailId"
        ),
        "integer",
    ),
    **dict.fromkeys(
        _names(
            "title description priority status durationType guid xmlId exchangeId exchangeModified mark siteId "
            "link archiveLink"
        ),
        "string",
    ),
    **dict.fromkeys(
        _names(
            "created deadline startPlan endPlan statusChanged started changed closed activity "
            "maxDeadlineChangeDate"
        ),
        "datetime",
    ),
    **dict.fromkeys(
        _names(
            "needsControl containsChecklist containsSubTasks containsRelatedTasks containsGanttLinks "
            "containsPlacements containsResults replicate allowsChangeDeadline allowsTimeTracking "
            "matchesWorkTime addInReport isMultitask requireDeadlineChangeReason requireResult "
            "matchesSubTasksTime autocompleteSubTasks allowsChangeDatePlan"
        ),
        "boolean",
    ),
    **dict.fromkeys(
        _names(
            "creator responsible group stage flow parent chat changedBy statusChangedBy closedBy "
            "forkedByTemplate email elapsedTime source checklist rights crmItemIds inFavorite inPin "
            "inGroupPin inMute dependsOn scenarios accomplices auditors"
        ),
        "object",
    ),
}

# Type words that say how a value is held in PHP rather than what it means: a field list that answers with
# one of them is evidence of shape only.
_GENERIC_TYPE_WORDS: Final = frozenset({"", "object", "string", "array", "mixed"})


def with_documented_types(
    fields: Mapping[str, FieldMeta], documented: Mapping[str, str]
) -> dict[str, FieldMeta]:
    """`fields` with the documented type word for every field whose own type word is a generic one.

    A field list's type word is evidence, not the whole truth: where it only says "object" or "string" and
    the documentation says "datetime", the field is a date-time. Specific words (`int`, `datetime`,
    `crm_status`, ...) are kept, and fields the documentation does not list keep whatever the portal said.
    """
    out: dict[str, FieldMeta] = {}
    for name, meta in fields.items():
        documented_type = documented.get(name)
        if documented_type is not None and meta.type in _GENERIC_TYPE_WORDS and documented_type != meta.type:
            meta = replace(meta, type=documented_type)
        out[name] = meta
    return out
