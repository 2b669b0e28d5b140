"""The Prefect side of a run: the one flow (`run_playbook`, started in this process by
`execute` or by a worker for a deployment), the step task, approvals by pause/resume,
rollback.

Import this module only after `irbook_flows.server.ensure_api()`: Prefect reads its
settings at import time.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, cast
from uuid import UUID

from prefect import flow, tags, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.futures import PrefectFuture
from prefect.input import RunInput
from prefect.states import Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from irbook.db import integrity_errors
from irbook.errors import IrbookError
from irbook.model import Step
from irbook.model.base import ID_PATTERN
from irbook.plan import redact
from irbook.registry import REGISTRY, ActionContext, RunInfo
from irbook.runs import RunStore, rollback_outcome, step_label, verdict_line, verdict_text
from irbook_flows import FLOW_NAME
from irbook_flows.engine import (
    MAX_WORKERS,
    Engine,
    RunSpec,
    drop_spec,
    register_spec,
    registered,
    run_scrubbed,
    run_step,
    spec_for,
)
from irbook_flows.executors import Decision, Wiring, wire
from irbook_flows.jsonflow import json_flow
from irbook_flows.server import leased_run_settings
from irbook_flows.start import Execute, playbook_digest, start_run

MODES = ("live", "dry-run")


class ApprovalInput(RunInput):
    """What an approver sends to resume a paused run. Deny by default."""

    approved: bool = False
    approver: str = ""
    comment: str = ""
    # The run record's approval request (irbook approve, Slack); 0 from the Prefect UI,
    # whose resume is then only the name typed in (see irbook.policy).
    ticket: int = 0


@dataclass
class Outcome:
    run_id: str
    state: str  # succeeded | failed | rejected | cancelled
    message: str
    flow_run_id: str | None
    outputs: dict[str, Any]
    compensations: list[dict[str, Any]]


@task(name="irbook-step", cache_policy=NO_CACHE, persist_result=False, log_prints=False)
def step_task(run_id: str, step_id: str, index: int, params: dict[str, Any]) -> dict[str, Any]:
    # an exception quoting a secret of the run is redacted before Prefect records it
    result: dict[str, Any] = run_scrubbed(run_id, lambda: run_step(run_id, step_id, index, params))
    return result


@task(name="irbook-undo", cache_policy=NO_CACHE, persist_result=False)
def undo_task(
    run_id: str, action_key: str, params: dict[str, Any], dry_run: bool
) -> dict[str, Any]:
    """Run one compensation; in a dry run, only its planned calls. An error quoting a
    secret of the run is redacted before Prefect records it."""
    return cast(
        "dict[str, Any]",
        run_scrubbed(run_id, lambda: _undo(run_id, action_key, params, dry_run)),
    )


def _undo(run_id: str, action_key: str, params: dict[str, Any], dry_run: bool) -> dict[str, Any]:
    action = REGISTRY.get(action_key)
    model = action.params.model_validate(params)
    info = RunInfo(run_id=run_id, dry_run=dry_run)
    calls = [c.as_dict() for c in action.plan(model)]
    if dry_run:
        return {"outputs": action.simulated(model, info).model_dump(mode="json"), "calls": calls}
    try:
        clients = spec_for(run_id).clients
    except KeyError:  # `irbook rollback` later, in another process
        from irbook_actions.clients import LiveClients

        clients = LiveClients()
    result = action.func(ActionContext(run=info, clients=clients), model)
    return {"outputs": result.model_dump(mode="json"), "calls": calls}


def quiet_console() -> None:
    """Keep Prefect's console handler for critical problems only: the CLI prints its own
    step table, and a failing step must not print a Python traceback at the user. Logs
    still reach the Prefect API and its UI."""
    import logging

    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger()]
    loggers += [
        item
        for item in logging.Logger.manager.loggerDict.values()
        if isinstance(item, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler):
                handler.setLevel(logging.CRITICAL + 1)


def _flow_run_name() -> str:
    from prefect.runtime import flow_run

    given = flow_run.parameters
    run_id = str(given.get("run_id", ""))
    try:
        spec = spec_for(run_id)
    except KeyError:  # on a worker: the run is planned inside the flow
        return f"{given.get('mode')} {given.get('playbook_id')} · {run_id}"
    alert = spec.alert
    where = f"{alert.source}:{alert.id}" if alert.source != "manual" else "manual"
    prefix = spec.wired().executor.label
    name = f"{prefix}{spec.playbook.metadata.id} · {where[:60]} · {run_id}"
    return str(redact(name, spec.secrets))


def _pause(spec: RunSpec) -> Any:
    asked: dict[str, int] = {}

    def pause(step: Step, timeout: float) -> Decision:
        # A gate may pause again (a refused attempt, a two-person step): each pause has
        # its own key, which Prefect would otherwise treat as done already.
        asked[step.id] = asked.get(step.id, 0) + 1
        key = f"approve-{step.id}" + (f"-{asked[step.id]}" if asked[step.id] > 1 else "")
        stop = threading.Event()
        if spec.prompt_approval is not None and asked[step.id] == 1:
            prompt = spec.prompt_approval

            def ask() -> None:
                decision = prompt(spec.run_id, step, {"timeout": timeout})
                if decision is not None and not stop.is_set():
                    try:
                        decision.ticket = spec.store.request_approval(
                            spec.run_id,
                            step.id,
                            decision.approver,
                            decision.approved,
                            decision.comment,
                            "terminal",
                        )
                        resume(spec, decision, wait_paused=5)
                    except Exception as exc:  # decided elsewhere first
                        spec.store.event(spec.run_id, "prompt-ignored", step.id, reason=str(exc))
                        return
                    # say what the run made of it: a refused or counted answer is no decision
                    said = spec.store.approval_answer(spec.run_id, decision.ticket, 30)
                    detail = (said or {}).get("detail") or {}
                    if spec.on_event is not None and detail.get("outcome") == "refused":
                        why = f"refused: {detail.get('reason')}"
                        spec.on_event("step", step.id, "awaiting-approval", why)
                    elif spec.on_event is not None and detail.get("outcome") == "recorded":
                        more = f"recorded; waiting for {detail.get('waiting_for')} more approver(s)"
                        spec.on_event("step", step.id, "awaiting-approval", more)

            threading.Thread(target=ask, daemon=True, name=f"approve-{step.id}").start()
        try:
            answer = pause_flow_run(
                wait_for_input=ApprovalInput.with_initial_data(
                    description=f"Approve step '{step.id}' ({step.action})?",
                ),
                timeout=max(1, int(timeout)),
                poll_interval=max(1, int(spec.poll_interval)),
                key=key,
            )
        except FlowPauseTimeout:
            answer = None
            _running_again()  # else the run's next approval cannot pause it
        finally:
            stop.set()
        record = spec.store.run(spec.run_id) or {}
        if record.get("state") == "cancelled":  # `irbook cancel` while paused: act on nothing
            raise RunCancelled(f"run {spec.run_id} was cancelled while waiting for approval")
        if answer is None:
            return Decision(False, "", "", "timeout")
        return Decision(
            bool(answer.approved), answer.approver, answer.comment, "human", int(answer.ticket)
        )

    return pause


def _running_again() -> None:
    """Put a flow run whose pause timed out back to Running. Prefect leaves it Paused, so
    the next `pause_flow_run` of the same run (a second approval) fails with "Cannot pause
    flows that are not currently running"."""
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(context.flow_run.id, Running(), force=True)


