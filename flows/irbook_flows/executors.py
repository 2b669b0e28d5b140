"""What differs between a live run, a dry run and a drill: three kinds of objects the
engine is given, chosen once when the run starts (`wire`).

- An executor makes a step's attempt take effect: `Live` calls the real API, `DryRun`
  returns the action's simulated result (reads may go live with --live-reads), `Drill`
  adds the scenario's injected failures and given outputs, and counts retry delays on
  the drill clock instead of waiting them.
- An approver decides a gate: `Simulated` (a plain dry run approves at once), `DrillGate`
  (the scenario's approvers, on drill time) or `Paused` (the flow pauses; the terminal
  prompt, `irbook approve`, Slack buttons and the Prefect UI resume it).
- Listeners hear of the run's progress: `Events` (the terminal's step table) and
  `SlackCard` (the run's first Slack post, kept current; live runs only). The run
  record is the engine's own: it reads it back (tickets, compensations).

The engine is the DAG loop calling irbook.plan's decision functions; it does not ask
which mode it is in (tests/irbook_flows/test_engine_shape.py keeps it so), in the way httpx's
client sends every request through one transport that tests swap for a mock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from irbook import policy
from irbook.model.base import format_duration
from irbook.plan import FINAL_STEP_STATES, redact
from irbook.registry import REGISTRY, ActionContext, ActionFailed, ActionSpec, recording_calls

if TYPE_CHECKING:
    from pydantic import BaseModel

    from irbook.drill.clock import DrillController
    from irbook.model import Step
    from irbook.registry import RunInfo
    from irbook_flows.engine import Engine, RunSpec, _Pending

Pause = Any  # (step, seconds left) -> Decision: flow.py's Prefect pause/resume


@dataclass
class Decision:
    """A gate's decision, or one attempt at it."""

    approved: bool
    approver: str
    comment: str = ""
    how: str = "human"  # human | simulated | timeout | scenario
    ticket: int = 0  # the run record's approval-request behind it (irbook approve, Slack)


# -- executors ------------------------------------------------------------------------


@dataclass
class Attempt:
    """One attempt of one step (item): what an executor is asked to make happen."""

    spec: RunSpec
    step: Step
    action: ActionSpec
    params: BaseModel
    info: RunInfo
    index: int
    attempt: int


class Executor(Protocol):
    @property
    def mode(self) -> str:
        """The run's mode as the record, the policy's scope and `run.mode` say it."""
        ...

    @property
    def label(self) -> str:
        """What the flow run's name starts with ("DRY RUN ", "DRILL <scenario> · ")."""
        ...

    def call(self, attempt: Attempt) -> tuple[BaseModel, list[dict[str, Any]]]:
        """The step's result and the calls it really made (none when simulated)."""
        ...

    def retry_delay(self, step: Step) -> float: ...

    def task_tags(self, action: ActionSpec) -> list[str]: ...

    def start_ruling(self, started_by: str) -> policy.Ruling | None:
        """The ruling on the run's start when it was judged before the run (a drill's,
        by `irbook drill`'s drill grant), else None: the policy decides."""
        ...


class Live:
    mode = "live"
    label = ""

    def call(self, attempt: Attempt) -> tuple[BaseModel, list[dict[str, Any]]]:
        spec, step = attempt.spec, attempt.step
        where = spec.playbook.aws_for(step)
        clients = spec.clients
        if where.role_arn and hasattr(clients, "with_role"):  # another account: assume its role
            clients = clients.with_role(where.role_arn, where.external_id, where.region)
        if step.timeout and hasattr(clients, "with_timeout"):
            clients = clients.with_timeout(step.timeout)  # a hung API cannot hang the run
        ctx = ActionContext(run=attempt.info, clients=clients, region=where.region)
        with recording_calls() as calls:
            result = attempt.action.func(ctx, attempt.params)
        for text in ctx.notes:
            spec.store.event(spec.run_id, "note", step.id, text=redact(text, spec.secrets))
        # AWS calls come from the botocore hook; Slack, Jira and webhooks add their own
        return result, [c.as_dict() for c in (*calls, *ctx.calls)]

    def retry_delay(self, step: Step) -> float:
        return step.retry_delay

    def task_tags(self, action: ActionSpec) -> list[str]:
        return []

    def start_ruling(self, started_by: str) -> policy.Ruling | None:
        return None


