"""Failed runs fail for good, fast and labelled: an unreachable portal, a wrong webhook, messy values."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
import requests
from dlt.pipeline.exceptions import PipelineStepFailed

from bitrix24_source import bitrix24_rows
from bitrix24_source.client.transport import transport_error
from bitrix24_source.destination.results import ERRORS_TABLE, RESULTS_TABLE
from bitrix24_source.sandbox import Sandbox


def test_a_portal_that_is_down_fails_the_load_within_seconds_with_one_labelled_error(
    push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    with Sandbox(seed=3, deals=5, leads=0, contacts=0, companies=0, users=2, tasks=0) as down:
        url = down.webhook_url
    pipeline = push_pipeline(url, name="down")
    started = time.monotonic()
    with pytest.raises(PipelineStepFailed) as failed:
        pipeline.run([{"title": "nobody home"}, {"id": 3, "title": "x"}], table_name="deals")
    elapsed = time.monotonic() - started
    assert elapsed < 10, elapsed
    text = str(failed.value)
    assert "[CONNECTION_REFUSED]" in text and "cannot read the field metadata of deals" in text
    assert not pipeline.list_normalized_load_packages()  # aborted: nothing left to replay


def test_an_unresolvable_host_is_labelled_dns_error_not_connection_refused() -> None:
    from urllib3.exceptions import MaxRetryError, NameResolutionError
    from urllib3.util import parse_url

    cause = NameResolutionError("portal.invalid", None, OSError("Name or service not known"))  # type: ignore[arg-type]
    request = requests.Request("POST", "https://portal.invalid/rest/1/abc/crm.item.list").prepare()
    exc = requests.exceptions.ConnectionError(
        MaxRetryError(None, parse_url("/rest"), cause),  # type: ignore[arg-type]
        request=request,
    )
    error = transport_error(exc, method="crm.item.list", request_id="r1", timeout=5.0)
    assert error.code == "DNS_ERROR" and error.maybe_executed is False
    assert "portal.invalid" in error.description and "abc" not in error.description


def test_values_dlt_could_not_type_each_fail_only_their_row(
    portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    deal_ids = sorted(int(r["id"]) for r in portal.rows("deals"))
    frame = pd.DataFrame(
        {
            "id": [deal_ids[0], deal_ids[1], deal_ids[2], deal_ids[3]],
            "opportunity": [True, 5, "x", 7.5],  # an object column of mixed values
            "_delete": [None, "N", None, 0],  # a mixed _delete column
        }
    )
    records = [{"title": "lone \ud800 surrogate"}, {"title": "fine"}]
    pipeline = push_pipeline(portal.webhook_url, name="messy")
    pipeline.run(bitrix24_rows(frame, table_name="deals"))
    pipeline.run(bitrix24_rows(records, table_name="deals"))

    results = read_table(RESULTS_TABLE)
    assert [(r["status"], r["error_code"]) for r in results] == [
        ("error", "INVALID_TYPE"),
        ("ok", None),
        ("error", "INVALID_TYPE"),
        ("ok", None),
        ("error", "INVALID_TYPE"),
        ("ok", None),
    ]
    assert "'opportunity'" in results[0]["error_description"]
    assert "row 0, field 'title'" in results[4]["error_description"]
    state = {int(r["id"]): r for r in portal.rows("deals")}
    assert float(state[deal_ids[1]]["opportunity"]) == 5 and float(state[deal_ids[3]]["opportunity"]) == 7.5
    assert [r["title"] for r in state.values()].count("fine") == 1
    errors = read_table(ERRORS_TABLE)
    assert len(errors) == 3
