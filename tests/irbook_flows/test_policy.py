"""Who may run and approve what, through every path a user takes: `irbook run` and
`irbook approve` as subprocesses, a raw resume on the local Prefect API, signed Slack
presses over HTTP to the real receiver app, and a drill. Each refused attempt is
answered as refused, changes nothing, and is in the audit chain."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from tests.irbook_flows.test_slack_approvals import SECRET, SlackClients, free_port, press
from tests.support import runtime_actions as actions  # noqa: F401 - registers the rt.* test actions
from tests.support.fakeslack import FakeSlack

ROOT = Path(__file__).resolve().parents[2]

POLICY = """\
apiVersion: irbook/v1
kind: Policy
people:
  - {name: alice, users: [alice], slack: [U0ALICE]}
  - {name: bob, users: [bob], slack: [U0BOB]}
  - {name: carol, users: [carol], emails: [carol@example.com], slack: [U0CAROL]}
  - {name: mallory, users: [mallory], slack: [U0MALLORY], prefect: [mallory]}
groups:
  - {name: secops, members: [alice, bob, carol]}
roles:
  - name: responder
    members: [secops]
    grants:
      - allow: [run, run-live, approve-irreversible, rollback, drill]
  - name: intern
    members: [mallory]
    grants:
      - allow: [run, drill]
        modes: [dry-run]
"""

# A two-person gate in front of an irreversible change.
TWO_PERSON = """\
apiVersion: irbook/v1
kind: Playbook
metadata: {id: rt-purge, title: Purge, severity: high}
steps:
  - id: gate
    action: core.approval
    with: {prompt: "purge?"}
    approval: {timeout: 5m, min_approvers: 2}
  - {id: purge, action: rt.undo, needs: [gate], with: {name: one}}
