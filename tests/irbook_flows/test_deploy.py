"""Scale-out against the real local Prefect API: `irbook deploy` registers one deployment
per playbook, the receiver's deployments starter creates exactly one flow run per queued
alert (idempotency key), nothing secret becomes a parameter, and a process worker runs
the deployed flow through the same engine as the embedded default."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from irbook.model.alert import Actor, Alert
from irbook.runs import RunStore
from irbook.triggers.config import RunnerConfig
from irbook.triggers.dispatch import Dispatcher, StartRefused, StartRequest
from irbook.triggers.queue import AlertQueue, QueueItem
from tests.support.receiver import wait_for

ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))
IRBOOK = str(Path(sys.executable).with_name("irbook"))
STUCK = "IRBOOK_STUCK_AFTER"
# Makes the flow-run processes a worker spawns hang before they start the flow (the
# worker itself is unaffected): a worker killed then has claimed runs it never started.
HANG = """\
import sys, time
if "prefect.engine" in sys.orig_argv:
    time.sleep(600)
"""

PLAYBOOK = """\
apiVersion: irbook/v1
kind: Playbook
metadata: {id: dep-note, title: Deployed note}
inputs:
  user: {type: string, from: alert.actor.user_name, default: nobody}
steps:
  - {id: note, action: core.note, with: {text: "alert ${{ alert.id }} for ${{ inputs.user }}"}}
  - {id: gate, action: core.approval, needs: [note], with: {prompt: "Contain?"}}
"""

SECRET_PLAYBOOK = """\
apiVersion: irbook/v1
kind: Playbook
metadata: {id: dep-secret, title: Takes a secret from the alert}
inputs:
  key: {type: string, from: alert.actor.access_key_id, secret: true}
steps:
  - {id: note, action: core.note, with: {text: "key ${{ inputs.key }}"}}