class RunCancelled(Exception):
    """Raised in a run's flow when `irbook cancel` ended it elsewhere: nothing more runs,
    and the record keeps saying cancelled."""


def resume(spec_or_flow_run: RunSpec | str, decision: Decision, wait_paused: float = 0) -> None:
    """Resume a paused run with a decision (terminal prompt, `irbook approve`, Slack).

    `wait_paused`: how long to retry while the flow has marked its step waiting but
    Prefect does not show it paused yet (a button pressed the moment it appears)."""
    from prefect.exceptions import NotPausedError
    from prefect.flow_runs import resume_flow_run

    flow_run_id = (
        spec_or_flow_run
        if isinstance(spec_or_flow_run, str)
        else spec_or_flow_run.store.run(spec_or_flow_run.run_id)["flow_run_id"]  # type: ignore[index]
    )
    deadline = time.monotonic() + wait_paused
    while True:
        try:
            resume_flow_run(
                UUID(str(flow_run_id)),
                run_input={
                    "approved": decision.approved,
                    "approver": decision.approver,
                    "comment": decision.comment,
                    "ticket": decision.ticket,
                },
            )
            return
        except NotPausedError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.25)


def _wait_any(futures: list[PrefectFuture[Any]]) -> PrefectFuture[Any]:
    """The first future to finish, with its final state loaded (not the API's lagging view)."""
    inner = {f.wrapped_future: f for f in futures}  # type: ignore[attr-defined]
    done, _ = concurrent.futures.wait(list(inner), return_when=concurrent.futures.FIRST_COMPLETED)
    future = inner[next(iter(done))]
    future.wait()
    return future


