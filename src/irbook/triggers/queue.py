"""The durable alert queue between the webhook's 202 and the run it starts.

A SIEM that got a 202 will not send the alert again, so the alert must be on disk before
the answer leaves: `enqueue` commits (WAL, synchronous=FULL) before it returns, and the
dispatcher starts runs from this table, not from memory. A receiver killed between the
two finds the committed rows on restart and starts them then.

Each row is one (alert, playbook) pair with its run id assigned here, at enqueue time.
That id is what makes starting exactly-once: the starter refuses an id that already has
a run, so a row started just before a crash and started again after it starts nothing.

De-duplication happens in the same transaction as the insert. An alert storm (the same
finding re-sent every minute, or 10,000 copies at once) attaches to the first row,
`count += 1`, while that row is waiting, while its run is active, or within the source's
window after it was first seen. `BEGIN IMMEDIATE` takes SQLite's write lock before the
look-up, so concurrent duplicates, from threads or from other processes on the same file,
are serialised and exactly one of them inserts.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal

from irbook.cache import home
from irbook.db import Database
from irbook.model.alert import Alert

Mode = Literal["live", "dry-run"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_alerts (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    alert_key TEXT NOT NULL,          -- source/playbook/alert id: what dedup compares
    alert_id TEXT NOT NULL,
    playbook_id TEXT NOT NULL,
    playbook_path TEXT NOT NULL,
    run_id TEXT NOT NULL UNIQUE,      -- assigned here; the starter refuses a second start
    mode TEXT NOT NULL,               -- live | dry-run
    alert TEXT NOT NULL,              -- the normalized alert, JSON
    status TEXT NOT NULL,             -- queued | starting | started | failed
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    started_ref TEXT,                 -- what the starter returned (a flow run id)
    count INTEGER NOT NULL DEFAULT 1,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    received_at REAL NOT NULL,
    not_before REAL NOT NULL DEFAULT 0,
    started_at REAL
);
CREATE INDEX IF NOT EXISTS webhook_alerts_key ON webhook_alerts (alert_key, first_seen);
CREATE INDEX IF NOT EXISTS webhook_alerts_status ON webhook_alerts (status, not_before);
CREATE TABLE IF NOT EXISTS webhook_dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    received_at REAL NOT NULL,
    reason TEXT NOT NULL,
    path TEXT,
    body BLOB NOT NULL
);
"""

