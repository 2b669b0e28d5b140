"""A playbook run as one Prefect flow run, with one task run per step (per item).

The flow body is a small scheduler: it submits every step whose `needs` are done to a
bounded thread pool, evaluates `if` and `for_each` with the outputs of upstream steps,
and records every transition in the run record. Prefect gives retries, timeouts, the
UI and pause/resume for approvals; irbook decides skips, failures and the final state
itself, because Prefect lets a flow end Completed while a task never ran.

What a run needs (the playbook, the alert, inputs that may be secret, the clients) is
kept in this process and looked up by run id: it never becomes a Prefect parameter,
so secrets do not reach Prefect's database.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from irbook import expr, policy
from irbook.model import Alert, Playbook, Step
from irbook.model.base import format_duration
from irbook.needs import upstream_of
from irbook.plan import (
    FINAL_STEP_STATES,
    execution_order,
    incident_key,
    redact,
    run_verdict,
    select_items,
    upstream_block,
    validation_message,
)
from irbook.policy import Policy as AccessPolicy
from irbook.registry import (
    REGISTRY,
    ActionFailed,
    ActionSpec,
    ClientFactory,
    NoClients,
    RunInfo,
)
from irbook.runs import RunStore
from irbook_flows.executors import Attempt, Gate
from irbook_flows.executors import Decision as Decision  # re-exported: tests, older callers

if TYPE_CHECKING:
    from irbook.drill.clock import DrillController
    from irbook_flows.executors import Wiring

FINAL = frozenset(FINAL_STEP_STATES)
MAX_WORKERS = 8

EventSink = Callable[[str, str, str, str], None]  # kind, step id, state, detail


Approver = Callable[[str, Step, dict[str, Any]], Decision | None]


@dataclass
class RunSpec:
    """Everything a run needs; held in this process only, keyed by run id."""

    run_id: str
    playbook: Playbook
    alert: Alert
    inputs: dict[str, Any]
    dry_run: bool
    started_by: str
    store: RunStore
    clients: ClientFactory = field(default_factory=NoClients)
    live_reads: bool = False
    ask_approvals: bool = False
    secrets: list[str] = field(default_factory=list)
    on_event: EventSink | None = None
    # Called in a thread while the run waits for a decision (a terminal prompt).
    prompt_approval: Approver | None = None
    poll_interval: float = 1.0
    # Post approval requests with Approve/Reject buttons to this Slack channel.
    slack_channel: str | None = None
    # A tabletop drill: its approvers decide, its injects fail attempts (dry runs only).
    drill: DrillController | None = None
    # Who may decide (irbook.policy); None: no policy in force, the behaviour before policies.
    policy: AccessPolicy | None = None
    # The executor, approver and listeners chosen from the fields above when the run
    # starts (irbook_flows.executors.wire); the engine asks nothing else about the mode.
    wiring: Wiring | None = None
    # Each launched step item's parameters, validated once when the engine rendered them
    # ((step id, item index) -> the action's params model): the planner of its calls,
    # the Slack card and the step's task all use this one object.
    params: dict[tuple[str, int], BaseModel] = field(default_factory=dict)

    def wired(self) -> Wiring:
        if self.wiring is None:
            raise RuntimeError(f"run {self.run_id} was not wired (irbook_flows.executors.wire)")
        return self.wiring


_SPECS: dict[str, RunSpec] = {}
_SPECS_LOCK = threading.Lock()


def register_spec(spec: RunSpec) -> None:
    spec.store.protect(spec.run_id, spec.secrets)
    with _SPECS_LOCK:
        _SPECS[spec.run_id] = spec


def secrets_of(run_id: str) -> list[str]:
    """The run's secret values, or none when the run is not in this process."""
    with _SPECS_LOCK:
        spec = _SPECS.get(run_id)
    return spec.secrets if spec is not None else []


