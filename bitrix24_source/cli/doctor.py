"""`bitrix24-dlt doctor`: can a sync run with these credentials? One short line per problem.

Checks, in order: credentials configured; the portal answers (`server.time`, which needs no scope); it
accepts the webhook or token; every scope the chosen resources need is granted (one cheap read per scope:
a refusal is `insufficient_scope`, §9.2); the portal clock's offset; the operating-time budget already
used by the methods a sync calls (§6.1).
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bitrix24_source.cli.config import Credentials, find_credentials, token_saver
from bitrix24_source.cli.output import Output
from bitrix24_source.cli.sync import DEFAULT_RESOURCES, resource_list, wants_smart_processes
from bitrix24_source.errors import ApiError, AuthError, Bitrix24Error, TransportError

EXAMPLES = """\
examples:
  bitrix24-dlt doctor                                  # the configured webhook or OAuth app
  bitrix24-dlt doctor --resources deals,tasks,users    # also checks the scopes these tables need
  bitrix24-dlt doctor --webhook-url https://example.bitrix24.com/rest/1/<code>/ --timeout 5

exit status: 0 all checks passed, 1 one or more problems (one line each on stderr).
"""

SCOPE_OF_RESOURCE: Mapping[str, str] = {
    "leads": "crm",
    "deals": "crm",
    "contacts": "crm",
    "companies": "crm",
    "deal_products": "crm",
    "field_definitions": "crm",
    "users": "user",
    "tasks": "task",
    "task_results": "task",
    "activities": "crm",
    "stage_history": "crm",
    "quotes": "crm",
    "invoices": "crm",
    "spa_types": "crm",
    "crm_statuses": "crm",
    "crm_categories": "crm",
    "departments": "department",
}

METADATA_SCOPES = ("crm", "user", "task")
"""The source reads the field metadata of every entity when it starts (crm.item.fields, user.fields,
tasks.task.field.list), whichever tables are selected: these scopes are needed by any sync."""


@dataclass(frozen=True, slots=True)
class _Probe:
    """A cheap read that only a holder of the scope may make; the same method a sync calls."""

    method: str
    params: Mapping[str, Any]
    version: int = 2


_PROBES: Mapping[str, _Probe] = {
    # One keyset row of deals (§3.2): the method every CRM table is read with.
    "crm": _Probe(
        "crm.item.list",
        {"entityTypeId": 2, "select": ["id"], "order": {"id": "ASC"}, "filter": {">id": 0}, "start": -1},
    ),
    "user": _Probe("user.fields", {}),
    "task": _Probe("tasks.task.field.list", {}, version=3),
    # DOCS api-reference/departments/department-get.md: scope `department`; one department is enough.
    "department": _Probe("department.get", {"ID": 1}),
}

OPERATING_WARN_FRACTION = 0.8
"""Above this share of the budget the client starts slowing down before each request (§6.1)."""

CLOCK_OFFSET_LIMIT = 300.0
"""Seconds of clock difference worth a problem line: OAuth expiry times are the portal's."""


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "doctor",
        help="check the webhook or OAuth app: reachable, authenticated, scopes, clock, budget",
        description="Check that a sync can run: prints one line per check, and one short line per "
        "problem on stderr. Never prints the webhook code or tokens.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--resources",
        type=resource_list,
        default=DEFAULT_RESOURCES,
        help="tables you will sync (their scopes are checked); default the sync's default",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request; default 10")
    parser.add_argument("--webhook-url", default=None, help="instead of the configured credentials")
    parser.set_defaults(run=run)


def needed_scopes(resources: Sequence[str]) -> dict[str, list[str]]:
    """scope -> the chosen resources (or "field metadata") that need it."""
    needed: dict[str, list[str]] = {scope: [] for scope in METADATA_SCOPES}
    for name in resources:
        # smart processes (`smart_processes`, `spa_<id>`) are CRM items
        scope = "crm" if wants_smart_processes([name]) else SCOPE_OF_RESOURCE[name]
        needed.setdefault(scope, []).append(name)
    return {scope: users or ["field metadata"] for scope, users in needed.items()}


def _client(credentials: Credentials, timeout: float) -> Any:
    from bitrix24_source.client import Bitrix24Client, RetryPolicy

    # One attempt, no client throttle: a portal that is down or refuses the credentials must be reported
    # within seconds, not after the sync's patient retries.
    return Bitrix24Client(
        credentials.webhook_url,
        oauth=credentials.oauth,
        timeout=timeout,
        rate_limit=None,
        retry=RetryPolicy(max_attempts=1),
        on_token_refresh=token_saver(credentials),
    )


