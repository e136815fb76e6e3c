"""Pure batch logic: the three call formats, chunking, planning, body building and result splitting; no I/O.

The client sends what these functions build and hands the decoded body back, so all of it is tested without HTTP.

* Input formats (b24jssdk ``BatchV2.make``): a list of ``(method, params)`` tuples, a list of
  ``{"method", "params"}`` dicts, or a dict of named commands whose values are either form.
* Keys: list input gets generated non-numeric keys ``c<index>``; names are kept but numeric names are refused,
  because PHP turns numeric-string keys into ints and then encodes the sections as JSON lists, which loses the
  mapping from errors to commands (§2.4, recorded in ``crm_get_batch_mix_success_and_errors.json``).
* User data is never protocol (DESIGN.md): a v2 command whose plain strings look like ``$result[…]`` (§4.3), or
  whose keys PHP would rename, and a v3 command holding a user dict with ``$ref``/``$refArray`` keys (§5.6), is
  planned as a *direct* call in its place instead of going inside a batch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from bitrix24_source.client.commands import (
    BoolStyle,
    Command,
    CommandResult,
    Outcome,
    Ref,
    ResultRef,
    TimeInfo,
    iter_refs,
    iter_result_refs,
    looks_like_v2_reference,
    looks_like_v3_reference,
)
from bitrix24_source.client.phpquery import encodable_v2, has_nested_empty, http_build_query
from bitrix24_source.errors import (
    BatchCommandError,
    Bitrix24Error,
    ConfigError,
    TransportError,
    error_from_response,
)

__all__ = [
    "MAX_BATCH",
    "Segment",
    "build_v2_batch_body",
    "build_v3_batch_body",
    "chunked",
    "normalize_calls",
    "parse_call_payload",
    "plan_segments",
    "split_batch",
    "split_v2_batch",
    "split_v3_batch",
]

# CRestUtil::BATCH_MAX_LENGTH (§4.2); the SDKs hold v3 to the same number (§5.6).
MAX_BATCH = 50

# Validated at run time by normalize_calls(); kept loose so callers' own tuple/dict types fit.
Calls = Sequence[Any] | Mapping[str, Any]

T = TypeVar("T")

_NUMERIC = re.compile(r"^\s*[+-]?\d+\s*$")


def _validate_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"command names must be non-empty strings, got {name!r}")
    if _NUMERIC.match(name):
        raise ConfigError(
            f"command name {name!r} is numeric: PHP turns numeric keys into ints and the portal then returns "
            "the batch sections as lists, so errors can no longer be matched to commands (§2.4); use a "
            "non-numeric name"
        )
    if any(ch in name for ch in "[]") or any(ch.isspace() for ch in name):
        raise ConfigError(
            f"command name {name!r} must not contain brackets or whitespace ($result paths, §4.3)"
        )
    if "." in name:
        raise ConfigError(
            f"command name {name!r} must not contain '.': a v3 reference reads 'alias.path', so "
            "ref('my.tasks.id') would point at a command 'my' (§5.6)"
        )
    return name


def _one(item: Any, where: str) -> tuple[str, Mapping[str, Any]]:
    if isinstance(item, Mapping):
        if "method" not in item:
            raise ConfigError(f"{where}: a command dict needs a 'method' key")
        unknown = set(item) - {"method", "params"}
        if unknown:
            # b24jssdk warns about 'query' (the v3 wire name) silently dropping arguments; we refuse instead.
            raise ConfigError(f"{where}: unknown command keys {sorted(unknown)}; arguments go in 'params'")
        method, params = item["method"], item.get("params")
    elif isinstance(item, (tuple, list)) and len(item) in (1, 2):
        method = item[0]
        params = item[1] if len(item) == 2 else None
    else:
        raise ConfigError(f"{where}: expected (method, params) or {{'method', 'params'}}, got {item!r}")
    if not isinstance(method, str) or not method.strip():
        raise ConfigError(f"{where}: method must be a non-empty string, got {method!r}")
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise ConfigError(f"{where}: params must be a mapping, got {type(params).__name__}")
    return method.strip(), params


def normalize_calls(
    calls: Calls, *, allow_named: bool = True, start_index: int = 0
) -> tuple[list[Command], bool]:
    """Turn any of the three input formats into commands with keys, in input order.

    Returns:
        (commands, named): ``named`` is True for dict input.

    Raises:
        ConfigError: malformed commands, numeric names, or named input where it is not allowed.
    """
    if isinstance(calls, Mapping):
        if not allow_named:
            raise ConfigError(
                "batch_by_chunk does not accept named commands (as in b24jssdk BatchByChunk): pass a list of "
                "(method, params) tuples or {'method', 'params'} dicts"
            )
        commands = []
        for i, (name, item) in enumerate(calls.items()):
            key = _validate_name(name)
            method, params = _one(item, f"command {name!r}")
            commands.append(Command(method, params, key=key, index=start_index + i, alias=key))
        return commands, True
    if isinstance(calls, (str, bytes)) or not isinstance(calls, Iterable):
        raise ConfigError("calls must be a list of commands or a dict of named commands")
    commands = []
    for i, item in enumerate(calls):
        method, params = _one(item, f"command #{start_index + i}")
        key = f"c{start_index + i}"
        commands.append(Command(method, params, key=key, index=start_index + i, alias=key))
    return commands, False


def chunked(items: Sequence[T], size: int = MAX_BATCH) -> list[Sequence[T]]:
    """Consecutive slices of at most ``size`` items (slices of ``items``' own type), in order."""
    return [items[i : i + size] for i in range(0, len(items), size)]


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of commands sent in one HTTP request: a batch, or one direct call."""

    kind: Literal["batch", "direct"]
    commands: tuple[Command, ...]


def _needs_direct(command: Command, version: int) -> bool:
    if version == 2:
        if any(True for _ in iter_refs(command.params)):
            raise ConfigError(
                f"command {command.key!r}: v3 ref()/ref_array() markers are not substituted in a v2 batch (§5.6)"
            )
        return (
            looks_like_v2_reference(command.params)
            or not encodable_v2(command.params)
            or has_nested_empty(command.params)
        )
    if any(True for _ in iter_result_refs(command.params)):
        raise ConfigError(
            f"command {command.key!r}: result_ref() is a v2 reference; use ref()/ref_array() in v3"
        )
    return looks_like_v3_reference(command.params)


def plan_segments(commands: Sequence[Command], version: int) -> list[Segment]:
    """Split commands into batch runs and direct calls, in order, and check every reference.

    A reference must point at an earlier command of the same batch run; a command that needs a direct call
    cannot also carry a reference (it would not be substituted).

    Raises:
        ConfigError: a misplaced or dangling reference, or a marker of the other API version.
    """
    by_index = {c.index: c for c in commands}
    segments: list[Segment] = []
    run: list[Command] = []
    for command in commands:
        direct = _needs_direct(command, version)
        refs = _reference_targets(command, version, by_index)
        if direct:
            if refs:
                raise ConfigError(
                    f"command {command.key!r} must be sent as a direct call (user data that looks like a batch "
                    "reference, or a key or empty value a v2 query string cannot carry) but also holds a "
                    "reference helper; it cannot be sent safely (send it separately)"
                )
            if run:
                segments.append(Segment("batch", tuple(run)))
                run = []
            segments.append(Segment("direct", (command,)))
            continue
        earlier = {c.key for c in run}
        for target in refs:
            if target not in earlier:
                raise ConfigError(
                    f"command {command.key!r} references {target!r}, which is not an earlier command of the same "
                    "batch request (references work only inside one batch of at most 50 commands)"
                )
        run.append(command)
    if run:
        segments.append(Segment("batch", tuple(run)))
    return segments


def _reference_targets(command: Command, version: int, by_index: Mapping[int, Command]) -> list[str]:
    targets: list[str] = []
    if version == 2:
        for r in iter_result_refs(command.params):
            targets.append(_resolve_target(r.target, by_index, command))
    else:
        for m in iter_refs(command.params):
            targets.append(_resolve_target(m.alias, by_index, command))
    return targets


def _resolve_target(target: str | int, by_index: Mapping[int, Command], command: Command) -> str:
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        position = int(target)
        if position not in by_index:
            raise ConfigError(
                f"command {command.key!r} references input position {position}, which does not exist"
            )
        return by_index[position].key
    return target


def _rewrite(value: Any, by_index: Mapping[int, Command], version: int) -> Any:
    if isinstance(value, ResultRef):
        target = value.target
        if isinstance(target, int) or target.isdigit():
            return value.with_target(by_index[int(target)].key)
        return value
    if isinstance(value, Ref):
        alias = value.alias
        if alias.isdigit():
            rest = value.path[len(alias) :]
            return Ref(by_index[int(alias)].key + rest, value.array).to_wire()
        return value.to_wire()
    if isinstance(value, Mapping):
        return {k: _rewrite(v, by_index, version) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rewrite(v, by_index, version) for v in value]
    return value


def resolve_params(command: Command, commands: Sequence[Command], version: int) -> dict[str, Any]:
    """``command.params`` with positional references rewritten to keys and v3 markers in wire form."""
    by_index = {c.index: c for c in commands}
    return {k: _rewrite(v, by_index, version) for k, v in command.params.items()}


def build_v2_batch_body(
    commands: Sequence[Command],
    *,
    halt: bool,
    bool_style: BoolStyle = "YN",
    all_commands: Sequence[Command] = (),
) -> dict[str, Any]:
    """``{"halt": 0|1, "cmd": {key: "method?query"}}`` (§4.1); keys are the commands' keys."""
    pool = all_commands or commands
    cmd: dict[str, str] = {}
    for c in commands:
        query = http_build_query(resolve_params(c, pool, 2), bool_style=bool_style)
        cmd[c.key] = f"{c.method}?{query}" if query else c.method
    return {"halt": 1 if halt else 0, "cmd": cmd}


def build_v3_batch_body(
    commands: Sequence[Command], *, all_commands: Sequence[Command] = ()
) -> list[dict[str, Any]]:
    """A bare JSON array of ``{"method", "query", "as"}`` items (§5.6)."""
    pool = all_commands or commands
    return [
        {"method": c.method, "query": resolve_params(c, pool, 3), "as": c.alias or c.key} for c in commands
    ]


# ---------------------------------------------------------------------------------------------------------------
# Result splitting


def _section_get(section: Any, key: str) -> tuple[bool, Any]:
    """Look ``key`` up in a batch section that PHP encoded as an object or as a list (§2.4).

    A JSON list means the PHP array had exactly the keys 0..n-1, so position ``i`` is key ``str(i)``.
    """
    if isinstance(section, Mapping):
        if key in section:
            return True, section[key]
        return False, None
    if isinstance(section, list) and _NUMERIC.match(key):
        position = int(key)
        if 0 <= position < len(section) and str(position) == key.strip():
            return True, section[position]
    return False, None


def _as_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def parse_call_payload(body: Mapping[str, Any]) -> tuple[Any, int | None, int | None, TimeInfo | None]:
    """``(result, total, next, time)`` of a successful single-call body (§2.1, §2.3)."""
    return (
        body.get("result"),
        _as_int(body.get("total")),
        _as_int(body.get("next")),
        TimeInfo.from_payload(body.get("time")),
    )


def split_v2_batch(
    commands: Sequence[Command],
    body: Mapping[str, Any],
    *,
    halt: bool,
    http_status: int = 200,
    request_id: str | None = None,
) -> list[CommandResult]:
    """Per-command results of a v2 batch answer, in the order of ``commands`` (§4.2, §4.4).

    * An entry in ``result_error`` is an error, whatever its code (``""`` included, §2.2).
    * An entry in ``result`` is a success, even when its value is ``null``/``[]``/``false``.
    * Neither: after a halt the command did not run (``not_executed``); otherwise the answer is incomplete and
      the command's outcome is ``unknown`` for writes (reads get an ``error``).
    * Failed commands have no ``result_time``/``result_total``/``result_next`` (§4.2).
    """
    payload = body.get("result")
    if not isinstance(payload, Mapping):
        raise BatchCommandError(
            "batch answer has no result object",
            code="MALFORMED_BATCH_RESPONSE",
            http_status=http_status,
            method="batch",
            request_id=request_id,
            category="server",
        )
    sections = {
        name: payload.get(name, []) for name in ("result", "result_error", "result_total", "result_next")
    }
    times = payload.get("result_time", [])
    out: list[CommandResult] = []
    halted = False
    for c in commands:
        has_error, raw_error = _section_get(sections["result_error"], c.key)
        has_result, result = _section_get(sections["result"], c.key)
        _, raw_time = _section_get(times, c.key)
        if has_error:
            error = error_from_response(
                http_status,
                raw_error if isinstance(raw_error, (Mapping, str)) else {"error": str(raw_error)},
                method=c.method,
                request_id=request_id,
                command_key=c.key,
                index=c.index,
                in_batch=True,
            )
            out.append(CommandResult(c.key, c.index, c.method, ok=False, error=error, outcome="error"))
            if halt:
                halted = True
            continue
        if has_result:
            _, total = _section_get(sections["result_total"], c.key)
            _, nxt = _section_get(sections["result_next"], c.key)
            out.append(
                CommandResult(
                    c.key,
                    c.index,
                    c.method,
                    ok=True,
                    result=result,
                    total=_as_int(total),
                    next=_as_int(nxt),
                    time=TimeInfo.from_payload(raw_time),
                    outcome="ok",
                )
            )
            continue
        if halted:
            out.append(CommandResult(c.key, c.index, c.method, ok=False, outcome="not_executed"))
            continue
        out.append(
            _missing_result(
                c,
                "the batch answer has neither a result nor an error for this command",
                http_status,
                request_id,
            )
        )
    return out


def split_batch(
    commands: Sequence[Command],
    body: Any,
    *,
    version: int,
    halt: bool,
    http_status: int,
    request_id: str,
    idempotent: bool,
) -> tuple[list[CommandResult], TimeInfo | None]:
    """Per-command results and the batch-level ``time`` of a batch answer of either version.

    A body that is not a JSON object answers no command: each fails, and writes are ``unknown`` (they may have
    run).
    """
    if not isinstance(body, Mapping):
        error = TransportError(
            "batch answer is not a JSON object",
            code="INVALID_JSON",
            http_status=http_status,
            method="batch",
            request_id=request_id,
            maybe_executed=True,
        )
        return failed_results(commands, error, "error" if idempotent else "unknown"), None
    time = TimeInfo.from_payload(body.get("time"))
    if version == 2:
        return split_v2_batch(commands, body, halt=halt, http_status=http_status, request_id=request_id), time
    return split_v3_batch(commands, body, request_id=request_id), time


def _missing_result(c: Command, text: str, http_status: int | None, request_id: str | None) -> CommandResult:
    """A command the batch answer says nothing about: a read failed, a write may or may not have landed."""
    missing = BatchCommandError(
        text,
        code="MISSING_COMMAND_RESULT",
        http_status=http_status,
        method=c.method,
        command_key=c.key,
        index=c.index,
        request_id=request_id,
        category="server",
    )
    return CommandResult(
        c.key, c.index, c.method, ok=False, error=missing, outcome="error" if c.is_read else "unknown"
    )


def split_v3_batch(
    commands: Sequence[Command], body: Mapping[str, Any], *, request_id: str | None = None
) -> list[CommandResult]:
    """Per-command results of a successful v3 batch: ``result`` is an array in command order (§5.6)."""
    results = body.get("result")
    time = TimeInfo.from_payload(body.get("time"))
    out: list[CommandResult] = []
    for position, c in enumerate(commands):
        if isinstance(results, list) and position < len(results):
            out.append(
                CommandResult(
                    c.key, c.index, c.method, ok=True, result=results[position], time=time, outcome="ok"
                )
            )
            continue
        out.append(_missing_result(c, "the v3 batch answer has no result for this command", 200, request_id))
    return out


def failed_results(
    commands: Sequence[Command], error: Bitrix24Error, outcome: Outcome
) -> list[CommandResult]:
    """The same whole-request failure reported on every command, each error naming its own command."""
    out = []
    for c in commands:
        own = _copy_error_for(error, c)
        out.append(CommandResult(c.key, c.index, c.method, ok=False, error=own, outcome=outcome))
    return out


def _copy_error_for(error: Bitrix24Error, command: Command) -> Bitrix24Error:
    clone = error.__class__.__new__(error.__class__)
    Exception.__init__(clone, error.description)
    clone.__dict__.update(error.__dict__)
    clone.command_key = command.key
    clone.index = command.index
    if clone.method in (None, "batch"):
        clone.method = command.method
    return clone
