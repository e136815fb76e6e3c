"""The v3 ``batch`` method (§5.6).

* Body: a bare JSON array of ``{"method", "query", "as"?}`` items; an object with keys ``0..n-1`` is accepted
  as well (PHP cannot tell the two apart, GH#455). Every top-level value must be such an item, so a ``cmd``,
  ``auth`` or ``halt`` key, or an item without ``method`` and ``query``, gives 400 ``INVALIDSELECTEXCEPTION``.
* More than 50 commands are rejected as a whole (the SDK cap; the server ceiling is unmeasured, §5.6, §9.7).
* ``{"$ref": "alias.path"}`` takes one value and ``{"$refArray": "alias.field"}`` collects a field across the
  alias's ``items``. Only results holding ``item`` or ``items`` enter the context; an alias is the item's
  ``as`` or, without one, its index. A bad or unresolved reference fails the batch with
  ``INVALIDSELECTEXCEPTION``. A ``$ref`` path is tried on the stored result first and then, for a ``get``
  result, on its ``item`` (``alias.item.id`` and ``alias.id`` both work).
* All-or-nothing: the first failing command ends the batch and its error (status and v3 envelope) is the
  response; there are no per-command results. Writes made by earlier commands are not rolled back
  ([uncertain]: the server's transaction behaviour is undocumented).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bitrix24_source.sandbox.phpjson import php_int_key
from bitrix24_source.sandbox.types import ApiError

V3_BATCH_MAX_LENGTH = 50
INVALID_SELECT = "BITRIX_REST_V3_EXCEPTION_INVALIDSELECTEXCEPTION"
# The code for "too many commands" is not documented (§5.6 [uncertain]); a request validation error is the
# closest documented v3 code.
TOO_LONG = "BITRIX_REST_V3_EXCEPTION_VALIDATION_REQUESTVALIDATIONEXCEPTION"

# (method, query, command_index) -> the command's `result` payload; raises ApiError on failure.
Executor = Callable[[str, dict[str, Any], int], Any]


def _invalid_select(expression: str) -> ApiError:
    return ApiError(INVALID_SELECT, f"Unable to recognize select expression `{expression}`", 400)


def parse_commands(body: Any) -> list[dict[str, Any]]:
    """Validate the batch body and return its items in order; raise ApiError (400) when malformed."""
    # The server iterates every top-level value in order (PHP cannot tell a list from an int-keyed object), so
    # a `cmd`/`auth`/`halt` key fails below because its value is not a command.
    if isinstance(body, list):
        items = body
    elif isinstance(body, dict):
        items = list(body.values())
    else:
        raise _invalid_select('Each request item must have a "method" and "query" attribute')
    for item in items:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("method"), str)
            or "query" not in item
            or not isinstance(item["query"], (dict, list))
        ):
            raise _invalid_select('Each request item must have a "method" and "query" attribute')
        if isinstance(item["query"], list) and item["query"]:
            raise _invalid_select("Request item query must be an object")
    if len(items) > V3_BATCH_MAX_LENGTH:
        raise ApiError(TOO_LONG, f"Max batch length exceeded: at most {V3_BATCH_MAX_LENGTH} commands", 400)
    return items


def run_batch(body: Any, execute: Executor) -> list[Any]:
    """Run a v3 batch and return the ``result`` list in command order; raise the first command's ApiError."""
    items = parse_commands(body)
    context: dict[str, Any] = {}
    results: list[Any] = []
    for index, item in enumerate(items):
        query = item["query"] if isinstance(item["query"], dict) else {}
        resolved = _resolve(query, context)
        result = execute(item["method"].lower(), resolved, index)
        results.append(result)
        if isinstance(result, dict) and ("item" in result or "items" in result):
            alias = item.get("as")
            context[str(index)] = result
            if isinstance(alias, str) and alias:
                context[alias] = result
    return results


def _resolve(value: Any, context: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        if len(value) == 1:
            if "$ref" in value:
                return _ref(value["$ref"], context)
            if "$refArray" in value:
                return _ref_array(value["$refArray"], context)
        return {key: _resolve(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, context) for item in value]
    return value


def _walk(node: Any, path: list[str]) -> tuple[bool, Any]:
    for segment in path:
        if isinstance(node, dict) and segment in node:
            node = node[segment]
        elif (
            isinstance(node, list) and (index := php_int_key(segment)) is not None and 0 <= index < len(node)
        ):
            node = node[index]
        else:
            return False, None
    return True, node


def _split(path: Any, context: dict[str, Any]) -> tuple[Any, list[str]]:
    if not isinstance(path, str) or not path or "." not in path:
        raise _invalid_select(f"Invalid reference path {path!r}")
    alias, *rest = path.split(".")
    if alias not in context:
        raise _invalid_select(f"Unknown reference alias `{alias}`")
    return context[alias], rest


def _ref(path: Any, context: dict[str, Any]) -> Any:
    result, rest = _split(path, context)
    found, value = _walk(result, rest)
    if not found and isinstance(result, dict) and "item" in result:
        found, value = _walk(result["item"], rest)
    if not found:
        raise _invalid_select(f"Unable to resolve reference `{path}`")
    return value


def _ref_array(path: Any, context: dict[str, Any]) -> list[Any]:
    result, rest = _split(path, context)
    rows = result.get("items") if isinstance(result.get("items"), list) else [result.get("item")]
    values = []
    for row in rows:
        found, value = _walk(row, rest)
        if not found:
            raise _invalid_select(f"Unable to resolve reference `{path}`")
        values.append(value)
    return values
