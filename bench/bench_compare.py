"""Benchmark: this project, fast_bitrix24 and b24pysdk side by side against one sandbox portal (issue 11).

Setup. The sandbox portal runs in its own process (127.0.0.1, no rate limit, no operating limit) and every
measured job runs in a fresh child process, so that

* the CPU seconds of a job are the client's alone (the portal's JSON encoding would otherwise be billed to
  whichever tool runs in the portal's process) and the portal does not compete for the client's GIL;
* the peak RSS of a job (`VmHWM` of the child) holds neither the portal's tables nor another tool's leftovers;
* the portal's request counters (`Sandbox.stats()`) cover exactly one job: the parent zeroes them before
  starting the child and reads them after it ends.

The portal serves one generated state on two servers: plain http for this project and fast_bitrix24, https
for b24pysdk (it builds `https://` URLs only). The fetch jobs run in `--rounds` rounds, each tool once per
round, each round starting with a different tool; the first `--e2e-rounds` rounds also run the end-to-end
sync. Per job the round with the least wall time is reported; `samples_rows_per_s` keeps every round.

Figures (all written to bench/results.json, drawn in bench/bench_compare.png):

* fetch: rows/s reading every deal with all fields (`*`, `UF_*`) into memory; this project by iterating the
  `bitrix24_source` with only `deals` selected (field metadata fetched by the source included), fast_bitrix24
  with `get_all("crm.item.list")`, b24pysdk with `call_list_fast("crm.item.list")` (`as_list_fast`);
* e2e: this project's dlt pipeline, `deals` only, into DuckDB (pipelines_dir in a temp dir), with the time of
  dlt's extract, normalize and load steps from the pipeline's trace;
* requests per 10k rows (HTTP requests the portal counted, metadata included) next to the two floors: 2,500 rows
  per request (50 pages of 50 per batch) and the same with the field-list command in the first batch (one
  command more: 50,000 deals need 1,000 pages, 21 batches instead of 20); CPU seconds per 100k rows
  (`time.process_time` of the child around the job) and peak RSS of each job;
* rss: peak RSS of this project's end-to-end sync of `--rss-deals` deals (500,000, as issue 11 asks). The
  end-to-end jobs load into DuckDB the way `bitrix24-dlt sync` and `make demo` do (`cli.sync.duckdb_warehouse`:
  DuckDB's `memory_limit` at `DUCKDB_MEMORY_LIMIT`); `--duckdb-memory-limit none` measures DuckDB's default;
* tasks: `--tasks` tasks with 2-4 results each, tasks (with all their results) per HTTP request. This project:
  the `tasks` and `task_results` resources. fast_bitrix24: `get_all("tasks.task.list")`, then the results with
  `call(..., raw=True)` on the REST 3.0 URL, 50 task ids per filter, offset pages while pages come back full:
  the sandbox serves `tasks.task.result.list` on REST 3.0 only, and fast_bitrix24's batches are REST 2.0 only;
* push: `bitrix24_destination` writing `--push-deals` deal updates into a portal with the cloud's leaky bucket
  (burst 50, drain 2 requests/s, §6.1) and the client's default limiter (the same figures): wall seconds of
  the load step next to the bucket's bound `(accepted requests - burst) / drain`, and the 503 answers.

    .venv/bin/python bench/bench_compare.py [--deals 50000] [--rounds 3] [--e2e-rounds 1] \\
        [--tasks 1000] [--rss-deals 500000] [--duckdb-memory-limit 100MB] [--push-deals 5000] [--out bench]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DUCKDB_MEMORY_LIMIT = "100MB"
"""The default of `bitrix24_source.cli.sync.DUCKDB_MEMORY_LIMIT` (this module imports the project in jobs only;
tests/bench checks the two agree)."""
OURS, FB24, B24 = "bitrix24_dlt", "fast_bitrix24", "b24pysdk"
TOOLS = (OURS, FB24, B24)
BURST, DRAIN = 50, 2.0
"""The cloud's leaky bucket (§6.1), which is also the client's `rate_limit="default"`."""
ROWS_PER_PAGE, COMMANDS_PER_BATCH = 50, 50
"""crm.item.list pages hold 50 rows (DOCS api-reference/crm/universal/crm-item-list.md: "always static — 50
records"); a batch holds 50 commands (DOCS settings/how-to-call-rest-api/batch.md)."""
REQUEST_FLOOR_PER_10K = 4.0
"""50 pages of 50 rows per batch: 2,500 rows per request at best."""


def request_floor(rows: int, extra_commands: int = 0) -> int:
    """The fewest batches that read `rows` rows in 50-row pages, with `extra_commands` more (field lists)."""
    pages = math.ceil(rows / ROWS_PER_PAGE)
    return math.ceil((pages + extra_commands) / COMMANDS_PER_BATCH)


CRM_SELECT_ALL = ["*", "UF_*"]
TASKS_PER_REQUEST_TARGET = 250
"""Issue 11's target: several task pages and their result pages per REST 3.0 batch."""
RESULTS_PAGE = 50
"""`tasks.task.result.list` page size on REST 3.0 (§5.2)."""
_CTX = multiprocessing.get_context("spawn")


# --- the portal process ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PortalSpec:
    deals: int
    tasks: int = 10
    tls: bool = False
    bucket: bool = False
    seed: int = 3


def _portal_main(conn: Any, spec: PortalSpec) -> None:
    from bitrix24_source.sandbox import CostModel, RateLimit, Sandbox, SeedCounts
    from bitrix24_source.sandbox.state import PortalState

    counts = SeedCounts(
        deals=spec.deals,
        leads=10,
        contacts=50,
        companies=20,
        users=10,
        tasks=spec.tasks,
        results_per_task=(2, 4),
    )
    state = PortalState(seed=spec.seed, counts=counts, cost_model=CostModel())
    rate_limit = RateLimit(burst=BURST, drain=DRAIN) if spec.bucket else None
    servers = {"plain": Sandbox(state=state, rate_limit=rate_limit)}
    if spec.tls:
        # The same webhook on both servers, so one `webhook_token` serves every tool.
        code = servers["plain"].auth.webhook_code
        servers["tls"] = Sandbox(state=state, rate_limit=rate_limit, webhook_code=code, tls=True)
    for server in servers.values():
        server.start()
    try:
        plain = servers["plain"]
        conn.send(
            {
                "webhook_url": plain.webhook_url,
                "webhook_url_v3": plain.webhook_url_v3,
                "tls_base_url": servers["tls"].base_url if spec.tls else None,
                "ca_cert_path": servers["tls"].ca_cert_path if spec.tls else None,
                "webhook_token": f"{plain.auth.user_id}/{plain.auth.webhook_code}",
            }
        )
        while True:
            command, arg = conn.recv()
            if command == "stop":
                return
            if command == "reset":
                for server in servers.values():
                    server.reset_stats()
                conn.send(None)
            elif command == "stats":
                conn.send(asdict(servers[arg].stats()))
            elif command == "ids":
                conn.send([int(row["id"]) for row in plain.rows(arg)])
            else:
                raise ValueError(f"unknown portal command {command!r}")
    finally:
        for server in servers.values():
            server.stop()


class Portal:
    """A sandbox portal in its own process; `stats`, `reset` and `ids` go to it over a pipe."""

    def __init__(self, spec: PortalSpec) -> None:
        self.spec = spec
        self._conn, child_conn = _CTX.Pipe()
        self._process = _CTX.Process(target=_portal_main, args=(child_conn, spec), daemon=True)
        self._process.start()
        child_conn.close()
        try:
            self.info: dict[str, Any] = self._conn.recv()
        except EOFError:
            raise SystemExit(
                f"sandbox portal process failed to start (exit code {self._process.exitcode})"
            ) from None

    def ask(self, command: str, arg: Any = None) -> Any:
        self._conn.send((command, arg))
        return self._conn.recv()

    def close(self) -> None:
        self._conn.send(("stop", None))
        self._process.join(timeout=30)
        self._conn.close()


@contextmanager
def portal(spec: PortalSpec) -> Iterator[Portal]:
    started = time.perf_counter()
    print(f"seeding a sandbox portal: {spec.deals:,} deals, {spec.tasks:,} tasks ...", flush=True)
    running = Portal(spec)
    print(f"  ready in {time.perf_counter() - started:.1f} s", flush=True)
    try:
        yield running
    finally:
        running.close()


# --- jobs (each runs in a fresh child process) ---------------------------------------------------------------


def _peak_rss_mb() -> float:
    """Peak RSS of this process (`VmHWM`): not `ru_maxrss`, which a spawned child inherits from its parent."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def _timed(work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = work()
    out["wall_s"] = time.perf_counter() - wall
    out["cpu_s"] = time.process_time() - cpu
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def _fetch_ours(info: dict[str, Any]) -> dict[str, Any]:
    from bitrix24_source import bitrix24_source

    def work() -> dict[str, Any]:
        source = bitrix24_source(webhook_url=info["webhook_url"], rate_limit=None, operating_limit=None)
        # the source yields one Arrow table per HTTP request
        ids = {id_ for table in source.with_resources("deals") for id_ in table.column("id").to_pylist()}
        return {"rows": len(ids)}

    return _timed(work)


def _fb24_client(webhook_url: str) -> Any:
    """fast_bitrix24 with its throttles opened wide (the portal has no limits here).

    Not `respect_velocity_policy=False`: fast_bitrix24 1.8.14 then fails with `KeyError: <method>` on any
    answer that carries `time.operating` (its per-method throttler is created only when the policy is on).
    """
    from fast_bitrix24 import Bitrix

    return Bitrix(
        webhook_url,
        verbose=False,
        request_pool_size=1_000_000,
        requests_per_second=1_000_000.0,
        operating_time_limit=1_000_000_000,
    )


def _fetch_fb24(info: dict[str, Any]) -> dict[str, Any]:
    # get_all warns that selecting every field is slow: that is the job measured here.
    warnings.filterwarnings("ignore", message="You are selecting all fields", category=UserWarning)

    def work() -> dict[str, Any]:
        client = _fb24_client(info["webhook_url"])
        rows = client.get_all("crm.item.list", {"entityTypeId": 2, "select": CRM_SELECT_ALL})
        return {"rows": len({row["id"] for row in rows})}

    return _timed(work)


def _fetch_b24(info: dict[str, Any]) -> dict[str, Any]:
    os.environ["REQUESTS_CA_BUNDLE"] = info["ca_cert_path"]
    from b24pysdk import BitrixWebhook

    def work() -> dict[str, Any]:
        domain = info["tls_base_url"].split("://", 1)[1]
        webhook = BitrixWebhook(domain=domain, webhook_token=info["webhook_token"])
        answer = webhook.call_list_fast("crm.item.list", {"entityTypeId": 2, "select": CRM_SELECT_ALL})
        return {"rows": len({row["id"] for row in answer["result"]})}

    return _timed(work)


def _e2e_ours(info: dict[str, Any], memory_limit: str | None) -> dict[str, Any]:
    import dlt

    from bitrix24_source import bitrix24_source
    from bitrix24_source.cli.sync import duckdb_warehouse

    with tempfile.TemporaryDirectory() as workdir:
        pipeline = dlt.pipeline(
            pipeline_name="bench_compare",
            pipelines_dir=workdir,
            destination=duckdb_warehouse(str(Path(workdir) / "warehouse.duckdb"), memory_limit),
            dataset_name="bitrix24",
        )

        def work() -> dict[str, Any]:
            source = bitrix24_source(webhook_url=info["webhook_url"], rate_limit=None, operating_limit=None)
            pipeline.run(source.with_resources("deals"))
            return {}

        out = _timed(work)
        with pipeline.sql_client() as sql:
            out["rows"] = int(sql.execute_sql("SELECT count(*) FROM deals")[0][0])
        assert pipeline.last_trace is not None
        out["steps_s"] = {
            step.step: (step.finished_at - step.started_at).total_seconds()
            for step in pipeline.last_trace.steps
            if step.finished_at is not None
        }
    return out


def _tasks_ours(info: dict[str, Any]) -> dict[str, Any]:
    import dlt

    from bitrix24_source import bitrix24_source
    from bitrix24_source.source import resource_stats

    with tempfile.TemporaryDirectory() as workdir:
        pipeline = dlt.pipeline(pipeline_name="bench_compare_tasks", pipelines_dir=workdir)

        def work() -> dict[str, Any]:
            source = bitrix24_source(webhook_url=info["webhook_url"], rate_limit=None, operating_limit=None)
            pipeline.extract(source.with_resources("tasks", "task_results"))
            return {}

        out = _timed(work)
        stats = resource_stats(pipeline)
    out["rows"] = stats["tasks"]["rows"]
    out["results"] = stats["task_results"]["rows"]
    return out


def _tasks_fb24(info: dict[str, Any]) -> dict[str, Any]:
    def work() -> dict[str, Any]:
        v2, v3 = _fb24_client(info["webhook_url"]), _fb24_client(info["webhook_url_v3"])
        tasks = v2.get_all("tasks.task.list", {"select": ["ID", "TITLE", "STATUS", "CHANGED_DATE"]})
        ids = sorted(int(task["id"]) for task in tasks)
        results = 0
        for i in range(0, len(ids), RESULTS_PAGE):
            window = ids[i : i + RESULTS_PAGE]
            offset = 0
            while True:
                page = v3.call(
                    "tasks.task.result.list",
                    {
                        "filter": [["taskId", "in", window]],
                        "pagination": {"limit": RESULTS_PAGE, "offset": offset},
                    },
                    raw=True,
                )["result"]["items"]
                results += len(page)
                if len(page) < RESULTS_PAGE:
                    break
                offset += RESULTS_PAGE
        return {"rows": len(ids), "results": results}

    return _timed(work)


def _push_ours(info: dict[str, Any], ids: list[int]) -> dict[str, Any]:
    import dlt

    from bitrix24_source import bitrix24_destination

    rows = [{"id": i, "title": f"bench {i}", "opportunity": float(i) * 2} for i in ids]
    with tempfile.TemporaryDirectory() as workdir:
        destination = bitrix24_destination(
            webhook_url=info["webhook_url"],
            results_destination=dlt.destinations.duckdb(str(Path(workdir) / "results.duckdb")),
            rate_limit="default",
            progress=False,
        )
        pipeline = dlt.pipeline("bench_compare_push", destination=destination, pipelines_dir=workdir)
        # Extract and normalize first: the timed part is the load step, i.e. the writes.
        pipeline.extract(rows, table_name="deals")
        pipeline.normalize()

        def work() -> dict[str, Any]:
            pipeline.load()
            return {"rows": len(rows)}

        return _timed(work)


_JOBS: dict[tuple[str, str], Callable[..., dict[str, Any]]] = {
    ("fetch", OURS): _fetch_ours,
    ("fetch", FB24): _fetch_fb24,
    ("fetch", B24): _fetch_b24,
    ("e2e", OURS): _e2e_ours,
    ("tasks", OURS): _tasks_ours,
    ("tasks", FB24): _tasks_fb24,
    ("push", OURS): _push_ours,
}


def _child_main(conn: Any, kind: str, tool: str, args: tuple[Any, ...]) -> None:
    try:
        conn.send(_JOBS[kind, tool](*args))
    except Exception as error:
        traceback.print_exc()
        conn.send({"error": f"{type(error).__name__}: {error}"})


def run_job(running: Portal, kind: str, tool: str, *args: Any) -> dict[str, Any]:
    """Run one job in a fresh process; its HTTP requests are what the portal counted meanwhile."""
    server = "tls" if tool == B24 else "plain"
    running.ask("reset")
    conn, child_conn = _CTX.Pipe()
    process = _CTX.Process(target=_child_main, args=(child_conn, kind, tool, (running.info, *args)))
    process.start()
    child_conn.close()
    try:
        out: dict[str, Any] = conn.recv()
    except EOFError:
        out = {"error": f"child process died (exit code {process.exitcode})"}
    process.join()
    if "error" in out:
        raise SystemExit(f"{kind} job of {tool} failed: {out['error']}")
    stats = running.ask("stats", server)
    out["requests"] = stats["http_requests"]
    out["rejected_503"] = stats["rejected_503"]
    out["rows_per_s"] = out["rows"] / out["wall_s"]
    out["requests_per_10k"] = out["requests"] * 10_000 / out["rows"]
    out["cpu_s_per_100k"] = out["cpu_s"] * 100_000 / out["rows"]
    print(
        f"  {kind:<5} {tool:<14} {out['rows']:>8,} rows  {out['wall_s']:7.2f} s  "
        f"{out['rows_per_s']:>9,.0f} rows/s  {out['requests']:>4} requests  cpu {out['cpu_s']:.2f} s  "
        f"rss {out['peak_rss_mb']:.0f} MB",
        flush=True,
    )
    return out


def _expect(kind: str, tool: str, got: int, want: int) -> None:
    if got != want:
        raise SystemExit(f"{kind} job of {tool} read {got:,} rows, the portal has {want:,}")


def _best(samples: list[dict[str, Any]]) -> dict[str, Any]:
    best = dict(min(samples, key=lambda s: s["wall_s"]))
    best["samples_rows_per_s"] = [round(s["rows_per_s"], 1) for s in samples]
    return best


# --- the run -------------------------------------------------------------------------------------------------


def measure(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    memory_limit = None if args.duckdb_memory_limit.lower() == "none" else args.duckdb_memory_limit
    figures: dict[str, dict[str, Any]] = {tool: {} for tool in TOOLS}
    fetches = [("fetch", OURS), ("fetch", FB24), ("fetch", B24)]

    with portal(PortalSpec(deals=args.deals, tasks=args.tasks, tls=True)) as main:
        samples: dict[tuple[str, str], list[dict[str, Any]]] = {job: [] for job in [*fetches, ("e2e", OURS)]}
        for round_ in range(args.rounds):
            print(f"round {round_ + 1}/{args.rounds}", flush=True)
            shift = round_ % len(fetches)
            jobs = fetches[shift:] + fetches[:shift]
            if round_ < args.e2e_rounds:
                jobs.append(("e2e", OURS))
            for kind, tool in jobs:
                out = run_job(main, kind, tool, *([memory_limit] if kind == "e2e" else []))
                _expect(kind, tool, out["rows"], args.deals)
                samples[kind, tool].append(out)
        for (kind, tool), outs in samples.items():
            figures[tool][kind] = _best(outs)

        print("tasks with their results", flush=True)
        results_total = len(main.ask("ids", "task_results"))
        for tool in (OURS, FB24):
            out = run_job(main, "tasks", tool)
            _expect("tasks", tool, out["rows"], args.tasks)
            _expect("task_results", tool, out["results"], results_total)
            out["tasks_per_request"] = out["rows"] / out["requests"]
            figures[tool]["tasks"] = out

    print("rate-limited push", flush=True)
    with portal(PortalSpec(deals=args.push_deals, bucket=True)) as pushed:
        out = run_job(pushed, "push", OURS, pushed.ask("ids", "deals"))
        accepted = out["requests"] - out["rejected_503"]
        out["bound_s"] = max(accepted - BURST, 0) / DRAIN
        out["bucket"] = {"burst": BURST, "drain_per_s": DRAIN}
        figures[OURS]["push"] = out

    print("peak RSS of an end-to-end sync", flush=True)
    with portal(PortalSpec(deals=args.rss_deals)) as large:
        out = run_job(large, "e2e", OURS, memory_limit)
        _expect("rss", OURS, out["rows"], args.rss_deals)
        figures[OURS]["rss"] = out

    return {
        "meta": {
            "issue": 11,
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_at_end": list(os.getloadavg()),
            "duration_s": round(time.perf_counter() - started, 1),
            "sandbox": "own process, 127.0.0.1, no rate limit (push: cloud bucket); one child process per job",
            "transport": {OURS: "http", FB24: "http", B24: "https (b24pysdk builds https URLs only)"},
            "sizes": {
                "deals": args.deals,
                "rounds": args.rounds,
                "e2e_rounds": args.e2e_rounds,
                "tasks": args.tasks,
                "rss_deals": args.rss_deals,
                "push_deals": args.push_deals,
            },
            "best_of": "the round with the least wall time; samples_rows_per_s has every round",
            "request_floor_per_10k": REQUEST_FLOOR_PER_10K,
            "request_floor_per_10k_with_field_list": round(
                request_floor(args.deals, extra_commands=1) * 10_000 / args.deals, 2
            ),
            "duckdb_memory_limit": memory_limit or "DuckDB default (80% of RAM)",
        },
        "tools": figures,
    }


def _summary(results: dict[str, Any]) -> str:
    tools, meta = results["tools"], results["meta"]
    ours, fb24 = tools[OURS], tools[FB24]
    lines = [
        f"{'what':<44} | {OURS:>14} | {FB24:>14} | {B24:>14}",
        f"{'fetch rows/s (deals, all fields)':<44} | "
        + " | ".join(f"{tools[t]['fetch']['rows_per_s']:>14,.0f}" for t in TOOLS),
        f"{'end to end into DuckDB rows/s':<44} | {ours['e2e']['rows_per_s']:>14,.0f} | {'':>14} | {'':>14}",
        f"{'  vs fast_bitrix24 fetch':<44} | "
        f"{ours['e2e']['rows_per_s'] / fb24['fetch']['rows_per_s']:>13.2f}x | {'':>14} | {'':>14}",
        f"{'HTTP requests per 10k rows, field list incl.':<44} | "
        + " | ".join(f"{tools[t]['fetch']['requests_per_10k']:>14.2f}" for t in TOOLS),
        f"{'  floor without / with a field-list command':<44} | "
        f"{meta['request_floor_per_10k']:>6.2f} / {meta['request_floor_per_10k_with_field_list']:<5.2f}",
        f"{'CPU s per 100k rows, fetch':<44} | "
        + " | ".join(f"{tools[t]['fetch']['cpu_s_per_100k']:>14.2f}" for t in TOOLS),
        f"{'CPU s per 100k rows, end to end':<44} | {ours['e2e']['cpu_s_per_100k']:>14.2f} | "
        f"{'':>14} | {'':>14}",
        f"{'peak RSS MB, fetch':<44} | "
        + " | ".join(f"{tools[t]['fetch']['peak_rss_mb']:>14.0f}" for t in TOOLS),
        f"{'peak RSS MB, e2e ' + format(ours['rss']['rows'], ',') + ' deals':<44} | "
        f"{ours['rss']['peak_rss_mb']:>14.0f} | {'':>14} | {'':>14}",
        f"{'  DuckDB memory_limit':<44} | {meta['duckdb_memory_limit']}",
        f"{'tasks with results per HTTP request':<44} | {ours['tasks']['tasks_per_request']:>14.1f} | "
        f"{fb24['tasks']['tasks_per_request']:>14.1f} | {'':>14}",
        f"{'push wall s / bucket bound s / 503s':<44} | "
        f"{ours['push']['wall_s']:.1f} / {ours['push']['bound_s']:.1f} / {ours['push']['rejected_503']}",
        "e2e steps (s): "
        + ", ".join(f"{name} {seconds:.2f}" for name, seconds in ours["e2e"]["steps_s"].items()),
    ]
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tools = results["tools"]
    ours = tools[OURS]
    colors = {OURS: "#2f6db5", FB24: "#d9822b", B24: "#5a9e57"}
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))

    def bars(ax: Any, labels: list[str], values: list[float], keys: list[str], fmt: str) -> None:
        drawn = ax.bar(labels, values, color=[colors[k] for k in keys])
        ax.bar_label(drawn, labels=[format(v, fmt) for v in values], fontsize=9)
        ax.tick_params(axis="x", labelsize=8)

    ax = axes[0][0]
    labels = [f"{t}\nfetch" for t in TOOLS] + [f"{OURS}\nto DuckDB"]
    values = [tools[t]["fetch"]["rows_per_s"] for t in TOOLS] + [ours["e2e"]["rows_per_s"]]
    bars(ax, labels, values, [*TOOLS, OURS], ",.0f")
    ax.axhline(0.5 * tools[FB24]["fetch"]["rows_per_s"], color="grey", ls="--", lw=1)
    ax.set_title(f"rows/s, {results['meta']['sizes']['deals']:,} deals (dashed: 0.5x fast_bitrix24)")

    ax = axes[0][1]
    bars(ax, list(TOOLS), [tools[t]["fetch"]["requests_per_10k"] for t in TOOLS], list(TOOLS), ".2f")
    ax.axhline(REQUEST_FLOOR_PER_10K, color="grey", ls="--", lw=1)
    ax.axhline(results["meta"]["request_floor_per_10k_with_field_list"], color="grey", ls=":", lw=1)
    ax.set_title("HTTP requests per 10k rows (floor: 4.0 dashed, with a field list dotted)")

    ax = axes[0][2]
    labels = [f"{t}\nfetch" for t in TOOLS] + [f"{OURS}\nto DuckDB"]
    values = [tools[t]["fetch"]["cpu_s_per_100k"] for t in TOOLS] + [ours["e2e"]["cpu_s_per_100k"]]
    bars(ax, labels, values, [*TOOLS, OURS], ".1f")
    ax.set_title("client CPU seconds per 100k rows")

    ax = axes[1][0]
    labels = [f"{t}\nfetch {tools[t]['fetch']['rows']:,}" for t in TOOLS] + [
        f"{OURS}\nto DuckDB {ours['rss']['rows']:,}"
    ]
    values = [tools[t]["fetch"]["peak_rss_mb"] for t in TOOLS] + [ours["rss"]["peak_rss_mb"]]
    bars(ax, labels, values, [*TOOLS, OURS], ".0f")
    ax.axhline(400, color="grey", ls="--", lw=1)
    ax.set_title("peak RSS, MB (dashed: 400 MB target)")

    ax = axes[1][1]
    keys = [OURS, FB24]
    bars(ax, keys, [tools[t]["tasks"]["tasks_per_request"] for t in keys], keys, ".1f")
    ax.axhline(TASKS_PER_REQUEST_TARGET, color="grey", ls="--", lw=1)
    ax.set_title(f"tasks with results per request, {results['meta']['sizes']['tasks']:,} tasks (dashed: 250)")

    ax = axes[1][2]
    push = ours["push"]
    drawn = ax.bar(
        ["bucket bound", "measured"], [push["bound_s"], push["wall_s"]], color=["grey", colors[OURS]]
    )
    ax.bar_label(drawn, labels=[f"{push['bound_s']:.1f} s", f"{push['wall_s']:.1f} s"], fontsize=9)
    ax.set_title(
        f"push {push['rows']:,} updates, burst {BURST} / {DRAIN:g} per s: {push['rejected_503']} x 503"
    )

    fig.suptitle(
        f"bitrix24-dlt vs fast_bitrix24 vs b24pysdk on the sandbox portal ({results['meta']['date_utc']})"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deals", type=int, default=50_000, help="deals for fetch, e2e and requests/10k")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of fetch jobs (each tool once)")
    parser.add_argument(
        "--e2e-rounds", type=int, default=1, help="rounds that also run the end-to-end sync (<= --rounds)"
    )
    parser.add_argument("--tasks", type=int, default=1_000, help="tasks (2-4 results each)")
    parser.add_argument("--rss-deals", type=int, default=500_000, help="deals for the peak RSS sync")
    parser.add_argument(
        "--duckdb-memory-limit",
        default=DUCKDB_MEMORY_LIMIT,
        help="DuckDB memory_limit of the end-to-end jobs (default: the CLI's); none: DuckDB's default",
    )
    parser.add_argument("--push-deals", type=int, default=5_000, help="deal updates pushed under the bucket")
    parser.add_argument("--out", type=Path, default=HERE, help="directory for results.json and the chart")
    args = parser.parse_args()
    if not 1 <= args.e2e_rounds <= args.rounds:
        parser.error("--e2e-rounds must be between 1 and --rounds")

    results = measure(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    chart(results, args.out / "bench_compare.png")
    print(_summary(results))
    print(f"took {results['meta']['duration_s']:.0f} s; wrote {args.out / 'results.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
