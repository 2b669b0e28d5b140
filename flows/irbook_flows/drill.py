"""`irbook drill SCENARIO`: the real compiled flow, in dry-run, refereed by a scenario.

The run is an ordinary Prefect flow run (tagged `drill`, named "DRILL <scenario> · ..."),
so the facilitator can follow it in the Prefect UI; no mutating call leaves the machine.
Approval waits and retry delays are not waited: they count on the drill clock
(irbook.drill.clock) and the report shows them in drill time.
"""

from __future__ import annotations

import time
from typing import Any

from irbook.drill.clock import DrillController
from irbook.drill.expect import containment_time, evaluate
from irbook.drill.result import DrillResult, StepRecord
from irbook.drill.scenario import LoadedScenario, param_text
from irbook.model.base import format_duration
from irbook.policy import Policy
from irbook.runs import verdict_line

EXIT_PASSED, EXIT_FAILED = 0, 1


def run_drill(loaded: LoadedScenario, rules: Policy | None = None) -> DrillResult:
    """Run one scenario to its end and judge it; needs the Prefect API (ensure_api).

    The result is redacted of the run's secret inputs: the scenario's injects and notes
    are free text, and a facilitator may well paste a secret into one."""
    from irbook.plan import build_plan, redact
    from irbook.registry import REGISTRY
    from irbook.runs import RunStore
    from irbook_flows.flow import execute, quiet_console
    from irbook_flows.server import ui_url
    from irbook_flows.start import start_run

    drill = loaded.drill
    playbook = loaded.playbook.playbook
    REGISTRY.load_all()
    params = {k: param_text(v) for k, v in drill.inputs.items()}
    plan = build_plan(playbook, loaded.alert, params)  # resolves and checks the inputs
    quiet_console()
    store = RunStore()
    controller = DrillController(drill, playbook)
    wall = time.time()
    outcome = start_run(
        playbook,
        loaded.alert,
        mode="dry-run",
        started_by=f"drill:{drill.metadata.id}",
        store=store,
        plan=plan,
        execute=execute,
        tags=["drill", f"drill:{drill.metadata.id}"],
        drill=controller,
        policy=rules,
    )
    assert outcome is not None  # executed here, to its end
    run_id = outcome.run_id
    compensation = {
        s.id: s.compensation or (f"irreversible: {s.irreversible}" if s.irreversible else "")
        for s in plan.steps
    }
    steps, markers = controller.timeline(store.steps(run_id), compensation)
    contained = containment_time(steps)
    ends = [s.end for s in steps if s.end is not None]
    ends += [s.approval.decided_at for s in steps if s.approval is not None]
    url = ui_url()
    result = DrillResult(
        scenario_path=loaded.path,
        scenario_id=drill.metadata.id,
        title=drill.metadata.title or drill.metadata.id,
        facilitator=drill.metadata.facilitator,
        description=drill.metadata.description,
        playbook_id=playbook.metadata.id,
        playbook_title=playbook.metadata.title,
        playbook_path=loaded.playbook.path,
        alert=_alert_summary(loaded),
        run_id=run_id,
        flow_run_id=outcome.flow_run_id,
        prefect_url=f"{url}/runs/flow-run/{outcome.flow_run_id}"
        if url and outcome.flow_run_id
        else None,
        outcome=outcome.state,
        message=outcome.message,
        steps=steps,
        markers=markers,
        expectations=evaluate(drill.expect, steps, outcome.state, contained),
        contained_at=contained,
        duration=max(ends, default=0.0),
        lint=[str(w) for w in loaded.playbook.warnings],
        injects=[i.describe() for i in drill.injects],
        approvers=[
            f"{a.step}: {a.decision} after {format_duration(a.after)} by {a.by}"
            for a in drill.approvers
        ]
        + [
            f"{step}: {by} REFUSED after {format_duration(wait)}: {why}"
            for step, by, why, wait in controller.refusals
        ],
        started_at=wall,
    )
    redacted: DrillResult = redact(result, plan.secrets)
    return redacted


def _alert_summary(loaded: LoadedScenario) -> dict[str, Any]:
    """What the report says of the alert: for a raw payload, its format and the trigger it
    matched too (the path from the vendor's payload to this run)."""
    alert = loaded.alert
    out: dict[str, Any] = {
        "source": alert.source,
        "id": alert.id,
        "title": alert.title,
        "severity": alert.severity,
        "type": alert.type,
    }
    if loaded.alert_format is not None:
        ref = loaded.drill.alert
        where = f"file {ref.file}" if ref.file is not None else "inline"
        out["format"] = f"raw {loaded.alert_format} payload ({where})"
        if loaded.trigger is not None:
            out["trigger"] = f"matches trigger {loaded.trigger} of the playbook"
    return out


def _when(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(seconds)


def summary(result: DrillResult) -> str:
    """One screen: the verdict, each step on drill time, each expectation."""
    verdict = "PASSED" if result.passed else "FAILED"
    lines = [
        f"DRILL {result.scenario_id}: {verdict} — playbook {result.playbook_id} "
        f"{verdict_line(result.outcome, result.message)}",
    ]
    width = max((len(s.id) for s in result.steps), default=4)
    for step in result.steps:
        lines.append(_step_line(step, width))
    for refused in (m for m in result.markers if m.kind == "refused"):
        lines.append(f"  refused at {_when(refused.at)} ({refused.step}): {refused.text[:160]}")
    for note in (m for m in result.markers if m.kind == "note"):
        lines.append(f"  note at {_when(note.at)}: {note.text[:100]}")
    contained = (
        f"contained at {_when(result.contained_at)}"
        if result.contained_at is not None
        else "not contained"
    )
    lines.append(f"  {contained}; drill time {_when(result.duration)}")
    for check in result.expectations:
        mark = "✓" if check.ok else "✗"
        line = f"  {mark} expect {check.name}: {check.expected}"
        if not check.ok:
            line += f" — {check.detail}"
        lines.append(line)
    if not result.expectations:
        lines.append("  (no expectations in the scenario)")
    if result.prefect_url:
        lines.append(f"  Prefect: {result.prefect_url}")
    return "\n".join(lines)


def _step_line(step: StepRecord, width: int) -> str:
    span = f"{_when(step.start)}→{_when(step.end)}" if step.start is not None else ""
    extra = []
    if step.attempts > 1:
        extra.append(f"{step.attempts} attempts")
    if step.approval is not None:
        a = step.approval
        extra.append(f"{a.decision} by {a.by} at {_when(a.decided_at)}")
    if step.reason:  # a succeeded step has one when a status function ran it
        extra.append(step.reason[:80])
    tail = f"  ({'; '.join(extra)})" if extra else ""
    return f"  {step.id:<{width}}  {step.state:<9} {span:<14}{tail}"
