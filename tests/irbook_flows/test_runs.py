"""Runs against a real local Prefect API: parallelism, retries, timeouts, skips, honest
final states, approvals through `irbook approve`, rollback, dry-run isolation, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from tests.support import runtime_actions as actions

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, steps: str, *, extra: str = "", rollback: str = "manual") -> Path:
    path = tmp_path / "pb.yaml"
    path.write_text(
        "apiVersion: irbook/v1\nkind: Playbook\n"
        "metadata: {id: rt-test, title: Runtime test}\n"
        f"rollback: {rollback}\n{extra}steps:\n" + textwrap.indent(textwrap.dedent(steps), "  ")
    )
    return path


def run(
    path: Path,
    *,
    dry_run: bool = False,
    params: dict[str, str] | None = None,
    clients: Any = None,
    events: list[tuple[str, str, str]] | None = None,
) -> tuple[Any, Any]:
    from irbook.loader import load_playbook
    from irbook.plan import build_plan, manual_alert
    from irbook.registry import NoClients
    from irbook.runs import RunStore
    from irbook_flows.engine import RunSpec
    from irbook_flows.flow import execute, quiet_console

    quiet_console()
    playbook = load_playbook(str(path)).playbook
    plan = build_plan(playbook, None, params or {})
    store = RunStore()
    run_id = store.create_run(
        playbook_id=playbook.metadata.id,
        playbook_title=playbook.metadata.title,
        mode="dry-run" if dry_run else "live",
        started_by="test",
        inputs=plan.as_dict()["inputs"],
        rollback=playbook.rollback,
    )
    spec = RunSpec(
        run_id=run_id,
        playbook=playbook,
        alert=manual_alert(),
        inputs=plan.inputs,
        dry_run=dry_run,
        started_by="test",
        store=store,
        clients=clients or NoClients(),
        secrets=plan.secrets,
        on_event=(lambda k, s, st, d: events.append((k, s, st))) if events is not None else None,
    )
    return execute(spec), store


def prefect_state(flow_run_id: str) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(flow_run_id))


def steps_by_id(store: Any, run_id: str) -> dict[str, dict[str, Any]]:
    return {s["step_id"] + (f"[{s['item']}]" if s["item"] else ""): s for s in store.steps(run_id)}


def said(stderr: str) -> str:
    """stderr without the note every command makes when no policy is in force."""
    from irbook.policy import NOTICE

    return "\n".join(x for x in stderr.strip().splitlines() if not x.startswith(NOTICE))


@pytest.fixture(autouse=True)
def _reset() -> None:
    actions.reset()


def test_parallel_branches_overlap_and_needs_are_respected(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        - {id: left, action: core.sleep, with: {duration: 1s}}
        - {id: right, action: core.sleep, with: {duration: 1s}}
        - {id: join, action: core.note, needs: [left, right], with: {text: joined}}
        """,
    )
    outcome, store = run(path)
    assert outcome.state == "succeeded"
    rows = steps_by_id(store, outcome.run_id)
    left, right, join = rows["left"], rows["right"], rows["join"]
    # the two sleeps ran at the same time: each started before the other ended
    assert left["started_at"] < right["finished_at"] and right["started_at"] < left["finished_at"]
    assert join["started_at"] >= max(left["finished_at"], right["finished_at"])
    flow_run = prefect_state(outcome.flow_run_id)
    assert flow_run.state.type.value == "COMPLETED"
    assert set(flow_run.tags) >= {"irbook", "live", "playbook:rt-test"}
    # the one flow's parameters, as a deployment's flow run has them: nothing secret, and
    # the alert without its raw payload (the run's own copy stays in this process)
    given = flow_run.parameters
    assert sorted(given) == ["alert", "mode", "playbook_id", "run_id", "source"]
    assert (given["playbook_id"], given["mode"], given["run_id"]) == (
        "rt-test",
        "live",
        outcome.run_id,
    )
    assert given["alert"]["source"] == "manual" and "raw" not in given["alert"]


def test_retries_then_success_and_no_rollback(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        - {id: first, action: rt.change, with: {name: first}}
        - id: flaky
          action: rt.change
          needs: [first]
          retries: 2
          retry_delay: 0s
          with: {name: flaky, fail_times: 2}
        """,
        rollback="auto",
    )
    outcome, store = run(path)
    assert outcome.state == "succeeded", outcome.message
    assert steps_by_id(store, outcome.run_id)["flaky"]["attempts"] == 3
    # Prefect's transaction() would have rolled back 'first' on flaky's retry; ours does not.
    assert actions.CALLS == ["change:first", "change:flaky"]
    assert outcome.compensations == []


def test_a_failed_abort_step_fails_the_run_and_skips_dependents(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        - {id: boom, action: core.fail, with: {message: "stop here"}}
        - {id: after, action: core.note, needs: [boom], with: {text: never}}
        - {id: later, action: core.note, needs: [after], with: {text: never}}
        - {id: soft, action: core.fail, on_failure: continue, with: {message: meh}}
        - {id: after-soft, action: core.note, needs: [soft], with: {text: runs}}
        """,
    )
    outcome, store = run(path)
    assert outcome.state == "failed"
    assert outcome.message == "step 'boom' failed: stop here"
    rows = steps_by_id(store, outcome.run_id)
    assert rows["after"]["state"] == "skipped"
    assert rows["after"]["reason"] == "upstream step 'boom' failed"
    assert rows["later"]["state"] == "skipped"
    assert rows["after-soft"]["state"] == "succeeded"
    assert prefect_state(outcome.flow_run_id).state.type.value == "FAILED"


