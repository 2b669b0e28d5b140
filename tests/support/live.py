"""What the playbook library's tests share: the user's commands run as subprocesses
(`irbook match`, `irbook run`, `irbook approve`, `irbook drill`) against a local Prefect
API and `irbook sandbox`'s fake AWS (moto's server), Slack and Jira, configured only by
the environment variables a user sets.

Fixtures here are imported by each test module; the Prefect API and the sandbox are
started once per session whichever module asks first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
IRBOOK = Path(sys.executable).with_name("irbook")  # the console script users run
ALERTS = ROOT / "runbooks" / "drills" / "alerts"
DRILLS = ROOT / "runbooks" / "drills"
REGION = "us-east-1"
# whatever the developer's shell has for these must not reach the runs under test
_PRODUCT_ENV = ("AWS_", "SLACK_", "JIRA_", "IRBOOK_SLACK", "IRBOOK_JIRA", "IRBOOK_PAGERDUTY")

_started: dict[str, str] = {}


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[Any]:
    """`irbook sandbox`'s fake cloud: moto's server with CloudTrail LookupEvents, Slack and
    Jira in front of it, on loopback."""
    if "sandbox" in _started:
        yield _started["sandbox"]
        return
    from irbook_actions.sandbox_fakes import SandboxServer

    server = SandboxServer()
    server.start()
    _started["sandbox"] = server
    yield server
    _reset(server)  # moto's state is per process: leave none for other tests' servers
    server.stop()


def _reset(server: Any) -> None:
    request = urllib.request.Request(server.url + "/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()
    server.app.events.clear()
    server.app.messages.clear()
    server.app.issues.clear()


@pytest.fixture
def sandbox(sandbox_server: Any) -> Iterator[Any]:
    """A fake AWS, Slack and Jira with nothing in them."""
    _reset(sandbox_server)
    yield sandbox_server
    _reset(sandbox_server)


def boto(service: str, sandbox: Any) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=sandbox.url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def user_env(prefect: str, sandbox: Any = None) -> dict[str, str]:
    """The environment of a user who pointed irbook at this Prefect API and, given one,
    at the sandbox's fake AWS, Slack and Jira (as `irbook sandbox`'s env.sh does)."""
    from irbook_actions import sandbox_fakes as fakes

    env = {k: v for k, v in os.environ.items() if not k.startswith(_PRODUCT_ENV)}
    env["PREFECT_API_URL"] = prefect
    env["PREFECT_LOGGING_LEVEL"] = "WARNING"
    if sandbox is not None:
        url = sandbox.url
        env.update(
            AWS_ENDPOINT_URL=url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_REGION=REGION,
            AWS_DEFAULT_REGION=REGION,
            AWS_EC2_METADATA_DISABLED="true",
            SLACK_BOT_TOKEN=fakes.SLACK_TOKEN,
            IRBOOK_SLACK_BASE_URL=url + fakes.SLACK_PREFIX,
            JIRA_URL=url + fakes.JIRA_PREFIX,
            JIRA_EMAIL=fakes.JIRA_EMAIL,
            JIRA_API_TOKEN=fakes.JIRA_API_TOKEN,
            IRBOOK_JIRA_FLAVOR="cloud",
        )
    return env


def irbook(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(IRBOOK), *args],
        cwd=ROOT,
        env=env if env is not None else dict(os.environ),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    return done


def match(fixture: Path, fmt: str) -> dict[str, Any]:
    """`irbook match FIXTURE --from FMT --format json`, which must match something."""
    done = irbook("match", str(fixture), "--from", fmt, "--format", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def normalized(fixture: Path, fmt: str, folder: Path, **actor: str) -> Path:
    """The alert `irbook match` prints for the raw payload, as a file for `irbook run`;
    `actor` replaces fields the fake cloud decides (moto's own access key ids)."""
    alert = match(fixture, fmt)["alert"]
    alert["actor"].update(actor)
    path = folder / f"{fixture.stem}.alert.json"
    path.write_text(json.dumps(alert))
    return path


def run_live(
    playbook: str,
    alert: Path,
    env: dict[str, str],
    decisions: dict[str, str],
    timeout: float = 180,
) -> tuple[int, str, str]:
    """`irbook run PLAYBOOK --alert FILE --yes`, with each approval given by
    `irbook approve RUN_ID --step STEP [--reject]` as an on-call engineer would.
    Returns (exit status, output, run id)."""
    from irbook.runs import RunStore

    proc = subprocess.Popen(
        [str(IRBOOK), "run", playbook, "--alert", str(alert), "--yes", "--plain"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    store = RunStore()
    decided: set[str] = set()
    run_id = ""
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            for row in store.recent_runs(1):
                run_id = row["id"]
                for step in store.steps(run_id):
                    sid = step["step_id"]
                    if step["state"] != "awaiting-approval" or sid in decided:
                        continue
                    decision = decisions.get(sid.split("[", 1)[0])
                    assert decision is not None, f"no decision scripted for step {sid}"
                    args = ["approve", run_id, "--step", sid, "--by", "oncall"]
                    if decision == "reject":
                        args.append("--reject")
                    done = irbook(*args, env=env)
                    assert done.returncode == 0, done.stderr
                    decided.add(sid)
            time.sleep(0.3)
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "Traceback" not in out + err, out + err
    return proc.returncode, out + err, run_id


def step_states(run_id: str) -> dict[str, str]:
    from irbook.runs import RunStore

    return {s["step_id"]: s["state"] for s in RunStore().steps(run_id)}


def drill(path: Path, prefect: str) -> subprocess.CompletedProcess[str]:
    """`irbook drill` on the session's Prefect API (without one it would start its own
    server under the test's irbook home and leave it running)."""
    return irbook("drill", str(path), env=user_env(prefect))
