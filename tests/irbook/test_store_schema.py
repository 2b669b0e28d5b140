"""The versioned schema (irbook.migrations): a run record written before the schema had a
version is adopted as it is and keeps verifying; `irbook db status|upgrade` and `irbook
doctor` say where a database stands, one line each, exit 0/1, no password shown."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from irbook import audit
from irbook.runs import COMPONENT, RunStore

# The tables as an irbook before schema versions wrote them: seqs from AUTOINCREMENT.
OLD_SCHEMA = """
CREATE TABLE runs (id TEXT PRIMARY KEY, playbook_id TEXT NOT NULL, playbook_title TEXT
    NOT NULL, mode TEXT NOT NULL, started_by TEXT NOT NULL, alert_source TEXT, alert_id TEXT,
    incident_key TEXT, flow_run_id TEXT, state TEXT NOT NULL, message TEXT, inputs TEXT NOT
    NULL, outputs TEXT, rollback TEXT NOT NULL, created_at REAL NOT NULL, finished_at REAL,
    owner TEXT);
CREATE TABLE steps (run_id TEXT NOT NULL, step_id TEXT NOT NULL, item INTEGER NOT NULL,
    action TEXT NOT NULL, effect TEXT NOT NULL, state TEXT NOT NULL, reason TEXT, attempts
    INTEGER NOT NULL DEFAULT 0, params TEXT, planned_calls TEXT, real_calls TEXT, outputs
    TEXT, compensation TEXT, irreversible TEXT, approval TEXT, started_at REAL, finished_at
    REAL, PRIMARY KEY (run_id, step_id, item));
CREATE TABLE events (run_id TEXT NOT NULL, seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL, kind TEXT NOT NULL, step_id TEXT, detail TEXT);
CREATE TABLE audit (seq INTEGER PRIMARY KEY, hash TEXT NOT NULL);
CREATE TABLE run_owners (id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,
    proc_start TEXT, started_at REAL NOT NULL, lease_expires REAL NOT NULL);
"""


def old_record(path: Path, runs: int = 3) -> None:
    """Runs written the old way: an event by AUTOINCREMENT, its link from the last one."""
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(OLD_SCHEMA)
    prev = audit.GENESIS

    def event(run_id: str, kind: str, detail: dict[str, object]) -> None:
        nonlocal prev
        at = time.time()
        text = json.dumps(detail, sort_keys=True)
        seq = db.execute(
            "INSERT INTO events (run_id, at, kind, step_id, detail) VALUES (?, ?, ?, NULL, ?)",
            (run_id, at, kind, text),
        ).lastrowid
        row = {"seq": seq, "at": at, "run_id": run_id, "kind": kind, "step_id": None}
        prev = audit.link(prev, {**row, "detail": text})
        db.execute("INSERT INTO audit (seq, hash) VALUES (?, ?)", (seq, prev))

    for n in range(runs):
        run_id = f"old{n}"
        values: dict[str, object] = {
            "playbook_id": "pb",
            "playbook_title": "PB",
            "mode": "dry-run",
            "started_by": "cli:alice",
            "alert_source": None,
            "alert_id": None,
            "incident_key": None,
            "flow_run_id": None,
            "state": "succeeded",
            "message": "",
            "inputs": {},
            "outputs": None,
            "rollback": "manual",
            "created_at": 1.0 + n,
            "finished_at": 2.0 + n,
            "owner": None,
        }
        stored = {
            k: (audit.dumps(v) if k in ("inputs", "outputs") else v) for k, v in values.items()
        }
        db.execute(
            f"INSERT INTO runs (id, {', '.join(stored)}) VALUES (?{', ?' * len(stored)})",
            (run_id, *stored.values()),
        )
        event(run_id, "run-started", {"set": values})
    db.close()


def irbook(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env}
    if "IRBOOK_DATABASE_URL" not in env:
        full.pop("IRBOOK_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=full,
    )


def test_an_old_record_is_adopted_and_its_chain_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "irbook.db"
    old_record(path)
    assert irbook("audit", "verify", str(path)).returncode == 0  # read-only, as it was
    status = irbook("db", "status", str(path))
    assert status.returncode == 1
    # the receiver's tables (irbook.triggers.queue) are a component of their own
    assert f"runs none (expected {COMPONENT.version})" in status.stdout
    assert status.stdout.rstrip().endswith(": run irbook db upgrade")
    upgraded = irbook("db", "upgrade", str(path))
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"runs tables at schema version {COMPONENT.version}" in upgraded.stdout
    again = irbook("db", "upgrade", str(path))
    assert "already" in again.stdout
    assert irbook("db", "status", str(path)).returncode == 0

    store = RunStore(str(path))
    assert store.event("old2", "note", None, text="after the upgrade") == 4
    done = irbook("audit", "verify", str(path))
    assert done.returncode == 0, done.stdout
    assert "4 records; 3 runs and 0 steps match it" in done.stdout


def test_an_old_record_cut_short_before_the_upgrade_still_says_so(tmp_path: Path) -> None:
    """SQLite's counter said 3 were written: the head the upgrade starts from says it too."""
    path = tmp_path / "irbook.db"
    old_record(path)
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM events WHERE seq = 3")
        db.execute("DELETE FROM audit WHERE seq = 3")
        db.execute("DELETE FROM runs WHERE id = 'old2'")
    db.close()
    RunStore(str(path))  # the first store to open it upgrades it
    done = irbook("audit", "verify", str(path))
    assert done.returncode == 1
    assert "record 3 removed: the chain ends at 2 but 3 were written" in done.stdout


