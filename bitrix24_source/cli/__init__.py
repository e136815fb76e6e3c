"""Command line: `bitrix24-dlt …` (also `python -m bitrix24_source …`).

Sub-commands (each has `--help` with examples):
    sync      the portal into a warehouse (any dlt destination), with a per-table summary
    push      a CSV, Parquet or JSON-lines file into an entity, through `bitrix24_destination`
    results   the last push's outcome and failed rows
    fields    an entity's fields: type, required, read-only, multiple, labels
    doctor    checks credentials, reachability, scopes, clock and operating budget
    sandbox   the local sandbox portal on 127.0.0.1

Failures end in one short line on stderr and exit status 1 — never a traceback, never a secret.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence

from bitrix24_source.cli import describe, doctor, push, sandbox, sync
from bitrix24_source.cli.output import Output
from bitrix24_source.errors import Bitrix24Error, ConfigError, mask

__all__ = ["build_parser", "main"]

EXAMPLES = """\
examples:
  bitrix24-dlt doctor                                  # is the configured portal usable?
  bitrix24-dlt sync --destination postgres --resources deals,contacts
  bitrix24-dlt push changes.csv --entity deals --dry-run
  bitrix24-dlt results
  bitrix24-dlt fields deals
  bitrix24-dlt sandbox --deals 2000                    # a local portal to try all of this on

Credentials come from --webhook-url, env (SOURCES__BITRIX24__WEBHOOK_URL, SOURCES__BITRIX24__OAUTH__*) or
.dlt/secrets.toml in the current directory; destinations from dlt's usual places
(DESTINATION__POSTGRES__CREDENTIALS, ...).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bitrix24-dlt",
        description="Move data between Bitrix24 and any warehouse with dlt.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--plain", action="store_true", help="plain log lines even in a terminal (no colours, no live bars)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sync.add_parser(commands)
    push.add_parsers(commands)
    describe.add_parser(commands)
    doctor.add_parser(commands)
    sandbox.add_parser(commands)
    return parser


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        yield node
        node = node.__cause__ or node.__context__


def _one_line(exc: BaseException) -> str:
    """The most telling single line for a failure: the Bitrix24 error inside dlt's wrappers, if any."""
    inner = next((e for e in _chain(exc) if isinstance(e, Bitrix24Error)), None)
    if isinstance(inner, ConfigError):
        return mask(inner.description or str(inner))
    if inner is not None:
        return mask(str(inner)).splitlines()[0]
    text = mask(str(exc)).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `bitrix24-dlt` and `python -m bitrix24_source`; returns the exit status."""
    args = build_parser().parse_args(argv)
    out = Output(rich=False if args.plain else None)
    try:
        return int(args.run(args, out))
    except KeyboardInterrupt:
        out.problem("interrupted")
        return 130
    except Exception as exc:  # every failure ends as one labelled line, never a traceback
        out.problem(f"{args.command}: {_one_line(exc)}")
        return 1
