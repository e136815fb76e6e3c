"""The v2 query encoder against the sandbox's independent PHP ``parse_str`` (§1.5, §4.1).

Two implementations written from the protocol notes must agree: whatever ``http_build_query`` produces, the
sandbox's parser must read back as the value PHP would see (booleans as Y/N or 1/0, None as "", empty arrays
omitted, 0..n-1 keyed arrays as lists).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitrix24_source.client.commands import ref
from bitrix24_source.client.phpquery import encodable_v2, has_nested_empty, http_build_query
from bitrix24_source.errors import ConfigError
from bitrix24_source.sandbox.phpquery import parse_str

_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_NESTED_KEY = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="[]"), min_size=1, max_size=8
)
_TOP_KEY = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Cc"), blacklist_characters="[]. "),
    min_size=1,
    max_size=8,
)
_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    _TEXT,
)
_VALUE = st.recursive(
    _SCALAR,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(_NESTED_KEY, children, max_size=4)
    ),
    max_leaves=12,
)
_PARAMS = st.dictionaries(_TOP_KEY, _VALUE, max_size=5)


def _expected(value: Any, bool_style: str) -> Any:
    """What PHP holds after parsing: our documented rules, written independently of both implementations."""
    if isinstance(value, bool):
        return ("Y" if value else "N") if bool_style == "YN" else ("1" if value else "0")
    if value is None:
        return ""
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value
    items = list(value.items()) if isinstance(value, dict) else [(str(i), v) for i, v in enumerate(value)]
    out: dict[str, Any] = {}
    for key, item in items:
        expected = _expected(item, bool_style)
        if expected is _OMITTED:
            continue
        out[str(key)] = expected
    if not out:
        return _OMITTED
    if list(out) == [str(i) for i in range(len(out))]:
        return list(out.values())
    return out


_OMITTED = object()


def _php_top(params: dict[str, Any], bool_style: str) -> dict[str, Any]:
    out = {}
    for key, value in params.items():
        expected = _expected(value, bool_style)
        if expected is not _OMITTED:
            out[key] = expected
    return out


@settings(max_examples=300, deadline=None)
@given(params=_PARAMS, bool_style=st.sampled_from(["YN", "10"]))
def test_round_trip_through_php_parse_str(params: dict[str, Any], bool_style: str) -> None:
    query = http_build_query(params, bool_style=bool_style)  # type: ignore[arg-type]
    assert parse_str(query) == _php_top(params, bool_style)


def test_known_encodings() -> None:
    assert http_build_query({"fields": {"TITLE": "A & B"}}) == "fields[TITLE]=A%20%26%20B"
    assert http_build_query({"filter": {">ID": 5}}) == "filter[%3EID]=5"
    assert http_build_query({"select": ["ID", "TITLE"]}) == "select[0]=ID&select[1]=TITLE"
    assert http_build_query({"ok": True, "no": False, "none": None}) == "ok=Y&no=N&none="
    assert http_build_query({"ok": True, "no": False}, bool_style="10") == "ok=1&no=0"
    assert http_build_query({"filter": {}, "select": [], "id": 1}) == "id=1"


def test_empty_filter_is_omitted_not_a_string() -> None:
    assert parse_str(http_build_query({"filter": {}, "entityTypeId": 2})) == {"entityTypeId": "2"}


def test_dates_decimals_and_unknown_types() -> None:
    query = http_build_query(
        {"d": dt.date(2024, 5, 1), "t": dt.datetime(2024, 5, 1, 12, 0), "m": Decimal("1.50")}
    )
    assert parse_str(query) == {"d": "2024-05-01", "t": "2024-05-01T12:00:00", "m": "1.50"}
    with pytest.raises(ConfigError):
        http_build_query({"x": object()})


@pytest.mark.parametrize(
    "params", [{"a.b": 1}, {"a b": 1}, {"a[b]": 1}, {"": 1}, {"f": {"x]y": 1}}, {"f": {"": 1}}]
)
def test_keys_php_would_rename_are_refused(params: dict[str, Any]) -> None:
    assert not encodable_v2(params)
    with pytest.raises(ConfigError):
        http_build_query(params)


def test_v3_markers_are_refused_in_v2() -> None:
    with pytest.raises(ConfigError, match="not substituted"):
        http_build_query({"filter": {"ID": ref("a.id")}})


def test_empty_containers_that_would_change_a_commands_meaning_are_detected() -> None:
    # A query string drops empty arrays (§1.5): where "empty" means "absent" that is harmless ...
    assert not has_nested_empty({"entityTypeId": 2, "filter": {}, "select": [], "order": {}})
    # ... but an empty filter value, or a top-level "clear everything" list, would silently change meaning.
    assert has_nested_empty({"filter": {"@id": []}})
    assert has_nested_empty({"id": 5, "productRows": []})
    assert has_nested_empty({"fields": {"contactIds": []}})


def test_text_that_is_not_valid_unicode_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not valid Unicode"):
        http_build_query({"fields": {"title": "caf\udce9"}})
