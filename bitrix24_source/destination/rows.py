"""``bitrix24_rows``: any frame or records as a dlt resource whose values dlt never types; pure encoding, no I/O.

dlt's extract and normalize infer a type per column (pyarrow for frames): one text ``"12k"`` in a numeric
column, a lone surrogate, or an object column holding ``[True, 5, "x"]`` fails the whole run there, before the
destination sees a row. So each input row travels as one JSON text in the column :data:`ROW_COLUMN`, with
type tags for what JSON cannot hold (Decimal, datetime, date, time, NaN/inf, bytes), together with the row's
own index value. The destination decodes it (:func:`decode_row`) and checks every value against the portal's
field metadata itself; a value that cannot be encoded (a lone surrogate, an arbitrary object) arrives as
:class:`~.coerce.Unencodable`, and its row becomes ``INVALID_TYPE`` naming the row and the field.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Final

from bitrix24_source.destination.coerce import Unencodable, is_missing

ROW_COLUMN: Final = "bitrix24_row"
_TAG: Final = "$b24"  # {"$b24": <type>, "v": <text>}: a value JSON cannot carry as itself
_PAGE: Final = 1000  # rows per item handed to dlt


def bitrix24_rows(data: Any, table_name: str) -> Any:
    """Wrap a DataFrame, a pyarrow table or an iterable of dicts for ``pipeline.run`` into the destination.

    Every row reaches the destination as it is, whatever its values, and gets exactly one result row; a
    DataFrame's index value travels along and shows in the results' ``input_index`` column.

    Args:
        data: a pandas DataFrame, a pyarrow Table / RecordBatch, or an iterable of mappings.
        table_name: the table (entity) to write: ``deals``, ``leads``, ``contacts``, ``companies``, ``tasks``.

    Returns:
        A dlt resource: ``pipeline.run(bitrix24_rows(df, table_name="deals"))``.
    """
    import dlt

    def rows() -> Iterator[list[dict[str, str]]]:
        page: list[dict[str, str]] = []
        for index, row in _indexed(data):
            page.append({ROW_COLUMN: encode_row(row, index)})
            if len(page) == _PAGE:
                yield page
                page = []
        if page:
            yield page

    return dlt.resource(
        rows(),
        name=table_name,
        columns={ROW_COLUMN: {"data_type": "text", "nullable": False}},
        write_disposition="append",
    )


def _indexed(data: Any) -> Iterator[tuple[Any, Mapping[str, Any]]]:
    """(index value, row) pairs: a DataFrame's own index, otherwise the position."""
    if hasattr(data, "to_dict") and hasattr(data, "index") and hasattr(data, "columns"):
        records = data.to_dict("records")
        yield from zip(list(data.index), records, strict=True)
        return
    if hasattr(data, "to_pylist"):
        yield from enumerate(data.to_pylist())
        return
    yield from enumerate(_records(data))


def _records(data: Iterable[Any]) -> Iterator[Mapping[str, Any]]:
    for row in data:
        if not isinstance(row, Mapping):
            raise TypeError(f"bitrix24_rows: rows must be mappings (dicts), got {type(row).__name__}")
        yield row


def encode_row(row: Mapping[str, Any], index: Any = None) -> str:
    """One row (and its index value) as the JSON text the destination decodes; never raises for a value."""
    payload = {"i": _encode(index), "r": {str(k): _encode(v) for k, v in row.items()}}
    return json.dumps(payload, ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        value = value.tolist()  # numpy scalars and arrays as Python values
    if is_missing(value):
        return None
    if isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {_TAG: "float", "v": repr(value)}
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return {_TAG: "invalid", "v": f"text is not valid Unicode ({exc.reason} at position {exc.start})"}
        return value
    if isinstance(value, Decimal):
        return {_TAG: "decimal", "v": str(value)}
    if isinstance(value, datetime):
        return {_TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, date):
        return {_TAG: "date", "v": value.isoformat()}
    if isinstance(value, time):
        return {_TAG: "time", "v": value.isoformat()}
    if isinstance(value, (bytes, bytearray)):
        return {_TAG: "bytes", "v": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Mapping):
        return {_TAG: "map", "v": {str(k): _encode(v) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return {_TAG: "invalid", "v": f"a {type(value).__name__} value cannot be sent to Bitrix24"}


def is_encoded(row: Mapping[str, Any]) -> bool:
    """True for a row that :func:`bitrix24_rows` wrapped."""
    return set(row) == {ROW_COLUMN}


def decode_row(text: str) -> tuple[dict[str, Any], Any]:
    """The row and its index value from :func:`encode_row`'s text."""
    payload = json.loads(text)
    return {k: _decode(v) for k, v in payload["r"].items()}, _decode(payload["i"])


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    kind, text = value.get(_TAG), value["v"]
    if kind == "map":
        return {k: _decode(v) for k, v in text.items()}
    if kind == "float":
        return float(text)
    if kind == "decimal":
        return Decimal(text)
    if kind == "datetime":
        return datetime.fromisoformat(text)
    if kind == "date":
        return date.fromisoformat(text)
    if kind == "time":
        return time.fromisoformat(text)
    if kind == "bytes":
        return base64.b64decode(text)
    if kind == "invalid":
        return Unencodable(str(text))
    raise ValueError(f"bitrix24_rows: unknown value tag {kind!r}")
