"""Pure tests of the v3 task pagers (bitrix24_source.source.task_pages): no portal, no HTTP."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from bitrix24_source.errors import Bitrix24Error
from bitrix24_source.source.settings import BATCH_LIMIT
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


def _answers(pages: list[list[dict[str, Any]]], last: list[int], **probes: list[int]) -> dict[str, Any]:
    answers: dict[str, Any] = {f"t{j}": rows for j, rows in enumerate(pages)}
    answers["last"] = [{"id": i} for i in last]
    answers.update({alias: [{"id": i} for i in ids] for alias, ids in probes.items()})
    return answers


def _pagination(pager: KeysetTaskPager | NewestFirstTaskPager) -> dict[str, Any]:
    _method, params = pager.request(BATCH_LIMIT, 5)["t0"]
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


def test_keyset_pager_first_batch_is_one_keyset_page_with_blind_pages_after_it() -> None:
    pager = _keyset(since="2026-03-01T12:00:00+00:00")
    commands = pager.request(BATCH_LIMIT, 5)
    assert len(commands) <= BATCH_LIMIT
    _method, first = commands["t0"]
    assert first["filter"] == [["id", ">", 0], ["changed", ">=", "2026-03-01T12:00:00+00:00"]]
    # results are read in the same batch for t0 only; the blind pages' results need the next batch's room
    assert pager.referenced == ["t0"]
    blind = [alias for alias in commands if alias.startswith("t")][1:]
    assert blind and len(blind) * 4 <= BATCH_LIMIT
    assert commands["t1"][1]["pagination"] == {"limit": 50, "offset": 49}


def test_keyset_pager_accepts_blind_pages_that_start_on_the_previous_last_task() -> None:
    pager = _keyset()
    commands = pager.request(BATCH_LIMIT, 5)
    blind = len([a for a in commands if a.startswith("t")]) - 1
    pages = [_tasks(range(1, 51))] + [
        _tasks(range(50 + 49 * (j - 1), 50 + 49 * j + 1)) for j in range(1, blind + 1)
    ]
    probes = {f"n{k}": [pages[-1][-1]["id"] + 50 * k, pages[-1][-1]["id"] + 50 * k + 1] for k in range(1, 4)}
    read = pager.update_state(_answers(pages, [100_000], **probes))
    assert [p.alias for p in read] == [f"t{j}" for j in range(blind + 1)]
    assert [p.later for p in read] == [False] + [True] * blind
    ids = [t["id"] for p in read for t in p.tasks]
    assert ids == list(range(1, len(ids) + 1))  # the seam tasks are not repeated
    assert pager.has_next_page
    # the next batch: one keyset page after the last id read, and one per probe that found two ids
    assert pager.bounds == [ids[-1], ids[-1] + 50, ids[-1] + 100, ids[-1] + 150]
    commands = pager.request(BATCH_LIMIT, 5)
    assert pager.referenced == ["t0", "t1", "t2", "t3"]
    assert commands["t2"][1]["filter"] == [["id", ">", ids[-1] + 100]]


def test_keyset_pager_stops_at_a_blind_page_whose_seam_moved() -> None:
    pager = _keyset()
    pager.request(BATCH_LIMIT, 5)
    # task 50 was deleted between t0 and t1: t1 no longer starts on t0's last task
    read = pager.update_state(_answers([_tasks(range(1, 51)), _tasks(range(51, 101))], [400]))
    assert [p.alias for p in read] == ["t0"]
    assert pager.has_next_page and pager.bounds == [50]


def test_keyset_pager_stops_at_the_page_holding_the_final_task() -> None:
    pager = _keyset()
    pager.request(BATCH_LIMIT, 5)
    pager.update_state(_answers([_tasks(range(1, 51))], [50]))
    assert not pager.has_next_page


def test_keyset_pager_learns_a_clamped_page_size() -> None:
    pager = _keyset()
    pager.request(BATCH_LIMIT, 5)
    # 20 rows for limit 50, and the final task is still to come: the portal clamps pages to 20
    read = pager.update_state(_answers([_tasks(range(1, 21))], [400]))
    assert [t["id"] for t in read[0].tasks] == list(range(1, 21))
    assert pager.has_next_page and pager.bounds == [20]
    assert pager.request(BATCH_LIMIT, 5)["t0"][1]["pagination"] == {"limit": 20}


def test_keyset_pager_drops_pages_after_a_gap() -> None:
    pager = _keyset()
    # the probes said page 2 starts after task 120, yet page 1 ends at 100: tasks came into the window
    # (an incremental run: their `changed` moved past `since`), and page 2 would skip 101..120
    pager.bounds = [0, 50, 120]
    pager.request(BATCH_LIMIT, 5)
    pages = [_tasks(range(1, 51)), _tasks(range(51, 101)), _tasks(range(121, 171))]
    read = pager.update_state(_answers(pages, [400]))
    assert [p.alias for p in read] == ["t0", "t1"]
    assert pager.has_next_page and pager.bounds == [100]


def test_keyset_pager_narrows_to_one_page_after_a_rejected_batch() -> None:
    pager = _keyset()
    pager.bounds = [0, 50]
    pager.request(BATCH_LIMIT, 5)
    assert pager.narrow()
    pager.request(BATCH_LIMIT, 5)
    assert pager.referenced == ["t0"]
    assert not pager.narrow()


def test_keyset_pager_leaves_room_for_follow_ups() -> None:
    pager = _keyset()
    assert pager.request(5, 5) == {}
    assert len(pager.request(20, 5)) <= 20


def test_keyset_pager_without_results_sends_pages_and_look_ahead_only() -> None:
    pager = KeysetTaskPager(select=["id"], results_select=None, with_results=False)
    commands = pager.request(BATCH_LIMIT, 1)
    assert len(commands) <= BATCH_LIMIT
    assert {a[0] for a in commands} <= {"t", "n", "l"}


def test_newest_first_pager_starts_small_then_overlaps_one_row() -> None:
    pager = _newest_first()
    assert _pagination(pager) == {"limit": RECENT_FIRST_PAGE, "offset": 0}
    read = pager.update_state(_answers([_tasks(range(100, 90, -1))], [1]))
    assert read is not None and [t["id"] for t in read[0].fresh] == list(range(100, 90, -1))
    assert pager.has_next_page
    # The next page starts one row early: the previous page's last task, to check the seam.
    assert _pagination(pager) == {"limit": 51, "offset": RECENT_FIRST_PAGE - 1}
    read = pager.update_state(_answers([_tasks(range(91, 41, -1))], [1]))
    assert read is not None and [t["id"] for t in read[0].tasks] == list(range(90, 41, -1))


def test_newest_first_pager_stops_at_the_first_task_changed_before_since() -> None:
    pager = _newest_first()
    rows = _tasks(range(100, 95, -1)) + _tasks(range(95, 90, -1), changed="2026-02-01T00:00:00+00:00")
    read = pager.update_state(_answers([rows], [1]))
    assert read is not None
    assert [t["id"] for t in read[0].fresh] == list(range(100, 95, -1))
    assert len(read[0].tasks) == 10
    assert not pager.has_next_page


def test_newest_first_pager_restarts_when_the_seam_moved() -> None:
    pager = _newest_first()
    pager.update_state(_answers([_tasks(range(100, 90, -1))], [1]))
    # A task was deleted between the requests: the overlap row is no longer the previous page's last task.
    assert pager.update_state(_answers([_tasks(range(90, 40, -1))], [1])) is None
    assert pager.has_next_page
    assert _pagination(pager) == {"limit": RECENT_FIRST_PAGE, "offset": 0}


def test_newest_first_pager_gives_up_after_too_many_restarts() -> None:
    pager = _newest_first()
    for _ in range(MAX_SEAM_RESTARTS):
        pager.update_state(_answers([_tasks(range(100, 90, -1))], [1]))
        assert pager.update_state(_answers([_tasks(range(89, 39, -1))], [1])) is None
    pager.update_state(_answers([_tasks(range(100, 90, -1))], [1]))
    with pytest.raises(Bitrix24Error) as caught:
        pager.update_state(_answers([_tasks(range(89, 39, -1))], [1]))
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
