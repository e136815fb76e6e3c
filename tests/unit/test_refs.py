"""Reference helpers (§4.3 v2 ``$result``, §5.6 v3 ``$ref``/``$refArray``) and batch planning."""

from __future__ import annotations

import pickle

import pytest

from bitrix24_source.client.batch import (
    build_v2_batch_body,
    build_v3_batch_body,
    normalize_calls,
    plan_segments,
)
from bitrix24_source.client.commands import (
    Ref,
    ResultRef,
    looks_like_v2_reference,
    looks_like_v3_reference,
    ref,
    ref_array,
    result_ref,
)
from bitrix24_source.errors import ConfigError
from bitrix24_source.sandbox.phpquery import parse_str


def test_result_ref_is_the_wire_string() -> None:
    r = result_ref("deals", "items", 49, "id")
    assert r == "$result[deals][items][49][id]"
    assert isinstance(r, ResultRef) and isinstance(r, str)
    assert result_ref("list", root="total") == "$total[list]"
    assert pickle.loads(pickle.dumps(r)) == r and isinstance(pickle.loads(pickle.dumps(r)), ResultRef)


@pytest.mark.parametrize("bad", [("", "x"), ("a b",), ("a", "x]y"), ("a", "")])
def test_result_ref_rejects_bad_segments(bad: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError):
        result_ref(*bad)


def test_result_ref_rejects_unknown_root() -> None:
    with pytest.raises(ConfigError):
        result_ref("a", root="results")


def test_v3_markers_validate_as_in_section_5_6() -> None:
    assert ref("tasks.items.0.id").to_wire() == {"$ref": "tasks.items.0.id"}
    assert ref_array("tasks.id").to_wire() == {"$refArray": "tasks.id"}
    assert ref_array("tasks.id").alias == "tasks"
    for bad in ("", "   ", ".a", "a.", "a..b"):
        with pytest.raises(ConfigError):
            ref(bad)
    with pytest.raises(ConfigError, match="dot"):
        ref_array("tasks")
    with pytest.raises(ConfigError):
        Ref(123)  # type: ignore[arg-type]


def test_user_data_that_looks_like_protocol_is_detected() -> None:
    assert looks_like_v2_reference({"fields": {"TITLE": "price $result[x]"}})
    assert looks_like_v2_reference({"fields": {"COMMENTS": "costs $TOTAL"}})
    assert looks_like_v2_reference({"filter": {"$next": 1}})
    assert not looks_like_v2_reference({"fields": {"TITLE": "$5 off"}, "id": result_ref("a", "id")})
    assert looks_like_v3_reference({"fields": {"meta": {"$ref": "x.y"}}})
    assert looks_like_v3_reference({"filter": [["x", "=", {"$REFARRAY": "a.b"}]]})
    assert not looks_like_v3_reference({"filter": [["id", "in", ref_array("a.id")]]})


def test_plan_sends_protocol_looking_commands_directly_in_place() -> None:
    commands, _ = normalize_calls(
        [
            ("crm.item.add", {"fields": {"title": "a"}}),
            ("crm.item.add", {"fields": {"title": "$result[c0][item][id]"}}),
            ("crm.item.add", {"fields": {"title": "c"}}),
            ("crm.item.add", {"fields": {"a.b": 1}, "x.y": 1}),
        ]
    )
    plan = plan_segments(commands, 2)
    assert [(s.kind, [c.key for c in s.commands]) for s in plan] == [
        ("batch", ["c0"]),
        ("direct", ["c1"]),
        ("batch", ["c2"]),
        ("direct", ["c3"]),
    ]
    v3, _ = normalize_calls(
        [("tasks.task.add", {"fields": {"x": {"$ref": "a.b"}}}), ("tasks.task.get", {"id": 1})]
    )
    assert [s.kind for s in plan_segments(v3, 3)] == ["direct", "batch"]


