"""Pure tests of the write-safety checks: option fields, markers already on the portal, values as written."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

import pytest

from bitrix24_source.destination.plan import (
    DUPLICATE_MARKER_ON_PORTAL,
    INVALID_ID,
    Outcome,
    PlanOptions,
    key_value,
    mark_existing,
    plan_row,
    plan_row_or_reject,
    plan_rows,
)
from bitrix24_source.destination.results import error_row, result_row
from bitrix24_source.destination.targets import WriteOptionError, check_write_options, write_target
from bitrix24_source.fields import EntityFields, parse_crm_item_fields, parse_task_fields


def _field(type_: str, upper: str, **flags: Any) -> dict[str, Any]:
    return {
        "type": type_,
        "isRequired": False,
        "isReadOnly": False,
        "isImmutable": False,
        "isMultiple": False,
        "title": upper.title(),
        "upperName": upper,
        **flags,
    }


# Shaped like crm.item.fields (DOCS api-reference/crm/universal/crm-item-fields.md).
FIELDS = parse_crm_item_fields(
    {
        "fields": {
            "id": _field("integer", "ID", isReadOnly=True),
            "title": _field("string", "TITLE"),
            "opportunity": _field("double", "OPPORTUNITY"),
            "createdBy": _field("user", "CREATED_BY_ID", isReadOnly=True),
            "xmlId": _field("string", "XML_ID"),
            "originId": _field("string", "ORIGIN_ID"),
            "comments": _field("text", "COMMENTS"),
            "ufCrm_5": _field("string", "UF_CRM_5", isMultiple=True),
        }
    }
)
DEALS = write_target("deals")
OPTS = PlanOptions()


def _plan(row: dict[str, Any], n: int = 0, options: PlanOptions = OPTS) -> Any:
    return plan_row(row, n, DEALS, FIELDS, options)


# --- marker_field / key against the field metadata ------------------------------------------------------


@pytest.mark.parametrize(
    ("marker_field", "key"),
    [("xmlId", None), ("XML_ID", "originId"), ("comments", "ORIGIN_ID"), ("originId", "opportunity")],
)
def test_fields_the_portal_stores_are_accepted(marker_field: str, key: str | None) -> None:
    check_write_options(write_target("deals", marker_field), FIELDS, key)


@pytest.mark.parametrize(
    ("marker_field", "key", "option", "words"),
    [
        ("xmlIdd", None, "marker_field='xmlIdd'", "has no field 'xmlIdd'"),
        ("CREATED_BY_ID", None, "marker_field='CREATED_BY_ID'", "'createdBy' of deals is read-only"),
        ("opportunity", None, "marker_field='opportunity'", "is double"),
        ("UF_CRM_5", None, "marker_field='UF_CRM_5'", "is a multiple string"),
        ("xmlId", "erp_id", "key='erp_id'", "has no field 'erp_id'"),
        ("xmlId", "id", "key='id'", "'id' of deals is read-only"),
        ("xmlId", "createdBy", "key='createdBy'", "'createdBy' of deals is read-only"),
    ],
)
def test_unusable_option_fields_are_a_configuration_error(
    marker_field: str, key: str | None, option: str, words: str
) -> None:
    with pytest.raises(WriteOptionError) as info:
        check_write_options(write_target("deals", marker_field), FIELDS, key)
    assert option in str(info.value) and words in str(info.value)


def test_the_default_markers_exist_on_recorded_shapes() -> None:
    tasks = parse_task_fields(
        {"fields": {"ID": {"type": "integer", "primary": True}, "XML_ID": {"type": "string"}}}
    )
    check_write_options(write_target("tasks"), tasks, None)
    with pytest.raises(WriteOptionError, match="marker_field='XML_ID'"):
        check_write_options(write_target("tasks"), EntityFields.build([]), None)


# --- markers that are already on the portal --------------------------------------------------------------


def test_markers_come_from_the_key_the_row_or_its_content() -> None:
    own = _plan({"title": "A", "ORIGIN_ID": "ext-1"})
    generated = plan_rows({1: {"title": "B"}}, DEALS, FIELDS, OPTS, lambda f, v: {})[0]
    keyed = _plan({"title": "C", "originId": "erp-1"}, n=2, options=PlanOptions(key="originId"))
    update = _plan({"id": 9, "originId": "ext-9"})
    assert not own.keyed and own.marker == "ext-1" and own.marker_field == "originId"
    assert not generated.keyed and str(generated.marker).startswith("b24dlt:")
    assert keyed.keyed and keyed.marker == "erp-1" and keyed.marker_field == "originId"
    assert update.marker is None


def test_adds_whose_marker_is_on_the_portal_are_already_applied_or_ambiguous() -> None:
    rows = [
        _plan({"title": "A", "originId": "ext-1"}, n=0),
        _plan({"title": "B", "originId": "ext-2"}, n=1),
        _plan({"id": 5, "originId": "ext-1"}, n=3),
        _plan({"title": "E", "originId": "ext-many"}, n=4),
    ]
    out = mark_existing(rows, {"ext-1": [17], "ext-many": [1, 2, 3, 4, 5, 6]})
    assert [p.row_number for p in out] == [0, 1, 3, 4]
    assert [p.error_code for p in out] == [None, None, None, DUPLICATE_MARKER_ON_PORTAL]
    assert out[0].existing_id == 17 and not out[0].to_send
    assert "'originId' = 'ext-many'" in (out[3].error_description or "")
    assert "1, 2, 3, 4, 5, ..." in (out[3].error_description or "")
    assert out[1:3] == rows[1:3]
    assert mark_existing(rows, {}) == rows


# --- values as the user wrote them (pandas widens int columns with gaps to float) ----------------------


def _error_json(row: dict[str, Any], n: int = 0) -> tuple[dict[str, Any], str | None, str]:
    planned = plan_row_or_reject(row, n, DEALS, FIELDS, OPTS)
    outcome = Outcome("error", None, planned.error_code or "NOT_FOUND", planned.error_description or "gone")
    result = result_row(
        planned, outcome, load_id="L1", table="deals", job_id="F1", written_at=datetime.now(timezone.utc)
    )
    text = error_row(result, planned)["row_json"]
    return json.loads(text), result["key"], text


def test_integral_floats_are_written_back_as_ints() -> None:
    original, key, text = _error_json({"id": 99_999_999.0, "title": "ghost", "opportunity": 1500.0})
    assert original == {"id": 99_999_999, "title": "ghost", "opportunity": 1500}
    assert isinstance(original["id"], int) and ".0" not in text and key == "99999999"

    fraction, _, _ = _error_json({"id": 3.0, "opportunity": 12.5})
    assert fraction["opportunity"] == 12.5

    bad, bad_key, _ = _error_json({"id": -4.0, "title": "x"})
    assert bad["id"] == -4 and bad_key == "-4"
    assert _plan({"id": -4.0, "title": "x"}).error_code == INVALID_ID

    gap, gap_key, _ = _error_json({"id": math.nan, "title": None, "opportunity": "lots"})
    assert (
        gap == {"id": None, "title": None, "opportunity": "lots"} and gap_key is None
    )  # no marker: not sent


def test_float_upsert_keys_and_ids_keep_their_integer_text() -> None:
    assert key_value({"originId": 123.0}, "originId", FIELDS) == "123"
    assert key_value({"originId": 1.5}, "originId", FIELDS) == "1.5"
    assert _plan({"id": 7.0, "title": "t"}).key == "7"
