"""One way to start a run, whoever asks: plan, record, execute, report.

`irbook run`, the receiver's embedded starter, a deployment's flow run on a worker and
`irbook drill` all start a run here. What differs between them is passed in, not copied:
the mode and who starts it, how the record is made (created; or claimed from `queued`
on a worker), where the flow executes (this thread, a thread of the receiver, inside
the worker's flow run) and what the caller hears (`announce`, the options of RunSpec).
The executor, approver and listeners follow from the mode and options when the flow
starts (irbook_flows.executors.wire).

It imports no Prefect: `execute` is the caller's (irbook_flows.flow.execute, in a flow
run of its own; flow.run_here, inside a worker's flow run; the receiver's thread).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from irbook.model import Alert, Playbook
    from irbook.plan import Plan
    from irbook.registry import ClientFactory
    from irbook.runs import RunStore
    from irbook_flows.engine import RunSpec
    from irbook_flows.flow import Outcome

#: makes the run's record from its plan; the run id, or None when it must not run
Record = Callable[["Plan"], "str | None"]
#: executes a recorded run; its outcome, or None when it goes on elsewhere (a thread)
Execute = Callable[["RunSpec", list[str]], "Outcome | None"]


def start_run(
    playbook: Playbook,
    alert: Alert | None,
    *,
    mode: str,
    started_by: str,
    store: RunStore,
    params: dict[str, str] | None = None,
    plan: Plan | None = None,
    run_id: str | None = None,
    execute: Execute,
    record: Record | None = None,
    announce: Callable[[str], None] | None = None,
    tags: Sequence[str] = (),
    clients: ClientFactory | None = None,
    live_reads: bool = False,
    slack_channel: str | None = None,
    **options: Any,
) -> Outcome | None:
    """Plan the run (unless the caller showed its plan already), record it, execute it
    and return its outcome.

    `mode` is live or dry-run. Without `clients`, a live run (or a dry run with
    `live_reads`) gets the live clients, a dry run none. Slack approval buttons go to
    `slack_channel` in live runs only: a dry run makes no network call. `options` are
    RunSpec's (on_event, prompt_approval, ask_approvals, drill, policy).
    """
    from irbook.plan import build_plan, manual_alert
    from irbook.registry import NoClients
    from irbook_flows.engine import RunSpec

    dry_run = mode != "live"
    if plan is None:
        plan = build_plan(playbook, alert, params or {})  # resolves and checks the inputs
    if record is None:
        made: str | None = store.create_run_for(
            plan, dry_run=dry_run, started_by=started_by, run_id=run_id
        )
    else:
        made = record(plan)
    if made is None:
        return None
    if announce is not None:
        announce(made)
    if clients is None:
        if dry_run and not live_reads:
            clients = NoClients()
        else:
            from irbook_actions.clients import LiveClients

            live = LiveClients()
            live.prepare(aws_clients(plan))  # built in a thread while the flow run starts
            clients = live
    spec = RunSpec(
        run_id=made,
        playbook=playbook,
        alert=alert or manual_alert(),
        inputs=plan.inputs,
        dry_run=dry_run,
        started_by=started_by,
        store=store,
        clients=clients,
        live_reads=live_reads,
        secrets=plan.secrets,
        slack_channel=None if dry_run else slack_channel,
        **options,
    )
    return execute(spec, list(tags))


def aws_clients(plan: Plan) -> list[tuple[str, str | None]]:
    """The (service, region) AWS clients a run's steps will ask for, in the order of the
    plan: the services of their planned calls, in the step's region, as the engine gives
    them (Playbook.aws_for). Steps acting through a role are left out: its credentials
    are fetched when the step runs, not before."""
    book = plan.playbook
    wanted: dict[tuple[str, str | None], None] = {}
    for planned in plan.steps:
        if planned.status != "run" or not planned.action.startswith("aws."):
            continue
        where = book.aws_for(book.step(planned.id))
        if where.role_arn:
            continue
        for call in planned.calls:
            wanted.setdefault((call.service, where.region), None)
    return list(wanted)


def playbook_digest(path: str) -> str:
    """The content digest a deployment is registered with (its version) and a worker checks
    its own copy of the playbook against: SHA-256 of the file's bytes, 16 hex digits."""
    import hashlib

    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()[:16]


__all__ = ["Execute", "Record", "aws_clients", "playbook_digest", "start_run"]
