"""Read-only smoke tests against a real Bitrix24 portal (``pytest -m live`` with BITRIX24_LIVE_WEBHOOK_URL set).

They check the protocol facts our parser depends on (§2.1 `time.operating`, §3.2 keyset pages, §4.2 batch
sections) on a live portal; they never write.
"""

from __future__ import annotations

import os

import pytest

from bitrix24_source import Bitrix24Client

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def live_client() -> Bitrix24Client:
    return Bitrix24Client(webhook_url=os.environ["BITRIX24_LIVE_WEBHOOK_URL"])


def test_keyset_page_is_uncounted(live_client: Bitrix24Client) -> None:
    page = live_client.call(
        "crm.item.list",
        {"entityTypeId": 2, "order": {"id": "ASC"}, "filter": {">id": 0}, "select": ["id"], "start": -1},
    )
    items = page.result["items"]
    assert isinstance(items, list)
    assert len(items) <= 50
    assert page.next is None


def test_batch_keeps_every_command(live_client: Bitrix24Client) -> None:
    batch = live_client.batch(
        [("server.time", {}), ("crm.item.get", {"entityTypeId": 2, "id": 0})], halt_on_error=False
    )
    assert [r.index for r in batch.results] == [0, 1]
    assert batch.results[0].ok
    assert not batch.results[1].ok
    assert batch.results[1].error is not None
