"""With default settings the destination adds and updates the four CRM entities of a portal whose field
catalogue is exactly the documented one (the sandbox's default): no `xmlId`, markers in `originId`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dlt
import pytest

from bitrix24_source import Bitrix24Client
from bitrix24_source.sandbox import Sandbox

ENTITY_TYPE_IDS = {"leads": 1, "deals": 2, "contacts": 3, "companies": 4}
TITLE = {"leads": "title", "deals": "title", "contacts": "name", "companies": "title"}


@pytest.mark.parametrize("entity", sorted(ENTITY_TYPE_IDS))
def test_default_settings_add_and_update_every_crm_entity(
    portal: Sandbox,
    push_pipeline: Callable[..., dlt.Pipeline],
    read_table: Callable[[str], list[dict[str, Any]]],
    entity: str,
) -> None:
    fields = Bitrix24Client(portal.webhook_url).call(
        "crm.item.fields", {"entityTypeId": ENTITY_TYPE_IDS[entity]}
    )
    assert "xmlId" not in fields.result["fields"]  # the documented catalogue (object-fields.md)
    name = TITLE[entity]
    existing = int(portal.rows(entity)[0]["id"])
    rows = [
        {name: f"added {entity} 1"},
        {name: f"added {entity} 2"},
        {"id": existing, name: f"updated {entity}"},
    ]
    push_pipeline(portal.webhook_url, name=f"documented_{entity}").run(rows, table_name=entity)

    results = [r for r in read_table("bitrix24_write_results") if r["table_name"] == entity]
    assert [(r["operation"], r["status"]) for r in results] == [
        ("add", "ok"),
        ("add", "ok"),
        ("update", "ok"),
    ]
    by_id = {int(r["id"]): r for r in portal.rows(entity)}
    for result, row in zip(results[:2], rows[:2], strict=True):
        added = by_id[int(result["bitrix_id"])]
        assert added[name] == row[name]
        assert added["originatorId"] == "bitrix24-dlt" and str(added["originId"]).startswith("b24dlt:")
    assert by_id[existing][name] == f"updated {entity}"
