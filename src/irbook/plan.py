"""The offline planner: playbook + alert + parameters -> exactly what a run would do.

Pure: no Prefect, no network. It resolves inputs, walks the steps in execution order,
evaluates conditions and for_each over the alert and the simulated results of upstream
steps, and asks each action's planner for the API calls it would make. The dry run and
tabletop drills follow the same branches; a live run makes the same calls.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import heapq
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, quote_plus

from pydantic import BaseModel, ValidationError

from irbook import expr
from irbook.errors import IrbookError
from irbook.model import Alert, InputSpec, Playbook, Step
from irbook.model.base import format_duration
from irbook.registry import REGISTRY, ActionFailed, ActionSpec, PlannedCall, Registry, RunInfo

REDACTED = "***"
StepStatus = Literal["run", "skip", "fail", "blocked"]


class PlanError(IrbookError):
    """The plan cannot be made: a missing or invalid input, named in the message."""


# --- inputs ----------------------------------------------------------------------


def _coerce(name: str, spec: InputSpec, value: Any, *, from_cli: bool) -> Any:
    kind = spec.type
    shown = REDACTED if spec.secret else repr(value)
    try:
        if kind == "string":
            if isinstance(value, bool | dict | list):
                raise ValueError
            return str(value)
        if kind == "integer":
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind == "number":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind == "boolean":
            if isinstance(value, bool):
                return value
            if from_cli and isinstance(value, str):
                lowered = value.strip().lower()
                if lowered in ("true", "yes", "1", "on"):
                    return True
                if lowered in ("false", "no", "0", "off"):
                    return False
            raise ValueError
        if kind == "list":
            if isinstance(value, list):
                return value
            if from_cli and isinstance(value, str):
                text = value.strip()
                if text.startswith("["):
                    parsed = json.loads(text)
                    if isinstance(parsed, list):
                        return parsed
                    raise ValueError
                return [part.strip() for part in text.split(",") if part.strip()]
            raise ValueError
        if kind == "object":
            if isinstance(value, dict):
                return value
            if from_cli and isinstance(value, str):
                parsed = json.loads(value)
                if isinstance(parsed, dict):
                    return parsed
            raise ValueError
    except (ValueError, TypeError, OverflowError):
        pass
    hint = " (JSON)" if kind in ("object",) else ""
    raise PlanError(f"input '{name}': expected {kind}{hint}, got {shown}")


def resolve_inputs(
    playbook: Playbook, alert: Mapping[str, Any], params: Mapping[str, str]
) -> dict[str, Any]:
    """Inputs from --param, then the alert (`from:`), then defaults; checked and typed."""
    unknown = sorted(set(params) - set(playbook.inputs))
    if unknown:
        known = ", ".join(sorted(playbook.inputs)) or "none"
        raise PlanError(f"unknown input '{unknown[0]}' (this playbook takes: {known})")
    out: dict[str, Any] = {}
    for name, spec in playbook.inputs.items():
        value: Any = None
        if name in params:
            value = _coerce(name, spec, params[name], from_cli=True)
        elif spec.from_ is not None:
            found = expr.evaluate(expr.parse(spec.from_), {"alert": alert})
            if found is not None and found != "":
                value = _coerce(name, spec, found, from_cli=False)
        if value is None:
            if spec.required:
                source = f" or an alert with {spec.from_}" if spec.from_ else ""
                raise PlanError(f"input '{name}' is required: give --param {name}=...{source}")
            value = spec.default
        elif spec.pattern and isinstance(value, str) and not re.search(spec.pattern, value):
            shown = REDACTED if spec.secret else repr(value)
            raise PlanError(f"input '{name}': {shown} does not match {spec.pattern}")
        if value is not None and spec.enum is not None and value not in spec.enum:
            shown = REDACTED if spec.secret else repr(value)
            choices = ", ".join(repr(c) for c in spec.enum)
            raise PlanError(f"input '{name}': {shown} is not one of {choices}")
        out[name] = value
    return out


# --- the plan --------------------------------------------------------------------


@dataclass
class Iteration:
    item: Any
    params: dict[str, Any]
    calls: list[PlannedCall]
    result: dict[str, Any] | None
    compensation: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class PlannedStep:
    id: str
    action: str
    effect: str
    needs: list[str]
    status: StepStatus
    reason: str = ""
    approval: dict[str, Any] | None = None
    iterations: list[Iteration] = field(default_factory=list)
    compensation: str | None = None
    irreversible: str | None = None
    on_failure: str = "abort"
    retries: int = 0
    timeout: float | None = None
    permissions: tuple[str, ...] = ()

    @property
    def calls(self) -> list[PlannedCall]:
        return [call for it in self.iterations for call in it.calls]


@dataclass
class Plan:
    playbook: Playbook
    alert: dict[str, Any]
    inputs: dict[str, Any]
    run: dict[str, Any]
    steps: list[PlannedStep]
    outputs: dict[str, Any]
    secrets: list[str]
    # Integration checks (irbook.preflight.Check), filled by the commands that show them:
    # build_plan stays pure and does not read the environment.
    preflight: list[Any] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        """What the run would end as, in the words of the plan's summary line."""
        return _outcome_words(self._verdict(()))

    @property
    def live_outcome(self) -> str:
        """The outcome of a live run here, where steps whose integration's configuration
        is missing (preflight) fail when they call it."""
        from irbook.preflight import missing_steps

        return _outcome_words(self._verdict(tuple(missing_steps(self.preflight))))

    def _verdict(self, failing: tuple[str, ...]) -> tuple[str, list[str]]:
        """The run's end state as `run_verdict` says it, and the steps that would fail."""
        written = {s.id: s for s in self.playbook.steps}
        state_of = {s.id: PLANNED_STATE[s.status] for s in self.steps}
        for sid in failing:
            if state_of.get(sid) == "succeeded":
                state_of[sid] = "failed"
        state, _ = run_verdict(
            [written[s.id] for s in self.steps],
            state_of,
            {s.id: s.reason for s in self.steps},
            {s.id: s.on_failure for s in self.steps},
        )
        return state, [sid for sid, st in state_of.items() if st == "failed"]

    @property
    def exit_status(self) -> int:
        """`irbook plan`'s exit status: 0 the run succeeds, 3 it succeeds with failed
        steps (as `irbook run` exits), 4 it fails. 1 stays a user error."""
        state, _ = self._verdict(())
        return {"succeeded": 0, "partial": 3}.get(state, 4)

    def step(self, step_id: str) -> PlannedStep:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def as_dict(self) -> dict[str, Any]:
        pb = self.playbook
        data = {
            "apiVersion": "irbook/v1",
            "kind": "Plan",
            "playbook": {
                "id": pb.metadata.id,
                "title": pb.metadata.title,
                "severity": pb.metadata.severity,
                "rollback": pb.rollback,
            },
            "alert": {k: self.alert.get(k) for k in ("id", "source", "type", "title", "severity")},
            "run": self.run,
            "inputs": {
                name: (REDACTED if pb.inputs[name].secret and value is not None else value)
                for name, value in self.inputs.items()
            },
            "outcome": self.outcome,
            "preflight": [c.as_dict() for c in self.preflight],
            "live_outcome": self.live_outcome,
            "steps": [_step_dict(s) for s in self.steps],
            "outputs": self.outputs,
            "summary": self.summary(),
        }
        redacted: dict[str, Any] = redact(data, self.secrets)
        return redacted

    def summary(self) -> dict[str, int]:
        return {
            "steps": len(self.steps),
            "run": sum(1 for s in self.steps if s.status == "run"),
            "skipped": sum(1 for s in self.steps if s.status in ("skip", "blocked")),
            "failed": sum(1 for s in self.steps if s.status == "fail"),
            "calls": sum(len(s.calls) for s in self.steps if s.status != "skip"),
            "approvals": sum(1 for s in self.steps if s.approval and s.status == "run"),
        }


