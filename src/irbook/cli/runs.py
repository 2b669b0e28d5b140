"""`irbook run | rollback | cancel`: start a run, undo what a run did, end a run (reading
the run record, `irbook runs`, is irbook.cli.record). irbook_flows.flow is imported inside
the commands, after their checks: importing it imports Prefect."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import threading
from typing import Any, NoReturn

from irbook import policy as access
from irbook.cli.common import (
    EXIT_FAILED,
    EXIT_FOR_STATE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_TERMINATED,
    Output,
    StepTable,
    Terminal,
    cli_process,
    find_run,
    first_line,
    refuse,
    user,
    when,
)
from irbook.cli.params import parse_params
from irbook.errors import IrbookError
from irbook.loader import load_alert, load_playbook
from irbook.plan import _short, build_plan, render_text
from irbook.preflight import preflight
from irbook.preflight import render as render_preflight
from irbook.registry import REGISTRY
from irbook.runs import RunStore, step_label, verdict_line, verdict_text
from irbook.validate import find_playbook
from irbook_flows.executors import Decision
from irbook_flows.server import ensure_api, ui_url
from irbook_flows.start import start_run


def _terminal_prompt(out: Output) -> Any:
    def ask(run_id: str, step: Any, info: dict[str, Any]) -> Any:
        out.write(
            f"\nApproval needed for step '{step.id}' ({step.action}). "
            f"Approve? [y/N] (or run: irbook approve {run_id}) "
        )
        out.flush()
        try:
            answer = sys.stdin.readline().strip().lower()
        except (OSError, ValueError):
            return None
        if not answer and sys.stdin.closed:
            return None

        return Decision(
            answer in ("y", "yes"), str(access.cli_identity()), "decided in the terminal"
        )

    return ask


def cmd_run(args: argparse.Namespace) -> int:
    item = load_playbook(find_playbook(args.playbook))
    playbook = item.playbook
    alert = load_alert(args.alert) if args.alert else None
    params = parse_params(args.param)
    plan = build_plan(playbook, alert, params)  # resolves and checks inputs first
    # what a live run will need, said before it starts (and in dry runs, which rehearse it)
    plan.preflight = preflight(plan)
    dry_run = bool(args.dry_run)
    if args.live_reads and not dry_run:
        raise IrbookError("--live-reads only makes sense with --dry-run")
    rules, started_by = _may_start(args, playbook, dry_run)
    if started_by is None:
        return EXIT_REFUSED
    out = Terminal(sys.stdout)
    if not args.quiet:
        out.write(render_text(plan) + "\n\n")
    elif plan.preflight:
        out.write(render_preflight(plan.preflight) + "\n")
    mutating = [s.id for s in plan.steps if s.effect == "mutate" and s.status == "run"]
    if not dry_run and mutating and not args.yes:
        if not sys.stdin.isatty():
            raise IrbookError(
                "this live run changes production (steps: "
                + ", ".join(mutating)
                + "); confirm in a terminal or pass --yes"
            )
        missing = [c for c in plan.preflight if c.status == "missing"]
        if missing:
            names = ", ".join(f"{c.integration} (steps {', '.join(c.steps)})" for c in missing)
            out.write(f"not configured here: {names}; the run {plan.live_outcome}\n")
        out.write(f"LIVE run of {playbook.metadata.id}: proceed? [y/N] ")
        out.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            out.write("not started\n")
            return EXIT_FAILED

    ensure_api()
    from irbook_flows.flow import Terminated, cancel_run, execute, quiet_console

    quiet_console()
    REGISTRY.load_all()
    store = RunStore()
    store.hold()  # a lease: `irbook runs` can tell this run from one whose process died
    label = "DRY RUN" if dry_run else "LIVE"
    table = StepTable([s.id for s in plan.steps], out, live=out.isatty() and not args.plain)
    interactive = sys.stdin.isatty() and (not dry_run or args.ask_approvals)
    started: list[str] = []

    def announce(run_id: str) -> None:
        started.append(run_id)
        out.write(f"{label} run {run_id} of {playbook.metadata.id}\n")
        # where the run executes, so that `irbook cancel` can stop this process too
        store.event(run_id, "cli-process", None, pid=os.getpid(), host=socket.gethostname())

    def terminate(signum: int, frame: Any) -> None:
        if not started:  # nothing recorded yet: unwind as an interrupt
            raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        # The run is recorded: say cancelled and leave now. Unwinding instead would wait
        # for the steps' threads (Prefect's task runner joins them), so a Ctrl-C during
        # a long step (a sleep, a hung API) would take as long as the step.
        said = "cancelled by SIGTERM" if signum == signal.SIGTERM else "cancelled with Ctrl-C"
        # in a thread of its own: its own database connection, never the one this
        # (interrupted) thread may be in the middle of using
        marker = threading.Thread(target=cancel_run, args=(store, started[0], said), daemon=True)
        marker.start()
        marker.join(20)
        _leave_cancelled(out, signum == signal.SIGTERM, started[0])

    signal.signal(signal.SIGTERM, terminate)  # a killed run ends like Ctrl-C, recorded
    signal.signal(signal.SIGINT, terminate)
    try:
        outcome = start_run(
            playbook,
            alert,
            mode="dry-run" if dry_run else "live",
            started_by=started_by,
            store=store,
            plan=plan,
            announce=announce,
            execute=execute,
            live_reads=bool(args.live_reads),
            ask_approvals=bool(args.ask_approvals),
            on_event=table.event,
            prompt_approval=_terminal_prompt(out) if interactive else None,
            # Slack buttons for live runs only (start_run drops it from dry runs)
            slack_channel=os.environ.get("IRBOOK_SLACK_APPROVAL_CHANNEL"),
            policy=rules,
        )
    except KeyboardInterrupt as exc:  # before the run was recorded (see terminate)
        _leave_cancelled(out, isinstance(exc, Terminated), started[0] if started else None)
    assert outcome is not None  # executed here, to its end
    run_id = outcome.run_id
    message = first_line(outcome.message) if outcome.message else ""
    out.write(f"\n{label} run {run_id}: {verdict_line(outcome.state, message)}\n")
    if outcome.outputs:
        for name, value in outcome.outputs.items():
            out.write(f"  {name} = {value}\n")
    if outcome.compensations:
        verb = "ran" if playbook.rollback == "auto" else "to undo what was done, run"
        out.write(f"  rollback ({playbook.rollback}): {verb}:\n")
        for comp in outcome.compensations:
            out.write(f"    {comp['action']} {json.dumps(comp['with'], sort_keys=True)}\n")
        if playbook.rollback == "manual":
            out.write(f"  or: irbook rollback {run_id}\n")
    url = ui_url()
    if url and outcome.flow_run_id:
        out.write(f"  Prefect: {url}/runs/flow-run/{outcome.flow_run_id}\n")
    out.write(f"  details: irbook runs show {run_id}\n")
    return EXIT_FOR_STATE.get(outcome.state, EXIT_FAILED)


def _leave_cancelled(out: Output, sigterm: bool, run_id: str | None) -> NoReturn:
    """Say how `irbook run` was cancelled and leave at once: a step's thread may sit in a
    long call (a sleep, a hung API), and the record (and Prefect) already say cancelled,
    so the process does not join it at exit."""
    how = "SIGTERM" if sigterm else "Ctrl-C"
    if run_id is None:
        out.write(f"\ncancelled ({how}) before the run was recorded: nothing ran\n")
    else:
        out.write(f"\ncancelled ({how}): run {run_id} is marked cancelled\n")
    out.flush()
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(EXIT_TERMINATED if sigterm else EXIT_INTERRUPTED)


def _run_grant(dry_run: bool) -> str:
    return access.run_grant("dry-run" if dry_run else "live")


def _may_start(args: argparse.Namespace, playbook: Any, dry_run: bool) -> tuple[Any, str | None]:
    """(the policy in force, who starts the run), or (policy, None) when refused."""
    rules = access.active()
    me = access.cli_identity()
    if rules is None:
        return None, args.started_by or str(me)
    if args.started_by and args.started_by != str(me):
        raise IrbookError(f"--started-by: a policy is in force, so runs start as {me}")
    scope = access.Scope(
        playbook.metadata.id, playbook.metadata.severity, "dry-run" if dry_run else "live"
    )
    ruling = access.decide(rules, me, _run_grant(dry_run), scope)
    if not ruling.allowed:
        refuse(RunStore(), ruling, "run")
        return rules, None
    return rules, str(me)


def _undo_calls(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The calls a compensation will make, from its action's planner (as `irbook plan`)."""
    action = REGISTRY.get(entry["action"])
    return [c.as_dict() for c in action.plan(action.params.model_validate(entry["with"]))]


