"""Benchmark: peak RSS while the source streams a large `deals` table (it should stay flat as rows grow).

Setup: this (parent) process starts a sandbox portal with N deals on 127.0.0.1 and then runs a *child*
process that extracts the `deals` resource with dlt (`pipeline.extract`, rows written to dlt's load package
on disk as they arrive) from the portal. The child reports its own peak RSS (`VmHWM` from
/proc/self/status); the sandbox's memory (the table itself) lives in the parent and is not counted. The child runs
for a small and a large table, so the two peaks can be compared: streaming means the peak does not grow
with the table (the source holds at most one 2,500-row chain at a time).

    .venv/bin/python bench/bench_memory.py [--sizes 50000 500000] [--mode extract|run] \
        [--duckdb-memory-limit 150MB]

`--mode run` also normalizes and loads into DuckDB (slower; measures the whole pipeline); DuckDB's buffer
pool then grows with the table unless `--duckdb-memory-limit` caps it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child(webhook_url: str, mode: str, workdir: str) -> None:
    import dlt

    from bitrix24_source import bitrix24_source
    from bitrix24_source.source import resource_stats

    pipeline = dlt.pipeline(
        pipeline_name="bench_memory",
        pipelines_dir=workdir,
        destination=dlt.destinations.duckdb(str(Path(workdir) / "bench.duckdb")),
        dataset_name="bitrix24",
    )
    source = bitrix24_source(webhook_url=webhook_url, rate_limit=None, operating_limit=None).with_resources(
        "deals"
    )
    started = time.perf_counter()
    if mode == "run":
        pipeline.run(source)
    else:
        pipeline.extract(source)
    seconds = time.perf_counter() - started
    rows = resource_stats(pipeline).get("deals", {}).get("rows")
    print(json.dumps({"peak_rss_mb": _peak_rss_kb() / 1024, "seconds": seconds, "rows": rows}))


def _peak_rss_kb() -> int:
    """Peak RSS of this process, in KiB.

    Linux: `VmHWM` from /proc/self/status. Not `ru_maxrss`: a child started with fork+exec inherits the
    parent's RSS at fork time in `ru_maxrss`, and the parent holds the sandbox's whole table.
    """
    status = Path("/proc/self/status")
    if status.exists():  # Linux
        for line in status.read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def run_size(deals: int, mode: str) -> dict[str, float]:
    from bitrix24_source.sandbox import Sandbox

    with (
        Sandbox(seed=5, deals=deals, leads=10, contacts=50, companies=20, users=10, tasks=10) as portal,
        tempfile.TemporaryDirectory() as workdir,
    ):
        command = [
            sys.executable,
            __file__,
            "--child",
            portal.webhook_url,
            "--mode",
            mode,
            "--workdir",
            workdir,
        ]
        out = subprocess.run(command, capture_output=True, text=True)
        if out.returncode != 0:
            # the child's own traceback, not just its exit status
            raise SystemExit(f"child failed ({out.returncode}):\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 500_000])
    parser.add_argument("--mode", choices=["extract", "run"], default="extract")
    parser.add_argument(
        "--duckdb-memory-limit",
        help="`--mode run`: DuckDB's memory_limit (e.g. 150MB) and one DuckDB thread; its buffer pool is most of "
        "the load step's memory",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.mode, args.workdir)
        return
    if args.duckdb_memory_limit:
        # dlt's config from the environment, inherited by the child process
        os.environ["DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG"] = json.dumps(
            {"memory_limit": args.duckdb_memory_limit, "threads": 1}
        )
    print(f"{'deals':>10} | {'peak RSS MB':>12} | {'seconds':>8} | mode={args.mode}")
    for size in args.sizes:
        r = run_size(size, args.mode)
        print(f"{size:>10} | {r['peak_rss_mb']:>12.1f} | {r['seconds']:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
