"""`irbook serve`: the HTTP receiver of SIEM webhooks and Slack approvals, with the
reaper of crashed runs."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import Any

from irbook import leases
from irbook.cache import home
from irbook.cli.common import crash_reaper
from irbook.db import URL_ENV, DatabaseUrlError, database_url, open_database
from irbook.errors import IrbookError
from irbook.policy import active as active_policy
from irbook.registry import REGISTRY
from irbook.runs import RunStore
from irbook.source import default_playbook_dirs
from irbook.triggers.app import WebhookReceiver, create_app, load_playbooks
from irbook.triggers.auth import build_verifier
from irbook.triggers.config import load_config, route_playbooks
from irbook.triggers.limits import ReplayGuard
from irbook.triggers.slack import SlackApprovals, SlackInteractions
from irbook_actions.clients import LiveClients
from irbook_flows.deploy import check_deployments, deployments_starter
from irbook_flows.embedded import EmbeddedStarter
from irbook_flows.executors import Decision
from irbook_flows.server import ensure_api


def slack_interactions_from_env() -> Any:
    """Slack approvals for `irbook serve`, from the environment; None when not set up.

    IRBOOK_SLACK_SIGNING_SECRET verifies button presses; IRBOOK_SLACK_APPROVERS lists the
    Slack user ids (U...) and user group ids (S...) allowed to decide.
    """
    secret = os.environ.get("IRBOOK_SLACK_SIGNING_SECRET")
    if not secret:
        return None
    from irbook_flows.flow import resume

    ids = [i.strip() for i in os.environ.get("IRBOOK_SLACK_APPROVERS", "").split(",") if i.strip()]
    clients = LiveClients()

    def members(group: str) -> set[str]:
        return set(clients.slack().usergroups_users_list(usergroup=group)["users"])

    def update(channel: str, ts: str, text: str) -> None:
        clients.slack().chat_update(channel=channel, ts=ts, text=text, blocks=[])

    def decide(flow_run_id: str, approved: bool, approver: str, comment: str, ticket: int) -> None:
        resume(flow_run_id, Decision(approved, approver, comment, ticket=ticket), wait_paused=2)

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
    # Everything the files can get wrong (configuration, secrets, playbooks, triggers no
    # source can produce) is refused before the Prefect server starts, which takes 15 s.
    loaded = playbooks = None
    if args.config:
        loaded = load_config(args.config)
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
        try:  # before Prefect starts, as the files are: one line naming the setting at
            # fault; the pool it opens is the one every store of this process shares
            open_database(database_url(), setting=setting)
        except DatabaseUrlError as exc:
            raise IrbookError(str(exc)) from None

    active_policy()  # a broken policy file stops the receiver here, before Prefect starts

    ensure_api()
    from irbook_flows.flow import quiet_console

    quiet_console()
    REGISTRY.load_all()
    try:
        return _serve(args, loaded, playbooks)
    except DatabaseUrlError as exc:  # unreachable, or refused: one line, no traceback
        raise IrbookError(str(exc)) from None


def _serve(args: argparse.Namespace, loaded: Any, playbooks: Any) -> int:
    import uvicorn

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
            starter = deployments_starter(runner, store)
        else:
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
        reaper = crash_reaper(store, hooks.queue, workers=runner.type == "deployments")
        settle = functools.partial(_settle_reaped, store)
        settle(reaper.reap())  # before any new alert: the dead are settled first
        reaper.start(leases.lease_seconds() / 3, settle)
        if runner.type == "deployments":
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


__all__ = ["cmd_serve", "slack_interactions_from_env"]