def scrubbed(exc: Exception, secrets: list[str]) -> Exception | None:
    """The exception to hand Prefect instead of `exc` when `exc` quotes a secret, else None.

    Prefect keeps a failed task's exception text in its state message and logs its
    traceback (chained exceptions included) to the API, so what leaves a task must be
    redacted already. The replacement has the same message redacted: an ActionFailed
    keeps its type, a timeout stays a TimeoutError (Prefect times it out, `_outcome`
    says so), anything else becomes an ActionFailed that names the original type.
    """
    if not secrets:
        return None
    told = "".join(traceback.format_exception(exc))
    if redact(told, secrets) == told:
        return None
    if isinstance(exc, ActionFailed):
        return ActionFailed(redact(exc.message, secrets), exc.location)
    message = redact(str(exc), secrets)
    if isinstance(exc, TimeoutError):
        return TimeoutError(message)
    return ActionFailed(f"{type(exc).__name__}: {message}")


def run_scrubbed(run_id: str, body: Callable[[], Any]) -> Any:
    """Run a task or flow body; an exception that quotes a secret leaves it redacted,
    raised outside the handler so the original is not chained to it."""
    try:
        return body()
    except Exception as exc:
        clean = scrubbed(exc, secrets_of(run_id))
        if clean is None:
            raise
    raise clean


def drop_spec(run_id: str) -> None:
    with _SPECS_LOCK:
        _SPECS.pop(run_id, None)


def registered(run_id: str) -> bool:
    """Whether the run was started in this process (its spec is here)."""
    with _SPECS_LOCK:
        return run_id in _SPECS


def spec_for(run_id: str) -> RunSpec:
    with _SPECS_LOCK:
        return _SPECS[run_id]


@dataclass
class StepOutcome:
    state: str
    outputs: Any = None
    reason: str = ""


@dataclass
class _Item:
    index: int
    item: Any
    params: dict[str, Any]  # as shown: the record, Prefect's task parameters
    model: BaseModel  # the same, validated (the only validation of this item's params)


@dataclass
class _Pending:
    step: Step
    action: ActionSpec
    items: list[_Item]


