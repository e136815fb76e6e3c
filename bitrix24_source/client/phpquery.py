"""The v2 query encoder (PHP ``http_build_query`` as the portal's ``parse_str`` reads it) and its checks; no I/O.

A v2 batch carries each command as ``method?query`` (§1.5, §4.1), so the query string must mean to PHP exactly
what the caller's parameters mean. The encoder has explicit rules for the values PHP has no single spelling for:

* ``True``/``False`` are sent as ``"Y"``/``"N"`` (the Bitrix convention for flags) or, with
  ``bool_style="10"``, as ``"1"``/``"0"`` (what boolean user fields filter on, §7.2). Python's ``"True"`` or
  JS's ``"true"`` would reach PHP as non-empty strings and are never sent (§4.1 "Booleans do not round-trip").
* ``None`` is sent as an empty value (``a=``): PHP reads it as ``""``, which Bitrix treats as "not set"/"clear".
* An empty list or dict is **omitted**. ``a=`` would make PHP see the string ``""`` where it expects an array,
  and PHP cannot express an empty array in a query string. For a top-level parameter that is harmless (an
  empty ``filter`` or ``select`` is no filter or select); deeper down it is not (``filter: {"@id": []}`` would
  match every row, ``fields: {"contactIds": []}`` would clear nothing), so :func:`has_nested_empty` tells the
  batch planner to send such a command as a direct JSON call instead.
* Percent-encoding is RFC 3986 (``%20`` for a space, as ``rawurlencode``); brackets stay literal and the key
  inside a bracket is itself percent-encoded (``filter[%3EID]=5``).
* ``int``/``float``/``Decimal`` use ``str()``; ``date``/``datetime``/``time`` use ``isoformat()``; any other
  type is a :class:`~bitrix24_source.errors.ConfigError`.

:func:`encodable_v2` and :func:`has_nested_empty` say whether a command survives this encoding; the batch
planner sends the ones that do not as direct JSON calls.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final
from urllib.parse import quote

from bitrix24_source.client.commands import BoolStyle, Ref, walk
from bitrix24_source.errors import ConfigError

__all__ = ["encodable_v2", "has_nested_empty", "http_build_query"]


def _scalar(value: Any, bool_style: BoolStyle) -> str:
    if isinstance(value, bool):
        if bool_style == "YN":
            return "Y" if value else "N"
        return "1" if value else "0"
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (float, Decimal)):
        if not (value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)):
            # PHP would read "inf"/"nan" as text; the direct JSON call refuses them too (transport.encode_json).
            raise ConfigError(f"cannot send the non-finite number {value!r} in a v2 query")
        return str(value)
    if isinstance(value, (_dt.date, _dt.datetime, _dt.time)):
        return value.isoformat()
    raise ConfigError(f"cannot encode a value of type {type(value).__name__} in a v2 query")


def _encode_into(out: list[str], name: str, value: Any, bool_style: BoolStyle) -> None:
    if isinstance(value, Ref):
        raise ConfigError("v3 $ref/$refArray markers are not substituted in v2 (§5.6); use result_ref()")
    if isinstance(value, Mapping):
        for k, v in value.items():
            _encode_into(out, f"{name}[{quote(str(k), safe='')}]", v, bool_style)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _encode_into(out, f"{name}[{i}]", v, bool_style)
    else:
        out.append(f"{name}={quote(_scalar(value, bool_style), safe='')}")


def http_build_query(params: Mapping[str, Any], *, bool_style: BoolStyle = "YN") -> str:
    """Encode ``params`` as a PHP-style query string (nested ``a[b][0]=``), see the module docstring.

    Raises:
        ConfigError: for values that cannot be encoded, or keys PHP would read differently
            (see :func:`encodable_v2`).
    """
    problem = _encoding_problem(params)
    if problem:
        raise ConfigError(problem)
    out: list[str] = []
    try:
        for k, v in params.items():
            _encode_into(out, quote(str(k), safe=""), v, bool_style)
    except UnicodeEncodeError as exc:
        # Lone surrogates (text read with errors="surrogateescape") have no UTF-8 form.
        raise ConfigError(f"a text parameter is not valid Unicode: {exc.reason}") from None
    return "&".join(out)


def _encoding_problem(params: Mapping[str, Any]) -> str | None:
    for key in params:
        text = str(key)
        # PHP's parse_str turns '.' and ' ' in top-level names into '_' and treats '[' as the start of a path.
        if text == "" or any(ch in text for ch in ".[] ") or text != text.strip():
            return (
                f"top-level key {text!r} cannot be sent in a v2 query string (PHP parse_str would rename it)"
            )
    for node in walk(params):
        if isinstance(node, Mapping):
            for k in node:
                text = str(k)
                if text == "" or "[" in text or "]" in text:
                    return f"key {text!r} cannot be sent in a v2 query string (brackets/empty keys are paths)"
    return None


_EMPTY_MEANS_ABSENT: Final = frozenset({"filter", "select", "order", "sort", "params", "start"})
"""Top-level parameters for which an empty list/dict means the same as leaving the parameter out (no filter,
default select/order); any other top-level empty (e.g. `productRows: []`, "clear all rows") must reach PHP as
an empty array, which only a JSON body can carry."""


def has_nested_empty(params: Mapping[str, Any]) -> bool:
    """True when an empty list or dict would be dropped by a v2 query string and change the command's meaning.

    That is any empty container below a top-level parameter, and a top-level empty one except for the
    parameters in :data:`_EMPTY_MEANS_ABSENT`.
    """
    for key, value in params.items():
        if isinstance(value, (Mapping, list, tuple)) and not value:
            if str(key).lower() not in _EMPTY_MEANS_ABSENT:
                return True
            continue
        if isinstance(value, Mapping):
            children: Any = value.values()
        elif isinstance(value, (list, tuple)):
            children = value
        else:
            continue
        for child in children:
            if any(isinstance(node, (Mapping, list, tuple)) and not node for node in walk(child)):
                return True
    return False


def encodable_v2(params: Mapping[str, Any]) -> bool:
    """True when ``params`` survive the v2 query-string encoding (key names PHP keeps as they are)."""
    return _encoding_problem(params) is None