LIVE = Live()


@dataclass
class DryRun:
    """Simulated results; pure actions (and reads, with --live-reads) run for real."""

    live_reads: bool = False
    mode = "dry-run"
    label = "DRY RUN "

    def simulates(self, action: ActionSpec) -> bool:
        return not (action.pure or (action.effect == "read" and self.live_reads))

    def call(self, attempt: Attempt) -> tuple[BaseModel, list[dict[str, Any]]]:
        if not self.simulates(attempt.action):
            return LIVE.call(attempt)
        return attempt.action.simulated(attempt.params, attempt.info), []

    def retry_delay(self, step: Step) -> float:
        return step.retry_delay

    def task_tags(self, action: ActionSpec) -> list[str]:
        return ["dry-run"] if action.effect == "mutate" else []

    def start_ruling(self, started_by: str) -> policy.Ruling | None:
        return None


@dataclass
class Drill:
    """A dry run refereed by a scenario: its injects fail attempts, its outputs override
    the simulated results, and retry delays count on the drill clock, not waited."""

    controller: DrillController
    dry: DryRun = field(default_factory=DryRun)
    mode = "dry-run"

    @property
    def label(self) -> str:
        return f"DRILL {self.controller.scenario_id} · "

    def call(self, attempt: Attempt) -> tuple[BaseModel, list[dict[str, Any]]]:
        injected = self.controller.attempt_error(attempt.step, attempt.index, attempt.attempt)
        if injected is not None:
            raise ActionFailed(injected)
        result, calls = self.dry.call(attempt)
        if self.dry.simulates(attempt.action):
            given = self.controller.output(attempt.step.id, attempt.index)
            if given:  # what the scenario says this step returns, over the simulated result
                merged = {**result.model_dump(mode="json"), **given}
                result = attempt.action.result.model_validate(merged)
        return result, calls

    def retry_delay(self, step: Step) -> float:
        return 0

    def task_tags(self, action: ActionSpec) -> list[str]:
        return self.dry.task_tags(action)

    def start_ruling(self, started_by: str) -> policy.Ruling | None:
        # the scenario starts the run: its runner's drill grant was checked by irbook drill
        return policy.Ruling(True, "drill", started_by, None, "a drill's run")


# -- approvers ------------------------------------------------------------------------


@dataclass
class Gate:
    """One approval gate while it waits: its rules, deadline and the votes so far."""

    pending: _Pending
    rules: policy.Gate
    timeout: float
    on_timeout: str
    started: float
    asked_after: int  # the record's last event before the gate: tickets must be newer
    votes: list[policy.Vote] = field(default_factory=list)


class Approver(Protocol):
    def request(self, engine: Engine, pending: _Pending) -> dict[str, Any]:
        """Ask where people see it (Slack buttons); what to record of where it was asked."""
        ...

    def decide(self, engine: Engine, gate: Gate) -> tuple[Decision, dict[str, Any]]:
        """The gate's decision, and what else its record says (drill time)."""
        ...


class Simulated:
    """A plain dry run: every gate is approved at once, and says so."""

    def request(self, engine: Engine, pending: _Pending) -> dict[str, Any]:
        return {}

    def decide(self, engine: Engine, gate: Gate) -> tuple[Decision, dict[str, Any]]:
        return Decision(True, "simulated", "dry run: approval simulated", "simulated"), {}


@dataclass
class DrillGate:
    """The scenario's approvers, judged by the policy like anyone, on drill time."""

    controller: DrillController

    def request(self, engine: Engine, pending: _Pending) -> dict[str, Any]:
        return {}

    def decide(self, engine: Engine, gate: Gate) -> tuple[Decision, dict[str, Any]]:
        drill, step = self.controller, gate.pending.step
        for attempt in drill.attempts(step, gate.timeout):
            said = Decision(attempt.approved, attempt.by, attempt.comment, "scenario")
            who = policy.Identity.parse(attempt.by)
            ruled = engine.judge(step, gate.rules, who, said, gate.votes)
            if ruled.outcome == "refused":
                drill.refused(step.id, attempt.by, ruled.reason, attempt.wait)
            elif ruled.outcome == "recorded":
                gate.votes.append(engine.vote(ruled))
            else:
                drill.settle(step.id, attempt)
                return said, {"drill_wait_seconds": attempt.wait}
        late = drill.decide(step, gate.timeout, gate.on_timeout, timed_out=True)
        decided = Decision(late.approved, late.by, late.comment, late.how)
        return decided, {"drill_wait_seconds": late.wait}