def test_a_hung_api_cannot_hang_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from irbook_actions.clients import LiveClients

    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)
    accepted: list[socket.socket] = []

    def accept() -> None:
        for _ in range(8):
            try:
                accepted.append(hung.accept()[0])  # and never answer
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    path = write(
        tmp_path,
        """
        - {id: lookup, action: rt.whoami, timeout: 1s, with: {name: x}}
        """,
    )
    clients = LiveClients(
        region="us-east-1", aws_endpoint_url=f"http://127.0.0.1:{hung.getsockname()[1]}"
    )
    started = time.monotonic()
    outcome, store = run(path, clients=clients)
    elapsed = time.monotonic() - started
    hung.close()
    assert outcome.state == "failed"
    reason = steps_by_id(store, outcome.run_id)["lookup"]["reason"]
    # Prefect's own timeout, or botocore's read timeout: both say so
    assert "timed out" in reason.lower() or "timeout" in reason.lower(), reason
    assert elapsed < 60  # bounded by the step's timeout, not by the hung server


def test_dry_run_simulates_effects_and_opens_no_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_api: str
) -> None:
    api_port = int(prefect_api.rsplit(":", 1)[1].split("/")[0])
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and address[1] != api_port:
            raise AssertionError(f"dry run connected to {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    path = write(
        tmp_path,
        """
        - {id: change, action: rt.change, with: {name: prod}}
        - {id: lookup, action: rt.whoami, with: {name: x}}
        """,
    )
    outcome, store = run(path, dry_run=True)
    assert outcome.state == "succeeded"
    assert actions.CALLS == []  # nothing changed
    rows = steps_by_id(store, outcome.run_id)
    assert rows["change"]["planned_calls"] == [{"call": "rt:Change", "params": {"Name": "prod"}}]
    assert rows["change"]["real_calls"] == []
    assert "dry-run" in prefect_state(outcome.flow_run_id).tags


def test_auto_rollback_runs_compensations_newest_first(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        - {id: one, action: rt.change, with: {name: one}}
        - id: two
          action: rt.change
          needs: [one]
          retries: 1
          retry_delay: 0s
          with: {name: two, fail_times: 1}
        - {id: boom, action: core.fail, needs: [two], with: {message: "containment check failed"}}
        """,
        rollback="auto",
    )
    outcome, store = run(path)
    assert outcome.state == "failed"
    assert actions.CALLS == ["change:one", "change:two", "undo:two", "undo:one"]
    kinds = [e["kind"] for e in store.events(outcome.run_id)]
    assert kinds.count("compensated") == 2


def test_manual_rollback_records_the_plan_and_rollback_runs_it_later(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        - {id: one, action: rt.change, with: {name: one}}
        - {id: boom, action: core.fail, needs: [one], with: {message: "false positive"}}
        """,
    )
    outcome, store = run(path)
    assert outcome.state == "failed"
    assert actions.CALLS == ["change:one"]  # manual: nothing undone yet
    assert outcome.compensations == [
        {"step": "one", "item": 0, "action": "rt.undo", "with": {"name": "one"}}
    ]
    from irbook_flows.flow import roll_back_run

    record = store.run(outcome.run_id)
    plan = outcome.compensations
    lines: list[str] = []

    class Out:
        def write(self, text: str) -> None:
            lines.append(text)

    assert roll_back_run(record, plan, dry_run=True, out=Out()) == []
    assert actions.CALLS == ["change:one"]  # a dry rollback changes nothing
    assert roll_back_run(record, plan, dry_run=False, out=Out()) == []
    assert actions.CALLS == ["change:one", "undo:one"]
    assert "rollback done: 1 undone\n" in lines


# --- through the real CLI -------------------------------------------------------------


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "irbook.cli.main", *args],
        cwd=ROOT,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_step(run_dir: Path, state: str, timeout: float = 60) -> tuple[str, str]:
    from irbook.runs import RunStore

    store = RunStore()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for row in store.recent_runs(5):
            for step in store.steps(row["id"]):
                if step["state"] == state:
                    return row["id"], step["step_id"]
        time.sleep(0.2)
    raise AssertionError(f"no step reached {state}")


GATED = """
- {id: gate, action: core.approval, with: {prompt: "contain?"}, approval: {timeout: TIMEOUT}}
- {id: act, action: core.note, needs: [gate], with: {text: contained}}
"""


