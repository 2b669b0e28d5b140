"""`irbook run | approve | runs | rollback`: the commands that need Prefect.

The `irbook` parser (irbook.cli.main) names these handlers by string and imports this
module only when one of them runs, so `irbook --help` and `irbook validate` never pay
for Prefect, and the core package never imports this one.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import getpass
import json
import os
import signal
import socket
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

from irbook.db import errors as db_errors
from irbook.errors import IrbookError
from irbook.runs import step_label, verdict_line, verdict_text

EXIT_OK, EXIT_FAILED, EXIT_REJECTED, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a killed command
# `irbook approve`: the decision was recorded but the step needs more approvers; it was
# refused (no grant, separation of duties, approved already); it came too late.
# `irbook run`, `rollback` and `drill` exit EXIT_REFUSED when the policy refuses them.
EXIT_RECORDED, EXIT_REFUSED, EXIT_LATE = 4, 5, 6
# A run's exit status from its final state: each verdict its own.
EXIT_FOR_STATE = {"succeeded": EXIT_OK, "partial": EXIT_PARTIAL, "rejected": EXIT_REJECTED}

STATE_MARK = {
    "queued": "·",
    "pending": "·",
    "running": "…",
    "awaiting-approval": "?",
    "succeeded": "✓",
    "failed": "✗",
    "skipped": "-",
    "rejected": "⊘",
    "cancelled": "⊘",
    "crashed": "☠",
    "needs-human": "!",
}


class Output(Protocol):
    def write(self, text: str, /) -> int: ...
    def flush(self) -> None: ...


def first_line(text: str, limit: int = 200) -> str:
    """A failure text as one readable line: an API's 500 page stays whole in the record
    (`irbook runs show RUN_ID --format json`) but is cut here."""
    lines = text.strip().splitlines()
    line = lines[0] if lines else ""
    more = len(lines) > 1 or len(line) > limit
    return line[: limit - 1] + "…" if more else line


class Terminal:
    """stdout for a run: a closed pipe (`irbook run ... | head`) ends the display, never
    the run; the incident response goes on and its record says how it ended."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.broken = False

    def isatty(self) -> bool:
        try:
            return self.out.isatty()
        except (OSError, ValueError):
            return False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self.out.write(text)
            except (OSError, ValueError):
                self._closed()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self.out.flush()
            except (OSError, ValueError):
                self._closed()

    def _closed(self) -> None:
        self.broken = True
        # what is still buffered must not fail again at exit: send it nowhere
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.out.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class StepTable:
    """The live view of a run: redrawn in place on a terminal, one line per change otherwise."""

    def __init__(self, steps: list[str], out: Output, live: bool) -> None:
        self.steps = steps
        self.state = dict.fromkeys(steps, "pending")
        self.detail = dict.fromkeys(steps, "")
        self.out = out
        self.live = live
        self.drawn = 0
        self.started = time.monotonic()
        self.lock = threading.Lock()

    def event(self, kind: str, step: str, state: str, detail: str) -> None:
        with self.lock:
            detail = first_line(detail)
            if kind == "undo":
                self._line(f"  undo {step}: {state} {detail}")
                return
            if step not in self.state:
                return
            self.state[step], self.detail[step] = state, detail
            if self.live:
                self._redraw()
            else:
                elapsed = time.monotonic() - self.started
                text = f" ({detail})" if detail else ""
                self._line(f"  {elapsed:6.1f}s {STATE_MARK.get(state, ' ')} {step}: {state}{text}")

    def _line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()
        self.drawn = 0

    def _redraw(self) -> None:
        if self.drawn:
            self.out.write(f"\x1b[{self.drawn}F")
        width = max(len(s) for s in self.steps)
        for step in self.steps:
            state = self.state[step]
            detail = f"  {self.detail[step]}" if self.detail[step] else ""
            self.out.write(
                f"\x1b[2K  {STATE_MARK.get(state, ' ')} {step:<{width}}  {state}{detail[:80]}\n"
            )
        self.out.flush()
        self.drawn = len(self.steps)


