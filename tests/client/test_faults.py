"""Retry policy over loopback (§6.6): 503/429 retried, reads retried on 5xx/resets/timeouts, ambiguous writes
never resent and reported as "unknown outcome"."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from bitrix24_source.client import Bitrix24Client, RetryPolicy
from bitrix24_source.errors import RateLimitError, ServerError, TransportError
from bitrix24_source.sandbox import Fault, Sandbox


def _count(portal: Sandbox, method: str) -> int:
    return portal.stats().by_method.get(method, 0)


def _titles(portal: Sandbox) -> list[str]:
    return [d["title"] for d in portal.rows("deals")]


def test_503_is_retried_with_backoff(client: Bitrix24Client, portal: Sandbox) -> None:
    portal.inject(Fault("http_503", method="batch", times=2))
    before = portal.stats().rejected_503
    [deal] = sorted(d["id"] for d in portal.rows("deals"))[:1]
    result = client.batch([("crm.item.get", {"entityTypeId": 2, "id": deal})])
    assert result.is_success
    assert client.stats.rejected_503 == 2 and client.stats.retries == 2 and client.stats.http_requests == 3
    assert portal.stats().rejected_503 - before == 2


def test_503_write_batch_is_retried_because_it_did_not_run(client: Bitrix24Client, portal: Sandbox) -> None:
    portal.inject(Fault("http_503", method="batch", times=1))
    result = client.batch([("crm.item.add", {"entityTypeId": 2, "fields": {"title": "after 503"}})])
    assert result.is_success and _titles(portal).count("after 503") == 1


def test_503_gives_up_after_max_attempts(make_client: Callable[..., Bitrix24Client], portal: Sandbox) -> None:
    c = make_client(retry=RetryPolicy(max_attempts=3, backoff_503=0.01))
    portal.inject(Fault("http_503", method="user.current", times=None))
    with pytest.raises(RateLimitError) as info:
        c.call("user.current")
    assert info.value.code == "QUERY_LIMIT_EXCEEDED" and c.stats.http_requests == 3
    portal.clear_faults()
    portal.inject(Fault("http_503", method="batch", times=None))
    result = c.batch([("crm.item.add", {"entityTypeId": 2, "fields": {"title": "never"}})])
    assert result[0].outcome == "not_executed" and result.errors[0].code == "QUERY_LIMIT_EXCEEDED"


def test_429_waits_then_retries(client: Bitrix24Client, portal: Sandbox) -> None:
    portal.inject(Fault("http_429", method="user.current", times=1))
    assert client.call("user.current").result["ID"]
    assert client.stats.rejected_429 == 1 and client.stats.retries == 1
    assert client.stats.waited_seconds >= 0.05  # RetryPolicy.min_wait_429 of the test client


def test_500_on_a_read_is_retried(client: Bitrix24Client, portal: Sandbox) -> None:
    portal.inject(Fault("http_500", method="batch", times=2))
    result = client.batch([("crm.item.list", {"entityTypeId": 2, "select": ["id"]})])
    assert result.is_success and client.stats.retries == 2


def test_500_after_a_write_batch_is_unknown_and_not_resent(client: Bitrix24Client, portal: Sandbox) -> None:
    portal.inject(Fault("http_500", method="batch", phase="after"))
    adds_before = _count(portal, "crm.item.add")
    result = client.batch([("crm.item.add", {"entityTypeId": 2, "fields": {"title": "ambiguous 500"}})] * 2)
    assert [r.outcome for r in result.results] == ["unknown", "unknown"]
    assert (
        isinstance(result.errors[0], ServerError)
        and result.errors[0].index == 0
        and result.errors[1].index == 1
    )
    assert _count(portal, "crm.item.add") - adds_before == 2  # executed once, never resent
    assert _titles(portal).count("ambiguous 500") == 2 and client.stats.retries == 0


def test_reset_after_a_write_is_unknown(client: Bitrix24Client, portal: Sandbox) -> None:
    portal.inject(Fault("reset", method="batch", phase="after"))
    result = client.batch([("crm.item.add", {"entityTypeId": 2, "fields": {"title": "ambiguous reset"}})])
    assert result[0].outcome == "unknown" and isinstance(result[0].error, TransportError)
    assert result[0].error.maybe_executed and client.stats.http_requests == 1
    assert _titles(portal).count("ambiguous reset") == 1


def test_reset_before_a_read_is_retried(client: Bitrix24Client, portal: Sandbox) -> None:
    portal.inject(Fault("reset", method="crm.item.list", times=2))
    assert client.call("crm.item.list", {"entityTypeId": 2}).total == len(portal.rows("deals"))
    assert client.stats.retries == 2


def test_truncated_write_answer_is_unknown(client: Bitrix24Client, portal: Sandbox) -> None:
    portal.inject(Fault("truncated", method="batch", phase="after"))
    result = client.batch([("crm.item.add", {"entityTypeId": 2, "fields": {"title": "truncated answer"}})])
    assert result[0].outcome == "unknown" and result[0].error is not None
    assert result[0].error.code == "INVALID_JSON" and _titles(portal).count("truncated answer") == 1


def test_truncated_read_is_retried(client: Bitrix24Client, portal: Sandbox) -> None:
    portal.inject(Fault("truncated", method="user.current"))
    assert client.call("user.current").result["ID"] and client.stats.retries == 1


def test_timeout_on_a_read_is_retried(make_client: Callable[..., Bitrix24Client], portal: Sandbox) -> None:
    c = make_client(timeout=0.3)
    portal.inject(Fault("hang", method="user.current", delay=1.0))
    assert c.call("user.current").result["ID"] and c.stats.retries == 1


def test_timeout_on_a_write_is_unknown(make_client: Callable[..., Bitrix24Client], portal: Sandbox) -> None:
    c = make_client(timeout=0.3)
    portal.inject(Fault("hang", method="batch", delay=1.0, phase="after"))
    result = c.batch([("crm.item.add", {"entityTypeId": 2, "fields": {"title": "timed out write"}})])
    assert (
        result[0].outcome == "unknown" and result[0].error is not None and result[0].error.code == "TIMEOUT"
    )
    assert c.stats.http_requests == 1


def test_single_write_call_after_500_raises_without_resending(
    client: Bitrix24Client, portal: Sandbox
) -> None:
    portal.inject(Fault("http_500", method="crm.item.add", phase="after"))
    with pytest.raises(ServerError):
        client.call("crm.item.add", {"entityTypeId": 2, "fields": {"title": "single 500"}})
    assert client.stats.http_requests == 1 and _titles(portal).count("single 500") == 1


def test_idempotent_override_resends_a_write(client: Bitrix24Client, portal: Sandbox) -> None:
    [deal] = sorted(d["id"] for d in portal.rows("deals"))[:1]
    portal.inject(Fault("http_500", method="crm.item.update", phase="before"))
    r = client.call(
        "crm.item.update", {"entityTypeId": 2, "id": deal, "fields": {"title": "same"}}, idempotent=True
    )
    assert r.result["item"]["title"] == "same" and client.stats.retries == 1


def test_connection_refused_is_retried_then_raised(make_client: Callable[..., Bitrix24Client]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = make_client(webhook_url=f"http://127.0.0.1:{port}/rest/1/closed-port-code/")
    with pytest.raises(TransportError) as info:
        c.call("crm.item.add", {"fields": {}})
    assert info.value.code == "CONNECTION_REFUSED" and info.value.maybe_executed is False
    assert c.stats.http_requests == 4  # FAST_RETRY.max_attempts: refused requests never ran, even writes
    result = c.batch([("crm.item.add", {"fields": {}})])
    assert result[0].outcome == "not_executed"


def test_halted_chunk_after_unknown_write(client: Bitrix24Client, portal: Sandbox) -> None:
    portal.inject(Fault("reset", method="crm.item.add", phase="after"))
    result = client.batch(
        [
            ("crm.item.add", {"entityTypeId": 2, "fields": {"title": "$result direct"}}),
            ("crm.item.add", {"entityTypeId": 2, "fields": {"title": "after unknown"}}),
        ],
        halt_on_error=True,
    )
    assert [r.outcome for r in result.results] == ["unknown", "not_executed"]


def _task_fields(portal: Sandbox, title: str) -> dict:
    user = portal.rows("users")[0]
    uid = int(user.get("ID", user.get("id")))
    return {"fields": {"title": title, "creatorId": uid, "responsibleId": uid}}


@pytest.mark.parametrize("kind", ["reset", "http_500", "truncated"])
def test_v3_write_call_is_resent_safely_with_an_idempotency_key(
    client: Bitrix24Client, portal: Sandbox, kind: str
) -> None:
    # §1.6: the resend carries the same Idempotency-Key, so the portal replays the stored answer.
    title = f"idempotent {kind}"
    portal.inject(Fault(kind, method="tasks.task.add", phase="after"))  # type: ignore[arg-type]
    r = client.call("tasks.task.add", _task_fields(portal, title), version=3)
    assert r.result["item"]["title"] == title and client.stats.retries == 1
    assert [t["title"] for t in portal.rows("tasks")].count(title) == 1


def test_own_idempotency_key_reused_with_another_body(client: Bitrix24Client, portal: Sandbox) -> None:
    key = "order-4711-task"
    first = client.call("tasks.task.add", _task_fields(portal, "keyed once"), version=3, idempotency_key=key)
    again = client.call("tasks.task.add", _task_fields(portal, "keyed once"), version=3, idempotency_key=key)
    assert first.result == again.result
    assert [t["title"] for t in portal.rows("tasks")].count("keyed once") == 1
    from bitrix24_source.errors import ApiError

    with pytest.raises(ApiError) as info:
        client.call("tasks.task.add", _task_fields(portal, "other body"), version=3, idempotency_key=key)
    assert info.value.code == "BITRIX_REST_V3_EXCEPTION_IDEMPOTENCYKEYREUSEDEXCEPTION"
    assert info.value.http_status == 422


class _GatewayThenPortal(BaseHTTPRequestHandler):
    """A proxy in front of a portal: the first POST gets an empty 503 from the proxy, later ones a success."""

    posts: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).posts.append(self.path)
        if len(type(self).posts) == 1:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps({"result": {"item": {"id": 7}, "items": []}, "time": {}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def gateway() -> Iterator[str]:
    _GatewayThenPortal.posts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _GatewayThenPortal)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/rest/1/gateway-code/"
    server.shutdown()
    server.server_close()
    thread.join()


def test_bodyless_503_from_a_proxy_is_not_proof_that_a_write_did_not_run(
    make_client: Callable[..., Bitrix24Client], gateway: str
) -> None:
    # Only the portal's QUERY_LIMIT_EXCEEDED body says the method never ran (§6.5): a bare 503 may come after
    # the request went through, so the write is not resent.
    c = make_client(webhook_url=gateway)
    with pytest.raises(ServerError):
        c.call("crm.item.add", {"entityTypeId": 2, "fields": {"title": "behind a proxy"}})
    assert len(_GatewayThenPortal.posts) == 1


def test_bodyless_503_on_a_read_is_retried(make_client: Callable[..., Bitrix24Client], gateway: str) -> None:
    c = make_client(webhook_url=gateway)
    assert c.call("crm.item.list", {"entityTypeId": 2}).result == {"item": {"id": 7}, "items": []}
    assert len(_GatewayThenPortal.posts) == 2


def test_a_moved_portal_is_followed_once_and_a_write_runs_once(
    make_client: Callable[..., Bitrix24Client], portal: Sandbox
) -> None:
    # §1.6: a renamed portal answers 302 with the new address before running anything; the client re-POSTs
    # there and keeps using it. The sandbox's "new host" is its other loopback name.
    client = make_client()
    portal.inject(Fault("moved", method="crm.item.add"))
    before = len(portal.rows("deals"))
    added = client.call("crm.item.add", {"entityTypeId": 2, "fields": {"title": "after the move"}})
    assert added.result["item"]["title"] == "after the move"
    assert len(portal.rows("deals")) == before + 1
    assert "//localhost:" in repr(client)
    assert client.call("server.time").result  # later calls go to the new address directly


def test_a_move_to_an_insecure_remote_address_is_refused(
    make_client: Callable[..., Bitrix24Client], portal: Sandbox
) -> None:
    # A move must not send the webhook code over plain http to a non-loopback host: the client stops instead.
    client = make_client()
    assert client._follow_move("http://portal.example.com/rest/1/x/crm.item.add", client._v2_base) is False
