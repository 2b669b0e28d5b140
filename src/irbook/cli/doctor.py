"""`irbook doctor [--config PATH] [--pool NAME]`: can this host run irbook as configured?

One line per check, exit 0 when all pass, else 1:

- database: the one IRBOOK_DATABASE_URL (else the configuration's `database_url:`, else
  `$IRBOOK_HOME/irbook.db`) names is reachable and its tables are at the schema version
  this irbook expects (`irbook db upgrade` brings them there); the URL is shown without
  its password. A component whose tables were never made (the receiver's, on a database
  only the CLI has used) is said, not failed: its first use makes them. A database with
  none of irbook's tables fails (it may be the wrong one: `irbook db upgrade` sets it up);
- prefect api: PREFECT_API_URL (or irbook's own local server) answers its health check;
  without either, irbook starts a local server when a run needs one, which is fine for
  `runner: embedded` and not for workers on other hosts;
- work pool: with `runner: deployments` (or `--pool`), the pool exists in that API, and
  how many workers poll it now.

Nothing is started, created or upgraded: doctor only looks.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from irbook import db, migrations
from irbook.cli.database import components, schema_state
from irbook.triggers.config import load_config
from irbook_flows import server

Check = tuple[bool, str, str]  # (passed, what, one line)


def check_database(configured: str | None) -> Check:
    components()
    try:
        url = db.database_url(configured)
    except db.DatabaseUrlError as exc:
        return False, "database", str(exc)
    shown = db.redacted_url(url)
    if db.dialect_of(url) == "sqlite" and not os.path.isfile(db.sqlite_path(url)):
        return True, "database", f"{shown}: not created yet (the first run creates it)"
    try:
        database = db.open_database(url, timeout=10)
        ok, said = schema_state(database)
        have = migrations.versions(database)
    except db.DatabaseUrlError as exc:
        return False, "database", str(exc)
    except db.errors() as exc:
        return False, "database", f"{shown}: {db.first_line(exc)}"
    if ok:
        return True, "database", f"{shown}: reachable, schema {', '.join(said)} (current)"
    every = migrations.components()
    absent = [c.name for c in every if have.get(c.name, 0) == 0]
    if (
        absent
        and len(absent) < len(every)
        and all(have.get(c.name, 0) == c.version for c in every if c.name not in absent)
    ):
        # Used, but not by every component (the CLI alone never opens the receiver's
        # queue): the tables a component lacks are made by its first use, as a missing
        # SQLite file is. A database nothing has used still fails: it may be the wrong one.
        current = ", ".join(f"{c.name} {c.version}" for c in every if c.name not in absent)
        later = ", ".join(absent)
        return (
            True,
            "database",
            f"{shown}: reachable, schema {current} (current); {later}: no tables yet "
            "(made when first used)",
        )
    newer = any(have.get(c.name, 0) > c.version for c in every)
    hint = "a newer irbook wrote it: upgrade irbook" if newer else "run irbook db upgrade"
    return False, "database", f"{shown}: reachable, schema {', '.join(said)}: {hint}"


def local_api() -> str | None:
    """irbook's own local Prefect server, if one is running (never started here)."""

    try:
        state = json.loads((server.prefect_home() / "server.json").read_text())
        url = str(state["url"])
    except (OSError, ValueError, KeyError):
        return None
    return url if server._healthy(url) else None


def check_api(needs_shared: bool) -> tuple[Check, str | None]:
    user = os.environ.get("PREFECT_API_URL")
    if user:
        if server._healthy(user, timeout=5.0):
            return (True, "prefect api", f"{user}: healthy"), user
        return (False, "prefect api", f"{user} (PREFECT_API_URL): no answer to /health"), None
    local = local_api()
    if local is not None:
        return (True, "prefect api", f"{local}: irbook's local server, healthy"), local
    if needs_shared:
        why = "runner: deployments needs the Prefect server its workers use: set PREFECT_API_URL"
        return (False, "prefect api", f"not set and no local server running: {why}"), None
    said = "not set; irbook starts its local server when a run needs one (runner: embedded)"
    return (True, "prefect api", said), None


def check_pool(api: str | None, pool: str | None) -> Check:
    if pool is None:
        return True, "work pool", "not used (runner: embedded; --pool NAME checks one)"
    if api is None:
        return False, "work pool", f"{pool!r}: not checked, the Prefect API is not reachable"
    os.environ["PREFECT_API_URL"] = api
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import WorkerFilter, WorkerFilterStatus
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            found = client.read_work_pool(pool)
            online = client.read_workers_for_work_pool(
                pool, worker_filter=WorkerFilter(status=WorkerFilterStatus(any_=["ONLINE"]))
            )
    except ObjectNotFound:
        return False, "work pool", f"{pool!r} does not exist: run irbook deploy --pool {pool}"
    except Exception as exc:  # the API's errors, httpx's
        line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return False, "work pool", f"{pool!r}: {line[:200]}"
    workers = f"{len(online)} worker{'s' * (len(online) != 1)} online"
    paused = ", paused" if getattr(found, "is_paused", False) else ""
    return True, "work pool", f"{pool!r} ({found.type}{paused}): exists, {workers}"


def cmd_doctor(args: argparse.Namespace) -> int:
    configured: str | None = None
    pool: str | None = args.pool
    if args.config:
        loaded = load_config(args.config)
        configured = getattr(loaded.config, "database_url", None)
        runner: Any = loaded.config.runner
        if pool is None and runner.type == "deployments":
            pool = runner.pool or "irbook"
    checks = [check_database(configured)]
    api_check, api = check_api(needs_shared=pool is not None)
    checks.append(api_check)
    checks.append(check_pool(api, pool))
    for passed, what, line in checks:
        print(f"{'ok' if passed else 'FAIL':<4}  {what}: {line}")
    if not all(passed for passed, _, _ in checks):
        return 1
    return 0


__all__ = ["cmd_doctor"]