def _step_dict(step: PlannedStep) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": step.id,
        "action": step.action,
        "effect": step.effect,
        "needs": step.needs,
        "status": step.status,
        "reason": step.reason or None,
        "on_failure": step.on_failure,
        "retries": step.retries,
        "timeout_seconds": step.timeout,
        "approval": step.approval,
        "permissions": list(step.permissions),
        "iterations": [
            {
                "item": it.item,
                "params": it.params,
                "calls": [c.as_dict() for c in it.calls],
                "simulated_result": it.result,
                "compensation": it.compensation,
                "error": it.error,
            }
            for it in step.iterations
        ],
        "compensation": step.compensation,
        "irreversible": step.irreversible,
    }
    return out


def secret_forms(secret: str) -> list[str]:
    """The ways a secret is written once something quotes it: as is, inside a JSON string
    (quotes and backslashes escaped, non-ASCII as \\u00e9 or kept), inside a Python repr
    of either quote style or an ascii(), inside a bytes repr, percent-encoded; and the
    JSON and repr of each of those, for a message that quotes a quoted value."""
    if not secret:
        return []

    def once(text: str) -> set[str]:
        out = {
            text,
            json.dumps(text)[1:-1],
            json.dumps(text, ensure_ascii=False)[1:-1],
            repr(text + "'\"")[1:-4],  # '...' quoting: \' escaped, " kept
            ascii(text + "'\"")[1:-4],
        }
        if '"' not in text:  # "..." quoting: ' kept
            out.add(repr(text + "'")[1:-2])
        return out

    found = set()
    for form in once(secret):
        found |= once(form)
    found.add(repr(secret.encode("utf-8") + b"'\"")[2:-4])
    found.add(quote(secret, safe=""))
    found.add(quote_plus(secret, safe=""))
    return sorted(found, key=len, reverse=True)  # longest first: a form may hold another


