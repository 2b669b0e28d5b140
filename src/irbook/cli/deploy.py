"""`irbook deploy | worker | server stop`: the Prefect side of irbook: the playbooks as
deployments, a worker that runs them, and the local Prefect server irbook starts."""

from __future__ import annotations

import argparse
import os

from irbook.errors import IrbookError
from irbook.registry import REGISTRY
from irbook_flows.deploy import (
    check_api_reachable,
    check_pool_exists,
    full_name,
    prefect_reason,
    register,
    stuck_after_setting,
)
from irbook_flows.server import ensure_api, stop_server
from irbook_flows.warm import stop_warm
from irbook_flows.worker import worker_class


def cmd_deploy(args: argparse.Namespace) -> int:
    """`irbook deploy [--pool NAME]`: register the playbooks as Prefect deployments."""
    pool = str(args.pool)
    if not pool.strip():
        raise IrbookError("--pool needs a name")
    stuck_after_setting()  # a bad IRBOOK_STUCK_AFTER is one line before Prefect is asked anything
    url = ensure_api()  # PREFECT_API_URL when set, else irbook's local server
    check_api_reachable(url)
    try:
        registered = register(pool)
    except IrbookError:
        raise
    except Exception as exc:  # the API went away, refused a payload...
        raise IrbookError(f"registering deployments failed: {prefect_reason(exc)}") from None
    if not registered:
        print("no playbooks to deploy")
        return 0
    for pid, deployment_id in registered:
        print(f"deployed {full_name(pid)}  ({deployment_id}) -> pool {pool}")
    print(
        f"{len(registered)} deployment(s) in work pool '{pool}' on {url}\n"
        f"  start a worker: prefect worker start --pool {pool}\n"
        "  and set the receiver's runner: {type: deployments, pool: " + pool + "}"
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """`irbook worker --pool NAME [--limit N] [--name NAME]`: run deployed flow runs here."""
    pool = str(args.pool)
    if not pool.strip():
        raise IrbookError("--pool needs a name")
    if args.limit is not None and args.limit < 1:
        raise IrbookError("--limit must be at least 1")
    url = ensure_api()
    check_api_reachable(url)
    check_pool_exists(url, pool)  # else the worker would wait for it, silently, for ever
    import anyio

    from irbook_flows.flow import quiet_console

    quiet_console()
    REGISTRY.load_all()  # once, for every run this worker executes
    worker_type = worker_class()

    async def main() -> None:
        async with worker_type(
            work_pool_name=pool,
            name=args.name,
            limit=args.limit,
            create_pool_if_not_found=False,
        ) as worker:
            print(f"irbook worker {worker.name} polling work pool '{pool}'", flush=True)
            await worker.start()

    try:
        anyio.run(main)
    except KeyboardInterrupt:
        return 130
    return 0


def cmd_server(args: argparse.Namespace) -> int:
    """`irbook server stop`: irbook's own local server only; a PREFECT_API_URL is yours.
    The warm runner is stopped first: its Prefect settings name that server."""
    stopped, line = stop_warm()
    if stopped:
        print(line)
    print(stop_server())
    if os.environ.get("PREFECT_API_URL"):
        print("PREFECT_API_URL is set: that server is not irbook's and was left alone")
    return 0


__all__ = ["cmd_deploy", "cmd_server", "cmd_worker"]
