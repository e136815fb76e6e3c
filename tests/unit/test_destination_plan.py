"""Pure tests of the destination's planning: row -> command, validation, markers, result rows."""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitrix24_source.destination.coerce import INVALID_ENUM_VALUE, INVALID_TYPE
from bitrix24_source.destination.directories import needed_directories, parse_directory
from bitrix24_source.destination.plan import (
    CONFLICTING_COLUMNS,
    DUPLICATE_IN_INPUT,
    DUPLICATE_KEY_ON_PORTAL,
    IMMUTABLE_FIELD,
    INVALID_ID,
    INVALID_VALUE,
    NOTHING_TO_ADD,
    NOTHING_TO_UPDATE,
    READ_ONLY_FIELD,
    REQUIRED_FIELD_MISSING,
    UNKNOWN_FIELD,
    Outcome,
    PlanOptions,
    add_marker,
    holds_values,
    key_value,
    mark_duplicates,
    normalise_key,
    plan_row,
    plan_rows,
)
from bitrix24_source.destination.results import error_row, plan_row_record, result_row
from bitrix24_source.destination.targets import added_id, write_target
from bitrix24_source.fields import EntityFields, parse_crm_item_fields, parse_task_fields

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
        "originatorId": _field("string", "ORIGINATOR_ID"),
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
OPTS = PlanOptions()
NOTHING_HELD = lambda field_name, values: {}  # noqa: E731  a portal that holds no key or marker


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
    p = plan_rows({41: {"title": "Fresh", "opportunity": "12.5"}}, DEALS, FIELDS, OPTS, NOTHING_HELD)[0]
    assert p.operation == "add" and p.method == "crm.item.add"
    marker = add_marker("deals", '{"opportunity":12.5,"title":"Fresh"}', 1)
    assert marker.startswith("b24dlt:") and len(marker) == len("b24dlt:") + 32
    assert p.params == {
        "entityTypeId": 2,
        "fields": {"title": "Fresh", "opportunity": 12.5, "originId": marker, "originatorId": "bitrix24-dlt"},
    }
    assert p.marker == marker and p.marker_field == "originId" and p.key == marker
    again = plan_rows({0: {"opportunity": 12.5, "TITLE": "Fresh"}}, DEALS, FIELDS, OPTS, NOTHING_HELD)[0]
    assert again.marker == marker  # same entity, same planned values: a re-run derives the same marker

    missing = _plan({"opportunity": 3})
    assert missing.error_code == REQUIRED_FIELD_MISSING and "'title'" in (missing.error_description or "")


def test_identical_rows_are_distinct_adds_numbered_by_occurrence() -> None:
    rows = {0: {"title": "Twin"}, 1: {"title": "Other"}, 2: {"title": "Twin"}}
    planned = plan_rows(rows, DEALS, FIELDS, OPTS, NOTHING_HELD)
    assert [p.error_code for p in planned] == [None, None, None]
    assert planned[0].marker == add_marker("deals", '{"title":"Twin"}', 1)
    assert planned[2].marker == add_marker("deals", '{"title":"Twin"}', 2)
    salted = plan_rows(rows, DEALS, FIELDS, PlanOptions(allow_duplicates=True, salt="L9"), NOTHING_HELD)
    assert salted[0].marker == add_marker("deals", '{"title":"Twin"}', 1, "L9") != planned[0].marker


def test_user_supplied_marker_is_kept() -> None:
    p = _plan({"title": "A", "ORIGIN_ID": "ext-1"})
    assert p.marker == "ext-1" and p.params is not None and p.params["fields"]["originId"] == "ext-1"
    widened = _plan({"title": "A", "originId": 1001.0})
    assert widened.marker == "1001" and widened.params is not None
    assert widened.params["fields"]["originId"] == "1001"


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
        ({"title": None, "opportunity": math.nan}, NOTHING_TO_ADD, None),
        ({}, NOTHING_TO_ADD, None),
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
    options = PlanOptions(key="ORIGIN_ID", resolved_ids={"ext-7": 70})
    found = _plan({"ORIGIN_ID": "ext-7", "title": "T"}, options=options)
    assert found.operation == "update" and found.bitrix_id == 70 and found.key == "ext-7"
    assert found.params == {"entityTypeId": 2, "id": 70, "fields": {"originId": "ext-7", "title": "T"}}
    new = _plan({"originId": "ext-8", "title": "T"}, options=options)
    assert new.operation == "add" and new.marker == "ext-8" and new.marker_field == "originId"
    assert new.params is not None and new.params["fields"]["originId"] == "ext-8"


