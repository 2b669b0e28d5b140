"""The run record on the machine's real PostgreSQL (`pg_url`): what a store writes is read
back the same, several processes appending at once keep one verifiable chain, and
`irbook audit verify` (a subprocess with only IRBOOK_DATABASE_URL, as an operator runs
it) names a changed, removed or inserted record. Also the schema's version, the lease
table and the reaper on PostgreSQL."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from irbook import audit, migrations
from irbook.reaper import Reaper
from irbook.runs import COMPONENT, RunStore


def cli(*args: str, url: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, **env)
    full.pop("IRBOOK_DATABASE_URL", None)
    if url is not None:
        full["IRBOOK_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=full,
    )


def sql(url: str, statement: str) -> Any:
    with psycopg.connect(url, autocommit=True) as db:
        cursor = db.execute(statement)
        return cursor.fetchall() if cursor.description else None


def record(store: RunStore) -> str:
    """A live run with an approved, succeeded step and a skipped one."""
    run = store.create_run(
        playbook_id="pb",
        playbook_title="PB",
        mode="live",
        started_by="cli:alice",
        inputs={"key_id": "AKIAEXAMPLE", "n": 3},
        rollback="manual",
        alert_source="guardduty",
        alert_id="a-1",
        incident_key="pb:a-1",
        run_id="run1",
    )
    store.upsert_step(
        run,
        "revoke",
        0,
        action="aws.iam.x",
        effect="mutate",
        state="awaiting-approval",
        approval={"timeout": "15m"},
    )
    store.event(run, "approval-approved", "revoke", by="alice")
    store.upsert_step(run, "revoke", 0, state="running", started_at=2.0, attempts=1)
    store.upsert_step(
        run, "revoke", 0, state="succeeded", outputs={"status": "Inactive"}, finished_at=3.0
    )
    store.upsert_step(run, "page", 0, state="skipped", reason="when: false")
    store.finish_run(run, "succeeded", "", {"revoked": True})
    return run


def test_a_run_is_recorded_and_read_back_the_same(pg_url: str) -> None:
    store = RunStore(pg_url)
    assert store.dialect == "postgresql"
    run = record(store)
    got = store.run(run) or {}
    assert got["state"] == "succeeded" and got["inputs"] == {"key_id": "AKIAEXAMPLE", "n": 3}
    assert got["outputs"] == {"revoked": True} and isinstance(got["created_at"], float)
    steps = {s["step_id"]: s for s in store.steps(run)}
    assert steps["revoke"]["state"] == "succeeded" and steps["revoke"]["attempts"] == 1
    assert steps["revoke"]["outputs"] == {"status": "Inactive"}
    assert steps["page"]["reason"] == "when: false"
    kinds = [e["kind"] for e in store.events(run)]
    assert kinds[0] == "run-started" and kinds[-1] == "run-succeeded"
    assert [e["seq"] for e in store.events(run)] == list(range(1, len(kinds) + 1))
    assert (store.find_run("run1") or {})["id"] == "run1"
    assert store.find_run("run") is None  # too short a prefix
    assert [r["id"] for r in store.recent_runs()] == ["run1"]
    # a second store (another process would do the same) sees the same record
    assert RunStore(pg_url).run(run) == got
    assert audit.verify(store.database).ok


def test_the_default_store_follows_irbook_database_url(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IRBOOK_DATABASE_URL", pg_url)
    store = RunStore()
    assert store.path == pg_url and store.dialect == "postgresql"
    record(store)
    done = cli("runs", url=pg_url)
    assert done.returncode == 0, done.stderr
    assert "run1" in done.stdout
    shown = cli("runs", "show", "run1", url=pg_url)
    assert shown.returncode == 0 and "revoke" in shown.stdout, shown.stdout + shown.stderr


WRITER = """
import sys, time
from irbook.runs import RunStore
store = RunStore(sys.argv[1])
n = sys.argv[2]
time.sleep(max(0.0, float(sys.argv[3]) - time.time()))  # all start writing at once
run = store.create_run(playbook_id="pb", playbook_title="PB", mode="dry-run",
    started_by="cli:" + n, inputs={}, rollback="manual", run_id="run-" + n)