class Engine:
    """Runs inside the flow function; owns the schedule of one run."""

    def __init__(self, spec: RunSpec, submit: Callable[..., Any], wait_any: Callable[..., Any]):
        self.spec = spec
        wiring = spec.wired()
        self.mode = wiring.executor.mode
        self.approver = wiring.approver
        self.listeners = wiring.listeners
        self.submit = submit
        self.wait_any = wait_any
        self.playbook = spec.playbook
        self.order = execution_order(self.playbook)
        self.upstream = upstream_of({s.id: s for s in self.playbook.steps})
        self.ran_because: dict[str, str] = {}  # why a step with failure()/always() ran
        self.state: dict[str, str] = {s.id: "pending" for s in self.order}
        self.reason: dict[str, str] = {}
        self.outputs: dict[str, Any] = {}
        self.item_results: dict[str, dict[int, Any]] = {}
        self.item_failed: dict[str, list[str]] = {}
        self.items_left: dict[str, int] = {}
        self.awaiting: dict[str, _Pending] = {}
        self.completed: list[tuple[str, int]] = []  # mutating step items, in order done
        self.alert_ctx = spec.alert.as_context()
        self.run_ctx = {
            "id": spec.run_id,
            "mode": self.mode,
            "dry_run": self.mode != "live",
            "playbook": self.playbook.metadata.id,
            "started_by": spec.started_by,
            "incident_key": incident_key(self.playbook.metadata.id, spec.alert.id),
            "severity": self.playbook.metadata.severity,
        }
        self.on_failure = {
            s.id: s.on_failure or REGISTRY.get(s.action).on_failure for s in self.order
        }
        self.rejected: list[str] = []
        self.tickets: set[int] = set()  # approval requests acted on (each once)

    # -- events -----------------------------------------------------------------------

    def tell(self, step_id: str, state: str, detail: str = "") -> None:
        """Tell the listeners (terminal, Slack card) of a step's state; never fails it."""
        for listener in self.listeners:
            listener.step(self, step_id, state, detail)

    def finish_step(self, step_id: str, state: str, reason: str = "") -> None:
        self.state[step_id] = state
        self.reason[step_id] = reason
        self.tell(step_id, state, redact(reason, self.spec.secrets))

    def ended(self, verdict: str) -> None:
        """The run ended: the listeners say how, as the terminal does."""
        for listener in self.listeners:
            listener.ended(self, verdict)

    # -- scheduling ---------------------------------------------------------------------

    def context(self, step: Step) -> dict[str, Any]:
        steps = {
            sid: {"status": self.state[sid], "outputs": self.outputs.get(sid)}
            for sid in self.state
            if self.state[sid] in FINAL
        }
        return {
            "inputs": self.spec.inputs,
            "alert": self.alert_ctx,
            "run": {**self.run_ctx, "step": step.id},
            "steps": steps,
        }

    def run_info(self, step: Step) -> RunInfo:
        return run_info(self.spec, step.id)

    def prepare(self, step: Step) -> _Pending | None:
        """Decide a ready step: skip it, fail it, or return what to submit."""
        blocked = upstream_block(step, self.state, self.reason, self.on_failure)
        if blocked is not None:
            self.skip(step, blocked)
            return None
        action = REGISTRY.get(step.action)
        ctx = self.context(step)
        verdict, reason, values = select_items(step, ctx, self.upstream[step.id])
        if verdict == "run" and reason:
            self.ran_because[step.id] = reason
        if verdict == "skip":
            self.skip(step, reason)
            return None
        if verdict == "fail":
            self.fail(step, reason)
            return None
        items: list[_Item] = []
        for index, value in enumerate(values):
            scope = dict(ctx)
            if step.for_each is not None:
                scope["item"] = value
            try:
                rendered = expr.render(step.with_, scope)
                for listener in self.listeners:
                    listener.params(self, action, rendered)  # the Slack card threads its posts
                params = action.params.model_validate(rendered)
            except expr.ExprError as exc:
                self.fail(step, f"with: {exc.message}")
                return None
            except ValidationError as exc:
                self.fail(step, validation_message(action, exc))
                return None
            dumped = params.model_dump(mode="json", exclude_none=True)
            items.append(_Item(index, value, dumped, params))
        return _Pending(step, action, items)

    def skip(self, step: Step, reason: str) -> None:
        self.spec.store.upsert_step(
            self.spec.run_id,
            step.id,
            0,
            action=step.action,
            effect=REGISTRY.get(step.action).effect,
            state="skipped",
            reason=reason,
        )
        self.finish_step(step.id, "skipped", reason)

    def fail(self, step: Step, reason: str) -> None:
        safe = redact(reason, self.spec.secrets)
        self.spec.store.upsert_step(
            self.spec.run_id,
            step.id,
            0,
            action=step.action,
            effect=REGISTRY.get(step.action).effect,
            state="failed",
            reason=safe,
            finished_at=time.time(),
        )
        self.finish_step(step.id, "failed", reason)

    def launch(self, pending: _Pending) -> list[tuple[Any, str, int]]:
        step, action = pending.step, pending.action
        self.state[step.id] = "running"
        self.items_left[step.id] = len(pending.items)
        self.item_results[step.id] = {}
        self.item_failed[step.id] = []
        launched = []
        for item in pending.items:
            planned = [c.as_dict() for c in action.plan(item.model)]
            self.spec.params[(step.id, item.index)] = item.model
            self.spec.store.upsert_step(
                self.spec.run_id,
                step.id,
                item.index,
                action=action.key,
                effect=action.effect,
                state="running",
                params=redact(action.shown(item.params), self.spec.secrets),
                planned_calls=redact(planned, self.spec.secrets),
                irreversible=action.irreversible,
                started_at=time.time(),
                **(
                    {"reason": f"ran: {self.ran_because[step.id]}"}
                    if step.id in self.ran_because
                    else {}
                ),
            )
            future = self.submit(step, item.index, item.params)
            launched.append((future, step.id, item.index))
        self.tell(step.id, "running")
        return launched

    def settle(self, step_id: str, index: int, ok: bool, payload: Any, reason: str) -> None:
        """One task (a step, or one for_each item) ended."""
        step = self.playbook.step(step_id)
        action = REGISTRY.get(step.action)
        store = self.spec.store
        if ok:
            outputs = payload["outputs"]
            self.item_results[step_id][index] = outputs
            comp = None
            if action.compensation is not None:
                comp = payload.get("compensation")
                self.completed.append((step_id, index))
            store.upsert_step(
                self.spec.run_id,
                step_id,
                index,
                state="succeeded",
                outputs=redact(outputs, self.spec.secrets),
                real_calls=redact(payload.get("real_calls"), self.spec.secrets),
                compensation=redact(comp, self.spec.secrets),
                attempts=payload.get("attempts", 1),
                finished_at=time.time(),
            )
        else:
            self.item_failed[step_id].append(reason)
            store.upsert_step(
                self.spec.run_id,
                step_id,
                index,
                state="failed",
                reason=redact(reason, self.spec.secrets),
                finished_at=time.time(),
            )
        self.items_left[step_id] -= 1
        if self.items_left[step_id] == 0:
            results = self.item_results[step_id]
            if step.for_each is not None:
                self.outputs[step_id] = [
                    results.get(i) for i in range(len(results) + len(self.item_failed[step_id]))
                ]
            else:
                self.outputs[step_id] = results.get(0)
            if self.item_failed[step_id]:
                self.finish_step(step_id, "failed", self.item_failed[step_id][0])
            else:
                self.finish_step(step_id, "succeeded")

    # -- approvals ----------------------------------------------------------------------

    def gate(self, pending: _Pending) -> Decision:
        """Wait for the step's decision from the run's approver. Every attempt, by any
        route, is judged by irbook.policy (grant, the step's approvers, separation of
        duties, distinct approvers) and recorded; a refused attempt changes nothing."""
        step = pending.step
        gate = step.approval
        timeout = gate.timeout if gate else 15 * 60.0
        on_timeout = gate.on_timeout if gate else "reject"
        started = time.time()
        rules = self.gate_rules(step)
        waiting: dict[str, Any] = {
            "timeout": format_duration(timeout),
            "on_timeout": on_timeout,
            **rules.as_dict(),
            "scope": vars(self.scope()),
            **self.approver.request(self, pending),
        }
        # requests for this gate come after the step says it waits: a ticket must be newer
        asked_after = self.spec.store.last_seq()
        self.spec.store.upsert_step(
            self.spec.run_id,
            step.id,
            0,
            action=step.action,
            effect=pending.action.effect,
            state="awaiting-approval",
            approval=waiting,
        )
        self.tell(step.id, "awaiting-approval", format_duration(timeout))
        waited = Gate(pending, rules, timeout, on_timeout, started, asked_after)
        decision, extra = self.approver.decide(self, waited)
        votes = waited.votes
        record = {
            "decision": "approved" if decision.approved else "rejected",
            "by": decision.approver,
            "comment": decision.comment,
            "how": decision.how,
            "waited_seconds": round(time.time() - started, 3),
            **extra,
            **({"approvers": [v.who for v in votes] + [decision.approver]} if votes else {}),
            "at": time.time(),
        }
        for item in pending.items:
            self.spec.store.upsert_step(
                self.spec.run_id,
                step.id,
                item.index,
                action=step.action,
                effect=pending.action.effect,
                approval=record,
            )
        self.spec.store.event(self.spec.run_id, f"approval-{record['decision']}", step.id, **record)
        return decision

    def scope(self) -> policy.Scope:
        return policy.Scope(
            self.playbook.metadata.id,
            self.playbook.metadata.severity,
            self.mode,
        )

    def gate_rules(self, step: Step) -> policy.Gate:
        """The gate of a step: irreversible when the step is, or (a core.approval gate)
        when a step right after it is."""
        guarded = [step]
        if step.action == "core.approval":
            guarded = [s for s in self.order if step.id in s.needs]
        irreversible = any(REGISTRY.get(s.action).irreversible for s in guarded)
        gate = step.approval
        return policy.gate_for(
            irreversible=irreversible,
            min_approvers=gate.min_approvers if gate else 1,
            separate_duties=gate.separate_duties if gate else None,
            approvers=gate.approvers if gate else (),
            policy_in_force=self.spec.policy is not None,
        )

    def resumed_by(self, step: Step, answer: Decision, asked_after: int) -> tuple[Any, str]:
        """Who a resume comes from. `irbook approve` and Slack write a request to the run
        record first (its seq is the resume's ticket), checked here; a resume without a
        ticket (the Prefect UI or API) is only the name typed into it, `prefect:NAME`
        under a policy, and the bare claim without one (as before policies)."""
        if not answer.ticket:
            if self.spec.policy is None:
                return policy.Identity.parse(answer.approver), ""
            return policy.Identity("prefect", answer.approver or "anonymous"), ""
        asked = self.spec.store.event_at(answer.ticket)
        detail = (asked or {}).get("detail") or {}
        if (
            asked is None
            or asked["kind"] != "approval-request"
            or asked["run_id"] != self.spec.run_id
            or asked["step_id"] != step.id
            or asked["seq"] <= asked_after
            or answer.ticket in self.tickets
            or detail.get("approved") != answer.approved
            or detail.get("by") != answer.approver
        ):
            who = policy.Identity("prefect", answer.approver or "anonymous")
            return who, f"ticket {answer.ticket} is not a request for this decision"
        self.tickets.add(answer.ticket)
        return policy.Identity.parse(str(detail["by"])), ""

    def judge(
        self,
        step: Step,
        rules: policy.Gate,
        identity: Any,
        answer: Decision,
        votes: list[policy.Vote],
        problem: str = "",
        ticket: int = 0,
    ) -> policy.Verdict:
        """Judge one attempt and record it (approval-refused or approval-recorded)."""
        verdict = policy.judge(
            self.spec.policy,
            rules,
            identity,
            answer.approved,
            self.scope(),
            started_by=self.spec.started_by,
            votes=votes,
            members=self.slack_members,
        )
        if problem:
            verdict = policy.Verdict("refused", verdict.ruling, problem)
        kind, detail = policy.verdict_event(
            verdict,
            by=str(identity),
            approved=answer.approved,
            comment=answer.comment,
            **({"ticket": ticket} if ticket else {}),
        )
        if verdict.outcome == "recorded":
            detail["waiting_for"] = verdict.waiting_for
        self.spec.store.event(self.spec.run_id, kind, step.id, **detail)
        return verdict

    def vote(self, verdict: policy.Verdict) -> policy.Vote:
        who = verdict.ruling.who
        return policy.Vote(who, verdict.ruling.principal or who)

    def slack_members(self, group: str) -> set[str]:
        """A Slack user group's members, for policy groups made of Slack user groups."""
        slack = getattr(self.spec.clients, "slack", None)
        if slack is None:
            return set()
        return set(slack().usergroups_users_list(usergroup=group)["users"])

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> None:
        running: dict[Any, tuple[str, int]] = {}
        while True:
            progressed = True
            while progressed and not self.awaiting:
                progressed = False
                for step in self.order:
                    if self.state[step.id] != "pending":
                        continue
                    if not all(self.state[n] in FINAL for n in step.needs):
                        continue
                    progressed = True
                    pending = self.prepare(step)
                    if pending is None:
                        continue
                    if step.needs_approval or pending.action.key == "core.approval":
                        self.state[step.id] = "awaiting-approval"
                        self.awaiting[step.id] = pending
                        break  # approvals first: start nothing else until decided
                    for future, sid, index in self.launch(pending):
                        running[future] = (sid, index)
            if running:
                future = self.wait_any(list(running))
                sid, index = running.pop(future)
                ok, payload, reason = _outcome(future)
                self.settle(sid, index, ok, payload, reason)
                continue
            if self.awaiting:
                sid = next(iter(self.awaiting))
                pending = self.awaiting.pop(sid)
                decision = self.gate(pending)
                if decision.approved:
                    for future, s, index in self.launch(pending):
                        running[future] = (s, index)
                else:
                    self.rejected.append(sid)
                    reason = f"approval rejected by {decision.approver or 'nobody'}"
                    if decision.comment:
                        reason += f": {decision.comment}"
                    for item in pending.items:  # every item of a for_each step
                        self.spec.store.upsert_step(
                            self.spec.run_id,
                            sid,
                            item.index,
                            state="rejected",
                            reason=reason,
                            finished_at=time.time(),
                        )
                    self.finish_step(sid, "rejected", reason)
                continue
            break

    # -- results ------------------------------------------------------------------------

    def verdict(self) -> tuple[str, str]:
        """(run state, message): the planner's rule, over the states this run reached."""
        return run_verdict(self.order, self.state, self.reason, self.on_failure)

    def run_outputs(self) -> dict[str, Any]:
        final = {
            "inputs": self.spec.inputs,
            "alert": self.alert_ctx,
            "run": self.run_ctx,
            "steps": {
                sid: {"status": self.state[sid], "outputs": self.outputs.get(sid)}
                for sid in self.state
            },
        }
        out: dict[str, Any] = {}
        for name, value in self.playbook.outputs.items():
            try:
                out[name] = expr.render(value, final)
            except expr.ExprError:
                out[name] = None
        return out

    def compensations(self) -> list[dict[str, Any]]:
        """What undoes this run, newest first (the saga's order)."""
        plan = []
        for sid, index in reversed(self.completed):
            row = next(
                (
                    r
                    for r in self.spec.store.steps(self.spec.run_id)
                    if r["step_id"] == sid and r["item"] == index
                ),
                None,
            )
            if row and row.get("compensation"):
                plan.append({"step": sid, "item": index, **row["compensation"]})
        return plan


