"""The keyset paging windows on their own (§3.2, §5.2): the parameters of each page and where paging stops."""

from __future__ import annotations

from bitrix24_source.client.paging import V2_PAGE, KeysetPagerV2, KeysetPagerV3


def _rows(first: int, count: int, key: str = "ID") -> list[dict[str, int | str]]:
    return [{key: str(i)} for i in range(first, first + count)]


def test_v2_pages_move_the_id_filter_past_the_last_row_and_keep_the_callers_filter() -> None:
    pager = KeysetPagerV2(
        {"select": ["ID"], "filter": {"STAGE_ID": "NEW"}, "order": {"TITLE": "DESC"}},
        id_key="ID",
        cursor_key="ID",
        list_key=None,
    )
    assert pager.params() == {
        "select": ["ID"],
        "filter": {"STAGE_ID": "NEW", ">ID": 0},
        "order": {"ID": "ASC"},
        "start": -1,
    }
    assert pager.advance(_rows(1, V2_PAGE)) is True
    assert pager.params()["filter"] == {"STAGE_ID": "NEW", ">ID": 50}


def test_v2_paging_stops_at_a_short_page_or_a_cursor_that_does_not_move() -> None:
    pager = KeysetPagerV2(None, id_key="id", cursor_key="ID", list_key="tasks")
    assert pager.rows({"tasks": _rows(1, 3, "id")}) == _rows(1, 3, "id")
    assert pager.rows({"other": []}) == []
    assert pager.advance(_rows(1, V2_PAGE - 1, "id")) is False
    assert pager.advance(_rows(1, V2_PAGE, "id")) is True
    assert pager.advance([{"id": "50"}] * V2_PAGE) is False


def test_v3_paging_stops_at_the_first_page_shorter_than_the_largest_seen() -> None:
    pager = KeysetPagerV3({"filter": [["status", "=", 2]]}, id_key="id", list_key="items", limit=100)
    assert pager.params() == {
        "filter": [["status", "=", 2], ["id", ">", 0]],
        "order": {"id": "ASC"},
        "pagination": {"page": 1, "limit": 100},
    }
    # The server clamps the limit to 50: a full page of 50 goes on, a shorter one ends.
    assert pager.advance([{"id": i} for i in range(1, 51)]) is True
    assert pager.params()["filter"][-1] == ["id", ">", 50]
    assert pager.advance([{"id": i} for i in range(51, 101)]) is True
    assert pager.advance([{"id": 101}]) is False
    assert pager.rows({"items": "not a list"}) == []
