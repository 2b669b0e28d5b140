"""A property: for small generated playbooks (needs, `if` with status functions,
for_each, on_failure, approval gates, steps with and without AWS calls) and chosen
outcomes (which steps fail, which approvals are refused), the planner's predicted step
states and API calls are the dry run's and the drill's.

The planner assumes approvals are given, so it is compared when none is refused; the dry
run (the compiled flow waiting for decisions as a live run does) and the drill are
compared always. Nobody decides the gates: each times out after 1s (drill time in the
drill) and follows its on_timeout, approve or reject. Failures come from core.fail, which
fails in every mode, the planner included.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PLANNED_STATE = {"run": "succeeded", "skip": "skipped", "fail": "failed", "blocked": "skipped"}
CONDITIONS = (
    None,
    "${{ inputs.flag }}",
    "${{ success() }}",
    "${{ failure() }}",
    "${{ always() }}",
    "${{ failure() || inputs.flag }}",
    "${{ !failure() }}",
)
NEEDS_UPSTREAM = {"${{ failure() }}", "${{ failure() || inputs.flag }}", "${{ !failure() }}"}


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(min_value=2, max_value=5))
    steps = []
    for i in range(count):
        earlier = [f"s{j}" for j in range(i)]
        needs = sorted(draw(st.sets(st.sampled_from(earlier), max_size=2))) if earlier else []
        cond = draw(st.sampled_from(CONDITIONS))
        if cond in NEEDS_UPSTREAM and not needs:
            cond = None  # failure() with no needs is a validation error
        steps.append(
            {
                "id": f"s{i}",
                "fails": draw(st.booleans()),
                "needs": needs,
                "if": cond,
                "on_failure": draw(st.sampled_from([None, "continue", "abort"])),
                "gate": draw(st.sampled_from([None, "approve", "reject"])),
                "aws": draw(st.booleans()),
                "for_each": draw(st.sampled_from([None, [], ["alice"], ["alice", "bob"]])),
            }
        )
    # One gate at most: a second approval that times out right after a first one crashes
    # the flow in Prefect's pause ("Cannot pause flows that are not currently running"),
    # in every mode that waits; reported separately, not this property's subject.
    gated = [s for s in steps if s["gate"] is not None]
    for extra in gated[1:]:
        extra["gate"] = None
    return {"steps": steps, "flag": draw(st.booleans())}


def playbook_yaml(case: dict[str, Any]) -> str:
    lines = [
        "apiVersion: irbook/v1",
        "kind: Playbook",
        "metadata: {id: prop, title: Property}",
        "inputs:",
        "  flag: {type: boolean, default: false}",
        "steps:",
    ]
    for s in case["steps"]:
        lines.append(f"  - id: {s['id']}")
        who = "'${{ item }}'" if s["for_each"] is not None else "ml-svc"
        if s["fails"]:
            lines += ["    action: core.fail", "    with: {message: injected}"]
        elif s["aws"]:  # planned calls that depend on the item
            lines += [
                "    action: aws.iam.deactivate_access_key",
                f"    with: {{access_key_id: AKIAIOSFODNN7EXAMPLE, user_name: {who}}}",
            ]
        else:
            lines += ["    action: core.note", f"    with: {{text: {who}}}"]
        if s["for_each"] is not None:
            lines.append(f"    for_each: {json.dumps(s['for_each'])}")
        if s["needs"]:
            lines.append(f"    needs: [{', '.join(s['needs'])}]")
        if s["if"] is not None:
            lines.append(f"    if: {json.dumps(s['if'])}")
        if s["on_failure"] is not None:
            lines.append(f"    on_failure: {s['on_failure']}")
        if s["gate"] is not None:  # nobody decides: the timeout does, the same in every mode
            lines.append(f"    approval: {{required: true, timeout: 1s, on_timeout: {s['gate']}}}")
    return "\n".join(lines) + "\n"


def planned(path: Path, flag: bool) -> tuple[dict[str, str], dict[str, list[Any]]]:
    """The planner's step states, and each step's calls (item by item) where it has any."""
    from irbook.loader import load_playbook
    from irbook.plan import build_plan

    plan = build_plan(load_playbook(str(path)).playbook, None, {"flag": str(flag).lower()})
    calls = {s.id: [c.as_dict() for c in s.calls] for s in plan.steps if s.status == "run"}
    return {s.id: PLANNED_STATE[s.status] for s in plan.steps}, {
        k: v for k, v in calls.items() if v
    }


def recorded_calls(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The calls each step was to make, item by item, as the run record has them."""
    calls: dict[str, list[Any]] = {}
    for row in sorted(rows, key=lambda r: (r["step_id"], r["item"])):
        if row["state"] != "skipped" and row.get("planned_calls"):
            calls.setdefault(row["step_id"], []).extend(row["planned_calls"])
    return calls