def test_upsert_key_matching_several_records_is_rejected() -> None:
    ids = [11, 12, 13, 14, 15, 16]
    options = PlanOptions(key="originId", ambiguous_keys={"k": ids})
    p = _plan({"originId": "k", "title": "T"}, options=options)
    assert p.error_code == DUPLICATE_KEY_ON_PORTAL and p.method is None
    assert "ids 11, 12, 13, 14, 15, ..." in (p.error_description or "")
    assert _plan({"id": 11, "originId": "k", "title": "T"}, options=options).is_valid  # an id decides


def test_integral_float_keys_are_looked_up_as_integers() -> None:
    fields = parse_crm_item_fields(
        {"fields": {**DEAL_FIELDS["fields"], "ufCrm_9": _field("integer", "UF_CRM_9")}}
    )
    assert key_value({"UF_CRM_9": 123.0}, "ufCrm_9", fields) == "123"
    assert key_value({"ufCrm_9": 1.5}, "ufCrm_9", fields) == "1.5"
    assert key_value({"ufCrm_9": math.nan}, "ufCrm_9", fields) is None


def test_a_repeated_key_or_id_is_a_duplicate_naming_the_first_row() -> None:
    options = PlanOptions(key="originId")
    rows = [_plan({"originId": "k", "title": str(i)}, n=i, options=options) for i in range(3)]
    checked = mark_duplicates(rows)
    assert [r.error_code for r in checked] == [None, DUPLICATE_IN_INPUT, DUPLICATE_IN_INPUT]
    assert "first in row 0" in (checked[2].error_description or "")
    ids = plan_rows(
        {0: {"id": 7, "title": "a"}, 1: {"id": 8, "title": "b"}, 2: {"id": 7.0, "title": "c"}},
        DEALS,
        FIELDS,
        OPTS,
        NOTHING_HELD,
        indexes={0: "r0", 1: "r1", 2: "r2"},
    )
    assert [p.error_code for p in ids] == [None, None, DUPLICATE_IN_INPUT]
    assert "id 7" in (ids[2].error_description or "") and "row 0 (index 'r0')" in (
        ids[2].error_description or ""
    )


def test_two_spellings_with_different_values_conflict() -> None:
    both = _plan({"id": 5, "ID": 6, "title": "x"})
    assert both.error_code == CONFLICTING_COLUMNS and "'id' and 'ID'" in (both.error_description or "")
    assert _plan({"id": 5, "ID": 5.0, "title": "x"}).is_valid
    fields = _plan({"id": 5, "stageId": "WON", "STAGE_ID": "NEW"})
    assert fields.error_code == CONFLICTING_COLUMNS and "'stageId'" in (fields.error_description or "")
    assert _plan({"id": 5, "stageId": "WON", "STAGE_ID": "WON"}).is_valid


@pytest.mark.parametrize("value", [1001, 1001.0, "1001", "1001.0", "Decimal", "numpy"])
def test_keys_are_values_not_spellings(value: Any) -> None:
    import decimal

    import numpy

    if value == "Decimal":
        value = decimal.Decimal("1001")
    elif value == "numpy":
        value = numpy.int64(1001)
    assert normalise_key(value) == "1001"
    assert key_value({"ORIGIN_ID": value}, "originId", FIELDS) == "1001"
    p = _plan({"originId": value, "title": "t"}, options=PlanOptions(key="originId"))
    assert p.marker == "1001" and p.params is not None and p.params["fields"]["originId"] == "1001"


def test_keys_that_are_not_integers_keep_their_text() -> None:
    assert [normalise_key(v) for v in ("007", "1e3", "ab", 1.5, " 12")] == ["007", "1e3", "ab", "1.5", " 12"]


