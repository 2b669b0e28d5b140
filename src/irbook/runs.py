"""The run record: what every run did, kept in irbook's database (irbook.db).

Prefect keeps its own records of flow and task runs; this store keeps what an incident
review and a drill need and Prefect does not model: who started the run and from which
alert, the mode, the inputs (secrets redacted), each step's planned and real calls,
outputs, approvals and compensations, in one place that works without the Prefect API.

A SQLite file in WAL mode under $IRBOOK_HOME by default, or the PostgreSQL database
IRBOOK_DATABASE_URL names, shared by every receiver, worker and CLI that has the URL;
every write is one short transaction, so a crashed run leaves a consistent record (the
run stays 'running' and says so). The tables are versioned (irbook.migrations): the
first store to open a database creates or upgrades them.

Every write to a run's or a step's row is recorded, in its own transaction, by a chained
event whose detail carries the columns it wrote under "set" (as stored, read back): the
first event of a row carries all of them. `irbook audit verify` replays those events and
compares the result with the tables, so what `irbook runs` prints is covered by the chain.
"""

from __future__ import annotations

import json
import time
import uuid
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from irbook import audit, leases, migrations
from irbook.audit import JSON_COLUMNS, KEY_COLUMNS
from irbook.audit import dumps as _dumps
from irbook.audit import step_label as step_label  # where runs show, rollback, reaper look
from irbook.db import AnyDatabase, add_columns, database_url, open_database

