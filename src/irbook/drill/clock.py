"""The drill's referee: approver decisions, injected faults and the simulated clock.

A drill runs the real compiled flow in dry-run mode, as fast as the machine allows; the
clock the team sees is computed from what happened, not waited for:

- an attempt of a step takes `delay` when an inject gives one, else one second per API
  call its planner predicts (at least one second): a stand-in for an API round trip;
- a retry waits the step's `retry_delay`; an approval waits the approver's `after`, or
  the gate's whole timeout when nobody decides in time;
- a step starts when the last of its `needs` ended (and its approval was decided).

The engine asks this object three things while the flow runs (what an approver decides,
whether an attempt fails, what a step returns) and the timeline is drawn afterwards from
the run record.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from irbook.drill.result import ApprovalRecord, Marker, StepRecord
from irbook.model import Playbook, Step
from irbook.model.base import format_duration
from irbook.model.scenario import Drill, Inject
from irbook.plan import execution_order

MIN_ATTEMPT_SECONDS = 1.0  # drill time of one attempt: per planned API call, at least this


@dataclass
class GateDecision:
    approved: bool
    by: str
    comment: str
    how: str  # scenario | timeout
    wait: float  # drill seconds between the request and the decision


@dataclass
class _Failure:
    attempt: int
    error: str
    kind: str  # fail | outage | delay


@dataclass
class DrillController:
    drill: Drill
    playbook: Playbook
    decisions: dict[str, GateDecision] = field(default_factory=dict)
    failures: dict[tuple[str, int], list[_Failure]] = field(default_factory=dict)
    # approvers the policy refused: (step, by, why, drill seconds after the gate asked)
    refusals: list[tuple[str, str, str, float]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def scenario_id(self) -> str:
        return self.drill.metadata.id

    # -- asked by the engine while the flow runs ---------------------------------------

    def attempts(self, step: Step, timeout: float) -> list[GateDecision]:
        """The scenario's approvers of this gate who answer within its timeout, in order;
        the engine judges each against the policy as it would a person."""
        return [
            GateDecision(a.decision == "approve", a.by, a.comment, "scenario", a.after)
            for a in self.drill.approvers
            if a.step == step.id and a.after <= timeout
        ]

    def settle(self, step_id: str, decision: GateDecision) -> None:
        """The decision that closed the gate."""
        with self._lock:
            self.decisions[step_id] = decision

    def decide(
        self, step: Step, timeout: float, on_timeout: str, *, timed_out: bool = False
    ) -> GateDecision:
        """The scenario's approver for this gate, or the gate's timeout (`timed_out`: the
        approvers who answered in time did not close it)."""
        entry = next((a for a in self.drill.approvers if a.step == step.id), None)
        if entry is not None and entry.after <= timeout and not timed_out:
            decision = GateDecision(
                entry.decision == "approve", entry.by, entry.comment, "scenario", entry.after
            )
        else:
            late = (
                f" ({entry.by} would answer after {format_duration(entry.after)})"
                if entry is not None and entry.after > timeout
                else ""
            )
            refused = [r for r in self.refusals if r[0] == step.id]
            if refused:
                late += f" ({len(refused)} refused)"
            decision = GateDecision(
                on_timeout == "approve",
                "timeout",
                f"no decision within {format_duration(timeout)}{late}; on_timeout: {on_timeout}",
                "timeout",
                timeout,
            )
        with self._lock:
            self.decisions[step.id] = decision
        return decision

    def refused(self, step_id: str, by: str, why: str, wait: float) -> None:
        """The policy refused a scripted approver: the gate waits on, the report says so."""
        with self._lock:
            self.refusals.append((step_id, by, why, wait))

    def attempt_error(self, step: Step, index: int, attempt: int) -> str | None:
        """Why this attempt fails, when the scenario says it does; None to let it run."""
        error: str | None = None
        kind = ""
        for inject in self.drill.injects:
            if (
                inject.kind == "fail"
                and inject.at_step == step.id
                and attempt <= (inject.fail or 0)
            ):
                error = f"{inject.error or 'injected failure'} (drill: attempt {attempt} of "
                error += f"{inject.fail} fails)"
                kind = "fail"
            elif inject.kind == "outage" and _hits(inject, step):
                error = f"{inject.error or 'ServiceUnavailable'}: {inject.outage} is down (drill)"
                kind = "outage"
            elif (
                inject.kind == "delay"
                and inject.at_step == step.id
                and step.timeout is not None
                and (inject.delay or 0) > step.timeout
            ):
                error = (
                    f"timed out after {format_duration(step.timeout)} (drill: the call takes "
                    f"{format_duration(inject.delay or 0)})"
                )
                kind = "delay"
            if error:
                break
        if error is not None:
            with self._lock:
                self.failures.setdefault((step.id, index), []).append(
                    _Failure(attempt, error, kind)
                )
        return error

    def output(self, step_id: str, index: int) -> dict[str, Any] | None:
        """What the scenario says this step (this for_each item) returns."""
        value = self.drill.outputs.get(step_id)
        if isinstance(value, list):
            value = value[index] if index < len(value) else None
        return dict(value) if isinstance(value, dict) else None

    # -- the clock, afterwards ---------------------------------------------------------

    def attempt_seconds(self, step: Step, calls: int) -> float:
        delay = next(
            (i.delay for i in self.drill.injects if i.kind == "delay" and i.at_step == step.id),
            None,
        )
        if delay is not None:
            if step.timeout is not None and delay > step.timeout:
                return step.timeout
            return delay
        return max(MIN_ATTEMPT_SECONDS, float(calls))

    def timeline(
        self, rows: list[dict[str, Any]], compensation: dict[str, str]
    ) -> tuple[list[StepRecord], list[Marker]]:
        """Steps with start and end in drill time, and the markers between them."""
        by_step: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_step.setdefault(row["step_id"], []).append(row)
        records: dict[str, StepRecord] = {}
        done: dict[str, float] = {}
        markers: list[Marker] = []
        order = execution_order(self.playbook)
        for step in order:
            items = sorted(by_step.get(step.id, []), key=lambda r: r["item"])
            first = items[0] if items else {}
            state = str(first.get("state") or "pending")
            if any(r.get("state") == "failed" for r in items):
                state = "failed"
            record = StepRecord(
                id=step.id,
                action=step.action,
                effect=str(first.get("effect") or ""),
                state=state,
                reason=str(next((r["reason"] for r in items if r.get("reason")), "") or ""),
                items=max(1, len(items)),
                compensation=compensation.get(step.id, ""),
                injected=self.injected(step),
            )
            ready = max((done[n] for n in step.needs if n in done), default=0.0)
            decision = self.decisions.get(step.id)
            start = ready
            if decision is not None:
                record.approval = ApprovalRecord(
                    "approved" if decision.approved else "rejected",
                    decision.by,
                    decision.how,
                    ready,
                    ready + decision.wait,
                    decision.comment,
                )
                start = ready + decision.wait
                if decision.how == "timeout":
                    text = f"no decision in time, {record.approval.decision}"
                else:
                    text = f"{record.approval.decision} by {decision.by}"
                markers.append(Marker(ready, "approval", "approval asked", step.id))
                kind = "timeout" if decision.how == "timeout" else "approval"
                markers.append(Marker(start, kind, text, step.id))
            for sid, by, why, wait in self.refusals:
                if sid == step.id:
                    markers.append(Marker(ready + wait, "refused", f"{by} refused: {why}", sid))
            records[step.id] = record
            # what never ran ends, for the steps after it, when it was decided
            done[step.id] = start
            if state in ("skipped", "pending", "cancelled", "rejected"):
                continue
            longest = 0.0
            attempts_max = 0
            calls: list[str] = []
            for row in items:
                planned = [c.get("call", "") for c in (row.get("planned_calls") or [])]
                calls.extend(c for c in planned if c and c not in calls)
                attempts = int(row.get("attempts") or 1)
                attempts_max = max(attempts_max, attempts)
                per = self.attempt_seconds(step, len(planned))
                elapsed = 0.0
                for n in range(1, attempts + 1):
                    failed = next(
                        (
                            f
                            for f in self.failures.get((step.id, row["item"]), [])
                            if f.attempt == n
                        ),
                        None,
                    )
                    if failed is not None:
                        label = "" if step.for_each is None else f"item {row['item']}: "
                        markers.append(
                            Marker(
                                start + elapsed + per, "inject", f"{label}: {failed.error}", step.id
                            )
                        )
                    elapsed += per
                    if n < attempts:
                        elapsed += step.retry_delay
                        markers.append(
                            Marker(start + elapsed, "retry", f"attempt {n + 1}", step.id)
                        )
                longest = max(longest, elapsed)
            record.start, record.end = start, start + longest
            record.attempts = attempts_max
            record.planned_calls = calls
            done[step.id] = start + longest
        for inject in self.drill.injects:
            if inject.kind == "note":
                markers.append(Marker(inject.at or 0.0, "note", inject.note or ""))
        markers.sort(key=lambda m: m.at)
        return [records[s.id] for s in order], markers

    def injected(self, step: Step) -> list[str]:
        return [
            i.describe()
            for i in self.drill.injects
            if (i.kind in ("fail", "delay") and i.at_step == step.id)
            or (i.kind == "outage" and _hits(i, step))
        ]


def _hits(inject: Inject, step: Step) -> bool:
    namespace = inject.outage or ""
    if inject.at_step is not None and inject.at_step != step.id:
        return False
    return step.action == namespace or step.action.startswith(namespace + ".")
