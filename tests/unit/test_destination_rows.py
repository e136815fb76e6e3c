"""Pure tests of bitrix24_rows' encoding: every value either travels losslessly or arrives as Unencodable."""

from __future__ import annotations

import json
import math
from datetime import date, datetime, time, timezone
from decimal import Decimal

import numpy as np
import pandas as pd

from bitrix24_source.destination.coerce import Unencodable
from bitrix24_source.destination.job import input_rows
from bitrix24_source.destination.rows import ROW_COLUMN, _indexed, decode_row, encode_row


def test_values_json_cannot_hold_travel_with_type_tags() -> None:
    row = {
        "d": Decimal("1001.50"),
        "dt": datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        "day": date(2025, 1, 2),
        "t": time(12, 30),
        "nan": math.nan,
        "inf": -math.inf,
        "b": b"\x00\xff",
        "n": np.int64(1001),
        "nested": {"$b24": "float", "v": "x"},
        "mixed": [True, 5, "x"],
    }
    text = encode_row(row, index="r1")
    assert text.isascii()
    decoded, index = decode_row(text)
    assert index == "r1"
    assert decoded["d"] == Decimal("1001.50") and decoded["dt"] == row["dt"] and decoded["day"] == row["day"]
    assert decoded["t"] == time(12, 30) and decoded["nan"] is None and decoded["inf"] == -math.inf
    assert decoded["b"] == b"\x00\xff" and decoded["n"] == 1001 and isinstance(decoded["n"], int)
    assert decoded["nested"] == {"$b24": "float", "v": "x"}  # a user's dict is not mistaken for a tag
    assert decoded["mixed"] == [True, 5, "x"]


def test_values_that_cannot_travel_become_unencodable() -> None:
    decoded, _ = decode_row(encode_row({"s": "lone \ud800", "o": object(), "ok": "fine"}))
    assert isinstance(decoded["s"], Unencodable) and "not valid Unicode" in decoded["s"].reason
    assert isinstance(decoded["o"], Unencodable) and "object" in decoded["o"].reason
    assert decoded["ok"] == "fine"


def test_a_frame_keeps_its_index_and_the_job_decodes_it() -> None:
    frame = pd.DataFrame({"id": [1.0, None], "x": ["12k", 3]}, index=["a", "b"])
    pairs = list(_indexed(frame))
    assert [p[0] for p in pairs] == ["a", "b"]
    rows, indexes = input_rows([{ROW_COLUMN: encode_row(row, i)} for i, row in pairs])
    assert rows == [{"id": 1.0, "x": "12k"}, {"id": None, "x": 3}] and indexes == {0: "a", 1: "b"}
    plain = [{"id": 1, "title": "t"}]
    assert input_rows(plain) == (plain, {})  # rows dlt typed itself pass through
    assert json.loads(encode_row({}, None)) == {"i": None, "r": {}}
