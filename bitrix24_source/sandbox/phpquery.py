"""How the v2 server reads request parameters: PHP ``parse_str`` and the request merge of §1.5.

Hand-written because no library reproduces PHP's rules: ``a[b][c]=1`` nesting, ``a[]=x`` appends,
``+`` as space, ``.``/space in top-level names becoming ``_``, numeric-string keys becoming ints, and an
unclosed ``[`` turning into ``_``. ``urllib.parse.parse_qs`` implements none of these.

PHP arrays are returned in a canonical Python form so that method code sees the same value whatever the
encoding was (JSON body, form body, query string): an array with keys exactly ``0..n-1`` is a ``list``,
any other array a ``dict`` with ``str`` keys.
"""

from __future__ import annotations

import json
import math
import re
from email.parser import BytesParser
from email.policy import HTTP
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus

from bitrix24_source.sandbox.phpjson import is_sequential, php_int_key

_MAX_NESTING = 64  # php.ini max_input_nesting_level


def parse_str(query: str) -> dict[str, Any]:
    """Parse a query string exactly like PHP's ``parse_str`` and return the canonical array.

    Args:
        query: the raw (still percent-encoded) query string or form body.

    Returns:
        A dict of top-level names; nested PHP arrays are lists or dicts (see the module docstring).
    """
    root: dict[Any, Any] = {}
    nested = False
    for pair in query.split("&"):
        if not pair:
            continue
        name, sep, raw_value = pair.partition("=")
        # Fast paths: most names and values carry no escapes and most names no brackets.
        if "%" in name or "+" in name:
            name = _decode(name)
        if not sep:
            value = ""
        elif "%" in raw_value or "+" in raw_value:
            value = unquote_plus(raw_value)
        else:
            value = raw_value
        if name.isidentifier():
            root[name] = value
            continue
        path = _path_of(name)
        if len(path) == 2 and path[1] is not None:
            # `filter[>ID]=…`, `select[0]=…`: the usual nesting, stored without the general walk.
            nested = True
            child = root.get(path[0])
            if type(child) is not dict:
                child = root[path[0]] = {}
            child[path[1]] = value
        elif path:
            nested = True
            _store(root, path, value)
    if not nested:
        return root
    canonical = canonical_array(root)
    return canonical if type(canonical) is dict else {str(i): v for i, v in enumerate(canonical)}


# Names repeat across commands and requests (`filter[>ID]`, `select[0]`): decode and split each once.
_decode = lru_cache(maxsize=4096)(unquote_plus)

_SIMPLE_NESTED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[[^\[\]]*\])+)\Z")
_INDEX = re.compile(r"\[([^\]]*)\]")

PathKey = int | str | None  # None: append (`a[]`)


@lru_cache(maxsize=4096)
def _path_of(name: str) -> tuple[PathKey, ...]:
    """PHP's ``php_register_variable_ex`` name split: ``base[i1][i2]`` -> keys; ``()`` when PHP drops it."""
    simple = _SIMPLE_NESTED.match(name)
    if simple is not None:
        found = _INDEX.findall(simple.group(2))[:_MAX_NESTING]
        return (simple.group(1), *(_key(index) for index in found))
    name = name.lstrip(" ")
    bracket = name.find("[")
    # Only the part before the first '[' gets '.'/' ' mangled to '_'.
    base = (name if bracket < 0 else name[:bracket]).replace(".", "_").replace(" ", "_")
    indices: list[PathKey] = []
    if bracket >= 0:
        rest = name[bracket:]
        pos = 0
        while pos < len(rest) and rest[pos] == "[" and len(indices) < _MAX_NESTING:
            close = rest.find("]", pos + 1)
            if close < 0:
                if not indices:
                    # An unclosed first '[' is not an index: PHP keeps the rest of the name, with '_' for '['.
                    base = base + "_" + rest[pos + 1 :]
                break
            indices.append(_key(rest[pos + 1 : close]))
            pos = close + 1
    if not base:
        return ()
    return (_key(base), *indices)


def _key(index: str) -> PathKey:
    if index == "":
        return None
    int_key = php_int_key(index)
    return int_key if int_key is not None else index


def _register(root: dict[Any, Any], name: str, value: str) -> None:
    path = _path_of(name)
    if path:
        _store(root, path, value)


def _store(root: dict[Any, Any], path: tuple[PathKey, ...], value: str) -> None:
    node: dict[Any, Any] = root
    last = len(path) - 1
    for depth, key in enumerate(path):
        if key is None:
            key = _next_index(node)
        if depth == last:
            node[key] = value
            return
        child = node.get(key)
        if type(child) is not dict:
            child = {}
            node[key] = child
        node = child


def _next_index(node: dict[Any, Any]) -> int:
    ints = [k for k in node if type(k) is int]
    return max(ints) + 1 if ints and max(ints) >= 0 else 0


