"""What the playbook library's tests share: irbook commands run as a user runs them, and a
live run against a local fake cloud, configured only through the environment variables
users set (moto's server as `irbook sandbox` seeds it, the fake Jira and Slack, a
PagerDuty sink).

A live run is `irbook run ID --alert FILE --yes --plain` in a subprocess; its approval
gates are answered with `irbook approve RUN_ID` from another process, as the README's demo
does. The alert file is what the receiver hands a run: `irbook match`'s normalized alert
of the raw vendor payload, with the payload itself as `raw`.
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

from irbook.runs import RunStore
from tests.support.fakejira import API_TOKEN, EMAIL, FakeJira
from tests.support.fakeslack import FakeSlack

ROOT = Path(__file__).resolve().parents[2]
IRBOOK = Path(sys.executable).with_name("irbook")  # the console script users run
DRILLS = ROOT / "runbooks" / "drills"
SLACK_TOKEN = "xoxb-library-fake-bot-token"
ROUTING_KEY = "pd-library-routing-key-0123456789"
_FOREIGN = ("JIRA_", "SLACK_", "AWS_", "IRBOOK_JIRA", "IRBOOK_SLACK", "IRBOOK_PAGERDUTY")


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
    return {**base, **(extra or {})}


def irbook(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> Any:
    """One irbook command as a user types it, from the repository root."""
    proc = subprocess.run(
        [str(IRBOOK), *args],
        cwd=ROOT,
        env=_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


def match(fixture: Path, fmt: str) -> dict[str, Any]:
    """`irbook match FIXTURE --from FMT --format json`: its verdict and exit status."""
    proc = irbook("match", str(fixture), "--from", fmt, "--format", "json")
    result: dict[str, Any] = json.loads(proc.stdout)
    result["exit"] = proc.returncode
    return result


def alert_file(payload: Any, fmt: str, folder: Path) -> Path:
    """The normalized alert the receiver would start a run with, for `irbook run --alert`."""
    raw = folder / "payload.json"
    raw.write_text(json.dumps(payload))
    verdict = match(raw, fmt)
    assert verdict["exit"] == 0, verdict
    path = folder / "alert.json"
    path.write_text(json.dumps(dict(verdict["alert"], raw=payload)))
    return path


class Cloud:
    """A seeded moto server, the fake Jira and Slack (also the PagerDuty sink), and the
    environment that names them."""

    def __init__(self, url: str, seeded: dict[str, str], jira: FakeJira, slack: FakeSlack):
        self.url, self.seeded, self.jira, self.slack = url, seeded, jira, slack
        self.env = {
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "JIRA_URL": jira.url,
            "JIRA_EMAIL": EMAIL,
            "JIRA_API_TOKEN": API_TOKEN,
            "SLACK_BOT_TOKEN": SLACK_TOKEN,
            "IRBOOK_SLACK_BASE_URL": slack.api_url,
            "IRBOOK_PAGERDUTY_URL": f"{slack.url}/v2/enqueue",
            "IRBOOK_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        }

    def pages(self) -> list[dict[str, Any]]:
        """The PagerDuty events the runs posted (the Slack fake is the PagerDuty sink)."""
        return [r.json for r in self.slack.requests if r.path == "/v2/enqueue"]

    def boto(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


@pytest.fixture
def cloud(prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    from moto.server import ThreadedMotoServer

    from irbook_actions.aws.sandbox import seed

    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    # moto's state is per process, shared by every server in it: start from nothing
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))
    jira, slack = FakeJira("cloud"), FakeSlack()
    try:
        yield Cloud(url, seed(url), jira, slack)
    finally:
        jira.close()
        slack.close()
        urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))
        server.stop()


class LiveRun:
    """`irbook run ID --alert FILE --yes --plain` in the background."""

    def __init__(self, playbook: str, alert: Path, cloud: Cloud, *params: str) -> None:
        extra = [a for p in params for a in ("--param", p)]
        self.env = cloud.env
        self.proc = subprocess.Popen(
            [str(IRBOOK), "run", playbook, "--alert", str(alert), *extra, "--yes", "--plain"],
            cwd=ROOT,
            env=_env(cloud.env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.run_id: str | None = None

    def __enter__(self) -> LiveRun:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:  # a failed test must not leave a run waiting 15 minutes
            self.proc.kill()
            self.proc.communicate(timeout=30)

    def awaiting(self, step: str, timeout: float = 120) -> str:
        """The run's id, once `step` waits for its approval."""
        store = RunStore()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            for row in store.recent_runs(3):
                states = {s["step_id"]: s["state"] for s in store.steps(row["id"])}
                if states.get(step) == "awaiting-approval":
                    self.run_id = str(row["id"])
                    return self.run_id
            time.sleep(0.2)
        out, err = self.proc.communicate(timeout=30) if self.proc.poll() is not None else ("", "")
        raise AssertionError(f"step {step} never waited for approval: {out}{err}")

    def decide(self, step: str, *, reject: bool = False) -> None:
        """`irbook approve RUN_ID [--reject]` from another process, once `step` waits."""
        run_id = self.awaiting(step)
        args = ["approve", run_id, "--by", "oncall", *(["--reject"] if reject else [])]
        done = irbook(*args, env=self.env)
        assert done.returncode == 0, done.stdout + done.stderr

    def finish(self, timeout: float = 240) -> tuple[int, str]:
        out, err = self.proc.communicate(timeout=timeout)
        assert "Traceback" not in out + err, out + err
        if self.run_id is None:
            [row] = RunStore().recent_runs(1)
            self.run_id = str(row["id"])
        return self.proc.returncode, out + err

    def steps(self) -> dict[str, dict[str, Any]]:
        assert self.run_id is not None
        return {s["step_id"]: s for s in RunStore().steps(self.run_id)}

    def states(self) -> dict[str, str]:
        return {k: s["state"] for k, s in self.steps().items()}