@pytest.mark.parametrize(
    ("decision", "code", "state"),
    [("approve", 0, "succeeded"), ("reject", 2, "rejected")],
)
def test_approval_through_irbook_approve(
    tmp_path: Path, decision: str, code: int, state: str
) -> None:
    path = write(tmp_path, GATED.replace("TIMEOUT", "5m"))
    proc = start_cli("run", str(path), "--yes", "--plain", "--quiet")
    run_id, step = wait_for_step(tmp_path, "awaiting-approval")
    args = ["approve", run_id, "--step", step, "--by", "alice", "--comment", "checked"]
    if decision == "reject":
        args.append("--reject")
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, out + err
    assert "Traceback" not in out + err
    from irbook.runs import RunStore

    store = RunStore()
    assert store.run(run_id)["state"] == state
    gate = steps_by_id(store, run_id)["gate"]
    assert gate["approval"]["by"] == "alice"
    assert gate["approval"]["comment"] == "checked"
    act = steps_by_id(store, run_id)["act"]
    assert act["state"] == ("succeeded" if decision == "approve" else "skipped")


def test_approval_timeout_applies_on_timeout(tmp_path: Path) -> None:
    path = write(tmp_path, GATED.replace("TIMEOUT", "2s"))
    done = cli("run", str(path), "--yes", "--plain", "--quiet")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "approval rejected" in done.stdout


def test_approve_errors_are_one_line(tmp_path: Path) -> None:
    done = cli("approve", "nosuchrun")
    assert done.returncode == 1
    assert said(done.stderr) == "irbook: error: no run 'nosuchrun' (see: irbook runs)"


def test_live_run_without_terminal_needs_yes(tmp_path: Path) -> None:
    path = write(tmp_path, "- {id: one, action: rt.change, with: {name: one}}\n")
    done = cli("run", str(path))
    assert done.returncode == 1
    assert (
        "this live run changes production (steps: one); confirm in a terminal or pass --yes"
        in done.stderr
    )


def test_ctrl_c_cancels_cleanly(tmp_path: Path) -> None:
    path = write(tmp_path, "- {id: wait, action: core.sleep, with: {duration: 60s}}\n")
    proc = start_cli("run", str(path), "--plain", "--quiet")
    run_id, _ = wait_for_step(tmp_path, "running")
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in out + err
    from irbook.runs import RunStore

    store = RunStore()
    record = store.run(run_id)
    assert record["state"] == "cancelled"
    assert steps_by_id(store, run_id)["wait"]["state"] == "cancelled"
    assert prefect_state(record["flow_run_id"]).state.type.value == "CANCELLED"


def test_runs_list_and_show(tmp_path: Path) -> None:
    path = write(tmp_path, "- {id: hello, action: core.note, with: {text: hi}}\n")
    done = cli("run", str(path), "--dry-run", "--plain")
    assert done.returncode == 0, done.stderr
    assert "DRY RUN run" in done.stdout
    listing = cli("runs")
    run_id = listing.stdout.split()[0]
    shown = json.loads(cli("runs", "show", run_id, "--format", "json").stdout)
    assert shown["run"]["mode"] == "dry-run"
    assert [s["step_id"] for s in shown["steps"]] == ["hello"]


def test_irbook_rollback_runs_a_failed_runs_compensations(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        - {id: one, action: rt.change, with: {name: one}}
        - {id: boom, action: core.fail, needs: [one], with: {message: "false positive"}}
        """,
    )
    done = cli("run", str(path), "--yes", "--plain", "--quiet")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "rollback (manual): to undo what was done, run:" in done.stdout
    assert 'rt.undo {"name": "one"}' in done.stdout
    run_id = done.stdout.split("LIVE run ")[1].split()[0]
    dry = cli("rollback", run_id, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"DRY RUN rollback of run {run_id} (1 compensations, newest first)" in dry.stdout
    assert "✓ one: rt.undo" in dry.stdout
    assert said(cli("rollback", "nope").stderr) == "irbook: error: no run 'nope' (see: irbook runs)"


def test_step_table_redraws_in_place_on_a_terminal() -> None:
    import io

    from irbook.cli.common import StepTable

    out = io.StringIO()
    table = StepTable(["revoke", "notify"], out, live=True)
    table.event("step", "revoke", "running", "")
    table.event("step", "revoke", "succeeded", "")
    text = out.getvalue()
    assert text.count("\x1b[2F") == 1  # the second drawing moved up over the first
    last = text.rsplit("\x1b[2F", 1)[1]
    assert "✓ revoke  succeeded" in last and "· notify  pending" in last

    plain = io.StringIO()
    lines = StepTable(["revoke"], plain, live=False)
    lines.event("step", "revoke", "failed", "throttled")
    assert "✗ revoke: failed (throttled)" in plain.getvalue()
    assert "\x1b" not in plain.getvalue()