@dataclass
class Paused:
    """The flow pauses until a decision resumes it: the terminal prompt, `irbook
    approve`, Slack's buttons (posted by `slack`) or the Prefect UI. Every attempt is
    judged by irbook.policy; a refused one changes nothing and the gate waits on."""

    pause: Pause
    slack: SlackButtons | None = None

    def request(self, engine: Engine, pending: _Pending) -> dict[str, Any]:
        return {"slack": self.slack.post(engine, pending)} if self.slack is not None else {}

    def decide(self, engine: Engine, gate: Gate) -> tuple[Decision, dict[str, Any]]:
        step = gate.pending.step
        deadline = gate.started + gate.timeout
        while True:
            answer = self.pause(step, max(0.0, deadline - time.time()))
            if answer.how == "timeout":
                said = f"no decision within {format_duration(gate.timeout)}"
                approved = gate.on_timeout == "approve"
                return Decision(
                    approved, "timeout", f"{said}; on_timeout: {gate.on_timeout}", "timeout"
                ), {}
            identity, problem = engine.resumed_by(step, answer, gate.asked_after)
            ruled = engine.judge(
                step, gate.rules, identity, answer, gate.votes, problem, answer.ticket
            )
            if ruled.outcome == "recorded":
                gate.votes.append(engine.vote(ruled))
            elif ruled.outcome != "refused":
                return Decision(answer.approved, str(identity), answer.comment, answer.how), {}


@dataclass
class SlackButtons:
    """Approve/Reject buttons in a Slack channel; a Slack failure leaves the other ways open."""

    channel: str

    def post(self, engine: Engine, pending: _Pending) -> dict[str, Any]:
        spec, step = engine.spec, pending.step
        action = REGISTRY.find("slack.request_approval")
        if action is None:
            return {}
        planned = [c.name for item in pending.items for c in pending.action.plan(item.model)]
        try:
            params = action.params.model_validate(
                {
                    "channel": self.channel,
                    "step": step.id,
                    "planned_calls": planned,
                    "compensation": pending.action.compensation,
                    "approvers": list(step.approval.approvers) if step.approval else [],
                }
            )
            result = action.func(
                ActionContext(run=engine.run_info(step), clients=spec.clients), params
            )
        except Exception as exc:  # Slack down: `irbook approve` and the prompt still work
            spec.store.event(
                spec.run_id,
                "slack-request-failed",
                step.id,
                error=redact(str(exc), spec.secrets)[:200],
            )
            return {}
        out = result.model_dump(mode="json")
        return {"channel": out.get("channel"), "ts": out.get("ts")}


# -- listeners ------------------------------------------------------------------------


class Listener:
    """Hears of a run's progress; none of its failures fails a step."""

    def step(self, engine: Engine, step_id: str, state: str, detail: str) -> None:
        """A step is running, waits for approval, or ended (detail redacted already)."""

    def params(self, engine: Engine, action: ActionSpec, params: dict[str, Any]) -> None:
        """A step's parameters, rendered, before they are checked (may add to them)."""

    def ended(self, engine: Engine, verdict: str) -> None:
        """The run ended; `verdict` is the line the terminal prints."""


EventSink = Any  # (kind, step id, state, detail) -> None


@dataclass
class Events(Listener):
    """The caller's callback: `irbook run`'s step table, a benchmark's clock."""

    sink: EventSink

    def step(self, engine: Engine, step_id: str, state: str, detail: str) -> None:
        self.sink("step", step_id, state, detail)


MARKS = {"succeeded": "✓", "failed": "✗", "skipped": "-", "rejected": "⊘"}