"""


@dataclass(frozen=True)
class Deployed:
    pool: str
    books: Path
    home: Path


SECRETS = {
    "GD_TOKEN": "gd-token-deploy-0123456789",
    "IRBOOK_SLACK_SIGNING_SECRET": "slack-signing-deploy-secret",
    "SLACK_BOT_TOKEN": "xoxb-deploy-secret-token",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-deploy-abcdefghijkl",
}


@pytest.fixture(scope="module")
def _deployed(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    """`irbook deploy --pool <fresh pool>` over a folder of two playbooks, once."""
    books = tmp_path_factory.mktemp("deploy-books")
    (books / "dep-note.yaml").write_text(PLAYBOOK)
    (books / "dep-secret.yaml").write_text(SECRET_PLAYBOOK)
    home = tmp_path_factory.mktemp("deploy-home")
    saved = {k: os.environ.get(k) for k in ("IRBOOK_PLAYBOOKS", "IRBOOK_HOME")}
    os.environ.update(IRBOOK_PLAYBOOKS=str(books), IRBOOK_HOME=str(home))
    pool = f"irbook-test-{uuid.uuid4().hex[:8]}"
    from irbook.cli.main import main

    try:
        assert main(["deploy", "--pool", pool]) == 0
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    yield Deployed(pool, books, home)


@pytest.fixture
def deployed(_deployed: Deployed, monkeypatch: pytest.MonkeyPatch) -> str:
    """The pool; this test sees the playbooks and the home the deployments were made with."""
    monkeypatch.setenv("IRBOOK_PLAYBOOKS", str(_deployed.books))
    monkeypatch.setenv("IRBOOK_HOME", str(_deployed.home))
    return _deployed.pool


def request(alert_id: str, playbook_id: str = "dep-note", **actor: Any) -> StartRequest:
    alert = Alert(
        id=alert_id,
        source="guardduty",
        type="UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
        title="Credentials used outside AWS",
        severity=8.0,
        actor=Actor(**actor),
        raw={"detail": {"id": alert_id}},
    )
    return StartRequest(
        run_id="wh-" + uuid.uuid4().hex[:16],
        playbook_id=playbook_id,
        playbook_path=os.path.join(os.environ["IRBOOK_PLAYBOOKS"], f"{playbook_id}.yaml"),
        alert=alert,
        mode="dry-run",
        source="gd",
        alert_key=f"gd/{playbook_id}/{alert_id}",
    )


def client() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _deployed_books() -> Path:
    return Path(os.environ["IRBOOK_PLAYBOOKS"])


def test_deploy_registers_a_deployment_per_playbook(deployed: str) -> None:
    from irbook_flows.deploy import ENTRYPOINT, full_name, playbook_digest

    with client() as api:
        pool = api.read_work_pool(deployed)
        assert pool.type == "process"
        for pid in ("dep-note", "dep-secret"):
            deployment = api.read_deployment_by_name(full_name(pid))
            assert deployment.name == f"irbook-{pid}"
            assert deployment.work_pool_name == deployed
            assert deployment.entrypoint == ENTRYPOINT
            assert deployment.pull_steps in (None, [])  # imported from the installed package
            # nothing of the deploying machine: each worker's environment supplies paths,
            # home, credentials; the playbook's digest lets a worker refuse a stale copy
            variables = json.dumps(deployment.job_variables or {})
            assert "IRBOOK_" not in variables and str(_deployed_books()) not in variables
            assert deployment.version == playbook_digest(str(_deployed_books() / f"{pid}.yaml"))
            assert f"playbook:{pid}" in deployment.tags
    # deploying again updates in place: still one deployment per playbook
    from irbook.cli.main import main

    assert main(["deploy", "--pool", deployed]) == 0
    with client() as api:
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

        names = DeploymentFilterName(any_=["irbook-dep-note", "irbook-dep-secret"])
        assert len(api.read_deployments(deployment_filter=DeploymentFilter(name=names))) == 2


def test_deploy_without_an_api_is_one_line_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "dep-note.yaml").write_text(PLAYBOOK)
    result = subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", "deploy", "--pool", "nowhere"],
        cwd=tmp_path,
        env={**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api", "IRBOOK_PLAYBOOKS": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unreachable" in lines[0], result.stderr


def test_the_same_request_twice_makes_one_flow_run(deployed: str) -> None:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterIdempotencyKey

    from irbook_flows.deploy import deployments_starter, idempotency_key

    start = deployments_starter(RunnerConfig(type="deployments", pool=deployed))
    req = request("finding-twice")
    first = start(req)
    second = start(req)  # a restarted dispatcher, or a retry after a lost answer
    assert first == second
    with client() as api:
        key = idempotency_key(req)
        runs = api.read_flow_runs(
            flow_run_filter=FlowRunFilter(idempotency_key=FlowRunFilterIdempotencyKey(any_=[key]))
        )
        assert [str(r.id) for r in runs] == [first]
        assert runs[0].idempotency_key == key
        assert runs[0].parameters["run_id"] == req.run_id
        # the same alert occurring again later is a new run (new run id): a new flow run
        later = start(request("finding-twice"))
        assert later != first


def test_no_secret_reaches_the_flow_run_parameters(
    deployed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from irbook_flows.deploy import deployments_starter

    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    start = deployments_starter(RunnerConfig(type="deployments"))
    req = request("finding-params", user_name="alice")
    flow_run_id = start(req)
    with client() as api:
        flow_run = api.read_flow_run(uuid.UUID(flow_run_id))
        deployment = api.read_deployment(flow_run.deployment_id)
    assert sorted(flow_run.parameters) == ["alert", "mode", "playbook_id", "run_id", "source"]
    stored = json.dumps([flow_run.parameters, deployment.job_variables, flow_run.job_variables])
    for value in SECRETS.values():
        assert value not in stored
    # a playbook that takes a secret input from the alert is refused, with no flow run
    leaky = request("finding-secret", "dep-secret", access_key_id="AKIAABCDEFGHIJKLMNOP")
    with pytest.raises(StartRefused, match="secret input"):
        start(leaky)
    with client() as api:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterIdempotencyKey

        from irbook_flows.deploy import idempotency_key

        key = FlowRunFilterIdempotencyKey(any_=[idempotency_key(leaky)])
        assert api.read_flow_runs(flow_run_filter=FlowRunFilter(idempotency_key=key)) == []


def test_a_worker_runs_the_deployed_flow_once(deployed: str) -> None:
    from irbook_flows.deploy import deployments_starter, run_deployed

    start = deployments_starter(RunnerConfig(type="deployments", pool=deployed))
    req = request("finding-worker", user_name="bob")
    flow_run_id = start(req)
    # known from the moment the flow run exists, before any worker has it
    queued = RunStore().run(req.run_id)
    assert queued is not None and queued["state"] == "queued", queued
    assert queued["flow_run_id"] == flow_run_id and queued["started_by"] == "webhook:gd"
    worker = subprocess.run(
        [
            str(Path(sys.executable).with_name("prefect")),
            "worker",
            "start",
            "--pool",
            deployed,
            "--run-once",
            "--type",
            "process",
        ],
        cwd=ROOT,
        env={**os.environ, "PREFECT_LOGGING_LEVEL": "INFO"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = worker.stdout + worker.stderr
    with client() as api:
        flow_run = api.read_flow_run(uuid.UUID(flow_run_id))
    assert flow_run.state is not None and flow_run.state.is_completed(), output[-3000:]
    record = RunStore().run(req.run_id)
    assert record is not None, output[-3000:]
    assert record["state"] == "succeeded" and record["started_by"] == "webhook:gd"
    assert record["mode"] == "dry-run" and record["alert_id"] == "finding-worker"
    steps = {s["step_id"]: s for s in RunStore().steps(req.run_id)}
    assert steps["note"]["state"] == "succeeded"
    assert steps["gate"]["approval"]["how"] == "simulated"
    # a second delivery of the same flow run (a retried flow run) refuses to run it again
    assert run_deployed(**flow_run.parameters) is None


def _run_worker(pool: str, **env: str) -> str:
    worker = subprocess.run(
        [PREFECT, "worker", "start", "--pool", pool, "--run-once", "--type", "process"],
        cwd=ROOT,
        env={**os.environ, "PREFECT_LOGGING_LEVEL": "INFO", **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return worker.stdout + worker.stderr


def test_a_queued_run_cancelled_from_the_cli_never_runs(deployed: str) -> None:
    from irbook_flows.deploy import deployments_starter

    start = deployments_starter(RunnerConfig(type="deployments", pool=deployed))
    req = request("finding-cancel", user_name="carol")
    flow_run_id = start(req)
    cancel = subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", "cancel", req.run_id, "--by", "oncall"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cancel.returncode == 0, cancel.stderr
    assert f"cancelled run {req.run_id}" in cancel.stdout
    record = RunStore().run(req.run_id)
    assert record is not None and record["state"] == "cancelled", record
    output = _run_worker(deployed)
    with client() as api:
        flow_run = api.read_flow_run(uuid.UUID(flow_run_id))
    assert flow_run.state is not None and flow_run.state.is_cancelled(), output[-3000:]
    assert RunStore().steps(req.run_id) == []  # no step ran
    # a flow run that slips through anyway (cancelled after a worker took it) refuses
    from irbook_flows.deploy import Refused, run_deployed

    with pytest.raises(Refused, match="cancelled before a worker started it"):
        run_deployed(**flow_run.parameters)


def test_a_worker_with_another_copy_of_the_playbook_refuses_the_run(
    deployed: str, tmp_path: Path
) -> None:
    from irbook_flows.deploy import deployments_starter

    start = deployments_starter(RunnerConfig(type="deployments", pool=deployed))
    req = request("finding-stale", user_name="dave")
    flow_run_id = start(req)
    # this worker has its own playbook folder, where dep-note was edited since the deploy
    books = tmp_path / "worker-books"
    books.mkdir()
    edited = PLAYBOOK.replace("Contain?", "Contain now?")
    (books / "dep-note.yaml").write_text(edited)
    output = _run_worker(deployed, IRBOOK_PLAYBOOKS=str(books))
    with client() as api:
        flow_run = api.read_flow_run(uuid.UUID(flow_run_id))
    assert flow_run.state is not None and flow_run.state.is_failed(), output[-3000:]
    record = RunStore().run(req.run_id)
    assert record is not None and record["state"] == "failed", output[-3000:]
    assert "is not the deployed one" in record["message"]
    assert "run irbook deploy again" in record["message"]
    assert RunStore().steps(req.run_id) == []


def _state(flow_run_id: str) -> str:
    with client() as api:
        state = api.read_flow_run(uuid.UUID(flow_run_id)).state
    return "" if state is None else str(state.type.value)


def test_a_run_claimed_by_a_killed_worker_is_run_by_another(deployed: str, tmp_path: Path) -> None:
    """#20.1: SIGKILL a worker (and its children) after it claimed a flow run and before
    the run started. Prefect's automation that irbook deploy keeps puts the run back to
    Scheduled, and another worker runs it; the alert is not absorbed by a dead flow run."""
    from irbook_flows.deploy import RESCHEDULE_AUTOMATION

    def deploy(**env: str) -> None:
        done = subprocess.run(
            [IRBOOK, "deploy", "--pool", deployed],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr

    def within() -> float:
        with client() as api:
            (automation,) = api.read_automations_by_name(RESCHEDULE_AUTOMATION)
            return automation.trigger.within.total_seconds()  # type: ignore[union-attr]

    assert within() == 90  # the default
    deploy(**{STUCK: "10"})  # Prefect's minimum, so that the test is quick
    assert within() == 10
    try:
        _lost_worker_run_is_run_by_another(deployed, tmp_path)
    finally:
        deploy()
    assert within() == 90


def _lost_worker_run_is_run_by_another(deployed: str, tmp_path: Path) -> None:
    import signal

    from irbook_flows.deploy import deployments_starter

    start = deployments_starter(RunnerConfig(type="deployments", pool=deployed))
    req = request("finding-lost-worker", user_name="erin")
    flow_run_id = start(req)
    hang = tmp_path / "hang"
    hang.mkdir()
    (hang / "sitecustomize.py").write_text(HANG)
    doomed = subprocess.Popen(
        [PREFECT, "worker", "start", "--pool", deployed, "--type", "process"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(hang)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert wait_for(lambda: _state(flow_run_id) == "PENDING", 90, 0.5)
    finally:
        os.killpg(doomed.pid, signal.SIGKILL)  # the worker and the flow run it spawned
        doomed.wait(30)
    record = RunStore().run(req.run_id)
    assert record is not None and record["state"] == "queued"
    # Prefect's proactive automation notices the run that never started
    assert wait_for(lambda: _state(flow_run_id) == "SCHEDULED", 90, 0.5), _state(flow_run_id)
    output = _run_worker(deployed)
    assert _state(flow_run_id) == "COMPLETED", output[-3000:]
    record = RunStore().run(req.run_id)
    assert record is not None and record["state"] == "succeeded", output[-3000:]
    assert [s["step_id"] for s in RunStore().steps(req.run_id)] == ["note", "gate"]


CRASH = """\
import os, sys
if "prefect.engine" in sys.orig_argv:
    os._exit(3)
