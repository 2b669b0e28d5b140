"""Runs on Prefect workers record into the one PostgreSQL store (#16): a real `irbook
worker` process whose environment has IRBOOK_DATABASE_URL runs a live deployed run that
waits for an approval; another process that has only the URL approves it (`irbook
approve`, a subprocess), a third lists and verifies it; a run approved from Prefect's
side (a paused flow run resumed with input, as the UI does) finishes too, and so does one
approved by a signed Slack button press to an `irbook serve` that did not start it; and a
worker SIGKILLed mid-run leaves a record that says so, with the last step known."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from irbook.model.alert import Actor, Alert
from irbook.runs import RunStore
from irbook.triggers.config import RunnerConfig
from irbook.triggers.dispatch import StartRequest

ROOT = Path(__file__).resolve().parents[2]
IRBOOK = str(Path(sys.executable).with_name("irbook"))

PLAYBOOK = """\
apiVersion: irbook/v1
kind: Playbook
metadata: {id: pg-gate, title: Approved on a worker}
steps:
  - {id: note, action: core.note, with: {text: "alert ${{ alert.id }}"}}
  - {id: gate, action: core.approval, needs: [note], with: {prompt: "Contain?"}}
  - {id: after, action: core.note, needs: [gate], with: {text: "contained"}}
