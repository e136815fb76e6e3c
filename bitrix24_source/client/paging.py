"""Keyset paging windows of list methods: which parameters ask for the next page, and when to stop; no I/O.

A pager is asked for the next request's parameters, is handed the page's ``result`` and decides whether another
page can follow; :meth:`Bitrix24Client.iter_list_v2` and :meth:`~Bitrix24Client.iter_list_v3` send the
requests. Both order by id and filter above the last id seen, so a page never repeats or skips rows while other
writers insert (§3.2, §5.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["V2_PAGE", "KeysetPagerV2", "KeysetPagerV3"]

V2_PAGE = 50
"""Rows per page of a v2 list method (§3.2); a shorter page is the last one."""


class KeysetPagerV2:
    """The v2 "fast list" window (§3.2): ``order {cursor: ASC}``, ``filter['>cursor'] = last id``, ``start = -1``.

    Args:
        params: the caller's parameters; a user ``order`` is replaced, a user ``filter`` is kept.
        id_key: the id field in the returned rows.
        cursor_key: the id field in ``order``/``filter``.
        list_key: the wrapper key of the rows, or None when ``result`` is the list itself.
    """

    def __init__(
        self, params: Mapping[str, Any] | None, *, id_key: str, cursor_key: str, list_key: str | None
    ) -> None:
        self._base = dict(params or {})
        self._filter = dict(self._base.get("filter") or {})
        self._id_key = id_key
        self._cursor = cursor_key
        self._list_key = list_key
        self._last: Any = 0

    def params(self) -> dict[str, Any]:
        """Parameters of the next page's request."""
        return {
            **self._base,
            "order": {self._cursor: "ASC"},
            "filter": {**self._filter, f">{self._cursor}": self._last},
            "start": -1,
        }

    def rows(self, result: Any) -> list[Any]:
        """The rows of a page's ``result``; empty when it holds none (then there is no further page)."""
        if self._list_key is not None and isinstance(result, Mapping):
            result = result.get(self._list_key, [])
        return result if isinstance(result, list) else []

    def advance(self, rows: list[Any]) -> bool:
        """Move the cursor past ``rows``; False when they were the last page."""
        if len(rows) < V2_PAGE:
            return False
        next_last = rows[-1].get(self._id_key) if isinstance(rows[-1], Mapping) else None
        if next_last is None or str(next_last) == str(self._last):
            return False
        self._last = int(next_last) if str(next_last).isdigit() else next_last
        return True


class KeysetPagerV3:
    """The v3 keyset window (§5.2): ``filter += [[id_key, ">", last]]``, ``order {id_key: ASC}``, page 1 of ``limit``.

    Servers clamp ``limit``, so the last page is the first one shorter than the largest page seen.

    Args:
        params: the caller's parameters; a user ``filter`` list is kept.
        id_key: the id field in ``order``/``filter`` and in the rows.
        list_key: the key of the rows in ``result``.
        limit: rows asked for per page.
    """

    def __init__(self, params: Mapping[str, Any] | None, *, id_key: str, list_key: str, limit: int) -> None:
        self._base = dict(params or {})
        self._filter = list(self._base.get("filter") or [])
        self._id_key = id_key
        self._list_key = list_key
        self._limit = limit
        self._last: Any = 0
        self._largest = 0

    def params(self) -> dict[str, Any]:
        """Parameters of the next page's request."""
        return {
            **self._base,
            "order": {self._id_key: "ASC"},
            "filter": [*self._filter, [self._id_key, ">", self._last]],
            "pagination": {"page": 1, "limit": self._limit},
        }

    def rows(self, result: Any) -> list[Any]:
        """The rows of a page's ``result``; empty when it holds none (then there is no further page)."""
        rows = result.get(self._list_key) if isinstance(result, Mapping) else None
        return rows if isinstance(rows, list) else []

    def advance(self, rows: list[Any]) -> bool:
        """Move the cursor past ``rows``; False when they were the last page."""
        self._largest = max(self._largest, len(rows))
        if len(rows) < self._largest:
            return False
        next_last = rows[-1].get(self._id_key) if isinstance(rows[-1], Mapping) else None
        if next_last is None or next_last == self._last:
            return False
        self._last = next_last
        return True
