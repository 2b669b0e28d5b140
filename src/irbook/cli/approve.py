"""`irbook approve RUN_ID [--reject]`: decide the step a run waits on, through the run's
own flow, which judges the attempt (irbook.policy) and answers in the run record."""

from __future__ import annotations

import argparse
import time
from typing import Any

from irbook import policy as access
from irbook.cli.common import (
    EXIT_LATE,
    EXIT_OK,
    EXIT_RECORDED,
    EXIT_REFUSED,
    cli_process,
    find_run,
)
from irbook.errors import IrbookError
from irbook.runs import RunStore
from irbook_flows.executors import Decision
from irbook_flows.server import ensure_api


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
    rules = access.active()
    store = RunStore()
    record = find_run(store, args.run_id)
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
    pid, alive = cli_process(store, run_id)
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

    ensure_api()
    from prefect.exceptions import FlowPauseTimeout, NotPausedError

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


__all__ = ["cmd_approve"]