def _outcome(future: Any) -> tuple[bool, Any, str]:
    state = future.state
    if state.is_completed():
        return True, future.result(), ""
    message = state.message or state.name
    try:
        future.result()
    except TimeoutError as exc:
        message = f"timed out: {exc}" if str(exc) else "timed out"
    except ActionFailed as exc:
        message = exc.message
    except Exception as exc:  # the step's own error, one line
        message = f"{type(exc).__name__}: {exc}"
    return False, None, message.splitlines()[0] if message else "failed"


def run_info(spec: RunSpec, step_id: str) -> RunInfo:
    """What an action is told about the run: the same for planning, the flow and undo."""
    book = spec.playbook.metadata
    return RunInfo(
        run_id=spec.run_id,
        playbook_id=book.id,
        step_id=step_id,
        dry_run=spec.wired().executor.mode != "live",
        incident_key=incident_key(book.id, spec.alert.id),
        severity=book.severity,
        title=book.title,
    )


def run_step(run_id: str, step_id: str, index: int, params: dict[str, Any]) -> dict[str, Any]:
    """The body of a step's task: one attempt, by the run's executor. Its exceptions reach
    Prefect's database: the task runs it under `run_scrubbed`. `params` is what Prefect
    shows as the task's parameters; the attempt uses the model the engine validated."""
    del params  # shown, not read: the same values, already validated, are in spec.params
    spec = spec_for(run_id)
    step = spec.playbook.step(step_id)
    action = REGISTRY.get(step.action)
    model = spec.params[(step_id, index)]  # validated once, when the engine rendered it
    info = run_info(spec, step_id)
    attempts = 1
    try:
        from prefect.runtime import task_run

        attempts = int(task_run.run_count or 1)
    except Exception:  # outside a task run (tests call this directly)
        attempts = 1
    spec.store.upsert_step(run_id, step_id, index, attempts=attempts)
    attempt = Attempt(spec, step, action, model, info, index, attempts)
    result, real_calls = spec.wired().executor.call(attempt)
    out: dict[str, Any] = {
        "outputs": result.model_dump(mode="json"),
        "real_calls": real_calls,
        "attempts": attempts,
    }
    if action.compensation is not None:
        out["compensation"] = {
            "action": action.compensation,
            "with": action.compensation_params(model, result),
        }
    return out
