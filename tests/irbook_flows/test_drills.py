"""Drills end to end: the compiled flow in dry-run against the real local Prefect API,
refereed by scenarios (injects, approvers, outputs) and judged by their expectations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from irbook.drill.result import DrillResult, StepRecord
from irbook.drill.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "playbooks" / "leaked-model-key.yaml"
ALERT = ROOT / "runbooks" / "drills" / "alerts" / "guardduty-exfil.json"


def scenario(tmp_path: Path, body: str, *, inputs: str = "{endpoint_name: fraud-scoring}") -> Path:
    path = tmp_path / "drill.yaml"
    path.write_text(
        "apiVersion: irbook/v1\nkind: Drill\nmetadata: {id: t, title: Test drill}\n"
        f"playbook: {PLAYBOOK}\nalert: {{file: {ALERT}}}\ninputs: {inputs}\n" + body
    )
    return path


def drill(tmp_path: Path, body: str, **kw: Any) -> DrillResult:
    from irbook_flows.drill import run_drill

    return run_drill(load_scenario(str(scenario(tmp_path, body, **kw))))


def steps(result: DrillResult) -> dict[str, StepRecord]:
    return {s.id: s for s in result.steps}


def failed(result: DrillResult) -> dict[str, str]:
    return {e.name: e.detail for e in result.expectations if not e.ok}


def test_throttled_twice_then_approved_after_four_minutes(tmp_path: Path) -> None:
    result = drill(
        tmp_path,
        "injects:\n  - {at_step: revoke, fail: 2, error: Throttling}\n"
        "approvers:\n  - {step: revoke, decision: approve, after: 4m, by: alice}\n"
        "expect: {outcome: succeeded, contained_within: 10m,"
        " calls_include: [iam:UpdateAccessKey]}\n",
    )
    assert result.outcome == "succeeded" and result.passed, failed(result)
    revoke = steps(result)["revoke"]
    assert revoke.attempts == 3 and revoke.state == "succeeded"
    assert revoke.approval is not None and revoke.approval.by == "alice"
    assert revoke.approval.decided_at == 240.0
    # three attempts of two planned calls (2 s each) and two retry delays of 2 s
    assert (revoke.start, revoke.end) == (240.0, 250.0)
    # snapshot and tag-each need revoke: they start when it ended, on drill time
    assert steps(result)["snapshot"].start == 250.0
    kinds = [m.kind for m in result.markers]
    assert kinds.count("inject") == 2 and kinds.count("retry") == 2
    assert result.contained_at is not None and 250.0 < result.contained_at < 600.0
    # the flow really ran: Prefect's record of it is a drill, in dry-run, completed
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(result.flow_run_id)  # type: ignore[arg-type]
    assert flow_run.name.startswith("DRILL t · ")
    assert {"drill", "dry-run", "drill:t"} <= set(flow_run.tags)
    assert flow_run.state is not None and flow_run.state.is_completed()


def test_more_failures_than_retries_fail_the_run_and_say_which_expectation_broke(
    tmp_path: Path,
) -> None:
    result = drill(
        tmp_path,
        "injects:\n  - {at_step: revoke, fail: 3, error: AccessDenied}\n"
        "approvers:\n  - {step: revoke, decision: approve, by: alice}\n"
        "expect:\n  outcome: succeeded\n  steps_run: [snapshot]\n  contained_within: 10m\n",
    )
    assert result.outcome == "failed" and not result.passed
    by = steps(result)
    assert by["revoke"].state == "failed" and by["revoke"].attempts == 3
    assert "AccessDenied" in by["revoke"].reason
    assert by["snapshot"].state == "skipped" and by["snapshot"].start is None
    assert failed(result) == {
        "outcome": "the run ended failed, expected succeeded",
        "steps_run": "'snapshot' skipped (upstream step 'revoke' failed)",
        "contained_within": "not contained: 'revoke' failed (" + by["revoke"].reason + ")",
    }


def test_a_rejection_stops_containment(tmp_path: Path) -> None:
    result = drill(
        tmp_path,
        "approvers:\n  - {step: revoke, decision: reject, after: 2m, by: bob, comment: not ours}\n"
        "expect: {outcome: rejected, steps_rejected: [revoke],"
        " steps_skipped: [snapshot, tag-each, notify]}\n",
    )
    assert result.passed, failed(result)
    revoke = steps(result)["revoke"]
    assert revoke.state == "rejected" and revoke.start is None
    assert revoke.approval is not None and revoke.approval.decision == "rejected"
    assert revoke.approval.decided_at == 120.0 and "not ours" in revoke.reason
    assert result.contained_at is None


def test_no_approver_waits_out_the_gate_timeout_in_drill_time(tmp_path: Path) -> None:
    late = drill(
        tmp_path,
        "approvers:\n  - {step: revoke, decision: approve, after: 20m, by: carol}\n"
        "expect: {outcome: rejected}\n",
    )
    revoke = steps(late)["revoke"]
    assert late.passed and revoke.state == "rejected"
    assert revoke.approval is not None and revoke.approval.how == "timeout"
    assert revoke.approval.decided_at == 900.0  # the playbook's 15m gate, not 20m
    assert "carol would answer after 20m" in revoke.approval.comment
    assert [m.kind for m in late.markers if m.step == "revoke"] == ["approval", "timeout"]


def test_a_delay_past_the_step_timeout_times_out_every_attempt(tmp_path: Path) -> None:
    slow = drill(
        tmp_path,
        "injects:\n  - {at_step: revoke, delay: 45s}\n"
        "approvers:\n  - {step: revoke, decision: approve, by: alice}\n",
    )
    revoke = steps(slow)["revoke"]
    assert revoke.state == "failed" and revoke.attempts == 3
    assert "timed out after 30s" in revoke.reason
    assert revoke.end is not None and revoke.start is not None
    assert revoke.end - revoke.start == 3 * 30 + 2 * 2  # three timeouts, two retry delays


def test_a_short_delay_stretches_the_step_on_the_clock(tmp_path: Path) -> None:
    result = drill(
        tmp_path,
        "injects:\n  - {at_step: revoke, delay: 25s}\n"
        "approvers:\n  - {step: revoke, decision: approve, after: 1m, by: alice}\n"
        "expect: {contained_within: 1m10s}\n",
    )
    revoke = steps(result)["revoke"]
    assert (revoke.start, revoke.end) == (60.0, 85.0)
    assert failed(result)["contained_within"].startswith("contained at 1m")


def test_an_outage_of_a_namespace_fails_every_step_using_it(tmp_path: Path) -> None:
    result = drill(
        tmp_path,
        "injects:\n  - {outage: jira, error: 503 Service Unavailable}\n"
        "approvers:\n  - {step: revoke, decision: approve, by: alice}\n",
    )
    by = steps(result)
    assert by["ticket"].state == "failed"
    assert "503 Service Unavailable: jira is down" in by["ticket"].reason
    assert by["ticket"].injected == ["outage of jira"]
    assert by["revoke"].state == "succeeded"  # the key is revoked without a ticket


def test_outputs_of_the_scenario_flow_into_later_steps(tmp_path: Path) -> None:
    result = drill(
        tmp_path,
        "outputs:\n  ticket: {key: SEC-4242, url: 'https://jira.example/browse/SEC-4242'}\n"
        "approvers:\n  - {step: revoke, decision: approve, by: alice}\n",
    )
    from irbook.runs import RunStore

    record = RunStore().run(result.run_id) or {}
    assert record["outputs"]["ticket"] == "SEC-4242"
    notify = next(r for r in RunStore().steps(result.run_id) if r["step_id"] == "notify")
    assert "SEC-4242" in json.dumps(notify["params"])


def test_notes_sit_on_the_timeline_as_data(tmp_path: Path) -> None:
    result = drill(
        tmp_path,
        "injects:\n  - {at: 90s, note: 'Legal asks ${{ inputs.access_key_id }} <b>'}\n"
        "approvers:\n  - {step: revoke, decision: approve, by: alice}\n",
    )
    notes = [m for m in result.markers if m.kind == "note"]
    assert [(m.at, m.text) for m in notes] == [(90.0, "Legal asks ${{ inputs.access_key_id }} <b>")]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ),
        cwd=ROOT,
    )


SHIPPED = sorted((ROOT / "runbooks" / "drills").glob("*.yaml"))


def test_every_shipped_playbook_has_a_drill() -> None:
    import yaml

    played = {yaml.safe_load(p.read_text())["playbook"] for p in SHIPPED}
    books = {
        yaml.safe_load(p.read_text())["metadata"]["id"] for p in (ROOT / "playbooks").glob("*.yaml")
    }
    assert books <= played, f"playbooks without a drill: {sorted(books - played)}"


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_drills_pass_through_the_cli(path: Path, tmp_path: Path) -> None:
    report = tmp_path / "out" / "report"
    done = cli("drill", str(path), "--report", str(report))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"DRILL {path.stem}: PASSED" in done.stdout
    assert (tmp_path / "out" / "report.md").is_file()
    assert (tmp_path / "out" / "report.html").read_text().count("<svg") >= 1
    import yaml

    fmt = (yaml.safe_load(path.read_text())["alert"] or {}).get("from")
    if fmt is not None:  # the report says which vendor payload started the run
        report_md = (tmp_path / "out" / "report.md").read_text()
        assert f"| format | raw {fmt} payload (file " in report_md
        assert "| trigger | matches trigger " in report_md
    assert "Traceback" not in done.stderr


def test_a_failing_drill_exits_1_with_the_broken_expectation(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        "approvers:\n  - {step: revoke, decision: reject, by: bob}\nexpect: {outcome: succeeded}\n",
    )
    done = cli("drill", str(path))
    assert done.returncode == 1
    assert "DRILL t: FAILED" in done.stdout
    assert "✗ expect outcome: succeeded — the run ended rejected, expected succeeded" in done.stdout


def test_a_bad_scenario_is_one_located_line_and_exit_1(tmp_path: Path) -> None:
    path = scenario(tmp_path, "approvers:\n  - {step: revok, decision: approve}\n")
    done = cli("drill", str(path))
    assert done.returncode == 1
    assert f"{path}:8:12: error: unknown step 'revok' (did you mean 'revoke'?)" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unwritable_report_path_is_one_line_after_the_summary(tmp_path: Path) -> None:
    path = scenario(tmp_path, "approvers:\n  - {step: revoke, decision: approve, by: alice}\n")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = cli("drill", str(path), "--report", str(blocker / "report"))
    assert done.returncode == 1
    assert "DRILL t: PASSED" in done.stdout  # the drill ran and said so before the error
    from irbook.policy import NOTICE

    lines = [x for x in done.stderr.splitlines() if not x.startswith(NOTICE)]
    assert lines[0].startswith(f"irbook: error: --report {blocker / 'report'}: cannot write")
    assert "Traceback" not in done.stderr and len(lines) == 1
