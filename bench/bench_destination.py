"""Benchmark: 10,000 deal updates through the dlt destination, next to the leaky-bucket bound.

Setup: an in-process sandbox portal (127.0.0.1) with N deals and the cloud's leaky bucket (§6.1: burst 50,
drain 2 requests/s), the drain optionally scaled up (``--drain-scale``, default 10, i.e. 20 requests/s) so the
run takes seconds instead of minutes; the client's limiter uses the same figures. One push of N updates
(`title`, `opportunity`) through `bitrix24_destination`, results into a temporary DuckDB file.

Printed: rows, HTTP requests, wall seconds of the load step (the push plus loading the 10,000 result rows into
DuckDB; the destination's own summary line above it gives the push alone), measured rows/s, and the bound the
bucket allows:

* steady state: drain x 50 rows per batch (rows/s);
* this run: N/50 write batches + 1 metadata call + N/2,500 pre-flight look-ups (do the ids exist, what do
  they hold), of which the first `burst` pass at once and the rest drain at `drain`/s, so no client can beat
  rows / ((requests - burst) / drain).

    .venv/bin/python bench/bench_destination.py [--deals 10000] [--drain-scale 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import dlt

from bitrix24_source import bitrix24_destination
from bitrix24_source.client import RateLimit as ClientRateLimit
from bitrix24_source.client.batch import MAX_BATCH
from bitrix24_source.sandbox import RateLimit, Sandbox

BURST = 50
DRAIN = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deals", type=int, default=10_000)
    parser.add_argument("--drain-scale", type=float, default=10.0, help="multiply the drain rate (1 = cloud)")
    args = parser.parse_args()
    drain = DRAIN * args.drain_scale

    with (
        tempfile.TemporaryDirectory() as tmp,
        Sandbox(
            seed=3,
            deals=args.deals,
            leads=0,
            contacts=20,
            companies=10,
            users=5,
            tasks=0,
            rate_limit=RateLimit(burst=BURST, drain=drain),
        ) as portal,
    ):
        rows = [
            {"id": int(r["id"]), "title": f"bench {r['id']}", "opportunity": float(r["id"]) * 2}
            for r in portal.rows("deals")
        ]
        destination = bitrix24_destination(
            webhook_url=portal.webhook_url,
            results_destination=dlt.destinations.duckdb(str(Path(tmp) / "results.duckdb")),
            rate_limit=ClientRateLimit(burst=BURST, drain=drain),
            progress=False,
        )
        pipeline = dlt.pipeline("bench_push", destination=destination, pipelines_dir=str(Path(tmp) / "p"))
        # Extract and normalize first, so the timed part is the load step alone (the writes).
        pipeline.extract(rows, table_name="deals")
        pipeline.normalize()
        portal.reset_stats()
        started = time.perf_counter()
        pipeline.load()
        seconds = time.perf_counter() - started
        stats = portal.stats()

    requests = stats.http_requests
    updated = stats.by_method.get("crm.item.update", 0)
    bound_run = len(rows) / max((requests - BURST) / drain, 1e-9) if requests > BURST else float("inf")
    print(
        f"rows: {len(rows)}  crm.item.update executed: {updated}  HTTP requests: {requests}  "
        f"503 rejected: {stats.rejected_503}"
    )
    print(f"bucket: burst {BURST}, drain {drain:g}/s (cloud {DRAIN:g}/s x {args.drain_scale:g})")
    print(f"load seconds: {seconds:.2f}")
    print(f"measured: {len(rows) / seconds:,.0f} rows/s")
    print(f"bound (steady state, drain x {MAX_BATCH}): {drain * MAX_BATCH:,.0f} rows/s")
    print(f"bound (this run, burst included): {bound_run:,.0f} rows/s")


if __name__ == "__main__":
    main()