def test_references_must_point_at_an_earlier_command_of_the_same_batch() -> None:
    later, _ = normalize_calls(
        [("crm.item.get", {"id": result_ref(1, "items", 0, "id")}), ("crm.item.list", {})]
    )
    with pytest.raises(ConfigError, match="earlier"):
        plan_segments(later, 2)
    missing, _ = normalize_calls({"a": ("crm.item.get", {"id": result_ref("nope", "id")})})
    with pytest.raises(ConfigError, match="earlier"):
        plan_segments(missing, 2)
    across_direct, _ = normalize_calls(
        [
            ("crm.item.list", {"filter": {"TITLE": "$result"}}),
            ("crm.item.get", {"id": result_ref(0, "items")}),
        ]
    )
    with pytest.raises(ConfigError):
        plan_segments(across_direct, 2)
    mixed, _ = normalize_calls([("a.list", {}), ("b.get", {"id": result_ref(0), "t": "$result"})])
    with pytest.raises(ConfigError, match="cannot be sent safely"):
        plan_segments(mixed, 2)
    v3_dangling, _ = normalize_calls([("tasks.task.list", {"filter": [["id", "in", ref_array("zzz.id")]]})])
    with pytest.raises(ConfigError):
        plan_segments(v3_dangling, 3)


def test_markers_of_the_other_version_are_refused() -> None:
    v3_in_v2, _ = normalize_calls(
        [("a.list", {}), ("b.list", {"filter": [["id", "in", ref_array("c0.id")]]})]
    )
    with pytest.raises(ConfigError, match="v2"):
        plan_segments(v3_in_v2, 2)
    v2_in_v3, _ = normalize_calls([("a.list", {}), ("b.get", {"id": result_ref(0, "items", 0, "id")})])
    with pytest.raises(ConfigError, match="v2 reference"):
        plan_segments(v2_in_v3, 3)


def test_v2_body_rewrites_positional_references_and_round_trips() -> None:
    commands, _ = normalize_calls(
        [
            ("crm.item.list", {"entityTypeId": 2, "select": ["id"]}),
            ("crm.item.get", {"entityTypeId": 2, "id": result_ref(0, "items", 0, "id")}),
        ]
    )
    body = build_v2_batch_body(commands, halt=True)
    assert body["halt"] == 1
    method, _, query = body["cmd"]["c1"].partition("?")
    assert method == "crm.item.get"
    assert parse_str(query) == {"entityTypeId": "2", "id": "$result[c0][items][0][id]"}
    assert build_v2_batch_body(commands[:1], halt=False)["halt"] == 0


def test_v2_body_for_method_without_params() -> None:
    commands, _ = normalize_calls([("user.current", {})])
    assert build_v2_batch_body(commands, halt=False)["cmd"] == {"c0": "user.current"}


def test_v3_body_uses_aliases_and_wire_markers() -> None:
    commands, _ = normalize_calls(
        [
            ("tasks.task.list", {"select": ["id"]}),
            ("tasks.task.list", {"filter": [["id", "in", ref_array("0.id")]], "x": ref("c0.items.0.id")}),
        ]
    )
    body = build_v3_batch_body(commands)
    assert body[0] == {"method": "tasks.task.list", "query": {"select": ["id"]}, "as": "c0"}
    assert body[1]["query"] == {
        "filter": [["id", "in", {"$refArray": "c0.id"}]],
        "x": {"$ref": "c0.items.0.id"},
    }
    named, _ = normalize_calls({"tasks": ("tasks.task.list", {})})
    assert build_v3_batch_body(named)[0]["as"] == "tasks"


@pytest.mark.parametrize(
    ("method", "read"),
    [
        ("crm.item.list", True),
        ("crm.deal.get", True),
        ("user.current", True),
        ("crm.lead.fields", True),
        ("task.elapseditem.getlist", True),
        ("tasks.task.list", True),
        ("main.eventlog.tail", True),
        ("server.time", True),
        ("profile", True),
        ("CRM.ITEM.LIST", True),
        ("crm.item.add", False),
        ("crm.item.update", False),
        ("crm.item.delete", False),
        ("tasks.task.add", False),
        ("batch", False),
        ("crm.deal.productrows.set", False),
    ],
)
def test_read_write_classification(method: str, read: bool) -> None:
    from bitrix24_source.client.commands import is_read_method

    assert is_read_method(method) is read


def test_digit_string_targets_are_positions_too() -> None:
    commands, _ = normalize_calls(
        [("crm.item.list", {}), ("crm.item.get", {"id": result_ref("0", "items", 0, "id")})]
    )
    plan_segments(commands, 2)
    _, _, query = build_v2_batch_body(commands, halt=True)["cmd"]["c1"].partition("?")
    assert parse_str(query) == {"id": "$result[c0][items][0][id]"}
