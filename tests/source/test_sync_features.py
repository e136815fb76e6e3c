"""Pipeline tests on DuckDB for deletes of product rows, partitioned incremental loads, product row field
metadata and OAuth token persistence, each against its own small sandbox portal."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
import pytest
import tomllib
from dlt.pipeline.exceptions import PipelineStepFailed

from bitrix24_source import bitrix24_source
from bitrix24_source.client import OAuthTokens
from bitrix24_source.errors import Bitrix24Error
from bitrix24_source.sandbox import Fault, Sandbox
from bitrix24_source.source import resource_stats
from bitrix24_source.source.credentials import save_tokens_to_toml
from tests.helpers import column_types, fetch_table, make_pipeline
from tests.source.compare import assert_rows_equal

LAG = 300.0


def _small(seed: int, deals: int, tasks: int = 0) -> Sandbox:
    return Sandbox(seed=seed, deals=deals, leads=3, contacts=5, companies=3, users=3, tasks=tasks)


def _live(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Warehouse rows without the hard-delete marker column."""
    return [{k: v for k, v in r.items() if k != "_deleted"} for r in rows]


def _field_rows(pipeline: dlt.Pipeline, entity: str) -> dict[str, dict[str, Any]]:
    return {r["field"]: r for r in fetch_table(pipeline, "field_definitions") if r["entity"] == entity}


# --- detect_deletes and deal product rows ----------------------------------------------------------------


def test_detect_deletes_removes_product_rows(tmp_path: Path) -> None:
    with _small(seed=8, deals=150) as portal:
        pipeline = make_pipeline(tmp_path)

        def run(*resources: str) -> None:
            source = bitrix24_source(
                webhook_url=portal.webhook_url, rate_limit=None, lag_seconds=LAG, detect_deletes=True
            )
            assert not pipeline.run(source.with_resources(*resources)).has_failed_jobs

        run("deals", "deal_products")
        products = portal.rows("deal_products")
        assert_rows_equal(products, fetch_table(pipeline, "deal_products"))
        cursor = max(_updated(r) for r in portal.rows("deals"))
        owners = sorted({r["ownerId"] for r in products})
        rows_of = {o: [r["id"] for r in products if r["ownerId"] == o] for o in owners}
        deleted_deal = owners[0]
        edited_deal = next(o for o in owners[1:] if len(rows_of[o]) >= 2)

        # A deleted deal (the portal drops its product rows too), and a product row removed from a deal
        # that is edited in the same change, so the incremental run reads that deal again.
        portal.advance_clock(3600)
        portal.delete_row("deals", deleted_deal)
        removed_row = rows_of[edited_deal][0]
        portal.delete_row("deal_products", removed_row)
        portal.update_row("deals", edited_deal, {"title": "Edited with its product rows"})
        portal.reset_stats()
        run("deals", "deal_products")
        # incremental: only the product rows of the deals in the window (the edited one, and those changed
        # within the lag before the last cursor) were read again
        window = {r["id"] for r in portal.rows("deals") if _updated(r) >= cursor - dt.timedelta(seconds=LAG)}
        assert edited_deal in window and len(window) < len(owners) // 2
        read_again = [r for r in portal.rows("deal_products") if r["ownerId"] in window]
        assert resource_stats(pipeline)["deal_products"]["rows"] == len(read_again)
        stored = fetch_table(pipeline, "deal_products")
        assert not {r["id"] for r in stored} & {*rows_of[deleted_deal], removed_row}
        assert_rows_equal(portal.rows("deal_products"), _live(stored))
        assert_rows_equal(portal.rows("deals"), _live(fetch_table(pipeline, "deals")))

        # A deal deleted while only `deals` is loaded leaves its product rows behind. The next run with
        # deal_products reads no deal at all (the edited deal held the cursor and is gone, nothing else
        # changed) and emits no deal tombstone (the deal row is already deleted), yet removes them.
        left_behind = set(rows_of[edited_deal]) - {removed_row}
        portal.delete_row("deals", edited_deal)
        run("deals")
        assert left_behind <= {r["id"] for r in fetch_table(pipeline, "deal_products")}
        portal.reset_stats()
        run("deals", "deal_products")
        assert resource_stats(pipeline)["deals"]["rows"] == 0
        assert "crm.item.productrow.list" not in portal.stats().by_method
        stored = fetch_table(pipeline, "deal_products")
        assert not {r["id"] for r in stored} & left_behind
        assert_rows_equal(portal.rows("deal_products"), _live(stored))


