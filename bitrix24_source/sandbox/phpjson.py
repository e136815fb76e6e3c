"""PHP-style JSON output, as ``Bitrix\\Main\\Web\\Json::encode`` produces it (§2.4).

PHP has one array type for both lists and maps, so the encoder decides per value:

* an empty array is ``[]`` (never ``{}``): ``"result_error": []`` in every clean batch;
* an array whose keys are exactly the integers ``0..n-1`` in order is a JSON list, whatever the
  caller wrote; numeric-string keys such as ``"35943"`` count as integers (PHP converts them);
* ``/`` is written ``\\/`` and ``<``/``>`` as ``\\u003C``/``\\u003E``; Cyrillic stays unescaped.

Python values stand for PHP arrays as follows: a ``list``/``tuple`` is a list, a ``dict`` is an array whose
keys are PHP keys (``str`` or ``int``). :func:`php_value` applies the list-vs-object rule recursively;
:func:`encode` does that and then serialises with the C encoder and targeted replaces (fast: no per-string
Python escaping).
"""

from __future__ import annotations

import json
import re
from typing import Any

_CANONICAL_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,18})\Z")
_INT64_MAX = 2**63 - 1


def php_int_key(key: object) -> int | None:
    """Return the integer PHP would use for an array key, or None when the key stays a string.

    PHP turns a decimal-integer string without leading zeros, ``+`` or spaces (``"0"``, ``"35943"``, ``"-5"``)
    into an int key; ``"05"``, ``"1.0"`` or ``"-0"`` stay strings.
    """
    if isinstance(key, bool):
        return int(key)
    if isinstance(key, int):
        return key
    if type(key) is str:
        if key.isdigit() and key.isascii() and len(key) < 19:
            return int(key) if key[0] != "0" or key == "0" else None
        if not key or key[0] not in "-123456789":
            return None
    if isinstance(key, str) and _CANONICAL_INT.match(key) and key != "-0":
        value = int(key)
        if -_INT64_MAX - 1 <= value <= _INT64_MAX:
            return value
    return None


def is_sequential(mapping: dict[Any, Any]) -> bool:
    """True when the keys of ``mapping`` are exactly 0..n-1 in insertion order (PHP list semantics)."""
    for expected, key in enumerate(mapping):
        if key == expected and not isinstance(key, bool):
            continue
        if isinstance(key, str) and key == str(expected):
            continue
        return False
    return True


def php_value(value: Any) -> Any:
    """Return ``value`` with every dict turned into what PHP's encoder would emit for that array.

    Empty dicts become ``[]``, dicts keyed ``0..n-1`` become lists, and other dicts keep their keys as
    strings. Containers that need no change are returned as they are (no copy): rows of scalars, the bulk
    of every response, cost one pass over their values.
    """
    kind = type(value)
    if kind is dict:
        if not value:
            return []
        first = next(iter(value))
        if (first == 0 or first == "0") and is_sequential(value):
            return [php_value(item) for item in value.values()]
        changed: dict[str, Any] | None = None
        for key, item in value.items():
            item_kind = type(item)
            if item_kind is dict or item_kind is list or item_kind is tuple:
                new_item = php_value(item)
                if new_item is not item:
                    if changed is None:
                        changed = {}
                    changed[key] = new_item
            if type(key) is not str:
                changed = {} if changed is None else changed
        if changed is None:
            return value
        return {key if type(key) is str else str(key): changed.get(key, item) for key, item in value.items()}
    if kind is list or kind is tuple:
        out: list[Any] | None = None
        for index, item in enumerate(value):
            item_kind = type(item)
            if item_kind is dict or item_kind is list or item_kind is tuple:
                new_item = php_value(item)
                if new_item is not item:
                    if out is None:
                        out = list(value)
                    out[index] = new_item
        if out is not None:
            return out
        return value if kind is list else list(value)
    if isinstance(value, dict):
        return php_value(dict(value))
    if isinstance(value, (list, tuple)):
        return php_value(list(value))
    return value


def encode(value: Any) -> bytes:
    """Serialise ``value`` to UTF-8 bytes exactly as the Bitrix24 server would (§2.4).

    Args:
        value: the response body as Python values (dicts for PHP arrays, lists for lists).

    Returns:
        The JSON body. ``/``, ``<`` and ``>`` can only occur inside JSON strings, so replacing them in the
        whole text is exact.
    """
    text = json.dumps(php_value(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    if "/" in text:
        text = text.replace("/", "\\/")
    if "<" in text:
        text = text.replace("<", "\\u003C")
    if ">" in text:
        text = text.replace(">", "\\u003E")
    # PHP escapes the two JavaScript line terminators unless JSON_UNESCAPED_LINE_TERMINATORS is given.
    if "\u2028" in text or "\u2029" in text:
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text.encode("utf-8")
