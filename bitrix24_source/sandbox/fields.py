"""Field metadata of the sandbox portal's entities.

One table of `FieldSpec` per CRM entity drives everything field-shaped: the canonical row (crm.item camelCase
names, §7.2), the classic UPPER_CASE names (§7.3 mapping table), the `crm.item.fields` payload (camelCase,
wrapped in ``{"fields": …}``, with ``upperName``; DOCS api-reference/crm/universal/crm-item-fields.md) and the
classic ``crm.<entity>.fields`` payload (no wrapper, no ``upperName``; recorded fixture
crm_lead_fields_success.json). Write validation and filter type coercion read the same specs.

Two catalogues of CRM fields exist (`CATALOGUES`): ``docs``, exactly the documented fields of object-fields.md
(`_DOCS_CRM_FIELDS`) and the default, and ``legacy``, the sandbox's older set (with an invented `xmlId` on every
CRM entity). A portal serves one.

Its length is data: the field tables of every entity in both catalogues (each citing its docs section);
the code that builds and reads them is a small part of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

CRM_ENTITIES = ("leads", "deals", "contacts", "companies")
ENTITY_TYPE_IDS = {"leads": 1, "deals": 2, "contacts": 3, "companies": 4}
ENTITY_BY_TYPE_ID = {v: k for k, v in ENTITY_TYPE_IDS.items()}
# Every entity crm.item.* serves (the four above plus ITEM_TYPES, filled in below).
ITEM_ENTITY_TYPE_IDS: dict[str, int] = dict(ENTITY_TYPE_IDS)
CLASSIC_NAMES = {"lead": "leads", "deal": "deals", "contact": "contacts", "company": "companies"}
ENTITY_TITLES = {"leads": "Lead", "deals": "Deal", "contacts": "Contact", "companies": "Company"}

# Deal pipelines (category id -> stage ids) and lead statuses, as a fresh cloud portal has them.
DEAL_STAGES: dict[int, tuple[str, ...]] = {
    0: ("NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING", "FINAL_INVOICE", "WON", "LOSE"),
    1: ("C1:NEW", "C1:PREPARATION", "C1:EXECUTING", "C1:WON", "C1:LOSE"),
}
# Deal pipelines (crm.category.list): id -> (name, sort). Keys match DEAL_STAGES.
DEAL_CATEGORIES: dict[int, tuple[str, int]] = {0: ("General", 100), 1: ("Wholesale", 200)}
LEAD_STATUSES = ("NEW", "IN_PROCESS", "PROCESSED", "JUNK", "CONVERTED")
SOURCES = ("CALL", "EMAIL", "WEB", "ADVERTISING", "PARTNER", "RECOMMENDATION", "TRADE_SHOW", "OTHER")
DEAL_TYPES = ("SALE", "COMPLEX", "GOODS", "SERVICES", "SERVICE")
CONTACT_TYPES = ("CLIENT", "SUPPLIER", "PARTNER", "OTHER")
COMPANY_TYPES = ("CUSTOMER", "SUPPLIER", "COMPETITOR", "PARTNER", "OTHER")
INDUSTRIES = ("IT", "TELECOM", "MANUFACTURING", "BANKING", "CONSULTING", "FINANCE", "DELIVERY", "OTHER")
EMPLOYEES = ("EMPLOYEES_1", "EMPLOYEES_2", "EMPLOYEES_3", "EMPLOYEES_4")
CURRENCIES = ("RUB", "USD", "EUR")
HONORIFICS = ("HNR_RU_1", "HNR_RU_2")

# Types whose values are integer ids (crm.item gives ints, classic gives strings).
INT_TYPES = frozenset(
    {
        "integer",
        "user",
        "crm_company",
        "crm_contact",
        "crm_lead",
        "crm_deal",
        "crm_quote",
        "crm_category",
        "enumeration",
    }
)
FLOAT_TYPES = frozenset({"double", "money"})
DATE_TYPES = frozenset({"date", "datetime"})
# Money-like system fields that classic methods print with two decimals ("1000000.00", §2.4).
MONEY_FIELDS = frozenset({"opportunity", "taxValue", "revenue"})


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of an entity: its names, type and flags as `crm.item.fields` describes them."""

    name: str  # camelCase (crm.item / canonical row key)
    type: str
    title: str
    upper: str  # classic UPPER_CASE name
    required: bool = False
    read_only: bool = False
    immutable: bool = False
    multiple: bool = False
    status_type: str | None = None
    settings: dict[str, Any] | None = None
    items: tuple[tuple[int, str], ...] = ()  # enumeration UF: (item id, label)
    deprecated: bool = False
    user_field: bool = False


