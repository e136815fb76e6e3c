"""Replay every documented request on a `catalogue="docs"` sandbox and compare the answer with the captured one.

Every difference must be listed in `deviations.KNOWN` with its reason (docs/sandbox-deviations.md is made
from that list); a new difference fails, and so does a listed one that no longer occurs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from bitrix24_source.sandbox import Sandbox
from tests.conformance.corpus import Record, adapted_request, records
from tests.conformance.deviations import KNOWN, render
from tests.conformance.shapes import differences

RECORDS = [r for r in records() if r.response is not None and r.response.get("body") is not None]


@pytest.fixture
def docs_portal() -> Iterator[Sandbox]:
    with Sandbox(
        seed=3, leads=120, deals=20, contacts=20, companies=20, users=5, tasks=20, catalogue="docs"
    ) as portal:
        yield portal


def _placeholders(portal: Sandbox) -> dict[str, Any]:
    return {
        "PRODUCT_OWNER": next(r["ownerId"] for r in portal.rows("deal_products")),
        "PRODUCT_ROW": next(r["id"] for r in portal.rows("deal_products")),
        "RESULT_TASK": next(r["taskId"] for r in portal.rows("task_results")),
        "ACTIVITY_CONTACT": next(r["OWNER_ID"] for r in portal.rows("activities") if r["OWNER_TYPE_ID"] == 3),
    }


def replay(portal: Sandbox, record: Record) -> tuple[int, Any]:
    base = portal.webhook_url_v3 if record.version == 3 else portal.webhook_url
    params = adapted_request(record, _placeholders(portal))
    answer = requests.post(base + record.method, json=params, timeout=30)
    return answer.status_code, answer.json()


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.key)
def test_documented_request_gets_the_documented_shape(docs_portal: Sandbox, record: Record) -> None:
    assert record.response is not None
    status, body = replay(docs_portal, record)
    found = set(differences(record.response["body"], body))
    if record.response["http_status"] is not None and status != record.response["http_status"]:
        found.add(f"HTTP status: documented {record.response['http_status']}, sandbox {status}")
    known = set(KNOWN.get(record.key, {}))
    assert sorted(found - known) == [], f"{record.key} ({record.page}): new differences"
    assert sorted(known - found) == [], f"{record.key}: listed differences that no longer occur"


def test_deviation_doc_is_current() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "sandbox-deviations.md").read_text(encoding="utf-8")
    assert render() in doc, "run: python -m tests.conformance.deviations"
