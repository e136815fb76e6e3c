"""The one field model: parsing every field-list shape, type kinds, documented types (no I/O)."""

from __future__ import annotations

from bitrix24_source.fields import (
    TASK_V3_DOCUMENTED,
    FieldMeta,
    kind_of,
    parse_crm_item_fields,
    parse_field_map,
    parse_task_fields,
    with_documented_types,
)

# The captured answer of tasks.task.field.list (api-reference/tasks/tasks-task-field-list.md): PHP property
# types, "object" for the DateTime `created` as for the user object `creator`.
DOCUMENTED_FIELD_LIST = {
    "items": [
        {"name": "id", "type": "int", "title": "ID", "filterable": True, "sortable": True, "multiple": False},
        {"name": "title", "type": "string", "title": "Title", "filterable": True, "multiple": False},
        {"name": "creator", "type": "object", "title": "Creator", "filterable": False, "multiple": False},
        {"name": "created", "type": "object", "title": "Created", "filterable": True, "multiple": False},
        {"name": "inMute", "type": "array", "title": "In mute", "filterable": False, "multiple": False},
        {"name": "someNewField", "type": "object", "title": "?", "filterable": False, "multiple": False},
    ]
}


def test_a_documented_datetime_that_the_field_list_calls_object_is_a_datetime() -> None:
    fields = with_documented_types(parse_field_map(DOCUMENTED_FIELD_LIST), TASK_V3_DOCUMENTED)
    assert kind_of(fields["created"]) == "datetime"
    assert kind_of(fields["creator"]) == "json"
    assert kind_of(fields["id"]) == "int"
    assert kind_of(fields["title"]) == "text"
    assert kind_of(fields["inMute"]) == "json"


def test_a_field_the_documentation_does_not_list_keeps_the_portals_word() -> None:
    fields = with_documented_types(parse_field_map(DOCUMENTED_FIELD_LIST), TASK_V3_DOCUMENTED)
    assert fields["someNewField"].type == "object"


def test_a_specific_type_word_from_the_portal_is_kept() -> None:
    fields = {
        "created": FieldMeta(name="created", type="datetime"),
        "id": FieldMeta(name="id", type="integer"),
    }
    assert with_documented_types(fields, {"created": "string", "id": "string"}) == fields


def test_every_documented_datetime_of_a_task_is_typed_as_one() -> None:
    payload = {"items": [{"name": name, "type": "object"} for name in TASK_V3_DOCUMENTED]}
    fields = with_documented_types(parse_field_map(payload), TASK_V3_DOCUMENTED)
    datetimes = {name for name, meta in fields.items() if kind_of(meta) == "datetime"}
    assert datetimes == {
        "created",
        "deadline",
        "startPlan",
        "endPlan",
        "statusChanged",
        "started",
        "changed",
    } | {
        "closed",
        "activity",
        "maxDeadlineChangeDate",
    }


def test_crm_item_fields_keep_flags_statuses_and_enumeration_items() -> None:
    fields = parse_crm_item_fields(
        {
            "fields": {
                "id": {"type": "integer", "isReadOnly": True, "title": "ID"},
                "categoryId": {"type": "crm_category", "isImmutable": True},
                "stageId": {"type": "crm_status", "statusType": "DEAL_STAGE", "upperName": "STAGE_ID"},
                "ufCrm_1": {
                    "type": "enumeration",
                    "isMultiple": True,
                    "items": [{"ID": "41", "VALUE": "Gold"}],
                },
                "ufCrm_2": {"type": "enumeration", "items": []},
            }
        }
    )
    assert fields.fields["id"].read_only and fields.fields["categoryId"].immutable
    assert fields.resolve("STAGE_ID") == "stageId" and fields.fields["stageId"].status_type == "DEAL_STAGE"
    assert fields.fields["ufCrm_1"].multiple and fields.fields["ufCrm_1"].enum_values == {"41": "Gold"}
    assert fields.fields["ufCrm_2"].enum_values is None  # an empty list names no allowed values


def test_task_get_fields_mark_portal_set_fields_read_only_and_enum_values() -> None:
    fields = parse_task_fields(
        {
            "fields": {
                "ID": {"type": "integer", "primary": True},
                "CREATED_BY": {"type": "integer", "required": True},
                "PRIORITY": {"type": "enum", "values": {"0": "Low", "2": "High"}},
                "ACCOMPLICES": {"type": "array"},
                "CHANGED_DATE": {"type": "datetime"},
            }
        }
    )
    assert fields.fields["ID"].read_only and fields.fields["CHANGED_DATE"].read_only
    assert fields.required == []  # CREATED_BY defaults to the calling user
    assert fields.fields["PRIORITY"].enum_values == {"0": "Low", "2": "High"}
    assert fields.fields["ACCOMPLICES"].multiple