@json_flow(  # prefect.flow, but JSON parameters are stored without importing FastAPI
    name=FLOW_NAME,
    flow_run_name=_flow_run_name,
    task_runner=cast(Any, ThreadPoolTaskRunner(max_workers=MAX_WORKERS)),
    persist_result=False,
    validate_parameters=False,
    log_prints=False,
)
def run_playbook(
    playbook_id: str, alert: dict[str, Any], mode: str, run_id: str, source: str = ""
) -> Any:
    """One playbook run for one alert: the same flow in this process and on a worker.

    Started in this process (`irbook run`, the receiver's embedded runner, a drill), the
    run's spec (secret inputs, clients, approvers, listeners) is registered here under
    `run_id` and the parameters only name it. A deployment's flow run on a worker finds
    none: it plans and records the run from the parameters, taking secrets and clients
    from the worker's own environment (`run_deployed`, below). No parameter
    holds a secret: the alert is redacted of the run's secret inputs (see `execute`).
    """
    # Prefect logs a flow's exception with its traceback: redacted, as a task's is.
    if registered(run_id):
        return run_scrubbed(run_id, lambda: _playbook(spec_for(run_id)))
    return on_worker(playbook_id, alert, mode, run_id, source)  # redacts in run_here


def _playbook(spec: RunSpec) -> Any:
    """The flow run's body: the engine's loop, the verdict, rollback, the record's end."""
    run_id = spec.run_id
    executor = spec.wired().executor
    context = FlowRunContext.get()
    if context is not None and context.flow_run is not None:
        spec.store.set_flow_run(run_id, str(context.flow_run.id))

    def submit(step: Step, index: int, params: dict[str, Any]) -> PrefectFuture[Any]:
        name = step.id if step.for_each is None else f"{step.id}[{index}]"
        options: dict[str, Any] = {"task_run_name": name, "retries": step.retries}
        if step.retries:
            # a drill counts the delay on its clock instead of waiting it
            options["retry_delay_seconds"] = executor.retry_delay(step)
        if step.timeout:
            options["timeout_seconds"] = step.timeout
        labels = executor.task_tags(REGISTRY.get(step.action))
        if labels:
            options["tags"] = labels
        task = step_task.with_options(**options)
        return cast(
            "PrefectFuture[Any]", task.submit(run_id, step.id, index, cast(Any, quote(params)))
        )

    engine = Engine(spec, submit, _wait_any)
    engine.run()
    state, message = engine.verdict()
    compensations = engine.compensations() if state == "failed" else []
    if compensations:
        spec.store.event(run_id, "rollback-plan", None, plan=compensations)
        if spec.playbook.rollback == "auto":
            _roll_back(spec, compensations)
    shown = redact(message, spec.secrets)
    spec.store.finish_run(run_id, state, shown, engine.run_outputs())
    said = verdict_text(state, shown)
    engine.ended(verdict_line(state, shown))
    if state == "succeeded":
        return Completed(message="playbook succeeded")
    if state == "partial":
        return Completed(message=f"playbook {said}", name="Partial")
    return Failed(message=shown, name="Rejected" if state == "rejected" else "Failed")


@dataclass
class UndoTally:
    """What a rollback did: compensations that changed something, found nothing to undo,
    or failed (each failure as "undo:<step>: <error>")."""

    undone: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)


def skip_reason(entry: dict[str, Any]) -> str:
    """Why a compensation has nothing to undo, known before it runs ("" if it has work).

    The forward action says so in the compensation's parameters (`skip`), for example
    a key that was already inactive before the run deactivated it."""
    why = entry.get("with", {}).get("skip")
    return str(why) if why else ""


