"""Result splitting against every recorded real response (tests/fixtures/real-responses, §2.4, §4.4)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bitrix24_source.client.batch import (
    chunked,
    normalize_calls,
    parse_call_payload,
    split_v2_batch,
    split_v3_batch,
)
from bitrix24_source.client.commands import Command
from bitrix24_source.errors import BatchCommandError, ConfigError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "real-responses"
ALL = sorted(FIXTURES.glob("*.json"))


def _responses(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    data = json.loads(path.read_text(encoding="utf-8"))
    response = data["response"]
    request = data.get("request")
    return (response if isinstance(response, list) else [response]), request


def _is_batch(body: dict[str, Any]) -> bool:
    result = body.get("result")
    return isinstance(result, dict) and "result_error" in result and "result_time" in result


def _section_keys(section: Any) -> list[str]:
    if isinstance(section, dict):
        return [str(k) for k in section]
    return [str(i) for i in range(len(section))]


def _keys_of(body: dict[str, Any], request: dict[str, Any] | None) -> list[str]:
    if request is not None:
        params = request.get("params", request)
        return [str(k) for k in params["cmd"]]
    keys: list[str] = []
    for name in ("result", "result_error"):
        for key in _section_keys(body["result"][name]):
            if key not in keys:
                keys.append(key)
    return keys


def _lookup(section: Any, key: str) -> tuple[bool, Any]:
    if isinstance(section, dict):
        return (key in section, section.get(key))
    if not key.isdigit():
        return (False, None)
    position = int(key)
    return (position < len(section), section[position] if position < len(section) else None)


def test_every_fixture_is_covered() -> None:
    assert len(ALL) >= 27


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_fixture_splits(path: Path) -> None:
    responses, request = _responses(path)
    for body in responses:
        if not _is_batch(body):
            result, total, nxt, time = parse_call_payload(body)
            assert result == body["result"]
            assert total == body.get("total")
            assert nxt == body.get("next")
            assert (time is None) == ("time" not in body)
            if "time" in body:
                assert time is not None and time.start == body["time"]["start"]
            continue
        keys = _keys_of(body, request)
        commands = [Command("some.method.get", {}, key=k, index=i) for i, k in enumerate(keys)]
        results = split_v2_batch(commands, body, halt=False)
        sections = body["result"]
        assert [r.key for r in results] == keys
        for r in results:
            has_error, error = _lookup(sections["result_error"], r.key)
            has_result, value = _lookup(sections["result"], r.key)
            if has_error:
                assert r.outcome == "error" and not r.ok
                assert isinstance(r.error, BatchCommandError)
                assert r.error.code == error["error"]
                assert r.error.description == (error["error_description"] or error["error"])
                assert r.error.command_key == r.key and r.error.index == r.index
                assert r.time is None
            else:
                assert has_result
                assert r.ok and r.outcome == "ok" and r.error is None
                assert r.result == value
                has_total, total = _lookup(sections["result_total"], r.key)
                assert r.total == (int(total) if has_total else None)
                has_next, nxt = _lookup(sections["result_next"], r.key)
                assert r.next == (int(nxt) if has_next else None)
                has_time, time = _lookup(sections["result_time"], r.key)
                assert (r.time is not None) == has_time
                if has_time:
                    assert r.time is not None and r.time.duration == time["duration"]
                    assert r.time.operating_reset_at == time.get("operating_reset_at")


def _body(name: str) -> dict[str, Any]:
    responses, _ = _responses(FIXTURES / f"{name}.json")
    return responses[0]


def test_mixed_numeric_keys_map_list_errors_by_position() -> None:
    # cmd keys "0","1","35943": errors for 0 and 1 came back as a JSON list (§2.4).
    commands = [Command("crm.lead.get", {}, key=k, index=i) for i, k in enumerate(["0", "1", "35943"])]
    r0, r1, r2 = split_v2_batch(commands, _body("crm_get_batch_mix_success_and_errors"), halt=False)
    assert (r0.outcome, r0.error and r0.error.code, r0.error and r0.error.description) == (
        "error",
        "",
        "ID is not defined or invalid.",
    )
    assert r1.error is not None and r1.error.description == "Not found"
    assert r2.ok and r2.result == {"ID": "35943"} and r2.time is not None


def test_empty_error_code_is_an_error() -> None:
    [r] = split_v2_batch([Command("crm.lead.get", {}, key="0")], _body("crm_lead_get_batch_error"), halt=True)
    assert not r.ok and r.error is not None and r.error.code == "" and r.error.category == "validation"


def test_halt_leaves_later_commands_not_executed() -> None:
    commands = [Command("crm.lead.get", {}, key=k, index=i) for i, k in enumerate(["0", "later", "later2"])]
    results = split_v2_batch(commands, _body("crm_lead_get_batch_error"), halt=True)
    assert [r.outcome for r in results] == ["error", "not_executed", "not_executed"]
    assert results[1].error is None


def test_missing_command_without_halt_is_unknown_for_writes_and_error_for_reads() -> None:
    commands = [
        Command("crm.lead.get", {}, key="0", index=0),
        Command("crm.item.add", {}, key="w", index=1),
        Command("crm.item.get", {}, key="r", index=2),
    ]
    results = split_v2_batch(commands, _body("crm_lead_get_batch_error"), halt=False)
    assert [r.outcome for r in results] == ["error", "unknown", "error"]
    assert results[1].error is not None and results[1].error.code == "MISSING_COMMAND_RESULT"


def test_paged_export_last_command_has_no_next() -> None:
    responses, _ = _responses(FIXTURES / "get_all_tasks.json")
    batch = next(b for b in responses if _is_batch(b))
    keys = _keys_of(batch, None)
    results = split_v2_batch(
        [Command("tasks.task.list", {}, key=k, index=i) for i, k in enumerate(keys)], batch, halt=True
    )
    assert all(r.ok for r in results)
    assert results[-1].next is None and results[0].next is not None
    assert all(r.total == 1570 for r in results)
    assert "tasks" in results[0].result


def test_empty_list_result_is_success() -> None:
    [r] = split_v2_batch(
        [Command("crm.deal.list", {}, key="order0000000000")], _body("batch_list_empty"), halt=False
    )
    assert r.ok and r.result == [] and r.total == 0 and r.next is None


def test_null_result_is_success() -> None:
    body = {
        "result": {
            "result": {"a": None},
            "result_error": [],
            "result_total": [],
            "result_next": [],
            "result_time": [],
        },
        "time": {},
    }
    [r] = split_v2_batch([Command("im.chat.get", {}, key="a")], body, halt=False)
    assert r.ok and r.result is None


def test_malformed_batch_body_raises() -> None:
    with pytest.raises(BatchCommandError):
        split_v2_batch([Command("x.get", {}, key="a")], {"result": []}, halt=False)


def test_v3_split_by_position_and_missing_entries() -> None:
    commands = [
        Command("tasks.task.get", {}, key="a", index=0),
        Command("tasks.task.add", {}, key="b", index=1),
    ]
    body = {"result": [{"item": {"id": 1}}], "time": {"start": 1.0, "operating": 0}}
    r0, r1 = split_v3_batch(commands, body)
    assert r0.ok and r0.result == {"item": {"id": 1}} and r0.time is not None and r0.time.operating == 0
    assert r1.outcome == "unknown"


def test_normalize_three_formats() -> None:
    tuples, named = normalize_calls([("crm.item.get", {"id": 1}), ("user.current", None)])
    assert not named and [c.key for c in tuples] == ["c0", "c1"] and tuples[1].params == {}
    dicts, _ = normalize_calls([{"method": "crm.item.get", "params": {"id": 1}}])
    assert dicts[0].method == "crm.item.get" and dicts[0].params == {"id": 1}
    names, named = normalize_calls({"one": ("crm.item.get", {"id": 1}), "two": {"method": "user.current"}})
    assert named and [c.key for c in names] == ["one", "two"] and names[1].index == 1


@pytest.mark.parametrize("name", ["0", "35943", "-5", " 7 "])
def test_numeric_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="numeric"):
        normalize_calls({name: ("crm.item.get", {})})


@pytest.mark.parametrize(
    "calls",
    [
        [("crm.item.get",)] * 0 + [42],
        [{"params": {}}],
        [{"method": "x", "query": {}}],
        [("", {})],
        [("x.get", [1])],
        "x",
    ],
)
def test_malformed_calls_are_refused(calls: Any) -> None:
    with pytest.raises(ConfigError):
        normalize_calls(calls)


def test_named_commands_refused_where_not_allowed() -> None:
    with pytest.raises(ConfigError, match="named"):
        normalize_calls({"a": ("x.get", {})}, allow_named=False)


def test_chunked() -> None:
    assert [len(c) for c in chunked(list(range(120)))] == [50, 50, 20]
    assert chunked([]) == []
