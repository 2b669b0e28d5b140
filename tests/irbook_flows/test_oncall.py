"""The on-call engineer's journey through the CLI (issue #19): a rollback as careful as
the run, and run states people can act on (waiting, cancelled, killed, piped).

Everything goes through `irbook` subprocesses against the session's Prefect API; AWS is a
moto server reached through AWS_ENDPOINT_URL, as a user points irbook at `irbook sandbox`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.irbook_flows.test_runs import (
    GATED,
    ROOT,
    prefect_state,
    start_cli,
    steps_by_id,
    wait_for_step,
    write,
)


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`irbook ...` with no terminal at all: stdin is not a tty, as in a script or CI."""
    return subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", *args],
        cwd=ROOT,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def said(stderr: str) -> str:
    """stderr without the note every command makes when no policy is in force."""
    from irbook.policy import NOTICE

    return "\n".join(x for x in stderr.strip().splitlines() if not x.startswith(NOTICE))


def store() -> Any:
    from irbook.runs import RunStore

    return RunStore()


def kinds(run_id: str) -> list[str]:
    return [e["kind"] for e in store().events(run_id)]


def run_id_of(stdout: str) -> str:
    return stdout.split("LIVE run ")[1].split()[0]


def runs_line(run_id: str) -> str:
    listing = cli("runs", "--limit", "50")
    assert listing.returncode == 0, listing.stderr
    return next(line for line in listing.stdout.splitlines() if line.startswith(run_id))


UNDOABLE = """
- {id: one, action: rt.change, with: {name: one}}
- {id: boom, action: core.fail, needs: [one], with: {message: "false positive"}}
"""


# --- rollback: as careful as the run -------------------------------------------------


def test_rollback_asks_like_a_run_and_shows_its_calls_first(tmp_path: Path) -> None:
    done = cli("run", str(write(tmp_path, UNDOABLE)), "--yes", "--plain", "--quiet")
    assert done.returncode == 1, done.stdout + done.stderr
    run_id = run_id_of(done.stdout)

    refused = cli("rollback", run_id)
    assert refused.returncode == 1
    assert said(refused.stderr) == (
        "irbook: error: this rollback changes production (undoes: one); "
        "confirm in a terminal or pass --yes"
    )
    assert 'call rt:Undo {"Name": "one"}' in refused.stdout  # what it would have called
    assert "compensated" not in kinds(run_id)  # and nothing was undone

    rolled = cli("rollback", run_id, "--yes")
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert "✓ one: rt.undo" in rolled.stdout
    assert "rollback done: 1 undone" in rolled.stdout
    assert kinds(run_id).count("compensated") == 1


