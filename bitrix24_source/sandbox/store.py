"""Thread-safe in-memory tables of the sandbox portal, keyed by integer id, plus the portal clock.

Rows are kept in a dict keyed by id and the ids in a sorted list, so that a keyset page (`>id` + order by id,
§3.2) is a bisect and a slice: O(page), not O(table). Foreign keys that list methods must filter on
(product rows by `ownerId`, task results by `taskId`) have a secondary index.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

# The portal's time zone. Datetimes are written with this fixed offset ("2024-05-21T15:14:26+03:00", the
# recorded fixtures), so every stored datetime string has one shape and string order equals time order.
PORTAL_TZ = timezone(timedelta(hours=3))


_OFFSET = 3 * 3600
_DAYS: dict[int, str] = {}


def iso(ts: float) -> str:
    """A unix time as the portal prints it: ISO-8601 with the portal offset, whole seconds."""
    # Hand-rolled instead of strftime: the generator formats a few hundred thousand stamps per portal and
    # strftime was most of its run time; the date part is cached per day.
    local = int(ts) + _OFFSET
    day, secs = divmod(local, 86400)
    prefix = _DAYS.get(day)
    if prefix is None:
        prefix = _DAYS[day] = datetime.fromtimestamp(day * 86400, timezone.utc).strftime("%Y-%m-%d")
    hours, rest = divmod(secs, 3600)
    return f"{prefix}T{hours:02d}:{rest // 60:02d}:{rest % 60:02d}+03:00"


class Clock:
    """Wall time plus an offset that tests may move forward (`advance`)."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the portal clock only moves forward")
        with self._lock:
            self._offset += seconds


Predicate = Callable[[dict[str, Any]], bool]
SortKey = tuple[str, bool]  # (row key, descending)