for i in range(20):
    store.upsert_step(run, "s", i, action="core.note", effect="read", state="running")
    store.event(run, "note", "s", text=f"{n}-{i}")
    store.upsert_step(run, "s", i, state="succeeded", attempts=1)
store.finish_run(run, "succeeded")
"""


def test_processes_appending_at_once_keep_one_chain(pg_url: str) -> None:
    RunStore(pg_url)  # the tables exist before the writers race
    at = str(time.time() + 8)  # after every writer has imported irbook and connected
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, pg_url, str(n), at]) for n in range(4)
    ]
    for writer in writers:
        assert writer.wait(timeout=180) == 0
    done = cli("audit", "verify", url=pg_url)
    assert done.returncode == 0, done.stdout + done.stderr
    # each writer: run-started, 20 x (step-running, note, step-succeeded), run-succeeded
    assert "audit chain intact, 248 records; 4 runs and 80 steps match it" in done.stdout
    # the appends interleaved (else this says nothing about concurrency)
    owners = [r[0] for r in sql(pg_url, "SELECT run_id FROM events ORDER BY seq")]
    switches = sum(1 for a, b in itertools.pairwise(owners) if a != b)
    assert switches > 3
    assert "postgresql://postgres@" in done.stdout


def test_a_store_opened_by_several_processes_at_once_creates_its_tables_once(
    pg_url: str,
) -> None:
    code = "import sys; from irbook.runs import RunStore; RunStore(sys.argv[1])"
    openers = [subprocess.Popen([sys.executable, "-c", code, pg_url]) for _ in range(4)]
    assert [p.wait(timeout=120) for p in openers] == [0] * 4
    assert sql(pg_url, "SELECT component, version FROM irbook_schema") == [
        ("runs", COMPONENT.version)
    ]


@pytest.mark.parametrize(
    ("tampering", "problem"),
    [
        (
            "UPDATE events SET detail = replace(detail, 'alice', 'mallory') WHERE seq = 3",
            "record 3 (run run1, approval-approved) does not match its link",
        ),
        ("DELETE FROM events WHERE seq = 4", "record 4 was removed (its link remains)"),
        (
            "DELETE FROM events WHERE seq = 4; DELETE FROM audit WHERE seq = 4",
            "record 4 removed (from the events and the chain both)",
        ),
        (
            "INSERT INTO events (seq, run_id, at, kind, step_id, detail)"
            " VALUES (8, 'run1', 9.5, 'note', NULL, '{}')",
            "record 8 is not in the chain (run run1, note): added outside irbook",
        ),
        (
            "DELETE FROM events WHERE seq > 6; DELETE FROM audit WHERE seq > 6",
            "removed: the chain ends at 6 but",
        ),
        (
            "UPDATE runs SET started_by = 'cli:mallory'",
            'run run1: runs.started_by is "cli:mallory" in the table but "cli:alice" in the'
            " chain (audit seq 1)",
        ),
    ],
    ids=["changed", "event-removed", "record-removed", "inserted", "tail-cut", "table-edited"],
)
def test_irbook_audit_verify_names_the_tampered_record(
    pg_url: str, tampering: str, problem: str
) -> None:
    record(RunStore(pg_url))
    assert cli("audit", "verify", url=pg_url).returncode == 0
    for statement in tampering.split("; "):
        sql(pg_url, statement)
    done = cli("audit", "verify", url=pg_url)
    assert done.returncode == 1, done.stdout
    assert problem in done.stdout, done.stdout
    assert "Traceback" not in done.stderr


def test_audit_verify_takes_the_url_as_its_argument_and_hides_the_password(
    pg_url: str, tmp_path: Path
) -> None:
    record(RunStore(pg_url))
    secret = pg_url.replace("postgres@", "postgres:hunter2@")  # trust auth ignores it
    done = cli("audit", "verify", secret)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hunter2" not in done.stdout and "postgres:***@" in done.stdout
    # an explicit SQLite path still wins over the environment's URL
    sqlite_file = tmp_path / "irbook.db"
    record(RunStore(str(sqlite_file)))
    done = cli("audit", "verify", str(sqlite_file), url=pg_url)
    assert done.returncode == 0 and str(sqlite_file) in done.stdout, done.stdout
    down = cli("audit", "verify", url="postgresql://postgres@127.0.0.1:1/none")
    assert down.returncode == 1 and "cannot connect" in down.stderr, down.stderr
    assert "Traceback" not in down.stderr


def test_a_newer_schema_is_refused_with_both_versions(pg_url: str) -> None:
    RunStore(pg_url)
    sql(pg_url, "UPDATE irbook_schema SET version = 99 WHERE component = 'runs'")
    with pytest.raises(migrations.SchemaError, match="version 99, newer than this irbook"):
        RunStore(pg_url)


def test_a_dead_owner_on_another_host_is_reaped_with_its_last_step(pg_url: str) -> None:
    """A worker killed mid-run on another host: its lease expires, and a reaper anywhere
    that has the URL marks the run (here a dry run: crashed, naming the last step)."""
    store = RunStore(pg_url)
    sql(
        pg_url,
        "INSERT INTO run_owners (id, host, pid, proc_start, started_at, lease_expires)"
        " VALUES ('elsewhere:42:beef', 'elsewhere', 42, NULL, 1, 2)",
    )
    store.owner = "elsewhere:42:beef"
    run = store.create_run(
        playbook_id="pb",
        playbook_title="PB",
        mode="dry-run",
        started_by="cli:alice",
        inputs={},
        rollback="manual",
    )
    store.upsert_step(
        run, "snap", 0, action="aws.x", effect="read", state="succeeded", started_at=1.0
    )
    store.upsert_step(
        run, "isolate", 0, action="aws.y", effect="mutate", state="running", started_at=2.0
    )
    reaper_store = RunStore(pg_url)
    reaped = Reaper(reaper_store).reap()
    assert [r.run_id for r in reaped] == [run]
    got = reaper_store.run(run) or {}
    assert got["state"] == "crashed"
    assert "last step: isolate (running)" in got["message"]
    assert Reaper(RunStore(pg_url)).reap() == []  # settled once
    assert audit.verify(reaper_store.database).ok


def test_this_process_lease_is_kept_in_the_shared_database(pg_url: str) -> None:
    store = RunStore(pg_url)
    owner = store.hold()
    rows = sql(pg_url, f"SELECT lease_expires FROM run_owners WHERE id = '{owner}'")
    assert rows and rows[0][0] > time.time()


def test_database_errors_are_caught_by_the_same_names_on_postgresql(pg_url: str) -> None:
    """`except db.integrity_errors():` and `except db.errors():` catch psycopg's errors
    as they catch sqlite3's, so callers need not know the back-end."""
    from irbook import db

    database = db.open_database(pg_url)
    conn = database.conn()
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
    conn.execute("INSERT INTO t (k) VALUES (?)", ("a",))
    with pytest.raises(db.integrity_errors()) as caught:
        conn.execute("INSERT INTO t (k) VALUES (?)", ("a",))
    assert isinstance(caught.value, psycopg.IntegrityError)
    with pytest.raises(db.errors()):
        conn.execute("SELECT nope FROM t")
    assert psycopg.OperationalError in db.busy_errors()
    assert db.DatabaseUrlError in db.unreachable_errors()


def test_statements_run_on_a_borrowed_connection_or_the_transactions(pg_url: str) -> None:
    """Outside a transaction each call borrows a pooled connection (and its writes are
    committed at once); inside one, every call uses the transaction's connection, so a
    rollback takes back execute's and executemany's writes alike."""
    from irbook import db

    database = db.open_database(pg_url)
    conn = database.conn()
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER)")
    assert (
        conn.executemany("INSERT INTO t (k, n) VALUES (?, ?)", [("a", 1), ("b", 2)]).rowcount == 2
    )
    with pytest.raises(RuntimeError), database.tx() as tx:
        tx.executemany("INSERT INTO t (k, n) VALUES (?, ?)", [("c", 3), ("d", 4)])
        tx.execute("UPDATE t SET n = ? WHERE k = ?", (10, "a"))
        assert tx.execute("SELECT count(*) AS c FROM t").fetchone()["c"] == 4
        raise RuntimeError("roll back")
    assert sql(pg_url, "SELECT k, n FROM t ORDER BY k") == [("a", 1), ("b", 2)]
