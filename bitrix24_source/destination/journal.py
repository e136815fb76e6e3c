"""The write journal: one append-only JSON-lines file of row outcomes per load job file; file I/O only.

Each line is a :class:`JournalRecord`. A row may appear twice when a crash hit between the append and the
checkpoint; the last record wins. Hand-written rather than kept in dlt's load package state: that state is one
JSON document rewritten on every commit, so per-row outcomes there would cost O(rows) per batch; appending is
O(batch). The journals of a load live in ``<pipeline working dir>/bitrix24_writes/<load_id>/`` until the
results are flushed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final, TypedDict

logger = logging.getLogger(__name__)

JOURNAL_DIR: Final = "bitrix24_writes"
ORPHAN_MARK: Final = (
    "package_gone"  # in a load's journal directory: its package was found gone (reported once)
)


class JournalRecord(TypedDict):
    """The outcome of one input row: its results-table row, and its errors-table / plan-table row if any."""

    result: dict[str, Any]
    error: dict[str, Any] | None
    plan: dict[str, Any] | None


class Journal:
    """The journal file of one load job file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[int, JournalRecord]:
        """The last record of every row number the journal holds."""
        records: dict[int, JournalRecord] = {}
        if not self.path.exists():
            return records
        with self.path.open("r", encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    # A torn last line from a crash mid-write: its rows were never checkpointed as done.
                    logger.warning("bitrix24 destination: ignoring a torn line in %s", self.path.name)
                    continue
                records[int(record["result"]["row_number"])] = record
        return records

    def append(self, records: Sequence[JournalRecord]) -> None:
        """Append `records` and fsync: once this returns, the outcomes survive a crash."""
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            if self._ends_torn():
                f.write("\n")  # close a torn line so that it cannot swallow the first new record
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False, default=_json_default) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _ends_torn(self) -> bool:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return False
        with self.path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"


def _json_default(value: Any) -> Any:
    # Unlike the client's encoder (which refuses what it cannot send), this one never raises: the journal
    # records rows the portal has already written, and a failed append would lose their outcomes and make
    # the retried job send them again. Every value here is already plain JSON or a datetime (written_at);
    # str() is the last resort that keeps a record readable rather than lost.
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def journal_path(working_dir: str, load_id: str, table_name: str, job_id: str) -> Path:
    """Where the journal of one load job file lives."""
    return Path(working_dir) / JOURNAL_DIR / load_id / f"{table_name}.{job_id}.jsonl"


def unflushed_loads(working_dir: str) -> list[Path]:
    """The journal directories (one per load id, in load order) whose results are not flushed yet."""
    root = Path(working_dir) / JOURNAL_DIR
    return sorted(d for d in root.iterdir() if d.is_dir()) if root.exists() else []


def orphaned_loads(working_dir: str, known_loads: set[str]) -> list[Path]:
    """The journal directories of loads that are not `known_loads` (pending, loaded or aborted packages) and
    were not reported yet: their package was dropped or deleted while their journal stayed. Each is marked
    (:data:`ORPHAN_MARK`) so that it is reported once; its records are flushed with the next completed load."""
    orphans = [d for d in unflushed_loads(working_dir) if d.name not in known_loads]
    fresh = [d for d in orphans if not (d / ORPHAN_MARK).exists()]
    for directory in fresh:
        (directory / ORPHAN_MARK).touch()
    return fresh


def records_of(directory: Path) -> Iterator[JournalRecord]:
    """The last record of every row of every journal of one load."""
    for path in sorted(directory.glob("*.jsonl")):
        yield from Journal(path).load().values()