def test_tasks_use_v2_upper_case_fields() -> None:
    fields = parse_task_fields(
        {
            "fields": {
                "ID": {"title": "ID", "type": "integer", "primary": True},
                "TITLE": {"title": "Name", "type": "string", "required": True},
                "RESPONSIBLE_ID": {"title": "Assignee", "type": "integer", "required": True},
                "CREATED_BY": {"title": "Creator", "type": "integer", "required": True},
                "PRIORITY": {
                    "title": "Priority",
                    "type": "enum",
                    "values": {"2": "High", "1": "Normal", "0": "Low"},
                },
                "STATUS": {
                    "title": "Status",
                    "type": "enum",
                    "values": {
                        "2": "Pending",
                        "3": "In progress",
                        "4": "Supposedly completed",
                        "5": "Completed",
                    },
                },
                "XML_ID": {"title": "External", "type": "string"},
                "CREATED_DATE": {"title": "Created", "type": "datetime"},
            }
        }
    )
    tasks = write_target("tasks")
    # The words the source writes (v3 task fields) are accepted back as their v2 codes.
    words = plan_row({"ID": 5, "status": "completed", "priority": "high"}, 0, tasks, fields, OPTS)
    assert words.params == {"taskId": 5, "fields": {"STATUS": "5", "PRIORITY": "2"}}
    assert plan_row({"ID": 5, "STATUS": "declined"}, 0, tasks, fields, OPTS).error_code == INVALID_ENUM_VALUE
    add = plan_rows(
        {2: {"title": "Call", "responsibleId": 3, "PRIORITY": "High"}}, tasks, fields, OPTS, NOTHING_HELD
    )[0]
    assert add.method == "tasks.task.add" and add.is_valid  # CREATED_BY defaults to the calling user
    missing = plan_row({"title": "Call"}, 3, tasks, fields, OPTS)
    assert missing.error_code == REQUIRED_FIELD_MISSING and "RESPONSIBLE_ID" in (
        missing.error_description or ""
    )
    assert "CREATED_BY" not in (missing.error_description or "")
    assert add.params == {
        "fields": {"TITLE": "Call", "RESPONSIBLE_ID": 3, "PRIORITY": "2", "XML_ID": add.marker}
    }
    upd = plan_row({"ID": 5, "PRIORITY": 0}, 0, tasks, fields, OPTS)
    assert upd.params == {"taskId": 5, "fields": {"PRIORITY": 0}}
    assert plan_row({"ID": 5, "CREATED_DATE": "x"}, 0, tasks, fields, OPTS).error_code == READ_ONLY_FIELD
    assert plan_row({"ID": 5, "PRIORITY": 7}, 0, tasks, fields, OPTS).error_code == INVALID_ENUM_VALUE
    assert plan_row({"ID": 5, "_delete": 1}, 0, tasks, fields, OPTS).params == {"taskId": 5}


def test_unknown_entity_is_refused_with_the_allowed_names() -> None:
    with pytest.raises(ValueError, match="deals"):
        write_target("orders")
    # crm-type-add.md: a smart process's entityTypeId is 128-192 or an even number from 1030 on.
    with pytest.raises(ValueError, match="128-192"):
        write_target("spa_1031")
    assert (
        write_target("spa_1036").entity_type_id == 1036 and write_target("spa_1036").marker_field == "xmlId"
    )
    assert write_target("invoices").entity_type_id == 31 and write_target("quotes").marker_field is None


def test_recorded_classic_field_metadata_parses() -> None:
    recorded = json.loads((FIXTURES / "crm_lead_fields_success.json").read_text())["response"]["result"]
    fields = parse_crm_item_fields(recorded)
    assert fields.fields["TITLE"].required and fields.fields["ID"].read_only
    assert fields.resolve("title") == "TITLE"
    assert fields.fields["STATUS_ID"].status_type == "STATUS"
    assert fields.fields["SOURCE_ID"].status_type == "SOURCE"
    assert fields.fields["TITLE"].status_type is None


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
    assert json.loads(err["row_json"]) == {"id": 1, "bogus": 2} and err["field"] == "bogus"
    assert _plan({"id": 1, "OPPORTUNITY": "lots"}).error_field == "OPPORTUNITY"
    assert _plan({"id": 1, "stageId": "WON", "STAGE_ID": "NEW"}).error_field == "STAGE_ID"
    assert _plan({"opportunity": 3}).error_field == "title"
    good = plan_rows({4: {"title": "x"}}, DEALS, FIELDS, OPTS, NOTHING_HELD)[0]
    ok = result_row(good, Outcome("ok", 99), load_id="L", table="deals", job_id="F", written_at=when)
    assert ok["bitrix_id"] == 99 and ok["operation"] == "add" and ok["key"] == good.marker
    assert str(ok["key"]).startswith("b24dlt:")
    plan = plan_row_record(good, load_id="L", table="deals", job_id="F")
    assert plan["method"] == "crm.item.add" and json.loads(plan["params_json"])["fields"]["title"] == "x"


