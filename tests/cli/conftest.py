"""Each sub-command runs as its own process (`python -m bitrix24_source …`) against an in-process sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bitrix24_source.sandbox import Sandbox

WEBHOOK_CODE = "cli0test0code0secret"


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any Bitrix24 or dlt settings a developer may have exported."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SOURCES__", "DESTINATION__", "BITRIX24_", "DLT_", "RUNTIME__"))
    }
    env["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    env.update(extra)
    return env


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 180) -> Run:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "bitrix24_source", *args],
        cwd=cwd,
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return Run(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


@pytest.fixture(scope="package")
def portal() -> Iterator[Sandbox]:
    with Sandbox(
        seed=11,
        deals=120,
        leads=20,
        contacts=40,
        companies=10,
        users=10,
        tasks=20,
        webhook_code=WEBHOOK_CODE,
    ) as p:
        yield p


@pytest.fixture
def portal_env(portal: Sandbox) -> dict[str, str]:
    """Credentials the dlt way: an env var, as a scheduler or a container would pass them."""
    return clean_env(SOURCES__BITRIX24__WEBHOOK_URL=portal.webhook_url)


def summary_row(stdout: str, table: str) -> list[str]:
    """The summary's row of `table` (rows in db, rows read, requests, seconds): the last line naming it,
    since dlt's progress lines name the tables too."""
    rows = [line.split()[1:] for line in stdout.splitlines() if line.split()[:1] == [table]]
    assert rows, f"no summary row for {table}"
    return rows[-1]