def _undo_all(
    run_id: str, plan: list[dict[str, Any]], dry_run: bool, on_event: Any, store: RunStore
) -> UndoTally:
    """Run compensations newest first; one failure does not stop the others."""
    tally = UndoTally()
    for entry in plan:
        label = "undo:" + step_label(entry["step"], entry["item"])
        why = skip_reason(entry)
        if why:  # nothing was changed by the step, so nothing is called to undo it
            tally.skipped += 1
            store.event(
                run_id, "compensation-skipped", entry["step"], action=entry["action"], reason=why
            )
            if on_event is not None:
                on_event("undo", entry["step"], "skipped", why)
            continue
        try:
            undo = undo_task.with_options(task_run_name=label)
            state = cast(
                "State[Any]",
                undo(
                    run_id,
                    entry["action"],
                    cast(Any, quote(entry["with"])),
                    dry_run,
                    return_state=True,
                ),
            )
            result = state.result()
        except Exception as exc:  # ActionFailed or the API's error: recorded, not raised
            tally.failures.append(f"{label}: {exc}")
            store.event(run_id, "compensation-failed", entry["step"], error=str(exc))
            if on_event is not None:
                on_event("undo", entry["step"], "failed", str(exc))
            continue
        if (result.get("outputs") or {}).get("already_done") and not dry_run:
            # it ran and found the change undone already (by hand, or an earlier rollback)
            why = f"{entry['action']} found nothing to change"
            tally.skipped += 1
            store.event(
                run_id,
                "compensation-skipped",
                entry["step"],
                action=entry["action"],
                reason=why,
                calls=result.get("calls"),
            )
            if on_event is not None:
                on_event("undo", entry["step"], "skipped", why)
            continue
        tally.undone += 1
        store.event(
            run_id,
            "compensated",
            entry["step"],
            action=entry["action"],
            dry_run=dry_run,
            calls=result.get("calls"),
        )
        if on_event is not None:
            on_event("undo", entry["step"], "succeeded", entry["action"])
    return tally


def record_rollback(store: RunStore, run_id: str, tally: UndoTally, by: str) -> str:
    """Put a live rollback in the run's record (and so in the audit chain)."""
    outcome = rollback_outcome(tally.undone, tally.skipped, len(tally.failures))
    store.event(
        run_id,
        "rollback",
        None,
        outcome=outcome,
        by=by,
        undone=tally.undone,
        skipped=tally.skipped,
        failed=len(tally.failures),
    )
    return outcome


def _roll_back(spec: RunSpec, plan: list[dict[str, Any]]) -> None:
    tally = _undo_all(spec.run_id, plan, spec.dry_run, spec.on_event, spec.store)
    if not spec.dry_run:
        record_rollback(spec.store, spec.run_id, tally, "auto")


# The store `irbook rollback` passes to its flow run in this process. A database URL is
# never a flow parameter: Prefect keeps parameters in its database, and a PostgreSQL URL
# may hold a password; only a SQLite file's path is passed (as before), else "".
_ROLLBACK_STORE: ContextVar[RunStore | None] = ContextVar("irbook_rollback_store", default=None)


@flow(name="irbook-rollback", persist_result=False, validate_parameters=False, log_prints=False)
def rollback_flow(run_id: str, plan: list[dict[str, Any]], dry_run: bool, store_path: str) -> Any:
    """`store_path`: a SQLite file, or "" for the caller's store (else the database
    IRBOOK_DATABASE_URL names in this process's environment)."""
    store = RunStore(store_path) if store_path else _ROLLBACK_STORE.get() or RunStore()
    tally = _undo_all(run_id, plan, dry_run, None, store)
    if tally.failures:
        return Failed(message=f"{len(tally.failures)} compensation(s) failed: {tally.failures[0]}")
    return Completed(message=f"{tally.undone} compensation(s) ran, {tally.skipped} skipped")