def canonical_array(value: Any) -> Any:
    """Turn a PHP-array-like value into canonical form: ``0..n-1`` keys give a list, else str-keyed dict.

    JSON objects such as ``{"0": "a", "1": "b"}`` are the same PHP array as ``["a", "b"]``, so they become
    lists too (§2.4). Empty dicts and empty lists are kept as they came.
    """
    kind = type(value)
    if kind is dict:
        # Leaves (strings from a query, scalars from JSON) are kept without a call: they are most values.
        if value and is_sequential(value):
            return [
                canonical_array(item) if isinstance(item, _CONTAINERS) else item for item in value.values()
            ]
        return {
            key if type(key) is str else str(key): canonical_array(item)
            if isinstance(item, _CONTAINERS)
            else item
            for key, item in value.items()
        }
    if kind is list:
        return [canonical_array(item) if isinstance(item, _CONTAINERS) else item for item in value]
    if isinstance(value, dict):
        return canonical_array(dict(value))
    return value


_CONTAINERS = (dict, list)


def _reject_constant(name: str) -> Any:
    # PHP's json_decode refuses the NaN / Infinity / -Infinity tokens that Python's json accepts.
    raise ValueError(f"invalid JSON token {name}")


def php_json_decode(body: bytes | str) -> Any:
    """Decode JSON as PHP's ``json_decode`` would: standard JSON only (raises ValueError otherwise)."""
    return json.loads(body, parse_constant=_reject_constant)


def decode_body(body: bytes, content_type: str) -> dict[str, Any]:
    """Decode a v2 request body the way ``CRestUtil::getRequestData`` does (§1.5 step 2).

    JSON bodies go through ``Json::decode``; invalid JSON is silently ``[]``. Multipart bodies are form
    fields (files are ignored: upload is not emulated). Everything else is ``parse_str``.
    """
    if not body:
        return {}
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime == "application/json":
        try:
            decoded = php_json_decode(body)
        except ValueError:
            return {}
        canonical = canonical_array(decoded)
        if isinstance(canonical, dict):
            return canonical
        if isinstance(canonical, list):
            return {str(i): v for i, v in enumerate(canonical)}
        return {}
    if mime == "multipart/form-data":
        return _parse_multipart(body, content_type)
    return parse_str(body.decode("utf-8", errors="replace"))


def _parse_multipart(body: bytes, content_type: str) -> dict[str, Any]:
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    root: dict[Any, Any] = {}
    if not message.is_multipart():
        return {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or part.get_filename() is not None:
            continue
        payload = part.get_payload(decode=True)
        text = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else ""
        _register(root, name, text)
    canonical = canonical_array(root)
    return canonical if isinstance(canonical, dict) else {str(i): v for i, v in enumerate(canonical)}


def merge_request(query: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """``array_replace(query, body)``: top-level body keys override query keys (§1.5 step 3)."""
    merged = dict(query)
    merged.update(body)
    return merged


_NON_METHOD_PARAMS = ("auth", "state")


def split_call_params(params: dict[str, Any]) -> tuple[dict[str, Any], int, bool]:
    """Pull ``start`` out as ``intval`` and drop ``state``, ``auth`` and ``bx24_*`` (§1.5 steps 4–5, §1.1).

    Returns:
        ``(method_params, start, start_given)``.
    """
    clean: dict[str, Any] = {}
    start = 0
    start_given = False
    for key, value in params.items():
        if key == "start":
            start = php_intval(value)
            start_given = True
        elif key in _NON_METHOD_PARAMS or key.startswith("bx24_"):
            continue
        else:
            clean[key] = value
    return clean, start, start_given


_LEADING_INT = re.compile(r"\s*([+-]?\d+)")


def php_intval(value: Any) -> int:
    """PHP ``intval``: ``"50abc"`` is 50, ``"abc"`` 0, floats truncate, arrays are 0 or 1."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else 0
    if isinstance(value, str):
        match = _LEADING_INT.match(value)
        if match is None:
            return 0
        number = int(match.group(1))
        # A numeric string with a fraction or exponent ("1e3") converts through float in PHP 7.1+.
        try:
            as_float = float(value.strip())
        except ValueError:
            return number
        return int(as_float) if math.isfinite(as_float) else number
    if isinstance(value, (dict, list)):
        return 1 if value else 0
    return 0


def php_truthy(value: Any) -> bool:
    """PHP ``(bool)`` cast: ``"0"``, ``""``, ``0``, ``0.0``, ``false``, ``null`` and ``[]`` are false.

    The string ``"false"`` is **true** (§4.1: ``halt=false`` in a query string halts).
    """
    if value is None:
        return False
    if isinstance(value, str):
        return value not in ("", "0")
    if isinstance(value, (dict, list)):
        return bool(value)
    return bool(value)


def php_strval(value: Any) -> str:
    """PHP string conversion of a scalar (``true`` is ``"1"``, ``null``/``false`` are ``""``, ``1.0`` is ``"1"``)."""
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        text = repr(value)
        return text.replace("e+", "E+").replace("e-", "E-")
    return str(value)


def is_numeric(value: Any) -> bool:
    """PHP ``is_numeric``: ints, floats and numeric strings (not bools)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, str):
        stripped = value.strip(" \t\n\r\v\f")
        if not stripped or "_" in stripped:
            return False
        try:
            float(stripped)
        except ValueError:
            return False
        return not stripped.lower().lstrip("+-").startswith(("inf", "nan"))
    return False
