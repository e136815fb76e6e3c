"""Routing, parameter parsing and output encoding of the sandbox's HTTP core (§1, §2, §10)."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests

from bitrix24_source.cli import build_parser
from bitrix24_source.sandbox import Sandbox
from bitrix24_source.sandbox.phpjson import encode, php_value
from bitrix24_source.sandbox.phpquery import (
    canonical_array,
    decode_body,
    is_numeric,
    parse_str,
    php_intval,
    php_truthy,
    split_call_params,
)
from bitrix24_source.sandbox.server import route

from .conftest import StandInState

TIME_KEYS = {
    "start",
    "finish",
    "duration",
    "processing",
    "date_start",
    "date_finish",
    "operating_reset_at",
    "operating",
}

# --- pure: PHP parse_str (§1.5) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("a=1&b=2", {"a": "1", "b": "2"}),
        ("a[b][c]=1", {"a": {"b": {"c": "1"}}}),
        ("a[]=x&a[]=y", {"a": ["x", "y"]}),
        ("select[0]=ID&select[1]=TITLE", {"select": ["ID", "TITLE"]}),
        ("select%5B0%5D=ID&select%5B1%5D=TITLE", {"select": ["ID", "TITLE"]}),
        ("fields[TITLE]=A+%26+B", {"fields": {"TITLE": "A & B"}}),
        ("fields%5BTITLE%5D=A%20%26%20B", {"fields": {"TITLE": "A & B"}}),
        ("filter[%3EID]=5&", {"filter": {">ID": "5"}}),
        ("filter%5B%3EID%5D=5", {"filter": {">ID": "5"}}),
        ("a.b=1&c d=2", {"a_b": "1", "c_d": "2"}),
        ("a.b[c.d]=1", {"a_b": {"c.d": "1"}}),
        ("a[b=1", {"a_b": "1"}),
        ("x[5]=a&x[]=b", {"x": {"5": "a", "6": "b"}}),
        ("ok=True&none=None", {"ok": "True", "none": "None"}),
        ("flag", {"flag": ""}),
        ("=novalue&&a=1", {"a": "1"}),
        ("a=1&a=2", {"a": "2"}),
        ("a=1&a[x]=2", {"a": {"x": "2"}}),
        ("k[05]=a", {"k": {"05": "a"}}),
    ],
)
def test_parse_str_matches_php(query: str, expected: dict[str, object]) -> None:
    assert parse_str(query) == expected


def test_three_sdk_encodings_decode_to_the_same_array() -> None:
    # The table of §4.1: b24jssdk, b24pysdk and fast_bitrix24 encodings of the same params.
    jssdk = "fields%5BTITLE%5D=A%20%26%20B&filter%5B%3EID%5D=5&select%5B0%5D=ID&select%5B1%5D=TITLE"
    pysdk = "fields[TITLE]=A+%26+B&filter[%3EID]=5&select[0]=ID&select[1]=TITLE"
    fast = "fields[TITLE]=A%20%26%20B&filter[%3EID]=5&select[0]=ID&select[1]=TITLE&"
    assert parse_str(jssdk) == parse_str(pysdk) == parse_str(fast)
    assert parse_str(pysdk)["filter"] == {">ID": "5"}


def test_canonical_array_treats_int_keyed_objects_as_lists() -> None:
    assert canonical_array({"0": "a", "1": "b"}) == ["a", "b"]
    assert canonical_array({"1": "a", "0": "b"}) == {"1": "a", "0": "b"}
    assert canonical_array({"x": {"0": 1}}) == {"x": [1]}
    assert canonical_array({}) == {}


def test_decode_body_by_content_type() -> None:
    assert decode_body(b'{"a": {"0": 1}}', "application/json; charset=utf-8") == {"a": [1]}
    assert decode_body(b"{not json", "application/json") == {}  # §1.5: invalid JSON is silently []
    assert decode_body(b"a[b]=1", "application/x-www-form-urlencoded") == {"a": {"b": "1"}}
    assert decode_body(b"a=1", "text/plain") == {"a": "1"}
    multipart = (
        b'--XX\r\nContent-Disposition: form-data; name="fields[TITLE]"\r\n\r\nHello\r\n'
        b'--XX\r\nContent-Disposition: form-data; name="id"\r\n\r\n7\r\n--XX--\r\n'
    )
    assert decode_body(multipart, "multipart/form-data; boundary=XX") == {
        "fields": {"TITLE": "Hello"},
        "id": "7",
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("50", 50),
        ("50abc", 50),
        ("abc", 0),
        ("-1", -1),
        (" 7", 7),
        ("1e2", 100),
        (3.9, 3),
        (True, 1),
        (None, 0),
    ],
)
def test_php_intval(value: object, expected: int) -> None:
    assert php_intval(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", False),
        ("", False),
        (0, False),
        (None, False),
        ([], False),
        ("false", True),
        ("0.0", True),
        (1, True),
    ],
)
def test_php_truthiness(value: object, expected: bool) -> None:
    assert php_truthy(value) is expected


def test_is_numeric_follows_php() -> None:
    assert is_numeric("12") and is_numeric(" 1.5") and is_numeric(3) and is_numeric(2.5)
    assert not is_numeric("1_0") and not is_numeric("abc") and not is_numeric(True) and not is_numeric("")


def test_split_call_params_strips_protocol_keys() -> None:
    params, start, given = split_call_params(
        {"start": "100", "state": "x", "auth": "t", "bx24_request_id": "1", "filter": {"a": 1}}
    )
    assert params == {"filter": {"a": 1}} and start == 100 and given is True
    assert split_call_params({"a": 1}) == ({"a": 1}, 0, False)


# --- pure: PHP JSON output (§2.4) ------------------------------------------------------------------------


def test_php_json_arrays() -> None:
    assert php_value({}) == []
    assert php_value({"0": "a", "1": "b"}) == ["a", "b"]
    assert php_value({0: "a", 1: "b"}) == ["a", "b"]
    assert php_value({"35943": {"ID": "35943"}}) == {"35943": {"ID": "35943"}}
    assert php_value({"1": "x", "0": "y"}) == {"1": "x", "0": "y"}
    assert php_value({"a": {"inner": {}}}) == {"a": {"inner": []}}


def test_php_json_escaping() -> None:
    body = encode({"t": "[B]x[/B] <br> Новая"})
    assert body.decode() == '{"t":"[B]x[\\/B] \\u003Cbr\\u003E Новая"}'
    assert json.loads(body) == {"t": "[B]x[/B] <br> Новая"}


# --- routing (§10) ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "version", "method", "webhook"),
    [
        ("/rest/1/abc/crm.item.list", 2, "crm.item.list", ("1", "abc")),
        ("/rest/1/abc/crm.item.list.json", 2, "crm.item.list", ("1", "abc")),
        ("/rest/1/abc/CRM.Item.List/", 2, "crm.item.list", ("1", "abc")),
        ("/rest//1//abc//batch", 2, "batch", ("1", "abc")),
        ("/rest/api/1/abc/tasks.task.get", 3, "tasks.task.get", ("1", "abc")),
        ("/rest/crm.lead.list.json", 2, "crm.lead.list", None),
        ("/rest//user.get", 2, "user.get", None),
        ("/rest/api/tasks.task.list", 3, "tasks.task.list", None),
    ],
)
def test_routes(path: str, version: int, method: str, webhook: tuple[str, str] | None) -> None:
    found = route(path)
    assert found is not None
    assert (found.version, found.method, found.webhook) == (version, method, webhook)


def test_unknown_paths_do_not_route() -> None:
    assert route("/index.php") is None
    assert route("/rest/1/abc/") is None


# --- over HTTP ----------------------------------------------------------------------------------------


def test_v2_call_envelope_and_time(core_portal: Sandbox, http: requests.Session) -> None:
    r = http.post(core_portal.webhook_url + "server.time", json={})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    body = r.json()
    assert set(body) == {"result", "time"}
    assert set(body["time"]) == TIME_KEYS
    assert body["time"]["operating_reset_at"] > body["time"]["start"]


def test_v2_query_and_body_merge_body_wins(
    core_portal: Sandbox, core_state: StandInState, http: requests.Session
) -> None:
    url = core_portal.webhook_url + "echo.json?a=query&q[x]=1&bx24_request_id=9&bx24_sdk_ver=1&start=60"
    r = http.post(url, json={"a": "body", "auth": "ignored", "state": "s"})
    body = r.json()["result"]
    assert body["params"] == {"a": "body", "q": {"x": "1"}}
    assert body["start"] == 60 and body["start_given"] is True


def test_v2_get_and_form_and_invalid_json(core_portal: Sandbox, http: requests.Session) -> None:
    echo = core_portal.webhook_url + "echo"
    assert http.get(echo, params={"filter[>ID]": "5"}).json()["result"]["params"] == {"filter": {">ID": "5"}}
    form = http.post(echo, data={"fields[TITLE]": "A & B", "select[]": ["ID", "TITLE"]})
    assert form.json()["result"]["params"] == {"fields": {"TITLE": "A & B"}, "select": ["ID", "TITLE"]}
    bad = http.post(echo + "?a=1", data=b"{oops", headers={"Content-Type": "application/json"})
    assert bad.status_code == 200 and bad.json()["result"]["params"] == {"a": "1"}


def test_v2_list_envelope(core_portal: Sandbox, http: requests.Session) -> None:
    first = http.post(core_portal.webhook_url + "crm.lead.list", json={}).json()
    assert list(first) == ["result", "next", "total", "time"]
    assert first["next"] == 50 and first["total"] == 120 and isinstance(first["result"][0]["ID"], str)
    last = http.post(core_portal.webhook_url + "crm.lead.list", json={"start": 100}).json()
    assert "next" not in last and len(last["result"]) == 20
    keyset = http.post(core_portal.webhook_url + "crm.lead.list", json={"start": -1}).json()
    assert keyset["total"] == 0 and "next" not in keyset


def test_v2_errors(core_portal: Sandbox, http: requests.Session) -> None:
    missing = http.post(core_portal.webhook_url + "no.such.method", json={})
    assert missing.status_code == 404
    assert missing.json() == {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"}
    failed = http.post(core_portal.webhook_url + "fail", json={})
    assert failed.status_code == 400
    assert failed.json() == {
        "error": "INVALID_ARG_VALUE",
        "error_description": "Invalid filter",
        "argument": "filter",
    }
    empty = http.post(core_portal.webhook_url + "crm.lead.get", json={"id": 999999})
    assert empty.status_code == 400 and empty.json() == {"error": "", "error_description": "Not found"}


def test_v2_empty_array_result_is_a_json_list(core_portal: Sandbox, http: requests.Session) -> None:
    r = http.post(core_portal.webhook_url + "crm.item.delete", json={"entityTypeId": 2, "id": 3})
    assert r.text.startswith('{"result":[],')


def test_v3_call_envelope(core_portal: Sandbox, http: requests.Session) -> None:
    r = http.post(core_portal.webhook_url_v3 + "tasks.task.get", json={"id": 2})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"result", "time"} and body["result"]["item"]["id"] == 2
    assert set(body["time"]) == TIME_KEYS


def test_v3_reads_only_json_and_ignores_query(
    core_portal: Sandbox, core_state: StandInState, http: requests.Session
) -> None:
    bad = http.post(core_portal.webhook_url_v3 + "tasks.task.get", data={"id": "2"})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "BITRIX_REST_V3_EXCEPTION_INVALIDJSONEXCEPTION"
    r = http.post(core_portal.webhook_url_v3 + "echo?x=1&auth=zzz", json={"y": 2})
    assert r.json()["result"]["item"]["params"] == {"y": 2}


def test_v3_errors(core_portal: Sandbox, http: requests.Session) -> None:
    missing = http.post(core_portal.webhook_url_v3 + "tasks.task.get", json={"id": 404})
    assert missing.status_code == 400
    assert missing.json() == {
        "error": {
            "code": "BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION",
            "message": "Record with ID = `404` not found",
        }
    }
    unknown = http.post(core_portal.webhook_url_v3 + "crm.item.get", json={})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "BITRIX_REST_V3_EXCEPTION_METHODNOTFOUNDEXCEPTION"


def test_non_rest_path_and_cors_and_stats_endpoint(core_portal: Sandbox, http: requests.Session) -> None:
    assert http.get(core_portal.base_url + "/index.php").status_code == 404
    pre = http.options(core_portal.webhook_url + "batch")
    assert pre.headers["Access-Control-Allow-Headers"] == "origin, content-type, accept"
    http.post(core_portal.webhook_url + "server.time", json={})
    stats = http.get(core_portal.base_url + "/_sandbox/stats").json()
    assert stats["http_by_method"]["server.time"] == 1
    assert core_portal.auth.webhook_code not in json.dumps(stats)


def test_keep_alive_reuses_one_connection(core_portal: Sandbox) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", core_portal.port, timeout=10)
    path = urlsplit(core_portal.webhook_url).path + "server.time"
    sockets = []
    for _ in range(3):
        conn.request("POST", path, body=b"{}", headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200 and response.version == 11
        response.read()
        sockets.append(conn.sock)
    conn.close()
    assert sockets[0] is not None and sockets[0] is sockets[1] is sockets[2]


def test_chunked_request_body(core_portal: Sandbox, http: requests.Session) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"a":'
        yield b'"chunked"}'

    r = http.post(
        core_portal.webhook_url + "echo", data=chunks(), headers={"Content-Type": "application/json"}
    )
    assert r.json()["result"]["params"] == {"a": "chunked"}


def test_stats_and_reset(core_portal: Sandbox, http: requests.Session) -> None:
    http.post(core_portal.webhook_url + "crm.lead.list", json={})
    http.post(core_portal.webhook_url + "batch", json={"cmd": {"a": "crm.lead.get?id=1", "b": "server.time"}})
    stats = core_portal.stats()
    assert stats.http_requests == 2 and stats.batches == 1
    assert stats.by_method == {"crm.lead.list": 1, "crm.lead.get": 1, "server.time": 1}
    assert stats.http_by_method == {"crm.lead.list": 1, "batch": 1}
    assert stats.rows_returned == {"crm.lead.list": 50}
    assert stats.operating["crm.lead.list"] == pytest.approx(0.1)
    core_portal.reset_stats()
    assert core_portal.stats().http_requests == 0 and core_portal.stats().operating == {}


def test_secrets_not_in_reprs(core_portal: Sandbox) -> None:
    text = repr(core_portal) + repr(core_portal.oauth) + repr(core_portal.auth)
    assert core_portal.auth.webhook_code not in text
    assert core_portal.oauth.access_token not in text and core_portal.oauth.client_secret not in text


def test_equals_sign_in_a_key_splits_the_pair_like_php() -> None:
    # php_default_treat_data splits at the first '=': an unencoded '=' in a key ends the name.
    assert parse_str("filter[=ownerType]=D") == {"filter_": "ownerType]=D"}
    assert parse_str("filter[%3DownerType]=D") == {"filter": {"=ownerType": "D"}}


# --- command line ------------------------------------------------------------------------------------


def test_cli_parser() -> None:
    args = build_parser().parse_args(
        [
            "sandbox",
            "--port",
            "0",
            "--deals",
            "20000",
            "--rate-limit",
            "50/2",
            "--operating-limit",
            "480",
            "--tls",
        ]
    )
    assert (args.port, args.deals, args.rate_limit, args.operating_limit, args.tls) == (
        0,
        20000,
        (50, 2.0),
        480.0,
        True,
    )
    assert args.leads is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sandbox", "--rate-limit", "fast"])


def test_cli_serves_until_terminated() -> None:
    command = [sys.executable, "-u", "-m", "bitrix24_source", "sandbox", "--port", "0", "--seed", "2"]
    command += [
        "--leads",
        "5",
        "--deals",
        "5",
        "--contacts",
        "2",
        "--companies",
        "2",
        "--users",
        "2",
        "--tasks",
        "2",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
        webhook = lines[1].split()[-1]
        assert webhook.startswith("http://127.0.0.1:") and lines[2].split()[-1].startswith(
            "http://127.0.0.1:"
        )
        r = requests.post(webhook + "crm.deal.list", json={"select": ["ID"]}, timeout=10)
        assert r.json()["total"] == 5
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def test_v3_idempotency_key(core_portal: Sandbox, core_state: StandInState, http: requests.Session) -> None:
    url = core_portal.webhook_url_v3 + "tasks.task.update"
    body = {"id": 1, "fields": {"title": "once"}}
    first = http.post(url, json=body, headers={"Idempotency-Key": "k-1"})
    again = http.post(url, json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 200 and first.content == again.content
    assert first.headers["Idempotency-Key"] == again.headers["Idempotency-Key"] == "k-1"
    assert "Idempotent-Replayed" not in first.headers and again.headers["Idempotent-Replayed"] == "true"
    assert [c[1] for c in core_state.calls] == ["tasks.task.update"]  # executed once
    reused = http.post(url, json={"id": 2, "fields": {}}, headers={"Idempotency-Key": "k-1"})
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "BITRIX_REST_V3_EXCEPTION_IDEMPOTENCYKEYREUSEDEXCEPTION"
    bad = http.post(url, json=body, headers={"Idempotency-Key": "x" * 256})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "BITRIX_REST_V3_EXCEPTION_INVALIDIDEMPOTENCYKEYEXCEPTION"
    # failures are not stored, and v2 ignores the header
    missing = {"id": 404, "fields": {}}
    assert http.post(url, json=missing, headers={"Idempotency-Key": "k-2"}).status_code == 400
    assert http.post(url, json=missing, headers={"Idempotency-Key": "k-2"}).status_code == 400
    v2 = http.post(core_portal.webhook_url + "server.time", json={}, headers={"Idempotency-Key": "k-1"})
    assert v2.status_code == 200 and "Idempotency-Key" not in v2.headers


def test_concurrent_clients(core_portal: Sandbox) -> None:
    # dlt loads on many threads: every request must be answered and counted exactly once.
    def worker(n: int) -> list[int]:
        with requests.Session() as s:
            body = {"cmd": {f"c{i}": f"crm.lead.get?id={(n * 7 + i) % 100 + 1}" for i in range(10)}}
            return [s.post(core_portal.webhook_url + "batch", json=body).status_code for _ in range(15)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = [code for codes in pool.map(worker, range(8)) for code in codes]
    assert statuses == [200] * 120
    stats = core_portal.stats()
    assert stats.http_requests == 120 and stats.batches == 120 and stats.by_method == {"crm.lead.get": 1200}


def test_non_standard_json_constants_are_invalid_json_like_php() -> None:
    """PHP's json_decode refuses NaN/Infinity; §1.5: a v2 body that fails to decode counts as no params."""
    headers = {"Content-Type": "application/json"}
    with Sandbox(seed=2, deals=1, leads=1, contacts=1, companies=1, users=4, tasks=1) as portal:
        url = portal.webhook_url
        filtered = requests.post(url + "user.get", json={"FILTER": {"ID": 1}}, timeout=10).json()["result"]
        body = b'{"FILTER": {"ID": 1, "X": Infinity}}'
        answer = requests.post(url + "user.get", data=body, headers=headers, timeout=10)
        v3 = requests.post(
            portal.webhook_url_v3 + "tasks.task.list", data=b'{"x": NaN}', headers=headers, timeout=10
        )
    assert len(filtered) == 1
    assert answer.status_code == 200
    assert len(answer.json()["result"]) == 4  # the filter was dropped with the rest of the body
    assert v3.status_code == 400
    assert v3.json()["error"]["code"] == "BITRIX_REST_V3_EXCEPTION_INVALIDJSONEXCEPTION"