def roll_back_run(
    record: dict[str, Any],
    plan: list[dict[str, Any]],
    *,
    dry_run: bool,
    out: Any,
    store: RunStore | None = None,
    by: str = "",
) -> list[str]:
    """`irbook rollback`: undo a finished run's mutating steps, newest first.

    A live rollback is recorded on the run ("rollback" event: rolled back, partially
    rolled back or rollback failed), which `irbook runs` shows beside the run's verdict."""
    store = store or RunStore()
    run_id = str(record["id"])
    mode = "DRY RUN " if dry_run else ""
    out.write(f"{mode}rollback of run {run_id} ({len(plan)} compensations, newest first)\n")
    seen = store.events(run_id)
    after = seen[-1]["seq"] if seen else 0
    with tags(
        "irbook", "rollback", f"playbook:{record['playbook_id']}", "dry-run" if dry_run else "live"
    ):
        named = rollback_flow.with_options(flow_run_name=f"{mode}rollback of {run_id}")
        path = store.path if store.dialect == "sqlite" else ""
        token = _ROLLBACK_STORE.set(store)
        try:
            state = cast(
                "State[Any]",
                named(run_id, cast(Any, quote(plan)), dry_run, path, return_state=True),
            )
        finally:
            _ROLLBACK_STORE.reset(token)
    marks = {"compensated": "✓", "compensation-skipped": "-", "compensation-failed": "✗"}
    tally = UndoTally()
    for event in store.events(run_id, after=after):
        if event["kind"] not in marks:
            continue
        detail = event["detail"]
        if event["kind"] == "compensated":
            tally.undone += 1
            text = str(detail.get("action"))
        elif event["kind"] == "compensation-skipped":
            tally.skipped += 1
            text = f"{detail.get('action')} skipped: {detail.get('reason')}"
        else:
            tally.failures.append(f"{event['step_id']}: {detail.get('error')}")
            text = f"failed: {detail.get('error')}"
        out.write(f"  {marks[event['kind']]} {event['step_id']}: {text}\n")
    if not state.is_completed() and not tally.failures:
        tally.failures.append(state.message or "rollback failed")
    if not dry_run:
        record_rollback(store, run_id, tally, by or "unknown")
    out.write(rollback_summary(tally, dry_run) + "\n")
    return tally.failures