def cmd_rollback(args: argparse.Namespace) -> int:
    rules = access.active()
    store = RunStore()
    record = find_run(store, args.run_id)
    run_id = record["id"]
    if record["state"] in ("running", "queued"):
        raise IrbookError(
            f"run {run_id} is still {record['state']}; end it first (irbook cancel {run_id})"
        )
    dry_run = bool(args.dry_run)
    me = access.cli_identity()
    ruling = access.decide(rules, me, "rollback", _scope_of(store, record, dry_run))
    if not ruling.allowed:
        refuse(store, ruling, "rollback", run_id)
        return EXIT_REFUSED
    earlier = store.rollbacks([run_id]).get(run_id)
    if earlier and not dry_run and not args.force:
        raise IrbookError(
            f"run {run_id} was {earlier['outcome']} already, by {earlier.get('by')} at "
            f"{when(earlier.get('at'))}; pass --force to run its compensations again"
        )
    steps = [s for s in store.steps(run_id) if s["state"] == "succeeded" and s["compensation"]]
    steps.sort(key=lambda s: s["finished_at"] or 0, reverse=True)
    if not steps:
        print(f"run {run_id}: nothing to roll back")
        return 0
    from irbook_flows.flow import skip_reason

    REGISTRY.load_all()
    plan = [{"step": s["step_id"], "item": s["item"], **s["compensation"]} for s in steps]
    out = Terminal(sys.stdout)
    out.write(f"Rollback plan for run {run_id} ({record['playbook_id']}), newest first:\n")
    to_change = []
    for n, entry in enumerate(plan, 1):
        label = step_label(entry["step"], entry["item"])
        why = skip_reason(entry)
        status = f"skipped: {why}" if why else "runs"
        out.write(f"  {n}. undo {label}  {entry['action']}  {status}\n")
        if why:
            continue
        to_change.append(label)
        out.write(f"       with {_short(entry['with'], 100)}\n")
        for call in _undo_calls(entry):
            out.write(f"       call {call['call']} {_short(call['params'], 100)}\n")
    if earlier:
        out.write(f"  (run {run_id} was {earlier['outcome']} already)\n")
    out.write("\n")
    if not dry_run and to_change and not args.yes:
        if not sys.stdin.isatty():
            raise IrbookError(
                "this rollback changes production (undoes: "
                + ", ".join(to_change)
                + "); confirm in a terminal or pass --yes"
            )
        out.write(f"LIVE rollback of run {run_id}: proceed? [y/N] ")
        out.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            out.write("not rolled back\n")
            return EXIT_FAILED

    ensure_api()
    from irbook_flows.flow import quiet_console, roll_back_run

    quiet_console()
    failures = roll_back_run(record, plan, dry_run=dry_run, out=out, store=store, by=str(me))
    return EXIT_FAILED if failures else EXIT_OK


