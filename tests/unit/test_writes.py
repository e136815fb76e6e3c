"""Pure tests of the destination's planning: row -> command, validation, markers, result rows."""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from bitrix24_source.writes import (
    DUPLICATE_KEY,
    IMMUTABLE_FIELD,
    INVALID_ENUM_VALUE,
    INVALID_ID,
    INVALID_TYPE,
    NOTHING_TO_UPDATE,
    READ_ONLY_FIELD,
    REQUIRED_FIELD_MISSING,
    UNKNOWN_FIELD,
    EntityFields,
    Outcome,
    PlanOptions,
    added_id,
    error_row,
    mark_duplicate_keys,
    parse_crm_item_fields,
    parse_task_fields,
    plan_row,
    plan_row_record,
    result_row,
    write_target,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "real-responses"


def _field(type_: str, upper: str, **flags: Any) -> dict[str, Any]:
    spec = {
        "type": type_,
        "isRequired": False,
        "isReadOnly": False,
        "isImmutable": False,
        "isMultiple": False,
        "isDynamic": False,
        "title": upper.title(),
        "upperName": upper,
    }
    spec.update(flags)
    return spec


# Shaped like crm.item.fields (DOCS api-reference/crm/universal/crm-item-fields.md, user-fields example).
DEAL_FIELDS = {
    "fields": {
        "id": _field("integer", "ID", isReadOnly=True),
        "title": _field("string", "TITLE", isRequired=True),
        "stageId": _field("crm_status", "STAGE_ID", statusType="DEAL_STAGE"),
        "categoryId": _field("crm_category", "CATEGORY_ID", isImmutable=True),
        "opportunity": _field("double", "OPPORTUNITY"),
        "opened": _field("boolean", "OPENED"),
        "closedate": _field("date", "CLOSEDATE"),
        "createdBy": _field("user", "CREATED_BY_ID", isReadOnly=True),
        "createdTime": _field("datetime", "DATE_CREATE", isReadOnly=True),
        "comments": _field("text", "COMMENTS"),
        "xmlId": _field("string", "XML_ID"),
        "originId": _field("string", "ORIGIN_ID"),
        "contactIds": _field("crm_contact", "CONTACT_IDS", isMultiple=True),
        "ufCrm_1721244707107": _field(
            "enumeration",
            "UF_CRM_1721244707107",
            isDynamic=True,
            items=[{"ID": "79", "VALUE": "Retail"}, {"ID": "80", "VALUE": "Wholesale"}],
        ),
        "ufCrm_1721244707108": _field("datetime", "UF_CRM_1721244707108", isDynamic=True),
    }
}

DEALS = write_target("deals")
FIELDS = parse_crm_item_fields(DEAL_FIELDS)
OPTS = PlanOptions(marker_prefix="b24w:L1:F1")


def _plan(row: dict[str, Any], n: int = 0, options: PlanOptions = OPTS, fields: EntityFields = FIELDS) -> Any:
    return plan_row(row, n, DEALS, fields, options)


@pytest.mark.parametrize(
    ("column", "canonical"),
    [
        ("title", "title"),
        ("TITLE", "title"),
        ("stageId", "stageId"),
        ("STAGE_ID", "stageId"),
        ("stage_id", "stageId"),
        ("UF_CRM_1721244707107", "ufCrm_1721244707107"),
        ("ufCrm_1721244707107", "ufCrm_1721244707107"),
        ("CREATED_BY_ID", "createdBy"),
        ("DATE_CREATE", "createdTime"),
        ("CONTACT_IDS", "contactIds"),
        ("no_such_field", None),
    ],
)
def test_column_spellings_resolve_to_the_crm_item_name(column: str, canonical: str | None) -> None:
    assert FIELDS.resolve(column) == canonical


def test_classic_mapping_works_without_upper_names() -> None:
    stripped = {"fields": {k: {**v, "upperName": None} for k, v in DEAL_FIELDS["fields"].items()}}
    fields = parse_crm_item_fields(stripped)
    assert fields.resolve("STAGE_ID") == "stageId"
    assert fields.resolve("DATE_CREATE") == "createdTime"  # §7.3 irregular name
    assert fields.resolve("UF_CRM_1721244707107") == "ufCrm_1721244707107"


def test_update_sends_only_the_present_columns() -> None:
    p = _plan({"id": 7, "TITLE": "New", "stageId": None, "opportunity": math.nan, "STAGE_ID": "WON"})
    assert p.is_valid and p.operation == "update" and p.bitrix_id == 7
    assert p.method == "crm.item.update"
    assert p.params == {"entityTypeId": 2, "id": 7, "fields": {"title": "New", "stageId": "WON"}}
    assert p.marker is None and p.key == "7"


def test_add_stamps_a_deterministic_marker_and_checks_required_fields() -> None:
    p = _plan({"title": "Fresh", "opportunity": "12.5"}, n=41)
    assert p.operation == "add" and p.method == "crm.item.add"
    assert p.params == {
        "entityTypeId": 2,
        "fields": {"title": "Fresh", "opportunity": 12.5, "xmlId": "b24w:L1:F1:41"},
    }
    assert p.marker == "b24w:L1:F1:41" and p.marker_field == "xmlId"
    assert _plan({"title": "Fresh", "opportunity": "12.5"}, n=41) == p

    missing = _plan({"opportunity": 3})
    assert missing.error_code == REQUIRED_FIELD_MISSING and "'title'" in (missing.error_description or "")


def test_user_supplied_marker_is_kept() -> None:
    p = _plan({"title": "A", "XML_ID": "ext-1"})
    assert p.marker == "ext-1" and p.params is not None and p.params["fields"]["xmlId"] == "ext-1"


def test_delete_needs_an_id() -> None:
    p = _plan({"id": "12", "_delete": True, "title": "ignored"})
    assert p.operation == "delete" and p.params == {"entityTypeId": 2, "id": 12}
    bad = _plan({"title": "x", "_delete": "Y"})
    assert bad.error_code == INVALID_ID and bad.operation == "delete"
    assert _plan({"id": 3, "_delete": False, "title": "t"}).operation == "update"


@pytest.mark.parametrize(
    ("row", "code", "field_name"),
    [
        ({"id": 1, "bogus": 1}, UNKNOWN_FIELD, "bogus"),
        ({"id": 1, "createdBy": 5}, READ_ONLY_FIELD, "createdBy"),
        ({"id": 1, "DATE_CREATE": "2024-01-01"}, READ_ONLY_FIELD, "DATE_CREATE"),
        ({"id": 1, "categoryId": 1}, IMMUTABLE_FIELD, "categoryId"),
        ({"id": 1, "opportunity": "lots"}, INVALID_TYPE, "opportunity"),
        ({"id": 1, "opened": "maybe"}, INVALID_TYPE, "opened"),
        ({"id": 1, "closedate": "31/12/2024"}, INVALID_TYPE, "closedate"),
        ({"id": 1, "title": {"a": 1}}, INVALID_TYPE, "title"),
        ({"id": 1, "UF_CRM_1721244707107": "Unknown"}, INVALID_ENUM_VALUE, "ufCrm_1721244707107"),
        ({"id": "abc", "title": "x"}, INVALID_ID, "id"),
        ({"id": -4, "title": "x"}, INVALID_ID, "id"),
        ({"id": 4}, NOTHING_TO_UPDATE, None),
    ],
)
def test_invalid_rows_name_the_field(row: dict[str, Any], code: str, field_name: str | None) -> None:
    p = _plan(row)
    assert not p.is_valid and p.method is None
    assert p.error_code == code
    if field_name:
        assert repr(field_name) in (p.error_description or "")


def test_all_problems_of_a_row_are_reported() -> None:
    p = _plan({"id": 1, "bogus": 1, "createdBy": 2})
    assert p.error_code == UNKNOWN_FIELD
    assert "'bogus'" in (p.error_description or "") and "'createdBy'" in (p.error_description or "")


def test_values_are_coerced_per_type() -> None:
    p = _plan(
        {
            "id": 9,
            "opened": True,
            "closedate": datetime(2025, 3, 1, 10, 0),
            "ufCrm_1721244707108": datetime(2025, 3, 1, 10, 0),
            "UF_CRM_1721244707107": "Wholesale",
            "contactIds": "[3, 4]",
            "opportunity": 10,
        }
    )
    assert p.is_valid, p.error_description
    assert p.params is not None
    assert p.params["fields"] == {
        "opened": "Y",
        "closedate": "2025-03-01",
        "ufCrm_1721244707108": "2025-03-01T10:00:00+00:00",
        "ufCrm_1721244707107": "80",
        "contactIds": [3, 4],
        "opportunity": 10,
    }
    assert _plan({"id": 9, "opened": 0, "closedate": date(2024, 1, 2)}).params == {
        "entityTypeId": 2,
        "id": 9,
        "fields": {"opened": "N", "closedate": "2024-01-02"},
    }


def test_values_that_look_like_protocol_stay_literal() -> None:
    title = "$result[c0][items][0][id]"
    comments = '{"$ref": "c0.item.id"}'
    p = _plan({"id": 5, "title": title, "comments": comments})
    assert p.params is not None and p.params["fields"] == {"title": title, "comments": comments}


def test_upsert_by_key_becomes_update_when_found_and_add_otherwise() -> None:
    options = PlanOptions(key="ORIGIN_ID", resolved_ids={"ext-7": 70}, marker_prefix="b24w:L:F")
    found = _plan({"ORIGIN_ID": "ext-7", "title": "T"}, options=options)
    assert found.operation == "update" and found.bitrix_id == 70 and found.key == "ext-7"
    assert found.params == {"entityTypeId": 2, "id": 70, "fields": {"originId": "ext-7", "title": "T"}}
    new = _plan({"originId": "ext-8", "title": "T"}, options=options)
    assert new.operation == "add" and new.marker == "ext-8" and new.marker_field == "originId"
    assert new.params is not None and "xmlId" not in new.params["fields"]


def test_duplicate_keys_in_one_chunk_are_rejected_after_the_first() -> None:
    options = PlanOptions(key="originId", marker_prefix="p")
    rows = [_plan({"originId": "k", "title": str(i)}, n=i, options=options) for i in range(3)]
    checked = mark_duplicate_keys(rows)
    assert [r.error_code for r in checked] == [None, DUPLICATE_KEY, DUPLICATE_KEY]


def test_tasks_use_v2_upper_case_fields() -> None:
    fields = parse_task_fields(
        {
            "fields": {
                "ID": {"title": "ID", "type": "integer", "primary": True},
                "TITLE": {"title": "Name", "type": "string", "required": True},
                "RESPONSIBLE_ID": {"title": "Assignee", "type": "integer", "required": True},
                "PRIORITY": {
                    "title": "Priority",
                    "type": "enum",
                    "values": {"2": "High", "1": "Normal", "0": "Low"},
                },
                "XML_ID": {"title": "External", "type": "string"},
                "CREATED_DATE": {"title": "Created", "type": "datetime"},
            }
        }
    )
    tasks = write_target("tasks")
    add = plan_row({"title": "Call", "responsibleId": 3, "PRIORITY": "High"}, 2, tasks, fields, OPTS)
    assert add.method == "tasks.task.add"
    assert add.params == {
        "fields": {"TITLE": "Call", "RESPONSIBLE_ID": 3, "PRIORITY": "2", "XML_ID": "b24w:L1:F1:2"}
    }
    upd = plan_row({"ID": 5, "PRIORITY": 0}, 0, tasks, fields, OPTS)
    assert upd.params == {"taskId": 5, "fields": {"PRIORITY": 0}}
    assert plan_row({"ID": 5, "CREATED_DATE": "x"}, 0, tasks, fields, OPTS).error_code == READ_ONLY_FIELD
    assert plan_row({"ID": 5, "PRIORITY": 7}, 0, tasks, fields, OPTS).error_code == INVALID_ENUM_VALUE
    assert plan_row({"ID": 5, "_delete": 1}, 0, tasks, fields, OPTS).params == {"taskId": 5}


def test_unknown_entity_is_refused_with_the_allowed_names() -> None:
    with pytest.raises(ValueError, match="deals"):
        write_target("invoices")


def test_recorded_classic_field_metadata_parses() -> None:
    recorded = json.loads((FIXTURES / "crm_lead_fields_success.json").read_text())["response"]["result"]
    fields = parse_crm_item_fields(recorded)
    assert fields.fields["TITLE"].required and fields.fields["ID"].read_only
    assert fields.resolve("title") == "TITLE"


def test_added_ids_from_recorded_responses() -> None:
    item_add = json.loads((FIXTURES / "crm_item_add.json").read_text())["response"]["result"]["result"]
    assert added_id("crm.item.add", item_add["order0000000000"]) == 247
    task_add = json.loads((FIXTURES / "single_add.json").read_text())["response"]["result"]
    assert added_id("tasks.task.add", task_add) == 456
    contact = json.loads((FIXTURES / "crm_contact_add_batch.json").read_text())["response"]["result"][
        "result"
    ]
    assert added_id("crm.contact.add", contact["order0000000000"]) == 58943
    assert added_id("crm.item.add", True) is None


def test_result_error_and_plan_rows() -> None:
    when = datetime(2025, 1, 1, tzinfo=timezone.utc)
    bad = _plan({"id": 1, "bogus": 2}, n=3)
    result = result_row(
        bad,
        Outcome("error", None, bad.error_code, bad.error_description),
        load_id="L",
        table="deals",
        job_id="F",
        written_at=when,
    )
    assert result["status"] == "error" and result["row_number"] == 3 and result["error_code"] == UNKNOWN_FIELD
    err = error_row(result, bad)
    assert json.loads(err["row_json"]) == {"id": 1, "bogus": 2}
    good = _plan({"title": "x"}, n=4)
    ok = result_row(good, Outcome("ok", 99), load_id="L", table="deals", job_id="F", written_at=when)
    assert ok["bitrix_id"] == 99 and ok["operation"] == "add" and ok["key"] == "b24w:L1:F1:4"
    plan = plan_row_record(good, load_id="L", table="deals", job_id="F")
    assert plan["method"] == "crm.item.add" and json.loads(plan["params_json"])["fields"]["title"] == "x"
