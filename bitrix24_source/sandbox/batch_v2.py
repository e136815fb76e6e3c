"""The v2 ``batch`` method, reproducing ``CRestProvider::methodsBatch`` (§4.2) and its references (§4.3).

Algorithm (§4.2): commands run in the given order; the 51st and later each get ``ERROR_BATCH_LENGTH_EXCEEDED``
in ``result_error``; ``batch``/``download``/``upload`` inside a batch give ``ERROR_BATCH_METHOD_NOT_ALLOWED``;
a success fills ``result`` and ``result_time`` (plus ``result_total``/``result_next`` for lists, ``next``
only when more rows remain); a failure fills only ``result_error``; ``halt`` (PHP truthiness, keys
case-insensitive) stops after the first failure. The five sections are PHP arrays keyed by the command keys,
so the encoder turns them into lists when the keys are ``0..n-1`` (§2.4).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bitrix24_source.sandbox.phpjson import php_int_key
from bitrix24_source.sandbox.phpquery import is_numeric, parse_str, php_strval, php_truthy

BATCH_MAX_LENGTH = 50  # CRestUtil::BATCH_MAX_LENGTH
NOT_ALLOWED_IN_BATCH = frozenset({"batch", "download", "upload"})
SECTIONS = ("result", "next", "total", "time", "error")

_REFERENCE = re.compile(r"\$(result|next|total|time|error)([^\s]*)", re.IGNORECASE)
_PATH_SEGMENT = re.compile(r"\[([^\]]+)\]")


@dataclass(slots=True)
class CommandOutcome:
    """What one executed command contributes to the batch sections (§4.2 ``res``)."""

    ok: bool
    result: Any = None
    total: int | None = None
    next: int | None = None
    time: dict[str, Any] | None = None
    error: dict[str, Any] = field(default_factory=dict)


# (method, params, command_index) -> outcome; the server supplies auth, limits, faults and dispatch.
Executor = Callable[[str, dict[str, Any], int], CommandOutcome]


def _error(code: str, description: str) -> CommandOutcome:
    return CommandOutcome(ok=False, error={"error": code, "error_description": description})


def _upper_keys(params: dict[str, Any]) -> dict[str, Any]:
    # array_change_key_case(CASE_UPPER): a later key overwrites an earlier one that uppercases the same.
    return {str(key).upper(): value for key, value in params.items()}


def _commands(cmd: Any) -> list[tuple[str, Any]]:
    if isinstance(cmd, dict):
        return [(str(key), value) for key, value in cmd.items()]
    if isinstance(cmd, list):
        return [(str(index), value) for index, value in enumerate(cmd)]
    return []  # foreach over a scalar runs no command


def split_call(call: Any) -> tuple[str, str]:
    """``parse_url($call)``: the path is the method, the query its parameters; a fragment is dropped."""
    if isinstance(call, (dict, list)):
        return "", ""
    text = php_strval(call).split("#", 1)[0]
    method, _, query = text.partition("?")
    return method.strip(), query


def run_batch(params: dict[str, Any], execute: Executor) -> dict[str, Any]:
    """Run a v2 batch and return its ``result`` payload with the five sections.

    Args:
        params: the batch call's parameters (``cmd``, ``halt``; keys case-insensitive).
        execute: runs one command and returns its outcome.

    Returns:
        ``{"result", "result_error", "result_total", "result_next", "result_time"}`` as PHP arrays (dicts
        keyed by command key; the encoder decides list vs object).
    """
    query = _upper_keys(params)
    halt = php_truthy(query.get("HALT", False))
    acc: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for count, (key, call) in enumerate(_commands(query.get("CMD"))):
        if count < BATCH_MAX_LENGTH:
            method, raw_query = split_call(call)
            call_params = parse_str(raw_query) if raw_query else {}
            if "$" in raw_query or "%24" in raw_query:
                call_params = substitute(call_params, acc)
            if method.lower() in NOT_ALLOWED_IN_BATCH:
                outcome = _error("ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage")
            else:
                outcome = execute(method.lower(), call_params, count)
        else:
            outcome = _error("ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")
        if outcome.ok:
            acc["result"][key] = outcome.result
            if outcome.total is not None:
                acc["total"][key] = outcome.total
            if outcome.next is not None:
                acc["next"][key] = outcome.next
            if outcome.time is not None:
                acc["time"][key] = outcome.time
        else:
            acc["error"][key] = outcome.error
            if halt:
                break
    return {
        "result": acc["result"],
        "result_error": acc["error"],
        "result_total": acc["total"],
        "result_next": acc["next"],
        "result_time": acc["time"],
    }


def substitute(params: Any, acc: dict[str, dict[str, Any]]) -> Any:
    """``processBatchStructure``: replace ``$result[...]``-style references in every value (§4.3)."""
    if isinstance(params, dict):
        return {key: substitute(value, acc) for key, value in params.items()}
    if isinstance(params, list):
        return [substitute(value, acc) for value in params]
    if isinstance(params, str) and "$" in params:
        return _substitute_value(params, acc)
    return params


def _substitute_value(value: str, acc: dict[str, dict[str, Any]]) -> Any:
    """``processBatchElement``: walk each reference, keeping the last resolvable node (§4.3)."""
    query: Any = value
    for match in list(_REFERENCE.finditer(value)):
        segments = _PATH_SEGMENT.findall(match.group(2))
        if not segments:
            continue
        # The root is looked up as written: "$RESULT[...]" matches the regex (/i) but names no section.
        node: Any = acc.get(match.group(1))
        for segment in segments:
            found, child = _isset(node, segment)
            if not found:
                break
            node = child
        if isinstance(query, str) and match.group(0) == query:
            query = copy.deepcopy(node)
        elif isinstance(query, str):
            if is_numeric(node):
                node = php_strval(node)
            if not isinstance(node, str):
                continue
            query = query.replace(match.group(0), node)
    return query


def _isset(node: Any, segment: str) -> tuple[bool, Any]:
    """PHP ``isset($node[$segment])`` and the value: null values count as unset."""
    index = php_int_key(segment)
    if isinstance(node, dict):
        value = node.get(segment)
        if value is None and index is not None:
            value = node.get(index)
        return value is not None, value
    if isinstance(node, list):
        if index is None or not 0 <= index < len(node):
            return False, None
        value = node[index]
        return value is not None, value
    if isinstance(node, str):
        # String offsets: isset("abc"[1]) is true and gives "b"; negative offsets count from the end.
        if index is None or not -len(node) <= index < len(node):
            return False, None
        return True, node[index]
    return False, None