def _terminal_prompt(out: Output) -> Any:
    def ask(run_id: str, step: Any, info: dict[str, Any]) -> Any:
        from irbook_flows.engine import Decision

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
        from irbook.policy import cli_identity

        return Decision(answer in ("y", "yes"), str(cli_identity()), "decided in the terminal")

    return ask


def cmd_run(args: argparse.Namespace) -> int:
    from irbook.cli.commands import _params
    from irbook.loader import load_alert, load_playbook
    from irbook.plan import build_plan, render_text
    from irbook.preflight import preflight
    from irbook.preflight import render as render_preflight
    from irbook.registry import REGISTRY
    from irbook.validate import find_playbook

    item = load_playbook(find_playbook(args.playbook))
    playbook = item.playbook
    alert = load_alert(args.alert) if args.alert else None
    params = _params(args.param)
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

    from irbook_flows.server import ensure_api, ui_url

    ensure_api()
    from irbook.runs import RunStore
    from irbook_flows.engine import RunSpec
    from irbook_flows.flow import Terminated, execute, quiet_console

    quiet_console()
    clients: Any
    if dry_run and not args.live_reads:
        from irbook.registry import NoClients

        clients = NoClients()
    else:
        from irbook_actions.clients import LiveClients

        clients = LiveClients()
    REGISTRY.load_all()
    store = RunStore()
    store.hold()  # a lease: `irbook runs` can tell this run from one whose process died
    run_id = store.create_run_for(plan, dry_run=dry_run, started_by=started_by)
    label = "DRY RUN" if dry_run else "LIVE"
    out.write(f"{label} run {run_id} of {playbook.metadata.id}\n")
    # where the run executes, so that `irbook cancel` can stop this process too
    store.event(run_id, "cli-process", None, pid=os.getpid(), host=socket.gethostname())
    table = StepTable([s.id for s in plan.steps], out, live=out.isatty() and not args.plain)
    interactive = sys.stdin.isatty() and (not dry_run or args.ask_approvals)
    # Slack buttons for live runs only: a dry run makes no network call
    slack_channel = None if dry_run else os.environ.get("IRBOOK_SLACK_APPROVAL_CHANNEL")
    spec = RunSpec(
        run_id=run_id,
        playbook=playbook,
        alert=alert or _manual(),
        inputs=plan.inputs,
        dry_run=dry_run,
        started_by=started_by,
        store=store,
        clients=clients,
        live_reads=bool(args.live_reads),
        ask_approvals=bool(args.ask_approvals),
        secrets=plan.secrets,
        on_event=table.event,
        prompt_approval=_terminal_prompt(out) if interactive else None,
        slack_channel=slack_channel,
        policy=rules,
    )

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated()

    signal.signal(signal.SIGTERM, terminate)  # a killed run ends like Ctrl-C, recorded
    try:
        outcome = execute(spec)
    except KeyboardInterrupt as exc:
        how = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
        out.write(f"\ncancelled ({how}): run {run_id} is marked cancelled\n")
        out.flush()
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        # A step's thread may sit in a long call (a sleep, a hung API): the record and
        # Prefect already say cancelled, so leave now instead of joining it at exit.
        os._exit(EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED)
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


def _run_grant(dry_run: bool) -> str:
    from irbook.policy import run_grant

    return run_grant("dry-run" if dry_run else "live")


def refuse(store: Any, ruling: Any, what: str, run_id: str | None = None) -> None:
    """Record a refused start, rollback or drill in the audit chain and say why. A start
    has no run yet: its refusal is chained under the id the run would have had."""
    import uuid

    store.event(
        run_id or uuid.uuid4().hex[:12],
        f"{what}-refused",
        None,
        by=ruling.who,
        principal=ruling.principal,
        grant=ruling.grant,
        reason=ruling.reason,
    )
    print(f"irbook: refused: {ruling.reason}", file=sys.stderr)


def _may_start(args: argparse.Namespace, playbook: Any, dry_run: bool) -> tuple[Any, str | None]:
    """(the policy in force, who starts the run), or (policy, None) when refused."""
    from irbook import policy as access

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
        refuse(_store(), ruling, "run")
        return rules, None
    return rules, str(me)


def _manual() -> Any:
    from irbook.plan import manual_alert

    return manual_alert()


