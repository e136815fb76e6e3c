"""A push that cannot reach the portal, or that the portal refuses, ends in one short labelled line.

The command line and scripts run as separate processes. A ``sitecustomize`` on their path counts every host
name look-up (each connection attempt makes one) and fails the look-up of ``*.invalid`` names the way an
unknown host fails, so the number of attempts is asserted, and no name server is asked.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bitrix24_source.destination import PushFailedError, run_push
from bitrix24_source.sandbox import Sandbox
from tests.cli.process import WEBHOOK_CODE, clean_env, run_cli

REPO = Path(__file__).resolve().parents[2]

_SITECUSTOMIZE = textwrap.dedent(
    """
    import os
    import socket

    _real = socket.getaddrinfo
    _log = os.environ["LOOKUP_LOG"]


    def getaddrinfo(host, *args, **kwargs):
        with open(_log, "a", encoding="utf-8") as f:
            f.write(f"{host}\\n")
        if str(host).endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return _real(host, *args, **kwargs)


    socket.getaddrinfo = getaddrinfo
    """
)

_SCRIPT = textwrap.dedent(
    """
    import sys
    import dlt
    from bitrix24_source import bitrix24_destination

    destination = bitrix24_destination(webhook_url=sys.argv[1], rate_limit=None, progress=False)
    pipeline = dlt.pipeline("short", pipelines_dir=sys.argv[2], destination=destination)
    pipeline.run([{"title": "nobody home"}], table_name="deals")
    """
)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_SITECUSTOMIZE, encoding="utf-8")
    return clean_env(PYTHONPATH=f"{site}:{REPO}", LOOKUP_LOG=str(tmp_path / "lookups.txt"), **extra)


def _lookups(tmp_path: Path, host: str) -> int:
    log = tmp_path / "lookups.txt"
    return log.read_text(encoding="utf-8").splitlines().count(host) if log.exists() else 0


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "changes.csv"
    path.write_text("title,opportunity\nfirst,10\nsecond,20\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("case", "label"),
    [("down", "[CONNECTION_REFUSED]"), ("dns", "[DNS_ERROR]"), ("webhook", "[NO_AUTH_FOUND]")],
)
def test_cli_push_that_cannot_reach_the_portal_prints_three_lines(
    tmp_path: Path, csv_file: Path, case: str, label: str
) -> None:
    with Sandbox(seed=3, deals=5, leads=0, contacts=0, companies=0, users=2, tasks=0) as portal:
        if case == "down":
            url, host = f"http://127.0.0.1:{_closed_port()}/rest/1/{WEBHOOK_CODE}/", "127.0.0.1"
        elif case == "dns":
            url, host = f"https://portal.invalid/rest/1/{WEBHOOK_CODE}/", "portal.invalid"
        else:
            url, host = portal.webhook_url.replace(portal.auth.webhook_code, WEBHOOK_CODE), "127.0.0.1"
        env = _env(tmp_path, SOURCES__BITRIX24__WEBHOOK_URL=url)
        args = ("push", str(csv_file), "--entity", "deals", "--pipelines-dir", str(tmp_path / "pipelines"))
        run = run_cli(*args, cwd=tmp_path, env=env)
        requests_seen = portal.stats().http_requests

    assert run.returncode == 1, run.output
    lines = _lines(run.output)
    assert len(lines) <= 3, run.output
    problems = _lines(run.stderr)
    assert len(problems) == 1 and problems[0].startswith("problem: push: bitrix24 destination:"), run.stderr
    assert label in problems[0]
    assert not ({"[CONNECTION_REFUSED]", "[DNS_ERROR]", "[NO_AUTH_FOUND]"} - {label}) & set(
        problems[0].split()
    )
    assert "Traceback" not in run.output and WEBHOOK_CODE not in run.output
    # One attempt: nothing is resent to a portal that refused the connection, a name that did not resolve,
    # or a webhook the portal refused.
    assert _lookups(tmp_path, host) == 1
    if case == "webhook":
        assert requests_seen == 1
    else:
        assert requests_seen == 0


def test_a_script_whose_push_cannot_reach_the_portal_shows_no_traceback_of_the_destination(
    tmp_path: Path,
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/rest/1/{WEBHOOK_CODE}/"
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, url, str(tmp_path / "pipelines")],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1
    # Only the script's own uncaught PipelineStepFailed (dlt's frames), none of the destination's frames and
    # none of dlt's log records of the failed job (each used to carry the whole traceback again).
    assert "bitrix24_source/destination" not in output and "Terminal exception in job" not in output
    assert "failed terminally in load" not in output.split("Traceback", 1)[0]
    assert output.count("[CONNECTION_REFUSED] connection refused by 127.0.0.1:") >= 1
    assert "HTTPConnectionPool" not in output and "retrying in" not in output
    assert _lookups(tmp_path, "127.0.0.1") == 1
    assert len(_lines(output)) < 40, output


def test_run_push_raises_the_destination_line_and_the_next_push_loads_its_own_data(
    portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    wrong = portal.webhook_url.replace(portal.auth.webhook_code, "wrong-code-0123456789")
    with pytest.raises(PushFailedError) as failed:
        run_push(push_pipeline(wrong, name="helper"), [{"title": "helper C"}], table_name="deals")
    text = str(failed.value)
    assert "\n" not in text and "[NO_AUTH_FOUND]" in text and "wrong-code" not in text
    assert failed.value.pending is False and failed.value.__cause__ is None
    assert failed.value.__suppress_context__

    run_push(push_pipeline(portal.webhook_url, name="helper"), [{"title": "helper D"}], table_name="deals")
    titles = [r["title"] for r in portal.rows("deals") if str(r["title"]).startswith("helper ")]
    assert titles == ["helper D"]