"""


@pytest.fixture
def policy_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "irbook-policy.yaml"
    path.write_text(POLICY)
    monkeypatch.setenv("IRBOOK_POLICY", str(path))
    return path


def cli(*args: str, user: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", *args],
        cwd=ROOT,
        env={**os.environ, "IRBOOK_USER": user},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start(*args: str, user: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "irbook.cli.main", *args],
        cwd=ROOT,
        env={**os.environ, "IRBOOK_USER": user},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def store() -> Any:
    from irbook.runs import RunStore

    return RunStore()


def waiting_run(playbook_id: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for row in store().recent_runs(10):
            if row["playbook_id"] != playbook_id or row["state"] != "running":
                continue
            steps = store().steps(row["id"])
            if any(s["state"] == "awaiting-approval" for s in steps):
                return str(row["id"])
        time.sleep(0.2)
    raise AssertionError("no run waited for approval")


def events(run_id: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in store().events(run_id) if e["kind"] == kind]


def gate_state(run_id: str) -> str:
    return next(s["state"] for s in store().steps(run_id) if s["step_id"] == "gate")


def paused(flow_run_id: str, timeout: float = 30) -> None:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(UUID(flow_run_id)).state
            if state is not None and state.is_paused():
                return
            time.sleep(0.2)
    raise AssertionError("the flow run did not pause")


def raw_resume(flow_run_id: str, run_input: dict[str, Any]) -> None:
    """What anyone who reaches the Prefect API can do: no irbook code in between."""
    from prefect.flow_runs import resume_flow_run

    paused(flow_run_id)
    resume_flow_run(UUID(flow_run_id), run_input=run_input)


def test_a_two_person_irreversible_step_through_the_cli_and_the_prefect_api(
    tmp_path: Path, policy_file: Path
) -> None:
    path = tmp_path / "purge.yaml"
    path.write_text(TWO_PERSON)
    # mallory may only rehearse: a live start is refused before any record of a run
    refused = cli("run", str(path), "--yes", "--plain", "--quiet", user="mallory")
    assert refused.returncode == 5, refused.stdout + refused.stderr
    assert "no run-live grant for playbook rt-purge" in refused.stderr
    assert "no policy in force" not in refused.stderr

    proc = start("run", str(path), "--yes", "--plain", "--quiet", user="alice")
    run_id = waiting_run("rt-purge")
    flow_run_id = str(store().run(run_id)["flow_run_id"])

    done = cli("approve", run_id, user="mallory")
    assert done.returncode == 5, done.stdout + done.stderr
    assert done.stdout.startswith(
        f"refused: cli:mallory may not approve step 'gate' of run {run_id}"
    )
    assert "has no approve-irreversible grant" in done.stdout
    done = cli("approve", run_id, "--reject", user="mallory")  # a rejection needs it too
    assert done.returncode == 5 and "may not reject" in done.stdout, done.stdout
    done = cli("approve", run_id, user="alice")  # she started it: separation of duties
    assert done.returncode == 5 and "separation of duties" in done.stdout, done.stdout
    done = cli("approve", run_id, "--by", "carol", user="bob")
    assert done.returncode == 1 and "--by carol: a policy is in force" in done.stderr
    assert gate_state(run_id) == "awaiting-approval"

    done = cli("approve", run_id, "--comment", "checked", user="bob")
    assert done.returncode == 4, done.stdout + done.stderr
    assert done.stdout == (
        f"recorded: cli:bob approved step 'gate' of run {run_id}; waiting for 1 more approver(s)\n"
    )
    done = cli("approve", run_id, user="bob")  # the same person twice is one approver
    assert done.returncode == 5 and "bob approved already" in done.stdout, done.stdout

    # The local Prefect API has no authentication: a resume claiming alice is only
    # prefect:alice, whom the policy does not know; one replaying bob's ticket is refused.
    raw_resume(flow_run_id, {"approved": True, "approver": "alice"})
    bob_ticket = events(run_id, "approval-request")[0]["seq"]
    raw_resume(flow_run_id, {"approved": True, "approver": "cli:bob", "ticket": bob_ticket})
    deadline = time.monotonic() + 30
    while len(events(run_id, "approval-refused")) < 6 and time.monotonic() < deadline:
        time.sleep(0.2)
    refusals = [e["detail"] for e in events(run_id, "approval-refused")]
    assert [r["by"] for r in refusals] == [
        "cli:mallory",
        "cli:mallory",
        "cli:alice",
        "cli:bob",
        "prefect:alice",
        "prefect:cli:bob",
    ]
    assert "prefect:alice is nobody in the policy" in refusals[4]["reason"]
    assert f"ticket {bob_ticket} is not a request for this decision" in refusals[5]["reason"]
    assert gate_state(run_id) == "awaiting-approval"  # nothing refused changed the run
    assert all(r["grant"] == "approve-irreversible" for r in refusals)

    done = cli("approve", run_id, user="carol@example.com")  # an SSO wrapper's e-mail
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == f"approved: step 'gate' of run {run_id} as cli:carol@example.com\n"
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    gate = next(s for s in store().steps(run_id) if s["step_id"] == "gate")
    assert gate["approval"]["approvers"] == ["cli:bob", "cli:carol@example.com"]
    assert next(s for s in store().steps(run_id) if s["step_id"] == "purge")["state"] == (
        "succeeded"
    )

    late = cli("approve", run_id, user="bob")
    assert late.returncode == 6 and late.stdout.startswith("too late: "), late.stdout

    shown = cli("runs", "show", run_id, user="bob")
    assert "started by cli:alice (alice) [run-live]" in shown.stdout
    assert "REFUSED to approve step gate by cli:mallory (mallory) [approve-irreversible]" in (
        shown.stdout
    )
    assert "approval recorded step gate by cli:bob (bob)" in shown.stdout
    assert "approved step gate by cli:carol@example.com (carol)" in shown.stdout
    verify = cli("audit", "verify", user="bob")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_without_a_policy_the_cli_says_so_and_reports_the_runs_refusal(tmp_path: Path) -> None:
    """No policy: a step's own approvers list still holds, and `irbook approve` now says
    that the run refused the decision instead of printing "approved"."""
    path = tmp_path / "gated.yaml"
    path.write_text(
        TWO_PERSON.replace("min_approvers: 2", "approvers: [alice]").replace("rt-purge", "rt-g")
    )
    proc = start("run", str(path), "--yes", "--plain", "--quiet", user="carol")
    run_id = waiting_run("rt-g")
    done = cli("approve", run_id, user="bob")
    assert done.returncode == 5, done.stdout + done.stderr
    assert "cli:bob is not among the step's approvers (alice)" in done.stdout
    assert done.stderr.count("no policy in force") == 1
    done = cli("approve", run_id, "--by", "alice", user="bob")  # as before policies
    assert done.returncode == 0, done.stdout + done.stderr
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert err.count("no policy in force") == 1


# -- Slack ---------------------------------------------------------------------------


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    server = FakeSlack()
    yield server
    server.close()


@pytest.fixture
def receiver(fake_slack: FakeSlack, tmp_path: Path, policy_file: Path) -> Iterator[str]:
    """The receiver app under uvicorn, its Slack buttons judged by the policy."""
    import uvicorn

    from irbook.policy import load_policy
    from irbook.runs import RunStore
    from irbook.triggers.app import create_app
    from irbook.triggers.auth import build_verifier
    from irbook.triggers.config import parse_config
    from irbook.triggers.limits import ReplayGuard
    from irbook.triggers.slack import SlackApprovals, SlackInteractions
    from irbook_flows.engine import Decision
    from irbook_flows.flow import resume

    guard = ReplayGuard(str(tmp_path / "replay.db"))
    interactions = SlackInteractions(
        verifier=build_verifier({"scheme": "slack", "secret": SECRET}),
        approvals=SlackApprovals(),  # nobody by allow-list: the policy decides
        store=RunStore(),
        decide=lambda fr, ok, who, comment, ticket: resume(
            fr, Decision(ok, who, comment, ticket=ticket), wait_paused=10
        ),
        seen_before=lambda delivery, now: guard.seen_before("slack", delivery, now),
        policy=load_policy(str(policy_file)).policy,
        answer_wait=30,
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(slack=interactions, config=parse_config({})),
            host="127.0.0.1",
            port=port,
            log_level="error",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def start_run(tmp_path: Path, fake_slack: FakeSlack, policy_file: Path) -> tuple[str, Any]:
    """A live two-person run started by a webhook source, in this process."""
    from irbook.loader import load_playbook
    from irbook.plan import manual_alert
    from irbook.policy import load_policy
    from irbook.registry import REGISTRY
    from irbook.runs import RunStore
    from irbook_flows.engine import RunSpec
    from irbook_flows.flow import execute, quiet_console

    quiet_console()
    REGISTRY.load_namespace("slack")
    path = tmp_path / "purge.yaml"
    path.write_text(TWO_PERSON.replace("rt.undo", "core.note").replace("name: one", "text: x"))
    book = load_playbook(str(path)).playbook
    rules = load_policy(str(policy_file)).policy
    rules = rules.model_copy(
        update={
            "roles": [*rules.roles, rules.roles[0].model_copy(update={"members": ["source:x"]})]
        }
    )
    run_store = RunStore()
    started_by = "webhook:x"
    run_id = run_store.create_run(
        playbook_id="rt-purge",
        playbook_title="Purge",
        mode="live",
        started_by=started_by,
        inputs={},
        rollback="manual",
    )
    spec = RunSpec(
        run_id=run_id,
        playbook=book,
        alert=manual_alert(),
        inputs={},
        dry_run=False,
        started_by=started_by,
        store=run_store,
        clients=SlackClients(fake_slack.api_url),
        slack_channel="#ir-approvals",
        policy=rules,
    )
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(outcome=execute(spec)), daemon=True)
    thread.start()
    waiting_run("rt-purge")
    return run_id, (thread, result)


def test_slack_presses_are_judged_by_the_policy(
    tmp_path: Path, fake_slack: FakeSlack, receiver: str, policy_file: Path
) -> None:
    run_id, (thread, result) = start_run(tmp_path, fake_slack, policy_file)
    status, body, *_ = press(receiver, run_id, "gate", user="U0MALLORY")
    assert status == 403 and body["status"] == "refused"
    assert "mallory (slack:U0MALLORY) has no approve grant" in body["error"]
    status, body, *_ = press(receiver, run_id, "gate", user="U0STRANGER", action="irbook_reject")
    assert status == 403 and "slack:U0STRANGER is nobody in the policy" in body["error"]
    assert gate_state(run_id) == "awaiting-approval"

    status, body, *_ = press(receiver, run_id, "gate", user="U0BOB")
    assert (status, body) == (200, {"ok": True, "status": "recorded", "waiting_for": 1})
    status, body, *_ = press(receiver, run_id, "gate", user="U0BOB")
    assert status == 403 and "bob approved already" in body["error"]
    status, body, *_ = press(receiver, run_id, "gate", user="U0CAROL")
    assert (status, body) == (200, {"ok": True, "approved": True, "status": "approved"})
    thread.join(timeout=60)
    assert result["outcome"].state == "succeeded"
    refused = [e["detail"] for e in events(run_id, "approval-refused")]
    assert [r["by"] for r in refused] == ["slack:U0MALLORY", "slack:U0STRANGER", "slack:U0BOB"]
    started = events(run_id, "run-allowed")[0]["detail"]
    assert (started["by"], started["principal"], started["grant"]) == (
        "webhook:x",
        "source:x",
        "run-live",
    )
    from irbook.audit import verify

    assert verify(store()._db()).ok


def test_a_webhook_source_without_the_grant_starts_nothing(
    tmp_path: Path, policy_file: Path
) -> None:
    from irbook.loader import load_playbook
    from irbook.plan import manual_alert
    from irbook.policy import load_policy
    from irbook.runs import RunStore
    from irbook_flows.engine import RunSpec
    from irbook_flows.flow import execute

    path = tmp_path / "purge.yaml"
    path.write_text(TWO_PERSON)
    run_store = RunStore()
    run_id = run_store.create_run(
        playbook_id="rt-purge",
        playbook_title="Purge",
        mode="live",
        started_by="webhook:guardduty",
        inputs={},
        rollback="manual",
    )
    spec = RunSpec(
        run_id=run_id,
        playbook=load_playbook(str(path)).playbook,
        alert=manual_alert(),
        inputs={},
        dry_run=False,
        started_by="webhook:guardduty",
        store=run_store,
        policy=load_policy(str(policy_file)).policy,
    )
    outcome = execute(spec)
    assert outcome.state == "rejected" and outcome.flow_run_id is None
    assert "source:guardduty (webhook:guardduty) has no run-live grant" in outcome.message
    assert not run_store.steps(run_id)  # not one step began
    assert events(run_id, "run-refused")[0]["detail"]["grant"] == "run-live"


# -- drills ----------------------------------------------------------------------------

PLAYBOOK = ROOT / "playbooks" / "leaked-model-key.yaml"
ALERT = ROOT / "runbooks" / "drills" / "alerts" / "guardduty-exfil.json"


def test_a_drills_approver_without_the_grant_is_refused_and_the_report_says_so(
    tmp_path: Path, policy_file: Path
) -> None:
    scenario = tmp_path / "drill.yaml"
    scenario.write_text(
        "apiVersion: irbook/v1\nkind: Drill\nmetadata: {id: t, title: Test drill}\n"
        f"playbook: {PLAYBOOK}\nalert: {{file: {ALERT}}}\n"
        "inputs: {endpoint_name: fraud-scoring}\n"
        "approvers:\n  - {step: revoke, decision: approve, after: 2m, by: mallory}\n"
        "expect: {outcome: succeeded}\n"
    )
    refused = cli("drill", str(scenario), user="nobody")  # no drill grant: no drill
    assert refused.returncode == 5 and "has no drill grant" in refused.stderr, refused.stderr
    done = cli("drill", str(scenario), "--report", str(tmp_path / "report"), user="alice")
    assert done.returncode == 1, done.stdout + done.stderr  # expected succeeded: rejected
    assert "refused at 2m (revoke): mallory refused: mallory (mallory) has no approve grant" in (
        done.stdout
    )
    report = (tmp_path / "report.md").read_text()
    assert "revoke: mallory REFUSED after 2m" in report
