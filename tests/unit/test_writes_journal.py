"""Pure parts of the destination module: the outcome journal and dlt's variant columns."""

from __future__ import annotations

from pathlib import Path

from bitrix24_source.destination.dlt_adapter import fold_variants
from bitrix24_source.destination.journal import Journal


def _record(n: int, status: str) -> dict[str, object]:
    return {"result": {"row_number": n, "status": status}, "error": None, "plan": None}


def test_journal_keeps_the_last_record_per_row_and_skips_a_torn_line(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j" / "deals.f1.jsonl")
    assert journal.load() == {}
    journal.append([_record(0, "ok"), _record(1, "error")])
    journal.append([_record(1, "ok")])
    with journal.path.open("a", encoding="utf-8") as f:
        f.write('{"result": {"row_number": 2, "sta')  # a crash in the middle of a write
    loaded = journal.load()
    assert sorted(loaded) == [0, 1]
    assert loaded[1]["result"]["status"] == "ok"
    journal.append([_record(2, "ok")])  # the resumed run records the row again, after the torn line
    assert sorted(journal.load()) == [0, 1, 2]


def test_variant_columns_fold_back_to_the_column_the_user_wrote() -> None:
    row = {"id": 2, "opportunity": None, "opportunity▶v_text": "lots", "_dlt_id": "x", "_dlt_load_id": "1"}
    assert fold_variants(row) == {"id": 2, "opportunity": "lots"}
