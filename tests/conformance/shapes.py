"""Compare the shape of a documented answer with the sandbox's answer (no I/O).

A shape is what a client can trip over: the keys at each path, the kind of each value (int vs numeric string,
"Y"/"N", ISO date, bool, list, object) and the nesting. Values themselves (names, amounts, ids) are data and
are not compared; a documented `null` or empty list says nothing about the kind, so it matches anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}([+-]\d{2}:\d{2}|Z)?$")
_NUMERIC = re.compile(r"^-?\d+(\.\d+)?$")


def kind(value: Any) -> str:
    """The kind word of a JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    text = str(value)
    if text in ("Y", "N"):
        return "Y/N"
    if _ISO.match(text):
        return "iso-datetime"
    if _NUMERIC.match(text):
        return "numeric-string"
    if text == "":
        return "empty-string"
    return "string"


# Kinds a sample value cannot tell apart: a documented 19000 may be a float the portal prints without
# decimals; a documented "" or plain string and a "Y"/"N" or digits string are all strings.
_COMPATIBLE = [
    {"int", "float"},
    {"string", "empty-string", "Y/N", "numeric-string", "iso-datetime"},
]


def _compatible(a: str, b: str) -> bool:
    if a == b or "null" in (a, b):
        return True
    if {a, b} == {"int", "float"}:
        return True
    # A documented plain string says nothing more; typed strings must keep their kind.
    strings = _COMPATIBLE[1]
    if a in strings and b in strings:
        return "string" in (a, b) or "empty-string" in (a, b)
    return False


def differences(doc: Any, got: Any, path: str = "", *, extra_keys: bool = True) -> Iterator[str]:
    """Readable differences between a documented value and an answer, one string per path and problem."""
    dk, gk = kind(doc), kind(got)
    if dk == "object" and gk == "object":
        missing = sorted(set(doc) - set(got))
        # `time` grew keys over the years (operating, operating_reset_at); older pages show fewer of them.
        extra = sorted(set(got) - set(doc)) if extra_keys and path != ".time" else []
        if missing:
            yield f"{path or '.'}: documented keys missing: {', '.join(missing)}"
        if extra:
            yield f"{path or '.'}: keys not documented: {', '.join(extra)}"
        for key in sorted(set(doc) & set(got)):
            yield from differences(doc[key], got[key], f"{path}.{key}", extra_keys=extra_keys)
        return
    if dk == "list" and gk == "list":
        if not doc or not got:
            return
        merged_doc = _merge(doc)
        merged_got = _merge(got)
        yield from differences(merged_doc, merged_got, f"{path}[]", extra_keys=extra_keys)
        return
    if not _compatible(dk, gk):
        yield f"{path or '.'}: documented {dk}, sandbox {gk}"


def _merge(items: list[Any]) -> Any:
    """One representative of a list: objects are merged key-wise (first non-null value wins)."""
    if all(isinstance(x, dict) for x in items):
        out: dict[str, Any] = {}
        for item in items:
            for key, value in item.items():
                if out.get(key) is None:
                    out[key] = value
        return out
    return next((x for x in items if x is not None), items[0])