if TYPE_CHECKING:
    from irbook.plan import Plan

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    playbook_id TEXT NOT NULL,
    playbook_title TEXT NOT NULL,
    mode TEXT NOT NULL,               -- live | dry-run
    started_by TEXT NOT NULL,         -- cli:<user> | webhook:<source> | drill:<id>
    alert_source TEXT,
    alert_id TEXT,
    incident_key TEXT,
    flow_run_id TEXT,
    state TEXT NOT NULL,              -- queued | running | succeeded | partial | failed
                                      -- | rejected
                                      -- | cancelled | crashed | needs-human (irbook.reaper)
    message TEXT,
    inputs TEXT NOT NULL,             -- JSON, secrets redacted
    outputs TEXT,
    rollback TEXT NOT NULL,           -- manual | auto
    created_at REAL NOT NULL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL REFERENCES runs (id),
    step_id TEXT NOT NULL,
    item INTEGER NOT NULL,            -- for_each index; 0 otherwise
    action TEXT NOT NULL,
    effect TEXT NOT NULL,
    state TEXT NOT NULL,              -- pending | running | awaiting-approval | succeeded
                                      -- | failed | skipped | rejected | cancelled
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    params TEXT,
    planned_calls TEXT,
    real_calls TEXT,
    outputs TEXT,
    compensation TEXT,
    irreversible TEXT,
    approval TEXT,
    started_at REAL,
    finished_at REAL,
    PRIMARY KEY (run_id, step_id, item)
);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL,
    seq INTEGER PRIMARY KEY,          -- given by audit.append (the chain's head)
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    step_id TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS events_run ON events (run_id, seq);
"""

# partial: succeeded with failed steps (on_failure: continue); said so wherever shown.
FINAL_RUN_STATES = (
    "succeeded",
    "partial",
    "failed",
    "rejected",
    "cancelled",
    "crashed",
    "needs-human",
)


def verdict_text(state: str, message: str | None = None) -> str:
    """A run's end in words, the same in the terminal, `irbook runs`, Slack and Prefect."""
    if state == "partial":
        return f"succeeded with {message}" if message else "succeeded with failed steps"
    return state


def verdict_line(state: str, message: str | None = None) -> str:
    """The verdict with its reason: "failed (step 'x' failed: ...)"; a partial run's
    reason is part of its verdict already ("succeeded with 1 failed step: x")."""
    said = verdict_text(state, message)
    return f"{said} ({message})" if message and state != "partial" else said


# Added to existing files too: which process runs a run (irbook.leases).
_COLUMNS = {"owner": "TEXT"}
_INDEXES = "CREATE INDEX IF NOT EXISTS runs_running ON runs (owner) WHERE state = 'running';"


def _version_1(db: Any) -> None:
    """The tables as irbook kept them before the schema had a version (a file written
    then already has them: nothing changes but the added column and tables)."""
    migrations.run_script(db, SCHEMA + audit.SCHEMA)
    add_columns(db, "runs", _COLUMNS)
    migrations.run_script(db, _INDEXES + leases.SCHEMA)


def _version_2(db: Any) -> None:
    """The audit chain's head row: seqs come from it, on SQLite and PostgreSQL alike."""
    migrations.run_script(db, audit.HEAD_SCHEMA)
    audit.start_head(db)


#: The run record's tables: runs, steps, events, the audit chain, run owners.
COMPONENT = migrations.register(migrations.Component("runs", (_version_1, _version_2)))

# What `irbook rollback` (or an auto rollback) left the run's effects in; shown beside the
# run's own verdict ("failed, rolled back") so neither hides the other.
ROLLBACK_OUTCOMES = ("rolled back", "partially rolled back", "rollback failed")


def rollback_outcome(undone: int, skipped: int, failed: int) -> str:
    """A rollback's result in words: every compensation done or skipped, some, or none."""
    if not failed:
        return "rolled back"
    return "partially rolled back" if undone + skipped else "rollback failed"


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class RunStore:
    """Thread-safe access to the run record: one SQLite connection per thread, or
    PostgreSQL's pool (shared by the stores of a process that name the same URL).

    `path` is a SQLite file, a `sqlite:///PATH` or a `postgresql://` URL; without it,
    the database irbook.db.database_url() resolves (IRBOOK_DATABASE_URL, else
    `$IRBOOK_HOME/irbook.db`)."""

    def __init__(self, path: str | None = None) -> None:
        self.path = str(path) if path else database_url()
        self._database: AnyDatabase = open_database(self.path)
        migrations.ensure(self._database, COMPONENT)
        self._secrets: dict[str, tuple[str, ...]] = {}
        #: The owner id stamped on runs this store creates (`hold`); None: not leased.
        self.owner: str | None = None

    def protect(self, run_id: str, secrets: list[str]) -> None:
        """Redact these secret values from everything written for this run from now on
        (steps, events and so the audit chain, the final message and outputs): a step's
        reason or an action's error may quote a secret however it was passed along."""
        if secrets:
            self._secrets[run_id] = tuple(secrets)

    def _clean(self, run_id: str, value: Any) -> Any:
        secrets = self._secrets.get(run_id)
        if not secrets:
            return value
        from irbook.plan import redact

        return redact(value, secrets)

    @property
    def database(self) -> AnyDatabase:
        return self._database

    @property
    def dialect(self) -> str:
        return self._database.dialect

    def _db(self) -> Any:
        return self._database.conn()

    def _tx(self) -> AbstractContextManager[Any]:
        return self._database.tx()

    # -- runs -------------------------------------------------------------------------

    def create_run(
        self,
        *,
        playbook_id: str,
        playbook_title: str,
        mode: str,
        started_by: str,
        inputs: dict[str, Any],
        rollback: str,
        alert_source: str | None = None,
        alert_id: str | None = None,
        incident_key: str | None = None,
        run_id: str | None = None,
        state: str = "running",
    ) -> str:
        """Record a run: 'running' when it executes here and now, 'queued' when it was
        accepted for a worker to start later (`claim_queued`)."""
        if state not in ("running", "queued"):
            raise ValueError(f"a run starts running or queued, not {state!r}")
        run_id = run_id or uuid.uuid4().hex[:12]
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO runs (id, playbook_id, playbook_title, mode, started_by,"
                " alert_source, alert_id, incident_key, state, inputs, rollback, created_at,"
                " owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    playbook_id,
                    playbook_title,
                    mode,
                    started_by,
                    alert_source,
                    alert_id,
                    incident_key,
                    state,
                    _dumps(inputs),
                    rollback,
                    now,
                    None if state == "queued" else self.owner,
                ),
            )
            row = _read_back(db, "runs", (run_id,), None)
            kind = "run-queued" if state == "queued" else "run-started"
            self._event(db, run_id, kind, None, {"set": row})
        return run_id

    def create_run_for(
        self,
        plan: Plan,
        *,
        dry_run: bool,
        started_by: str,
        run_id: str | None = None,
        state: str = "running",
    ) -> str:
        """The record of a run about to execute `plan` (its inputs as the plan shows them:
        secrets redacted)."""
        book = plan.playbook
        return self.create_run(
            run_id=run_id,
            playbook_id=book.metadata.id,
            playbook_title=book.metadata.title,
            mode="dry-run" if dry_run else "live",
            started_by=started_by,
            inputs=plan.as_dict()["inputs"],
            rollback=book.rollback,
            alert_source=plan.alert.get("source"),
            alert_id=plan.alert.get("id"),
            incident_key=str(plan.run["incident_key"]),
            state=state,
        )

    def claim_queued(self, run_id: str) -> str | None:
        """Start a queued run here (a worker took its flow run): 'running' once, under this
        store's owner. Returns None when this call claimed it, else the state the run is in
        ('missing' when there is no record): a cancelled run is not started, and a run
        claimed before (a retried flow run) is never run twice."""
        with self._tx() as db:
            claimed = db.execute(
                "UPDATE runs SET state = 'running', owner = ? WHERE id = ? AND state = 'queued'",
                (self.owner, run_id),
            ).rowcount
            if claimed:
                row = _read_back(db, "runs", (run_id,), ("state", "owner"))
                self._event(db, run_id, "run-started", None, {"set": row})
                return None
            now = db.execute("SELECT state FROM runs WHERE id = ?", (run_id,)).fetchone()
        return "missing" if now is None else str(now[0])

    def fail_queued(self, run_id: str, message: str, state: str = "failed") -> bool:
        """End a run that never started (its flow run could not be created, a worker
        refused it, or it ended before any worker started it: `crashed`); True if it was
        queued. A run that started keeps its own end."""
        with self._tx() as db:
            ended = db.execute(
                "UPDATE runs SET state = ?, message = ?, finished_at = ?"
                " WHERE id = ? AND state = 'queued'",
                (state, message, time.time(), run_id),
            ).rowcount
            if ended:
                written = ("state", "message", "finished_at")
                row = _read_back(db, "runs", (run_id,), written)
                self._event(db, run_id, f"run-{state}", None, {"set": row})
        return bool(ended)

    def queued_runs(self, before: float) -> list[dict[str, Any]]:
        """Runs queued since before `before` whose flow run exists, oldest first."""
        rows = (
            self._db()
            .execute(
                "SELECT id, flow_run_id FROM runs WHERE state = 'queued'"
                " AND flow_run_id IS NOT NULL AND created_at < ? ORDER BY created_at",
                (before,),
            )
            .fetchall()
        )
        return [dict(r) for r in rows]

    def set_flow_run(self, run_id: str, flow_run_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET flow_run_id = ? WHERE id = ?", (flow_run_id, run_id))
            row = _read_back(db, "runs", (run_id,), ("flow_run_id",))
            self._event(db, run_id, "run-flow-run", None, {"set": row})

    def finish_run(self, run_id: str, state: str, message: str = "", outputs: Any = None) -> None:
        """Record how a run ended. A cancelled run stays cancelled: `irbook cancel` may land
        while a step is still running, and the engine's own end must not overwrite it."""
        message, outputs = self._clean(run_id, (message, outputs))
        with self._tx() as db:
            now = db.execute("SELECT state FROM runs WHERE id = ?", (run_id,)).fetchone()
            if now is not None and now[0] == "cancelled" and state != "cancelled":
                self._event(db, run_id, "run-end-after-cancel", None, {"would_be": state})
                return
            db.execute(
                "UPDATE runs SET state = ?, message = ?, outputs = ?, finished_at = ? WHERE id = ?",
                (state, message, _dumps(outputs), time.time(), run_id),
            )
            written = ("state", "message", "outputs", "finished_at")
            row = _read_back(db, "runs", (run_id,), written)
            self._event(db, run_id, f"run-{state}", None, {"set": row})

    def run(self, run_id: str) -> dict[str, Any] | None:
        row = self._db().execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        out = dict(row)
        out["inputs"] = _loads(out["inputs"])
        out["outputs"] = _loads(out["outputs"])
        return out

    def find_run(self, prefix: str) -> dict[str, Any] | None:
        """A run by id or by an unambiguous id prefix (at least 4 characters)."""
        exact = self.run(prefix)
        if exact is not None or len(prefix) < 4:
            return exact
        rows = (
            self._db()
            .execute(
                "SELECT id FROM runs WHERE id LIKE ? LIMIT 2", (prefix.replace("%", "") + "%",)
            )
            .fetchall()
        )
        return self.run(rows[0]["id"]) if len(rows) == 1 else None

    def recent_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = (
            self._db()
            .execute(
                "SELECT id, playbook_id, mode, started_by, state, message, created_at, finished_at,"
                " alert_source, alert_id FROM runs ORDER BY created_at DESC LIMIT ?",
                (limit,),
            )
            .fetchall()
        )
        return [dict(r) for r in rows]

    def rollbacks(self, run_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The latest live rollback of each run, from the audit-chained "rollback" events:
        {run_id: {"outcome", "by", "at", "undone", "skipped", "failed"}}."""
        if not run_ids:
            return {}
        marks = ", ".join("?" * len(run_ids))
        rows = (
            self._db()
            .execute(
                f"SELECT run_id, at, detail FROM events WHERE kind = 'rollback'"  # noqa: S608
                f" AND run_id IN ({marks}) ORDER BY seq",
                tuple(run_ids),
            )
            .fetchall()
        )
        out: dict[str, dict[str, Any]] = {}
        for row in rows:
            out[row["run_id"]] = {**(_loads(row["detail"]) or {}), "at": row["at"]}
        return out

    def waiting_approvals(self, run_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Running runs that wait on a person: {run_id: {"step", "since", "timeout",
        "on_timeout"}}, since = when the step started waiting."""
        if not run_ids:
            return {}
        marks = ", ".join("?" * len(run_ids))
        db = self._db()
        query = (
            "SELECT s.run_id, s.step_id, s.approval FROM steps s"  # noqa: S608 - placeholders
            " JOIN runs r ON r.id = s.run_id"
            " WHERE r.state = 'running' AND s.state = 'awaiting-approval'"
            f" AND s.run_id IN ({marks})"
        )
        rows = db.execute(query, tuple(run_ids)).fetchall()
        out: dict[str, dict[str, Any]] = {}
        for row in rows:
            since = db.execute(
                "SELECT MAX(at) AS at FROM events WHERE run_id = ? AND step_id = ?"
                " AND kind = 'step-awaiting-approval'",
                (row["run_id"], row["step_id"]),
            ).fetchone()
            approval = _loads(row["approval"]) or {}
            out[row["run_id"]] = {
                "step": row["step_id"],
                "since": since["at"] if since is not None else None,
                "timeout": approval.get("timeout"),
                "on_timeout": approval.get("on_timeout"),
            }
        return out

    # -- steps ------------------------------------------------------------------------

    def upsert_step(self, run_id: str, step_id: str, item: int = 0, **fields: Any) -> None:
        """Create or update a step row; JSON-able fields are stored as JSON.

        Each write is chained: `step-<state>` when it sets the state, else `step-updated`
        (attempts, an approval's record), so no column of the row changes unrecorded.
        """
        fields = self._clean(run_id, fields)
        json_fields = JSON_COLUMNS["steps"]
        values = {k: (_dumps(v) if k in json_fields else v) for k, v in fields.items()}
        key = (run_id, step_id, item)
        with self._tx() as db:
            exists = db.execute(
                "SELECT 1 FROM steps WHERE run_id = ? AND step_id = ? AND item = ?", key
            ).fetchone()
            if exists is None:
                values.setdefault("state", "pending")
                values.setdefault("action", "")
                values.setdefault("effect", "")
                cols = ", ".join(["run_id", "step_id", "item", *values])
                marks = ", ".join("?" * (3 + len(values)))
                db.execute(
                    f"INSERT INTO steps ({cols}) VALUES ({marks})",  # noqa: S608 - names are ours
                    (*key, *values.values()),
                )
                row = _read_back(db, "steps", key, None)
            elif values:
                sets = ", ".join(f"{k} = ?" for k in values)
                db.execute(
                    f"UPDATE steps SET {sets} WHERE run_id = ? AND step_id = ? AND item = ?",  # noqa: S608
                    (*values.values(), *key),
                )
                row = _read_back(db, "steps", key, tuple(values))
            else:
                return
            kind = f"step-{fields['state']}" if "state" in fields else "step-updated"
            self._event(db, run_id, kind, step_id, {"item": item, "set": row})

    def steps(self, run_id: str) -> list[dict[str, Any]]:
        rows = (
            self._db()
            .execute(
                "SELECT * FROM steps WHERE run_id = ?"
                " ORDER BY COALESCE(started_at, 9e99), step_id, item",
                (run_id,),
            )
            .fetchall()
        )
        out = []
        for row in rows:
            item = dict(row)
            for key in JSON_COLUMNS["steps"]:
                item[key] = _loads(item[key])
            out.append(item)
        return out

    # -- events -----------------------------------------------------------------------

    def event(self, run_id: str, kind: str, step_id: str | None = None, **detail: Any) -> int:
        """Append one chained event; its seq."""
        detail = self._clean(run_id, detail)
        with self._tx() as db:
            return self._event(db, run_id, kind, step_id, detail)

    def event_at(self, seq: int) -> dict[str, Any] | None:
        row = self._db().execute("SELECT * FROM events WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            return None
        item = dict(row)
        item["detail"] = _loads(item["detail"])
        return item

    def last_seq(self) -> int:
        row = self._db().execute("SELECT MAX(seq) FROM events").fetchone()
        return int(row[0] or 0)

    # -- approval attempts (irbook.policy) ------------------------------------------------

    def request_approval(
        self, run_id: str, step_id: str, by: str, approved: bool, comment: str, via: str
    ) -> int:
        """Record that `by` asks to approve (or reject) a waiting step; the seq is the
        ticket the run's flow is resumed with, and checks, before it acts on it."""
        return self.event(
            run_id,
            "approval-request",
            step_id,
            by=by,
            approved=approved,
            comment=comment,
            via=via,
        )

    def approval_answer(
        self, run_id: str, ticket: int, wait: float, poll: float = 0.2
    ) -> dict[str, Any] | None:
        """What the run's flow made of the request `ticket` (its approval-refused,
        approval-recorded or approval-decided event), waiting up to `wait` seconds."""
        deadline = time.monotonic() + wait
        while True:
            for event in self.events(run_id, after=ticket):
                if (event["detail"] or {}).get("ticket") == ticket:
                    return event
            if time.monotonic() >= deadline:
                return None
            time.sleep(poll)

    def _event(
        self,
        db: Any,
        run_id: str,
        kind: str,
        step_id: str | None,
        detail: dict[str, Any],
    ) -> int:
        """Append one chained event. Its detail is clean already: the rows read back were
        redacted when written, and `event()` redacts what callers pass."""
        return audit.append(db, run_id, time.time(), kind, step_id, _dumps(detail))

    def events(self, run_id: str, after: int = 0) -> list[dict[str, Any]]:
        rows = (
            self._db()
            .execute(
                "SELECT * FROM events WHERE run_id = ? AND seq > ? ORDER BY seq", (run_id, after)
            )
            .fetchall()
        )
        out = []
        for row in rows:
            item = dict(row)
            item["detail"] = _loads(item["detail"])
            out.append(item)
        return out

    # -- ownership (irbook.leases) -------------------------------------------------------

    def hold(self) -> str:
        """Run runs under this process's lease from now on: the runs this store creates are
        stamped with its owner id, renewed by a heartbeat, so a reaper can tell them from
        the runs of a process that died."""
        self.owner = leases.hold(self.path)
        return self.owner

    def orphaned_runs(self, now: float | None = None) -> list[dict[str, Any]]:
        """Runs still 'running' whose owner is gone (`leases.owner_gone`), oldest first."""
        when = time.time() if now is None else now
        rows = (
            self._db()
            .execute(
                "SELECT runs.id AS run_id, runs.owner AS id, o.host, o.pid, o.proc_start,"
                " o.lease_expires FROM runs"
                " LEFT JOIN run_owners AS o ON o.id = runs.owner"
                " WHERE runs.state = 'running' AND runs.owner IS NOT NULL"
                " ORDER BY runs.created_at"
            )
            .fetchall()
        )
        return [
            {"run_id": row["run_id"], "owner": row["id"]}
            for row in rows
            if leases.owner_gone(row, when)
        ]

    def take_over(self, run_id: str, owner: str, new_owner: str) -> bool:
        """Move a running run from a gone owner to `new_owner` (a reaper), if nobody did yet:
        two reapers never both act on one run, and a reaper that dies half-way leaves the
        run to the next one."""
        with self._tx() as db:
            taken = db.execute(
                "UPDATE runs SET owner = ? WHERE id = ? AND owner = ? AND state = 'running'",
                (new_owner, run_id, owner),
            ).rowcount
            if taken:  # the owner column is chained like every column `runs show` reads
                row = _read_back(db, "runs", (run_id,), ("owner",))
                self._event(
                    db, run_id, "owner-lost", None, {"owner": owner, "by": new_owner, "set": row}
                )
        return bool(taken)

    def runs_in_state(self, state: str, limit: int = 1_000) -> list[dict[str, Any]]:
        """Runs in one state, newest first (`irbook runs` lists every run needing a human)."""
        rows = (
            self._db()
            .execute(
                "SELECT id, playbook_id, mode, started_by, state, message, created_at,"
                " alert_source, alert_id FROM runs WHERE state = ?"
                " ORDER BY created_at DESC LIMIT ?",
                (state, limit),
            )
            .fetchall()
        )
        return [dict(r) for r in rows]

    def prune_owners(self, expired_before: float) -> int:
        """Forget owners whose lease ended before `expired_before` and who have no run left
        running (every `irbook run` and `irbook runs` registers one)."""
        with self._tx() as db:
            return int(
                db.execute(
                    "DELETE FROM run_owners WHERE lease_expires < ? AND id NOT IN"
                    " (SELECT owner FROM runs WHERE state = 'running' AND owner IS NOT NULL)",
                    (expired_before,),
                ).rowcount
            )


def _read_back(
    db: Any, table: str, key: tuple[Any, ...], columns: tuple[str, ...] | None
) -> dict[str, Any]:
    """The columns just written, as the table now holds them (None: the whole row but its
    key), JSON decoded: what the chained event records, so a replay matches the row exactly
    whatever SQLite's type affinity made of a value."""
    names = KEY_COLUMNS[table]
    where = " AND ".join(f"{n} = ?" for n in names)
    cursor = db.execute(
        f"SELECT {', '.join(columns) if columns else '*'} FROM {table} WHERE {where}",  # noqa: S608 - names are ours
        key,
    )
    values = cursor.fetchone()
    row = {d[0]: v for d, v in zip(cursor.description, values, strict=True)}
    for name in names:
        row.pop(name, None)
    return {k: (_loads(v) if k in JSON_COLUMNS[table] else v) for k, v in row.items()}
