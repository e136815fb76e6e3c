"""Benchmark: reading `deals` with the keyset-batch reader vs offset pagination, on the same sandbox portal.

Setup: an in-process sandbox portal (127.0.0.1, no rate limit so the figures show the read strategy, not
the throttle) with N deals. Both strategies select every field (`*`, `UF_*`) and go through the same
`Bitrix24Client`.

* keyset-batch: what the source does: 50 chained `start=-1` keyset pages per batch (§3.2, §4.3).
* offset: fast_bitrix24 `get_all` style: one `start=0` call to learn `total`, then batches of 50 commands
  with `start=50, 100, ...` (§3.4).

Printed per strategy: HTTP requests, rows, requests per 10k rows, wall seconds per 10k rows, and the portal's
simulated operating time (`time.operating`, §6.1) per 10k rows, from the sandbox's cost model (offset pages
cost more the deeper they go and counting costs extra; keyset pages skip both, as on a real portal).

    .venv/bin/python bench/bench_source.py [--deals 61000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from bitrix24_source import Bitrix24Client
from bitrix24_source.sandbox import Sandbox
from bitrix24_source.source.keyset import keyset_pages
from bitrix24_source.source.queries import CRM_SELECT_ALL, rows_of
from bitrix24_source.source.reader import PortalReader
from bitrix24_source.source.settings import DEALS, PAGE_SIZE


def keyset_batch(client: Bitrix24Client) -> int:
    return sum(len(chunk) for chunk in keyset_pages(PortalReader(client), "deals", DEALS))


def offset_pagination(client: Bitrix24Client) -> int:
    base = {"entityTypeId": 2, "select": list(CRM_SELECT_ALL), "order": {"id": "ASC"}}
    first = client.call("crm.item.list", {**base, "start": 0})
    rows = len(rows_of(first.result, "items"))
    total = int(first.total or 0)
    starts = list(range(PAGE_SIZE, total, PAGE_SIZE))
    for i in range(0, len(starts), 50):
        calls = [("crm.item.list", {**base, "start": s}) for s in starts[i : i + 50]]
        batch = client.batch(calls, halt_on_error=False)
        for res in batch.results:
            if not res.ok:
                raise RuntimeError(f"offset page failed: {res.error}")
            rows += len(rows_of(res.result, "items"))
    return rows


def measure(portal: Sandbox, name: str, strategy: Callable[[Bitrix24Client], int]) -> dict[str, Any]:
    portal.reset_stats()
    client = Bitrix24Client(portal.webhook_url, rate_limit=None, operating_limit=None)
    started = time.perf_counter()
    rows = strategy(client)
    seconds = time.perf_counter() - started
    stats = portal.stats()
    operating = stats.operating.get("crm.item.list", 0.0)
    per10k = 10_000 / rows
    return {
        "strategy": name,
        "rows": rows,
        "requests": stats.http_requests,
        "rows/request": rows / stats.http_requests,
        "requests/10k": stats.http_requests * per10k,
        "seconds/10k": seconds * per10k,
        "operating s/10k": operating * per10k,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deals", type=int, default=61_000)
    args = parser.parse_args()
    print(f"seeding a sandbox with {args.deals} deals ...", flush=True)
    with Sandbox(seed=3, deals=args.deals, leads=10, contacts=50, companies=20, users=10, tasks=10) as portal:
        results = [
            measure(portal, "keyset-batch", keyset_batch),
            measure(portal, "offset (get_all)", offset_pagination),
        ]
    for r in results:
        if r["rows"] != args.deals:
            raise SystemExit(f"{r['strategy']} read {r['rows']} rows, expected {args.deals}")
    header = [
        "strategy",
        "rows",
        "requests",
        "rows/request",
        "requests/10k",
        "seconds/10k",
        "operating s/10k",
    ]
    print(" | ".join(f"{h:>16}" for h in header))
    for r in results:
        cells = [f"{r[h]:>16.2f}" if isinstance(r[h], float) else f"{r[h]:>16}" for h in header]
        print(" | ".join(cells))


if __name__ == "__main__":
    main()
