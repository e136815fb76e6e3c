"""Pure tests of the v3 task pagers (bitrix24_source.source.task_pages): no portal, no HTTP."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from bitrix24_source.errors import Bitrix24Error
from bitrix24_source.source.task_pages import (
    MAX_SEAM_RESTARTS,
    RECENT_FIRST_PAGE,
    KeysetTaskPager,
    NewestFirstTaskPager,
    task_pager,
)

SINCE = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


def _tasks(ids: range | list[int], changed: str = "2026-03-02T10:00:00+00:00") -> list[dict[str, Any]]:
    return [{"id": i, "changed": changed} for i in ids]


def _pagination(pager: KeysetTaskPager | NewestFirstTaskPager) -> dict[str, Any]:
    _method, params = pager.request()["tasks"]
    pagination: dict[str, Any] = params["pagination"]
    return pagination


def _keyset(since: str | None = None) -> KeysetTaskPager:
    pager = KeysetTaskPager(select=["id", "changed"], results_select=None, with_results=True, since=since)
    pager.init_request()
    return pager


def _newest_first() -> NewestFirstTaskPager:
    pager = NewestFirstTaskPager(
        select=["id", "changed"], results_select=None, with_results=True, since=SINCE
    )
    pager.init_request()
    return pager


def test_keyset_pager_continues_after_the_last_id_of_a_full_page() -> None:
    pager = _keyset(since="2026-03-01T12:00:00+00:00")
    _method, first = pager.request()["tasks"]
    assert first["filter"] == [["id", ">", 0], ["changed", ">=", "2026-03-01T12:00:00+00:00"]]
    page = pager.update_state(_tasks(range(1, 51)), last=_tasks([400]))
    assert page.tasks == page.fresh == _tasks(range(1, 51))
    assert pager.has_next_page
    _method, second = pager.request()["tasks"]
    assert second["filter"][0] == ["id", ">", 50]


def test_keyset_pager_stops_at_the_page_holding_the_final_task() -> None:
    pager = _keyset()
    pager.update_state(_tasks(range(1, 51)), last=_tasks([50]))
    assert not pager.has_next_page


def test_keyset_pager_stops_at_a_page_shorter_than_the_largest_seen() -> None:
    pager = _keyset()
    pager.update_state(_tasks(range(1, 51)), last=_tasks([400]))
    pager.update_state(_tasks(range(51, 60)), last=_tasks([400]))
    assert not pager.has_next_page


def test_keyset_pager_without_results_sends_no_results_command() -> None:
    pager = KeysetTaskPager(select=["id"], results_select=None, with_results=False)
    assert list(pager.request()) == ["tasks", "last"]


def test_newest_first_pager_starts_small_then_overlaps_one_row() -> None:
    pager = _newest_first()
    assert _pagination(pager) == {"limit": RECENT_FIRST_PAGE, "offset": 0}
    page = pager.update_state(_tasks(range(100, 90, -1)), last=_tasks([1]))
    assert page is not None and [t["id"] for t in page.fresh] == list(range(100, 90, -1))
    assert pager.has_next_page
    # The next page starts one row early: the previous page's last task, to check the seam.
    assert _pagination(pager) == {"limit": 51, "offset": RECENT_FIRST_PAGE - 1}
    page = pager.update_state(_tasks(range(91, 41, -1)), last=_tasks([1]))
    assert page is not None and [t["id"] for t in page.tasks] == list(range(90, 41, -1))


def test_newest_first_pager_stops_at_the_first_task_changed_before_since() -> None:
    pager = _newest_first()
    rows = _tasks(range(100, 95, -1)) + _tasks(range(95, 90, -1), changed="2026-02-01T00:00:00+00:00")
    page = pager.update_state(rows, last=_tasks([1]))
    assert page is not None
    assert [t["id"] for t in page.fresh] == list(range(100, 95, -1))
    assert len(page.tasks) == 10
    assert not pager.has_next_page


def test_newest_first_pager_restarts_when_the_seam_moved() -> None:
    pager = _newest_first()
    pager.update_state(_tasks(range(100, 90, -1)), last=_tasks([1]))
    # A task was deleted between the requests: the overlap row is no longer the previous page's last task.
    assert pager.update_state(_tasks(range(90, 40, -1)), last=_tasks([1])) is None
    assert pager.has_next_page
    assert _pagination(pager) == {"limit": RECENT_FIRST_PAGE, "offset": 0}


def test_newest_first_pager_gives_up_after_too_many_restarts() -> None:
    pager = _newest_first()
    for _ in range(MAX_SEAM_RESTARTS):
        pager.update_state(_tasks(range(100, 90, -1)), last=_tasks([1]))
        assert pager.update_state(_tasks(range(89, 39, -1)), last=_tasks([1])) is None
    pager.update_state(_tasks(range(100, 90, -1)), last=_tasks([1]))
    with pytest.raises(Bitrix24Error) as caught:
        pager.update_state(_tasks(range(89, 39, -1)), last=_tasks([1]))
    assert caught.value.code == "LISTING_UNSTABLE"


@pytest.mark.parametrize(
    ("since", "filterable", "expected"),
    [
        (None, False, KeysetTaskPager),
        (SINCE, True, KeysetTaskPager),
        (SINCE, False, NewestFirstTaskPager),
    ],
)
def test_task_pager_walks_newest_first_only_when_changed_cannot_be_filtered(
    since: dt.datetime | None, filterable: bool, expected: type
) -> None:
    pager = task_pager(
        select=["id"], results_select=None, since=since, changed_filterable=filterable, with_results=True
    )
    assert type(pager) is expected
