"""Limiter benchmark: a 5,000-command job against the sandbox's leaky bucket.

Two jobs, each checked against the bucket's theoretical bound ``(requests - burst) / drain`` (the fastest any
client can go without a 503, starting from an empty bucket):

* ``batch``: 5,000 commands through ``batch_by_chunk`` (100 batch requests) against the cloud default bucket,
  50 burst / 2 per second, exactly as the portal counts them (a batch is one request, §4.5).
* ``calls``: 5,000 single calls from 8 threads sharing one client, against a bucket with the default burst
  and a scaled drain rate (default 100/s), so the job takes under a minute instead of 41 minutes.

Prints elapsed time, the bound, their ratio (target: <= 1.15) and the portal's 503 count (target: 0), and
exits non-zero when a target is missed.

Run: ``.venv/bin/python bench/bench_limiter.py [--mode batch|calls|both] [--commands 5000] [--drain 100]``
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from bitrix24_source.client import Bitrix24Client
from bitrix24_source.client.limits import PortalLimiter, RateLimit
from bitrix24_source.sandbox import RateLimit as SandboxRateLimit
from bitrix24_source.sandbox import Sandbox

TARGET_RATIO = 1.15


def _report(
    name: str, requests: int, burst: int, drain: float, elapsed: float, rejected: int, ok: int
) -> bool:
    bound = max(0.0, (requests - burst) / drain)
    ratio = elapsed / bound if bound else float("nan")
    print(
        f"{name}: {ok} commands ok in {requests} HTTP requests, bucket {burst} burst / {drain:g} per s\n"
        f"  elapsed {elapsed:.2f} s, theoretical bound {bound:.2f} s, ratio {ratio:.3f} (target <= {TARGET_RATIO}),"
        f" 503 rejections {rejected} (target 0)"
    )
    return ratio <= TARGET_RATIO and rejected == 0


def run_batch_job(commands: int) -> bool:
    burst, drain = 50, 2.0
    with Sandbox(
        seed=1,
        deals=200,
        leads=5,
        contacts=5,
        companies=5,
        users=5,
        tasks=5,
        rate_limit=SandboxRateLimit(burst=burst, drain=drain),
    ) as portal:
        ids = [d["id"] for d in portal.rows("deals")]
        calls = [("crm.item.get", {"entityTypeId": 2, "id": ids[i % len(ids)]}) for i in range(commands)]
        client = Bitrix24Client(portal.webhook_url, limiter=PortalLimiter(RateLimit(burst, drain), None))
        started = time.monotonic()
        result = client.batch_by_chunk(calls, halt_on_error=False)
        elapsed = time.monotonic() - started
        stats = portal.stats()
        ok = sum(r.ok for r in result.results)
        return _report(
            "batch_by_chunk job", stats.http_requests, burst, drain, elapsed, stats.rejected_503, ok
        )


def run_calls_job(commands: int, drain: float, threads: int) -> bool:
    burst = 50
    with Sandbox(
        seed=1,
        deals=5,
        leads=1,
        contacts=1,
        companies=1,
        users=5,
        tasks=1,
        rate_limit=SandboxRateLimit(burst=burst, drain=drain),
    ) as portal:
        client = Bitrix24Client(portal.webhook_url, limiter=PortalLimiter(RateLimit(burst, drain), None))
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            results = list(pool.map(lambda _: client.call("user.current").result, range(commands)))
        elapsed = time.monotonic() - started
        stats = portal.stats()
        ok = sum(1 for r in results if r)
        return _report(
            f"single-call job ({threads} threads)",
            stats.http_requests,
            burst,
            drain,
            elapsed,
            stats.rejected_503,
            ok,
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=["batch", "calls", "both"], default="both")
    parser.add_argument("--commands", type=int, default=5000)
    parser.add_argument(
        "--drain", type=float, default=100.0, help="drain rate of the scaled bucket (calls mode)"
    )
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    ok = True
    if args.mode in ("batch", "both"):
        ok = run_batch_job(args.commands) and ok
    if args.mode in ("calls", "both"):
        ok = run_calls_job(args.commands, args.drain, args.threads) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
