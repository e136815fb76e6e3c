"""Upsert by email or phone: crm.duplicate.findbycomm finds the record, batched; ambiguous matches are errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from bitrix24_source.destination.results import RESULTS_TABLE
from bitrix24_source.sandbox import Sandbox


def _comms(row: dict[str, Any], kind: str) -> list[str]:
    return [x["value"] for x in row.get("fm") or [] if x["typeId"] == kind]


def test_contacts_are_upserted_by_email_and_phone(
    portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    contacts = portal.rows("contacts")
    known = next(r for r in contacts if _comms(r, "EMAIL"))
    email = _comms(known, "EMAIL")[0]
    shared = [r for r in contacts if r["id"] != known["id"]][:2]
    for r in shared:
        portal.update_row(
            "contacts",
            int(r["id"]),
            {
                "fm": [
                    {
                        "typeId": "EMAIL",
                        "valueType": "WORK",
                        "value": "team@example.com",
                        "id": 9000 + int(r["id"]),
                    }
                ]
            },
        )
    rows = [
        {"EMAIL": email, "comments": "found by email"},
        {"email": "brand.new@example.com", "name": "Brand", "lastName": "New"},
        {"email": "team@example.com", "comments": "which one?"},
    ]
    portal.reset_stats()
    push_pipeline(portal.webhook_url, name="by_email", key="email").run(rows, table_name="contacts")
    first = read_table(RESULTS_TABLE)
    assert [(r["operation"], r["status"], r["error_code"]) for r in first] == [
        ("update", "ok", None),
        ("add", "ok", None),
        (None, "error", "DUPLICATE_KEY_ON_PORTAL"),
    ]
    assert portal.stats().by_method["crm.duplicate.findbycomm"] == 3  # one per value, in one batch request
    state = {int(r["id"]): r for r in portal.rows("contacts")}
    assert state[int(known["id"])]["comments"] == "found by email"
    new = [r for r in state.values() if "brand.new@example.com" in _comms(r, "EMAIL")]
    assert len(new) == 1 and new[0]["name"] == "Brand"

    # Run again: the new contact is found by its email now, so nothing is added twice.
    push_pipeline(portal.webhook_url, name="by_email", key="email").run(rows, table_name="contacts")
    again = [r for r in read_table(RESULTS_TABLE) if r["load_id"] != first[0]["load_id"]]
    assert [(r["operation"], r["status"]) for r in again[:2]] == [("update", "ok"), ("update", "ok")]
    holders = [r["id"] for r in portal.rows("contacts") if "brand.new@example.com" in _comms(r, "EMAIL")]
    assert holders == [new[0]["id"]]

    phone = _comms(known, "PHONE")[0]
    spaced = f"{phone[:2]} {phone[2:5]} {phone[5:]}"  # the portal compares the digits
    push_pipeline(portal.webhook_url, name="by_phone", key="phone").run(
        [{"phone": spaced, "comments": "found by phone"}], table_name="contacts"
    )
    assert next(r for r in portal.rows("contacts") if r["id"] == known["id"])["comments"] == "found by phone"


def test_upsert_by_email_is_refused_for_deals(portal: Sandbox, push_pipeline: Callable[..., Any]) -> None:
    with pytest.raises(PipelineStepFailed, match="key='email'"):
        push_pipeline(portal.webhook_url, name="deal_email", key="email").run(
            [{"email": "a@b.c", "title": "x"}], table_name="deals"
        )
