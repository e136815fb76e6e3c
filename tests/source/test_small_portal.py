"""Pipeline tests on DuckDB against small sandbox portals: partitions, page caps, errors, credentials."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from bitrix24_source import Bitrix24Client, bitrix24_source
from bitrix24_source.errors import Bitrix24Error, ConfigError
from bitrix24_source.sandbox import CostModel, Fault, Sandbox
from bitrix24_source.source import resource_stats
from bitrix24_source.source.reader import WAIT_COUNTER, PortalReader
from tests.helpers import fetch_table, make_pipeline
from tests.source.compare import assert_rows_equal


@pytest.fixture(scope="module")
def portal() -> Iterator[Sandbox]:
    # tasks=100: an exact multiple of the 50-row page, so a page after the last one would be empty
    with Sandbox(seed=3, deals=700, leads=60, contacts=70, companies=30, users=20, tasks=100) as p:
        yield p


def _cause_chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(out) < 20:
        out.append(current)
        current = current.__cause__ or current.__context__
    return out


def test_partitions_read_the_same_rows(portal: Sandbox, tmp_path: Path) -> None:
    pipeline = make_pipeline(tmp_path)
    source = bitrix24_source(webhook_url=portal.webhook_url, rate_limit=None, partitions=3)
    pipeline.run(source.with_resources("deals", "companies"))
    assert_rows_equal(portal.rows("deals"), fetch_table(pipeline, "deals"))
    assert_rows_equal(portal.rows("companies"), fetch_table(pipeline, "companies"))
    # 3 partitions of ~234 ids each: one max-id call plus one chain per partition
    assert resource_stats(pipeline)["deals"]["requests"] == 4


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_task_listing_ending_on_full_page_sends_no_empty_batch(
    portal: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline = make_pipeline(tmp_path)
    portal.reset_stats()
    with caplog.at_level(logging.WARNING, logger="bitrix24_source"):
        pipeline.run(
            bitrix24_source(webhook_url=portal.webhook_url, rate_limit=None).with_resources("task_results")
        )
    assert_rows_equal(portal.rows("task_results"), fetch_table(pipeline, "task_results"))
    # selecting only the transformer extracts tasks without loading them
    assert "tasks" not in pipeline.default_schema.data_table_names()
    stats = portal.stats()
    # 100 tasks = 2 full pages, both in the first batch (a keyset page and an offset page after it) with
    # the task field list; the batch also asks for the listing's final task: the pages hold it, so no batch
    # with an empty tasks page (rejected by the portal: `in []`) is sent. The second batch reads the offset
    # page's results. No request of its own for the field list: 2 requests in all.
    assert resource_stats(pipeline)["tasks"]["requests"] == 2
    assert stats.http_by_method["batch"] == 2
    assert "tasks.task.field.list" not in stats.http_by_method
    assert "tasks.task.list" not in stats.http_by_method
    assert _warnings(caplog) == []


@pytest.mark.parametrize("tasks", [120, 130])
def test_v3_page_cap_below_requested_limit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, tasks: int
) -> None:
    limits = {"tasks.task.list": 20, "tasks.task.result.list": 20}
    with Sandbox(
        seed=4, deals=10, leads=5, contacts=5, companies=5, users=5, tasks=tasks, v3_limits=limits
    ) as p:
        pipeline = make_pipeline(tmp_path)
        with caplog.at_level(logging.WARNING, logger="bitrix24_source"):
            pipeline.run(
                bitrix24_source(webhook_url=p.webhook_url, rate_limit=None).with_resources(
                    "tasks", "task_results"
                )
            )
        assert_rows_equal(p.rows("tasks"), fetch_table(pipeline, "tasks"))
        assert_rows_equal(p.rows("task_results"), fetch_table(pipeline, "task_results"))
        # pages of 20 (the cap, below the 50 asked for, learnt from the first page): several per batch
        pages = -(-tasks // 20)
        assert resource_stats(pipeline)["tasks"]["requests"] < pages
        assert "tasks.task.list" not in p.stats().http_by_method
        assert _warnings(caplog) == []


def test_portal_without_tasks(tmp_path: Path) -> None:
    with Sandbox(seed=5, deals=3, leads=3, contacts=3, companies=3, users=3, tasks=0) as p:
        pipeline = make_pipeline(tmp_path)
        info = pipeline.run(
            bitrix24_source(webhook_url=p.webhook_url, rate_limit=None).with_resources(
                "tasks", "task_results"
            )
        )
        assert not info.has_failed_jobs
        assert resource_stats(pipeline)["tasks"]["rows"] == 0
        # the first batch has an empty tasks page (the portal rejects `in []`): one plain call confirms it
        assert p.stats().http_by_method["tasks.task.list"] == 1


def test_error_before_short_page_surfaces(portal: Sandbox, tmp_path: Path) -> None:
    pipeline = make_pipeline(tmp_path)
    source = bitrix24_source(webhook_url=portal.webhook_url, rate_limit=None).with_resources("deals")
    # page p1 of the first chain fails while 700 deals remain: a real error, not the end of the table
    portal.inject(Fault("command_error", method="crm.item.list", command_index=1, error_code="ACCESS_DENIED"))
    try:
        with pytest.raises(PipelineStepFailed) as info:
            pipeline.run(source)
    finally:
        portal.clear_faults()
    errors = [e for e in _cause_chain(info.value) if isinstance(e, Bitrix24Error)]
    assert errors and errors[0].code == "ACCESS_DENIED"
    code = portal.webhook_url.rstrip("/").rsplit("/", 1)[-1]
    assert code not in str(info.value) and code not in repr(errors[0])


def test_oauth_credentials_from_config(
    portal: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = portal.oauth
    for name in (
        "client_id",
        "client_secret",
        "access_token",
        "refresh_token",
        "client_endpoint",
        "token_url",
    ):
        monkeypatch.setenv(f"SOURCES__BITRIX24__OAUTH__{name.upper()}", str(getattr(app, name)))
    monkeypatch.delenv("SOURCES__BITRIX24__WEBHOOK_URL", raising=False)
    pipeline = make_pipeline(tmp_path)
    pipeline.run(bitrix24_source(rate_limit=None).with_resources("users"))
    assert_rows_equal(portal.rows("users"), fetch_table(pipeline, "users"), id_key="ID", rename={"ID": "id"})
    stored = str(fetch_table(pipeline, "users"))
    assert app.access_token not in stored and app.client_secret not in stored


def test_webhook_from_env(portal: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCES__BITRIX24__WEBHOOK_URL", portal.webhook_url)
    pipeline = make_pipeline(tmp_path)
    pipeline.run(bitrix24_source(rate_limit=None).with_resources("companies"))
    assert len(fetch_table(pipeline, "companies")) == len(portal.rows("companies"))


def test_both_credentials_is_a_config_error(portal: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    app = portal.oauth
    for name in ("client_id", "client_secret", "access_token", "refresh_token", "client_endpoint"):
        monkeypatch.setenv(f"SOURCES__BITRIX24__OAUTH__{name.upper()}", str(getattr(app, name)))
    with pytest.raises(ConfigError, match="exactly one"):
        bitrix24_source(webhook_url=portal.webhook_url)


def test_stats_are_logged(portal: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pipeline = make_pipeline(tmp_path)
    with caplog.at_level(logging.INFO, logger="bitrix24_source.source"):
        pipeline.run(bitrix24_source(webhook_url=portal.webhook_url, rate_limit=None).with_resources("leads"))
    assert any("bitrix24 leads: 60 rows in 1 requests" in r.getMessage() for r in caplog.records)
    assert resource_stats(pipeline)["leads"] == {
        "rows": 60,
        "requests": 1,
        "seconds": resource_stats(pipeline)["leads"]["seconds"],
    }


@pytest.mark.parametrize("progress", ["log", "tqdm"])
def test_progress_collectors(portal: Sandbox, tmp_path: Path, progress: str) -> None:
    import dlt

    pipeline = dlt.pipeline(
        pipeline_name=f"b24_progress_{progress}",
        pipelines_dir=str(tmp_path / "pipelines"),
        destination=dlt.destinations.duckdb(str(tmp_path / "progress.duckdb")),
        dataset_name="bitrix24",
        dev_mode=True,
        progress=progress,  # type: ignore[arg-type]
    )
    info = pipeline.run(
        bitrix24_source(webhook_url=portal.webhook_url, rate_limit=None).with_resources("deals")
    )
    assert not info.has_failed_jobs
    assert len(fetch_table(pipeline, "deals")) == len(portal.rows("deals"))


def _scenarios() -> Any:
    import importlib.util

    script = Path(__file__).resolve().parents[2] / "pipelines" / "bitrix24_pipeline.py"
    spec = importlib.util.spec_from_file_location("bitrix24_pipeline", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_deletes_scenario_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))  # the example's pipelines, not the global dir
    module = _scenarios()
    with Sandbox(seed=6, deals=60, leads=5, contacts=5, companies=5, users=3, tasks=0) as p:
        doomed = p.rows("deals")[1]["id"]
        doomed_products = {r["id"] for r in p.rows("deal_products") if r["ownerId"] == doomed}
        pipeline = module.deletes_detection(
            p.webhook_url, tmp_path / "deletes.duckdb", module._changes(p), fresh=True
        )
        out = capsys.readouterr().out
        assert "run 1:" in out and "run 2:" in out and "deal_products" in out
        deals = {r["id"] for r in fetch_table(pipeline, "deals")}
        assert doomed not in deals and deals == {r["id"] for r in p.rows("deals")}
        products = {r["id"] for r in fetch_table(pipeline, "deal_products")}
        assert doomed_products and not products & doomed_products
        assert products == {r["id"] for r in p.rows("deal_products")}


def test_pipeline_scenarios_run(
    portal: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))  # the example's pipelines, not the global dir
    module = _scenarios()
    pipeline = module.selected_resources(portal.webhook_url, tmp_path / "scenario.duckdb", fresh=True)
    out = capsys.readouterr().out
    assert "deal_products" in out and "LOADED" in out
    assert len(fetch_table(pipeline, "deals")) == len(portal.rows("deals"))
    assert len(fetch_table(pipeline, "deal_products")) == len(portal.rows("deal_products"))


def test_a_sync_held_up_by_the_operating_budget_says_so_in_the_log_and_the_progress(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every call is billed 1 ms plus 1 ms per row skipped (offset); 10 s allowed per method in a 3-second
    # window (10 baskets of 0.3 s). Another client of the same webhook first uses 9.95 s of crm.item.list
    # (one deep offset page); the sync's first batch (a few ms) brings it within 1 % of the limit, so the
    # next crm.item.list batch waits for the window's reset: the budget has no room for it.
    limit = 10.0
    with Sandbox(
        seed=6,
        deals=5,
        leads=5,
        contacts=5,
        companies=5,
        users=2,
        tasks=1,
        operating_limit=limit,
        operating_basket_seconds=0.3,
        cost_model=CostModel(base=0.001, per_row=0.0, per_offset_row=0.001, count=0.0),
    ) as p:
        # The waits here last seconds; on a real portal (a 10-minute window) only waits longer than
        # WAIT_WARNING_SECONDS are shown. The source's client shares this limiter (one per portal and caller).
        limiter = Bitrix24Client(webhook_url=p.webhook_url, rate_limit=None, operating_limit=limit).limiter
        assert limiter.budget is not None
        limiter.budget.warn_after = 0.0
        shown = io.StringIO()
        # what `bitrix24-dlt sync` shows when its output is not a terminal (cli/sync.py `progress`)
        pipeline = make_pipeline(
            tmp_path, progress=dlt.progress.log(log_period=10.0, logger=shown, dump_system_stats=False)
        )
        source = bitrix24_source(webhook_url=p.webhook_url, rate_limit=None, operating_limit=limit)
        other = Bitrix24Client(webhook_url=p.webhook_url, rate_limit=None, operating_limit=None)
        original = PortalReader.batch

        def batch(self: PortalReader, resource: str, calls: Any, *, version: int = 2) -> Any:
            if not p.stats().by_method.get("crm.item.list"):
                # right before the sync's first batch, so the 3-second window has not moved on
                other.call("crm.item.list", {"entityTypeId": 2, "start": 9_950})
            return original(self, resource, calls, version=version)

        monkeypatch.setattr(PortalReader, "batch", batch)
        with caplog.at_level(logging.WARNING, logger="bitrix24_source"):
            pipeline.run(source.with_resources("leads", "deals"))
        for table in ("leads", "deals"):
            assert_rows_equal(p.rows(table), fetch_table(pipeline, table))
        assert p.stats().rejected_429 == 0
        warnings = [w for w in _warnings(caplog) if "operating budget nearly used" in w]
        assert len(warnings) == 1
        assert "before calling batch, crm.item.fields, crm.item.list: " in warnings[0]
        assert (
            f"crm.item.list used 10.0 of {limit:g} s operating time per 10 minutes, resets at" in warnings[0]
        )
        shown_waits = [line for line in shown.getvalue().splitlines() if line.startswith(WAIT_COUNTER)]
        assert shown_waits and "[waiting" in shown_waits[0]
        assert "s: operating budget: crm.item.list used 10.0 of 10 s" in shown_waits[0]