def _store() -> Any:
    from irbook.runs import RunStore

    return RunStore()


def _find(store: Any, run_id: str) -> dict[str, Any]:
    record: dict[str, Any] | None = store.find_run(run_id)
    if record is None:
        raise IrbookError(f"no run '{run_id}' (see: irbook runs)")
    return record


def _late(store: Any, run_id: str, step: str | None, who: str, why: str) -> int:
    """Too late: the run is not waiting (any more) for this decision."""
    if step is not None:
        store.event(run_id, "approval-late", step, by=who, reason=why)
    print(f"too late: {why}")
    return EXIT_LATE


def cmd_approve(args: argparse.Namespace) -> int:
    """Approve or reject the step a run waits on, and say what the run made of it:
    decided (0), recorded with more approvers needed (4), refused and why (5), too late
    (6). The run's flow judges every attempt (irbook.policy); this command asks it
    through a request in the run record and waits for its answer."""
    from irbook import policy as access

    rules = access.active()
    store = _store()
    record = _find(store, args.run_id)
    run_id = record["id"]
    if record["state"] == "queued":
        raise IrbookError(
            f"run {run_id} is queued: no worker has started it yet, so no step waits for an"
            " approval; approve once it asks (irbook runs show " + run_id + ")"
        )
    me = access.cli_identity()
    who = str(me)
    if args.by and args.by not in (me.name, who):
        if rules is not None:
            raise IrbookError(
                f"--by {args.by}: a policy is in force, so you decide as {who} (the OS user,"
                f" or {access.USER_ENV} set by your sign-in wrapper); drop --by"
            )
        who = args.by  # no policy: the name is taken as given, as before policies
    if record["state"] != "running":
        return _late(store, run_id, None, who, f"run {run_id} is {record['state']}, not waiting")
    waiting = [s for s in store.steps(run_id) if s["state"] == "awaiting-approval"]
    if not waiting:
        return _late(store, run_id, None, who, f"run {run_id} is not waiting for an approval")
    step = waiting[0]["step_id"]
    if args.step and args.step != step:
        raise IrbookError(f"run {run_id} is waiting for step '{step}', not '{args.step}'")
    pid, alive = _cli_process(store, run_id)
    if pid is not None and not alive:  # Prefect would take the answer and nothing act on it
        raise IrbookError(
            f"run {run_id} was started by `irbook run` (pid {pid}), which is gone; nothing "
            f"would act on an approval: end it with irbook cancel {run_id}"
        )
    approved = not args.reject
    verb = "approve" if approved else "reject"
    gate_info = waiting[0].get("approval") or {}
    verdict = access.judge_waiting(
        rules,
        gate_info,
        access.Identity.parse(who),
        approved,
        started_by=str(record["started_by"]),
    )
    if verdict is not None and verdict.outcome == "refused":  # the run is not even resumed
        kind, detail = access.verdict_event(verdict, by=who, approved=approved, via="cli")
        store.event(run_id, kind, step, **detail)
        print(f"refused: {who} may not {verb} step '{step}' of run {run_id}: {verdict.reason}")
        return EXIT_REFUSED
    from irbook_flows.server import ensure_api

    ensure_api()
    from prefect.exceptions import FlowPauseTimeout, NotPausedError

    from irbook_flows.engine import Decision
    from irbook_flows.flow import resume

    ticket = store.request_approval(run_id, step, who, approved, args.comment or "", "cli")
    decision = Decision(approved, who, args.comment or "", ticket=ticket)
    deadline = time.monotonic() + 15
    while True:  # the flow marks the step before Prefect marks the run paused
        try:
            resume(str(record["flow_run_id"]), decision)
            break
        except NotPausedError:
            now = store.run(run_id) or {}
            if now.get("state") != "running":
                return _late(store, run_id, step, who, f"run {run_id} is {now.get('state')}")
            if time.monotonic() > deadline:
                raise IrbookError(
                    f"run {run_id} is not paused in Prefect (if its process is gone: "
                    f"irbook cancel {run_id})"
                ) from None
            time.sleep(0.5)
        except FlowPauseTimeout:
            return _late(store, run_id, step, who, f"the approval for step '{step}' timed out")
    answer = store.approval_answer(run_id, ticket, wait=60)
    if answer is None:
        raise IrbookError(
            f"run {run_id} took the {verb} but has not said what it made of it within 60s"
            f" (see: irbook runs show {run_id})"
        )
    said = answer["detail"]
    outcome = said.get("outcome")
    if outcome == "refused":
        print(f"refused: {who} may not {verb} step '{step}' of run {run_id}: {said.get('reason')}")
        return EXIT_REFUSED
    if outcome == "recorded":
        print(
            f"recorded: {who} approved step '{step}' of run {run_id}; waiting for"
            f" {said.get('waiting_for')} more approver(s)"
        )
        return EXIT_RECORDED
    print(f"{outcome}: step '{step}' of run {run_id} as {who}")
    return EXIT_OK


