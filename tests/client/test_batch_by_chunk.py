"""batch_by_chunk over loopback: chunks of 50, input order, halt inside a chunk, errors collected."""

from __future__ import annotations

import pytest

from bitrix24_source.client import Bitrix24Client
from bitrix24_source.client.commands import CommandResult, result_ref
from bitrix24_source.errors import ConfigError
from bitrix24_source.sandbox import Sandbox


def test_more_than_50_commands_in_order(client: Bitrix24Client, portal: Sandbox) -> None:
    ids = sorted(d["id"] for d in portal.rows("deals"))[:120]
    seen: list[int] = []
    before = portal.stats().http_by_method.get("batch", 0)
    result = client.batch_by_chunk(
        [{"method": "crm.item.get", "params": {"entityTypeId": 2, "id": i}} for i in ids],
        on_chunk=lambda rows: seen.append(len(rows)),
    )
    assert portal.stats().http_by_method.get("batch", 0) - before == 3
    assert seen == [50, 50, 20]
    assert result.is_success and len(result) == 120
    assert [r.result["item"]["id"] for r in result.results] == ids
    assert [r.index for r in result.results] == list(range(120))
    assert len(result.by_key) == 120


def test_halt_applies_inside_a_chunk_and_later_chunks_run(client: Bitrix24Client, portal: Sandbox) -> None:
    ids = sorted(d["id"] for d in portal.rows("deals"))[:110]
    calls: list[tuple[str, dict]] = [("crm.item.get", {"entityTypeId": 2, "id": i}) for i in ids]
    calls[10] = ("crm.item.get", {"entityTypeId": 2, "id": 88_888_810})
    calls[75] = ("crm.item.get", {"entityTypeId": 2, "id": 88_888_875})
    calls[76] = ("crm.item.get", {"entityTypeId": 2, "id": 88_888_876})
    result = client.batch_by_chunk(calls, halt_on_error=True)
    outcomes = [r.outcome for r in result.results]
    assert outcomes[:10] == ["ok"] * 10 and outcomes[10] == "error"
    assert outcomes[11:50] == ["not_executed"] * 39
    assert (
        outcomes[50:75] == ["ok"] * 25
        and outcomes[75] == "error"
        and outcomes[76:100] == ["not_executed"] * 24
    )
    assert outcomes[100:] == ["ok"] * 10
    assert [(e.index, e.method, e.code) for e in result.errors] == [
        (10, "crm.item.get", "NOT_FOUND"),
        (75, "crm.item.get", "NOT_FOUND"),
    ]
    assert all(e.description for e in result.errors)


def test_without_halt_all_errors_are_collected(client: Bitrix24Client, portal: Sandbox) -> None:
    ids = sorted(d["id"] for d in portal.rows("deals"))[:60]
    calls = [("crm.item.get", {"entityTypeId": 2, "id": i if n % 20 else -n - 1}) for n, i in enumerate(ids)]
    result = client.batch_by_chunk(calls, halt_on_error=False, return_raw=True)
    assert [e.index for e in result.errors] == [0, 20, 40]
    assert sum(r.ok for r in result.results) == 57
    assert isinstance(result.data, list) and isinstance(result.data[0], CommandResult)


def test_named_commands_are_refused(client: Bitrix24Client) -> None:
    with pytest.raises(ConfigError, match="named"):
        client.batch_by_chunk({"a": ("user.current", {})})  # type: ignore[arg-type]


def test_references_cannot_cross_chunks(client: Bitrix24Client) -> None:
    calls: list[tuple[str, dict]] = [("user.current", {})] * 50 + [
        ("crm.item.get", {"id": result_ref(0, "ID")})
    ]
    with pytest.raises(ConfigError):
        client.batch_by_chunk(calls)


def test_empty_input_sends_nothing(client: Bitrix24Client) -> None:
    result = client.batch_by_chunk([])
    assert result.results == [] and result.is_success and client.stats.http_requests == 0


def test_v3_chunks(client: Bitrix24Client, portal: Sandbox) -> None:
    ids = sorted(t["id"] for t in portal.rows("tasks"))[:55]
    result = client.batch_by_chunk([("tasks.task.get", {"id": i, "select": ["id"]}) for i in ids], version=3)
    assert result.is_success and [r.result["item"]["id"] for r in result.results] == ids
