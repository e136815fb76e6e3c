"""v2 batch (§4.2, §4.3) and v3 batch (§5.6) over HTTP, plus the pure reference walk."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
import requests

from bitrix24_source.sandbox import Sandbox
from bitrix24_source.sandbox.batch_v2 import substitute

from .conftest import StandInState

SECTIONS = ["result", "result_error", "result_total", "result_next", "result_time"]


def _batch(portal: Sandbox, http: requests.Session, body: Any) -> dict[str, Any]:
    r = http.post(portal.webhook_url + "batch", json=body)
    assert r.status_code == 200, r.text
    payload: dict[str, Any] = r.json()
    assert list(payload) == ["result", "time"]
    assert list(payload["result"]) == SECTIONS
    return payload["result"]


# --- pure reference walk (§4.3) --------------------------------------------------------------------------

ACC: dict[str, dict[str, Any]] = {
    "result": {
        "list": [{"ID": "7", "TAGS": ["a", "b"]}],
        "get": {"item": {"id": 5, "title": "T", "none": None}},
    },
    "next": {"list": 50},
    "total": {"list": 120},
    "time": {"list": {"duration": 0.5}},
    "error": {"bad": {"error": "", "error_description": "Not found"}},
}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("$result[list][0][ID]", "7"),
        ("$result[get][item][id]", 5),
        ("$result[list][0]", {"ID": "7", "TAGS": ["a", "b"]}),
        ("id=$result[list][0][ID]", "id=7"),
        ("$next[list]", 50),
        ("$total[list]", 120),
        ("$time[list][duration]", 0.5),
        ("$error[bad][error_description]", "Not found"),
        # The walk stops at the first missing segment and keeps the last resolvable node.
        ("$result[get][item][missing]", {"id": 5, "title": "T", "none": None}),
        ("$result[get][item][none]", {"id": 5, "title": "T", "none": None}),
        # Embedded references are replaced only by strings (numbers become strings).
        ("x $result[get][item][id]", "x 5"),
        ("x $result[list][0]", "x $result[list][0]"),
        # String offsets: isset("T"[0]).
        ("$result[get][item][title][0]", "T"),
        # A root without a path, or an unknown root case, is not substituted / resolves to nothing.
        ("$total", "$total"),
        ("$RESULT[list][0][ID]", None),
        ("price is $5", "price is $5"),
    ],
)
def test_reference_walk(value: str, expected: Any) -> None:
    assert substitute({"v": value}, ACC) == {"v": expected}


def test_references_apply_at_any_depth() -> None:
    params = {"filter": {">ID": "$result[list][0][ID]"}, "select": ["$result[get][item][title]"]}
    assert substitute(params, ACC) == {"filter": {">ID": "7"}, "select": ["T"]}


# --- v2 batch over HTTP -----------------------------------------------------------------------------------


def test_named_batch_sections(core_portal: Sandbox, http: requests.Session) -> None:
    result = _batch(
        core_portal,
        http,
        {
            "halt": 0,
            "cmd": {"get": "crm.lead.get?id=1", "bad": "crm.lead.get?id=99999", "list": "crm.lead.list"},
        },
    )
    assert result["result"]["get"] == {"ID": "1", "TITLE": "Lead 1 <b>/é"}
    assert list(result["result"]) == ["get", "list"]
    assert result["result_error"] == {"bad": {"error": "", "error_description": "Not found"}}
    assert result["result_total"] == {"list": 120}
    assert result["result_next"] == {"list": 50}
    assert list(result["result_time"]) == ["get", "list"]  # failed commands have no result_time
    assert result["result_time"]["get"]["operating"] == pytest.approx(0.1)


def test_list_cmd_gives_list_sections_and_clean_sections_are_empty_lists(
    core_portal: Sandbox, http: requests.Session
) -> None:
    r = http.post(
        core_portal.webhook_url + "batch", json={"halt": 0, "cmd": ["server.time", "crm.lead.get?id=2"]}
    )
    assert '"result_error":[],"result_total":[],"result_next":[]' in r.text
    result = r.json()["result"]
    assert isinstance(result["result"], list) and len(result["result"]) == 2
    assert isinstance(result["result_time"], list)


def test_numeric_keys_mix_lists_and_objects(core_portal: Sandbox, http: requests.Session) -> None:
    # crm_get_batch_mix_success_and_errors: errors at "0","1" come back as a list, the success at "35" as an object.
    result = _batch(
        core_portal,
        http,
        {"halt": 0, "cmd": {"0": "crm.lead.get", "1": "crm.lead.get?id=99999", "35": "crm.lead.get?id=35"}},
    )
    assert result["result"] == {"35": {"ID": "35", "TITLE": "Lead 35 <b>/é"}}
    assert result["result_error"] == [
        {"error": "", "error_description": "ID is not defined or invalid."},
        {"error": "", "error_description": "Not found"},
    ]
    assert result["result_time"] == {"35": result["result_time"]["35"]}


@pytest.mark.parametrize(
    ("halt", "stops"), [(1, True), (True, True), ("false", True), ("0", False), (0, False)]
)
def test_halt_uses_php_truthiness(
    core_portal: Sandbox, http: requests.Session, halt: Any, stops: bool
) -> None:
    result = _batch(core_portal, http, {"HALT": halt, "CMD": {"a": "fail", "b": "fail", "c": "server.time"}})
    if stops:
        assert list(result["result_error"]) == ["a"] and result["result"] == []
    else:
        assert list(result["result_error"]) == ["a", "b"] and list(result["result"]) == ["c"]


def test_more_than_fifty_commands(
    core_portal: Sandbox, core_state: StandInState, http: requests.Session
) -> None:
    cmd = {f"c{i:02d}": "server.time" for i in range(53)}
    result = _batch(core_portal, http, {"halt": 0, "cmd": cmd})
    assert len(result["result"]) == 50
    assert result["result_error"] == {
        key: {"error": "ERROR_BATCH_LENGTH_EXCEEDED", "error_description": "Max batch length exceeded"}
        for key in ("c50", "c51", "c52")
    }
    assert core_portal.stats().by_method["server.time"] == 50


def test_nested_batch_download_upload_not_allowed(core_portal: Sandbox, http: requests.Session) -> None:
    result = _batch(
        core_portal, http, {"cmd": {"a": "batch?cmd[x]=server.time", "b": "download", "c": "UPLOAD"}}
    )
    for key in "abc":
        assert result["result_error"][key] == {
            "error": "ERROR_BATCH_METHOD_NOT_ALLOWED",
            "error_description": "Method is not allowed for batch usage",
        }


def test_chained_references_like_fast_list(core_portal: Sandbox, http: requests.Session) -> None:
    cmd = {"req_0": "crm.lead.list?start=-1&filter[>ID]=0"}
    for i in range(1, 3):
        cmd[f"req_{i}"] = f"crm.lead.list?start=-1&filter[>ID]=$result[req_{i - 1}][49][ID]"
    result = _batch(core_portal, http, {"halt": 1, "cmd": cmd})
    assert [page[0]["ID"] for page in result["result"].values()] == ["1", "51", "101"]
    assert result["result_total"] == {"req_0": 0, "req_1": 0, "req_2": 0}
    assert result["result_next"] == []


def test_whole_value_reference_substitutes_an_array(
    core_portal: Sandbox, core_state: StandInState, http: requests.Session
) -> None:
    _batch(core_portal, http, {"cmd": {"g": "crm.lead.get?id=3", "e": "echo?row=$result[g]&t=$total[g]"}})
    echoed = next(params for version, method, params, ctx in core_state.calls if method == "echo")
    # `g` has no total, so the walk stops at the (empty) total section itself and that node is substituted.
    assert echoed == {"row": {"ID": "3", "TITLE": "Lead 3 <b>/é"}, "t": {}}


def test_form_encoded_batch_is_double_encoded(
    core_portal: Sandbox, core_state: StandInState, http: requests.Session
) -> None:
    inner = "echo?fields[TITLE]=" + quote("A & B") + "&start=50"
    r = http.post(core_portal.webhook_url + "batch", data={"halt": "0", "cmd[x]": inner})
    assert r.json()["result"]["result"]["x"] == {
        "params": {"fields": {"TITLE": "A & B"}},
        "start": 50,
        "start_given": True,
    }


def test_sub_command_context_is_in_batch(
    core_portal: Sandbox, core_state: StandInState, http: requests.Session
) -> None:
    _batch(core_portal, http, {"cmd": ["echo?a=1"]})
    assert core_state.calls[-1][3].in_batch is True


def test_outer_batch_is_not_charged(core_portal: Sandbox, http: requests.Session) -> None:
    r = http.post(
        core_portal.webhook_url + "batch", json={"cmd": {"a": "server.time", "b": "server.time"}}
    ).json()
    assert r["time"]["operating"] == 0
    assert r["result"]["result_time"]["b"]["operating"] == pytest.approx(0.2)
    assert "batch" not in core_portal.stats().operating


def test_missing_or_scalar_cmd_gives_empty_sections(core_portal: Sandbox, http: requests.Session) -> None:
    r = http.post(core_portal.webhook_url + "batch", json={"cmd": "server.time"})
    assert r.json()["result"] == {section: [] for section in SECTIONS}


# --- v3 batch -------------------------------------------------------------------------------------------


def _v3(portal: Sandbox, http: requests.Session, body: Any) -> requests.Response:
    return http.post(portal.webhook_url_v3 + "batch", json=body)


def test_v3_batch_bare_array_and_int_keyed_object(core_portal: Sandbox, http: requests.Session) -> None:
    items = [
        {"method": "tasks.task.get", "query": {"id": 1}},
        {"method": "tasks.task.get", "query": {"id": 2}},
    ]
    for body in (items, {"0": items[0], "1": items[1]}):
        r = _v3(core_portal, http, body)
        assert r.status_code == 200
        payload = r.json()
        assert set(payload) == {"result", "time"}
        assert [x["item"]["id"] for x in payload["result"]] == [1, 2]
        assert payload["time"]["operating"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"cmd": {"a": "tasks.task.get?id=1"}},
        {"halt": 0, "0": {"method": "tasks.task.get", "query": {}}},
        [{"method": "tasks.task.get"}],
        [{"query": {"id": 1}}],
        ["tasks.task.get?id=1"],
    ],
)
def test_v3_batch_rejects_malformed_bodies(core_portal: Sandbox, http: requests.Session, body: Any) -> None:
    r = _v3(core_portal, http, body)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "BITRIX_REST_V3_EXCEPTION_INVALIDSELECTEXCEPTION"


def test_v3_batch_over_fifty_rejected(
    core_portal: Sandbox, core_state: StandInState, http: requests.Session
) -> None:
    r = _v3(core_portal, http, [{"method": "tasks.task.get", "query": {"id": 1}}] * 51)
    assert r.status_code == 400 and "error" in r.json()
    assert core_state.calls == []


def test_v3_refs(core_portal: Sandbox, core_state: StandInState, http: requests.Session) -> None:
    body = [
        {"method": "tasks.task.list", "as": "tasks", "query": {"select": ["id"]}},
        {"method": "tasks.task.list", "query": {"filter": [["id", "in", {"$refArray": "tasks.id"}]]}},
        {"method": "tasks.task.get", "as": "one", "query": {"id": {"$ref": "tasks.items.2.id"}}},
        {"method": "tasks.task.get", "query": {"id": {"$ref": "one.id"}}},
        {"method": "tasks.task.get", "query": {"id": {"$ref": "2.item.id"}}},
    ]
    r = _v3(core_portal, http, body)
    assert r.status_code == 200, r.text
    results = r.json()["result"]
    assert len(results[1]["items"]) == 7
    assert results[2]["item"]["id"] == results[3]["item"]["id"] == results[4]["item"]["id"] == 3
    assert core_state.calls[1][2]["filter"] == [["id", "in", [1, 2, 3, 4, 5, 6, 7]]]


def test_v3_only_item_and_items_enter_the_context(core_portal: Sandbox, http: requests.Session) -> None:
    body = [
        {"method": "tasks.task.update", "as": "u", "query": {"id": 1, "fields": {"title": "x"}}},
        {"method": "tasks.task.get", "query": {"id": {"$ref": "u.result"}}},
    ]
    r = _v3(core_portal, http, body)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "BITRIX_REST_V3_EXCEPTION_INVALIDSELECTEXCEPTION"


@pytest.mark.parametrize(
    "ref", [{"$ref": "nope.id"}, {"$ref": "t.items.99.id"}, {"$refArray": "t"}, {"$ref": ""}]
)
def test_v3_bad_refs_fail_the_batch(
    core_portal: Sandbox, http: requests.Session, ref: dict[str, str]
) -> None:
    body = [
        {"method": "tasks.task.list", "as": "t", "query": {}},
        {"method": "tasks.task.get", "query": {"id": ref}},
    ]
    r = _v3(core_portal, http, body)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "BITRIX_REST_V3_EXCEPTION_INVALIDSELECTEXCEPTION"


def test_v3_batch_all_or_nothing(
    core_portal: Sandbox, core_state: StandInState, http: requests.Session
) -> None:
    body = [
        {"method": "tasks.task.get", "query": {"id": 1}},
        {"method": "tasks.task.get", "query": {"id": 404}},
        {"method": "tasks.task.get", "query": {"id": 2}},
    ]
    r = _v3(core_portal, http, body)
    assert r.status_code == 400
    assert r.json() == {
        "error": {
            "code": "BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION",
            "message": "Record with ID = `404` not found",
        }
    }
    assert [c[2]["id"] for c in core_state.calls] == [1, 404]  # the third command never ran


def test_v3_batch_query_string_ignored_except_auth(core_portal: Sandbox, http: requests.Session) -> None:
    r = http.post(
        core_portal.webhook_url_v3 + "batch?cmd=x", json=[{"method": "tasks.task.get", "query": {"id": 1}}]
    )
    assert r.status_code == 200
