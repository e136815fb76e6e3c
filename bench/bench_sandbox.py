"""Sandbox throughput with limits off: batch requests per second and rows per second (prints figures).

The load generator runs in its own process so that it does not share the server's GIL; both still share the
machine's two cores (and whatever else runs on them: the load average is printed at the end).

Run: .venv/bin/python bench/bench_sandbox.py [--seconds 5] [--leads 20000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import time
from multiprocessing import Process, Queue
from typing import Any
from urllib.parse import urlsplit

import requests

from bitrix24_source.sandbox import Sandbox
from bitrix24_source.sandbox.phpquery import decode_body, merge_request
from bitrix24_source.sandbox.server import route


def _hammer(url: str, body: dict[str, Any], session: requests.Session, seconds: float) -> tuple[int, float]:
    """POST ``body`` over one keep-alive connection for ``seconds``; return (requests, elapsed).

    The loop uses ``http.client`` with the body encoded once: a lighter client than ``requests`` leaves more
    of the two shared cores to the server, which is what is being measured. Every answer is read in full
    and must be a 200.
    """
    parts = urlsplit(url)
    payload = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    count = 0
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < seconds:
            conn.request("POST", parts.path, body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
            if response.status != 200 or not data.startswith(b'{"result":'):
                raise SystemExit(f"unexpected answer {response.status}: {data[:200]!r}")
            count += 1
    finally:
        conn.close()
    return count, time.perf_counter() - started


def core_batches(webhook_url: str, session: requests.Session, seconds: float) -> tuple[int, float]:
    """Batches of 50 ``server.time`` commands: the HTTP core's own cost (routing, parsing, batch, JSON)."""
    body = {"halt": 0, "cmd": {f"t{i}": "server.time" for i in range(50)}}
    return _hammer(webhook_url + "batch", body, session, seconds)


def _small_cmd() -> dict[str, str]:
    cmd = {}
    for i in range(50):
        if i % 2:
            cmd[f"d{i}"] = (
                f"crm.deal.list?select[0]=ID&select[1]=TITLE&start=-1&filter[%3EID]={i}&filter[%3C%3DID]={i + 2}"
            )
        else:
            cmd[f"i{i}"] = (
                "crm.item.list?entityTypeId=2&select[0]=id&select[1]=title&start=-1"
                f"&filter[%3Eid]={i}&filter[%3C%3Did]={i + 1}"
            )
    return cmd


def small_batches(webhook_url: str, session: requests.Session, seconds: float) -> tuple[int, float]:
    """Batches of 50 small list commands (one or two short rows each, classic and crm.item)."""
    cmd = _small_cmd()
    body = {"halt": 0, "cmd": cmd}
    url = webhook_url + "batch"
    check = session.post(url, json=body).json()["result"]
    served = sum(len(v) if isinstance(v, list) else len(v["items"]) for v in check["result"].values())
    if check["result_error"] or served != 75:
        raise SystemExit(f"unexpected small-batch answer: {served} rows, errors {check['result_error']}")
    return _hammer(url, body, session, seconds)


def keyset_rows(webhook_url: str, session: requests.Session, total_rows: int) -> tuple[int, int, float]:
    """Export a table with batches of 50 chained 50-row keyset pages (``start=-1``, ``>ID``, §3.2)."""
    url = webhook_url + "batch"
    last_id = 0
    rows = batches = 0
    started = time.perf_counter()
    while True:
        cmd = {"p0": f"crm.lead.list?order[ID]=ASC&start=-1&filter[%3EID]={last_id}"}
        for i in range(1, 50):
            cmd[f"p{i}"] = f"crm.lead.list?order[ID]=ASC&start=-1&filter[%3EID]=$result[p{i - 1}][49][ID]"
        result = session.post(url, json={"halt": 1, "cmd": cmd}).json()["result"]["result"]
        batches += 1
        pages = list(result.values())
        rows += sum(len(page) for page in pages)
        if len(pages) < 50 or len(pages[-1]) < 50:
            break
        last_id = int(pages[-1][-1]["ID"])
    elapsed = time.perf_counter() - started
    if rows != total_rows:
        raise SystemExit(f"keyset export returned {rows} rows, expected {total_rows}")
    return rows, batches, elapsed


def session_batches(webhook_url: str, session: requests.Session, seconds: float) -> tuple[int, float]:
    """The small batches again through ``requests.Session`` (JSON encoded per call, as an SDK would)."""
    body = {"halt": 0, "cmd": _small_cmd()}
    count = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        response = session.post(webhook_url + "batch", json=body)
        response.raise_for_status()
        response.json()
        count += 1
    return count, time.perf_counter() - started


def server_cpu_per_batch(portal: Sandbox, repeats: int = 200) -> float:
    """Server CPU seconds for one small batch, without HTTP, from the thread's CPU clock (best of 5 runs).

    Unlike the requests/s figures this does not depend on how the two cores are shared at the moment.
    """
    body = json.dumps({"halt": 0, "cmd": _small_cmd()}).encode()
    found = route(urlsplit(portal.webhook_url + "batch").path)
    assert found is not None
    best = float("inf")
    for _ in range(5):
        started = time.thread_time()
        for _ in range(repeats):
            params = merge_request({}, decode_body(body, "application/json"))
            portal._serve_v2(found, params, "webhook")
        best = min(best, (time.thread_time() - started) / repeats)
    return best


def _client(webhook_url: str, seconds: float, leads: int, out: Queue) -> None:  # type: ignore[type-arg]
    with requests.Session() as session:
        out.put(core_batches(webhook_url, session, seconds))
        out.put(small_batches(webhook_url, session, seconds))
        out.put(session_batches(webhook_url, session, seconds))
        out.put(keyset_rows(webhook_url, session, leads))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--leads", type=int, default=20000)
    args = parser.parse_args()
    built = time.perf_counter()
    with Sandbox(
        seed=1, leads=args.leads, deals=500, contacts=50, companies=20, users=10, tasks=20
    ) as portal:
        print(f"portal with {args.leads} leads built in {time.perf_counter() - built:.1f} s")
        results: Queue = Queue()  # type: ignore[type-arg]
        client = Process(target=_client, args=(portal.webhook_url, args.seconds, args.leads, results))
        client.start()
        count, elapsed = results.get(timeout=args.seconds + 120)
        print(f"core batches (50 server.time commands each): {count / elapsed:.0f} batch requests/s")
        count, elapsed = results.get(timeout=args.seconds + 120)
        print(
            f"small batches (50 one-or-two-row list commands each): {count / elapsed:.0f} batch requests/s "
            f"({count * 50 / elapsed:.0f} commands/s)"
        )
        count, elapsed = results.get(timeout=args.seconds + 120)
        print(f"the same through requests.Session (client-bound): {count / elapsed:.0f} batch requests/s")
        rows, batches, elapsed = results.get(timeout=300)
        print(
            f"keyset export (batches of 50 x 50-row pages): {rows / elapsed:.0f} rows/s "
            f"({rows} rows, {batches} batches in {elapsed:.1f} s)"
        )
        client.join(timeout=30)
        cpu = server_cpu_per_batch(portal)
        print(
            f"server CPU per small batch, no HTTP: {cpu * 1000:.2f} ms ({1 / cpu:.0f} batches/s on one core)"
        )
    print(f"machine load average at the end: {os.getloadavg()[0]:.1f} (2 cores, shared with other jobs)")


if __name__ == "__main__":
    main()
