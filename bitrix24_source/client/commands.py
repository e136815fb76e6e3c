"""Pure values and builders: commands, per-command results, reference markers and the v2 query encoder.

Nothing here does I/O (STYLE.md rule 1). The v2 encoder reproduces PHP ``http_build_query`` as the portal's
``parse_str`` reads it (§1.5, §4.1) with explicit rules for the values PHP has no single spelling for:

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
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import quote

from bitrix24_source.errors import ConfigError

if TYPE_CHECKING:
    from bitrix24_source.errors import Bitrix24Error

__all__ = [
    "Command",
    "CommandResult",
    "Outcome",
    "Ref",
    "ResultRef",
    "TimeInfo",
    "encodable_v2",
    "has_nested_empty",
    "http_build_query",
    "is_read_method",
    "iter_refs",
    "iter_result_refs",
    "looks_like_v2_reference",
    "looks_like_v3_reference",
    "ref",
    "ref_array",
    "result_ref",
]

Outcome = Literal["ok", "error", "not_executed", "unknown"]
BoolStyle = Literal["YN", "10"]

# §4.3: the server's reference regex is /\$(result|next|total|time|error)([^\s]*)/i, applied to values and keys.
_V2_REFERENCE = re.compile(r"\$(result|next|total|time|error)", re.IGNORECASE)
_V3_MARKER_KEYS = frozenset({"$ref", "$refarray"})


# ---------------------------------------------------------------------------------------------------------------
# Reference markers


_ROOTS = ("result", "next", "total", "time", "error")


class ResultRef(str):
    """An intended v2 batch reference such as ``$result[cmd][items][49][id]`` (§4.3).

    It *is* the wire string (a ``str`` subclass), so it can be put anywhere a value goes; being a distinct type
    is what tells it apart from user data that merely looks like a reference (DESIGN.md: user data is never
    protocol). ``target`` may be an ``int`` for list-style calls: it names the command at that input position
    and is rewritten to that command's generated key when the batch is built.
    """

    root: str
    target: str | int
    path: tuple[str, ...]

    def __new__(cls, root: str, target: str | int, path: Sequence[str | int] = ()) -> ResultRef:
        if root not in _ROOTS:
            raise ConfigError(f"reference root must be one of {_ROOTS}, got {root!r}")
        segments = tuple(str(p) for p in path)
        for seg in (str(target), *segments):
            if seg == "" or "[" in seg or "]" in seg or any(ch.isspace() for ch in seg):
                # §4.3: segments are matched by \[([^\]]+)\] and the reference ends at whitespace.
                raise ConfigError(
                    f"invalid reference segment {seg!r}: must be non-empty, without brackets/space"
                )
        text = f"${root}[{target}]" + "".join(f"[{s}]" for s in segments)
        obj = super().__new__(cls, text)
        obj.root = root
        obj.target = target
        obj.path = segments
        return obj

    def with_target(self, key: str) -> ResultRef:
        """The same reference pointing at command ``key``."""
        return ResultRef(self.root, key, self.path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (ResultRef, (self.root, self.target, self.path))


def result_ref(command: str | int, *path: str | int, root: str = "result") -> ResultRef:
    """Build a v2 batch reference to an earlier command's result.

    ``result_ref("deals", "items", 49, "id")`` is ``$result[deals][items][49][id]``; ``root`` may be
    ``result``, ``next``, ``total``, ``time`` or ``error`` (§4.3). For list-style calls pass the input position
    (``result_ref(0, "items", 0, "id")``). If the whole parameter value is the reference, the server substitutes
    the resolved node (which may be an array); embedded in a longer string it is replaced only by a string.
    """
    return ResultRef(root, command, path)


@dataclass(frozen=True, slots=True)
class Ref:
    """A v3 batch reference marker, sent as ``{"$ref": path}`` or ``{"$refArray": path}`` (§5.6)."""

    path: str
    array: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path.strip():
            raise ConfigError("v3 reference path must be a non-empty string (§5.6)")
        if self.array and "." not in self.path:
            raise ConfigError(f"$refArray path must contain a dot ('alias.field'), got {self.path!r} (§5.6)")
        if (
            self.path != self.path.strip()
            or self.path.startswith(".")
            or self.path.endswith(".")
            or ".." in self.path
        ):
            raise ConfigError(f"v3 reference path {self.path!r} has an empty segment")

    @property
    def alias(self) -> str:
        """The command the reference points at (its ``as`` alias or numeric index)."""
        return self.path.split(".", 1)[0]

    def to_wire(self) -> dict[str, str]:
        return {"$refArray" if self.array else "$ref": self.path}


def ref(path: str) -> Ref:
    """``{"$ref": "alias.path.to.field"}``: one value from an earlier v3 batch command's ``item``/``items``."""
    return Ref(path, array=False)


