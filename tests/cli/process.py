"""Running `python -m bitrix24_source …` as a separate process, and reading what it printed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

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


def summary_row(stdout: str, table: str) -> list[str]:
    """The summary's row of `table` (rows in db, rows read, requests, seconds): the last line naming it,
    since dlt's progress lines name the tables too."""
    rows = [line.split()[1:] for line in stdout.splitlines() if line.split()[:1] == [table]]
    assert rows, f"no summary row for {table}"
    return rows[-1]
