"""`enum_labels=True`: label columns for enumeration custom fields, built without any I/O."""

from __future__ import annotations

from bitrix24_source.fields import parse_field_map
from bitrix24_source.source.items import EnumLabels
from bitrix24_source.source.schema import column_hints
from bitrix24_source.source.settings import SMART_PROCESSES, is_spa_name

# crm.item.fields entries in the documented shape (DOCS api-reference/crm/universal/crm-item-fields.md)
FIELDS = parse_field_map(
    {
        "fields": {
            "id": {"type": "integer", "title": "ID"},
            "ufCrm5_1": {
                "type": "enumeration",
                "title": "Priority",
                "isMultiple": False,
                "items": [{"ID": "11", "VALUE": "High"}, {"ID": "12", "VALUE": "Low"}],
            },
            "ufCrm5_2": {
                "type": "enumeration",
                "title": "Channels",
                "isMultiple": True,
                "items": [{"ID": "21", "VALUE": "Mail"}, {"ID": "22", "VALUE": "Phone"}],
            },
            "sourceId": {"type": "crm_status", "title": "Source", "statusType": "SOURCE"},
            "ufCrm5_3": {"type": "enumeration", "title": "Empty list", "items": []},
        }
    }
)


def test_labels_sit_next_to_their_field_and_are_typed() -> None:
    labels = EnumLabels(True)
    fields = labels.fields(FIELDS)
    assert list(fields) == [
        "id",
        "ufCrm5_1",
        "ufCrm5_1_label",
        "ufCrm5_2",
        "ufCrm5_2_label",
        "sourceId",
        "ufCrm5_3",
    ]
    hints = column_hints(fields)
    assert hints["ufCrm5_1_label"]["data_type"] == "text"
    assert hints["ufCrm5_2_label"]["data_type"] == "json"
    rows = labels.rows(
        [
            {"id": 1, "ufCrm5_1": 11, "ufCrm5_2": [22, 21], "sourceId": "WEB"},
            {"id": 2, "ufCrm5_1": None, "ufCrm5_2": [], "sourceId": None},
            {"id": 3, "ufCrm5_1": "99", "ufCrm5_2": [21, 99]},
        ]
    )
    assert list(rows[0]) == ["id", "ufCrm5_1", "ufCrm5_1_label", "ufCrm5_2", "ufCrm5_2_label", "sourceId"]
    assert (rows[0]["ufCrm5_1_label"], rows[0]["ufCrm5_2_label"]) == ("High", ["Phone", "Mail"])
    assert (rows[1]["ufCrm5_1_label"], rows[1]["ufCrm5_2_label"]) == (None, None)
    # an id the field list does not know has no label
    assert (rows[2]["ufCrm5_1_label"], rows[2]["ufCrm5_2_label"]) == (None, ["Mail", None])


def test_without_the_option_nothing_changes() -> None:
    labels = EnumLabels(False)
    assert labels.fields(FIELDS) == FIELDS
    rows = [{"id": 1, "ufCrm5_1": 11}]
    assert labels.rows(rows) == [{"id": 1, "ufCrm5_1": 11}]


def test_smart_process_names() -> None:
    assert is_spa_name("spa_128") and is_spa_name("spa_1036")
    assert not is_spa_name("spa_types") and not is_spa_name(SMART_PROCESSES) and not is_spa_name("spa_")
