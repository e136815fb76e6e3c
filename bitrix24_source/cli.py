"""Command line: ``python -m bitrix24_source sandbox …`` (also installed as ``bitrix24-dlt``).

Sub-commands:
    sandbox   run the local Bitrix24 sandbox portal on 127.0.0.1 until Ctrl-C
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Sequence

_ENTITIES = ("leads", "deals", "contacts", "companies", "users", "tasks")


def _rate_limit(text: str) -> tuple[int, float]:
    """Parse ``BURST/DRAIN`` (e.g. ``50/2``) or ``off``."""
    burst, sep, drain = text.partition("/")
    try:
        if not sep:
            raise ValueError(text)
        return int(burst), float(drain)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected BURST/DRAIN such as 50/2, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bitrix24_source", description="bitrix24-dlt tools")
    commands = parser.add_subparsers(dest="command", required=True)
    sandbox = commands.add_parser(
        "sandbox",
        help="run the local Bitrix24 sandbox portal",
        description="Serve a generated Bitrix24 portal (REST v2 and v3, webhook and OAuth) on 127.0.0.1.",
    )
    sandbox.add_argument("--port", type=int, default=8024, help="TCP port (0 picks a free one); default 8024")
    sandbox.add_argument("--seed", type=int, default=1, help="data generator seed; default 1")
    for entity in _ENTITIES:
        sandbox.add_argument(f"--{entity}", type=int, default=None, help=f"number of {entity} to generate")
    sandbox.add_argument(
        "--rate-limit",
        type=_rate_limit,
        default=None,
        metavar="BURST/DRAIN",
        help="leaky bucket per client IP, e.g. 50/2 (cloud default) or 250/5 (Enterprise); off by default",
    )
    sandbox.add_argument(
        "--operating-limit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="operating seconds per method per 10 minutes before 429 (e.g. 480); off by default",
    )
    sandbox.add_argument(
        "--tls", action="store_true", help="serve https with a self-signed CA (needs trustme)"
    )
    sandbox.add_argument("--webhook-code", default=None, help="webhook secret (random by default)")
    return parser


def _serve_sandbox(args: argparse.Namespace) -> int:
    from bitrix24_source.sandbox import RateLimit, Sandbox

    counts = {entity: getattr(args, entity) for entity in _ENTITIES}
    rate_limit = RateLimit(*args.rate_limit) if args.rate_limit else None
    portal = Sandbox(
        seed=args.seed,
        port=args.port,
        rate_limit=rate_limit,
        operating_limit=args.operating_limit,
        tls=args.tls,
        webhook_code=args.webhook_code,
        **counts,
    )
    stop = threading.Event()
    # SIGTERM (e.g. `timeout`, process managers) stops as cleanly as Ctrl-C: TLS files are removed.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with portal:
        app = portal.oauth
        print("Bitrix24 sandbox portal is running (Ctrl-C stops it)")
        print(f"  webhook (v2):   {portal.webhook_url}")
        print(f"  webhook (v3):   {portal.webhook_url_v3}")
        print(f"  OAuth endpoint: {app.client_endpoint}   token URL: {app.token_url}")
        print(f"  client_id:      {app.client_id}")
        print(f"  client_secret:  {app.client_secret}")
        print(f"  access_token:   {app.access_token}")
        print(f"  refresh_token:  {app.refresh_token}")
        if portal.ca_cert_path:
            print(f"  CA certificate: {portal.ca_cert_path}")
        print(f"  stats:          {portal.base_url}/_sandbox/stats")
        print(f"  rate limit:     {rate_limit or 'off'}; operating limit: {args.operating_limit or 'off'}")
        try:
            stop.wait()
        except KeyboardInterrupt:
            print("stopping")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m bitrix24_source`` and the ``bitrix24-dlt`` script."""
    args = build_parser().parse_args(argv)
    if args.command == "sandbox":
        return _serve_sandbox(args)
    raise AssertionError(f"unhandled command {args.command!r}")