@functools.lru_cache(maxsize=64)
def _secret_pattern(secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    """One pattern per set of secrets (one run's): built once, one scan per string."""
    forms = sorted({f for s in secrets for f in secret_forms(s)}, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, forms))) if forms else None


def redact(value: Any, secrets: list[str] | tuple[str, ...]) -> Any:
    """Replace every occurrence of a secret value, in any form `secret_forms` lists, in
    strings, recursively (dicts, lists, tuples, dataclasses)."""
    if not secrets:
        return value
    pattern = _secret_pattern(tuple(secrets))
    if pattern is None:
        return value
    return _redact(value, pattern)


def _redact(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(REDACTED, value)
    if isinstance(value, dict):
        return {k: _redact(v, pattern) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, pattern) for v in value]
    if isinstance(value, tuple):
        return tuple(_redact(v, pattern) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {
            f.name: _redact(getattr(value, f.name), pattern)
            for f in dataclasses.fields(value)
            if f.init
        }
        return dataclasses.replace(value, **changes)
    return value


def output_reads(step: Step) -> frozenset[str]:
    """The steps whose outputs this step cannot do without.

    Every `steps.<id>...` its `if`, `for_each` and `with` read, except `steps.<id>.status`
    and the first argument of `default(...)`, where the author has said what to use when
    the value is absent.
    """
    found: set[str] = set()
    for text in _template_strings((step.if_, step.for_each, step.with_)):
        try:
            template = expr.parse_template(text)
        except expr.ExprError:
            continue  # the loader reports it; nothing is read
        for node, _ in template.expressions:
            for ref in expr.references(node, fallbacks=False):
                path = ref.path
                if path[0] == "steps" and len(path) > 1 and path[2:3] != ("status",):
                    found.add(path[1])
    found.discard(step.id)
    return frozenset(found)


def _template_strings(value: Any) -> list[str]:
    """Every string holding an expression, anywhere in a step's nested values."""
    out: list[str] = []
    stack = [value]
    while stack:
        cur = stack.pop()
        if isinstance(cur, str):
            if expr.OPEN in cur:
                out.append(cur)
        elif isinstance(cur, dict):
            stack.extend(cur.values())
        elif isinstance(cur, list | tuple):
            stack.extend(cur)
    return out


# What stops a ready step before its own `if`: the one rule for plan, dry run, drill, live.
BLOCKING_STATES = ("rejected", "cancelled")
UNUSABLE_OUTPUTS = ("failed", "skipped", "rejected", "cancelled")
# What failure() sees upstream: a step that failed, or whose approval was refused.
FAILED_STATES = ("failed", "rejected")


def upstream_block(
    step: Step,
    state_of: Mapping[str, str],
    reason_of: Mapping[str, str],
    on_failure_of: Mapping[str, str],
) -> str | None:
    """Why a ready step must be skipped because of the steps before it, or None.

    `state_of` holds final step states (succeeded, failed, skipped, rejected, cancelled).
    A step is skipped when a step it needs was rejected or cancelled, failed with
    on_failure: abort, or was itself skipped for such a reason ("upstream ..."), unless
    its `if` calls failure() or always(), which run after such a step (a cancelled one
    still stops them); and when it reads the outputs of a step that did not succeed, so
    that it never runs with blanks (a comment on ticket None), whatever its `if`.
    """
    handles = expr.handles_failure(step.if_)
    for need in step.needs:
        up = state_of.get(need, "pending")
        if up == "cancelled" or (
            not handles
            and (
                up in BLOCKING_STATES
                or (up == "failed" and on_failure_of.get(need, "abort") == "abort")
                or (up == "skipped" and reason_of.get(need, "").startswith("upstream"))
            )
        ):
            return f"upstream step '{need}' {up}"
    for read in sorted(output_reads(step)):
        up = state_of.get(read, "")
        if up in UNUSABLE_OUTPUTS:
            return f"reads the outputs of step '{read}', which {up}"
    return None


def upstream_of(steps: Mapping[str, Step]) -> dict[str, set[str]]:
    """Every step's transitive `needs` (unknown names and cycles are reported elsewhere):
    the upstream that success(), failure() and always() look at."""
    out: dict[str, set[str]] = {}
    for step_id in steps:
        seen: set[str] = set()
        todo = [n for n in steps[step_id].needs if n in steps]
        while todo:
            need = todo.pop()
            if need in seen or need == step_id:
                continue
            seen.add(need)
            todo.extend(n for n in steps[need].needs if n in steps)
        out[step_id] = seen
    return out


def upstream_failures(upstream: Collection[str], steps_ctx: Mapping[str, Any]) -> list[str]:
    """The failed or rejected steps among `upstream`, as "step 'revoke' rejected", in the
    order of `steps_ctx` (the run's order): what failure() is true for."""
    out = []
    for sid, data in steps_ctx.items():
        status = data.get("status") if isinstance(data, Mapping) else None
        if sid in upstream and status in FAILED_STATES:
            out.append(f"step '{sid}' {status}")
    return out


def run_verdict(
    order: list[Step],
    state_of: Mapping[str, str],
    reason_of: Mapping[str, str],
    on_failure_of: Mapping[str, str],
) -> tuple[str, str]:
    """(run state, message) from the final step states: the one verdict of a run.

    failed: a step with on_failure: abort failed, or a step never ended; rejected: an
    approval was refused; partial: steps with on_failure: continue failed (shown as
    "succeeded with N failed steps"); succeeded: nothing failed.
    """
    for step in order:
        if state_of.get(step.id) == "failed" and on_failure_of.get(step.id) == "abort":
            return "failed", f"step '{step.id}' failed: {reason_of.get(step.id, '')}"
    rejected = [s.id for s in order if state_of.get(s.id) == "rejected"]
    if rejected:
        return "rejected", f"approval rejected for step '{rejected[0]}'"
    never = [s.id for s in order if state_of.get(s.id) not in FINAL_STEP_STATES]
    if never:
        return "failed", f"steps never ran: {', '.join(never)}"
    failed = [s.id for s in order if state_of.get(s.id) == "failed"]
    if failed:
        return "partial", failed_steps_message(failed)
    return "succeeded", ""


FINAL_STEP_STATES = ("succeeded", "failed", "skipped", "rejected", "cancelled")


def _outcome_words(verdict: tuple[str, list[str]]) -> str:
    """A plan's verdict as its summary line says it: succeeds, succeeds with N failed
    steps, or fails."""
    state, failed = verdict
    if state == "partial":
        return f"succeeds with {failed_steps_message(failed).split(':', 1)[0]}"
    return "succeeds" if state == "succeeded" else "fails"


def failed_steps_message(failed: list[str]) -> str:
    noun = "step" if len(failed) == 1 else "steps"
    return f"{len(failed)} failed {noun}: {', '.join(failed)}"


def execution_order(playbook: Playbook) -> list[Step]:
    """Topological order; among steps that are ready, the one written first goes first."""
    index = {s.id: i for i, s in enumerate(playbook.steps)}
    pending = {s.id: set(s.needs) for s in playbook.steps}
    dependents: dict[str, list[str]] = {s.id: [] for s in playbook.steps}
    for step in playbook.steps:
        for need in step.needs:
            dependents[need].append(step.id)
    ready = [index[sid] for sid, needs in pending.items() if not needs]
    heapq.heapify(ready)
    order: list[Step] = []
    while ready:
        step = playbook.steps[heapq.heappop(ready)]
        order.append(step)
        for dep in dependents[step.id]:
            pending[dep].discard(step.id)
            if not pending[dep]:
                heapq.heappush(ready, index[dep])
    return order


def incident_key(playbook_id: str, alert_id: str) -> str:
    digest = hashlib.sha256(f"{playbook_id}\x00{alert_id}".encode()).hexdigest()
    return f"irbook-{digest[:12]}"


def manual_alert() -> Alert:
    return Alert(id="manual", source="manual", title="Started by hand")


def build_plan(
    playbook: Playbook,
    alert: Alert | None = None,
    params: Mapping[str, str] | None = None,
    *,
    registry: Registry = REGISTRY,
    run_id: str = "plan",
    started_by: str = "",
) -> Plan:
    alert = alert or manual_alert()
    alert_ctx = alert.as_context()
    inputs = resolve_inputs(playbook, alert_ctx, params or {})
    secrets = [
        str(inputs[name])
        for name, spec in playbook.inputs.items()
        if spec.secret and inputs.get(name) not in (None, "")
    ]
    key = incident_key(playbook.metadata.id, alert.id)
    run_ctx = {
        "id": run_id,
        "mode": "plan",
        "dry_run": True,
        "playbook": playbook.metadata.id,
        "started_by": started_by,
        "incident_key": key,
        "severity": playbook.metadata.severity,
    }
    steps_ctx: dict[str, dict[str, Any]] = {}
    planned: dict[str, PlannedStep] = {}
    upstream = upstream_of({s.id: s for s in playbook.steps})
    for step in execution_order(playbook):
        spec = registry.get(step.action)
        ps = PlannedStep(
            id=step.id,
            action=step.action,
            effect=spec.effect,
            needs=list(step.needs),
            status="run",
            compensation=spec.compensation,
            irreversible=spec.irreversible,
            on_failure=step.on_failure or spec.on_failure,
            retries=step.retries,
            timeout=step.timeout,
            permissions=spec.permissions,
        )
        planned[step.id] = ps
        if step.needs_approval or spec.key == "core.approval":
            gate = step.approval
            ps.approval = {
                "timeout": format_duration(gate.timeout if gate else 15 * 60.0),
                "on_timeout": gate.on_timeout if gate else "reject",
                "approvers": list(gate.approvers) if gate else [],
            }
        context = {
            "inputs": inputs,
            "alert": alert_ctx,
            "run": {**run_ctx, "step": step.id},
            "steps": steps_ctx,
        }
        _plan_step(step, spec, ps, planned, context, run_ctx, upstream[step.id])
        steps_ctx[step.id] = {
            "status": PLANNED_STATE[ps.status],
            "outputs": _outputs(ps, step),
        }
    outputs: dict[str, Any] = {}
    final = {"inputs": inputs, "alert": alert_ctx, "run": run_ctx, "steps": steps_ctx}
    for name, value in playbook.outputs.items():
        try:
            outputs[name] = expr.render(value, final)
        except expr.ExprError as exc:
            outputs[name] = None
            raise PlanError(f"output '{name}': {exc.message}") from None
    order = [planned[s.id] for s in execution_order(playbook)]
    return Plan(playbook, alert_ctx, inputs, run_ctx, order, outputs, secrets)


def _outputs(ps: PlannedStep, step: Step) -> Any:
    if ps.status != "run":
        return None
    results = [it.result for it in ps.iterations]
    if step.for_each is not None:
        return results
    return results[0] if results else None


def select_items(
    step: Step, context: Mapping[str, Any], upstream: Collection[str] = ()
) -> tuple[StepStatus, str, list[Any]]:
    """Evaluate a ready step's `if` and `for_each` over the run so far.

    ("run", why, items), with [None] for a step without for_each and `why` empty unless
    its `if` calls a status function (then it says what upstream made it run: "failure()
    — step 'revoke' failed"); or ("skip" | "fail", reason, []). `upstream` is the step's
    transitive needs, whose states in context["steps"] the status functions read. The
    plan and the live or dry run decide with this one function, so they follow the same
    branches.
    """
    why = ""
    if step.if_ is not None:
        failures = upstream_failures(upstream, context.get("steps") or {})
        scope = {**context, expr.STATUS: "failure" if failures else "success"}
        try:
            cond = expr.render(step.if_, scope)
        except expr.ExprError as exc:
            return "fail", f"if: {exc.message}", []
        if not expr.truthy(cond):
            reason = f"if {step.if_} is false" if isinstance(step.if_, str) else "if: false"
            return "skip", reason, []
        if expr.handles_failure(step.if_):
            called = sorted(
                {
                    f"{call.func}()"
                    for node, _ in expr.parse_template(str(step.if_)).expressions
                    for call in expr.status_calls(node)
                }
            )
            shown = ", ".join(failures[:3]) + (", ..." if len(failures) > 3 else "")
            why = f"{' '.join(called)} — {shown or 'nothing upstream failed'}"
    if step.for_each is None:
        return "run", why, [None]
    try:
        each = expr.render(step.for_each, context)
    except expr.ExprError as exc:
        return "fail", f"for_each: {exc.message}", []
    if each is None:
        each = []
    if not isinstance(each, list):
        return "fail", f"for_each yielded {expr.type_name(each)}, not a list", []
    if not each:
        return "skip", "for_each is empty", []
    return "run", why, each


# A planned step's status as the run would record its state.
PLANNED_STATE = {"run": "succeeded", "skip": "skipped", "fail": "failed", "blocked": "skipped"}


def _plan_step(
    step: Step,
    spec: ActionSpec,
    ps: PlannedStep,
    planned: dict[str, PlannedStep],
    context: dict[str, Any],
    run_ctx: dict[str, Any],
    upstream: Collection[str],
) -> None:
    state_of = {sid: PLANNED_STATE[p.status] for sid, p in planned.items() if sid != step.id}
    reason_of = {sid: p.reason for sid, p in planned.items()}
    on_failure_of = {sid: p.on_failure for sid, p in planned.items()}
    blocked = upstream_block(step, state_of, reason_of, on_failure_of)
    if blocked is not None:
        ps.status = "blocked" if blocked.startswith("upstream") else "skip"
        ps.reason = blocked
        return
    verdict, reason, items = select_items(step, context, upstream)
    ps.reason = reason
    if verdict != "run":
        ps.status = verdict
        return
    run = RunInfo(
        run_id=str(run_ctx["id"]),
        playbook_id=str(run_ctx["playbook"]),
        step_id=step.id,
        dry_run=True,
        incident_key=str(run_ctx["incident_key"]),
        severity=str(run_ctx["severity"]),
    )
    for item in items:
        scope = dict(context)
        if step.for_each is not None:
            scope["item"] = item
        iteration = Iteration(item=item, params={}, calls=[], result=None)
        ps.iterations.append(iteration)
        try:
            rendered = expr.render(step.with_, scope)
        except expr.ExprError as exc:
            iteration.error = f"with: {exc.message}"
            break
        iteration.params = spec.shown(rendered) if isinstance(rendered, dict) else rendered
        try:
            params = spec.params.model_validate(rendered)
        except ValidationError as exc:
            iteration.error = validation_message(spec, exc)
            break
        iteration.params = spec.shown(
            params.model_dump(mode="json", exclude_none=True, by_alias=True)
        )
        try:
            iteration.calls = spec.plan(params)
            result = spec.simulated(params, run)
        except ActionFailed as exc:
            iteration.error = exc.message
            break
        except IrbookError as exc:
            iteration.error = exc.message
            break
        except Exception as exc:  # an action's planner bug: this step fails, with the
            # action named and the text redacted like every other error in the plan
            iteration.error = f"{spec.key}: planning failed: {type(exc).__name__}: {exc}"
            break
        iteration.result = result.model_dump(mode="json")
        if spec.compensation is not None:
            iteration.compensation = {
                "action": spec.compensation,
                "with": spec.compensation_params(params, result),
            }
    errors = [it.error for it in ps.iterations if it.error]
    if errors:
        ps.status = "fail"
        ps.reason = errors[0]


def validation_message(spec: ActionSpec, exc: ValidationError) -> str:
    """A parameter error in one line: the action, the parameter, what is wrong."""
    first = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = str(first["msg"]).removeprefix("Value error, ")
    return f"{spec.key}: parameter '{loc}': {msg}" if loc else f"{spec.key}: {msg}"


# --- text rendering ----------------------------------------------------------------


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_text(plan: Plan) -> str:
    data = plan.as_dict()  # redacted
    pb = data["playbook"]
    lines = [f"Plan for {pb['id']}: {pb['title']} (severity {pb['severity']})"]
    alert = data["alert"]
    if alert.get("id") != "manual":
        lines.append(
            f"Alert: {alert.get('source')} {alert.get('id')} {alert.get('type') or ''}".rstrip()
        )
        if alert.get("title"):
            lines.append(f"       {_short(alert['title'])}")
    if data["inputs"]:
        lines.append("Inputs:")
        for name, value in data["inputs"].items():
            lines.append(f"  {name} = {_short(value) if value != '' else '(empty)'}")
    lines.append("Steps, in execution order:")
    for n, step in enumerate(data["steps"], 1):
        status = {
            "run": "runs",
            "skip": "skipped",
            "fail": "FAILS",
            "blocked": "skipped",
        }[step["status"]]
        gate = ""
        if step["approval"] and step["status"] == "run":
            appr = step["approval"]
            gate = f", after approval (timeout {appr['timeout']}, then {appr['on_timeout']})"
        lines.append(f"  {n}. {step['id']}  {step['action']}  [{step['effect']}]  {status}{gate}")
        if step["reason"]:
            lines.append(f"       why: {step['reason']}")
        if step["status"] in ("skip", "blocked"):
            continue
        for it in step["iterations"]:
            if it["item"] is not None:
                lines.append(f"       for item {_short(it['item'], 80)}")
            if it["params"]:
                shown = ", ".join(f"{k}={_short(v, 60)}" for k, v in it["params"].items())
                lines.append(f"       with {shown}")
            for call in it["calls"]:
                lines.append(f"       call {call['call']} {_short(call['params'], 100)}")
            if it["compensation"]:
                comp = it["compensation"]
                lines.append(f"       undo {comp['action']} {_short(comp['with'], 100)}")
        if step["irreversible"]:
            lines.append(f"       irreversible: {step['irreversible']}")
        if step["status"] == "fail" and step["on_failure"] == "continue":
            lines.append("       on_failure: continue (the run goes on)")
    if data["outputs"]:
        lines.append("Outputs:")
        for name, value in data["outputs"].items():
            lines.append(f"  {name} = {_short(value) if value is not None else '(none)'}")
    missing: list[str] = []
    if plan.preflight:
        from irbook.preflight import missing_steps
        from irbook.preflight import render as render_preflight

        lines.append(render_preflight(plan.preflight))
        missing = missing_steps(plan.preflight)
    s = data["summary"]
    verdict = f"the run {data['outcome']}."
    if missing:
        # the plan's own verdict holds only once the configuration is there
        verdict = (
            f"the run {data['outcome']} once configured; live here it {data['live_outcome']} "
            f"(missing configuration for: {', '.join(missing)})."
        )
    lines.append(
        f"Summary: {s['steps']} steps, {s['run']} run, {s['skipped']} skipped, "
        f"{s['failed']} fail; {s['calls']} API calls; {s['approvals']} approvals; {verdict}"
    )
    return "\n".join(lines)


def as_json(plan: Plan) -> str:
    return json.dumps(plan.as_dict(), indent=2, sort_keys=False, default=str)


def model_dump(value: BaseModel) -> dict[str, Any]:
    return value.model_dump(mode="json")
