"""`bitrix24-dlt sandbox`: run the local Bitrix24 sandbox portal on 127.0.0.1 until Ctrl-C (or SIGTERM)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from bitrix24_source.cli.output import Output

EXAMPLES = """\
examples:
  bitrix24-dlt sandbox                                   # http://127.0.0.1:8024, seeded data, no limits
  bitrix24-dlt sandbox --deals 20000 --rate-limit 50/2 --operating-limit 480   # like a cloud portal
  bitrix24-dlt sandbox --port 0 --webhook-code s3cret --tls                    # any free port, https

  # then, in another terminal, with the webhook URL it prints:
  export SOURCES__BITRIX24__WEBHOOK_URL=http://127.0.0.1:8024/rest/1/<code>/
  bitrix24-dlt doctor && bitrix24-dlt sync --resources all
"""

_ENTITIES = (
    "leads",
    "deals",
    "contacts",
    "companies",
    "users",
    "tasks",
    "spa_items",
    "quotes",
    "invoices",
    "activities",
    "departments",
)


def _rate_limit(text: str) -> tuple[int, float]:
    """Parse ``BURST/DRAIN`` (e.g. ``50/2``) or ``off``."""
    burst, sep, drain = text.partition("/")
    try:
        if not sep:
            raise ValueError(text)
        return int(burst), float(drain)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected BURST/DRAIN such as 50/2, got {text!r}") from None


def add_parser(commands: Any) -> None:
    sandbox = commands.add_parser(
        "sandbox",
        help="run the local Bitrix24 sandbox portal",
        description="Serve a generated Bitrix24 portal (REST v2 and v3, webhook and OAuth) on 127.0.0.1.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sandbox.add_argument("--port", type=int, default=8024, help="TCP port (0 picks a free one); default 8024")
    sandbox.add_argument("--seed", type=int, default=1, help="data generator seed; default 1")
    for entity in _ENTITIES:
        sandbox.add_argument(
            f"--{entity.replace('_', '-')}", type=int, default=None, help=f"number of {entity} to generate"
        )
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
    sandbox.add_argument(
        "--catalogue",
        choices=("docs", "legacy"),
        default=None,
        help="CRM field catalogue: docs = exactly the documented fields (the default), legacy = the sandbox's "
        "older set with xmlId on every CRM entity",
    )
    sandbox.set_defaults(run=run)


def run(args: argparse.Namespace, out: Output) -> int:
    from bitrix24_source.sandbox import RateLimit, Sandbox

    counts = {
        entity: value
        for entity in _ENTITIES
        if (value := getattr(args, entity.replace("-", "_"))) is not None
    }
    if args.catalogue is not None:
        counts["catalogue"] = args.catalogue
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
        # The sandbox's own, throw-away secrets are printed on purpose; flushed for a parent reading a pipe.
        sys.stdout.flush()
        try:
            stop.wait()
        except KeyboardInterrupt:
            print("stopping")
    return 0