# The audit-chained decisions `irbook runs show` lists: who, what grant, when.
DECISION_EVENTS = frozenset(
    {
        "run-allowed",
        "run-refused",
        "approval-refused",
        "approval-recorded",
        "approval-decided",
        "approval-late",
        "rollback",
        "rollback-refused",
    }
)


def decision_line(event: dict[str, Any]) -> str:
    d = event["detail"] or {}
    kind = str(event["kind"])
    step = f" step {event['step_id']}" if event["step_id"] else ""
    what = {
        "run-allowed": "started",
        "run-refused": "start REFUSED",
        "approval-refused": "REFUSED to " + ("approve" if d.get("approved") else "reject"),
        "approval-recorded": "approval recorded",
        "approval-decided": str(d.get("outcome")),
        "approval-late": "too late",
        "rollback": str(d.get("outcome")),
        "rollback-refused": "rollback REFUSED",
    }.get(kind, kind)
    grant = f" [{d['grant']}]" if d.get("grant") else ""
    who = d.get("by") or "?"
    principal = f" ({d['principal']})" if d.get("principal") else ""
    line = f"{_when(event['at'])} {what}{step} by {who}{principal}{grant}"
    if d.get("waiting_for"):
        line += f", waiting for {d['waiting_for']} more"
    if kind.endswith("refused") and d.get("reason"):
        line += f": {first_line(str(d['reason']))}"
    return line


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _since(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%H:%M:%SZ") if ts else "?"


def state_text(
    state: str,
    message: str | None,
    rollback: dict[str, Any] | None = None,
    waiting: dict[str, Any] | None = None,
    *,
    short: bool = False,
) -> str:
    """A run's state as the on-call acts on it: a verdict, what a rollback did to it, or
    the approval it waits on (step, since when, timeout)."""
    if state == "running" and waiting:
        timeout = f", timeout {waiting['timeout']}" if waiting.get("timeout") else ""
        return (
            f"waiting for approval ({waiting['step']} since {_since(waiting.get('since'))}"
            f"{timeout})"
        )
    said = verdict_text(state, first_line(message) if message else message)
    if short:  # a list's column: the verdict without its reasons
        said = said.split(":", 1)[0]
    if rollback:
        said += f", {rollback['outcome']}"
    return said


def cmd_runs(args: argparse.Namespace) -> int:
    store = _store()
    # Runs whose process died are settled first, so none is listed as running for ever.
    reaped: list[Any] = []
    try:
        reaped = _reaper(store, None).reap()
    except db_errors() as exc:  # a read-only or busy database: list what is there
        print(f"irbook: warning: could not settle crashed runs: {exc}", file=sys.stderr)
    if args.action == "show":
        if not args.run_id:
            raise IrbookError("irbook runs show needs a RUN_ID")
        record = _find(store, args.run_id)
        run_id = record["id"]
        steps = store.steps(run_id)
        rollback = store.rollbacks([run_id]).get(run_id)
        waiting = store.waiting_approvals([run_id]).get(run_id)
        if args.format == "json":
            events = store.events(run_id)
            data = {"run": record, "steps": steps, "events": events}
            data["rolled_back"], data["waiting"] = rollback, waiting
            print(json.dumps(data, indent=2))
            return 0
        said = state_text(record["state"], record["message"], rollback, waiting)
        print(f"run {run_id}: {record['playbook_id']} ({record['mode']}) {said}")
        print(f"  started by {record['started_by']} at {_when(record['created_at'])}")
        if record["alert_id"]:
            print(f"  alert: {record['alert_source']} {record['alert_id']}")
        if record["message"] and record["state"] != "partial":
            print(f"  {first_line(record['message'])}")
        crashes = [e["detail"] for e in store.events(record["id"]) if e["kind"] == "crashed"]
        if crashes and crashes[-1].get("in_flight"):
            print(f"  in flight when it crashed: {', '.join(crashes[-1]['in_flight'])}")
        if waiting:
            then = f", then {waiting['on_timeout']}" if waiting.get("on_timeout") else ""
            print(
                f"  waiting for approval of step '{waiting['step']}' since "
                f"{_when(waiting.get('since'))} (timeout {waiting.get('timeout')}{then}): "
                f"irbook approve {run_id} [--reject]"
            )
        if rollback:
            counts = f"{rollback.get('undone', 0)} undone, {rollback.get('skipped', 0)} skipped"
            if rollback.get("failed"):
                counts += f", {rollback['failed']} failed"
            print(
                f"  rollback: {rollback['outcome']} by {rollback.get('by')} at "
                f"{_when(rollback.get('at'))} ({counts})"
            )
        print(f"  inputs: {json.dumps(record['inputs'], sort_keys=True)}")
        decisions = [e for e in store.events(run_id) if e["kind"] in DECISION_EVENTS]
        if decisions:
            print("  decisions:")
        for event in decisions:
            print(f"    {decision_line(event)}")
        cut = False
        for step in steps:
            label = step_label(step["step_id"], step["item"])
            reason = first_line(step["reason"]) if step["reason"] else ""
            cut = cut or reason != (step["reason"] or "").strip()
            print(
                f"  {label}: {step['action']} {step['state']}" + (f" ({reason})" if reason else "")
            )
            for call in step["real_calls"] or step["planned_calls"] or []:
                kind = "call" if step["real_calls"] else "planned"
                print(f"      {kind} {call['call']}")
            if step["approval"] and step["approval"].get("decision"):
                a = step["approval"]
                print(f"      approval: {a['decision']} by {a['by']} ({a['how']})")
            if step["compensation"]:
                print(f"      undo: {step['compensation']['action']}")
        if cut:
            print(f"  (texts cut to one line; in full: irbook runs show {run_id} --format json)")
        return 0
    rows = store.recent_runs(args.limit)
    ids = [row["id"] for row in rows]
    rollbacks, waiting = store.rollbacks(ids), store.waiting_approvals(ids)
    for row in rows:
        row["verdict"] = verdict_text(row["state"], row.get("message"))
        row["rolled_back"] = rollbacks.get(row["id"])
        row["waiting"] = waiting.get(row["id"])
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    human = store.runs_in_state("needs-human")
    for item in reaped:
        print(f"run {item.run_id} {item.state}: {item.message}", file=sys.stderr)
    for row in rows:
        said = state_text(
            row["state"], row.get("message"), row["rolled_back"], row["waiting"], short=True
        )
        print(
            f"{row['id']}  {_when(row['created_at'])}  {row['mode']:<7}  "
            f"{said:<11}  {row['playbook_id']}  {row['started_by']}"
        )
    if human:
        print(f"\n{len(human)} run(s) need a human (see: irbook runs show RUN_ID):")
        for row in human:
            print(f"  {row['id']}  {row['playbook_id']}  {row['message']}")
    return 0


def _undo_calls(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The calls a compensation will make, from its action's planner (as `irbook plan`)."""
    from irbook.registry import REGISTRY

    action = REGISTRY.get(entry["action"])
    return [c.as_dict() for c in action.plan(action.params.model_validate(entry["with"]))]


def cmd_rollback(args: argparse.Namespace) -> int:
    from irbook import policy as access
    from irbook.plan import _short
    from irbook.registry import REGISTRY

    rules = access.active()
    store = _store()
    record = _find(store, args.run_id)
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
            f"{_when(earlier.get('at'))}; pass --force to run its compensations again"
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
    from irbook_flows.server import ensure_api

    ensure_api()
    from irbook_flows.flow import quiet_console, roll_back_run

    quiet_console()
    failures = roll_back_run(record, plan, dry_run=dry_run, out=out, store=store, by=str(me))
    return EXIT_FAILED if failures else EXIT_OK


def _scope_of(store: Any, record: dict[str, Any], dry_run: bool) -> Any:
    """The scope a rollback of this run acts in: the playbook and severity its start was
    judged with (its run-allowed record), the rollback's own mode."""
    from irbook import policy as access

    started = [e for e in store.events(record["id"]) if e["kind"] == "run-allowed"]
    scope = (started[-1]["detail"] or {}).get("scope") if started else None
    severity = str(scope["severity"]) if scope else "critical"  # unknown: the strictest
    return access.Scope(str(record["playbook_id"]), severity, "dry-run" if dry_run else "live")


def _cli_process(store: Any, run_id: str) -> tuple[int | None, bool]:
    """(pid, alive) of the `irbook run` that executes run_id on this host; (None, False)
    when the run did not start here (a receiver, a deployment, another host)."""
    rows = [e for e in store.events(run_id) if e["kind"] == "cli-process"]
    if not rows or rows[-1]["detail"].get("host") != socket.gethostname():
        return None, False
    pid = int(rows[-1]["detail"]["pid"])
    try:  # the pid may have been reused since: only an irbook process counts
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            alive = b"irbook" in handle.read()
    except FileNotFoundError:
        alive = False
    except OSError:  # no /proc here: cannot tell
        return None, False
    return pid, alive and pid != os.getpid()


def cmd_cancel(args: argparse.Namespace) -> int:
    """End a run wherever it is: waiting for approval, running, or orphaned by a killed
    `irbook run`. The record, the audit chain and the Prefect flow run say cancelled."""
    store = _store()
    record = _find(store, args.run_id)
    run_id = record["id"]
    if record["state"] not in ("running", "queued"):
        said = verdict_text(record["state"], record["message"])
        raise IrbookError(f"run {run_id} is {first_line(said)} already; nothing to cancel")
    from irbook_flows.server import ensure_api

    ensure_api()
    from irbook_flows.flow import cancel_run

    who = args.by or f"cli:{_user()}"
    store.event(run_id, "cancel-requested", None, by=who, comment=args.comment or "")
    message = f"cancelled by {who}" + (f": {args.comment}" if args.comment else "")
    cancel_run(store, run_id, message)
    pid, alive = _cli_process(store, run_id)
    if pid is not None and alive:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    print(f"cancelled run {run_id} as {who}")
    return 0


def slack_interactions_from_env() -> Any:
    """Slack approvals for `irbook serve`, from the environment; None when not set up.

    IRBOOK_SLACK_SIGNING_SECRET verifies button presses; IRBOOK_SLACK_APPROVERS lists the
    Slack user ids (U...) and user group ids (S...) allowed to decide.
    """
    secret = os.environ.get("IRBOOK_SLACK_SIGNING_SECRET")
    if not secret:
        return None
    from irbook.cache import home
    from irbook.policy import active as active_policy
    from irbook.runs import RunStore
    from irbook.triggers.auth import build_verifier
    from irbook.triggers.limits import ReplayGuard
    from irbook.triggers.slack import SlackApprovals, SlackInteractions
    from irbook_actions.clients import LiveClients
    from irbook_flows.engine import Decision
    from irbook_flows.flow import resume

    ids = [i.strip() for i in os.environ.get("IRBOOK_SLACK_APPROVERS", "").split(",") if i.strip()]
    clients = LiveClients()

    def members(group: str) -> set[str]:
        return set(clients.slack().usergroups_users_list(usergroup=group)["users"])

    def update(channel: str, ts: str, text: str) -> None:
        clients.slack().chat_update(channel=channel, ts=ts, text=text, blocks=[])

    def decide(flow_run_id: str, approved: bool, approver: str, comment: str, ticket: int) -> None:
        resume(flow_run_id, Decision(approved, approver, comment, ticket=ticket), wait_paused=2)

    from irbook.db import database_url

    # Shared by every receiver on a PostgreSQL URL: a button press is taken once.
    guard = ReplayGuard(database_url(None, str(home() / "replay.db")))
    return SlackInteractions(
        verifier=build_verifier({"scheme": "slack", "secret": secret}),
        approvals=SlackApprovals(
            users=frozenset(i for i in ids if not i.startswith("S")),
            groups=frozenset(i for i in ids if i.startswith("S")),
            group_members=members,
        ),
        store=RunStore(),
        decide=decide,
        seen_before=lambda delivery, now: guard.seen_before("slack", delivery, now),
        update_message=update if os.environ.get("SLACK_BOT_TOKEN") else None,
        policy=active_policy(),
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from irbook.db import DatabaseUrlError, database_url
    from irbook.source import default_playbook_dirs
    from irbook.triggers.app import load_playbooks
    from irbook.triggers.config import load_config, route_playbooks

    # Everything the files can get wrong (configuration, secrets, playbooks, triggers no
    # source can produce) is refused before the Prefect server starts, which takes 15 s.
    loaded = playbooks = None
    if args.config:
        loaded = load_config(args.config)
        from irbook.db import URL_ENV

        setting = URL_ENV if os.environ.get(URL_ENV) else "database_url"
        if loaded.config.database_url and not os.environ.get(URL_ENV):
            # the environment wins; set, it reaches every store of this process (runs,
            # audit, leases, the alert queue) and the runs it starts
            os.environ[URL_ENV] = loaded.config.database_url
        if loaded.config.policy and not os.environ.get("IRBOOK_POLICY"):
            # the runs this receiver starts and the Slack buttons it serves read it there
            where = os.path.dirname(os.path.abspath(args.config))
            os.environ["IRBOOK_POLICY"] = os.path.join(where, loaded.config.policy)
        playbooks = load_playbooks(loaded.config.playbooks or default_playbook_dirs())
        for warning in [*loaded.warnings, *route_playbooks(loaded, playbooks).warnings]:
            print(f"irbook: warning: {warning}", file=sys.stderr)
        _check_database(database_url(), setting)  # before Prefect starts, as the files are

    from irbook.policy import active as active_policy

    active_policy()  # a broken policy file stops the receiver here, before Prefect starts
    from irbook_flows.server import ensure_api

    ensure_api()
    from irbook.registry import REGISTRY
    from irbook_flows.flow import quiet_console

    quiet_console()
    REGISTRY.load_all()
    try:
        return _serve(args, loaded, playbooks)
    except DatabaseUrlError as exc:  # unreachable, or refused: one line, no traceback
        raise IrbookError(str(exc)) from None


def _check_database(url: str, setting: str) -> None:
    """A PostgreSQL database the receiver cannot reach, in one line naming the setting
    and the server's reason, at once (the pool would retry it for half a minute)."""
    from irbook.db import dialect_of, first_line, redacted_url

    if dialect_of(url) != "postgresql":
        return
    import psycopg

    try:
        psycopg.connect("postgresql://" + url.split("://", 1)[1], connect_timeout=10).close()
    except psycopg.Error as exc:
        reason = first_line(exc).split(": ", 1)[-1] if "connection failed" in str(exc) else ""
        raise IrbookError(
            f"{setting}: cannot connect to {redacted_url(url)}: {reason or first_line(exc)}"
        ) from None


def _serve(args: argparse.Namespace, loaded: Any, playbooks: Any) -> int:
    import uvicorn

    from irbook import leases
    from irbook.runs import RunStore
    from irbook.triggers.app import WebhookReceiver, create_app

    hooks = None
    reaper = None
    if loaded is not None:
        store = RunStore()

        def run_active(run_id: str) -> bool:
            record = store.run(run_id)
            return record is not None and record["state"] in ("running", "queued")

        runner = loaded.config.runner
        embedded = None
        if runner.type == "deployments":
            from irbook_flows.deploy import deployments_starter

            starter = deployments_starter(runner, store)
        else:
            from irbook_flows.embedded import EmbeddedStarter

            starter = embedded = EmbeddedStarter(
                os.environ.get("IRBOOK_SLACK_APPROVAL_CHANNEL"), retry_delays=runner.retry_delays
            )
        hooks = WebhookReceiver(
            loaded,
            starter,
            run_active=run_active,
            running=embedded.running if embedded is not None else None,
            playbooks=playbooks,
        )
        if embedded is not None:
            embedded.on_finished = hooks.dispatcher.notify
        else:  # a run recorded queued whose flow run could not be created says so
            counted = hooks.dispatcher.on_failed

            def failed(request: Any, error: str) -> None:
                store.fail_queued(request.run_id, f"not started: {error}")
                if counted is not None:
                    counted(request, error)

            hooks.dispatcher.on_failed = failed
        reaper = _reaper(store, hooks.queue, workers=runner.type == "deployments")
        settle = functools.partial(_settle_reaped, store)
        settle(reaper.reap())  # before any new alert: the dead are settled first
        reaper.start(leases.lease_seconds() / 3, settle)
        if runner.type == "deployments":
            from irbook_flows.deploy import check_deployments

            for warning in check_deployments(runner, [pb.id for pb in hooks.playbooks]):
                print(f"irbook: warning: {warning}", file=sys.stderr)
    app = create_app(slack=slack_interactions_from_env(), hooks=hooks)
    where = f"http://{args.host}:{args.port}"
    state = "off, no --config"
    if hooks is not None:
        runner = hooks.config.config.runner
        state = "on, runs in this process"
        if runner.type == "deployments":
            state = f"on, runs through deployments {runner.prefix}-<playbook>"
    print(f"irbook receiver on {where} (webhooks: {state})", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        if reaper is not None:
            reaper.stop()
    return 0


def _flow_run_end(flow_run_id: str) -> tuple[str, str] | None:
    """(state name, message) of a flow run that has ended in Prefect, else None; a flow
    run Prefect no longer has counts as ended (deleted)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            flow_run = client.read_flow_run(UUID(flow_run_id))
        except ObjectNotFound:
            return "Deleted", "Prefect has no such flow run any more"
    state = flow_run.state
    if state is None or not state.is_final():
        return None
    return state.name or state.type.value, (state.message or "")[:300]


def _reaper(store: Any, queue: Any, *, workers: bool = False) -> Any:
    """The reaper of crashed runs in `store`; their alerts are started again through
    `queue` (an AlertQueue), or through one opened on first need when None. With
    `workers` (runner: deployments) it also settles queued runs whose flow run ended
    before a worker started it."""
    from irbook.reaper import Reaper
    from irbook.triggers.queue import AlertQueue, new_run_id

    def restart(run_id: str, new_id: str, max_restarts: int, counted: bool) -> tuple[str, str]:
        nonlocal queue
        if queue is None:
            queue = AlertQueue(store.path)
        outcome: tuple[str, str] = queue.restart_run(run_id, new_id, max_restarts, counted=counted)
        return outcome

    return Reaper(
        store,
        restart=restart,
        new_run_id=new_run_id,
        flow_run_end=_flow_run_end if workers else None,
    )


def _settle_reaped(store: Any, reaped: list[Any]) -> None:
    """Say what the reaper did, and mark the crashed runs' flow runs Crashed in Prefect
    (they would show as Running there for ever)."""
    for item in reaped:
        print(f"irbook: run {item.run_id} {item.state}: {item.message}", file=sys.stderr)
        flow_run_id = (store.run(item.run_id) or {}).get("flow_run_id")
        if not flow_run_id or item.flow_run_ended:
            continue
        try:
            from uuid import UUID

            from prefect.client.orchestration import get_client
            from prefect.states import Crashed

            with get_client(sync_client=True) as client:
                client.set_flow_run_state(
                    UUID(flow_run_id), Crashed(message=item.message[:500]), force=True
                )
        except Exception as exc:  # the record says it; Prefect's view is a courtesy
            print(f"irbook: could not mark flow run {flow_run_id} crashed: {exc}", file=sys.stderr)


__all__ = ["cmd_approve", "cmd_cancel", "cmd_rollback", "cmd_run", "cmd_runs", "cmd_serve"]
