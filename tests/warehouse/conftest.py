"""A real PostgreSQL server for the warehouse tests, for the whole session.

`BITRIX24_TEST_POSTGRES` (a libpq URL such as `postgresql://user:pass@127.0.0.1:5432/db`) points the tests at a
running server. Otherwise the session starts its own: the distribution's binaries (/usr/lib/postgresql/<v>/bin),
installed with apt-get when missing (CI runs as root on a fresh Debian machine), a cluster in a temporary
directory listening on 127.0.0.1 only, run by the `postgres` user when we are root (the server refuses to run as
root), stopped and deleted at the end.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

POSTGRES_ENV = "BITRIX24_TEST_POSTGRES"
_PASSWORD = "bitrix24-test"  # a throw-away server on loopback, deleted at the end of the session
_APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def _bindir() -> Path | None:
    """The newest installed server's bin directory (Debian keeps them out of PATH, one per major version)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _install() -> Path:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"no PostgreSQL here and no root apt-get to install it: set {POSTGRES_ENV}")
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "postgresql"]):
        done = subprocess.run(command, env=_APT_ENV, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    bindir = _bindir()
    if bindir is None:
        raise RuntimeError("apt-get installed postgresql but no /usr/lib/postgresql/*/bin/initdb exists")
    return bindir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _server(bindir: Path) -> Iterator[str]:
    root = Path(tempfile.mkdtemp(prefix="b24-postgres-"))
    user = "postgres" if os.geteuid() == 0 else None
    if user is not None:
        shutil.chown(root, user=user)
    data, log = root / "data", root / "server.log"
    port = _free_port()

    env = {**os.environ, "PGPASSWORD": _PASSWORD}

    def run(*command: str) -> None:
        done = subprocess.run(
            command, user=user, cwd=root, env=env, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{command[0]} failed: {done.stderr[-2000:]}\n{tail}")

    # A password because dlt's PostgreSQL credentials require one; the server listens on 127.0.0.1 only and
    # lives for one test session. fsync is off because the data is thrown away.
    password_file = root / "password"
    password_file.write_text(_PASSWORD)
    if user is not None:
        shutil.chown(password_file, user=user)
    run(
        str(bindir / "initdb"),
        "-D",
        str(data),
        "-U",
        "postgres",
        "-A",
        "scram-sha-256",
        f"--pwfile={password_file}",
        "-E",
        "UTF8",
        "--no-sync",
    )
    options = (
        f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60", "start")
    try:
        run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "bitrix24_test")
        yield f"postgresql://postgres:{_PASSWORD}@127.0.0.1:{port}/bitrix24_test"
    finally:
        subprocess.run(
            [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            user=user,
            cwd=root,
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    configured = os.environ.get(POSTGRES_ENV)
    if configured:
        yield configured
        return
    started = time.monotonic()
    bindir = _bindir() or _install()
    with _server(bindir) as url:
        print(f"\nPostgreSQL from {bindir} ready in {time.monotonic() - started:.1f} s at {url}")
        yield url