# crm.status.list results (DOCS api-reference/crm/status/crm-status-list.md): ENTITY_ID -> STATUS_ID -> NAME.
DIRECTORIES = {
    "DEAL_STAGE": {"NEW": "New", "EXECUTING": "In progress", "WON": "Deal won", "LOSE": "Deal lost"},
    "DEAL_STAGE_3": {"C3:NEW": "New", "C3:WON": "Deal won"},
    "DEAL_STAGE_9": {},  # crm.status.list answers [] for a pipeline the portal does not have
    "SOURCE": {f"SRC_{k}": f"Source {k}" for k in range(12)} | {"WEB": "Website", "DUP": "Twice"},
    "DEAL_TYPE": {"SALE": "Sales", "A": "Twice", "B": "Twice"},
}
DIR_FIELDS = parse_crm_item_fields(
    {
        "fields": {
            **DEAL_FIELDS["fields"],
            "categoryId": _field("crm_category", "CATEGORY_ID"),
            "sourceId": _field("crm_status", "SOURCE_ID", statusType="SOURCE"),
            "typeId": _field("crm_status", "TYPE_ID", statusType="DEAL_TYPE"),
        }
    }
)
DIR_OPTS = PlanOptions(directories=DIRECTORIES)


def _dir_plan(row: dict[str, Any]) -> Any:
    return plan_row(row, 0, DEALS, DIR_FIELDS, DIR_OPTS)


def test_directory_values_pass_and_names_become_ids() -> None:
    p = _dir_plan({"id": 5, "categoryId": 0, "stageId": "Deal won", "SOURCE_ID": "Website", "typeId": "SALE"})
    assert p.is_valid, p.error_description
    assert p.params["fields"] == {"categoryId": 0, "stageId": "WON", "sourceId": "WEB", "typeId": "SALE"}
    assert _dir_plan({"id": 5, "stageId": "C3:WON"}).is_valid  # the prefix names pipeline 3
    add = _dir_plan({"title": "t", "categoryId": 3, "stageId": "C3:NEW"})
    assert add.is_valid and add.params["fields"]["stageId"] == "C3:NEW"
    assert _dir_plan({"id": 5, "stageId": ""}).is_valid  # an empty string clears, it is not looked up


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            {"id": 5, "stageId": "C3:LOSE"},
            ["'stageId'", "'C3:LOSE' in pipeline 3", "C3:NEW (New), C3:WON (Deal won))"],
        ),
        ({"title": "t", "categoryId": 3, "stageId": "NEW"}, ["'NEW' in pipeline 3", "(allowed: C3:NEW"]),
        (
            {"title": "t", "stageId": "C3:NEW", "categoryId": 0},
            ["in pipeline 0", "NEW (New), EXECUTING (In progress), WON (Deal won), LOSE (Deal lost)"],
        ),
        ({"id": 5, "stageId": "C9:NEW"}, ["in pipeline 9", "allowed: none"]),
        ({"id": 5, "sourceId": "FAX"}, ["'sourceId'", "SRC_0 (Source 0), SRC_1 (Source 1)", "... (6 more)"]),
        ({"id": 5, "typeId": "Twice"}, ["'typeId'", "'Twice'"]),  # a name shared by two ids is ambiguous
    ],
)
def test_unknown_directory_values_are_rejected_with_a_few_allowed_values(
    row: dict[str, Any], expected: list[str]
) -> None:
    p = _dir_plan(row)
    assert p.error_code == INVALID_ENUM_VALUE and p.method is None
    for text in expected:
        assert text in (p.error_description or ""), p.error_description


def test_directory_not_read_is_left_to_the_portal() -> None:
    options = PlanOptions(directories={"SOURCE": DIRECTORIES["SOURCE"]})
    assert plan_row({"id": 5, "stageId": "ANYTHING"}, 0, DEALS, DIR_FIELDS, options).is_valid
    no_check = PlanOptions()
    assert plan_row({"id": 5, "sourceId": "FAX"}, 0, DEALS, DIR_FIELDS, no_check).is_valid


def test_needed_directories_follow_the_rows() -> None:
    rows: list[dict[str, Any]] = [
        {"id": 1, "title": "no directory field"},
        {"id": 2, "STAGE_ID": "C3:WON"},
        {"title": "t", "categoryId": "5", "stageId": "NEW"},
        {"id": 3, "stageId": "WON", "sourceId": None, "TYPE_ID": math.nan},
        {"id": 4, "SOURCE_ID": "WEB", "categoryId": "not a number", "stageId": "C4:NEW"},
    ]
    assert needed_directories(DIR_FIELDS, rows) == {
        "DEAL_STAGE",
        "DEAL_STAGE_3",
        "DEAL_STAGE_4",
        "DEAL_STAGE_5",
        "SOURCE",
    }
    assert needed_directories(DIR_FIELDS, rows[:1]) == set()


