"""The unmodified official JavaScript SDK (@bitrix24/b24jssdk, pinned in js/package.json) against the sandbox.

Each test runs one step of ``js/steps.mjs`` in node through the SDK's webhook client (``B24Hook``) or its
OAuth client (``B24OAuth``) and checks what the SDK returned, the sandbox's state and the HTTP requests it
served. A disagreement is a sandbox bug unless the protocol notes (docs/bitrix24-protocol.md) say otherwise.

The SDK is installed by ``npm ci`` from the committed lockfile into ``js/node_modules`` (git-ignored) the
first time the tests run, and reused while it matches the lockfile. node and npm are required: without them
the tests fail rather than skip, so a CI image that lost them cannot pass silently.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bitrix24_source import Bitrix24Client
from bitrix24_source.errors import ApiError
from bitrix24_source.sandbox import Fault, Sandbox

JS_DIR = Path(__file__).parent / "js"
STEPS = JS_DIR / "steps.mjs"
NODE_MAJOR_MIN = 20  # the SDK's package.json: "engines": {"node": "^20.0.0 || >=22.0.0"}
INSTALL_TIMEOUT = 240.0
STEP_TIMEOUT = 60.0

DEALS = 150
UPDATED = 120
TASKS = 30

Runner = Callable[[str, dict[str, Any]], dict[str, Any]]


def _locked_versions(lockfile: Path) -> dict[str, str]:
    packages = json.loads(lockfile.read_text())["packages"]
    return {name: meta["version"] for name, meta in packages.items() if name.startswith("node_modules/")}


def _installed() -> bool:
    # npm keeps a copy of what it installed in node_modules/.package-lock.json.
    hidden = JS_DIR / "node_modules" / ".package-lock.json"
    return hidden.exists() and _locked_versions(hidden) == _locked_versions(JS_DIR / "package-lock.json")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"b24jssdk peer test: `{name}` is not on PATH (install Node.js {NODE_MAJOR_MIN}+)", False)
    return path


@pytest.fixture(scope="session")
def node() -> str:
    """The node executable, with the SDK installed next to steps.mjs."""
    node = _tool("node")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    if int(version.lstrip("v").split(".", 1)[0] or 0) < NODE_MAJOR_MIN:
        pytest.fail(f"b24jssdk peer test: node {version} is older than {NODE_MAJOR_MIN}", False)
    if not _installed():
        npm = _tool("npm")
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=JS_DIR,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"b24jssdk peer test: `npm ci` in {JS_DIR} took over {INSTALL_TIMEOUT:.0f} s", False)
        if done.returncode != 0 or not _installed():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            pytest.fail(f"b24jssdk peer test: `npm ci` in {JS_DIR} failed ({done.returncode}): {last}", False)
    return node


@pytest.fixture(scope="module")
def portal() -> Iterator[Sandbox]:
    # B24Hook.fromWebhookUrl accepts https URLs only; node trusts the sandbox's CA via NODE_EXTRA_CA_CERTS.
    with Sandbox(
        seed=23, leads=20, deals=DEALS, contacts=10, companies=5, users=5, tasks=TASKS, tls=True
    ) as sandbox:
        yield sandbox


@pytest.fixture(autouse=True)
def _disarm_faults(portal: Sandbox) -> Iterator[None]:
    # The portal is shared by the module: a fault a failed test did not consume must not reach the next one.
    yield
    portal.clear_faults()


@pytest.fixture
def run(node: str, portal: Sandbox) -> Runner:
    """Run one step of steps.mjs against the portal and return its JSON output."""
    assert portal.ca_cert_path is not None
    env = {
        **os.environ,
        "B24_HOOK": portal.webhook_url,
        "NODE_EXTRA_CA_CERTS": portal.ca_cert_path,
        # axios honours *_PROXY variables; the portal is on loopback.
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }

    def secrets() -> set[str]:
        auth = portal.auth
        return {auth.webhook_code, auth.access_token, auth.refresh_token, auth.client_secret}

    def step(name: str, payload: dict[str, Any]) -> dict[str, Any]:
        masked = secrets()
        done = subprocess.run(
            [node, str(STEPS), name],
            input=json.dumps(payload),
            cwd=JS_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT,
        )
        if done.returncode != 0:
            message = done.stderr.strip() or "no output"
            for secret in masked | secrets():  # tokens rotate during a run
                message = message.replace(secret, "***")
            pytest.fail(f"steps.mjs {name} exited {done.returncode}: {message}", False)
        output: dict[str, Any] = json.loads(done.stdout)
        return output

    return step


def _by_id(portal: Sandbox, entity: str) -> dict[int, dict[str, Any]]:
    return {int(row.get("id", row.get("ID"))): row for row in portal.rows(entity)}


def test_a_v2_batch_of_reads_is_one_request_with_one_result_per_name(run: Runner, portal: Sandbox) -> None:
    portal.reset_stats()
    out = run(
        "v2-batch",
        {
            "calls": {
                "lead": ["crm.lead.get", {"id": 3}],
                "deals": ["crm.deal.list", {"select": ["ID", "TITLE"], "order": {"ID": "ASC"}}],
                "task": ["tasks.task.get", {"taskId": 2, "select": ["ID", "TITLE"]}],
                "user": ["user.get", {"ID": 1}],
            },
            "isHaltOnError": True,
        },
    )
    leads, deals, tasks = _by_id(portal, "leads"), _by_id(portal, "deals"), _by_id(portal, "tasks")
    assert out["errors"] == []
    got = out["commands"]
    assert (got["lead"]["result"]["ID"], got["lead"]["result"]["TITLE"]) == ("3", leads[3]["title"])
    assert [(row["ID"], row["TITLE"]) for row in got["deals"]["result"]] == [
        (str(i), deals[i]["title"]) for i in range(1, 51)
    ]
    assert (got["deals"]["total"], got["deals"]["more"]) == (DEALS, True)
    task = got["task"]["result"]["task"]
    assert (task["id"], task["title"]) == ("2", tasks[2]["title"])
    assert [user["ID"] for user in got["user"]["result"]] == ["1"]
    stats = portal.stats()
    assert stats.http_by_method == {"batch": 1}
    assert stats.by_method == {"crm.lead.get": 1, "crm.deal.list": 1, "tasks.task.get": 1, "user.get": 1}


def test_a_v2_batch_without_halt_reports_the_failed_command_by_name_and_keeps_the_rest(
    run: Runner, portal: Sandbox
) -> None:
    # A task error, not a CRM one: CRM get errors carry an empty code (`{"error": "", "error_description":
    # "Not found"}`, DOCS api-reference/crm/leads/crm-lead-get.md "Error Handling"; recorded in
    # tests/fixtures/real-responses/crm_get_batch_of_two_error.json), and b24jssdk 2.2.0 reads an empty code
    # as no error (src/core/http/parse-error-payload.ts tests `responseData.error` for truth), so that
    # command would come back as a success without a result.
    missing = TASKS + 100
    out = run(
        "v2-batch",
        {
            "calls": {
                "gone": ["tasks.task.get", {"taskId": missing, "select": ["ID"]}],
                "lead": ["crm.lead.get", {"id": 4}],
            },
            "isHaltOnError": False,
        },
    )
    # The docs name no error text for a task that cannot be read (tasks-task-get.md lists only parameter
    # errors): what matters is that the SDK hands on the portal's own text under the command's name.
    with pytest.raises(ApiError) as portal_error:
        Bitrix24Client(portal.webhook_url, verify=portal.ca_cert_path or True).call(
            "tasks.task.get", {"taskId": missing, "select": ["ID"]}
        )
    text = portal_error.value.description
    assert text
    assert out["commands"]["gone"] == {"errors": [text]}
    assert out["commands"]["lead"]["result"]["ID"] == "4"
    assert out["errors"] == [text]


def test_batch_by_chunk_updates_120_deals_in_three_batches(run: Runner, portal: Sandbox) -> None:
    before = _by_id(portal, "deals")
    updates = [
        {
            "id": i,
            "fields": {
                "TITLE": f"b24jssdk deal {i}",
                "OPPORTUNITY": 1000 + i,
                "COMMENTS": f"chunk {i // 50}",
            },
        }
        for i in range(1, UPDATED + 1)
    ]
    portal.reset_stats()
    out = run("v2-batch-by-chunk", {"updates": updates})
    assert out["results"] == [True] * UPDATED
    after = _by_id(portal, "deals")
    changed = {
        i: (row["title"], row["opportunity"], row["comments"]) for i, row in after.items() if row != before[i]
    }
    assert changed == {
        i: (f"b24jssdk deal {i}", 1000.0 + i, f"chunk {i // 50}") for i in range(1, UPDATED + 1)
    }
    stats = portal.stats()
    assert stats.http_by_method == {"batch": 3}  # 50 + 50 + 20 commands
    assert stats.by_method == {"crm.deal.update": UPDATED}


def test_batch_by_chunk_resends_a_chunk_refused_with_503(run: Runner, portal: Sandbox) -> None:
    # QUERY_LIMIT_EXCEEDED is refused before anything runs (§6.1): the resent chunk applies each update once.
    before = _by_id(portal, "deals")
    updates = [{"id": i, "fields": {"TITLE": f"after a 503 {i}"}} for i in range(1, UPDATED + 1)]
    portal.reset_stats()
    portal.inject(Fault("http_503", method="batch", after=1))
    out = run("v2-batch-by-chunk", {"updates": updates})
    assert out["results"] == [True] * UPDATED
    after = _by_id(portal, "deals")
    assert {i: row["title"] for i, row in after.items() if row != before[i]} == {
        i: f"after a 503 {i}" for i in range(1, UPDATED + 1)
    }
    stats = portal.stats()
    assert (stats.http_by_method, stats.rejected_503) == ({"batch": 4}, 1)
    assert stats.by_method == {"crm.deal.update": UPDATED}


def test_a_v3_batch_feeds_task_ids_to_the_results_list_through_ref_array(
    run: Runner, portal: Sandbox
) -> None:
    max_task_id = 8
    expected = [
        {key: row[key] for key in ("id", "taskId", "text", "status")}
        for row in sorted(portal.rows("task_results"), key=lambda row: row["id"])
        if row["taskId"] <= max_task_id
    ]
    # The reference must select something, and not everything, for the comparison to prove the substitution.
    assert len({row["taskId"] for row in expected}) > 1 and len(expected) < len(portal.rows("task_results"))
    tasks = _by_id(portal, "tasks")
    portal.reset_stats()
    out = run("v3-batch-ref", {"maxTaskId": max_task_id, "resultLimit": 200})
    assert out["tasks"]["items"] == [{"id": i, "title": tasks[i]["title"]} for i in range(1, max_task_id + 1)]
    assert out["results"]["items"] == expected
    stats = portal.stats()
    assert stats.http_by_method == {"batch": 1}
    assert stats.by_method == {"tasks.task.list": 1, "tasks.task.result.list": 1}


def test_b24oauth_refreshes_an_expired_token_through_the_portal_and_repeats_the_call(
    run: Runner, portal: Sandbox
) -> None:
    app = portal.oauth
    auth = portal.auth
    leads = _by_id(portal, "leads")
    portal.reset_stats()
    # The second crm.lead.get finds its token expired (401 expired_token, §1.3).
    portal.inject(Fault("expire_token", method="crm.lead.get", after=1))
    out = run(
        "oauth-v2",
        {
            "app": {
                "userId": auth.user_id,
                "memberId": auth.member_id,
                "accessToken": app.access_token,
                "refreshToken": app.refresh_token,
                "expires": int(app.expires),
                "expiresIn": 3600,
                "scope": auth.scope,
                "domain": portal.base_url.split("://", 1)[1],
                "clientEndpoint": app.client_endpoint,
                # The SDK posts refreshes to <serverEndpoint>/oauth/token/: here the portal's own endpoint.
                "serverEndpoint": app.client_endpoint,
                "clientId": app.client_id,
                "clientSecret": app.client_secret,
            },
            "leadIds": [1, 2],
        },
    )
    assert [(lead["ID"], lead["TITLE"]) for lead in out["leads"]] == [
        ("1", leads[1]["title"]),
        ("2", leads[2]["title"]),
    ]
    assert (out["refreshes"], out["rotated"]) == (1, True)
    assert portal.oauth.access_token != app.access_token
    assert portal.stats().http_by_method == {"crm.lead.get": 3}  # ok, 401, repeated after the refresh