"""


@dataclass(frozen=True)
class Deployed:
    pool: str
    books: Path


@pytest.fixture(scope="module")
def deployed(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    books = tmp_path_factory.mktemp("pg-books")
    (books / "pg-gate.yaml").write_text(PLAYBOOK)
    pool = f"irbook-pg-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(
        [IRBOOK, "deploy", "--pool", pool],
        cwd=ROOT,
        env={**os.environ, "IRBOOK_PLAYBOOKS": str(books), "PREFECT_LOGGING_LEVEL": "INFO"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return Deployed(pool, books)


def host_env(tmp_path: Path, name: str, url: str, **more: str) -> dict[str, str]:
    """Another host's environment: its own IRBOOK_HOME (so no SQLite file is shared),
    the Prefect API, and the database URL."""
    home = tmp_path / name
    home.mkdir(exist_ok=True)
    env = {**os.environ, "IRBOOK_HOME": str(home), "IRBOOK_DATABASE_URL": url, **more}
    env.pop("IRBOOK_POLICY", None)
    return env


@pytest.fixture
def worker(deployed: Deployed, pg_url: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = host_env(
        tmp_path,
        "worker-host",
        pg_url,
        IRBOOK_PLAYBOOKS=str(deployed.books),
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_LOGGING_LEVEL="INFO",
        IRBOOK_RUN_LEASE="2",
    )
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [IRBOOK, "worker", "--pool", deployed.pool, "--name", f"pg-{uuid.uuid4().hex[:6]}"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    log.close()


def start(deployed: Deployed, url: str, alert_id: str) -> tuple[str, str]:
    """What a receiver on the URL does: record the run queued, create its flow run."""
    from irbook_flows.deploy import deployments_starter

    alert = Alert(
        id=alert_id,
        source="guardduty",
        type="Recon:IAMUser/MaliciousIPCaller",
        title="pg",
        severity=5.0,
        actor=Actor(user_name="bob"),
        raw={},
    )
    req = StartRequest(
        run_id="wh-" + uuid.uuid4().hex[:16],
        playbook_id="pg-gate",
        playbook_path=str(deployed.books / "pg-gate.yaml"),
        alert=alert,
        mode="live",
        source="gd",
        alert_key=f"gd/pg-gate/{alert_id}",
    )
    runner = RunnerConfig(type="deployments", pool=deployed.pool)
    flow_run_id = deployments_starter(runner, store=RunStore(url))(req)
    return req.run_id, flow_run_id


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def gate(store: RunStore, run_id: str) -> str | None:
    steps = {s["step_id"]: s["state"] for s in store.steps(run_id)}
    return steps.get("gate")


def flow_run_state(flow_run_id: str) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as api:
        state = api.read_flow_run(uuid.UUID(flow_run_id)).state
    if state is not None and state.is_paused():
        return "PAUSED"
    return f"{state.type.value}:{state.name}" if state is not None else ""


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [IRBOOK, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )


def test_a_run_on_a_worker_is_approved_from_another_process_that_has_only_the_url(
    deployed: Deployed,
    pg_url: str,
    worker: subprocess.Popen[bytes],
    tmp_path: Path,
) -> None:
    store = RunStore(pg_url)
    run_id, flow_run_id = start(deployed, pg_url, "pg-cli-approve")
    assert (store.run(run_id) or {})["state"] == "queued"
    wait_for(lambda: gate(store, run_id) == "awaiting-approval", 120, "the gate to wait")
    record = store.run(run_id) or {}
    assert record["state"] == "running" and record["owner"].split(":")[1] == str(worker.pid)

    approver = host_env(tmp_path, "approver-host", pg_url)
    done = cli(approver, "approve", run_id, "--by", "alice", "--comment", "from afar")
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: (store.run(run_id) or {})["state"] == "succeeded", 60, "the run to end")
    wait_for(lambda: flow_run_state(flow_run_id).startswith("COMPLETED"), 60, "its flow run")
    steps = {s["step_id"]: s for s in store.steps(run_id)}
    assert steps["gate"]["approval"]["by"] == "alice" and steps["after"]["state"] == "succeeded"

    reader = host_env(tmp_path, "reader-host", pg_url)
    listed = cli(reader, "runs")
    assert listed.returncode == 0 and run_id in listed.stdout, listed.stdout + listed.stderr
    shown = cli(reader, "runs", "show", run_id)
    assert shown.returncode == 0 and "alice" in shown.stdout, shown.stdout + shown.stderr
    verified = cli(reader, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_run_on_a_worker_is_approved_from_prefect_as_the_ui_does(
    deployed: Deployed,
    pg_url: str,
    worker: subprocess.Popen[bytes],
    tmp_path: Path,
) -> None:
    """A paused flow run resumed with input (Prefect's UI, or anyone with its API)."""
    from prefect.flow_runs import resume_flow_run

    store = RunStore(pg_url)
    run_id, _deployment_run = start(deployed, pg_url, "pg-ui-approve")
    wait_for(lambda: gate(store, run_id) == "awaiting-approval", 120, "the gate to wait")
    # the playbook's flow run (a subflow of the deployment's) is the one paused: the UI
    # shows it, and the run record names it
    flow_run_id = str((store.run(run_id) or {})["flow_run_id"])
    wait_for(lambda: flow_run_state(flow_run_id) == "PAUSED", 60, "the flow run to pause")
    resume_flow_run(uuid.UUID(flow_run_id), run_input={"approved": True, "approver": "dana"})
    wait_for(lambda: (store.run(run_id) or {})["state"] == "succeeded", 60, "the run to end")
    steps = {s["step_id"]: s for s in store.steps(run_id)}
    # no policy in force: the name typed into the form, as before policies
    assert steps["gate"]["approval"]["by"] == "dana", steps["gate"]["approval"]
    reader = host_env(tmp_path, "reader-host", pg_url)
    assert cli(reader, "audit", "verify").returncode == 0


SLACK_SECRET = "pg-slack-signing-secret"
SLACK_APPROVER = "U0PGAPPROVER"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def slack_receiver(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """`irbook serve` with Slack approvals only (no --config), as another host runs it;
    its output is checked for tracebacks when it stops."""
    port = free_port()
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [IRBOOK, "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, "irbook serve exited: " + log_path.read_text()
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("irbook serve never answered") from None
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
        log.close()
    assert "Traceback" not in log_path.read_text(), log_path.read_text()


def slack_press(url: str, run_id: str, step: str, user: str) -> tuple[int, dict[str, Any]]:
    """An Approve button press as Slack posts it: a form field `payload`, signed v0."""
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower()},
        "actions": [
            {"action_id": "irbook_approve", "value": json.dumps({"run_id": run_id, "step": step})}
        ],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    ts = str(int(time.time()))
    mac = hmac.new(SLACK_SECRET.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256)
    request = urllib.request.Request(
        f"{url}/slack/interactions",
        data=body,
        headers={
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": "v0=" + mac.hexdigest(),
            "Content-Type": "application/x-www-form-urlencoded",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:  # it holds the connection
            return exc.code, json.loads(exc.read())


def test_a_run_on_a_worker_is_approved_by_a_slack_button_through_another_receiver(
    deployed: Deployed,
    pg_url: str,
    worker: subprocess.Popen[bytes],
    tmp_path: Path,
) -> None:
    """A Slack button press reaches an `irbook serve` that did not start the run (another
    host, only the URL and the Prefect API in common); it resumes the worker's run."""
    store = RunStore(pg_url)
    run_id, _deployment_run = start(deployed, pg_url, "pg-slack-approve")
    wait_for(lambda: gate(store, run_id) == "awaiting-approval", 120, "the gate to wait")
    flow_run_id = str((store.run(run_id) or {})["flow_run_id"])
    wait_for(lambda: flow_run_state(flow_run_id) == "PAUSED", 60, "the flow run to pause")

    env = host_env(
        tmp_path,
        "slack-host",
        pg_url,
        IRBOOK_SLACK_SIGNING_SECRET=SLACK_SECRET,
        IRBOOK_SLACK_APPROVERS=SLACK_APPROVER,
    )
    env.pop("SLACK_BOT_TOKEN", None)  # no message to update: no Slack API here
    with slack_receiver(env, tmp_path / "serve.log") as url:
        status, answer = slack_press(url, run_id, "gate", SLACK_APPROVER)
        # the run's own answer, or "submitted" when it takes longer than Slack waits
        assert (status, answer) in (
            (200, {"ok": True, "approved": True, "status": "approved"}),
            (202, {"ok": True, "status": "submitted"}),
        ), (status, answer)
        wait_for(lambda: (store.run(run_id) or {})["state"] == "succeeded", 60, "the run to end")

    reader = host_env(tmp_path, "reader-host", pg_url)
    shown = cli(reader, "runs", "show", run_id, "--format", "json")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    data = json.loads(shown.stdout)
    assert data["run"]["state"] == "succeeded"
    steps = {s["step_id"]: s for s in data["steps"]}
    assert steps["gate"]["approval"]["by"] == f"slack:{SLACK_APPROVER}", steps["gate"]
    assert steps["after"]["state"] == "succeeded"
    assert "approval-via-slack" in [e["kind"] for e in data["events"]]
    assert cli(reader, "audit", "verify").returncode == 0


def test_a_worker_killed_mid_run_leaves_a_record_that_says_so(
    deployed: Deployed,
    pg_url: str,
    worker: subprocess.Popen[bytes],
    tmp_path: Path,
) -> None:
    store = RunStore(pg_url)
    run_id, _flow_run_id = start(deployed, pg_url, "pg-killed")
    wait_for(lambda: gate(store, run_id) == "awaiting-approval", 120, "the gate to wait")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(30)
    assert (store.run(run_id) or {})["state"] == "running"  # nobody knows yet
    time.sleep(2.5)  # the worker's lease (IRBOOK_RUN_LEASE=2) runs out

    # any process with the URL settles it: `irbook runs` reaps before it lists
    reader = host_env(tmp_path, "reader-host", pg_url, IRBOOK_RUN_LEASE="2")
    listed = cli(reader, "runs")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    record = store.run(run_id) or {}
    assert record["state"] in ("crashed", "needs-human"), record
    assert f"({record['owner']}" not in record["message"]  # the reaper holds it now
    assert "died; last step: gate (awaiting-approval)" in record["message"], record["message"]
    assert gate(store, run_id) == "crashed"
    assert [e["kind"] for e in store.events(run_id)].count("crashed") == 1
    assert cli(reader, "runs").returncode == 0 and (store.run(run_id) or {}) == record
    assert cli(reader, "audit", "verify").returncode == 0


ROLLBACK_PLAYBOOK = """\
apiVersion: irbook/v1
kind: Playbook
metadata: {id: pg-rollback, title: Rolled back from another host}
rollback: manual
steps:
  - {id: one, action: rt.change, with: {name: one}}
  - {id: boom, action: core.fail, needs: [one], with: {message: "false positive"}}
"""


def test_run_and_rollback_on_postgres_keep_the_url_out_of_prefect(
    pg_url: str, tmp_path: Path
) -> None:
    """`irbook run` on one host, `irbook rollback` on another with only the URL: the
    rollback's flow run is recorded in Prefect without the URL (it may hold a password)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    path = tmp_path / "pg-rollback.yaml"
    path.write_text(ROLLBACK_PLAYBOOK)
    secret = pg_url.replace("postgres@", "postgres:hunter2@")
    ran = cli(host_env(tmp_path, "laptop-a", secret), "run", str(path), "--yes", "--plain")
    assert ran.returncode == 1, ran.stdout + ran.stderr
    run_id = ran.stdout.split("LIVE run ")[1].split()[0]
    other = host_env(tmp_path, "laptop-b", secret)
    done = cli(other, "rollback", run_id, "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "✓ one: rt.undo" in done.stdout
    record = RunStore(pg_url).rollbacks([run_id])[run_id]
    assert record["outcome"] == "rolled back"
    listed = cli(other, "runs")
    assert "failed, rolled back" in listed.stdout, listed.stdout
    with get_client(sync_client=True) as api:
        runs = api.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["irbook-rollback"]))
        )
    mine = [r for r in runs if r.parameters.get("run_id") == run_id]
    assert mine and all(r.parameters["store_path"] == "" for r in mine)
    assert all("hunter2" not in str(r.parameters) for r in runs)