PENDING = ("queued", "starting")


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One (alert, playbook) pair to enqueue."""

    source: str
    alert: Alert
    playbook_id: str
    playbook_path: str
    mode: Mode


@dataclass(frozen=True, slots=True)
class Enqueued:
    """What became of one QueueItem: a new row, or the row it was attached to."""

    row_id: str
    run_id: str
    alert_key: str
    playbook_id: str
    mode: str
    status: Literal["queued", "deduplicated"]
    count: int


@dataclass(frozen=True, slots=True)
class QueuedAlert:
    """A row the dispatcher claimed: enough to start its run."""

    row_id: str
    run_id: str
    source: str
    alert_key: str
    playbook_id: str
    playbook_path: str
    mode: str
    alert: Alert
    attempts: int


def alert_key(source: str, playbook_id: str, alert_id: str) -> str:
    """The stable key of an alert for one playbook.

    Source and playbook ids cannot hold '/', and the alert id comes last, so two
    different triples never share a key whatever the alert id holds.
    """
    return f"{source}/{playbook_id}/{alert_id}"


def new_run_id() -> str:
    return "wh-" + uuid.uuid4().hex[:16]


class AlertQueue:
    """The alert and dead-letter tables; thread-safe, one connection per thread.

    `run_active(run_id)` is asked, for a row past its window, whether its run is still
    going; while it is, repeats still attach to it (the incident is still being handled).
    Without it, only the window and the row's own queue state count.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        run_active: Callable[[str], bool] | None = None,
    ) -> None:
        self.path = str(path) if path is not None else str(home() / "irbook.db")
        self.run_active = run_active
        # FULL: a 202 promises the alert survives a power cut, not only a crash.
        self._database = Database(self.path, synchronous="FULL", timeout=60)
        self._db().executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        return self._database.conn()

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._database.tx()

    # -- the receiver's side ---------------------------------------------------------

    def enqueue(
        self, items: Sequence[QueueItem], *, windows: Sequence[float], now: float | None = None
    ) -> list[Enqueued]:
        """Queue every item or attach it to its live duplicate; all in one commit.

        `windows[i]` is item i's dedup window in seconds. Returns once the rows are
        durable, which is what allows the caller to answer 202.
        """
        if len(windows) != len(items):
            raise ValueError("one dedup window per item")
        now = time.time() if now is None else now
        out: list[Enqueued] = []
        with self._tx() as db:
            for item, window in zip(items, windows, strict=True):
                out.append(self._enqueue_one(db, item, window, now))
        return out

    def _enqueue_one(
        self, db: sqlite3.Connection, item: QueueItem, window: float, now: float
    ) -> Enqueued:
        key = alert_key(item.source, item.playbook_id, item.alert.id)
        row = db.execute(
            "SELECT id, run_id, mode, status, count, first_seen FROM webhook_alerts"
            " WHERE alert_key = ? AND status != 'failed' ORDER BY first_seen DESC LIMIT 1",
            (key,),
        ).fetchone()
        if row is not None and self._attaches(row, window, now):
            db.execute(
                "UPDATE webhook_alerts SET count = count + 1, last_seen = ? WHERE id = ?",
                (now, row["id"]),
            )
            return Enqueued(
                row_id=row["id"],
                run_id=row["run_id"],
                alert_key=key,
                playbook_id=item.playbook_id,
                mode=row["mode"],
                status="deduplicated",
                count=int(row["count"]) + 1,
            )
        row_id, run_id = uuid.uuid4().hex, new_run_id()
        db.execute(
            "INSERT INTO webhook_alerts (id, source, alert_key, alert_id, playbook_id,"
            " playbook_path, run_id, mode, alert, status, count, first_seen, last_seen,"
            " received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', 1, ?, ?, ?)",
            (
                row_id,
                item.source,
                key,
                item.alert.id,
                item.playbook_id,
                item.playbook_path,
                run_id,
                item.mode,
                item.alert.model_dump_json(),
                now,
                now,
                now,
            ),
        )
        return Enqueued(
            row_id=row_id,
            run_id=run_id,
            alert_key=key,
            playbook_id=item.playbook_id,
            mode=item.mode,
            status="queued",
            count=1,
        )

    def _attaches(self, row: sqlite3.Row, window: float, now: float) -> bool:
        if row["status"] in PENDING or now < float(row["first_seen"]) + window:
            return True
        if self.run_active is None:
            return False
        try:
            return bool(self.run_active(str(row["run_id"])))
        except Exception:  # unknown: start a new run rather than drop it
            return False

    def dead_letter(
        self, source: str, reason: str, body: bytes, *, path: str | None = None, limit: int
    ) -> None:
        """Keep a post that could not become alerts, for someone to look at and replay."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO webhook_dead_letters (source, received_at, reason, path, body)"
                " VALUES (?, ?, ?, ?, ?)",
                (source, time.time(), reason[:2_000], path, bytes(body[:limit])),
            )

    # -- the dispatcher's side -------------------------------------------------------

    def recover(self) -> int:
        """Put rows claimed by a process that died back in the queue; returns how many.

        Called once at start-up. A row left 'starting' may or may not have started its
        run; starting it again is safe because the starter refuses a known run id.
        """
        with self._tx() as db:
            return db.execute(
                "UPDATE webhook_alerts SET status = 'queued' WHERE status = 'starting'"
            ).rowcount

    def claim(self, limit: int, now: float | None = None) -> list[QueuedAlert]:
        """Mark up to `limit` due rows 'starting' and return them, oldest first."""
        if limit <= 0:
            return []
        now = time.time() if now is None else now
        with self._tx() as db:
            rows = db.execute(
                "SELECT * FROM webhook_alerts WHERE status = 'queued' AND not_before <= ?"
                " ORDER BY received_at LIMIT ?",
                (now, limit),
            ).fetchall()
            claimed: list[QueuedAlert] = []
            for row in rows:
                db.execute(
                    "UPDATE webhook_alerts SET status = 'starting', attempts = attempts + 1"
                    " WHERE id = ?",
                    (row["id"],),
                )
                claimed.append(
                    QueuedAlert(
                        row_id=row["id"],
                        run_id=row["run_id"],
                        source=row["source"],
                        alert_key=row["alert_key"],
                        playbook_id=row["playbook_id"],
                        playbook_path=row["playbook_path"],
                        mode=row["mode"],
                        alert=Alert.model_validate_json(row["alert"]),
                        attempts=int(row["attempts"]) + 1,
                    )
                )
        return claimed

    def mark_started(self, row_id: str, ref: str | None = None) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE webhook_alerts SET status = 'started', started_ref = ?, started_at = ?,"
                " error = NULL WHERE id = ?",
                (ref, time.time(), row_id),
            )

    def mark_retry(self, row_id: str, error: str, not_before: float) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE webhook_alerts SET status = 'queued', error = ?, not_before = ?"
                " WHERE id = ?",
                (error[:2_000], not_before, row_id),
            )

    def mark_failed(self, row_id: str, error: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE webhook_alerts SET status = 'failed', error = ? WHERE id = ?",
                (error[:2_000], row_id),
            )

    # -- reading ---------------------------------------------------------------------

    def depth(self) -> int:
        """Rows waiting for a start (queued or being started)."""
        row = (
            self._db()
            .execute("SELECT COUNT(*) FROM webhook_alerts WHERE status IN ('queued', 'starting')")
            .fetchone()
        )
        return int(row[0])

    def rows(self, **where: Any) -> list[dict[str, Any]]:
        """Rows as dicts, filtered by equality on column names (for tests and the CLI)."""
        allowed = {"source", "status", "run_id", "alert_key", "playbook_id", "alert_id"}
        if not set(where) <= allowed:
            raise ValueError(f"filter on {', '.join(sorted(allowed))} only")
        clause = " AND ".join(f"{name} = ?" for name in where) or "1"
        found = (
            self._db()
            .execute(
                f"SELECT * FROM webhook_alerts WHERE {clause} ORDER BY received_at",  # noqa: S608
                tuple(where.values()),
            )
            .fetchall()
        )
        out = []
        for row in found:
            item = dict(row)
            item["alert"] = json.loads(item["alert"])
            out.append(item)
        return out

    def dead_letters(self, source: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT * FROM webhook_dead_letters"
        args: tuple[Any, ...] = ()
        if source is not None:
            query += " WHERE source = ?"
            args = (source,)
        return [dict(r) for r in self._db().execute(query + " ORDER BY id", args).fetchall()]

    def close(self) -> None:
        self._database.close()


__all__ = [
    "AlertQueue",
    "Enqueued",
    "QueueItem",
    "QueuedAlert",
    "alert_key",
    "new_run_id",
]