def test_parse_directory_keeps_the_portal_order() -> None:
    result = [
        {"ID": "7", "ENTITY_ID": "SOURCE", "STATUS_ID": "WEB", "NAME": "Website", "SORT": "10"},
        {"ID": "3", "ENTITY_ID": "SOURCE", "STATUS_ID": "CALL", "NAME": "Call", "SORT": "20"},
        {"ID": "9", "ENTITY_ID": "SOURCE", "NAME": "no status id"},
    ]
    assert list(parse_directory(result).items()) == [("WEB", "Website"), ("CALL", "Call")]
    assert parse_directory({"unexpected": "shape"}) == {}


_ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["inf", "-inf", "nan", "NaN", "Infinity", "1e400", "[1, 2]", "[]", "Y", "2025-13-40"]),
    st.dates(),
    st.datetimes(),
)


@settings(max_examples=300, deadline=None)
@given(
    column=st.sampled_from(sorted(DIR_FIELDS.fields)),
    value=st.one_of(_ANY_VALUE, st.lists(_ANY_VALUE, max_size=3)),
    adding=st.booleans(),
)
def test_any_value_in_any_field_is_planned_or_rejected_never_raised(
    column: str, value: Any, adding: bool
) -> None:
    row: dict[str, Any] = {column: value} if adding else {"id": 5, column: value}
    planned = _dir_plan(row)
    if planned.is_valid:
        # Whatever is sent must be plain JSON: no NaN or infinity slips through as "nan"/"inf".
        json.dumps(planned.params, allow_nan=False)
    else:
        assert planned.error_code and planned.error_description
        assert planned.error_code != INVALID_VALUE, planned.error_description  # every case here is foreseen


def test_an_unforeseen_failure_costs_only_its_row(monkeypatch: pytest.MonkeyPatch) -> None:
    import bitrix24_source.destination.plan as writes

    def explode(value: Any, meta: Any) -> Any:
        raise RuntimeError(f"cannot handle {meta.name}")

    monkeypatch.setattr(writes, "coerce_value", explode)
    p = writes.plan_row_or_reject({"id": 5, "title": "x"}, 4, DEALS, FIELDS, OPTS)
    assert p.error_code == INVALID_VALUE and "'title'" in (p.error_description or "")
    assert "RuntimeError: cannot handle title" in (p.error_description or "")

    def broken_plan(*args: Any) -> Any:
        raise KeyError("surprise")

    monkeypatch.setattr(writes, "plan_row", broken_plan)
    q = writes.plan_row_or_reject({"id": 5, "title": "x"}, 7, DEALS, FIELDS, OPTS)
    assert q.error_code == INVALID_VALUE and q.row_number == 7 and q.original == {"id": 5, "title": "x"}
    assert "row 7" in (q.error_description or "") and "KeyError" in (q.error_description or "")


def test_stage_name_without_category_is_not_guessed() -> None:
    # Stage names repeat across pipelines: without categoryId the row's pipeline is unknown.
    p = _dir_plan({"id": 5, "stageId": "Deal won"})
    assert not p.is_valid
    assert p.error_code == "INVALID_ENUM_VALUE"
    assert "categoryId" in p.error_description and "'stageId'" in p.error_description
    assert _dir_plan(
        {"id": 5, "stageId": "WON"}
    ).is_valid  # a stage id needs no pipeline: its prefix names it


class _PortalHolds:
    """A look-up against a fixed map of field -> value -> ids, recording every question it is asked."""

    def __init__(self, held: dict[str, dict[str, list[int]]]) -> None:
        self.held = held
        self.asked: list[tuple[str, list[str]]] = []

    def __call__(self, field_name: str, values: Any) -> dict[str, list[int]]:
        self.asked.append((field_name, list(values)))
        return {v: self.held.get(field_name, {})[v] for v in values if v in self.held.get(field_name, {})}


