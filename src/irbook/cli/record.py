"""`irbook runs [list | show RUN_ID]`: the run record as the on-call reads it (recent runs,
one run's steps, calls, decisions and rollback). It needs neither Prefect nor the
playbook loader, so it starts as fast as `irbook validate`."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from irbook.cli.common import crash_reaper, find_run, first_line, when
from irbook.db import errors as db_errors
from irbook.errors import IrbookError
from irbook.runs import RunStore, step_label, verdict_text

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
    line = f"{when(event['at'])} {what}{step} by {who}{principal}{grant}"
    if d.get("waiting_for"):
        line += f", waiting for {d['waiting_for']} more"
    if kind.endswith("refused") and d.get("reason"):
        line += f": {first_line(str(d['reason']))}"
    return line


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
    store = RunStore()
    # Runs whose process died are settled first, so none is listed as running for ever.
    reaped: list[Any] = []
    try:
        reaped = crash_reaper(store, None).reap()
    except db_errors() as exc:  # a read-only or busy database: list what is there
        print(f"irbook: warning: could not settle crashed runs: {exc}", file=sys.stderr)
    if args.action == "show":
        if not args.run_id:
            raise IrbookError("irbook runs show needs a RUN_ID")
        record = find_run(store, args.run_id)
        run_id = record["id"]
        steps = store.steps(run_id)
        rollback = store.rollbacks([run_id]).get(run_id)
        waiting = store.waiting_approvals([run_id]).get(run_id)
        if args.format == "json":
            events = store.events(run_id)
            data: dict[str, Any] = {"run": record, "steps": steps, "events": events}
            data["rolled_back"], data["waiting"] = rollback, waiting
            print(json.dumps(data, indent=2))
            return 0
        said = state_text(record["state"], record["message"], rollback, waiting)
        print(f"run {run_id}: {record['playbook_id']} ({record['mode']}) {said}")
        print(f"  started by {record['started_by']} at {when(record['created_at'])}")
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
                f"{when(waiting.get('since'))} (timeout {waiting.get('timeout')}{then}): "
                f"irbook approve {run_id} [--reject]"
            )
        if rollback:
            counts = f"{rollback.get('undone', 0)} undone, {rollback.get('skipped', 0)} skipped"
            if rollback.get("failed"):
                counts += f", {rollback['failed']} failed"
            print(
                f"  rollback: {rollback['outcome']} by {rollback.get('by')} at "
                f"{when(rollback.get('at'))} ({counts})"
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
            f"{row['id']}  {when(row['created_at'])}  {row['mode']:<7}  "
            f"{said:<11}  {row['playbook_id']}  {row['started_by']}"
        )
    if human:
        print(f"\n{len(human)} run(s) need a human (see: irbook runs show RUN_ID):")
        for row in human:
            print(f"  {row['id']}  {row['playbook_id']}  {row['message']}")
    return 0


__all__ = ["cmd_runs", "decision_line", "state_text"]