def _describe(exc: Bitrix24Error) -> str:
    if isinstance(exc, TransportError):
        # The code says it (CONNECTION_REFUSED, TIMEOUT, TLS_ERROR …); the long urllib3 text does not help.
        return (exc.code or "no answer").lower().replace("_", " ")
    text = exc.description or str(exc)
    return f"{exc.code}: {text}" if exc.code and exc.code not in text else text


def run(args: argparse.Namespace, out: Output) -> int:
    credentials = find_credentials(args.webhook_url)
    out.ok(f"credentials: {credentials.kind} for {credentials.portal}")
    client = _client(credentials, args.timeout)
    try:
        return _check(client, credentials, args.resources, out)
    finally:
        client.close()


def _check(client: Any, credentials: Credentials, resources: Sequence[str], out: Output) -> int:
    problems = 0
    before = time.time()
    try:
        answer = client.call("server.time")
    except TransportError as exc:
        out.problem(f"portal {credentials.portal} unreachable: {_describe(exc)}")
        return 1
    except AuthError as exc:
        out.problem(f"{credentials.kind} rejected by {credentials.portal}: {_describe(exc)}")
        return 1
    except ApiError as exc:
        out.problem(f"portal {credentials.portal} answered with an error: {_describe(exc)}")
        return 1
    after = time.time()
    out.ok(f"portal {credentials.portal} reachable and accepts the {credentials.kind}")
    if client.tokens is not None and client.stats.token_refreshes and token_saver(credentials) is None:
        out.problem(
            "the OAuth tokens were refreshed but could not be saved (credentials come from env vars): "
            "store the new refresh token, the old one no longer works"
        )
        problems += 1

    # `time.start` is the portal's clock with sub-second precision (§2.1); the ISO result has whole seconds.
    portal_now = answer.time.start if answer.time is not None and answer.time.start else None
    portal_now = portal_now or _parse_time(answer.result)
    if portal_now is None:
        out.problem(f"server.time answered {str(answer.result)[:40]!r}: cannot tell the portal's clock")
        problems += 1
    else:
        offset = portal_now - (before + after) / 2
        if abs(offset) > CLOCK_OFFSET_LIMIT:
            out.problem(
                f"portal clock is {offset:+.0f} s from this machine's: fix this machine's clock (NTP)"
            )
            problems += 1
        else:
            out.ok(f"portal clock offset {offset:+.1f} s")

    for scope, users in needed_scopes(resources).items():
        probe = _PROBES[scope]
        try:
            client.call(probe.method, dict(probe.params), version=probe.version)
        except (AuthError, ApiError) as exc:
            if exc.category in ("auth", "access") or "scope" in (exc.code or "").lower():
                out.problem(f"scope {scope} not granted ({_describe(exc)}): needed by {', '.join(users)}")
            else:
                out.problem(f"{probe.method} failed ({_describe(exc)}): needed by {', '.join(users)}")
            problems += 1
            continue
        except TransportError as exc:
            out.problem(f"{probe.method}: no answer ({_describe(exc)})")
            problems += 1
            continue
        out.ok(f"scope {scope} granted ({', '.join(users)})")

    problems += _budget(client, out)
    return 1 if problems else 0


def _budget(client: Any, out: Output) -> int:
    budget = getattr(client.limiter, "budget", None)
    if budget is None:
        return 0
    used = {p.method: budget.operating(p.method) for p in _PROBES.values()}
    worst_method, worst = max(used.items(), key=lambda item: item[1])
    share = worst / budget.limit
    if share >= OPERATING_WARN_FRACTION:
        out.problem(
            f"operating budget: {worst_method} used {worst:.0f} of {budget.limit:.0f} s in the last 10 minutes: "
            "a sync now would be slowed down or blocked (429) until it drains"
        )
        return 1
    out.ok(f"operating budget: at most {worst:.1f} of {budget.limit:.0f} s used ({worst_method})")
    return 0


def _parse_time(value: Any) -> float | None:
    """server.time answers an ISO 8601 time with the portal's offset (api-reference/common/system/server-time.md)."""
    if not isinstance(value, str):
        return None
    try:
        stamp = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        return None
    return stamp.timestamp()
