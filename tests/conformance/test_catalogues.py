"""Field catalogues of a `catalogue="docs"` sandbox against the documented ones, over real HTTP.

crm.item.fields must list exactly the fields of object-fields.md for each entity (plus the portal's ufCrm_*)
with the access the crm.item.add/update parameter tables give them; tasks.task.field.list must use the type
words and flags of the documented answer (tasks-task-field-list.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from bitrix24_source.sandbox import Sandbox
from tests.conformance.corpus import catalogue, records

CRM = catalogue("crm-object-fields.json")
ENTITY_TYPE_IDS = {"leads": 1, "deals": 2, "contacts": 3, "companies": 4}
# Documented names crm.item.fields does not list: `entityTypeId` is added to items (crm-item-get.md) and the
# crm.item.fields example (crm-item-fields.md) has no such field; `fm` is "not a CRM object field"
# (crm-item-list.md).
NOT_FIELDS = frozenset({"entityTypeId", "fm"})


def documented_fields(entity: str) -> dict[str, dict[str, Any]]:
    """The fields crm.item.fields should list for `entity`, by name (disabled ones and patterns left out)."""
    return {
        f["name"]: f
        for f in CRM["entities"][entity]["fields"]
        if f["access"] != "not returned" and not f["pattern"] and f["name"] not in NOT_FIELDS
    }


@pytest.fixture(scope="module")
def portal() -> Iterator[Sandbox]:
    with Sandbox(
        seed=5, leads=10, deals=10, contacts=10, companies=10, users=4, tasks=10, catalogue="docs"
    ) as p:
        yield p


def call(portal: Sandbox, method: str, params: dict[str, Any], version: int = 2) -> Any:
    base = portal.webhook_url_v3 if version == 3 else portal.webhook_url
    return requests.post(base + method, json=params, timeout=30).json()


# object-fields.md sections of the item types crm.item.* serves beyond the four classic entities, with an
# entityTypeId the sandbox has (both of its smart processes follow the {#spa} section).
ITEM_TYPE_IDS = {**ENTITY_TYPE_IDS, "quotes": 7, "invoices": 31, "smart_processes": 128}
SMART_PROCESS_IDS = (128, 1036)


@pytest.mark.parametrize("entity", list(ITEM_TYPE_IDS))
def test_crm_item_fields_lists_exactly_the_documented_fields(portal: Sandbox, entity: str) -> None:
    fields = call(portal, "crm.item.fields", {"entityTypeId": ITEM_TYPE_IDS[entity]})["result"]["fields"]
    system = {name for name, desc in fields.items() if not desc["isDynamic"]}
    assert system == set(documented_fields(entity))
    # UF_CRM_<digits> on the classic entities and quotes; UF_CRM_<type id>_<digits> on smart processes
    # (crm-item-add.md: ufCrm44_1721812760630).
    prefix = "ufCrm1_" if entity == "smart_processes" else "ufCrm_"
    assert all(name.startswith(prefix) for name, desc in fields.items() if desc["isDynamic"])


@pytest.mark.parametrize("type_id", SMART_PROCESS_IDS)
def test_every_smart_process_serves_the_spa_section(portal: Sandbox, type_id: int) -> None:
    fields = call(portal, "crm.item.fields", {"entityTypeId": type_id})["result"]["fields"]
    assert {n for n, d in fields.items() if not d["isDynamic"]} == set(documented_fields("smart_processes"))
    enums = [d for d in fields.values() if d["type"] == "enumeration"]
    assert enums and all(d["items"] and {"ID", "VALUE"} == set(d["items"][0]) for d in enums)


@pytest.mark.parametrize("entity", list(ITEM_TYPE_IDS))
def test_crm_item_fields_carry_the_documented_types_and_access(portal: Sandbox, entity: str) -> None:
    fields = call(portal, "crm.item.fields", {"entityTypeId": ITEM_TYPE_IDS[entity]})["result"]["fields"]
    wrong = {}
    for name, doc in documented_fields(entity).items():
        desc = fields[name]
        expected = (
            doc["type"].removesuffix("[]"),
            doc["type"].endswith("[]"),
            doc["access"] == "read-only",
            doc["access"] == "set on creation",
        )
        got = (desc["type"], desc["isMultiple"], desc["isReadOnly"], desc["isImmutable"])
        if got != expected:
            wrong[name] = (expected, got)
    assert wrong == {}


@pytest.mark.parametrize("entity", list(ENTITY_TYPE_IDS))
def test_no_xml_id_but_origin_fields_on_crm_entities(portal: Sandbox, entity: str) -> None:
    type_id = ENTITY_TYPE_IDS[entity]
    fields = call(portal, "crm.item.fields", {"entityTypeId": type_id})["result"]["fields"]
    assert "xmlId" not in fields and {"originId", "originatorId"} <= set(fields)
    item = call(portal, "crm.item.get", {"entityTypeId": type_id, "id": 1})["result"]["item"]
    assert "xmlId" not in item and {"originId", "originatorId"} <= set(item)
    bad = call(portal, "crm.item.list", {"entityTypeId": type_id, "filter": {"=xmlId": "x"}})
    assert bad["error"] == "INVALID_ARG_VALUE"


def test_origin_id_is_written_and_found(portal: Sandbox) -> None:
    added = call(portal, "crm.item.add", {"entityTypeId": 2, "fields": {"title": "T", "originId": "ext-1"}})
    found = call(
        portal, "crm.item.list", {"entityTypeId": 2, "filter": {"=originId": "ext-1"}, "select": ["id"]}
    )
    assert found["result"]["items"] == [{"id": added["result"]["item"]["id"]}]


@pytest.mark.parametrize(("select", "typed"), [(None, True), (["*"], True), (["id", "title"], False)])
def test_list_rows_carry_entity_type_id_only_for_whole_items(
    portal: Sandbox, select: list[str] | None, typed: bool
) -> None:
    params: dict[str, Any] = {"entityTypeId": 3}
    if select is not None:
        params["select"] = select
    rows = call(portal, "crm.item.list", params)["result"]["items"]
    assert rows and all(("entityTypeId" in r) is typed for r in rows)
    assert all(r["entityTypeId"] == 3 for r in rows if typed)


def _documented_task_fields() -> dict[str, dict[str, Any]]:
    record = next(r for r in records() if r.key == "v3 tasks.task.field.list")
    assert record.response is not None
    return {item["name"]: item for item in record.response["body"]["result"]["items"]}


# Documented names the sandbox's tasks do not have (inMute, source, dependsOn, scenarios: features it does not
# emulate), and the documented `sortable: false` of fields tasks-task-list-rest-v3.md lists as sort keys.
TASK_FIELDS_NOT_SERVED = frozenset({"inMute", "source", "dependsOn", "scenarios"})
SORTABLE_BY_LIST_PAGE = frozenset({"title", "creatorId", "created", "responsibleId"})


def test_task_field_list_uses_the_documented_type_words_and_flags(portal: Sandbox) -> None:
    record = next(r for r in records() if r.key == "v3 tasks.task.field.list")
    served = {i["name"]: i for i in call(portal, record.method, record.request, version=3)["result"]["items"]}
    documented = _documented_task_fields()
    assert set(documented) - set(served) == TASK_FIELDS_NOT_SERVED
    for name in set(documented) & set(served):
        doc, got = documented[name], served[name]
        assert set(got) == set(doc), name
        assert (got["type"], got["title"], got["description"], got["filterable"], got["multiple"]) == (
            doc["type"],
            doc["title"],
            doc["description"],
            doc["filterable"],
            doc["multiple"],
        ), name
        assert got["sortable"] == (doc["sortable"] or name in SORTABLE_BY_LIST_PAGE), name
    # Every type word is one of the PHP property types the documented answer uses (plus `bool`).
    assert {i["type"] for i in served.values()} <= {"int", "string", "array", "object", "bool"}
    assert served["changed"]["type"] == "object" and served["status"]["type"] == "string"


def test_task_field_list_select_errors_are_documented(portal: Sandbox) -> None:
    bad = call(portal, "tasks.task.field.list", {"select": ["name", "unknownField"]}, version=3)
    # DOCS tasks-task-field-list.md, "Error Handling": this exact body.
    assert bad == {
        "error": {
            "code": "BITRIX_REST_V3_EXCEPTION_UNKNOWNDTOPROPERTYEXCEPTION",
            "message": "Unknown field `unknownField` for entity `DtoFieldDto`",
        }
    }


def test_the_documented_catalogue_is_the_default_and_legacy_stays_selectable() -> None:
    with Sandbox(seed=5, leads=3, deals=3, contacts=3, companies=3, users=2, tasks=3) as default:
        fields = call(default, "crm.item.fields", {"entityTypeId": 2})["result"]["fields"]
        types = {i["type"] for i in call(default, "tasks.task.field.list", {}, version=3)["result"]["items"]}
    assert "xmlId" not in fields and "originId" in fields and "object" in types and "integer" not in types
    with Sandbox(
        seed=5, leads=3, deals=3, contacts=3, companies=3, users=2, tasks=3, catalogue="legacy"
    ) as old:
        fields = call(old, "crm.item.fields", {"entityTypeId": 2})["result"]["fields"]
        types = {i["type"] for i in call(old, "tasks.task.field.list", {}, version=3)["result"]["items"]}
    assert "xmlId" in fields and "integer" in types


# fields-rest-v3.md type -> the PHP type word tasks.task.field.list gives for it.
_PHP_WORD = {
    "integer": "int",
    "string": "string",
    "datetime": "object",
    "boolean": "bool",
    "object": "object",
}


def test_served_task_fields_are_documented_with_matching_types(portal: Sandbox) -> None:
    documented = {f["name"]: f["type"] for f in catalogue("task-fields-rest-v3.json")["objects"]["taskdto"]}
    served = call(portal, "tasks.task.field.list", {"select": ["name", "type"]}, version=3)["result"]["items"]
    wrong = {}
    for item in served:
        doc_type = documented.get(item["name"])
        expected = "array" if doc_type and doc_type.startswith("array") else _PHP_WORD.get(doc_type or "")
        if item["type"] != expected:
            wrong[item["name"]] = (doc_type, item["type"])
    assert wrong == {}


def test_communication_flags_follow_the_items_communications(portal: Sandbox) -> None:
    rows = call(portal, "crm.item.list", {"entityTypeId": 3, "select": ["*"]})["result"]["items"]
    for row in rows:
        kinds = {fm["typeId"] for fm in row["fm"]}
        assert (row["hasPhone"], row["hasEmail"], row["hasImol"]) == tuple(
            "Y" if kind in kinds else "N" for kind in ("PHONE", "EMAIL", "IM")
        )
    fields = {"name": "Flag", "fm": [{"typeId": "EMAIL", "valueType": "WORK", "value": "a@example.com"}]}
    added = call(portal, "crm.item.add", {"entityTypeId": 3, "fields": fields})["result"]["item"]
    assert (added["hasPhone"], added["hasEmail"]) == ("N", "Y")


def test_an_unknown_catalogue_is_refused() -> None:
    with pytest.raises(ValueError, match="catalogue"):
        Sandbox(catalogue="sandbox")