# --- partitions with incremental loading -----------------------------------------------------------------


def _updated(row: Mapping[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(row["updatedTime"])


def test_partitions_with_incremental(tmp_path: Path) -> None:
    with _small(seed=9, deals=400) as portal:
        pipeline = make_pipeline(tmp_path)

        def run() -> None:
            source = bitrix24_source(
                webhook_url=portal.webhook_url, rate_limit=None, lag_seconds=LAG, partitions=3
            )
            assert not pipeline.run(source.with_resources("deals")).has_failed_jobs

        run()
        assert_rows_equal(portal.rows("deals"), fetch_table(pipeline, "deals"))
        before = max(_updated(r) for r in portal.rows("deals"))

        portal.advance_clock(3600)
        deals = portal.rows("deals")
        # one change in each third of the id range, and two new deals above it
        for row in (deals[5], deals[200], deals[390]):
            portal.update_row("deals", row["id"], {"title": f"{row['title']} (edited)"})
        added = [portal.add_row("deals", {"title": f"Added {i}", "opportunity": 10.5 + i}) for i in range(2)]
        expected = [r for r in portal.rows("deals") if _updated(r) >= before - dt.timedelta(seconds=LAG)]
        assert len(expected) >= 5

        run()
        stats = resource_stats(pipeline)["deals"]
        assert stats["rows"] == len(expected)
        # the max-id call, then one chain per partition of the changed rows' id range
        assert stats["requests"] == 1 + 3
        stored = fetch_table(pipeline, "deals")
        assert_rows_equal(portal.rows("deals"), stored)
        by_id = {r["id"]: r for r in stored}
        assert all(by_id[a["id"]]["title"] == a["title"] for a in added)
        assert by_id[deals[390]["id"]]["title"].endswith("(edited)")


# --- deal_products column types from crm.item.productrow.fields ------------------------------------------


def test_product_row_types_from_portal_metadata(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with _small(seed=10, deals=30) as portal:
        pipeline = make_pipeline(tmp_path)
        with caplog.at_level(logging.WARNING, logger="bitrix24_source"):
            pipeline.run(
                bitrix24_source(webhook_url=portal.webhook_url, rate_limit=None).with_resources(
                    "deal_products", "field_definitions"
                )
            )
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert portal.stats().by_method["crm.item.productrow.fields"] == 1
        fields = _field_rows(pipeline, "deal_products")
        # described by the portal: titles and flags come from it
        assert fields["ownerId"]["title"] == "Owner ID" and fields["ownerId"]["is_required"] is True
        assert fields["priceExclusive"]["is_read_only"] is True
        # rows carry fields the description leaves out: typed from the built-in table
        assert fields["priceAccount"]["data_type"] == "decimal" and fields["xmlId"]["data_type"] == "text"
        types = column_types(pipeline, "deal_products")
        assert types["price"] == "DECIMAL(18,2)" and types["price_account"] == "DECIMAL(18,2)"
        assert types["owner_id"] == "BIGINT" and types["tax_included"] == "BOOLEAN"
        assert types["quantity"] == "DOUBLE"
        assert_rows_equal(portal.rows("deal_products"), fetch_table(pipeline, "deal_products"))


def test_product_row_types_fall_back_without_the_method(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with _small(seed=10, deals=30) as portal:
        # a portal without the method answers ERROR_METHOD_NOT_FOUND for that batch command (§4.2)
        portal.inject(
            Fault("command_error", method="crm.item.productrow.fields", error_code="ERROR_METHOD_NOT_FOUND")
        )
        pipeline = make_pipeline(tmp_path)
        with caplog.at_level(logging.WARNING, logger="bitrix24_source"):
            pipeline.run(
                bitrix24_source(webhook_url=portal.webhook_url, rate_limit=None).with_resources(
                    "deal_products", "field_definitions"
                )
            )
        messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert any("crm.item.productrow.fields is not available" in m for m in messages), messages
        fields = _field_rows(pipeline, "deal_products")
        assert fields["ownerId"]["title"] == "ownerId"  # the built-in table has no labels
        types = column_types(pipeline, "deal_products")
        assert types["price"] == "DECIMAL(18,2)" and types["owner_id"] == "BIGINT"
        assert types["tax_included"] == "BOOLEAN"
        assert_rows_equal(portal.rows("deal_products"), fetch_table(pipeline, "deal_products"))


@pytest.fixture
def portal_errors() -> Iterator[Sandbox]:
    with _small(seed=12, deals=5) as portal:
        yield portal


def test_product_row_metadata_errors_are_raised(portal_errors: Sandbox, tmp_path: Path) -> None:
    portal_errors.inject(
        Fault("command_error", method="crm.item.productrow.fields", error_code="ACCESS_DENIED")
    )
    # the field list rides in deal_products' first batch: its error fails the run there
    source = bitrix24_source(webhook_url=portal_errors.webhook_url, rate_limit=None)
    with pytest.raises(PipelineStepFailed) as info:
        make_pipeline(tmp_path).run(source.with_resources("deals", "deal_products"))
    errors = [e for e in _causes(info.value) if isinstance(e, Bitrix24Error)]
    assert errors and "ACCESS_DENIED" in str(errors[0])


def _causes(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(out) < 20:
        out.append(current)
        current = current.__cause__ or current.__context__
    return out


# --- OAuth: refreshed tokens are handed to on_token_refresh and can be persisted -------------------------


def _oauth_env(monkeypatch: pytest.MonkeyPatch, values: Mapping[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(f"SOURCES__BITRIX24__OAUTH__{name.upper()}", value)
    monkeypatch.delenv("SOURCES__BITRIX24__WEBHOOK_URL", raising=False)


def test_refreshed_tokens_are_persisted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text("# my portal\n[sources.bitrix24]\nlag_seconds = 300\n", encoding="utf-8")
    with _small(seed=13, deals=20) as portal:
        app = portal.oauth
        _oauth_env(
            monkeypatch,
            {
                "client_id": app.client_id,
                "client_secret": app.client_secret,
                "client_endpoint": app.client_endpoint,
                "token_url": app.token_url,
                "access_token": app.access_token,
                "refresh_token": app.refresh_token,
            },
        )
        seen: list[OAuthTokens] = []
        save = save_tokens_to_toml(secrets)

        def on_refresh(tokens: OAuthTokens) -> None:
            seen.append(tokens)
            save(tokens)

        # the access token expires on the first request: the client refreshes and hands over the new pair
        portal.inject(Fault("expire_token"))
        pipeline = make_pipeline(tmp_path)
        source = bitrix24_source(rate_limit=None, on_token_refresh=on_refresh)
        pipeline.run(source.with_resources("companies"))
        assert len(seen) == 1
        assert seen[0].access_token == portal.oauth.access_token != app.access_token
        assert seen[0].refresh_token == portal.oauth.refresh_token != app.refresh_token
        saved = tomllib.loads(secrets.read_text(encoding="utf-8"))
        assert saved["sources"]["bitrix24"]["lag_seconds"] == 300
        assert saved["sources"]["bitrix24"]["oauth"] == {
            "access_token": seen[0].access_token,
            "refresh_token": seen[0].refresh_token,
        }
        assert secrets.read_text(encoding="utf-8").startswith("# my portal")

        # The next process starts from the saved pair: the refresh token it holds is the rotated one, and
        # it still works when the access token has expired again.
        _oauth_env(monkeypatch, saved["sources"]["bitrix24"]["oauth"])
        portal.inject(Fault("expire_token"))
        again: list[OAuthTokens] = []
        pipeline = make_pipeline(tmp_path / "second", name="b24_second")
        pipeline.run(
            bitrix24_source(rate_limit=None, on_token_refresh=again.append).with_resources("companies")
        )
        assert len(again) == 1 and again[0].refresh_token != seen[0].refresh_token
        assert len(fetch_table(pipeline, "companies")) == len(portal.rows("companies"))


# --- lag_seconds=0: no boundary de-duplication by primary key ---------------------------------------------


def test_zero_lag_keeps_a_same_second_edit(tmp_path: Path) -> None:
    with _small(seed=14, deals=40) as portal:
        pipeline = make_pipeline(tmp_path)

        def run() -> None:
            source = bitrix24_source(webhook_url=portal.webhook_url, rate_limit=None, lag_seconds=0)
            assert not pipeline.run(source.with_resources("deals")).has_failed_jobs

        portal.advance_clock(3600)
        newest = portal.update_row("deals", portal.rows("deals")[10]["id"], {"title": "First edit"})
        run()
        # A second edit within the same second: updatedTime has 1 s resolution, so the row keeps the
        # cursor value the first run stored (written straight into the portal's table to pin the second).
        with portal.state.lock:
            table = portal.state.table("deals")  # type: ignore[attr-defined]
            table.replace(newest["id"], {**table.get(newest["id"]), "title": "Second edit, same second"})
        assert portal.rows("deals")[10]["updatedTime"] == newest["updatedTime"]
        run()
        stored = {r["id"]: r for r in fetch_table(pipeline, "deals")}
        # dlt would drop a row whose cursor equals the stored value and whose key it saw at that value; the
        # source merges on id instead, so the newer version must land
        assert stored[newest["id"]]["title"] == "Second edit, same second"


def _run_with_mid_run_edit(
    portal: Sandbox,
    pipeline: dlt.Pipeline,
    resource: str,
    make_source: Callable[[], Any],
    edit: Callable[[], None],
) -> None:
    """Run `make_source()` twice: the first run calls `edit` once, after the first item of `resource` was read
    (the scan is past the lowest ids then); the second run is the incremental one that must pick it all up."""
    items = {"n": 0}

    def edit_mid_run(item: Any) -> Any:
        items["n"] += 1
        if items["n"] == 1:
            edit()
        return item

    first = make_source()
    getattr(first, resource).add_map(edit_mid_run)
    assert not pipeline.run(first).has_failed_jobs
    assert items["n"] >= 2
    portal.advance_clock(60)
    assert not pipeline.run(make_source()).has_failed_jobs


# --- edits made while a run is in progress ------------------------------------------------------------


@pytest.mark.parametrize("partitions", [1, 2])
def test_edit_during_a_run_is_loaded_by_the_next_run(tmp_path: Path, partitions: int) -> None:
    """An edit to a row the scan has already passed, followed by later edits, must not be lost.

    The scan walks ids in order while dlt keeps the largest `updatedTime` seen. Without the cap at the scan's
    start, the later edit of a high id would move the stored cursor past the earlier edit of a low id, and
    no later run would read that edit (the run here outlasts the lag window by far).
    """
    with _small(seed=13, deals=3000) as portal:
        ids = sorted(int(r["id"]) for r in portal.rows("deals"))
        low, high = ids[0], ids[-1]
        pipeline = make_pipeline(tmp_path)

        def edit() -> None:  # the first chain holds `low`: the scan is past it now
            portal.update_row("deals", low, {"title": "edited during the run"})
            portal.advance_clock(2 * LAG)
            portal.update_row("deals", high, {"title": "edited later"})
            portal.add_row("deals", {"title": "added during the run"})

        def source() -> Any:
            return bitrix24_source(
                webhook_url=portal.webhook_url, rate_limit=None, lag_seconds=LAG, partitions=partitions
            ).with_resources("deals")

        _run_with_mid_run_edit(portal, pipeline, "deals", source, edit)

        stored = {r["id"]: r["title"] for r in fetch_table(pipeline, "deals")}
        assert stored[low] == "edited during the run"
        assert stored[high] == "edited later"
        assert "added during the run" in stored.values()
        assert_rows_equal(portal.rows("deals"), fetch_table(pipeline, "deals"))


def test_task_edit_during_a_run_is_loaded_by_the_next_run(tmp_path: Path) -> None:
    with _small(seed=14, deals=5, tasks=160) as portal:
        ids = sorted(int(r["id"]) for r in portal.rows("tasks"))
        low, high = ids[0], ids[-1]
        pipeline = make_pipeline(tmp_path)

        def edit() -> None:
            portal.update_row("tasks", low, {"title": "edited during the run"})
            portal.advance_clock(2 * LAG)
            portal.update_row("tasks", high, {"title": "edited later"})

        def source() -> Any:
            return bitrix24_source(
                webhook_url=portal.webhook_url, rate_limit=None, lag_seconds=LAG
            ).with_resources("tasks", "task_results")

        _run_with_mid_run_edit(portal, pipeline, "tasks", source, edit)

        stored = {r["id"]: r["title"] for r in fetch_table(pipeline, "tasks")}
        assert stored[low] == "edited during the run"
        assert stored[high] == "edited later"
        assert sorted(stored) == ids


def test_task_deleted_between_newest_first_pages_does_not_hide_another(tmp_path: Path) -> None:
    """Incremental tasks are paged newest-first by offset (`changed` is not filterable, §5.4). A task deleted
    between two pages shifts the listing up; the reader checks the seam and re-reads instead of skipping."""
    with _small(seed=5, deals=1, tasks=60) as portal:
        pipeline = make_pipeline(tmp_path)

        def source() -> Any:
            return bitrix24_source(webhook_url=portal.webhook_url, rate_limit=None).with_resources("tasks")

        assert not pipeline.run(source()).has_failed_jobs
        ids = sorted(int(t["id"]) for t in portal.rows("tasks"))
        for i, task_id in enumerate(ids[:20]):
            portal.advance_clock(60)
            portal.update_row("tasks", task_id, {"title": f"edit {i}"})
        portal.advance_clock(5)
        deleted = {"done": False}

        def delete_one_mid_run(page: pa.Table) -> pa.Table:
            if not deleted["done"]:  # after the first (10-task) page was read
                portal.delete_row("tasks", int(page.column("id")[0].as_py()))
                deleted["done"] = True
            return page

        second = source()
        second.tasks.add_map(delete_one_mid_run)
        assert not pipeline.run(second).has_failed_jobs
        assert deleted["done"]

        stored = {r["id"]: r["title"] for r in fetch_table(pipeline, "tasks")}
        for task in portal.rows("tasks"):
            assert stored[task["id"]] == task["title"], task["id"]


# --- tasks and task results leave as Arrow tables and load from parquet ----------------------------------


def _load_file_formats(pipeline: dlt.Pipeline) -> dict[str, set[str]]:
    """Table name -> the file formats of the completed load jobs that loaded it, over the pipeline's loads."""
    formats: dict[str, set[str]] = {}
    for load_id in pipeline.list_completed_load_packages():
        for job in pipeline.get_load_package_info(load_id).jobs["completed_jobs"]:
            formats.setdefault(job.job_file_info.table_name, set()).add(job.job_file_info.file_format)
    return formats


def test_task_tables_are_typed_arrow_pages_loaded_from_parquet_tombstones_too(tmp_path: Path) -> None:
    """Both task tables leave as typed Arrow tables, tombstones included, and never as row dicts; results
    carry only their own columns (a transformer's rows without hints would take the task page's)."""
    with _small(seed=9, deals=1, tasks=40) as portal:
        pipeline = make_pipeline(tmp_path)
        items: dict[str, list[Any]] = {"tasks": [], "task_results": []}

        def keep(name: str) -> Callable[[Any], Any]:
            def record(item: Any) -> Any:
                items[name].append(item)
                return item

            return record

        def source() -> Any:
            src = bitrix24_source(
                webhook_url=portal.webhook_url, rate_limit=None, detect_deletes=True
            ).with_resources("tasks", "task_results")
            for name in items:
                src.resources[name].add_map(keep(name))
            return src

        assert not pipeline.run(source()).has_failed_jobs
        gone = sorted(int(t["id"]) for t in portal.rows("tasks") if t["containsResults"])[0]
        gone_results = {int(r["id"]) for r in portal.rows("task_results") if int(r["taskId"]) == gone}
        assert gone_results
        portal.delete_row("tasks", gone)
        portal.advance_clock(60)
        assert not pipeline.run(source()).has_failed_jobs

        assert all(isinstance(item, pa.Table) for seen in items.values() for item in seen), {
            name: {type(item).__name__ for item in seen} for name, seen in items.items()
        }
        tombstones = {
            name: {i for t in seen if "_deleted" in t.column_names for i in t.column("id").to_pylist()}
            for name, seen in items.items()
        }
        assert tombstones == {"tasks": {gone}, "task_results": gone_results}
        # the staged rows arrive as parquet; `sql` is dlt's merge from the staging dataset
        formats = _load_file_formats(pipeline)
        assert formats["tasks"] == formats["task_results"] == {"parquet", "sql"}

        tasks, results = column_types(pipeline, "tasks"), column_types(pipeline, "task_results")
        assert {c: tasks[c] for c in ("id", "changed", "needs_control", "accomplices", "_deleted")} == {
            "id": "BIGINT",
            "changed": "TIMESTAMP WITH TIME ZONE",
            "needs_control": "BOOLEAN",
            "accomplices": "JSON",
            "_deleted": "BOOLEAN",
        }
        assert {c: results[c] for c in ("task_id", "created_at", "file_ids")} == {
            "task_id": "BIGINT",
            "created_at": "TIMESTAMP WITH TIME ZONE",
            "file_ids": "JSON",
        }
        assert not {"title", "responsible_id", "changed"} & set(results)
        for table in ("tasks", "task_results"):
            assert [name for name in column_types(pipeline, table) if "__v_" in name] == []
            assert_rows_equal(portal.rows(table), _live(fetch_table(pipeline, table)))


def test_a_task_value_that_does_not_fit_its_column_goes_to_a_raw_text_column(tmp_path: Path) -> None:
    with _small(seed=10, deals=1, tasks=12) as portal:
        odd = portal.rows("tasks")[3]
        portal.update_row("tasks", odd["id"], {"deadline": "next Friday"})
        pipeline = make_pipeline(tmp_path)
        run = bitrix24_source(webhook_url=portal.webhook_url, rate_limit=None).with_resources("tasks")
        assert not pipeline.run(run).has_failed_jobs
        types = column_types(pipeline, "tasks")
        assert (types["deadline"], types["deadline_raw"]) == ("TIMESTAMP WITH TIME ZONE", "VARCHAR")
        stored = {row["id"]: row for row in fetch_table(pipeline, "tasks")}
        assert (stored[odd["id"]]["deadline"], stored[odd["id"]]["deadline_raw"]) == (None, "next Friday")
        assert all(row["deadline_raw"] is None for id_, row in stored.items() if id_ != odd["id"])
        assert_rows_equal(portal.rows("tasks"), stored.values())
