"""Batches over loopback: the three input formats, halt on/off, $result chains, v3 $refArray, user data."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from bitrix24_source.client import Bitrix24Client
from bitrix24_source.client.commands import CommandResult, ref, ref_array, result_ref
from bitrix24_source.client.retry import batch_failure_outcome as _batch_failure_outcome
from bitrix24_source.errors import BatchCommandError, ConfigError, error_from_response
from bitrix24_source.sandbox import Fault, Sandbox


def _deal_ids(portal: Sandbox, n: int) -> list[int]:
    return sorted(d["id"] for d in portal.rows("deals"))[:n]


def test_three_input_formats_give_the_same_results(client: Bitrix24Client, portal: Sandbox) -> None:
    a, b = _deal_ids(portal, 2)
    tuples = client.batch(
        [("crm.item.get", {"entityTypeId": 2, "id": a}), ("crm.item.get", {"entityTypeId": 2, "id": b})]
    )
    dicts = client.batch(
        [
            {"method": "crm.item.get", "params": {"entityTypeId": 2, "id": a}},
            {"method": "crm.item.get", "params": {"entityTypeId": 2, "id": b}},
        ]
    )
    named = client.batch(
        {
            "first": ("crm.item.get", {"entityTypeId": 2, "id": a}),
            "second": {"method": "crm.item.get", "params": {"entityTypeId": 2, "id": b}},
        }
    )
    assert [r.result["item"]["id"] for r in tuples.results] == [a, b]
    assert tuples.data == dicts.data
    assert isinstance(named.data, dict) and named.data["first"]["item"]["id"] == a
    assert named.by_key["second"].result["item"]["id"] == b and named["second"].index == 1
    assert [r.key for r in tuples.results] == ["c0", "c1"]
    assert all(r.ok and r.outcome == "ok" and r.time is not None for r in tuples.results)
    assert tuples.is_success and tuples.errors == [] and tuples.error_messages == []


def test_return_raw_gives_command_results(client: Bitrix24Client, portal: Sandbox) -> None:
    [a] = _deal_ids(portal, 1)
    raw = client.batch(
        [("crm.item.get", {"entityTypeId": 2, "id": a}), ("crm.item.get", {"entityTypeId": 2, "id": -1})],
        halt_on_error=False,
        return_raw=True,
    )
    assert isinstance(raw.data, list) and all(isinstance(r, CommandResult) for r in raw.data)
    assert raw.data[0].is_success and raw.data[0].data["item"]["id"] == a
    assert not raw.data[1].is_success and raw.data[1].error_messages
    plain = client.batch(
        [("crm.item.get", {"entityTypeId": 2, "id": a}), ("crm.item.get", {"entityTypeId": 2, "id": -1})],
        halt_on_error=False,
    )
    assert len(plain.data) == 1  # only successful results, as b24jssdk without returnAjaxResult


def _mixed_calls(portal: Sandbox) -> list[tuple[str, dict]]:
    a, b = _deal_ids(portal, 2)
    return [
        ("crm.item.get", {"entityTypeId": 2, "id": a}),
        ("crm.item.get", {"entityTypeId": 2, "id": 99_999_991}),
        ("crm.item.get", {"entityTypeId": 2, "id": b}),
        ("crm.item.get", {"entityTypeId": 2, "id": 99_999_992}),
    ]


def test_halt_on_error_stops_at_the_first_failure(client: Bitrix24Client, portal: Sandbox) -> None:
    result = client.batch(_mixed_calls(portal), halt_on_error=True, request_id="halt-1")
    assert [r.outcome for r in result.results] == ["ok", "error", "not_executed", "not_executed"]
    assert len(result.errors) == 1 and not result.is_success
    error = result.errors[0]
    assert isinstance(error, BatchCommandError)
    assert (error.index, error.command_key, error.method, error.code) == (
        1,
        "c1",
        "crm.item.get",
        "NOT_FOUND",
    )
    assert error.request_id == "halt-1"


def test_without_halt_every_command_runs(client: Bitrix24Client, portal: Sandbox) -> None:
    result = client.batch(_mixed_calls(portal), halt_on_error=False)
    assert [r.outcome for r in result.results] == ["ok", "error", "ok", "error"]
    assert [e.index for e in result.errors] == [1, 3]


def test_chained_result_references(client: Bitrix24Client, portal: Sandbox) -> None:
    deals = sorted(portal.rows("deals"), key=lambda d: d["id"])
    result = client.batch(
        {
            "page": ("crm.item.list", {"entityTypeId": 2, "select": ["id"], "order": {"id": "ASC"}}),
            "last": ("crm.item.get", {"entityTypeId": 2, "id": result_ref("page", "items", 49, "id")}),
            "next_page": (
                "crm.item.list",
                {
                    "entityTypeId": 2,
                    "select": ["id"],
                    "order": {"id": "ASC"},
                    "filter": {">id": result_ref("last", "item", "id")},
                },
            ),
        }
    )
    assert result.is_success
    assert result["last"].result["item"]["id"] == deals[49]["id"]
    assert result["next_page"].result["items"][0]["id"] == deals[50]["id"]
    assert result["page"].total == len(deals) and result["page"].next == 50


def test_positional_references_for_list_input(client: Bitrix24Client, portal: Sandbox) -> None:
    deals = sorted(portal.rows("deals"), key=lambda d: d["id"])
    result = client.batch(
        [
            ("crm.item.list", {"entityTypeId": 2, "order": {"id": "ASC"}}),
            ("crm.item.get", {"entityTypeId": 2, "id": result_ref(0, "items", 3, "id")}),
        ]
    )
    assert result[1].result["item"]["id"] == deals[3]["id"]


def test_user_data_that_looks_like_a_reference_is_stored_literally(
    client: Bitrix24Client, portal: Sandbox
) -> None:
    before = portal.stats()
    titles = ["plain title", "Deal $result[c0][item][id] literal", "$TOTAL[x] also", "after"]
    result = client.batch([("crm.item.add", {"entityTypeId": 2, "fields": {"title": t}}) for t in titles])
    assert result.is_success
    stored = {d["id"]: d["title"] for d in portal.rows("deals")}
    assert [stored[r.result["item"]["id"]] for r in result.results] == titles
    after = portal.stats()
    # c0 in a batch, c1 and c2 direct, c3 in a batch: four HTTP requests, in input order.
    assert after.http_by_method.get("batch", 0) - before.http_by_method.get("batch", 0) == 2
    assert after.http_by_method.get("crm.item.add", 0) - before.http_by_method.get("crm.item.add", 0) == 2


def test_direct_call_failure_halts_like_a_batch_error(client: Bitrix24Client, portal: Sandbox) -> None:
    result = client.batch(
        [
            ("crm.item.get", {"entityTypeId": 2, "id": 99_999_993, "note": "$result"}),
            ("crm.item.get", {"entityTypeId": 2, "id": _deal_ids(portal, 1)[0]}),
        ],
        halt_on_error=True,
    )
    assert [r.outcome for r in result.results] == ["error", "not_executed"]
    assert result.errors[0].code == "NOT_FOUND" and result.errors[0].index == 0


def test_empty_error_code_is_reported_as_error(client: Bitrix24Client, portal: Sandbox) -> None:
    portal.inject(Fault("empty_error", method="crm.item.get", command_index=1))
    a, b = _deal_ids(portal, 2)
    result = client.batch(
        [("crm.item.get", {"entityTypeId": 2, "id": a}), ("crm.item.get", {"entityTypeId": 2, "id": b})],
        halt_on_error=False,
    )
    assert [r.outcome for r in result.results] == ["ok", "error"]
    assert result[1].error is not None and result[1].error.code == ""


def test_command_error_fault_at_position(client: Bitrix24Client, portal: Sandbox) -> None:
    portal.inject(Fault("command_error", method="crm.item.get", command_index=2, error_code="ACCESS_DENIED"))
    calls = [("crm.item.get", {"entityTypeId": 2, "id": i}) for i in _deal_ids(portal, 4)]
    result = client.batch(calls, halt_on_error=True)
    assert [r.outcome for r in result.results] == ["ok", "ok", "error", "not_executed"]
    assert result[2].error is not None and result[2].error.code == "ACCESS_DENIED"
    assert result[2].error.category == "access"


def test_v3_ref_array_batch(client: Bitrix24Client, portal: Sandbox) -> None:
    tasks = sorted(portal.rows("tasks"), key=lambda t: t["id"])
    result = client.batch(
        {
            "first": (
                "tasks.task.list",
                {"select": ["id"], "order": {"id": "ASC"}, "pagination": {"limit": 5}},
            ),
            "titles": (
                "tasks.task.list",
                {"select": ["id", "title"], "filter": [["id", "in", ref_array("first.id")]]},
            ),
            "one": ("tasks.task.get", {"id": ref("first.items.0.id"), "select": ["id", "title"]}),
        },
        version=3,
    )
    assert result.is_success, result.error_messages
    expected = [t["id"] for t in tasks[:5]]
    assert [row["id"] for row in result["titles"].result["items"]] == expected
    assert result["titles"].result["items"][0]["title"] == tasks[0]["title"]
    assert result["one"].result["item"]["id"] == tasks[0]["id"]


def test_v3_batch_is_all_or_nothing(
    client: Bitrix24Client, portal: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    tasks = sorted(portal.rows("tasks"), key=lambda t: t["id"])
    with caplog.at_level(logging.DEBUG, logger="bitrix24_source.client"):
        result = client.batch(
            [("tasks.task.get", {"id": tasks[0]["id"]}), ("tasks.task.get", {"id": 99_999_999})],
            version=3,
            halt_on_error=False,
        )
    assert [r.outcome for r in result.results] == ["error", "error"]
    assert {e.code for e in result.errors} == {"BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION"}
    assert [e.index for e in result.errors] == [0, 1]
    # The caller holds the error on every command: the failure is logged, but not as a warning.
    failed = [r for r in caplog.records if "failed as a whole" in r.getMessage()]
    assert [r.levelno for r in failed] == [logging.DEBUG]


def test_v3_failed_write_batch_is_unknown(
    client: Bitrix24Client, portal: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    creator = (
        portal.rows("users")[0]["ID"] if "ID" in portal.rows("users")[0] else portal.rows("users")[0]["id"]
    )
    with caplog.at_level(logging.DEBUG, logger="bitrix24_source.client"):
        result = client.batch(
            [
                (
                    "tasks.task.add",
                    {"fields": {"title": "v3 add", "creatorId": int(creator), "responsibleId": int(creator)}},
                ),
                ("tasks.task.update", {"id": 99_999_999, "fields": {"title": "x"}}),
            ],
            version=3,
        )
    assert [r.outcome for r in result.results] == ["unknown", "unknown"]
    assert len(result.unknown) == 2
    # Writes that may have landed are worth a warning even though the caller gets them as "unknown".
    failed = [r for r in caplog.records if "failed as a whole" in r.getMessage()]
    assert [r.levelno for r in failed] == [logging.WARNING]


def test_v3_user_dict_with_ref_key_goes_direct(client: Bitrix24Client, portal: Sandbox) -> None:
    tasks = sorted(portal.rows("tasks"), key=lambda t: t["id"])
    before = portal.stats().http_by_method.get("tasks.task.get", 0)
    result = client.batch(
        [
            ("tasks.task.get", {"id": tasks[0]["id"], "select": ["id"], "extra": {"$ref": "user.data"}}),
            ("tasks.task.get", {"id": tasks[1]["id"], "select": ["id"]}),
        ],
        version=3,
    )
    assert portal.stats().http_by_method.get("tasks.task.get", 0) == before + 1
    assert [r.result["item"]["id"] for r in result.results] == [tasks[0]["id"], tasks[1]["id"]]


def test_input_validation(client: Bitrix24Client) -> None:
    with pytest.raises(ConfigError, match="batch_by_chunk"):
        client.batch([("user.current", {})] * 51)
    with pytest.raises(ConfigError):
        client.batch([])
    with pytest.raises(ConfigError, match="numeric"):
        client.batch({"123": ("user.current", {})})
    with pytest.raises(ConfigError, match=r"must not contain '\.'"):
        client.batch({"my.tasks": ("tasks.task.list", {"select": ["id"]})}, version=3)
    with pytest.raises(ConfigError):
        client.batch([("user.current", {})], version=4)


def test_raise_for_errors(client: Bitrix24Client, portal: Sandbox) -> None:
    ok = client.batch([("crm.item.get", {"entityTypeId": 2, "id": _deal_ids(portal, 1)[0]})])
    ok.raise_for_errors()
    failed = client.batch(_mixed_calls(portal), halt_on_error=True)
    with pytest.raises(BatchCommandError) as info:
        failed.raise_for_errors()
    assert info.value.index == 1


@pytest.mark.parametrize("bool_style", ["YN", "10"])
def test_booleans_reach_the_portal_as_flags(
    make_client: Callable[..., Bitrix24Client], portal: Sandbox, bool_style: str
) -> None:
    c = make_client(bool_style=bool_style)
    result = c.batch(
        [
            ("crm.item.add", {"entityTypeId": 2, "fields": {"title": f"flags {bool_style} {v}", "opened": v}})
            for v in (True, False)
        ]
    )
    ids = [r.result["item"]["id"] for r in result.results]
    rows = {d["id"]: d for d in portal.rows("deals")}
    assert [rows[i]["opened"] for i in ids] in (["Y", "N"], [True, False])


def test_none_and_empty_values_in_a_batch(client: Bitrix24Client, portal: Sandbox) -> None:
    result = client.batch(
        [
            ("crm.item.list", {"entityTypeId": 2, "select": ["id"], "filter": {}, "order": {"id": "ASC"}}),
            ("crm.item.add", {"entityTypeId": 2, "fields": {"title": "none comments", "comments": None}}),
        ]
    )
    assert result.is_success
    assert result[0].total == len(portal.rows("deals")) - 1  # the empty filter did not filter anything


def test_empty_list_inside_a_parameter_means_the_same_in_a_batch(
    client: Bitrix24Client, portal: Sandbox
) -> None:
    # A query string cannot carry an empty array (§1.5): `@id: []` would vanish and match every row, so the
    # command goes out as a direct JSON call, in its place.
    params = {"entityTypeId": 2, "filter": {"@id": []}, "select": ["id"]}
    direct = client.call("crm.item.list", params)
    before = portal.stats().http_by_method.get("crm.item.list", 0)
    batch = client.batch([("crm.item.list", params), ("crm.item.list", {**params, "filter": {}})])
    assert direct.result["items"] == [] and batch[0].result["items"] == []
    assert len(batch[1].result["items"]) > 0  # an empty top-level filter is no filter, and stays in the batch
    assert portal.stats().http_by_method.get("crm.item.list", 0) == before + 1


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        # A command's own access/scope error fails the v3 batch with 401/403 (§2.3, §9.3): earlier writes of
        # the batch may have landed, so they are unknown, not "not executed" (a resend could duplicate them).
        (
            403,
            {"error": {"code": "BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION", "message": "no"}},
            "unknown",
        ),
        (
            403,
            {"error": {"code": "BITRIX_REST_V3_EXCEPTION_INSUFFICIENTSCOPEEXCEPTION", "message": "no"}},
            "unknown",
        ),
        (
            400,
            {"error": {"code": "BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION", "message": "no"}},
            "unknown",
        ),
        # The request itself was refused before anything ran.
        (401, {"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"}, "not_executed"),
        (503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}, "not_executed"),
    ],
)
def test_outcome_of_a_failed_v3_write_batch(status: int, body: dict[str, Any], expected: str) -> None:
    error = error_from_response(status, body, method="batch")
    assert error is not None
    assert _batch_failure_outcome(error, False, 3) == expected
    assert _batch_failure_outcome(error, True, 3) in ("error", "not_executed")  # reads: retried or reported