def rollback_summary(tally: UndoTally, dry_run: bool) -> str:
    """The last line of a rollback: what changed, what had nothing to undo, what failed."""
    verb = "would undo" if dry_run else "undone"
    counts = f"{tally.undone} {verb}"
    if tally.skipped:
        counts += f", {tally.skipped} skipped (nothing to undo)"
    if tally.failures:
        said = rollback_outcome(tally.undone, tally.skipped, len(tally.failures))
        return f"{said}: {counts}, {len(tally.failures)} failed ({tally.failures[0]})"
    if not tally.undone:
        return f"rollback changed nothing: {counts}"
    return f"{'DRY RUN ' if dry_run else ''}rollback done: {counts}"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so the run ends the same way: a
    killed `irbook run` must not leave its record `running` forever."""


def may_start(spec: RunSpec) -> str:
    """Judge and record the run's start (who, grant, scope): "" or why it is refused.

    Every start passes here (the CLI, webhooks through the receiver or a deployment);
    a drill's run is started by its scenario, whose runner's `drill` grant `irbook
    drill` checked. `irbook rollback` reads the scope from this record."""
    from irbook import policy as access

    book = spec.playbook.metadata
    executor = _wired(spec).executor
    scope = access.Scope(book.id, book.severity, executor.mode)
    ruling = executor.start_ruling(spec.started_by)
    if ruling is None:
        who = access.Identity.parse(spec.started_by)
        ruling = access.decide(spec.policy, who, access.run_grant(executor.mode), scope)
    kind = "run-allowed" if ruling.allowed else "run-refused"
    spec.store.event(spec.run_id, kind, None, **ruling.as_dict(), scope=vars(scope))
    return "" if ruling.allowed else f"refused by the policy: {ruling.reason}"


def execute(spec: RunSpec, extra_tags: list[str] | None = None) -> Outcome:
    """Run a playbook as a Prefect flow run in this process; returns when it ends."""
    refused = may_start(spec)
    if refused:
        spec.store.finish_run(spec.run_id, "rejected", refused)
        return Outcome(spec.run_id, "rejected", refused, None, {}, [])
    mode = _wired(spec).executor.mode
    register_spec(spec)
    labels = ["irbook", f"playbook:{spec.playbook.metadata.id}", mode, *(extra_tags or [])]
    # The parameters name the run (its spec stays here): the alert without its raw payload,
    # which may be large and is not needed, redacted of the run's secret inputs.
    alert = redact(spec.alert.model_dump(mode="json", exclude={"raw"}), spec.secrets)
    webhook = spec.started_by.startswith("webhook:")
    source = spec.started_by.removeprefix("webhook:") if webhook else ""
    try:
        with tags(*labels), leased_run_settings(spec.store.owner is not None):
            state = cast(
                "State[Any]",
                run_playbook(
                    spec.playbook.metadata.id,
                    alert,
                    mode,
                    spec.run_id,
                    source,
                    return_state=True,
                ),
            )
    except KeyboardInterrupt as exc:
        how = "cancelled by SIGTERM" if isinstance(exc, Terminated) else "cancelled with Ctrl-C"
        cancel_run(spec.store, spec.run_id, how)
        raise
    finally:
        drop_spec(spec.run_id)
    return outcome_of(spec.store, spec.run_id, state.message or "the flow run crashed")


def run_here(spec: RunSpec, extra_tags: list[str] | None = None) -> Outcome:
    """Run a playbook inside the flow run already going on (a worker's): the same steps
    as `execute`, without a second flow run."""
    refused = may_start(spec)
    if refused:
        spec.store.finish_run(spec.run_id, "rejected", refused)
        return Outcome(spec.run_id, "rejected", refused, None, {}, [])
    _wired(spec)
    register_spec(spec)
    crashed = "the flow run crashed"
    try:
        _playbook(spec)
    except Exception as exc:  # the record says failed, with the reason (redacted)
        crashed = redact(f"the flow run crashed: {type(exc).__name__}: {exc}", spec.secrets)
    finally:
        drop_spec(spec.run_id)
    return outcome_of(spec.store, spec.run_id, crashed)


def _wired(spec: RunSpec) -> Wiring:
    """Choose the run's executor, approver and listeners, once, as it starts."""
    if spec.wiring is None:
        spec.wiring = wire(spec, _pause(spec))
    return spec.wiring


def outcome_of(store: RunStore, run_id: str, crashed: str) -> Outcome:
    """What a run came to, from its record; a record the flow left running failed."""
    record = store.run(run_id) or {}
    if record.get("state") == "running":  # the flow crashed before it could finish
        store.finish_run(run_id, "failed", crashed)
        record = store.run(run_id) or {}
    rows = [e for e in store.events(run_id) if e["kind"] == "rollback-plan"]
    return Outcome(
        run_id,
        str(record.get("state")),
        str(record.get("message") or ""),
        record.get("flow_run_id"),
        record.get("outputs") or {},
        rows[-1]["detail"]["plan"] if rows else [],
    )


def cancel_run(store: RunStore, run_id: str, message: str) -> None:
    """End a run wherever it is: its Prefect flow run and its record say cancelled, and
    no step is left running or waiting. Ctrl-C, SIGTERM and `irbook cancel` share this."""
    record = store.run(run_id) or {}
    flow_run_id = record.get("flow_run_id")
    if flow_run_id:
        try:
            from prefect.client.orchestration import get_client
            from prefect.states import Cancelled

            with get_client(sync_client=True) as client:
                client.set_flow_run_state(UUID(flow_run_id), Cancelled(message=message), force=True)
        except Exception as exc:  # the API may be gone; the record still says what happened
            store.event(run_id, "cancel-api-failed", None, error=str(exc))
    for row in store.steps(run_id):
        if row["state"] in ("running", "pending", "awaiting-approval"):
            store.upsert_step(
                run_id,
                row["step_id"],
                row["item"],
                state="cancelled",
                reason="run cancelled",
                finished_at=time.time(),
            )
    if record.get("state") in ("running", "queued"):
        store.finish_run(run_id, "cancelled", message)


# -- a deployment's flow run, on a worker ----------------------------------------------------


def _find_playbook(playbook_id: str) -> str:
    """The path of a playbook by id, searched only in the playbook folders."""
    if not re.match(ID_PATTERN, playbook_id):
        raise IrbookError(f"'{playbook_id}' is not a playbook id")
    from irbook.checked import find_playbook

    return find_playbook(playbook_id)


class Refused(Exception):
    """The worker will not run this flow run; the message says why (and the record too)."""

    def __init__(self, message: str, *, cancelled: bool = False) -> None:
        super().__init__(message)
        self.cancelled = cancelled


def run_deployed(
    playbook_id: str,
    alert: dict[str, Any],
    mode: str,
    run_id: str,
    source: str,
    deployed_digest: str | None = None,
    execute: Execute | None = None,
) -> Outcome | None:
    """Start the run recorded under `run_id` and execute it; None if it started before.

    The receiver recorded the run `queued`; this claims it (or creates it, for a flow run
    started some other way). A cancelled run, or a playbook here that is not the one that
    was deployed (`deployed_digest`), raises `Refused` and the record says why. The same
    start as every other (irbook_flows.start.start_run); on a worker, `execute` runs it
    inside the worker's flow run (`flow.run_here`), elsewhere in a flow run of its own.
    """
    from irbook.loader import load_playbook
    from irbook.model.alert import Alert
    from irbook.plan import Plan
    from irbook.policy import active as active_policy
    from irbook.registry import REGISTRY

    if mode not in MODES:
        raise IrbookError(f"mode must be live or dry-run, not {mode!r}")
    store = RunStore()
    store.hold()  # a worker killed mid-run leaves a run the receiver's reaper settles
    try:
        path = _find_playbook(playbook_id)
    except IrbookError as exc:
        message = f"this worker cannot start it: {exc} (set IRBOOK_PLAYBOOKS in its environment)"
        store.fail_queued(run_id, message)
        raise Refused(message) from None
    if deployed_digest and playbook_digest(path) != deployed_digest:
        message = (
            f"this worker's copy of playbook {playbook_id} ({path}, digest"
            f" {playbook_digest(path)}) is not the deployed one (digest {deployed_digest}):"
            " sync the worker's playbooks and run irbook deploy again"
        )
        store.fail_queued(run_id, message)
        raise Refused(message)
    REGISTRY.load_all()
    started_by = f"webhook:{source}"

    def claim(plan: Plan) -> str | None:
        now = store.claim_queued(run_id)
        if now == "missing":
            try:
                return store.create_run_for(
                    plan, dry_run=mode != "live", started_by=started_by, run_id=run_id
                )
            except integrity_errors():
                return None  # created meanwhile by a second delivery of this flow run
        if now == "cancelled":
            raise Refused(f"run {run_id} was cancelled before a worker started it", cancelled=True)
        if now is not None:
            return None  # started before (a retried flow run): never run the steps twice
        return run_id

    return start_run(
        load_playbook(path).playbook,
        Alert.model_validate(alert),
        mode=mode,
        started_by=started_by,
        store=store,
        record=claim,
        execute=execute or globals()["execute"],
        tags=[f"source:{source}", "deployment"],
        slack_channel=os.environ.get("IRBOOK_SLACK_APPROVAL_CHANNEL"),
        policy=active_policy(),
    )


def prefect_state(run_id: str, state: str, message: str, prefix: str = "") -> Any:
    """The Prefect state a deployed flow run ends in for a run's verdict."""
    from prefect.states import Cancelled

    if state == "succeeded":
        return Completed(message=f"{prefix}run {run_id} succeeded"[:500])
    if state == "partial":
        said = verdict_text(state, message)
        return Completed(message=f"{prefix}run {run_id} {said}"[:500], name="Partial")
    if state == "cancelled":
        return Cancelled(message=f"{prefix}run {run_id} cancelled: {message}"[:500])
    return Failed(message=f"{prefix}run {run_id} {state}: {message}"[:500])


def on_worker(playbook_id: str, alert: dict[str, Any], mode: str, run_id: str, source: str) -> Any:
    """The flow's body on a worker: plan, record and run here, and end the flow run in
    the state of the run's verdict."""
    from prefect import runtime
    from prefect.states import Cancelled, Failed

    try:
        outcome = run_deployed(
            playbook_id, alert, mode, run_id, source, runtime.deployment.version, run_here
        )
    except Refused as exc:
        return Cancelled(message=str(exc)) if exc.cancelled else Failed(message=str(exc))
    if outcome is None:
        # A second delivery of this flow run (rescheduled from a worker that seemed
        # lost): the run was not started twice; the flow run says how the run stands.
        record = RunStore().run(run_id) or {}
        state = str(record.get("state"))
        twice = f"run {run_id} was started by an earlier delivery, not twice"
        if state in ("running", "queued"):
            return Cancelled(message=f"{twice}; it is {state} there")
        return prefect_state(run_id, state, record.get("message") or "", f"{twice}; ")
    return prefect_state(run_id, outcome.state, outcome.message)
