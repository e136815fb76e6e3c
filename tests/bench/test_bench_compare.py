"""Smoke test of bench/bench_compare.py: tiny sizes, every figure present for every tool (no timing checks)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from bitrix24_source.cli.sync import DUCKDB_MEMORY_LIMIT

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_compare.py"
DEALS, TASKS, RSS_DEALS, PUSH_DEALS = 300, 30, 400, 120

PER_JOB = (
    "rows",
    "wall_s",
    "cpu_s",
    "peak_rss_mb",
    "requests",
    "rows_per_s",
    "requests_per_10k",
    "cpu_s_per_100k",
)
EXPECTED = {
    "bitrix24_dlt": {
        "fetch": (*PER_JOB, "samples_rows_per_s"),
        "e2e": (*PER_JOB, "samples_rows_per_s", "steps_s"),
        "tasks": (*PER_JOB, "results", "tasks_per_request"),
        "rss": PER_JOB,
        "push": (*PER_JOB, "bound_s", "rejected_503"),
    },
    "fast_bitrix24": {
        "fetch": (*PER_JOB, "samples_rows_per_s"),
        "tasks": (*PER_JOB, "results", "tasks_per_request"),
    },
    "b24pysdk": {"fetch": (*PER_JOB, "samples_rows_per_s")},
}


def _is_figure(value: object) -> bool:
    if isinstance(value, dict):
        return bool(value) and all(_is_figure(v) for v in value.values())
    if isinstance(value, list):
        return bool(value) and all(_is_figure(v) for v in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def test_the_comparison_benchmark_writes_every_figure_for_every_tool(tmp_path: Path) -> None:
    command = [
        sys.executable,
        str(BENCH),
        *("--deals", str(DEALS), "--rounds", "1", "--tasks", str(TASKS)),
        *("--rss-deals", str(RSS_DEALS), "--push-deals", str(PUSH_DEALS), "--out", str(tmp_path)),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, f"bench_compare.py failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"

    results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert results["meta"]["sizes"] == {
        "deals": DEALS,
        "rounds": 1,
        "e2e_rounds": 1,
        "tasks": TASKS,
        "rss_deals": RSS_DEALS,
        "push_deals": PUSH_DEALS,
    }
    assert set(results["tools"]) == set(EXPECTED)
    for tool, jobs in EXPECTED.items():
        assert set(results["tools"][tool]) == set(jobs), tool
        for job, figures in jobs.items():
            got = results["tools"][tool][job]
            missing = [f for f in figures if not _is_figure(got.get(f))]
            assert not missing, f"{tool} {job}: no figure for {missing}"

    ours = results["tools"]["bitrix24_dlt"]
    assert [ours[job]["rows"] for job in ("fetch", "e2e", "tasks", "rss", "push")] == [
        DEALS,
        DEALS,
        TASKS,
        RSS_DEALS,
        PUSH_DEALS,
    ]
    assert {"extract", "normalize", "load"} <= set(ours["e2e"]["steps_s"])
    assert (tmp_path / "bench_compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the request floors are arithmetic: 300 deals are 6 pages, one batch with or without a field list
    assert results["meta"]["request_floor_per_10k"] == 4.0
    assert results["meta"]["request_floor_per_10k_with_field_list"] == round(10_000 / DEALS, 2)
    # the end-to-end jobs load the way the CLI does
    assert results["meta"]["duckdb_memory_limit"] == DUCKDB_MEMORY_LIMIT


def test_the_request_floor_counts_pages_and_the_field_list() -> None:
    sys.path.insert(0, str(BENCH.parent))
    try:
        import bench_compare
    finally:
        sys.path.remove(str(BENCH.parent))
    # 50,000 deals: 1,000 pages of 50 fill 20 batches of 50; one command more needs a 21st
    assert bench_compare.request_floor(50_000) == 20
    assert bench_compare.request_floor(50_000, extra_commands=1) == 21
    assert bench_compare.request_floor(49_950, extra_commands=1) == 20
    assert bench_compare.DUCKDB_MEMORY_LIMIT == DUCKDB_MEMORY_LIMIT
