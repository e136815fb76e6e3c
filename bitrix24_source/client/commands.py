"""Command values: commands, per-command results, ``time`` objects and batch reference markers; no I/O.

:class:`Command` is what the client sends, :class:`CommandResult` what it reports per command, :class:`TimeInfo`
the ``time`` object of an answer (§2.1). :func:`result_ref` (v2) and :func:`ref`/:func:`ref_array` (v3) mark the
values that are meant as batch references, so user data that merely looks like one is never read as protocol
(DESIGN.md). :func:`is_read_method` says which methods only read, which decides what may be resent (§6.6). The v2
query encoder is in :mod:`bitrix24_source.client.phpquery`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

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
    "check_method",
    "is_read_method",
    "iter_refs",
    "iter_result_refs",
    "looks_like_v2_reference",
    "looks_like_v3_reference",
    "ref",
    "ref_array",
    "result_ref",
    "walk",
]

Outcome = Literal["ok", "error", "not_executed", "unknown"]
BoolStyle = Literal["YN", "10"]

# §4.3: the server's reference regex is /\$(result|next|total|time|error)([^\s]*)/i, applied to values and keys.
_V2_REFERENCE = re.compile(r"\$(result|next|total|time|error)", re.IGNORECASE)
_V3_MARKER_KEYS = frozenset({"$ref", "$refarray"})
_METHOD_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


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


def walk(value: Any) -> Iterator[Any]:
    """Every node of a parameter tree, depth first: the value itself, then each key and each nested value."""
    yield value
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield k
            yield from walk(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from walk(v)


def iter_result_refs(params: Any) -> Iterator[ResultRef]:
    """Every :class:`ResultRef` inside ``params``."""
    for node in walk(params):
        if isinstance(node, ResultRef):
            yield node


def iter_refs(params: Any) -> Iterator[Ref]:
    """Every v3 :class:`Ref` marker inside ``params``."""
    for node in walk(params):
        if isinstance(node, Ref):
            yield node


def looks_like_v2_reference(params: Any) -> bool:
    """True when a plain string value or key (not a :class:`ResultRef`) would be read as a ``$result``-style
    reference by the v2 batch parser (§4.3). Such a command must not go inside a v2 batch."""
    return any(
        isinstance(node, str) and not isinstance(node, ResultRef) and _V2_REFERENCE.search(node) is not None
        for node in walk(params)
    )


def looks_like_v3_reference(params: Any) -> bool:
    """True when user data holds a dict with a ``$ref``/``$refArray`` key that the v3 batch would substitute."""
    return any(
        isinstance(node, Mapping) and any(isinstance(k, str) and k.lower() in _V3_MARKER_KEYS for k in node)
        for node in walk(params)
    )


# ---------------------------------------------------------------------------------------------------------------
# Method names and the read/write classification (for retries, §6.6)

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


def check_method(method: str) -> str:
    """``method`` without surrounding spaces, once it is a plausible REST method name (it becomes a URL path).

    Raises:
        ConfigError: not a string of letters, digits, ``_``, ``.`` and ``-``.
    """
    if not isinstance(method, str) or not _METHOD_NAME.match(method.strip()):
        raise ConfigError(f"invalid REST method name {method!r}")
    return method.strip()


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
