"""What a finished drill produced: the input of expectations and reports.

Times are drill seconds: 0 is the moment the alert arrives, and approval waits,
retry delays and injected delays count in full although the drill does not wait them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ApprovalRecord:
    decision: str  # approved | rejected
    by: str
    how: str  # scenario (an approver of the scenario) | timeout (nobody decided in time)
    asked_at: float
    decided_at: float
    comment: str = ""


@dataclass
class StepRecord:
    id: str
    action: str
    effect: str  # read | mutate | notify
    state: str  # succeeded | failed | skipped | rejected | cancelled | pending
    reason: str = ""
    start: float | None = None  # drill seconds; None when the step never started
    end: float | None = None
    attempts: int = 0
    items: int = 1
    planned_calls: list[str] = field(default_factory=list)  # "iam:UpdateAccessKey"
    compensation: str = ""  # the undoing action's key, or "irreversible: why", or ""
    approval: ApprovalRecord | None = None
    injected: list[str] = field(default_factory=list)  # what the scenario did to this step


@dataclass
class Marker:
    at: float
    kind: str  # approval | timeout | inject | note | retry
    text: str
    step: str | None = None


@dataclass
class ExpectationResult:
    name: str  # steps_run, steps_skipped, calls_include, contained_within, outcome, ...
    ok: bool
    expected: str
    actual: str
    detail: str = ""  # what exactly is wrong, one line; empty when ok


@dataclass
class DrillResult:
    scenario_path: str
    scenario_id: str
    title: str
    facilitator: str
    description: str
    playbook_id: str
    playbook_title: str
    playbook_path: str
    alert: dict[str, Any]  # source, id, title, severity, type
    run_id: str
    flow_run_id: str | None
    prefect_url: str | None  # the flow run in the Prefect UI, when known
    outcome: str  # succeeded | partial | failed | rejected | cancelled
    message: str
    steps: list[StepRecord]
    markers: list[Marker]
    expectations: list[ExpectationResult]
    contained_at: float | None  # drill time when the last containment step ended
    duration: float  # drill time when the run ended
    lint: list[str] = field(default_factory=list)  # "path:line:col: warning: message"
    injects: list[str] = field(default_factory=list)  # the scenario's injects, as text
    approvers: list[str] = field(default_factory=list)  # the scenario's approvers, as text
    started_at: float = 0.0  # wall clock (epoch seconds) when the drill ran

    @property
    def verdict(self) -> str:
        """The run's end as every other view says it ("succeeded with 1 failed step")."""
        from irbook.runs import verdict_text

        return verdict_text(self.outcome, self.message)

    @property
    def passed(self) -> bool:
        return all(e.ok for e in self.expectations)
