"""Pipeline tests on DuckDB for the `activities` table: every row and field equals the sandbox portal's, a
second run reads only the activities changed since the first (crm.activity.add/update through REST) and
hard-deletes the ones crm.activity.delete removed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from bitrix24_source import bitrix24_source
from bitrix24_source.client import Bitrix24Client
from bitrix24_source.sandbox import Sandbox
from bitrix24_source.source import resource_stats
from tests.helpers import column_types, fetch_table, make_pipeline
from tests.source.compare import assert_rows_equal

LAG = 300.0


def _small(activities: int) -> Sandbox:
    return Sandbox(
        seed=21, deals=40, leads=20, contacts=20, companies=10, users=5, tasks=0, activities=activities
    )


def _updated(row: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(row["LAST_UPDATED"])


def _assert_equal(portal: Sandbox, pipeline: Any) -> None:
    stored = [{k: v for k, v in r.items() if k != "_deleted"} for r in fetch_table(pipeline, "activities")]
    assert_rows_equal(portal.rows("activities"), stored, id_key="ID", rename={"ID": "id"})


def test_activities_equal_the_portal_typed_from_their_field_list(tmp_path: Path) -> None:
    with _small(activities=180) as portal:
        pipeline = make_pipeline(tmp_path)
        source = bitrix24_source(webhook_url=portal.webhook_url, rate_limit=None, smart_processes=())
        assert not pipeline.run(source.with_resources("activities")).has_failed_jobs
        _assert_equal(portal, pipeline)
        types = column_types(pipeline, "activities")
        # crm.activity.list prints every scalar as a string; crm.activity.fields types them
        assert types["id"] == types["owner_id"] == types["owner_type_id"] == "BIGINT"
        assert types["type_id"] == types["responsible_id"] == types["priority"] == "BIGINT"
        assert types["last_updated"] == types["start_time"] == "TIMESTAMP WITH TIME ZONE"
        assert types["completed"] == "BOOLEAN"
        assert types["settings"] == "JSON"
        # 180 rows in one chain batch that also carries the field list and the last-id command
        stats = portal.stats()
        assert stats.http_requests == 1
        assert stats.by_method["crm.activity.fields"] == 1
        assert resource_stats(pipeline)["activities"]["rows"] == 180
        assert resource_stats(pipeline)["activities"]["requests"] == 1


def test_second_run_reads_only_changed_activities_and_deletes_removed_ones(tmp_path: Path) -> None:
    with _small(activities=260) as portal:
        pipeline = make_pipeline(tmp_path)

        def run() -> None:
            source = bitrix24_source(
                webhook_url=portal.webhook_url,
                rate_limit=None,
                lag_seconds=LAG,
                detect_deletes=True,
                smart_processes=(),
            )
            assert not pipeline.run(source.with_resources("activities")).has_failed_jobs

        run()
        _assert_equal(portal, pipeline)
        cursor = max(_updated(r) for r in portal.rows("activities"))

        portal.advance_clock(3600)
        client = Bitrix24Client(portal.webhook_url)
        deal = portal.rows("deals")[3]
        added = client.call(
            "crm.activity.add",
            {
                "fields": {
                    "OWNER_TYPE_ID": 2,
                    "OWNER_ID": deal["id"],
                    "TYPE_ID": 2,
                    "SUBJECT": "Call about the contract",
                    "RESPONSIBLE_ID": 1,
                    "COMMUNICATIONS": [{"VALUE": "+15550100", "ENTITY_ID": deal["id"], "ENTITY_TYPE_ID": 2}],
                    "DIRECTION": 1,
                }
            },
        ).result
        old = portal.rows("activities")
        edited, removed = old[10]["ID"], old[20]["ID"]
        assert client.call("crm.activity.update", {"id": edited, "fields": {"COMPLETED": "Y"}}).result is True
        assert client.call("crm.activity.delete", {"id": removed}).result is True
        portal.reset_stats()

        run()
        _assert_equal(portal, pipeline)
        stored_ids = {r["id"] for r in fetch_table(pipeline, "activities")}
        assert int(added) in stored_ids and removed not in stored_ids
        # Incremental: only the activities changed at or after the lag window before the last cursor were
        # read (the seeded ones stamped at the window's edge, plus the added and the edited one).
        window = [r for r in portal.rows("activities") if _updated(r) >= cursor - dt.timedelta(seconds=LAG)]
        assert {int(added), edited} <= {r["ID"] for r in window} and len(window) < 260 // 4
        assert resource_stats(pipeline)["activities"]["rows"] == len(window)
        # one batch for the changed rows (one page after the last-id command), one for the id scan
        stats = portal.stats()
        assert stats.http_requests == 2 == resource_stats(pipeline)["activities"]["requests"]
        # a new source object reads the field list again, in the first batch
        assert stats.by_method["crm.activity.fields"] == 1
