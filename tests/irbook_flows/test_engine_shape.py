"""The engine is the DAG loop calling irbook.plan's decisions; what differs between a live
run, a dry run and a drill is the executor, approver and listeners it is given
(irbook_flows.executors), chosen once by `wire`.

The first test reads engine.py and fails when it asks which mode it is in again. The
others check the swap point itself: `wire` picks the right objects for each kind of
start, and an executor of a test's own (a mock, as httpx's MockTransport is) replaces
the real one without patching, with the engine driven by a synchronous submit.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

ENGINE = Path(__file__).resolve().parents[2] / "flows" / "irbook_flows" / "engine.py"

# A branch on the run's mode, or on the options that select its executor, approver or
# listeners: each belongs in irbook_flows.executors.wire, not in the engine.
FORBIDDEN = (
    r"drill is None",
    r"drill is not None",
    r"\.dry_run\b",
    r"\bspec\.drill\b",
    r"\.ask_approvals\b",
    r"\.live_reads\b",
    r"\.slack_channel\b",
    r"\.on_event\b",
    r"\.prompt_approval\b",
    r"\bsimulate\s*=",
)


def branches(line: str) -> list[str]:
    return [pattern for pattern in FORBIDDEN if re.search(pattern, line)]


def test_the_engine_does_not_branch_on_the_mode() -> None:
    found = [
        f"engine.py:{number}: {line.strip()}"
        for number, line in enumerate(ENGINE.read_text(encoding="utf-8").splitlines(), 1)
        if branches(line)
    ]
    assert not found, "the engine asks which mode it is in:\n" + "\n".join(found)


def test_the_check_finds_a_branch_and_only_a_branch() -> None:
    assert len(branches("        if self.spec.drill is not None and self.spec.dry_run:")) == 3
    assert len(branches("    simulate = spec.dry_run and not spec.live_reads")) == 3
    assert branches("from irbook.drill.clock import DrillController") == []
    assert branches("    dry_run: bool") == []  # RunSpec's field: what the starter asked


def _spec(tmp_path: Path, **options: Any) -> Any:
    from irbook.loader import load_playbook
    from irbook.plan import manual_alert
    from irbook.runs import RunStore
    from irbook_flows.engine import RunSpec

    path = tmp_path / "shape.yaml"
    path.write_text(
        "apiVersion: irbook/v1\nkind: Playbook\nmetadata: {id: shape, title: Shape}\n"
        "steps:\n"
        "  - {id: one, action: core.note, with: {text: one}}\n"
        "  - id: two\n    action: core.note\n    needs: [one]\n"
        "    with: {text: '${{ steps.one.outputs.text }}'}\n"
        "  - {id: gate, action: core.approval, needs: [two], with: {prompt: go?}}\n"
        "  - {id: three, action: core.note, needs: [gate], with: {text: three}}\n"
    )
    store = RunStore()
    run_id = store.create_run(
        playbook_id="shape",
        playbook_title="Shape",
        mode="dry-run" if options.get("dry_run", True) else "live",
        started_by="test",
        inputs={},
        rollback="manual",
    )
    fields: dict[str, Any] = {"dry_run": True, **options}
    return RunSpec(
        run_id=run_id,
        playbook=load_playbook(str(path)).playbook,
        alert=manual_alert(),
        inputs={},
        started_by="test",
        store=store,
        **fields,
    )


@pytest.mark.parametrize(
    ("options", "executor", "approver", "listeners"),
    [
        ({"dry_run": False}, "Live", "Paused", ["SlackCard"]),
        ({"dry_run": False, "slack_channel": "#ir"}, "Live", "Paused", ["SlackCard"]),
        ({}, "DryRun", "Simulated", []),
        ({"ask_approvals": True}, "DryRun", "Paused", []),
        ({"live_reads": True, "on_event": print}, "DryRun", "Simulated", ["Events"]),
        ({"drill": "controller"}, "Drill", "DrillGate", []),
    ],
)
def test_wire_chooses_once_from_what_the_starter_asked(
    tmp_path: Path, options: dict[str, Any], executor: str, approver: str, listeners: list[str]
) -> None:
    from irbook_flows.executors import wire

    if options.get("drill") == "controller":
        from irbook.drill.clock import DrillController
        from irbook.model.scenario import Drill

        spec = _spec(tmp_path)
        drill = Drill.model_validate(
            {
                "apiVersion": "irbook/v1",
                "kind": "Drill",
                "metadata": {"id": "d", "title": "D"},
                "playbook": "shape.yaml",
                "alert": {"normalized": {"id": "a", "source": "manual", "title": "A"}},
            }
        )
        options = {"drill": DrillController(drill, spec.playbook)}
    spec = _spec(tmp_path, **options)
    wiring = wire(spec, pause=lambda step, seconds: None)
    assert type(wiring.executor).__name__ == executor
    assert type(wiring.approver).__name__ == approver
    assert [type(x).__name__ for x in wiring.listeners] == listeners
    if options.get("slack_channel"):
        assert wiring.approver.slack is not None  # type: ignore[attr-defined]
    assert wiring.executor.mode == ("live" if executor == "Live" else "dry-run")


class _Done:
    """A finished future, as the engine reads Prefect's."""

    def __init__(self, result: Any = None, error: Exception | None = None) -> None:
        from prefect.states import Completed, Failed

        self._result, self._error = result, error
        self.state: Any = Completed() if error is None else Failed(message=str(error))

    def result(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._result


class Recording:
    """A test's own executor: records every attempt and says what each step returns."""

    mode = "live"
    label = "TEST "

    def __init__(self) -> None:
        self.attempts: list[tuple[str, dict[str, Any]]] = []

    def call(self, attempt: Any) -> tuple[Any, list[dict[str, Any]]]:
        params = attempt.params.model_dump(mode="json")
        self.attempts.append((attempt.step.id, params))
        said = {name: f"mock:{value}" for name, value in params.items()}
        result = attempt.action.result.model_validate(said)
        return result, [{"service": "mock", "operation": attempt.step.id}]

    def retry_delay(self, step: Any) -> float:
        return 0

    def task_tags(self, action: Any) -> list[str]:
        return []


def test_an_executor_of_ones_own_replaces_the_real_one(tmp_path: Path) -> None:
    from irbook_flows.engine import Engine, drop_spec, register_spec, run_step
    from irbook_flows.executors import Decision, Events, Wiring

    spec = _spec(tmp_path, dry_run=False)
    mock = Recording()
    heard: list[tuple[str, str]] = []

    class Approves:
        def request(self, engine: Any, pending: Any) -> dict[str, Any]:
            return {"where": "test"}

        def decide(self, engine: Any, gate: Any) -> tuple[Decision, dict[str, Any]]:
            return Decision(True, "tester", "fine", "human"), {}

    spec.wiring = Wiring(mock, Approves(), [Events(lambda k, s, st, d: heard.append((s, st)))])

    def submit(step: Any, index: int, params: dict[str, Any]) -> _Done:
        try:
            return _Done(run_step(spec.run_id, step.id, index, params))
        except Exception as exc:
            return _Done(error=exc)

    register_spec(spec)
    try:
        engine = Engine(spec, submit, lambda futures: futures[0])
        engine.run()
    finally:
        drop_spec(spec.run_id)
    assert engine.verdict()[0] == "succeeded"
    # every step went through the test's executor, the gate included; outputs flow on
    assert [sid for sid, _ in mock.attempts] == ["one", "two", "gate", "three"]
    assert mock.attempts[1][1]["text"] == "mock:one"  # step two saw step one's mock output
    rows = {r["step_id"]: r for r in spec.store.steps(spec.run_id)}
    assert rows["one"]["real_calls"] == [{"service": "mock", "operation": "one"}]
    assert rows["gate"]["approval"]["by"] == "tester"
    assert rows["gate"]["approval"]["how"] == "human"
    assert ("gate", "awaiting-approval") in heard and ("three", "succeeded") in heard


def test_a_step_items_parameters_are_validated_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine renders and validates a step's parameters once; the planner of its
    calls, the Slack card and the step's task use that one model (issue 14: they were
    validated up to five times per step, each copy a chance to disagree)."""
    from irbook.registry import REGISTRY
    from irbook_flows.engine import Engine, drop_spec, register_spec, run_step
    from irbook_flows.executors import Decision, Wiring

    spec = _spec(tmp_path, dry_run=False)  # loading checks literal params: not the run's
    counts: dict[str, int] = {}
    for key in ("core.note", "core.approval"):
        model = REGISTRY.get(key).params
        original = model.model_validate.__func__  # type: ignore[attr-defined]

        def counting(cls: Any, obj: Any, *a: Any, _key: str = key, _f: Any = original, **k: Any):
            counts[_key] = counts.get(_key, 0) + 1
            return _f(cls, obj, *a, **k)

        monkeypatch.setattr(model, "model_validate", classmethod(counting))

    class Approves:
        def request(self, engine: Any, pending: Any) -> dict[str, Any]:
            return {}

        def decide(self, engine: Any, gate: Any) -> tuple[Decision, dict[str, Any]]:
            return Decision(True, "tester", "fine", "human"), {}

    spec.wiring = Wiring(Recording(), Approves(), [])

    def submit(step: Any, index: int, params: dict[str, Any]) -> _Done:
        return _Done(run_step(spec.run_id, step.id, index, params))

    register_spec(spec)
    try:
        engine = Engine(spec, submit, lambda futures: futures[0])
        engine.run()
    finally:
        drop_spec(spec.run_id)
    assert engine.verdict()[0] == "succeeded"
    assert counts == {"core.note": 3, "core.approval": 1}  # three notes, one gate: once each