def test_dry_run_rollback_shows_the_planned_calls(tmp_path: Path) -> None:
    done = cli("run", str(write(tmp_path, UNDOABLE)), "--yes", "--plain", "--quiet")
    run_id = run_id_of(done.stdout)
    dry = cli("rollback", run_id, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "1. undo one  rt.undo  runs" in dry.stdout
    assert 'call rt:Undo {"Name": "one"}' in dry.stdout
    assert "DRY RUN rollback done: 1 would undo" in dry.stdout
    assert "rollback" not in kinds(run_id)  # a rehearsal is not a rollback of the run


def test_a_rollback_is_recorded_shown_and_not_repeated_unless_forced(tmp_path: Path) -> None:
    done = cli("run", str(write(tmp_path, UNDOABLE)), "--yes", "--plain", "--quiet")
    run_id = run_id_of(done.stdout)
    assert cli("rollback", run_id, "--yes").returncode == 0

    assert "failed, rolled back" in runs_line(run_id)
    shown = cli("runs", "show", run_id)
    assert f"run {run_id}: rt-test (live) failed, rolled back" in shown.stdout
    assert "  rollback: rolled back by cli:" in shown.stdout
    assert "(1 undone, 0 skipped)" in shown.stdout
    as_json = json.loads(cli("runs", "show", run_id, "--format", "json").stdout)
    assert as_json["rolled_back"]["outcome"] == "rolled back"
    assert as_json["run"]["state"] == "failed"  # the run's own verdict stays

    again = cli("rollback", run_id, "--yes")
    assert again.returncode == 1
    assert f"irbook: error: run {run_id} was rolled back already, by cli:" in again.stderr
    assert "pass --force to run its compensations again" in again.stderr
    assert kinds(run_id).count("compensated") == 1

    forced = cli("rollback", run_id, "--yes", "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert kinds(run_id).count("compensated") == 2


def test_an_auto_rollback_is_recorded_too(tmp_path: Path) -> None:
    done = cli("run", str(write(tmp_path, UNDOABLE, rollback="auto")), "--yes", "--plain")
    assert done.returncode == 1, done.stdout + done.stderr
    run_id = run_id_of(done.stdout)
    assert "failed, rolled back" in runs_line(run_id)
    assert "  rollback: rolled back by auto at " in cli("runs", "show", run_id).stdout
    again = cli("rollback", run_id, "--yes")
    assert again.returncode == 1
    assert "was rolled back already, by auto" in again.stderr


@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))
    for key, value in {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield url
    server.stop()


def iam(url: str) -> Any:
    import boto3

    return boto3.client(
        "iam",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def key_status(client: Any, key_id: str) -> str:
    keys = client.list_access_keys(UserName="svc-model")["AccessKeyMetadata"]
    return str(next(k["Status"] for k in keys if k["AccessKeyId"] == key_id))


def test_a_skipped_compensation_says_skipped_and_why(tmp_path: Path, moto: str) -> None:
    client = iam(moto)
    client.create_user(UserName="svc-model")
    leaked = client.create_access_key(UserName="svc-model")["AccessKey"]["AccessKeyId"]
    old = client.create_access_key(UserName="svc-model")["AccessKey"]["AccessKeyId"]
    client.update_access_key(UserName="svc-model", AccessKeyId=old, Status="Inactive")
    steps = f"""
    - id: old
      action: aws.iam.deactivate_access_key
      with: {{access_key_id: {old}, user_name: svc-model}}
    - id: leaked
      action: aws.iam.deactivate_access_key
      needs: [old]
      with: {{access_key_id: {leaked}, user_name: svc-model}}
    """
    done = cli("run", str(write(tmp_path, steps)), "--yes", "--plain", "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = run_id_of(done.stdout)
    assert key_status(client, leaked) == "Inactive"

    dry = cli("rollback", run_id, "--dry-run")
    assert (
        "2. undo old  aws.iam.activate_access_key  skipped: "
        "the key was already inactive before this step" in dry.stdout
    )
    rolled = cli("rollback", run_id, "--yes")
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert "✓ leaked: aws.iam.activate_access_key" in rolled.stdout
    assert (
        "- old: aws.iam.activate_access_key skipped: "
        "the key was already inactive before this step" in rolled.stdout
    )
    assert "✓ old" not in rolled.stdout
    assert "rollback done: 1 undone, 1 skipped (nothing to undo)" in rolled.stdout
    # the key that was inactive before the run stays inactive: nothing to give back
    assert key_status(client, old) == "Inactive"
    assert key_status(client, leaked) == "Active"


def test_a_rollback_that_changes_nothing_does_not_say_done(tmp_path: Path, moto: str) -> None:
    client = iam(moto)
    client.create_user(UserName="svc-model")
    old = client.create_access_key(UserName="svc-model")["AccessKey"]["AccessKeyId"]
    client.update_access_key(UserName="svc-model", AccessKeyId=old, Status="Inactive")
    steps = f"""
    - id: old
      action: aws.iam.deactivate_access_key
      with: {{access_key_id: {old}, user_name: svc-model}}
    """
    done = cli("run", str(write(tmp_path, steps)), "--yes", "--plain", "--quiet")
    run_id = run_id_of(done.stdout)
    # nothing to change in production: no confirmation needed, and none claimed
    rolled = cli("rollback", run_id)
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert "rollback changed nothing: 0 undone, 1 skipped (nothing to undo)" in rolled.stdout
    assert "rollback done" not in rolled.stdout
    assert key_status(client, old) == "Inactive"


def test_a_partial_rollback_says_so(tmp_path: Path, moto: str) -> None:
    client = iam(moto)
    client.create_user(UserName="svc-model")
    keys = [client.create_access_key(UserName="svc-model")["AccessKey"] for _ in range(2)]
    first, second = (k["AccessKeyId"] for k in keys)
    steps = f"""
    - id: first
      action: aws.iam.deactivate_access_key
      with: {{access_key_id: {first}, user_name: svc-model}}
    - id: second
      action: aws.iam.deactivate_access_key
      needs: [first]
      with: {{access_key_id: {second}, user_name: svc-model}}
    """
    done = cli("run", str(write(tmp_path, steps)), "--yes", "--plain", "--quiet")
    run_id = run_id_of(done.stdout)
    client.delete_access_key(UserName="svc-model", AccessKeyId=second)  # gone meanwhile
    rolled = cli("rollback", run_id, "--yes")
    assert rolled.returncode == 1, rolled.stdout + rolled.stderr
    assert "✗ second: failed: " in rolled.stdout
    assert (
        f"partially rolled back: 1 undone, 1 failed (second: error: access key {second} not found"
        in rolled.stdout
    )
    assert key_status(client, first) == "Active"
    assert "succeeded, partially rolled back" in runs_line(run_id)
    again = cli("rollback", run_id, "--yes")
    assert "was partially rolled back already" in again.stderr


# --- run states people can act on ----------------------------------------------------


def test_a_run_waiting_for_approval_is_listed_as_waiting(tmp_path: Path) -> None:
    proc = start_cli(
        "run", str(write(tmp_path, GATED.replace("TIMEOUT", "5m"))), "--yes", "--plain"
    )
    run_id, _ = wait_for_step(tmp_path, "awaiting-approval")
    line = runs_line(run_id)
    assert "waiting for approval (gate since " in line and "timeout 5m)" in line
    shown = cli("runs", "show", run_id).stdout
    assert "waiting for approval of step 'gate' since" in shown
    assert f"irbook approve {run_id}" in shown

    assert cli("cancel", run_id).returncode == 0
    proc.communicate(timeout=60)


def test_sigterm_cancels_a_run_like_ctrl_c(tmp_path: Path) -> None:
    path = write(tmp_path, GATED.replace("TIMEOUT", "5m"))
    proc = start_cli("run", str(path), "--yes", "--plain")
    run_id, _ = wait_for_step(tmp_path, "awaiting-approval")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, out + err
    assert "Traceback" not in out + err
    assert f"cancelled (SIGTERM): run {run_id} is marked cancelled" in out
    record = store().run(run_id)
    assert record["state"] == "cancelled"
    assert record["message"] == "cancelled by SIGTERM"
    assert steps_by_id(store(), run_id)["gate"]["state"] == "cancelled"
    assert prefect_state(record["flow_run_id"]).state.type.value == "CANCELLED"
    assert runs_line(run_id).split()[4] == "cancelled"


def test_irbook_cancel_ends_a_run_whose_process_was_killed(tmp_path: Path) -> None:
    proc = start_cli(
        "run", str(write(tmp_path, GATED.replace("TIMEOUT", "5m"))), "--yes", "--plain"
    )
    run_id, _ = wait_for_step(tmp_path, "awaiting-approval")
    proc.kill()  # SIGKILL: nothing in the process can clean up
    proc.communicate(timeout=30)
    assert store().run(run_id)["state"] == "running"
    stuck = cli("approve", run_id)  # what the on-call tried first: it points at the way out
    assert stuck.returncode == 1
    assert stuck.stderr.strip().endswith(
        f"which is gone; nothing would act on an approval: end it with irbook cancel {run_id}"
    )

    done = cli("cancel", run_id, "--by", "alice", "--comment", "false positive")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"cancelled run {run_id} as alice"
    record = store().run(run_id)
    assert record["state"] == "cancelled"
    assert record["message"] == "cancelled by alice: false positive"
    assert steps_by_id(store(), run_id)["gate"]["state"] == "cancelled"
    assert prefect_state(record["flow_run_id"]).state.type.value == "CANCELLED"
    requested = [e for e in store().events(run_id) if e["kind"] == "cancel-requested"]
    assert requested[0]["detail"]["by"] == "alice"

    again = cli("cancel", run_id)
    assert again.returncode == 1
    assert said(again.stderr) == (
        f"irbook: error: run {run_id} is cancelled already; nothing to cancel"
    )
    approve = cli("approve", run_id)
    assert approve.returncode == 6  # too late
    assert approve.stdout == f"too late: run {run_id} is cancelled, not waiting\n"


def test_cancel_stops_the_irbook_run_still_waiting(tmp_path: Path) -> None:
    proc = start_cli(
        "run", str(write(tmp_path, GATED.replace("TIMEOUT", "5m"))), "--yes", "--plain"
    )
    run_id, _ = wait_for_step(tmp_path, "awaiting-approval")
    assert cli("cancel", run_id).returncode == 0
    out, err = proc.communicate(timeout=60)  # not five minutes: the process is told
    assert proc.returncode == 143, out + err
    record = store().run(run_id)
    assert record["state"] == "cancelled"
    assert record["message"].startswith("cancelled by cli:")
    rows = steps_by_id(store(), run_id)
    assert rows["gate"]["state"] == "cancelled"
    assert rows.get("act", {}).get("state") != "succeeded"  # the gated step never ran


def test_cancel_of_a_run_in_a_receiver_acts_on_nothing_after(tmp_path: Path) -> None:
    """A run in `irbook serve`'s process has no `irbook run` to signal: once cancelled,
    its approval timeout (on_timeout: approve) must not start the gated change."""
    import threading

    from tests.irbook_flows.test_runs import run
    from tests.support import runtime_actions as actions

    actions.reset()
    steps = """
    - id: gate
      action: core.approval
      with: {prompt: go?}
      approval: {timeout: 15s, on_timeout: approve}
    - {id: act, action: rt.change, needs: [gate], with: {name: act}}
    """
    # 15 s: `irbook cancel` (a new process) must land before the timeout; with 4 s a
    # loaded machine let the timeout approve first and the test failed for that alone
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(run(write(tmp_path, steps))))
    thread.start()
    run_id, _ = wait_for_step(tmp_path, "awaiting-approval")
    assert cli("cancel", run_id).returncode == 0
    thread.join(timeout=120)
    outcome, _store = result[0]
    assert outcome.state == "cancelled"
    assert actions.CALLS == []
    assert store().run(run_id)["state"] == "cancelled"
    assert steps_by_id(store(), run_id).get("act", {}).get("state") != "succeeded"


def test_a_closed_stdout_does_not_stop_the_response(tmp_path: Path) -> None:
    steps = """
    - {id: deny, action: rt.change, with: {name: deny}}
    - {id: wait, action: core.sleep, needs: [deny], with: {duration: 2s}}
    - {id: rotate, action: rt.change, needs: [wait], with: {name: rotate}}
    - {id: tell, action: core.note, needs: [rotate], with: {text: done}}
    """
    proc = start_cli("run", str(write(tmp_path, steps)), "--yes", "--plain", "--quiet")
    assert proc.stdout is not None
    head = [proc.stdout.readline() for _ in range(3)]  # `| head -3`
    proc.stdout.close()
    run_id = head[0].split("LIVE run ")[1].split()[0]
    proc.wait(timeout=120)
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stderr.close()
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert proc.returncode == 0, err
    record = store().run(run_id)
    assert record["state"] == "succeeded", record["message"]
    rows = steps_by_id(store(), run_id)
    assert [rows[s]["state"] for s in ("deny", "wait", "rotate", "tell")] == ["succeeded"] * 4


def test_a_long_failure_text_is_one_line_and_kept_whole(tmp_path: Path) -> None:
    page = "<html><head><title>500 Internal Server Error</title></head><body>" + "x" * 1500
    steps = f"""
    - id: ticket
      action: core.fail
      on_failure: continue
      with: {{message: "jira: HTTP 500: {page}</body></html>"}}
    - {{id: after, action: core.note, with: {{text: fine}}}}
    """
    done = cli("run", str(write(tmp_path, steps)), "--yes", "--plain", "--quiet")
    assert done.returncode == 3, done.stdout + done.stderr  # partial
    assert max(len(line) for line in done.stdout.splitlines()) < 300, done.stdout
    run_id = run_id_of(done.stdout)
    shown = cli("runs", "show", run_id).stdout
    ticket = next(line for line in shown.splitlines() if line.startswith("  ticket:"))
    assert ticket.startswith("  ticket: core.fail failed (jira: HTTP 500: <html><head>")
    assert ticket.endswith("…)") and len(ticket) < 250
    assert f"in full: irbook runs show {run_id} --format json" in shown
    full = json.loads(cli("runs", "show", run_id, "--format", "json").stdout)
    reason = {s["step_id"]: s["reason"] for s in full["steps"]}["ticket"]
    assert reason.endswith("x" * 100 + "</body></html>")


def test_step_table_survives_a_closed_pipe() -> None:
    import io

    from irbook.cli.common import StepTable, Terminal

    class Closed(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    out = Terminal(Closed())
    table = StepTable(["deny"], out, live=False)
    table.event("step", "deny", "running", "")  # no exception: the run goes on
    assert out.broken