@dataclass
class SlackCard(Listener):
    """The run's first Slack post becomes its card: updated in place as steps end, later
    posts to its channel go into its thread, and its last line is the run's verdict."""

    card: tuple[str, str, str] | None = None  # (channel id, ts, channel as asked)
    text: str = ""
    verdict: str = ""

    def step(self, engine: Engine, step_id: str, state: str, detail: str) -> None:
        if state in FINAL_STEP_STATES:
            self.update(engine, step_id, state)

    def params(self, engine: Engine, action: ActionSpec, params: dict[str, Any]) -> None:
        if action.key != "slack.post_message" or self.card is None:
            return
        channel_id, ts, channel_asked = self.card
        same = params.get("channel") in (channel_id, channel_asked)
        if same and params.get("thread") is None and params.get("update_ts") is None:
            params["thread"] = ts  # one thread per run: under the first card

    def ended(self, engine: Engine, verdict: str) -> None:
        self.verdict = redact(verdict, engine.spec.secrets)
        if engine.order:
            last = engine.order[-1].id
            self.update(engine, last, engine.state[last])

    def update(self, engine: Engine, step_id: str, state: str) -> None:
        spec = engine.spec
        step = engine.playbook.step(step_id)
        if (
            self.card is None
            and state == "succeeded"
            and step.action == "slack.post_message"
            and step.for_each is None
        ):
            out = engine.outputs.get(step_id) or {}
            if out.get("channel") and out.get("ts") and not out.get("thread_ts"):
                sent = next(
                    (r for r in spec.store.steps(spec.run_id) if r["step_id"] == step_id), None
                )
                asked = (sent or {}).get("params") or {}
                self.card = (str(out["channel"]), str(out["ts"]), str(asked.get("channel")))
                self.text = str(asked.get("text") or "")
            return
        if self.card is None:
            return
        action = REGISTRY.find("slack.post_message")
        if action is None:
            return
        lines = [
            f"{MARKS.get(engine.state[s.id], '…')} {s.id}: {engine.state[s.id]}"
            for s in engine.order
            if engine.state[s.id] != "pending"
        ]
        if self.verdict:
            lines.append(f"Run {spec.run_id}: {self.verdict}")
        channel, ts, _ = self.card
        text = (self.text + "\n\n" if self.text else "") + "\n".join(lines)
        try:
            params = action.params.model_validate(
                {"channel": channel, "text": text[:39_000], "update_ts": ts}
            )
            action.func(ActionContext(run=engine.run_info(step), clients=spec.clients), params)
        except Exception as exc:  # the card is a courtesy; the run goes on
            spec.store.event(
                spec.run_id,
                "slack-card-failed",
                step_id,
                error=redact(str(exc), spec.secrets)[:200],
            )


# -- the one choice -------------------------------------------------------------------


@dataclass
class Wiring:
    executor: Executor
    approver: Approver
    listeners: list[Listener]


def wire(spec: RunSpec, pause: Pause) -> Wiring:
    """Choose a run's executor, approver and listeners from what its starter asked: the
    only place that reads `dry_run`, `drill`, `ask_approvals` and `slack_channel`."""
    executor: Executor
    approver: Approver
    slack = SlackButtons(spec.slack_channel) if spec.slack_channel else None
    if spec.drill is not None:
        executor, approver = Drill(spec.drill), DrillGate(spec.drill)
    elif spec.dry_run:
        executor = DryRun(spec.live_reads)
        approver = Paused(pause, slack) if spec.ask_approvals else Simulated()
    else:
        executor, approver = LIVE, Paused(pause, slack)
    listeners: list[Listener] = [] if spec.dry_run else [SlackCard()]
    if spec.on_event is not None:
        listeners.append(Events(spec.on_event))
    return Wiring(executor, approver, listeners)


__all__ = [
    "LIVE",
    "Approver",
    "Attempt",
    "Decision",
    "Drill",
    "DrillGate",
    "DryRun",
    "Events",
    "Executor",
    "Gate",
    "Listener",
    "Live",
    "Paused",
    "Simulated",
    "SlackButtons",
    "SlackCard",
    "Wiring",
    "wire",
]