def test_a_store_opened_twice_upgrades_once(tmp_path: Path) -> None:
    path = tmp_path / "irbook.db"
    RunStore(str(path))
    RunStore(str(path))
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT component, version FROM irbook_schema").fetchall()
    db.close()
    assert rows == [("runs", COMPONENT.version)]


def test_db_commands_on_postgres_name_the_url_without_its_password(pg_url: str) -> None:
    secret = pg_url.replace("postgres@", "postgres:hunter2@")
    status = irbook("db", "status", IRBOOK_DATABASE_URL=secret)
    assert status.returncode == 1 and "runs none" in status.stdout, status.stderr
    upgraded = irbook("db", "upgrade", IRBOOK_DATABASE_URL=secret)
    assert upgraded.returncode == 0, upgraded.stderr
    status = irbook("db", "status", secret)
    assert status.returncode == 0 and "(current)" in status.stdout
    for done in (status, upgraded):
        assert "hunter2" not in done.stdout + done.stderr
        assert "postgres:***@" in done.stdout
    down = irbook("db", "status", "postgresql://postgres:hunter2@127.0.0.1:1/none")
    assert down.returncode == 1 and "cannot connect" in down.stderr
    assert "hunter2" not in down.stderr and down.stderr.count("\n") == 1
    bad = irbook("db", "status", "mysql://x/y")
    assert bad.returncode == 1 and "unsupported database 'mysql'" in bad.stderr


def test_doctor_says_what_is_missing_one_line_each(
    pg_url: str, prefect_api: str, tmp_path: Path
) -> None:
    pool = f"doctor-{os.getpid()}"
    env = {"IRBOOK_DATABASE_URL": pg_url, "PREFECT_API_URL": prefect_api}
    done = irbook("doctor", "--pool", pool, **env)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert len(lines) == 3, done.stdout
    assert lines[0].startswith("FAIL  database: ") and "run irbook db upgrade" in lines[0]
    assert lines[1] == f"ok    prefect api: {prefect_api}: healthy"
    assert lines[2] == (
        f"FAIL  work pool: {pool!r} does not exist: run irbook deploy --pool {pool}"
    )
    RunStore(pg_url)
    from irbook.triggers.queue import AlertQueue

    AlertQueue(pg_url).close()  # a receiver opened it too: every component's tables exist
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    with get_client(sync_client=True) as api:
        api.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    done = irbook("doctor", "--pool", pool, **env)
    assert done.returncode == 0, done.stdout
    assert "reachable, schema receiver 1, runs" in done.stdout and "(current)" in done.stdout
    assert f"ok    work pool: {pool!r} (process): exists, 0 workers online" in done.stdout
    down = irbook(
        "doctor",
        IRBOOK_DATABASE_URL="postgresql://postgres:pw@127.0.0.1:1/x",
        PREFECT_API_URL="http://127.0.0.1:9/api",
    )
    assert down.returncode == 1, down.stdout
    assert down.stdout.splitlines()[0].startswith(
        "FAIL  database: IRBOOK_DATABASE_URL: cannot connect to postgresql://postgres:***@"
    )
    assert "FAIL  prefect api: http://127.0.0.1:9/api (PREFECT_API_URL): no answer" in down.stdout
    assert "Traceback" not in down.stderr


def test_urls_are_shown_without_any_password() -> None:
    from irbook.db import redacted_url

    assert redacted_url("postgresql://irbook:s3cr@t@db:5432/irbook") == (
        "postgresql://irbook:***@db:5432/irbook"
    )
    assert redacted_url("postgresql://irbook@db/irbook?sslmode=require&password=s3cret") == (
        "postgresql://irbook@db/irbook?sslmode=require&password=***"
    )
    assert redacted_url("postgresql://irbook@db/irbook") == "postgresql://irbook@db/irbook"
    assert redacted_url("/var/lib/irbook/irbook.db") == "/var/lib/irbook/irbook.db"


def test_a_script_splits_at_statements_not_at_semicolons_in_comments_or_literals() -> None:
    from irbook.db import split_script

    script = """
    CREATE TABLE a (x INTEGER NOT NULL, -- a comment; with a semicolon
        y TEXT DEFAULT 'p;q');
    -- a whole-line comment; also
    CREATE INDEX a_x ON a (x);
    """
    assert split_script(script) == [
        "CREATE TABLE a (x INTEGER NOT NULL,\n        y TEXT DEFAULT 'p;q')",
        "CREATE INDEX a_x ON a (x)",
    ]


def test_doctor_passes_a_database_only_the_cli_has_used(tmp_path: Path) -> None:
    """`irbook run` alone never opens the receiver's queue, so its tables are not there:
    a legitimate setup, said on the ok line; an outdated component still fails."""
    path = tmp_path / "cli-only.db"
    RunStore(str(path)).database.close()
    env = {"IRBOOK_DATABASE_URL": str(path), "PREFECT_API_URL": ""}
    done = irbook("doctor", **env)
    assert done.returncode == 0, done.stdout + done.stderr
    first = done.stdout.splitlines()[0]
    assert first == (
        f"ok    database: {path}: reachable, schema runs {COMPONENT.version} (current); "
        "receiver: no tables yet (made when first used)"
    ), done.stdout
    with sqlite3.connect(path) as db:
        db.execute("UPDATE irbook_schema SET version = 1 WHERE component = 'runs'")
    db.close()
    done = irbook("doctor", **env)
    assert done.returncode == 1, done.stdout
    assert done.stdout.splitlines()[0] == (
        f"FAIL  database: {path}: reachable, schema receiver none (expected 1), "
        f"runs 1 (expected {COMPONENT.version}): run irbook db upgrade"
    ), done.stdout
    assert "Traceback" not in done.stderr
