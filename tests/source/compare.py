"""Row comparison for the source tests: portal rows vs warehouse rows, each normalised by its own rules.

It does not reuse the source's own value mapper: it normalises the portal's canonical rows and the warehouse
rows each by their own rules (ISO strings vs timestamps, "Y"/"N" vs booleans, JSON text vs lists), so a
conversion bug in the source cannot hide on both sides.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from dlt.common.normalizers.naming.snake_case import NamingConvention

_NAMING = NamingConvention()


def _same(portal_value: Any, stored: Any) -> bool:
    """Whether a portal value (canonical JSON form) and a warehouse value mean the same thing."""
    if portal_value is None or portal_value == "":
        return stored is None or stored == "" or stored == portal_value
    if isinstance(stored, dt.datetime):
        return dt.datetime.fromisoformat(str(portal_value)) == stored
    if isinstance(stored, dt.date):
        return str(portal_value)[:10] == stored.isoformat()
    if isinstance(stored, bool):
        truthy = portal_value in (True, 1, "1", "Y", "y", "true")
        return truthy == stored
    if isinstance(stored, Decimal):
        return Decimal(str(portal_value)).quantize(Decimal("0.01")) == stored.quantize(Decimal("0.01"))
    if isinstance(portal_value, (list, dict)):
        decoded = json.loads(stored) if isinstance(stored, str) else stored
        return bool(decoded == portal_value)
    if isinstance(stored, int) and not isinstance(stored, bool):
        return int(portal_value) == stored
    if isinstance(stored, float):
        return abs(float(portal_value) - stored) < 1e-9
    return bool(str(portal_value) == str(stored))


RAW_SUFFIX = "_raw"


def _same_raw(portal_value: Any, raw: str) -> bool:
    """Whether the text kept for a value that did not fit its column is that value as sent."""
    if isinstance(portal_value, str):
        return portal_value == raw
    return bool(json.loads(raw) == portal_value)


def assert_rows_equal(
    portal_rows: Iterable[Mapping[str, Any]],
    stored_rows: Iterable[Mapping[str, Any]],
    *,
    id_key: str = "id",
    rename: Mapping[str, str] | None = None,
) -> None:
    """Every portal row is in the warehouse with every field equal, and nothing else is."""
    rename = rename or {}
    stored_by_id = {int(r["id"]): r for r in stored_rows}
    portal_by_id = {int(r[id_key]): r for r in portal_rows}
    assert set(stored_by_id) == set(portal_by_id), (
        f"ids differ: missing {sorted(set(portal_by_id) - set(stored_by_id))[:10]}, "
        f"extra {sorted(set(stored_by_id) - set(portal_by_id))[:10]}"
    )
    mismatches: list[str] = []
    for id_, row in portal_by_id.items():
        stored = stored_by_id[id_]
        for key, value in row.items():
            column = rename.get(key) or _NAMING.normalize_identifier(key)
            if column not in stored:
                if value in (None, "", []):
                    continue  # an all-empty field may have no column; a value must have one
                mismatches.append(f"id {id_}: column {column!r} missing (portal {value!r})")
                continue
            if stored[column] is None and stored.get(column + RAW_SUFFIX) is not None:
                # a value that did not fit its column: kept as sent in `<column>_raw` (schema.py)
                if not _same_raw(value, stored[column + RAW_SUFFIX]):
                    mismatches.append(
                        f"id {id_}: {key}={value!r} stored raw as {stored[column + RAW_SUFFIX]!r}"
                    )
                continue
            if not _same(value, stored[column]):
                mismatches.append(f"id {id_}: {key}={value!r} stored as {stored[column]!r}")
        if len(mismatches) > 20:
            break
    assert not mismatches, "\n".join(mismatches[:20])