def dry_run(path: Path, case: dict[str, Any]) -> tuple[dict[str, str], dict[str, list[Any]]]:
    from irbook.loader import load_playbook
    from irbook.plan import build_plan, manual_alert
    from irbook.registry import NoClients
    from irbook.runs import RunStore
    from irbook_flows.engine import RunSpec
    from irbook_flows.flow import execute, quiet_console

    quiet_console()
    playbook = load_playbook(str(path)).playbook
    plan = build_plan(playbook, None, {"flag": str(case["flag"]).lower()})
    store = RunStore()
    run_id = store.create_run_for(plan, dry_run=True, started_by="property")
    spec = RunSpec(
        run_id=run_id,
        playbook=playbook,
        alert=manual_alert(),
        inputs=plan.inputs,
        dry_run=True,
        started_by="property",
        store=store,
        clients=NoClients(),
        ask_approvals=True,  # wait for a decision, as a live run does, instead of simulating
    )
    execute(spec)
    rows = store.steps(run_id)
    states: dict[str, str] = {}
    for row in rows:  # a for_each step's rows must agree, or its step has no one state
        states[row["step_id"]] = (
            row["state"] if states.get(row["step_id"], row["state"]) == row["state"] else "mixed"
        )
    return states, recorded_calls(rows)


def drilled(
    path: Path, case: dict[str, Any], folder: Path
) -> tuple[dict[str, str], dict[str, list[str]]]:
    from irbook.drill.scenario import load_scenario
    from irbook_flows.drill import run_drill

    scenario = folder / "drill.yaml"
    scenario.write_text(
        "apiVersion: irbook/v1\nkind: Drill\nmetadata: {id: prop-drill, title: Property}\n"
        f"playbook: {path}\n"
        "alert: {normalized: {id: prop-1, source: manual, title: Property}}\n"
        f"inputs: {{flag: {str(case['flag']).lower()}}}\n"
    )
    result = run_drill(load_scenario(str(scenario)))
    calls = {s.id: list(s.planned_calls) for s in result.steps if s.planned_calls}
    return {s.id: s.state for s in result.steps}, calls


@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=scenarios())
def test_planner_dry_run_and_drill_agree_on_step_states(
    case: dict[str, Any], tmp_path_factory: Any
) -> None:
    folder = tmp_path_factory.mktemp("prop")
    path = folder / "prop.yaml"
    text = playbook_yaml(case)
    path.write_text(text)
    shown = textwrap.indent(text, "  ")
    drill, drill_calls = drilled(path, case, folder)
    dry, dry_calls = dry_run(path, case)
    assert dry == drill, f"dry run {dry} != drill {drill} for\n{shown}"
    # the drill's report names each step's calls once ("iam:UpdateAccessKey")
    named = {sid: list(dict.fromkeys(c["call"] for c in calls)) for sid, calls in dry_calls.items()}
    assert named == drill_calls, f"dry run calls {named} != drill {drill_calls} for\n{shown}"
    refused = any(s["gate"] == "reject" for s in case["steps"])
    if not refused:
        plan, plan_calls = planned(path, case["flag"])
        assert plan == dry, f"plan {plan} != dry run {dry} for\n{shown}"
        assert plan_calls == dry_calls, f"plan calls != dry run calls for\n{shown}"