def _scope_of(store: Any, record: dict[str, Any], dry_run: bool) -> Any:
    """The scope a rollback of this run acts in: the playbook and severity its start was
    judged with (its run-allowed record), the rollback's own mode."""
    started = [e for e in store.events(record["id"]) if e["kind"] == "run-allowed"]
    scope = (started[-1]["detail"] or {}).get("scope") if started else None
    severity = str(scope["severity"]) if scope else "critical"  # unknown: the strictest
    return access.Scope(str(record["playbook_id"]), severity, "dry-run" if dry_run else "live")


def cmd_cancel(args: argparse.Namespace) -> int:
    """End a run wherever it is: waiting for approval, running, or orphaned by a killed
    `irbook run`. The record, the audit chain and the Prefect flow run say cancelled."""
    store = RunStore()
    record = find_run(store, args.run_id)
    run_id = record["id"]
    if record["state"] not in ("running", "queued"):
        said = verdict_text(record["state"], record["message"])
        raise IrbookError(f"run {run_id} is {first_line(said)} already; nothing to cancel")

    ensure_api()
    from irbook_flows.flow import cancel_run

    who = args.by or f"cli:{user()}"
    store.event(run_id, "cancel-requested", None, by=who, comment=args.comment or "")
    message = f"cancelled by {who}" + (f": {args.comment}" if args.comment else "")
    cancel_run(store, run_id, message)
    pid, alive = cli_process(store, run_id)
    if pid is not None and alive:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    print(f"cancelled run {run_id} as {who}")
    return 0


__all__ = ["cmd_cancel", "cmd_rollback", "cmd_run"]