def test_an_input_is_planned_with_one_key_look_up_and_one_marker_look_up() -> None:
    portal = _PortalHolds({"originId": {"k1": [70], "k2": [71, 72], "k5": [75]}})
    rows = {
        0: {"originId": "k1", "title": "found once"},
        1: {"originId": "k2", "title": "found twice"},
        2: {"originId": "k3", "title": "new"},
        3: {"id": 5, "originId": "k4", "title": "has an id"},
        4: {"title": "no key"},
    }
    planned = plan_rows(rows, DEALS, FIELDS, PlanOptions(key="originId"), portal)
    assert [p.row_number for p in planned] == [0, 1, 2, 3, 4]
    assert (planned[0].operation, planned[0].bitrix_id) == ("update", 70)
    assert planned[1].error_code == DUPLICATE_KEY_ON_PORTAL
    assert planned[2].operation == "add" and planned[2].marker == "k3" and planned[2].keyed
    assert (planned[3].operation, planned[3].bitrix_id) == ("update", 5)
    assert planned[4].marker is not None and planned[4].marker.startswith("b24dlt:")
    # The key look-up covers the keyed adds; only the generated marker is asked for again.
    assert portal.asked == [("originId", ["k1", "k2", "k3"]), ("originId", [planned[4].marker])]


def test_markers_already_on_the_portal_are_already_applied() -> None:
    first = plan_rows(
        {0: {"title": "a"}, 1: {"title": "b", "originId": "own"}}, DEALS, FIELDS, OPTS, NOTHING_HELD
    )
    held = {"originId": {first[0].marker or "": [9], "own": [10, 11]}}
    portal = _PortalHolds(held)
    again = plan_rows({0: {"title": "a"}, 1: {"title": "b", "originId": "own"}}, DEALS, FIELDS, OPTS, portal)
    assert again[0].is_valid and again[0].existing_id == 9 and not again[0].to_send
    assert again[1].error_code == "DUPLICATE_MARKER_ON_PORTAL" and "9" not in (
        again[1].error_description or ""
    )
    on_purpose = plan_rows(
        {0: {"title": "a"}}, DEALS, FIELDS, PlanOptions(allow_duplicates=True, salt="L2"), portal
    )
    assert on_purpose[0].to_send and len(portal.asked) == 1  # no look-up when duplicates are wanted


def test_an_update_the_record_already_holds_is_already_applied() -> None:
    existing = {7: {"id": 7, "title": "Same", "opportunity": 150000.0, "contactIds": [3, 2], "categoryId": 0}}
    options = PlanOptions(existing=existing)
    rows = {
        0: {"id": 7, "TITLE": "Same", "opportunity": "150000"},
        1: {"id": 7.0, "contactIds": [2, 3]},
        2: {"id": 8, "title": "gone"},
    }
    planned = plan_rows({0: rows[0]}, DEALS, FIELDS, options, NOTHING_HELD)
    assert planned[0].existing_id == 7 and not planned[0].to_send
    assert plan_rows({1: rows[1]}, DEALS, FIELDS, options, NOTHING_HELD)[0].existing_id == 7
    changed = plan_rows({0: {"id": 7, "title": "Other"}}, DEALS, FIELDS, options, NOTHING_HELD)[0]
    assert changed.to_send
    missing = plan_rows({2: rows[2]}, DEALS, FIELDS, options, NOTHING_HELD)[0]
    assert missing.error_code == "NOT_FOUND" and missing.error_field == "id"


def test_values_compare_as_values() -> None:
    assert holds_values({"a": "5", "b": None, "c": [1, 2]}, {"a": 5, "b": "", "c": ["2", 1]})
    assert not holds_values({"a": "5"}, {"a": 6})
    assert not holds_values({}, {"a": 1})  # a field the record does not list: send it
    assert not holds_values({"d": "2025-01-01T00:00:00+03:00"}, {"d": "2025-01-01"})


def test_a_first_occurrence_that_failed_validation_still_makes_the_later_one_a_duplicate() -> None:
    # Otherwise row 1 is applied now, and row 0 after the user fixes it: one frame, two outcomes.
    planned = plan_rows(
        {0: {"id": 3, "opportunity": "12k"}, 1: {"id": "3", "opportunity": 9}, 2: {"id": 3.0, "title": "x"}},
        DEALS,
        FIELDS,
        OPTS,
        NOTHING_HELD,
    )
    assert [p.error_code for p in planned] == [INVALID_TYPE, DUPLICATE_IN_INPUT, DUPLICATE_IN_INPUT]
    assert all("first in row 0" in (p.error_description or "") for p in planned[1:])
    assert not any(p.to_send for p in planned)