def camel_to_upper(name: str) -> str:
    """``assignedById`` -> ``ASSIGNED_BY_ID`` (the regular part of the §7.3 mapping)."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).upper()


# The irregular part of the §7.3 crm.item <-> classic mapping.
_UPPER_OVERRIDES = {
    "createdBy": "CREATED_BY_ID",
    "updatedBy": "MODIFY_BY_ID",
    "movedBy": "MOVED_BY_ID",
    "createdTime": "DATE_CREATE",
    "updatedTime": "DATE_MODIFY",
}
_LEAD_OVERRIDES = {"stageId": "STATUS_ID", "stageSemanticId": "STATUS_SEMANTIC_ID"}


def _f(
    entity: str,
    name: str,
    type_: str,
    title: str,
    *,
    req: bool = False,
    ro: bool = False,
    mult: bool = False,
    status: str | None = None,
    settings: dict[str, Any] | None = None,
    deprecated: bool = False,
) -> FieldSpec:
    upper = (_LEAD_OVERRIDES if entity == "leads" else {}).get(name) or _UPPER_OVERRIDES.get(name)
    return FieldSpec(
        name=name,
        type=type_,
        title=title,
        upper=upper or camel_to_upper(name),
        required=req,
        read_only=ro,
        multiple=mult,
        status_type=status,
        settings=settings,
        deprecated=deprecated,
    )


def _common_head(e: str) -> list[FieldSpec]:
    return [_f(e, "id", "integer", "ID", ro=True)]


def _person(e: str) -> list[FieldSpec]:
    return [
        _f(e, "honorific", "crm_status", "Salutation", status="HONORIFIC"),
        _f(e, "name", "string", "First name"),
        _f(e, "secondName", "string", "Second name"),
        _f(e, "lastName", "string", "Last name"),
        _f(e, "birthdate", "date", "Date of birth"),
    ]


def _source(e: str) -> list[FieldSpec]:
    return [
        _f(e, "sourceId", "crm_status", "Source", status="SOURCE"),
        _f(e, "sourceDescription", "text", "Source information"),
    ]


def _contacts(e: str) -> list[FieldSpec]:
    # `contactId` is the deprecated single form of `contactIds` (crm-item-fields.md).
    return [
        _f(e, "contactId", "crm_contact", "Contact", deprecated=True),
        _f(e, "contactIds", "crm_contact", "Contacts", mult=True),
    ]


def _common_tail(e: str, *, moved: bool) -> list[FieldSpec]:
    out = [
        _f(e, "opened", "boolean", "Available to everyone"),
        _f(e, "comments", "text", "Comment"),
        _f(e, "assignedById", "user", "Responsible person"),
        _f(e, "createdBy", "user", "Created by", ro=True),
        _f(e, "updatedBy", "user", "Modified by", ro=True),
        _f(e, "createdTime", "datetime", "Created on", ro=True),
        _f(e, "updatedTime", "datetime", "Modified on", ro=True),
    ]
    if moved:
        out += [
            _f(e, "movedBy", "user", "Moved by", ro=True),
            _f(e, "movedTime", "datetime", "Moved on", ro=True),
        ]
    out += [
        _f(e, "originatorId", "string", "External source"),
        _f(e, "originId", "string", "Item ID in data source"),
        # Legacy catalogue only: object-fields.md has no xmlId for leads, deals, contacts or companies. It stays
        # in the default catalogue while the destination stamps its marker there (docs/sandbox-deviations.md).
        _f(e, "xmlId", "string", "External code"),
        _f(e, "utmSource", "string", "Ad system"),
    ]
    return out


def _user_fields(entity: str) -> list[FieldSpec]:
    """Six UF_CRM_<digits> fields of the types the destination has to map (string multiple included)."""
    idx = CRM_ENTITIES.index(entity)
    base = 1721244707100 + idx * 10
    enum_base = 40 + idx * 10
    kinds: list[tuple[str, str, bool, dict[str, Any]]] = [
        ("enumeration", "Segment", False, {"DISPLAY": "LIST", "LIST_HEIGHT": 1, "SHOW_NO_VALUE": "Y"}),
        ("double", "Score", False, {"PRECISION": 2, "SIZE": 20, "MIN_VALUE": 0, "MAX_VALUE": 0}),
        ("boolean", "VIP", False, {"DEFAULT_VALUE": 0, "DISPLAY": "CHECKBOX"}),
        ("date", "Contract date", False, {"DEFAULT_VALUE": {"TYPE": "NONE", "VALUE": ""}}),
        ("datetime", "Last contact", False, {"DEFAULT_VALUE": {"TYPE": "NONE", "VALUE": ""}}),
        ("string", "Tags", True, {"SIZE": 20, "ROWS": 1, "REGEXP": "", "MIN_LENGTH": 0, "MAX_LENGTH": 0}),
    ]
    out = []
    for k, (type_, title, multiple, settings) in enumerate(kinds):
        digits = str(base + k)
        items: tuple[tuple[int, str], ...] = ()
        if type_ == "enumeration":
            items = tuple((enum_base + i, label) for i, label in enumerate(("Gold", "Silver", "Bronze"), 1))
        out.append(
            FieldSpec(
                name=f"ufCrm_{digits}",
                type=type_,
                title=title,
                upper=f"UF_CRM_{digits}",
                multiple=multiple,
                settings=settings,
                items=items,
                user_field=True,
            )
        )
    return out


def _build() -> dict[str, tuple[FieldSpec, ...]]:
    d, le, c, co = "deals", "leads", "contacts", "companies"
    deals = [
        *_common_head(d),
        _f(d, "title", "string", "Name"),
        _f(d, "typeId", "crm_status", "Type", status="DEAL_TYPE"),
        _f(d, "categoryId", "crm_category", "Pipeline"),
        _f(d, "stageId", "crm_status", "Stage", status="DEAL_STAGE"),
        _f(d, "stageSemanticId", "string", "Stage group", ro=True),
        _f(d, "isNew", "boolean", "New deal", ro=True),
        _f(d, "closed", "boolean", "Closed"),
        _f(d, "opportunity", "double", "Amount"),
        _f(d, "isManualOpportunity", "boolean", "Amount calculation mode"),
        _f(d, "taxValue", "double", "Tax amount"),
        _f(d, "currencyId", "crm_currency", "Currency"),
        _f(d, "probability", "integer", "Probability"),
        _f(d, "companyId", "crm_company", "Company", settings={"parentEntityTypeId": 4}),
        *_contacts(d),
        _f(d, "leadId", "crm_lead", "Lead"),
        _f(d, "begindate", "date", "Start date"),
        _f(d, "closedate", "date", "End date"),
        *_source(d),
        *_common_tail(d, moved=True),
        *_user_fields(d),
    ]
    leads = [
        *_common_head(le),
        _f(le, "title", "string", "Lead name", req=True),
        *_person(le),
        _f(le, "companyTitle", "string", "Company name"),
        _f(le, "post", "string", "Position"),
        _f(le, "stageId", "crm_status", "Status", status="STATUS"),
        _f(le, "stageSemanticId", "string", "Status group", ro=True),
        _f(le, "opportunity", "double", "Amount"),
        _f(le, "isManualOpportunity", "boolean", "Amount calculation mode"),
        _f(le, "currencyId", "crm_currency", "Currency"),
        *_source(le),
        _f(le, "companyId", "crm_company", "Company", settings={"parentEntityTypeId": 4}),
        *_contacts(le),
        _f(le, "isReturnCustomer", "boolean", "Repeat lead", ro=True),
        *_common_tail(le, moved=True),
        *_user_fields(le),
    ]
    contacts = [
        *_common_head(c),
        *_person(c),
        _f(c, "post", "string", "Position"),
        _f(c, "typeId", "crm_status", "Contact type", status="CONTACT_TYPE"),
        *_source(c),
        _f(c, "companyId", "crm_company", "Company", settings={"parentEntityTypeId": 4}, deprecated=True),
        _f(c, "companyIds", "crm_company", "Companies", mult=True),
        _f(c, "leadId", "crm_lead", "Lead"),
        _f(c, "export", "boolean", "Included in export"),
        *_common_tail(c, moved=False),
        *_user_fields(c),
    ]
    companies = [
        *_common_head(co),
        _f(co, "title", "string", "Company name", req=True),
        _f(co, "typeId", "crm_status", "Company type", status="COMPANY_TYPE"),
        _f(co, "industry", "crm_status", "Industry", status="INDUSTRY"),
        _f(co, "employees", "crm_status", "Employees", status="EMPLOYEES"),
        _f(co, "revenue", "double", "Annual revenue"),
        _f(co, "currencyId", "crm_currency", "Currency"),
        _f(co, "isMyCompany", "boolean", "My company"),
        _f(co, "contactIds", "crm_contact", "Contacts", mult=True),
        _f(co, "leadId", "crm_lead", "Lead"),
        *_common_tail(co, moved=False),
        *_user_fields(co),
    ]
    return {
        "deals": tuple(deals),
        "leads": tuple(leads),
        "contacts": tuple(contacts),
        "companies": tuple(companies),
    }


# The documented field catalogue (catalogue="docs"): DOCS api-reference/crm/universal/object-fields.md, the
# "Common Fields" table plus the entity's own table, as (name, type, access). Access comes from the parameter
# tables of crm-item-add.md and crm-item-update.md: "rw" when both list the field, "ro" when neither does (the
# portal fills it). Rows the docs mark "Field is disabled" are left out, and so are `entityTypeId` (the
# crm.item.fields example in crm-item-fields.md does not list it; items carry it, crm-item-get.md), `fm`
# (crm-item-list.md: "not a CRM object field") and the `parentId…`/`ufCrm…` name patterns. No `xmlId`: the
# docs list it for invoices and smart processes only. tests/conformance compares this table with the
# extracted catalogue (tests/fixtures/docs-responses/catalogues/crm-object-fields.json).
_DOCS_CRM_FIELDS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "leads": (
        ("assignedById", "user", "rw"),
        ("createdBy", "user", "ro"),
        ("createdTime", "datetime", "ro"),
        ("id", "integer", "ro"),
        ("lastActivityBy", "user", "ro"),
        ("lastActivityTime", "datetime", "ro"),
        ("opened", "boolean", "rw"),
        ("updatedBy", "user", "ro"),
        ("updatedTime", "datetime", "ro"),
        ("utmCampaign", "string", "rw"),
        ("utmContent", "string", "rw"),
        ("utmMedium", "string", "rw"),
        ("utmSource", "string", "rw"),
        ("utmTerm", "string", "rw"),
        ("webformId", "integer", "rw"),
        ("companyId", "crm_company", "rw"),
        ("contactId", "crm_contact", "rw"),
        ("stageId", "crm_status", "rw"),
        ("statusDescription", "text", "rw"),
        ("stageSemanticId", "string", "ro"),
        ("opportunity", "double", "rw"),
        ("currencyId", "crm_currency", "rw"),
        ("sourceId", "crm_status", "rw"),
        ("sourceDescription", "text", "rw"),
        ("title", "string", "rw"),
        ("name", "string", "rw"),
        ("lastName", "string", "rw"),
        ("secondName", "string", "rw"),
        ("companyTitle", "string", "rw"),
        ("post", "string", "rw"),
        ("comments", "text", "rw"),
        ("originatorId", "string", "rw"),
        ("originId", "string", "rw"),
        ("dateClosed", "datetime", "ro"),
        ("birthdate", "date", "rw"),
        ("honorific", "crm_status", "rw"),
        ("hasPhone", "boolean", "ro"),
        ("hasEmail", "boolean", "ro"),
        ("hasImol", "boolean", "ro"),
        ("isReturnCustomer", "boolean", "ro"),
        ("searchContent", "text", "ro"),
        ("isManualOpportunity", "boolean", "rw"),
        ("movedBy", "user", "ro"),
        ("movedTime", "datetime", "ro"),
        ("phoneMobile", "string", "ro"),
        ("phoneWork", "string", "ro"),
        ("phoneMailing", "string", "ro"),
        ("emailHome", "string", "ro"),
        ("emailWork", "string", "ro"),
        ("emailMailing", "string", "ro"),
        ("skype", "string", "ro"),
        ("icq", "string", "ro"),
        ("imol", "string", "ro"),
        ("email", "string", "ro"),
        ("phone", "string", "ro"),
        ("observers", "user[]", "rw"),
        ("contactIds", "crm_contact[]", "rw"),
    ),
    "deals": (
        ("assignedById", "user", "rw"),
        ("createdBy", "user", "ro"),
        ("createdTime", "datetime", "ro"),
        ("id", "integer", "ro"),
        ("lastActivityBy", "user", "ro"),
        ("lastActivityTime", "datetime", "ro"),
        ("opened", "boolean", "rw"),
        ("updatedBy", "user", "ro"),
        ("updatedTime", "datetime", "ro"),
        ("utmCampaign", "string", "ro"),
        ("utmContent", "string", "rw"),
        ("utmMedium", "string", "rw"),
        ("utmSource", "string", "rw"),
        ("utmTerm", "string", "rw"),
        ("webformId", "integer", "ro"),
        ("leadId", "crm_lead", "rw"),
        ("companyId", "crm_company", "rw"),
        ("contactId", "crm_contact", "rw"),
        ("quoteId", "crm_quote", "rw"),
        ("title", "string", "rw"),
        ("categoryId", "crm_category", "rw"),
        ("stageId", "crm_status", "rw"),
        ("stageSemanticId", "string", "ro"),
        ("isNew", "boolean", "ro"),
        ("isRecurring", "boolean", "rw"),
        ("isReturnCustomer", "boolean", "ro"),
        ("isRepeatedApproach", "boolean", "ro"),
        ("closed", "boolean", "ro"),
        ("typeId", "crm_status", "rw"),
        ("opportunity", "double", "rw"),
        ("isManualOpportunity", "boolean", "rw"),
        ("taxValue", "double", "rw"),
        ("currencyId", "crm_currency", "rw"),
        ("probability", "integer", "rw"),
        ("comments", "text", "rw"),
        ("begindate", "date", "rw"),
        ("closedate", "date", "rw"),
        ("eventDate", "datetime", "ro"),
        ("eventId", "crm_status", "ro"),
        ("eventDescription", "text", "ro"),
        ("locationId", "location", "rw"),
        ("sourceId", "crm_status", "rw"),
        ("sourceDescription", "text", "rw"),
        ("originatorId", "string", "rw"),
        ("originId", "string", "rw"),
        ("additionalInfo", "string", "rw"),
        ("searchContent", "text", "ro"),
        ("orderStage", "string", "ro"),
        ("movedBy", "user", "ro"),
        ("movedTime", "datetime", "ro"),
        ("observers", "user[]", "rw"),
        ("contactIds", "crm_contact[]", "rw"),
    ),
    "contacts": (
        ("assignedById", "user", "rw"),
        ("createdBy", "user", "ro"),
        ("createdTime", "datetime", "ro"),
        ("id", "integer", "ro"),
        ("lastActivityBy", "user", "ro"),
        ("lastActivityTime", "datetime", "ro"),
        ("opened", "boolean", "rw"),
        ("updatedBy", "user", "ro"),
        ("updatedTime", "datetime", "ro"),
        ("utmCampaign", "string", "rw"),
        ("utmContent", "string", "rw"),
        ("utmMedium", "string", "rw"),
        ("utmSource", "string", "rw"),
        ("utmTerm", "string", "rw"),
        ("webformId", "integer", "ro"),
        ("companyId", "crm_company", "rw"),
        ("sourceId", "crm_status", "rw"),
        ("sourceDescription", "text", "rw"),
        ("name", "string", "rw"),
        ("lastName", "string", "rw"),
        ("secondName", "string", "rw"),
        ("photo", "file", "rw"),
        ("post", "string", "rw"),
        ("comments", "text", "rw"),
        ("leadId", "crm_lead", "rw"),
        ("export", "boolean", "rw"),
        ("typeId", "crm_status", "rw"),
        ("originatorId", "string", "rw"),
        ("originId", "string", "rw"),
        ("originVersion", "string", "rw"),
        ("birthdate", "date", "rw"),
        ("honorific", "crm_status", "rw"),
        ("hasPhone", "boolean", "ro"),
        ("hasEmail", "boolean", "ro"),
        ("hasImol", "boolean", "ro"),
        ("searchContent", "text", "ro"),
        ("categoryId", "crm_category", "ro"),
        ("emailHome", "string", "ro"),
        ("emailWork", "string", "ro"),
        ("emailMailing", "string", "ro"),
        ("phoneMobile", "string", "ro"),
        ("phoneWork", "string", "ro"),
        ("phoneMailing", "string", "ro"),
        ("imol", "string", "ro"),
        ("email", "string", "ro"),
        ("phone", "string", "ro"),
        ("observers", "user[]", "rw"),
        ("companyIds", "crm_company[]", "rw"),
    ),
    "companies": (
        ("assignedById", "user", "rw"),
        ("createdBy", "user", "ro"),
        ("createdTime", "datetime", "ro"),
        ("id", "integer", "ro"),
        ("lastActivityBy", "user", "ro"),
        ("lastActivityTime", "datetime", "ro"),
        ("opened", "boolean", "rw"),
        ("updatedBy", "user", "ro"),
        ("updatedTime", "datetime", "ro"),
        ("utmCampaign", "string", "rw"),
        ("utmContent", "string", "rw"),
        ("utmMedium", "string", "rw"),
        ("utmSource", "string", "rw"),
        ("utmTerm", "string", "rw"),
        ("webformId", "integer", "ro"),
        ("title", "string", "rw"),
        ("logo", "file", "rw"),
        ("addressLegal", "text", "ro"),
        ("bankingDetails", "string", "rw"),
        ("comments", "text", "rw"),
        ("typeId", "crm_status", "rw"),
        ("industry", "crm_status", "rw"),
        ("revenue", "double", "rw"),
        ("currencyId", "crm_currency", "rw"),
        ("employees", "crm_status", "rw"),
        ("leadId", "crm_lead", "rw"),
        ("originatorId", "string", "rw"),
        ("originId", "string", "rw"),
        ("originVersion", "string", "rw"),
        ("hasPhone", "boolean", "ro"),
        ("hasEmail", "boolean", "ro"),
        ("hasImol", "boolean", "ro"),
        ("isMyCompany", "boolean", "rw"),
        ("searchContent", "text", "ro"),
        ("categoryId", "crm_category", "ro"),
        ("emailHome", "string", "ro"),
        ("emailWork", "string", "ro"),
        ("emailMailing", "string", "ro"),
        ("phoneMobile", "string", "ro"),
        ("phoneWork", "string", "ro"),
        ("phoneMailing", "string", "ro"),
        ("imol", "string", "ro"),
        ("email", "string", "ro"),
        ("phone", "string", "ro"),
        ("ufLogo", "file", "ro"),
        ("ufStamp", "file", "ro"),
        ("ufDirectorSign", "file", "ro"),
        ("ufAccountantSign", "file", "ro"),
        ("observers", "user[]", "rw"),
        ("contactIds", "crm_contact[]", "rw"),
    ),
}

# Classic UPPER_CASE names of documented fields that the regular camelCase -> UPPER_CASE rule gets wrong
# (DOCS api-reference/crm/leads/crm-lead-fields.md and siblings).
_DOCS_UPPER: dict[Any, str] = {
    "lastActivityBy": "LAST_ACTIVITY_BY",
    "dateClosed": "DATE_CLOSED",
    # crm-company-fields.md / crm-company-list.md: the company type is COMPANY_TYPE in classic methods.
    ("companies", "typeId"): "COMPANY_TYPE",
}


def _humanise(name: str) -> str:
    words = re.sub(r"(?<=[a-z0-9])([A-Z])", r" \1", name).split()
    return " ".join(words).capitalize()


def _build_docs(legacy: dict[str, tuple[FieldSpec, ...]]) -> dict[str, tuple[FieldSpec, ...]]:
    out = {}
    for entity, rows in _DOCS_CRM_FIELDS.items():
        known = {f.name: f for f in legacy[entity]}
        specs = []
        for name, type_, access in rows:
            multiple = type_.endswith("[]")
            base = known.get(name)
            upper = (
                _DOCS_UPPER.get((entity, name))
                or _DOCS_UPPER.get(name)
                or (
                    (_LEAD_OVERRIDES if entity == "leads" else {}).get(name)
                    or _UPPER_OVERRIDES.get(name)
                    or camel_to_upper(name)
                )
            )
            specs.append(
                FieldSpec(
                    name=name,
                    type=type_.removesuffix("[]"),
                    # Titles are portal-localised labels; the docs give descriptions, not titles.
                    title=base.title if base else _humanise(name),
                    upper=upper,
                    required=base.required if base else False,
                    read_only=access == "ro",
                    immutable=access == "imm",
                    multiple=multiple,
                    status_type=base.status_type if base else None,
                    settings=base.settings if base else None,
                    deprecated=base.deprecated if base else False,
                )
            )
        specs.sort(key=lambda f: f.name != "id")
        out[entity] = (*specs, *(f for f in legacy[entity] if f.user_field))
    return out


# ---------------------------------------------------------------------------------------------------------
# Item types beyond the four classic entities: quotes (7), smart invoices (31) and smart processes, all read
# and written through crm.item.* (DOCS api-reference/crm/universal/index.md).


@dataclass(frozen=True, slots=True)
class Pipeline:
    """One pipeline (crm.category.list row) of an item type and the stage directory it owns."""

    id: int
    name: str
    sort: int
    is_default: bool
    directory: str  # crm.status ENTITY_ID of its stages
    stages: tuple[str, ...]  # STATUS_IDs in pipeline order (in progress, success, failure)


@dataclass(frozen=True, slots=True)
class ItemType:
    """An entity type served through crm.item.*: its table name, entityTypeId, pipelines and crm.type id."""

    entity: str
    entity_type_id: int
    title: str
    pipelines: tuple[Pipeline, ...]
    type_id: int | None = None  # crm.type `id` of a smart process (its user fields are UF_CRM_<type_id>_…)

    @property
    def default(self) -> Pipeline:
        return next(p for p in self.pipelines if p.is_default)

    def pipeline(self, category: int | None) -> Pipeline | None:
        return next((p for p in self.pipelines if p.id == category), None)


# A new smart-process or invoice pipeline gets five stages: three in progress, one success, one failure
# (DOCS tutorials/crm/how-to-add-crm-objects/how-to-add-category-to-spa.md, step 3: NEW, PREPARATION, CLIENT,
# SUCCESS, FAIL with these names and colours). The docs show no invoice stage codes; the sandbox gives
# invoices the same set (docs/sandbox-deviations.md).
NEW_PIPELINE_STAGES: tuple[tuple[str, str, str], ...] = (
    ("NEW", "Start", "#22B9FF"),
    ("PREPARATION", "Preparation", "#88B9FF"),
    ("CLIENT", "Approval", "#10e5fc"),
    ("SUCCESS", "Success", "#00ff00"),
    ("FAIL", "Failure", "#ff0000"),
)
# Quote stages: directory QUOTE_STATUS with START DRAFT, success APPROVED, failure DECLAINED (sic) (DOCS
# api-reference/crm/status/crm-status-entity-types.md, response example; crm-quote-add.md).
QUOTE_STAGES: tuple[tuple[str, str, str], ...] = (
    ("DRAFT", "New", "#39A8EF"),
    ("APPROVED", "Approved", "#7BD500"),
    ("DECLAINED", "Declined", "#FF5752"),
)


def _dynamic_pipeline(entity_type_id: int, category: int, name: str, sort: int, default: bool) -> Pipeline:
    # Stage ids DT<entityTypeId>_<category>:<code>; directories DYNAMIC_<entityTypeId>_STAGE_<category> for
    # smart processes and SMART_INVOICE_STAGE_<category> for invoices (DOCS crm-status-get.md response
    # "DYNAMIC_1038_STAGE_37" / "DT1038_37:SUCCESS"; crm-status-entity-types.md "SMART_INVOICE_STAGE_5",
    # prefix "DT31_5").
    directory = (
        f"SMART_INVOICE_STAGE_{category}"
        if entity_type_id == 31
        else f"DYNAMIC_{entity_type_id}_STAGE_{category}"
    )
    stages = tuple(f"DT{entity_type_id}_{category}:{code}" for code, _, _ in NEW_PIPELINE_STAGES)
    return Pipeline(category, name, sort, default, directory, stages)


# Pipeline ids are portal-wide (crm-category-list.md's example: deal pipelines 9, 10, 11 next to 0), so the
# item types' ones follow the deal pipelines 0 and 1.
ITEM_TYPES: dict[str, ItemType] = {
    "quotes": ItemType(
        "quotes",
        7,
        "Estimate",
        (Pipeline(0, "", 0, True, "QUOTE_STATUS", tuple(s for s, _, _ in QUOTE_STAGES)),),
    ),
    "invoices": ItemType("invoices", 31, "Invoice", (_dynamic_pipeline(31, 2, "General", 100, True),)),
    "spa_128": ItemType(
        "spa_128",
        128,
        "Projects",
        (
            _dynamic_pipeline(128, 3, "General", 100, True),
            _dynamic_pipeline(128, 4, "Partner projects", 200, False),
        ),
        type_id=1,
    ),
    "spa_1036": ItemType(
        "spa_1036", 1036, "Purchases", (_dynamic_pipeline(1036, 5, "General", 100, True),), type_id=2
    ),
}
SPA_ENTITIES = tuple(e for e, t in ITEM_TYPES.items() if t.type_id is not None)
STAGE_NAMES: dict[str, tuple[str, str]] = {
    code: (name, color) for code, name, color in (*NEW_PIPELINE_STAGES, *QUOTE_STAGES)
}

# The documented fields of each item type: object-fields.md's common table plus the type's own section
# ({#quote}, {#invoice}, {#spa}), access as in crm-item-add.md / crm-item-update.md (tabs Estimate, Invoice,
# SPA); fields marked "Field is disabled" and the patterns parentId…/ufCrm… left out. For smart processes the
# "Available only when" fields are served because the sandbox's types switch every such option on
# (crm.type.list rows below).
_COMMON_ITEM: tuple[tuple[str, str, str], ...] = (
    ("assignedById", "user", "rw"),
    ("createdBy", "user", "ro"),
    ("createdTime", "datetime", "ro"),
    ("id", "integer", "ro"),
    ("lastActivityBy", "user", "ro"),
    ("lastActivityTime", "datetime", "ro"),
    ("opened", "boolean", "rw"),
    ("updatedBy", "user", "ro"),
    ("updatedTime", "datetime", "ro"),
)
_UTM = ("utmCampaign", "utmContent", "utmMedium", "utmSource", "utmTerm")
_SMART_OWN: tuple[tuple[str, str, str], ...] = (
    ("webformId", "integer", "rw"),
    ("xmlId", "string", "rw"),
    ("title", "string", "rw"),
    ("movedBy", "user", "ro"),
    ("movedTime", "datetime", "ro"),
    ("categoryId", "crm_category", "rw"),
    ("stageId", "crm_status", "rw"),
    ("previousStageId", "crm_status", "ro"),
    ("begindate", "date", "rw"),
    ("closedate", "date", "rw"),
    ("companyId", "crm_company", "rw"),
    ("contactId", "crm_contact", "rw"),
    ("opportunity", "double", "rw"),
    ("isManualOpportunity", "boolean", "rw"),
    ("taxValue", "double", "rw"),
    ("currencyId", "crm_currency", "rw"),
    ("mycompanyId", "crm_company", "rw"),
    ("sourceId", "crm_status", "rw"),
    ("sourceDescription", "text", "rw"),
)
_DOCS_ITEM_FIELDS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "quote": (
        *_COMMON_ITEM,
        *((u, "string", "rw") for u in _UTM),
        ("webformId", "integer", "rw"),
        ("leadId", "crm_lead", "rw"),
        ("dealId", "crm_deal", "rw"),
        ("companyId", "crm_company", "rw"),
        ("contactId", "crm_contact", "rw"),
        ("personTypeId", "integer", "ro"),
        ("mycompanyId", "crm_company", "rw"),
        ("title", "string", "rw"),
        ("stageId", "crm_status", "rw"),
        ("closed", "boolean", "ro"),
        ("opportunity", "double", "rw"),
        ("isManualOpportunity", "boolean", "rw"),
        ("taxValue", "double", "rw"),
        ("currencyId", "crm_currency", "rw"),
        ("comments", "text", "rw"),
        ("commentsType", "integer", "ro"),
        ("begindate", "date", "rw"),
        ("closedate", "date", "rw"),
        ("quoteNumber", "string", "ro"),
        ("content", "text", "rw"),
        ("contentType", "integer", "ro"),
        ("terms", "text", "rw"),
        ("termsType", "integer", "ro"),
        ("storageTypeId", "integer", "rw"),
        ("storageElementIds", "integer[]", "rw"),
        ("locationId", "location", "rw"),
        ("clientTitle", "string", "ro"),
        ("clientAddr", "string", "ro"),
        ("clientContact", "string", "ro"),
        ("clientEmail", "string", "ro"),
        ("clientPhone", "string", "ro"),
        ("clientTpId", "string", "ro"),
        ("clientTpaId", "string", "ro"),
        ("searchContent", "text", "ro"),
        ("actualDate", "date", "rw"),
        ("contactIds", "crm_contact[]", "rw"),
    ),
    "invoice": (
        *_COMMON_ITEM,
        *((u, "string", "ro") for u in _UTM),
        *((n, t, "ro" if n == "categoryId" else a) for n, t, a in _SMART_OWN),
        ("comments", "text", "rw"),
        ("accountNumber", "string", "ro"),
        ("locationId", "location", "rw"),
        ("observers", "user[]", "rw"),
        ("contactIds", "crm_contact[]", "rw"),
    ),
    "spa": (
        *_COMMON_ITEM,
        *((u, "string", "ro") for u in _UTM),
        *_SMART_OWN,
        ("observers", "user[]", "rw"),
        ("contactIds", "crm_contact[]", "rw"),
    ),
}
_ITEM_TITLES = {
    "title": "Name",
    "stageId": "Stage",
    "previousStageId": "Previous stage",
    "categoryId": "Pipeline",
    "movedTime": "Moved at",
    "movedBy": "Moved by",
    "sourceId": "Source",
    "xmlId": "External ID",
    "contactIds": "Contacts",
    "contactId": "Contact",
    "companyId": "Company",
    "mycompanyId": "Your company details",
    "opportunity": "Amount",
    "currencyId": "Currency",
}


def _item_type_fields(item: ItemType) -> tuple[FieldSpec, ...]:
    kind = "quote" if item.entity_type_id == 7 else "invoice" if item.entity_type_id == 31 else "spa"
    stage_dir = item.default.directory
    specs = []
    for name, type_, access in _DOCS_ITEM_FIELDS[kind]:
        status = None
        if name in ("stageId", "previousStageId"):
            # crm-item-fields.md (a smart process): statusType is the default pipeline's directory.
            status = stage_dir
        elif name == "sourceId":
            status = "SOURCE"
        specs.append(
            FieldSpec(
                name=name,
                type=type_.removesuffix("[]"),
                title=_ITEM_TITLES.get(name) or _humanise(name),
                upper=_UPPER_OVERRIDES.get(name) or camel_to_upper(name),
                read_only=access == "ro",
                immutable=access == "imm",
                multiple=type_.endswith("[]"),
                status_type=status,
                # crm-item-fields.md: `contactId` is the deprecated single form of `contactIds`.
                deprecated=name == "contactId" and kind != "quote",
            )
        )
    specs.sort(key=lambda f: f.name != "id")
    if item.type_id is not None:
        specs.extend(_spa_user_fields(item))
    return tuple(specs)


def _spa_user_fields(item: ItemType) -> list[FieldSpec]:
    """A smart process's own user fields: UF_CRM_<type id>_<digits>, camelCase ufCrm<type id>_<digits>
    (DOCS crm-item-add.md, "Custom fields used in the example": ufCrm44_1721812760630 / UF_CRM_44_…)."""
    assert item.type_id is not None
    base = 1721812760600 + item.type_id * 10
    kinds: tuple[tuple[str, str, dict[str, Any]], ...] = (
        # crm-item-add.md's example enumeration field: items as {"ID", "VALUE"}.
        ("enumeration", "Priority", {"DISPLAY": "LIST", "LIST_HEIGHT": 1, "SHOW_NO_VALUE": "Y"}),
        ("string", "Reference", {"SIZE": 20, "ROWS": 1, "REGEXP": "", "MIN_LENGTH": 0, "MAX_LENGTH": 0}),
        ("double", "Budget", {"PRECISION": 2, "SIZE": 20, "MIN_VALUE": 0, "MAX_VALUE": 0}),
        ("datetime", "Checked on", {"DEFAULT_VALUE": {"TYPE": "NONE", "VALUE": ""}}),
    )
    out = []
    for k, (type_, title, settings) in enumerate(kinds):
        digits = str(base + k)
        items: tuple[tuple[int, str], ...] = ()
        if type_ == "enumeration":
            first = 200 + item.type_id * 10
            items = tuple((first + i, label) for i, label in enumerate(("High", "Normal", "Low")))
        out.append(
            FieldSpec(
                name=f"ufCrm{item.type_id}_{digits}",
                type=type_,
                title=title,
                upper=f"UF_CRM_{item.type_id}_{digits}",
                settings=settings,
                items=items,
                user_field=True,
            )
        )
    return out


ITEM_TYPE_FIELDS: dict[str, tuple[FieldSpec, ...]] = {e: _item_type_fields(t) for e, t in ITEM_TYPES.items()}
ITEM_ENTITY_TYPE_IDS.update({e: t.entity_type_id for e, t in ITEM_TYPES.items()})
ITEM_ENTITY_BY_TYPE_ID = {v: k for k, v in ITEM_ENTITY_TYPE_IDS.items()}


@dataclass(frozen=True, eq=False)
class CrmCatalogue:
    """The fields a sandbox portal's CRM entities have: `legacy` (the sandbox's historical set, which serves
    `xmlId` on every entity) or `docs` (exactly the documented fields, see `_DOCS_CRM_FIELDS`).

    Compared by identity, so it can key the per-select caches of the method modules.
    """

    name: str
    fields: dict[str, tuple[FieldSpec, ...]]
    field_map: dict[str, dict[str, FieldSpec]] = field(init=False)
    upper_map: dict[str, dict[str, FieldSpec]] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "field_map", {e: {f.name: f for f in fs} for e, fs in self.fields.items()})
        object.__setattr__(self, "upper_map", {e: {f.upper: f for f in fs} for e, fs in self.fields.items()})


CRM_FIELDS: dict[str, tuple[FieldSpec, ...]] = {**_build(), **ITEM_TYPE_FIELDS}
CRM_FIELD_MAP: dict[str, dict[str, FieldSpec]] = {e: {f.name: f for f in fs} for e, fs in CRM_FIELDS.items()}
CRM_UPPER_MAP: dict[str, dict[str, FieldSpec]] = {e: {f.upper: f for f in fs} for e, fs in CRM_FIELDS.items()}
CATALOGUES: dict[str, CrmCatalogue] = {
    "legacy": CrmCatalogue("legacy", CRM_FIELDS),
    "docs": CrmCatalogue("docs", {**_build_docs(CRM_FIELDS), **ITEM_TYPE_FIELDS}),
}
# Entities that carry communications (`fm` in crm.item, PHONE/EMAIL/WEB/IM in classic methods).
FM_ENTITIES = frozenset({"leads", "contacts", "companies"})
FM_TYPES = ("PHONE", "EMAIL", "WEB", "IM")


def user_fields(entity: str) -> list[FieldSpec]:
    """The UF_CRM_* fields of a CRM entity."""
    return [f for f in CRM_FIELDS[entity] if f.user_field]


def stage_semantic(entity: str, stage: str | None) -> str:
    """`P` (in progress), `S` (success) or `F` (failure), as `stageSemanticId` reports it."""
    if stage is None:
        return "P"
    tail = stage.split(":")[-1]
    # SUCCESS/FAIL: a new smart-process pipeline's final stages (how-to-add-category-to-spa.md); APPROVED/
    # DECLAINED: the quote directory's (crm-status-entity-types.md).
    if tail in ("WON", "CONVERTED", "SUCCESS", "APPROVED"):
        return "S"
    if tail in ("LOSE", "JUNK", "FAIL", "DECLAINED"):
        return "F"
    return "P"


def rest_field(
    type_: str,
    title: str | None = None,
    *,
    required: bool = False,
    read_only: bool = False,
    immutable: bool = False,
    multiple: bool = False,
    dynamic: bool = False,
) -> dict[str, Any]:
    """A `crm_rest_field_description` (DOCS api-reference/crm/data-types.md); `title` is added last if given."""
    out: dict[str, Any] = {
        "type": type_,
        "isRequired": required,
        "isReadOnly": read_only,
        "isImmutable": immutable,
        "isMultiple": multiple,
        "isDynamic": dynamic,
    }
    if title is not None:
        out["title"] = title
    return out


def _describe(spec: FieldSpec, *, classic: bool) -> dict[str, Any]:
    type_ = spec.type
    if classic and not spec.user_field:
        # Classic metadata predates the boolean/text types of crm.item (fixture crm_lead_fields_success.json).
        type_ = {"boolean": "char", "text": "string"}.get(type_, type_)
    out = rest_field(
        type_,
        required=spec.required,
        read_only=spec.read_only,
        immutable=spec.immutable,
        multiple=spec.multiple,
        dynamic=spec.user_field,
    )
    if spec.deprecated:
        out["isDeprecated"] = True
    if spec.status_type:
        out["statusType"] = spec.status_type
    if spec.items:
        out["items"] = [{"ID": str(i), "VALUE": v} for i, v in spec.items]
    out["title"] = spec.title
    if spec.user_field:
        out["listLabel"] = out["formLabel"] = out["filterLabel"] = spec.title
    if spec.settings is not None:
        out["settings"] = spec.settings
    if not classic:
        out["upperName"] = spec.upper
    return out


def crm_item_fields_payload(
    entity: str, *, original_uf_names: bool = False, catalogue: CrmCatalogue = CATALOGUES["legacy"]
) -> dict[str, Any]:
    """The `result` of `crm.item.fields` for a system entity type."""
    fields: dict[str, Any] = {}
    for spec in catalogue.fields[entity]:
        key = spec.upper if (spec.user_field and original_uf_names) else spec.name
        fields[key] = _describe(spec, classic=False)
    return {"fields": fields}


def classic_fields_payload(entity: str, catalogue: CrmCatalogue = CATALOGUES["legacy"]) -> dict[str, Any]:
    """The `result` of `crm.<entity>.fields`: UPPER_CASE keys, multifields included."""
    out: dict[str, Any] = {}
    ufs = []
    for spec in catalogue.fields[entity]:
        if spec.user_field:
            ufs.append(spec)
            continue
        out[spec.upper] = _describe(spec, classic=True)
    if entity in FM_ENTITIES:
        for fm_type in FM_TYPES:
            out[fm_type] = rest_field("crm_multifield", fm_type.title(), multiple=True)
    for spec in ufs:
        out[spec.upper] = _describe(spec, classic=True)
    return out


# crm.item.productrow.fields, exactly as DOCS crm-item-productrow-fields.md lists them: (name, type, title,
# required, read-only, immutable). The list rows carry `priceAccount` and `xmlId` too (fixture
# crm_item_productrow_list.json) and never `storeId`; the real method describes them that way.
_PRODUCT_ROW_FIELDS: tuple[tuple[str, str, str, bool, bool, bool], ...] = (
    ("id", "integer", "ID", False, True, False),
    ("ownerId", "integer", "Owner ID", True, False, True),
    ("ownerType", "string", "Owner Type", True, False, True),
    ("productId", "integer", "Product", True, False, False),
    ("productName", "string", "Product Name", False, False, False),
    ("price", "double", "Price", False, False, False),
    ("priceExclusive", "double", "Discounted price excluding tax", False, True, False),
    ("priceNetto", "double", "PRICE_NETTO", False, True, False),
    ("priceBrutto", "double", "PRICE_BRUTTO", False, True, False),
    ("quantity", "double", "Quantity", False, False, False),
    ("discountTypeId", "integer", "Discount Type", False, False, False),
    ("discountRate", "double", "Discount Amount", False, False, False),
    ("discountSum", "double", "Discount Total", False, False, False),
    ("taxRate", "double", "Tax", False, False, False),
    ("taxIncluded", "char", "Tax included in price", False, False, False),
    ("customized", "char", "Modified", False, False, False),
    ("measureCode", "integer", "Unit of Measure Code", False, False, False),
    ("measureName", "string", "Unit of Measure", False, False, False),
    ("sort", "integer", "Sorting", False, False, False),
    ("type", "integer", "TYPE", False, True, False),
    ("storeId", "integer", "STORE_ID", False, True, False),
)


def product_row_fields_payload() -> dict[str, Any]:
    """The `result` of `crm.item.productrow.fields`: ``{"fields": {name: crm_rest_field_description}}``."""
    return {
        "fields": {
            name: rest_field(type_, title, required=req, read_only=ro, immutable=imm)
            for name, type_, title, req, ro, imm in _PRODUCT_ROW_FIELDS
        }
    }


@dataclass(frozen=True, slots=True)
class SimpleField:
    """A field of a non-CRM entity (tasks, task results, users): its type and what it allows."""

    name: str
    type: str  # integer | string | datetime | boolean | array | enum
    filterable: bool = False
    sortable: bool = False
    editable: bool = True
    title: str = ""
    values: tuple[str, ...] = field(default=())


TASK_STATUSES = ("pending", "in_progress", "supposedly_completed", "completed", "deferred", "declined")
TASK_PRIORITIES = ("low", "average", "high")
# v2 numeric codes (DOCS api-reference/tasks/fields.md): STATUS 2..7, PRIORITY 0..2.
TASK_STATUS_V2 = {
    "pending": "2",
    "in_progress": "3",
    "supposedly_completed": "4",
    "completed": "5",
    "deferred": "6",
    "declined": "7",
}
TASK_PRIORITY_V2 = {"low": "0", "average": "1", "high": "2"}

_TASK_SORTABLE = {
    "id",
    "title",
    "creatorId",
    "created",
    "responsibleId",
    "deadline",
    "startPlan",
    "endPlan",
    "groupId",
    "priority",
    "status",
    "changed",
    "closed",
}


def _task_fields() -> dict[str, SimpleField]:
    spec = [
        ("id", "integer", False, "Task ID"),
        ("title", "string", True, "Title"),
        ("description", "string", True, "Description"),
        ("creatorId", "integer", False, "Creator"),
        ("responsibleId", "integer", True, "Assignee"),
        ("created", "datetime", False, "Created on"),
        ("changed", "datetime", False, "Modified on"),
        ("changedById", "integer", False, "Modified by"),
        ("closed", "datetime", False, "Closed on"),
        ("closedById", "integer", False, "Closed by"),
        ("deadline", "datetime", True, "Deadline"),
        ("startPlan", "datetime", True, "Planned start"),
        ("endPlan", "datetime", True, "Planned end"),
        ("status", "enum", True, "Status"),
        ("statusChanged", "datetime", False, "Status changed on"),
        ("priority", "enum", True, "Priority"),
        ("groupId", "integer", True, "Group"),
        ("parentId", "integer", True, "Parent task"),
        ("accomplices", "array", True, "Participants"),
        ("auditors", "array", True, "Observers"),
        ("crmItemIds", "array", True, "CRM items"),
        ("needsControl", "boolean", True, "Needs control"),
        ("estimatedTime", "integer", True, "Time estimate"),
        ("xmlId", "string", True, "External ID"),
        ("guid", "string", False, "GUID"),
        ("containsResults", "boolean", False, "Has results"),
    ]
    out = {}
    for name, type_, editable, title in spec:
        values: tuple[str, ...] = ()
        if name == "status":
            values = TASK_STATUSES
        elif name == "priority":
            values = TASK_PRIORITIES
        out[name] = SimpleField(
            name=name,
            type=type_,
            # DOCS tasks-task-list-rest-v3.md: "In REST 3.0, filtering by the `id` field is supported for tasks."
            filterable=name == "id",
            sortable=name in _TASK_SORTABLE,
            editable=editable,
            title=title,
            values=values,
        )
    return out


TASK_FIELDS: dict[str, SimpleField] = _task_fields()
# Relations that a v3 `select` may follow with a dotted path (§5.1), and the user fields they expose.
TASK_USER_RELATIONS = {
    "creator": "creatorId",
    "responsible": "responsibleId",
    "changedBy": "changedById",
    "closedBy": "closedById",
}
TASK_USER_DTO_FIELDS = ("id", "name", "email", "gender", "role")
# tasks.task.get without `select` (§5.1): the basic set.
TASK_DEFAULT_GET = (
    "id",
    "title",
    "description",
    "creatorId",
    "responsibleId",
    "created",
    "changed",
    "deadline",
    "status",
    "priority",
    "groupId",
)

RESULT_FIELDS: dict[str, SimpleField] = {
    name: SimpleField(name=name, type=type_, filterable=filt, sortable=sort)
    for name, type_, filt, sort in (
        ("id", "integer", True, True),
        ("taskId", "integer", True, False),
        ("text", "string", False, False),
        ("authorId", "integer", True, True),
        ("createdAt", "datetime", False, True),
        ("updatedAt", "datetime", False, True),
        ("status", "string", True, True),
        ("fileIds", "array", False, False),
        ("messageId", "integer", True, True),
    )
}
RESULT_DEFAULT_SELECT = ("id", "taskId", "text", "authorId", "createdAt", "updatedAt", "status", "messageId")

# v2 tasks.task.* : UPPER_CASE names in select/filter/order, camelCase string values in output (§7.4).
TASK_V2_NAMES = {
    "ID": "id",
    "TITLE": "title",
    "DESCRIPTION": "description",
    "CREATED_BY": "createdBy",
    "RESPONSIBLE_ID": "responsibleId",
    "CREATED_DATE": "createdDate",
    "CHANGED_DATE": "changedDate",
    "CHANGED_BY": "changedBy",
    "CLOSED_DATE": "closedDate",
    "CLOSED_BY": "closedBy",
    "DEADLINE": "deadline",
    "START_DATE_PLAN": "startDatePlan",
    "END_DATE_PLAN": "endDatePlan",
    "STATUS": "status",
    "REAL_STATUS": "realStatus",
    "PRIORITY": "priority",
    "GROUP_ID": "groupId",
    "PARENT_ID": "parentId",
    "UF_CRM_TASK": "ufCrmTask",
    "XML_ID": "xmlId",
    "GUID": "guid",
    "TIME_ESTIMATE": "timeEstimate",
    "ACCOMPLICES": "accomplices",
    "AUDITORS": "auditors",
}
# Which canonical (v3) field feeds each v2 output key.
TASK_V2_SOURCE = {
    "id": "id",
    "title": "title",
    "description": "description",
    "createdBy": "creatorId",
    "responsibleId": "responsibleId",
    "createdDate": "created",
    "changedDate": "changed",
    "changedBy": "changedById",
    "closedDate": "closed",
    "closedBy": "closedById",
    "deadline": "deadline",
    "startDatePlan": "startPlan",
    "endDatePlan": "endPlan",
    "status": "status",
    "realStatus": "status",
    "priority": "priority",
    "groupId": "groupId",
    "parentId": "parentId",
    "ufCrmTask": "crmItemIds",
    "xmlId": "xmlId",
    "guid": "guid",
    "timeEstimate": "estimatedTime",
    "accomplices": "accomplices",
    "auditors": "auditors",
}
TASK_V2_DEFAULT_SELECT = (
    "ID",
    "TITLE",
    "DESCRIPTION",
    "STATUS",
    "PRIORITY",
    "CREATED_BY",
    "RESPONSIBLE_ID",
    "CREATED_DATE",
    "CHANGED_DATE",
    "CLOSED_DATE",
    "DEADLINE",
    "GROUP_ID",
)

# user.get rows (§7.5): UPPER_CASE, string ID, ACTIVE bool, UF_DEPARTMENT list of ints.
USER_FIELD_LABELS = {
    "ID": "ID",
    "XML_ID": "External ID",
    "ACTIVE": "Active",
    "NAME": "First name",
    "LAST_NAME": "Last name",
    "SECOND_NAME": "Second name",
    "EMAIL": "E-Mail",
    "LAST_LOGIN": "Last login",
    "DATE_REGISTER": "Registration date",
    "TIMESTAMP_X": "TIMESTAMP_X",
    "LAST_ACTIVITY_DATE": "LAST_ACTIVITY_DATE",
    "IS_ONLINE": "IS_ONLINE",
    "TIME_ZONE": "TIME_ZONE",
    "PERSONAL_GENDER": "Gender",
    "PERSONAL_BIRTHDAY": "Date of birth",
    "PERSONAL_MOBILE": "Mobile phone",
    "PERSONAL_CITY": "City",
    "WORK_PHONE": "Company phone",
    "WORK_POSITION": "Position",
    "UF_DEPARTMENT": "Departments",
    "UF_EMPLOYMENT_DATE": "Employment date",
    "USER_TYPE": "USER_TYPE",
}
USER_TYPES: dict[str, str] = {
    "ID": "id",
    "XML_ID": "string",
    "ACTIVE": "bool",
    "NAME": "string",
    "LAST_NAME": "string",
    "SECOND_NAME": "string",
    "EMAIL": "string",
    "LAST_LOGIN": "datetime",
    "DATE_REGISTER": "datetime",
    "TIMESTAMP_X": "datetime",
    "LAST_ACTIVITY_DATE": "datetime",
    "IS_ONLINE": "string",
    "TIME_ZONE": "string",
    "PERSONAL_GENDER": "string",
    "PERSONAL_BIRTHDAY": "datetime",
    "PERSONAL_MOBILE": "string",
    "PERSONAL_CITY": "string",
    "WORK_PHONE": "string",
    "WORK_POSITION": "string",
    "UF_DEPARTMENT": "list_int",
    "UF_EMPLOYMENT_DATE": "datetime",
    "USER_TYPE": "string",
}