class Table:
    """One entity's rows.

    Args:
        name: entity name (``deals``, ``users`` …).
        lock: the portal lock; every method takes it, so the table is safe to share between threads.
        id_key: the row key holding the id.
        id_as_str: store the id as a string in the row (``user.get`` rows have ``"ID": "1"``).
        indexed: row keys with a secondary index (value -> sorted ids).
    """

    def __init__(
        self,
        name: str,
        lock: threading.RLock,
        *,
        id_key: str = "id",
        id_as_str: bool = False,
        indexed: Iterable[str] = (),
    ) -> None:
        self.name = name
        self.lock = lock
        self.id_key = id_key
        self.id_as_str = id_as_str
        self._rows: dict[int, dict[str, Any]] = {}
        self._ids: list[int] = []
        self._next_id = 1
        self._indexes: dict[str, dict[Any, list[int]]] = {key: {} for key in indexed}

    def __len__(self) -> int:
        with self.lock:
            return len(self._ids)

    @property
    def indexed(self) -> frozenset[str]:
        return frozenset(self._indexes)

    def next_id(self) -> int:
        with self.lock:
            return self._next_id

    def get(self, id_: int) -> dict[str, Any] | None:
        with self.lock:
            return self._rows.get(id_)

    def insert(self, row: dict[str, Any], id_: int | None = None) -> dict[str, Any]:
        """Store `row` (owned by the table from now on) under a new id, or under `id_` if given."""
        with self.lock:
            if id_ is None:
                id_ = self._next_id
            if id_ in self._rows:
                raise KeyError(f"{self.name}: id {id_} exists")
            self._next_id = max(self._next_id, id_ + 1)
            key_value = str(id_) if self.id_as_str else id_
            if self.id_key in row:
                row[self.id_key] = key_value
            else:
                # The id leads the row, as in every recorded response.
                row = {self.id_key: key_value, **row}
            self._rows[id_] = row
            if not self._ids or id_ > self._ids[-1]:
                self._ids.append(id_)
            else:
                bisect.insort(self._ids, id_)
            for key, index in self._indexes.items():
                self._index_add(index, row.get(key), id_)
            return row

    def replace(self, id_: int, row: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            old = self._rows[id_]
            for key, index in self._indexes.items():
                if old.get(key) != row.get(key):
                    self._index_remove(index, old.get(key), id_)
                    self._index_add(index, row.get(key), id_)
            row[self.id_key] = str(id_) if self.id_as_str else id_
            self._rows[id_] = row
            return row

    def delete(self, id_: int) -> None:
        with self.lock:
            row = self._rows.pop(id_)
            pos = bisect.bisect_left(self._ids, id_)
            del self._ids[pos]
            for key, index in self._indexes.items():
                self._index_remove(index, row.get(key), id_)

    def all(self) -> Iterator[dict[str, Any]]:
        with self.lock:
            rows = [self._rows[i] for i in self._ids]
        return iter(rows)

    def ids_by(self, key: str, values: Iterable[Any]) -> list[int]:
        """Ids of rows whose indexed `key` equals one of `values`, sorted."""
        with self.lock:
            index = self._indexes[key]
            out: list[int] = []
            for value in set(values):
                out.extend(index.get(value, ()))
            out.sort()
            return out

    def query(
        self,
        *,
        predicate: Predicate | None,
        lo: int | None = None,
        lo_incl: bool = True,
        hi: int | None = None,
        hi_incl: bool = True,
        candidates: list[int] | None = None,
        order: list[SortKey] | None = None,
        offset: int = 0,
        limit: int = 50,
        count: bool = False,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """One page of rows matching the filter, and the total when `count` is set.

        `lo`/`hi` bound the id range and `candidates` (sorted ids, e.g. from `ids_by`) narrow it further;
        both come from conditions the filter compiler could turn into index lookups. With the default
        order (id ascending or descending) the scan stops as soon as the page is full unless a total is
        wanted, so keyset pages stay O(page).
        """
        with self.lock:
            base, start, end = self._id_range(lo, lo_incl, hi, hi_incl, candidates)
            order = order or [(self.id_key, False)]
            if len(order) == 1 and order[0][0] == self.id_key:
                return self._scan_in_id_order(base, start, end, order[0][1], predicate, offset, limit, count)
            matches = [self._rows[i] for i in base[start:end]]
            if predicate is not None:
                matches = [r for r in matches if predicate(r)]
            for key, desc in reversed(order):
                matches.sort(key=_sort_key(key), reverse=desc)
            total = len(matches) if count else None
            return matches[offset : offset + limit], total

    def _id_range(
        self, lo: int | None, lo_incl: bool, hi: int | None, hi_incl: bool, candidates: list[int] | None
    ) -> tuple[list[int], int, int]:
        """The sorted id list to walk and the [start, end) window of it the bounds allow (no copy)."""
        base = [i for i in candidates if i in self._rows] if candidates is not None else self._ids
        start = 0
        end = len(base)
        if lo is not None:
            start = (bisect.bisect_left if lo_incl else bisect.bisect_right)(base, lo)
        if hi is not None:
            end = (bisect.bisect_right if hi_incl else bisect.bisect_left)(base, hi)
        return base, start, max(start, end)

    def _scan_in_id_order(
        self,
        base: list[int],
        start: int,
        end: int,
        desc: bool,
        predicate: Predicate | None,
        offset: int,
        limit: int,
        count: bool,
    ) -> tuple[list[dict[str, Any]], int | None]:
        rows = self._rows
        total = end - start
        if predicate is None:
            if desc:
                hi = end - offset
                window = base[max(start, hi - limit) : max(start, hi)][::-1]
            else:
                window = base[start + offset : min(end, start + offset + limit)]
            return [rows[i] for i in window], (total if count else None)
        page = []
        seen = 0
        positions = range(end - 1, start - 1, -1) if desc else range(start, end)
        for pos in positions:
            row = rows[base[pos]]
            if not predicate(row):
                continue
            if offset <= seen < offset + limit:
                page.append(row)
            seen += 1
            if not count and seen >= offset + limit:
                break
        return page, (seen if count else None)

    @staticmethod
    def _index_add(index: dict[Any, list[int]], value: Any, id_: int) -> None:
        ids = index.setdefault(value, [])
        if not ids or id_ > ids[-1]:
            ids.append(id_)
        else:
            bisect.insort(ids, id_)

    @staticmethod
    def _index_remove(index: dict[Any, list[int]], value: Any, id_: int) -> None:
        ids = index.get(value)
        if ids is None:
            return
        pos = bisect.bisect_left(ids, id_)
        if pos < len(ids) and ids[pos] == id_:
            del ids[pos]
        if not ids:
            del index[value]


def _sort_key(key: str) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    # NULLs sort first in ascending order, as MySQL does; lists sort by their string form.
    def sort_key(row: dict[str, Any]) -> tuple[Any, ...]:
        value = row.get(key)
        if value is None:
            return (0, 0)
        if isinstance(value, list):
            return (1, str(value))
        if isinstance(value, bool):
            return (1, int(value))
        return (1, value)

    return sort_key
