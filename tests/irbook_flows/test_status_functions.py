"""success(), failure() and always() in a step's `if`: the planner (`irbook plan`), a dry
run, a live run (`irbook run`) and a drill (`irbook drill`) decide every step the same way
for the same playbook, with an injected failure and with a rejected approval, and the
run's verdict stays failed (or rejected) though the step that reports it succeeded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# revoke fails when asked to (core.fail fails in every mode, the planner included);
# contain waits for an approval nobody gives (1s, then rejected).
PLAYBOOK = """\
apiVersion: irbook/v1
kind: Playbook
metadata: {id: status-fns, title: Status functions}
inputs:
  fail_revoke: {type: boolean, default: false}
  gate: {type: boolean, default: false}
steps:
  - id: ticket
    action: core.note
    with: {text: ticket opened}
  - id: revoke
    action: core.fail
    needs: [ticket]
    if: ${{ inputs.fail_revoke }}
    with: {message: "AccessDenied: not allowed to deactivate the key"}
  - id: contain
    action: core.note
    needs: [ticket]
    if: ${{ inputs.gate }}
    approval: {required: true, timeout: 1s, on_timeout: reject}
    with: {text: contained}
  - id: snapshot
    action: core.note
    needs: [revoke, contain]
    with: {text: snapshot taken}
  - id: page
    action: core.note
    needs: [snapshot]
    if: ${{ failure() }}
    with: {text: "containment failed or was rejected"}
  - id: page-if-gated
    action: core.note
    needs: [contain]
    if: ${{ failure() && inputs.gate }}
    with: {text: "the approval was refused"}
  - id: close
    action: core.note
    needs: [revoke, contain]
    if: ${{ always() }}
    with: {text: run over}
  - id: all-good
    action: core.note
    needs: [snapshot]
    if: ${{ success() }}
    with: {text: all contained}
"""

FAILED = {
    "ticket": "succeeded",
    "revoke": "failed",
    "contain": "skipped",
    "snapshot": "skipped",
    "page": "succeeded",
    "page-if-gated": "skipped",
    "close": "succeeded",
    "all-good": "skipped",
}
REJECTED = {
    "ticket": "succeeded",
    "revoke": "skipped",
    "contain": "rejected",
    "snapshot": "skipped",
    "page": "succeeded",
    "page-if-gated": "succeeded",
    "close": "succeeded",
    "all-good": "skipped",
}
CLEAN = {
    "ticket": "succeeded",
    "revoke": "skipped",
    "contain": "skipped",
    "snapshot": "succeeded",
    "page": "skipped",
    "page-if-gated": "skipped",
    "close": "succeeded",
    "all-good": "succeeded",
}
PLANNED_STATE = {"run": "succeeded", "skip": "skipped", "fail": "failed", "blocked": "skipped"}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def playbook(tmp_path: Path) -> Path:
    path = tmp_path / "status-fns.yaml"
    path.write_text(PLAYBOOK)
    return path


def params(case: str) -> list[str]:
    return {
        "failed": ["--param", "fail_revoke=true"],
        "rejected": ["--param", "gate=true"],
        "clean": [],
    }[case]


def planned(path: Path, case: str) -> dict[str, str]:
    done = cli("plan", str(path), "--format", "json", *params(case))
    plan = json.loads(done.stdout)
    return {s["id"]: PLANNED_STATE[s["status"]] for s in plan["steps"]}


def last_run() -> tuple[dict[str, object], dict[str, str], dict[str, str]]:
    """The newest run's record, its step states and reasons (the CLI's own store)."""
    from irbook.runs import RunStore

    store = RunStore()
    run = store.recent_runs(1)[0]
    states: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for row in store.steps(str(run["id"])):
        states[row["step_id"]] = row["state"]
        reasons[row["step_id"]] = row.get("reason") or ""
    return run, states, reasons


def ran(path: Path, case: str, *, dry_run: bool) -> tuple[dict[str, str], dict[str, str], str]:
    mode = ["--dry-run", "--ask-approvals"] if dry_run else []
    done = cli("run", str(path), "--yes", "--plain", "--quiet", *mode, *params(case))
    assert "Traceback" not in done.stderr, done.stderr
    run, states, reasons = last_run()
    expected_exit = {"failed": 1, "rejected": 2, "clean": 0}[case]
    assert done.returncode == expected_exit, done.stdout + done.stderr
    return states, reasons, str(run["state"])


def drilled(path: Path, case: str, tmp_path: Path) -> tuple[dict[str, str], str, str]:
    inputs = {"failed": "{fail_revoke: true}", "rejected": "{gate: true}", "clean": "{}"}[case]
    outcome = {"failed": "failed", "rejected": "rejected", "clean": "succeeded"}[case]
    scenario = tmp_path / f"drill-{case}.yaml"
    scenario.write_text(
        "apiVersion: irbook/v1\nkind: Drill\n"
        f"metadata: {{id: status-{case}, title: Status functions}}\n"
        f"playbook: {path}\n"
        "alert: {normalized: {id: drill-1, source: manual, title: Drill}}\n"
        f"inputs: {inputs}\n"
        f"expect: {{outcome: {outcome}}}\n"
    )
    report = tmp_path / f"report-{case}"
    done = cli("drill", str(scenario), "--report", str(report))
    assert done.returncode == 0, done.stdout + done.stderr
    _, states, _ = last_run()
    return states, done.stdout, (tmp_path / f"report-{case}.md").read_text()


@pytest.mark.parametrize(
    ("case", "expected", "verdict"),
    [
        ("failed", FAILED, "failed"),
        ("rejected", REJECTED, "rejected"),
        ("clean", CLEAN, "succeeded"),
    ],
)
def test_plan_dry_run_live_run_and_drill_agree(
    playbook: Path, tmp_path: Path, case: str, expected: dict[str, str], verdict: str
) -> None:
    if case != "rejected":  # the planner assumes approvals are given; it cannot know a "no"
        assert planned(playbook, case) == expected
    dry, _, dry_state = ran(playbook, case, dry_run=True)
    assert dry == expected
    live, reasons, live_state = ran(playbook, case, dry_run=False)
    assert live == expected
    # the step that reported the failure succeeded; the run still says what happened
    assert dry_state == live_state == verdict
    drill, summary, report = drilled(playbook, case, tmp_path)
    assert drill == expected
    if case == "failed":
        assert reasons["page"] == "ran: failure() — step 'revoke' failed"
        assert "(ran: failure() — step 'revoke' failed)" in summary
        assert "ran: failure() — step 'revoke' failed" in report
        assert "ran: always() — step 'revoke' failed" in report
    if case == "rejected":
        assert reasons["page-if-gated"] == "ran: failure() — step 'contain' rejected"
        assert "ran: failure() — step 'contain' rejected" in report


def test_plan_says_why_a_failure_step_runs(playbook: Path) -> None:
    done = cli("plan", str(playbook), *params("failed"))
    assert done.returncode == 4, done.stdout + done.stderr  # the run fails: revoke failed
    text = textwrap.dedent(done.stdout)
    assert "page  core.note  [read]  runs\n       why: failure() — step 'revoke' failed" in text
    assert "all-good  core.note  [read]  skipped" in text