def ref_array(path: str) -> Ref:
    """``{"$refArray": "alias.field"}``: ``field`` collected across an earlier command's ``items`` (§5.6)."""
    return Ref(path, array=True)


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield k
            yield from _walk(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _walk(v)


def iter_result_refs(params: Any) -> Iterator[ResultRef]:
    """Every :class:`ResultRef` inside ``params``."""
    for node in _walk(params):
        if isinstance(node, ResultRef):
            yield node


def iter_refs(params: Any) -> Iterator[Ref]:
    """Every v3 :class:`Ref` marker inside ``params``."""
    for node in _walk(params):
        if isinstance(node, Ref):
            yield node


def looks_like_v2_reference(params: Any) -> bool:
    """True when a plain string value or key (not a :class:`ResultRef`) would be read as a ``$result``-style
    reference by the v2 batch parser (§4.3). Such a command must not go inside a v2 batch."""
    return any(
        isinstance(node, str) and not isinstance(node, ResultRef) and _V2_REFERENCE.search(node) is not None
        for node in _walk(params)
    )


def looks_like_v3_reference(params: Any) -> bool:
    """True when user data holds a dict with a ``$ref``/``$refArray`` key that the v3 batch would substitute."""
    return any(
        isinstance(node, Mapping) and any(isinstance(k, str) and k.lower() in _V3_MARKER_KEYS for k in node)
        for node in _walk(params)
    )


# ---------------------------------------------------------------------------------------------------------------
# v2 query encoder (PHP http_build_query as parse_str reads it)


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
            # PHP would read "inf"/"nan" as text; the direct JSON call refuses them too (client._dumps).
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
    for node in _walk(params):
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
            if any(isinstance(node, (Mapping, list, tuple)) and not node for node in _walk(child)):
                return True
    return False


def encodable_v2(params: Mapping[str, Any]) -> bool:
    """True when ``params`` survive the v2 query-string encoding (key names PHP keeps as they are)."""
    return _encoding_problem(params) is None


# ---------------------------------------------------------------------------------------------------------------
# Read/write classification (for retries, §6.6)

_READ_SUFFIXES = frozenset(
    {
        "list",
        "get",
        "fields",
        "current",
        "time",
        "getlist",
        "get_list",
        "getfields",
        "tail",
        "count",
        "search",
        "items",
        "info",
        "aggregate",
        "openapi",
        "findbycomm",
    }
)
_READ_METHODS = frozenset(
    {"profile", "scope", "methods", "app.info", "user.admin", "server.time", "documentation"}
)


def is_read_method(method: str) -> bool:
    """True when ``method`` only reads data, so resending it after an ambiguous failure is safe.

    A method is a read if its last dot-separated segment is one of :data:`_READ_SUFFIXES` (``crm.item.list``,
    ``crm.deal.get``, ``user.current``, ``task.elapseditem.getlist``…) or it is one of a few known readers
    (``profile``, ``scope``, ``methods``…). ``batch`` itself is decided by its commands.
    """
    name = method.strip().lower()
    if name in _READ_METHODS:
        return True
    last = name.rsplit(".", 1)[-1]
    return last in _READ_SUFFIXES


# ---------------------------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True, slots=True)
class TimeInfo:
    """The ``time`` object of a response (§2.1); fields absent on older portals are None."""

    start: float | None = None
    finish: float | None = None
    duration: float | None = None
    processing: float | None = None
    date_start: str | None = None
    date_finish: str | None = None
    operating: float | None = None
    operating_reset_at: float | None = None

    @classmethod
    def from_payload(cls, payload: Any) -> TimeInfo | None:
        """Build from a ``time`` object; None when the payload is not an object."""
        if not isinstance(payload, Mapping):
            return None

        def num(key: str) -> float | None:
            value = payload.get(key)
            if isinstance(value, bool) or value is None:
                return None
            try:
                return float(value)
            except (TypeError, ValueError):
                return None

        def text(key: str) -> str | None:
            value = payload.get(key)
            return None if value is None else str(value)

        return cls(
            start=num("start"),
            finish=num("finish"),
            duration=num("duration"),
            processing=num("processing"),
            date_start=text("date_start"),
            date_finish=text("date_finish"),
            operating=num("operating"),
            operating_reset_at=num("operating_reset_at"),
        )


@dataclass(frozen=True, slots=True)
class Command:
    """One REST call to be sent alone or inside a batch.

    Attributes:
        method: REST method name (``crm.item.list``).
        params: parameters as a mapping (may hold :class:`ResultRef`/:class:`Ref` markers).
        key: batch command key (``c0``… or the user's name).
        index: position in the caller's input.
        alias: v3 ``as`` alias (named v3 commands use their name).
    """

    method: str
    params: Mapping[str, Any] = field(default_factory=dict)
    key: str = ""
    index: int = 0
    alias: str | None = None

    @property
    def is_read(self) -> bool:
        return is_read_method(self.method)


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The outcome of one command of a batch.

    Attributes:
        key: command key (generated ``c<index>`` for list input, the name for named input).
        index: position in the caller's input.
        method: REST method of the command.
        ok: True when the command succeeded (``outcome == "ok"``).
        result: the command's ``result`` (may legitimately be None, ``[]`` or ``False``).
        total: ``result_total`` for list methods (v2), else None.
        next: ``result_next`` when more rows remain (v2), else None.
        time: per-command ``result_time`` (v2) or the batch-level time (v3).
        error: the error when the command failed or its outcome is unknown.
        outcome: ``ok`` | ``error`` | ``not_executed`` (halted before it, or refused before execution) |
            ``unknown`` (a write whose request ended ambiguously: it may or may not have been applied).
    """

    key: str
    index: int
    method: str
    ok: bool
    result: Any = None
    total: int | None = None
    next: int | None = None
    time: TimeInfo | None = None
    error: Bitrix24Error | None = None
    outcome: Outcome = "ok"

    # SDK-like view (b24jssdk AjaxResult): isSuccess / getData / getErrorMessages.
    @property
    def is_success(self) -> bool:
        return self.ok

    @property
    def data(self) -> Any:
        return self.result

    @property
    def error_messages(self) -> list[str]:
        return [] if self.error is None else [str(self.error)]
