"""Fault injection over real HTTP (DESIGN.md: Fault kinds, after/times/phase/command_index)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
import requests

from bitrix24_source.sandbox import Fault, Sandbox
from bitrix24_source.sandbox.faults import TRANSPORT_KINDS, FaultRegistry

from .conftest import StandInState


def test_fault_validation() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Fault("http_503", times=0)
    with pytest.raises(ValueError):
        Fault("http_503", phase="during")  # type: ignore[arg-type]


def test_registry_after_and_times() -> None:
    registry = FaultRegistry()
    registry.add(Fault("http_503", method="batch", after=1, times=2))
    fired = [registry.take(TRANSPORT_KINDS, m) is not None for m in ["batch", "x", "batch", "batch", "batch"]]
    assert fired == [False, False, True, True, False]
    assert registry.pending() == []


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("http_503", 503, "QUERY_LIMIT_EXCEEDED"),
        ("http_429", 429, "OPERATION_TIME_LIMIT"),
        ("http_500", 500, "INTERNAL_SERVER_ERROR"),
    ],
)
def test_http_status_faults(
    core_portal: Sandbox, http: requests.Session, kind: str, status: int, code: str
) -> None:
    core_portal.inject(Fault(kind, method="server.time"))  # type: ignore[arg-type]
    other = http.post(core_portal.webhook_url + "crm.lead.get", json={"id": 1})
    hit = http.post(core_portal.webhook_url + "server.time", json={})
    again = http.post(core_portal.webhook_url + "server.time", json={})
    assert other.status_code == 200 and again.status_code == 200
    assert hit.status_code == status and hit.json()["error"] == code
    assert (
        "server.time" not in core_portal.stats().by_method
        or core_portal.stats().by_method["server.time"] == 1
    )


def test_phase_after_commits_the_write_then_fails(
    core_portal: Sandbox, core_state: StandInState, http: requests.Session
) -> None:
    core_portal.inject(Fault("http_500", method="batch", phase="after"))
    before = len(core_state.leads)
    r = http.post(core_portal.webhook_url + "batch", json={"cmd": {"a": "crm.lead.add?fields[TITLE]=new"}})
    assert r.status_code == 500
    assert len(core_state.leads) == before + 1


def test_reset_closes_without_response(core_portal: Sandbox, http: requests.Session) -> None:
    core_portal.inject(Fault("reset", method="batch"))
    with pytest.raises(requests.ConnectionError):
        http.post(core_portal.webhook_url + "batch", json={"cmd": {"a": "server.time"}})
    assert http.post(core_portal.webhook_url + "batch", json={"cmd": {"a": "server.time"}}).status_code == 200


def _wait_until(predicate: Callable[[], bool], limit: float = 20.0) -> bool:
    # A bounded wait for an event on a loaded machine; nothing here asserts on durations.
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_hang_past_the_client_timeout(
    core_portal: Sandbox, core_state: StandInState, http: requests.Session
) -> None:
    core_portal.inject(Fault("hang", method="crm.lead.add", delay=3.0, phase="after"))
    before = len(core_state.leads)
    with pytest.raises(requests.Timeout):
        http.post(core_portal.webhook_url + "crm.lead.add", json={"fields": {"TITLE": "x"}}, timeout=0.5)
    # executed on the server: the client cannot know the outcome
    assert _wait_until(lambda: len(core_state.leads) == before + 1)


def test_moved_portal_answers_302(core_portal: Sandbox, http: requests.Session) -> None:
    core_portal.inject(Fault("moved", method="server.time"))
    moved = http.post(core_portal.webhook_url + "server.time", json={}, allow_redirects=False)
    assert moved.status_code == 302
    location = moved.headers["Location"]
    assert location == core_portal.webhook_url.replace("127.0.0.1", "localhost") + "server.time"
    assert http.post(location, json={}).status_code == 200


def test_truncated_body(core_portal: Sandbox, http: requests.Session) -> None:
    core_portal.inject(Fault("truncated", method="crm.lead.list"))
    r = http.post(core_portal.webhook_url + "crm.lead.list", json={})
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.content)
    assert r.content.startswith(b'{"result":[{"ID":"1"') and len(r.content) > 1000
    assert core_portal.stats().by_method["crm.lead.list"] == 1  # the call itself ran


def test_command_error_by_index_in_v2_batch(core_portal: Sandbox, http: requests.Session) -> None:
    core_portal.inject(Fault("command_error", command_index=1, error_code="ACCESS_DENIED"))
    r = http.post(
        core_portal.webhook_url + "batch",
        json={"halt": 0, "cmd": ["server.time", "server.time", "server.time"]},
    )
    result = r.json()["result"]
    assert result["result_error"] == {"1": {"error": "ACCESS_DENIED", "error_description": "Injected fault"}}
    assert list(result["result"]) == ["0", "2"]
    # a command_index fault never fires on a single call
    core_portal.inject(Fault("command_error", command_index=0))
    assert http.post(core_portal.webhook_url + "server.time", json={}).status_code == 200


def test_command_error_by_method_after_phase(
    core_portal: Sandbox, core_state: StandInState, http: requests.Session
) -> None:
    core_portal.inject(Fault("command_error", method="crm.lead.add", phase="after", after=1))
    before = len(core_state.leads)
    cmd = {"a": "crm.lead.add?fields[TITLE]=1", "b": "crm.lead.add?fields[TITLE]=2"}
    result = http.post(core_portal.webhook_url + "batch", json={"halt": 0, "cmd": cmd}).json()["result"]
    assert list(result["result"]) == ["a"]
    assert result["result_error"]["b"]["error"] == "INTERNAL_SERVER_ERROR"
    assert len(core_state.leads) == before + 2


def test_empty_error_single_call_and_v3_command(core_portal: Sandbox, http: requests.Session) -> None:
    core_portal.inject(Fault("empty_error", method="crm.lead.get"))
    r = http.post(core_portal.webhook_url + "crm.lead.get", json={"id": 1})
    assert r.status_code == 400 and r.json() == {"error": "", "error_description": "Not found"}
    core_portal.inject(
        Fault("command_error", method="tasks.task.get", error_code="BITRIX_REST_V3_EXCEPTION_X")
    )
    v3 = http.post(
        core_portal.webhook_url_v3 + "batch", json=[{"method": "tasks.task.get", "query": {"id": 1}}]
    )
    assert v3.status_code == 400 and v3.json()["error"]["code"] == "BITRIX_REST_V3_EXCEPTION_X"


def test_expire_token_fault(core_portal: Sandbox, http: requests.Session) -> None:
    token = core_portal.oauth.access_token
    url = core_portal.base_url + "/rest/server.time"
    assert http.post(url, json={"auth": token}).status_code == 200
    core_portal.inject(Fault("expire_token", method="server.time"))
    expired = http.post(url, json={"auth": token})
    assert expired.status_code == 401 and expired.json()["error"] == "expired_token"


def test_clear_faults(core_portal: Sandbox, http: requests.Session) -> None:
    core_portal.inject(Fault("http_503", times=None))
    assert http.post(core_portal.webhook_url + "server.time", json={}).status_code == 503
    assert http.post(core_portal.webhook_url + "server.time", json={}).status_code == 503
    core_portal.clear_faults()
    assert http.post(core_portal.webhook_url + "server.time", json={}).status_code == 200
    assert core_portal.stats().rejected_503 == 2