"""


def test_a_queued_run_whose_flow_run_crashed_before_starting_is_started_again(
    deployed: str, tmp_path: Path
) -> None:
    """A flow-run process that dies before the flow begins: the worker marks the flow run
    Crashed, and the receiver's reaper settles the queued record (crashed, no step began)
    and starts its alert again under a new run id, instead of answering 'duplicate' to
    every retry of an alert no run will handle."""
    from irbook.cli.common import crash_reaper
    from irbook_flows.deploy import deployments_starter

    start = deployments_starter(RunnerConfig(type="deployments", pool=deployed))
    queue = AlertQueue()
    req = _queue_one(queue, request("finding-crash-before-start", user_name="frank"))
    flow_run_id = start(req)
    (row,) = queue.rows(run_id=req.run_id)
    queue.mark_started(row["id"], flow_run_id)  # as the receiver's dispatcher does
    crash = tmp_path / "crash"
    crash.mkdir()
    (crash / "sitecustomize.py").write_text(CRASH)
    output = _run_worker(deployed, PYTHONPATH=str(crash))
    assert _state(flow_run_id) == "CRASHED", output[-3000:]
    reaper = crash_reaper(RunStore(), queue, workers=True)
    found: list[Any] = []
    assert wait_for(lambda: bool(found.extend(reaper.reap()) or found), 60, 1.0)
    (reaped,) = found
    assert reaped.run_id == req.run_id and reaped.state == "crashed"
    assert reaped.restarted_as is not None
    record = RunStore().run(req.run_id)
    assert record is not None and record["state"] == "crashed"
    assert "ended Crashed before any worker started it" in record["message"]
    assert f"started again as run {reaped.restarted_as}" in record["message"]
    (row,) = queue.rows(run_id=reaped.restarted_as)
    assert row["status"] == "queued" and row["restarted_from"] == req.run_id
    assert reaper.reap() == []  # settled once
    queue.close()


def test_irbook_worker_runs_flow_runs_on_its_threads_and_shares_a_burst(deployed: str) -> None:
    """`irbook worker` (a Prefect worker whose infrastructure is its own threads) runs the
    deployed flow runs through the same claim and engine; two of them split a burst."""
    import signal

    from irbook_flows.deploy import deployments_starter

    start = deployments_starter(RunnerConfig(type="deployments", pool=deployed))
    requests = [request(f"finding-thread-{i}", user_name="gail") for i in range(6)]
    flow_run_ids = [start(req) for req in requests]
    workers = [
        subprocess.Popen(
            [IRBOOK, "worker", "--pool", deployed, "--limit", "3", "--name", f"thread-worker-{i}"],
            cwd=ROOT,
            env={**os.environ, "PREFECT_WORKER_QUERY_SECONDS": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for i in range(2)
    ]
    try:

        def done() -> bool:
            records = [RunStore().run(req.run_id) for req in requests]
            if not all(r is not None and r["state"] == "succeeded" for r in records):
                return False
            return all(_state(flow_run_id) == "COMPLETED" for flow_run_id in flow_run_ids)

        assert wait_for(done, 120, 0.5), [RunStore().run(r.run_id) for r in requests]
    finally:
        for worker in workers:
            os.killpg(worker.pid, signal.SIGTERM)
        output = b"".join(w.communicate(timeout=60)[0] or b"" for w in workers).decode()
    assert "Traceback" not in output, output[-3000:]
    names = []
    with client() as api:
        for flow_run_id in flow_run_ids:
            flow_run = api.read_flow_run(uuid.UUID(flow_run_id))
            assert flow_run.state is not None and flow_run.state.is_completed()
            names.append(flow_run.labels["prefect.worker.name"])
    assert set(names) <= {"thread-worker-0", "thread-worker-1"}
    for req in requests:  # each run's steps ran once
        assert [s["step_id"] for s in RunStore().steps(req.run_id)] == ["note", "gate"]


def test_irbook_worker_errors_are_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", "worker", "--limit", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "irbook: error: --limit must be at least 1"


def test_irbook_worker_for_a_pool_that_does_not_exist_stops_naming_it(prefect_api: str) -> None:
    """A mistyped pool used to leave a worker saying it polls the pool, and waiting for ever
    for someone to create it; an API that does not answer is one line too."""
    pool = f"no-such-pool-{uuid.uuid4().hex[:8]}"
    for api, said in (
        (prefect_api, f"work pool {pool!r} does not exist on {prefect_api}: run irbook deploy"),
        ("http://127.0.0.1:9/api", "the Prefect API at http://127.0.0.1:9/api is unreachable"),
    ):
        result = subprocess.run(
            [IRBOOK, "worker", "--pool", pool],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PREFECT_API_URL": api},
        )
        assert result.returncode == 1, result.stdout + result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and said in lines[0], result.stderr
        assert "polling" not in result.stdout


def _queue_one(queue: AlertQueue, req: StartRequest) -> StartRequest:
    """Enqueue req's alert; the request as the dispatcher will build it (queue's run id)."""
    item = QueueItem(req.source, req.alert, req.playbook_id, req.playbook_path, "dry-run")
    (done,) = queue.enqueue([item], windows=[3600.0])
    return dataclasses.replace(req, run_id=done.run_id, alert_key=done.alert_key)


def test_a_restarted_dispatcher_reuses_the_flow_run(deployed: str, tmp_path: Path) -> None:
    from irbook_flows.deploy import deployments_starter

    start = deployments_starter(RunnerConfig(type="deployments", pool=deployed))
    queue = AlertQueue(tmp_path / "q.db")
    req = _queue_one(queue, request("finding-restart"))
    # the process before the restart created the flow run, then died before confirming
    first = start(req)
    dispatcher = Dispatcher(queue, start, poll_interval=0.05, retry_delays=(0.05,))
    dispatcher.start()
    try:
        assert wait_for(lambda: queue.rows(run_id=req.run_id)[0]["status"] == "started")
    finally:
        dispatcher.stop()
    assert queue.rows(run_id=req.run_id)[0]["started_ref"] == first
    # and the same finding delivered again inside its window attaches to the same row
    again = _queue_one(queue, request("finding-restart"))
    assert again.run_id == req.run_id


def test_prefect_failures_are_retried_and_refusals_are_not(deployed: str, tmp_path: Path) -> None:
    from irbook_flows.deploy import deployments_starter

    start = deployments_starter(RunnerConfig(type="deployments", prefix="not-deployed"))
    queue = AlertQueue(tmp_path / "q.db")
    missing = _queue_one(queue, request("finding-missing"))
    leaky = _queue_one(
        queue, request("finding-leaky", "dep-secret", access_key_id="AKIAABCDEFGHIJKLMNOP")
    )
    failed: list[tuple[str, str]] = []
    dispatcher = Dispatcher(
        queue,
        start,
        poll_interval=0.05,
        retry_delays=(0.05,),
        on_failed=lambda r, e: failed.append((r.run_id, e)),
    )
    dispatcher.start()
    try:
        assert wait_for(lambda: len(failed) == 2)
    finally:
        dispatcher.stop()
    rows = {r["run_id"]: r for r in queue.rows()}
    assert rows[missing.run_id]["attempts"] == 2  # tried, retried, then failed
    assert rows[missing.run_id]["error"] == (
        "deployment irbook-playbook/not-deployed-dep-note: not registered (run: irbook deploy)"
    )
    assert rows[leaky.run_id]["attempts"] == 1  # no retry can change a refusal
    assert "secret input(s) key" in rows[leaky.run_id]["error"]
    assert "AKIAABCDEFGHIJKLMNOP" not in rows[leaky.run_id]["error"]
