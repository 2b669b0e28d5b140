"""The durable alert queue between the webhook's 202 and the run it starts.

A SIEM that got a 202 will not send the alert again, so the alert must be on disk before
the answer leaves: `enqueue` commits (WAL, synchronous=FULL) before it returns, and the
dispatcher starts runs from this table, not from memory. A receiver killed between the
two finds the committed rows on restart and starts them then.

Commits are grouped: one writer thread takes every write waiting (alerts of concurrent
posts, dead letters, the dispatcher's status changes), runs them in one transaction and
commits once, then answers each caller. The fsync is shared, not skipped: FULL still
holds for every alert, and no caller hears "committed" before its batch is.

Each row is one (alert, playbook) pair with its run id assigned here, at enqueue time.
That id is what makes starting exactly-once: the starter refuses an id that already has
a run, so a row started just before a crash and started again after it starts nothing.

De-duplication happens in the same transaction as the insert. An alert storm (the same
finding re-sent every minute, or 10,000 copies at once) attaches to the first row,
`count += 1`, while that row is waiting, while its run is active, or within the source's
window after it was first seen. `BEGIN IMMEDIATE` takes SQLite's write lock before the
look-up, so concurrent duplicates, from threads or from other processes on the same file,
are serialised and exactly one of them inserts. Copies in the same batch are looked up
once and their counts written once (`count += n`, `last_seen` of the latest).

On PostgreSQL (`IRBOOK_DATABASE_URL`, shared by several receivers) the same writer thread
groups the commits, through a pooled connection. A batch takes, before its look-up, one
transaction-scoped advisory lock per alert key and per delivery id it writes (in sorted
order, so two batches never wait on each other in a cycle): duplicates posted to two
receivers at once are serialised as `BEGIN IMMEDIATE` serialises them on SQLite, while
distinct alerts commit side by side. A batch of bookkeeping only commits with
`synchronous_commit = off` (the PRAGMA's counterpart), and a batch PostgreSQL broke as a
deadlock victim is run again. Claims take rows with `FOR UPDATE SKIP LOCKED` and stamp
them with the claiming process's owner id (irbook.leases): rows a dead receiver had
claimed go back to the queue when its lease has expired (`recover`, which every
dispatcher calls now and then), never while it lives, so no row is given to two.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Literal

from irbook import db as dbmod
from irbook import migrations
from irbook.cache import home
from irbook.db import add_columns, open_database
from irbook.model.alert import Alert

log = logging.getLogger("irbook.webhooks")

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
-- What `claim` walks: only waiting rows, oldest first, so a claim reads `limit` rows
-- however long the queue has grown (a backlog must not make every claim slower).
CREATE INDEX IF NOT EXISTS webhook_alerts_waiting ON webhook_alerts (received_at)
    WHERE status = 'queued';
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

# Who claimed a 'starting' row (a leases owner id), and when: used on PostgreSQL only.
_CLAIM_COLUMNS = {"claimed_by": "TEXT", "claimed_at": "REAL"}

#: The advisory-lock class of alert keys and delivery ids ("alrt"): the two-key form of
#: pg_advisory_xact_lock, a key space apart from irbook.db's one-key WRITE_LOCK.
KEY_LOCKS = 0x616C7274
_RETRIES = 5  # a batch PostgreSQL aborted as a deadlock victim is run again this often


def _lock_id(key: str) -> int:
    """A 32-bit advisory lock number for a key (a collision only serialises two keys)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


def _is_postgres(db: Any) -> bool:
    return getattr(db, "dialect", "sqlite") == "postgresql"


# Added to existing files too (`_migrate`): restarts after a crash (irbook.reaper).
_RESTART_COLUMNS = {
    "restarts": "INTEGER NOT NULL DEFAULT 0",  # runs started again after their owner died
    "restarted_from": "TEXT",  # the crashed run the current run_id replaced
}


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One (alert, playbook) pair to enqueue."""

    source: str
    alert: Alert
    playbook_id: str
    playbook_path: str
    mode: Mode
    #: `alert.model_dump_json()`, when the caller already has it (the receiver serializes
    #: an alert once for all the playbooks it matched, and once for a storm of copies).
    alert_json: str | None = field(default=None, compare=False, repr=False)


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


_LATEST = ("id", "alert_key", "run_id", "mode", "status", "count", "first_seen")


def latest_rows(db: Any, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The newest row of each alert key that is not failed: what a new alert with that
    key attaches to. The writer reads it in its transaction, the receiver to admit
    duplicates over the rate limit."""
    wanted = sorted(set(keys))
    if _is_postgres(db):
        cursor = db.execute(
            f"SELECT {', '.join(_LATEST)} FROM webhook_alerts"  # noqa: S608 - names only
            " WHERE alert_key = ANY(?) AND status != 'failed'",
            (wanted,),
        )
    else:
        cursor = db.execute(
            f"SELECT {', '.join(_LATEST)} FROM webhook_alerts"  # noqa: S608 - names only
            " WHERE alert_key IN (SELECT value FROM json_each(?)) AND status != 'failed'",
            (json.dumps(wanted),),
        )
    latest: dict[str, dict[str, Any]] = {}
    for values in cursor:
        row = dict(zip(_LATEST, values, strict=True))
        current = latest.get(row["alert_key"])
        if current is None or float(row["first_seen"]) > float(current["first_seen"]):
            latest[row["alert_key"]] = row
    return latest


def in_window(row: Mapping[str, Any], window: float, now: float) -> bool:
    """A stored row a repeat attaches to without asking about its run: still waiting or
    starting, or first seen within the dedup window."""
    return row["status"] in PENDING or now < float(row["first_seen"]) + window


def alert_key(source: str, playbook_id: str, alert_id: str) -> str:
    """The stable key of an alert for one playbook.

    Source and playbook ids cannot hold '/', and the alert id comes last, so two
    different triples never share a key whatever the alert id holds.
    """
    return f"{source}/{playbook_id}/{alert_id}"


def new_run_id() -> str:
    """`wh-`, the time in milliseconds (11 hex digits), then 48 random bits.

    Time first, like `_row_id`: a new id lands at the end of the run-id index instead of
    on a random page of it, which made a commit of a batch of new alerts about a quarter
    cheaper (bench/receiver_throughput.py's load, measured with SQLite alone).
    """
    return f"wh-{time.time_ns() // 1_000_000:011x}{os.urandom(6).hex()}"


def _row_id() -> str:
    """32 hex digits, time first: new rows land at the end of the primary key's index
    instead of on a random page of it (fewer pages written per commit)."""
    return f"{time.time_ns() // 1000:014x}{os.urandom(9).hex()}"


class _Batch:
    """What one group-commit transaction knows besides the database.

    Python's sqlite3 lets go of the GIL in every statement, and getting it back from a busy
    event loop can take milliseconds; so a batch is written in a handful of statements,
    not a few per alert: one look-up of all the alert keys, one multi-row insert, one
    update of the counts, one update of the runs started.

    `latest` caches, per alert key, the newest live row as this transaction sees it, so a
    storm's copies cost one look-up; `counts` collects their `count += n`, written once per
    row. Any other kind of write (a claim, a status change) clears the cache, since it may
    change what a repeat attaches to.
    """

    __slots__ = ("counts", "handed", "latest", "queued", "room", "started")

    def __init__(self, room: int = 0) -> None:
        self.latest: dict[str, dict[str, Any]] = {}
        self.counts: dict[str, list[Any]] = {}  # row id -> [added, last_seen]
        self.started: list[tuple[str, str | None, float]] = []  # (row id, ref, at)
        self.queued = 0  # new rows: the dispatcher is told after the commit
        self.room = room  # new rows the dispatcher takes as they are inserted
        self.handed: list[QueuedAlert] = []  # those rows, handed over after the commit

    def flush_started(self, db: Any) -> None:
        if _is_postgres(db):
            if self.started:
                ids, refs, ats = (list(column) for column in zip(*self.started, strict=True))
                db.execute(
                    "UPDATE webhook_alerts AS w SET status = 'started', started_ref = v.ref,"
                    " started_at = v.at, error = NULL, claimed_by = NULL"
                    " FROM unnest(?::text[], ?::text[], ?::float8[]) AS v(id, ref, at)"
                    " WHERE w.id = v.id",
                    (ids, refs, ats),
                )
                self.started.clear()
            return
        for chunk in _chunks(self.started, 200):
            values = ", ".join(["(?, ?, ?)"] * len(chunk))  # placeholders only
            db.execute(
                "UPDATE webhook_alerts SET status = 'started', started_ref = v.column2,"  # noqa: S608
                f" started_at = v.column3, error = NULL FROM (VALUES {values}) AS v"
                " WHERE webhook_alerts.id = v.column1",
                [value for row in chunk for value in row],
            )
        self.started.clear()

    def flush_counts(self, db: Any) -> None:
        if self.counts and _is_postgres(db):
            ids = list(self.counts)
            db.execute(
                "UPDATE webhook_alerts AS w SET count = w.count + v.n,"
                " last_seen = GREATEST(w.last_seen, v.seen)"
                " FROM unnest(?::text[], ?::bigint[], ?::float8[]) AS v(id, n, seen)"
                " WHERE w.id = v.id",
                (ids, [self.counts[i][0] for i in ids], [self.counts[i][1] for i in ids]),
            )
            self.counts.clear()
        elif self.counts:
            db.executemany(
                "UPDATE webhook_alerts SET count = count + ?, last_seen = ? WHERE id = ?",
                [(added, seen, row_id) for row_id, (added, seen) in self.counts.items()],
            )
            self.counts.clear()


def _chunks(rows: list[Any], size: int) -> list[list[Any]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


_COLUMNS = (
    "id, source, alert_key, alert_id, playbook_id, playbook_path, run_id, mode, alert,"
    " status, attempts, count, first_seen, last_seen, received_at"
)
_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)"
_INSERT_CHUNK = 70  # rows per INSERT statement (14 parameters each)
_PG_COLUMNS = _COLUMNS + ", claimed_by, claimed_at"
_PG_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)"


@dataclass(frozen=True, slots=True)
class _Enqueue:
    """An enqueue waiting for its batch: items with their keys, windows and JSON."""

    items: list[tuple[QueueItem, float, str, str]]  # (item, window, key, alert JSON)
    now: float
    also: Callable[[Any], None] | None
    locks: tuple[str, ...] = ()  # what `also` writes: locked first on PostgreSQL


def _version_1(db: Any) -> None:
    """The receiver's tables as irbook kept them before the schema had a version (a file
    written then already has them: only the columns added since are added), plus the
    claim columns (claimed_by, claimed_at) receivers on one PostgreSQL database need,
    and the run owners' table their claims name (also irbook.runs')."""
    from irbook import leases
    from irbook.triggers.limits import replay_schema

    migrations.run_script(db, SCHEMA + replay_schema(_is_postgres(db)) + leases.SCHEMA)
    add_columns(db, "webhook_alerts", {**_RESTART_COLUMNS, **_CLAIM_COLUMNS})
    db.execute(
        "CREATE INDEX IF NOT EXISTS webhook_alerts_restarted ON webhook_alerts"
        " (restarted_from) WHERE restarted_from IS NOT NULL"
    )


#: The receiver's tables: the alert queue, dead letters, the replay guard.
COMPONENT = migrations.register(migrations.Component("receiver", (_version_1,)))


class _Marks:
    """The started marks waiting for a batch, taken once: run again (a batch PostgreSQL
    aborted), the work writes the same marks, not none."""

    __slots__ = ("queue", "taken")

    def __init__(self, queue: AlertQueue) -> None:
        self.queue = queue
        self.taken: list[tuple[str, str | None, float]] | None = None

    def __call__(self, db: Any, batch: _Batch) -> None:
        if self.taken is None:
            queue = self.queue
            with queue._marks_lock:
                self.taken, queue._marks = queue._marks, []
                queue._marks_future = None
        batch.latest.clear()
        batch.started.extend(self.taken)  # one UPDATE for all the batch's starts


Work = Callable[[Any, _Batch], Any]


class _Job:
    """One caller's writes, and how to hand it their outcome once the batch committed."""

    __slots__ = ("durable", "error", "future", "loop", "result", "work")

    def __init__(
        self,
        work: Work | _Enqueue,
        future: Future[Any] | asyncio.Future[Any],
        loop: asyncio.AbstractEventLoop | None,
        durable: bool = True,
    ) -> None:
        self.work = work
        self.durable = durable
        self.future = future
        self.loop = loop
        self.result: Any = None
        self.error: BaseException | None = None


def _log_lost_marks(future: Future[Any]) -> None:
    error = future.exception()
    if error is not None:  # those rows stay 'starting'; recover() re-runs them, refused
        log.error("alert store: could not record started runs: %s", error)


def _settle(jobs: list[_Job]) -> None:
    for job in jobs:
        future = job.future
        if future.done():  # an asyncio waiter that was cancelled meanwhile
            continue
        if job.error is not None:
            future.set_exception(job.error)
        else:
            future.set_result(job.result)


class AlertQueue:
    """The alert and dead-letter tables; thread-safe.

    Every write of this process goes through one writer thread with its own connection
    (group commit): it takes all the writes waiting, runs them in one transaction, commits
    (one fsync for all of them), and only then answers each caller. Concurrent webhook
    posts thus share their commits instead of queueing for SQLite's write lock one by one,
    and the dispatcher's status changes join the same transactions instead of competing
    with them. Reads use one connection per calling thread, as WAL readers never wait.

    `run_active(run_id)` is asked, for a row past its window, whether its run is still
    going; while it is, repeats still attach to it (the incident is still being handled).
    Without it, only the window and the row's own queue state count. It is called on the
    writer thread.

    `on_queued()` is called on the writer thread after a commit that added new rows (the
    receiver points it at the dispatcher's `notify`).

    Hand-off: when `handoff()` says the dispatcher has room for n rows, the first n new
    rows of a transaction are inserted already claimed ('starting', attempt 1), and after
    the commit `on_handed(rows)` gives them to the dispatcher as they are, alert object
    included. A burst of new alerts then costs no claim (an UPDATE returning every row's
    alert JSON) and no parse of that JSON. What the dispatcher holds when the process
    dies is 'starting' in the file, which `recover` puts back in the queue, as for any
    claimed row.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        run_active: Callable[[str], bool] | None = None,
        max_batch: int = 512,
        idle_exit: float = 5.0,
        bookkeeping_delay: float = 0.005,
    ) -> None:
        self.path = str(path) if path is not None else str(home() / "irbook.db")
        self.run_active = run_active
        #: The leases owner id stamped on the rows this process claims (PostgreSQL).
        self.owner: str | None = None
        self.on_queued: Callable[[], None] | None = None
        self.handoff: Callable[[], int] | None = None
        self.on_handed: Callable[[list[QueuedAlert]], None] | None = None
        self.max_batch = max_batch
        self.idle_exit = idle_exit
        self.bookkeeping_delay = bookkeeping_delay
        # Readers' connections. Writes go through the writer's own connection, below
        # (SQLite), or a pooled one per batch (PostgreSQL).
        self._database = open_database(self.path, synchronous="FULL", timeout=60)
        self.dialect = self._database.dialect
        migrations.ensure(self._database, COMPONENT)
        self._cond = threading.Condition(threading.Lock())
        self._pending: deque[_Job] = deque()
        self._writer: threading.Thread | None = None
        self._closing = False
        self._synchronous = "FULL"  # of the writer's connection; touched by the writer only
        self._marks_lock = threading.Lock()
        self._marks: list[tuple[str, str | None, float]] = []  # see mark_started_later
        self._marks_future: Future[Any] | None = None
        self.batches = 0  # committed transactions, for tests and the curious
        self.batched_jobs = 0

    def _db(self) -> Any:
        return self._database.conn()

    def reader(self) -> Any:
        """A connection for reads on the caller's thread (PostgreSQL: pooled per call)."""
        return self._database.conn()

    # -- group commit ----------------------------------------------------------------

    def _submit(self, job: _Job) -> None:
        with self._cond:
            self._pending.append(job)
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name="irbook-alert-writer", daemon=True
                )
                self._writer.start()
            else:
                self._cond.notify()

    def write(self, work: Work | _Enqueue, *, durable: bool = True) -> Any:
        """Run `work(db, batch)` in the next group commit; returns its result once committed.

        Raises what the work raised, or the commit's error; either way nothing of it was
        committed. Must not be called from the writer thread itself (a `work` function).

        `durable=False` is for bookkeeping that recovery re-derives (the dispatcher's
        claims and status changes): a batch of only such writes commits without an fsync
        (synchronous=NORMAL: it survives a crash or SIGKILL, and a power cut may undo it).
        WAL commits are ordered, so the next durable commit makes it durable too. Undoing
        it is safe: a row back in 'queued'/'starting' is started again and the starter
        refuses its run id, which the dispatcher records as started.
        """
        future: Future[Any] = Future()
        self._submit(_Job(work, future, None, durable))
        return future.result()

    async def write_async(self, work: Work | _Enqueue) -> Any:
        """`write` for a coroutine: the event loop keeps serving while the batch commits."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._submit(_Job(work, future, loop))
        return await future

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        # FULL: a 202 promises the alert survives a power cut, not only a crash. WAL's
        # FULL syncs the log at every commit; group commit makes that one sync per batch.
        db.execute("PRAGMA synchronous=FULL")
        self._synchronous = "FULL"
        db.row_factory = sqlite3.Row
        return db

    def _set_synchronous(self, db: sqlite3.Connection, level: str) -> None:
        if self._synchronous != level:
            db.execute(f"PRAGMA synchronous={level}")
            self._synchronous = level

    def _next_jobs(self) -> list[_Job] | None:
        """The writes of the next batch, waiting for them; None once idle (or closing):
        the writer exits, and the next write starts a new one."""
        with self._cond:
            if not self._pending and not self._closing:
                self._cond.wait(self.idle_exit)
            if not self._pending:
                self._writer = None
                return None
            # Bookkeeping alone waits a moment for alerts to ride along with: a
            # transaction costs the same for one write as for fifty.
            deadline = time.monotonic() + self.bookkeeping_delay
            while not self._closing and not any(job.durable for job in self._pending):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            take = min(len(self._pending), self.max_batch)
            return [self._pending.popleft() for _ in range(take)]

    def _write_loop(self) -> None:
        if self.dialect == "postgresql":  # a pooled connection per batch: see _pg_transaction
            while (jobs := self._next_jobs()) is not None:
                self._run_batch(None, jobs)
            return
        db: sqlite3.Connection | None = None
        try:
            while (jobs := self._next_jobs()) is not None:
                if db is None:
                    try:
                        db = self._connect()
                    except sqlite3.Error as exc:
                        for job in jobs:
                            job.error = exc
                        self._deliver(jobs)
                        continue
                self._run_batch(db, jobs)
        finally:
            if db is not None:
                db.close()

    def _run_batch(self, db: sqlite3.Connection | None, jobs: list[_Job]) -> None:
        batches: list[_Batch] = []
        try:
            batches.append(self._transaction(db, jobs))
        except dbmod.busy_errors() as exc:
            # The store itself failed (busy past the timeout, disk full, I/O): every write
            # in the batch was rolled back, and every caller hears so (the receiver says
            # 503, so the sender retries). Nothing was answered as committed.
            log.error("alert store: a batch of %d write(s) failed: %s", len(jobs), exc)
            for job in jobs:
                job.error = exc
                job.result = None
        except Exception:
            # One caller's write broke (a bug, odd data): do each alone, so the others
            # still commit and only that caller gets the error.
            for job in jobs:
                try:
                    batches.append(self._transaction(db, [job]))
                except Exception as exc:
                    job.error = exc
                    job.result = None
        self._deliver(jobs)
        handed = [row for batch in batches for row in batch.handed]
        if handed and self.on_handed is not None:
            try:
                self.on_handed(handed)
            except Exception:  # they stay 'starting'; recover() re-queues them
                log.exception("alert store: on_handed failed")
        if any(batch.queued > len(batch.handed) for batch in batches) and self.on_queued:
            try:
                self.on_queued()
            except Exception:  # a notification, nothing more
                log.exception("alert store: on_queued failed")

    def _room(self, jobs: list[_Job]) -> int:
        room = 0
        if self.handoff is not None and any(isinstance(job.work, _Enqueue) for job in jobs):
            try:
                room = max(0, int(self.handoff()))
            except Exception:  # then the rows wait in the queue for a claim
                log.exception("alert store: handoff failed")
        return room

    def _batch_body(self, db: Any, batch: _Batch, jobs: list[_Job]) -> None:
        # Bookkeeping first, then every enqueue of the batch together. They were
        # concurrent, so any order is one they could have had.
        enqueues: list[_Job] = []
        for job in jobs:
            if isinstance(job.work, _Enqueue):
                enqueues.append(job)
            else:
                job.result = job.work(db, batch)
        batch.flush_started(db)
        if enqueues:
            self._enqueue_all(db, batch, enqueues)
        batch.flush_counts(db)

    def _transaction(self, db: sqlite3.Connection | None, jobs: list[_Job]) -> _Batch:
        """Run the jobs in one transaction; raises (after rolling back) if any failed."""
        if db is None:
            return self._pg_transaction(jobs)
        batch = _Batch(self._room(jobs))
        # Any write a caller was promised durable makes the whole batch FULL.
        self._set_synchronous(db, "FULL" if any(job.durable for job in jobs) else "NORMAL")
        db.execute("BEGIN IMMEDIATE")
        try:
            self._batch_body(db, batch, jobs)
        except BaseException:
            with suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        try:
            db.execute("COMMIT")
        except BaseException:
            with suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        self.batches += 1
        self.batched_jobs += len(jobs)
        return batch

    def _pg_transaction(self, jobs: list[_Job]) -> _Batch:
        """`_transaction` on PostgreSQL: the keys' advisory locks first, in one order;
        run again when PostgreSQL picked it as a deadlock's victim (rows of both
        receivers' bookkeeping updated in opposite orders)."""
        import psycopg.errors

        room = self._room(jobs)
        durable = any(job.durable for job in jobs)
        keys: set[str] = set()
        for job in jobs:
            if isinstance(job.work, _Enqueue):
                keys.update(key for _, _, key, _ in job.work.items)
                keys.update(job.work.locks)
        locks = sorted({_lock_id(key) for key in keys})
        for attempt in range(_RETRIES):
            batch = _Batch(room)
            try:
                with self._database.tx(serialize=False) as db:
                    if not durable:  # what recovery re-derives: no wait for the flush
                        db.execute("SET LOCAL synchronous_commit = off")
                    if locks:
                        db.execute(
                            "SELECT count(pg_advisory_xact_lock(?, k))"
                            " FROM (SELECT unnest(?::int[]) AS k ORDER BY 1) AS keys",
                            (KEY_LOCKS, locks),
                        )
                    self._batch_body(db, batch, jobs)
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                if attempt == _RETRIES - 1:
                    raise
                log.info("alert store: a batch was a deadlock's victim; running it again")
                continue
            break
        self.batches += 1
        self.batched_jobs += len(jobs)
        return batch

    def _deliver(self, jobs: list[_Job]) -> None:
        """Answer the callers: one wake-up per event loop, not one per request."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        plain: list[_Job] = []
        for job in jobs:
            if job.loop is None:
                plain.append(job)
            else:
                by_loop.setdefault(job.loop, []).append(job)
        _settle(plain)
        for loop, waiting in by_loop.items():
            with suppress(RuntimeError):  # the loop is closed: nobody is waiting
                loop.call_soon_threadsafe(_settle, waiting)

    # -- the receiver's side ---------------------------------------------------------

    def enqueue(
        self,
        items: Sequence[QueueItem],
        *,
        windows: Sequence[float],
        now: float | None = None,
        also: Callable[[Any], None] | None = None,
        locks: Sequence[str] = (),
    ) -> list[Enqueued]:
        """Queue every item or attach it to its live duplicate; all in one commit.

        `windows[i]` is item i's dedup window in seconds. Returns once the rows are
        durable, which is what allows the caller to answer 202. `also(db)` is run in the
        same transaction (the receiver records the delivery id for replay refusal there);
        `locks` names what it writes (a delivery id), locked with the alert keys on
        PostgreSQL so that no two receivers' batches wait on each other in a cycle.
        """
        return self.write(self._enqueue_work(items, windows, now, also, locks))  # type: ignore[no-any-return]

    async def enqueue_async(
        self,
        items: Sequence[QueueItem],
        *,
        windows: Sequence[float],
        now: float | None = None,
        also: Callable[[Any], None] | None = None,
        locks: Sequence[str] = (),
    ) -> list[Enqueued]:
        """`enqueue` for the event loop: waits for the commit without blocking the loop."""
        work = self._enqueue_work(items, windows, now, also, locks)
        return await self.write_async(work)  # type: ignore[no-any-return]

    def _enqueue_work(
        self,
        items: Sequence[QueueItem],
        windows: Sequence[float],
        now: float | None,
        also: Callable[[Any], None] | None,
        locks: Sequence[str] = (),
    ) -> _Enqueue:
        if len(windows) != len(items):
            raise ValueError("one dedup window per item")
        when = time.time() if now is None else now
        # Serialized here, on the caller's thread: the writer only runs SQL.
        prepared = [
            (
                item,
                window,
                alert_key(item.source, item.playbook_id, item.alert.id),
                item.alert_json if item.alert_json is not None else item.alert.model_dump_json(),
            )
            for item, window in zip(items, windows, strict=True)
        ]
        return _Enqueue(prepared, when, also, tuple(locks))

    def _enqueue_all(self, db: Any, batch: _Batch, jobs: list[_Job]) -> None:
        """Every enqueue of the batch: one look-up, one insert, in the callers' order."""
        specs = [job.work for job in jobs]
        assert all(isinstance(spec, _Enqueue) for spec in specs)
        wanted = sorted(
            {key for spec in specs for _, _, key, _ in spec.items if key not in batch.latest}  # type: ignore[union-attr]
        )
        if wanted:  # none of these keys is in batch.latest yet
            batch.latest.update(latest_rows(db, wanted))
        inserts: list[tuple[Any, ...]] = []
        for job in jobs:
            spec = job.work
            assert isinstance(spec, _Enqueue)
            if spec.also is not None:
                spec.also(db)
            job.result = [
                self._enqueue_one(batch, inserts, item, window, key, text, spec.now)
                for item, window, key, text in spec.items
            ]
        columns, marks = (_PG_COLUMNS, _PG_ROW) if _is_postgres(db) else (_COLUMNS, _ROW)
        for chunk in _chunks(inserts, _INSERT_CHUNK):
            db.execute(
                f"INSERT INTO webhook_alerts ({columns}) VALUES "  # noqa: S608
                + ", ".join([marks] * len(chunk)),
                [value for row in chunk for value in row],
            )

    def _enqueue_one(
        self,
        batch: _Batch,
        inserts: list[tuple[Any, ...]],
        item: QueueItem,
        window: float,
        key: str,
        alert_json: str,
        now: float,
    ) -> Enqueued:
        row = batch.latest.get(key)
        if row is not None and self._attaches(row, window, now):
            row["count"] = count = int(row["count"]) + 1
            pending = batch.counts.get(row["id"])
            if pending is None:
                batch.counts[row["id"]] = [1, now]
            else:
                pending[0] += 1
                pending[1] = now
            return Enqueued(
                row_id=row["id"],
                run_id=row["run_id"],
                alert_key=key,
                playbook_id=item.playbook_id,
                mode=row["mode"],
                status="deduplicated",
                count=count,
            )
        row_id, run_id = _row_id(), new_run_id()
        handed = batch.room > len(batch.handed)
        status, attempts = ("starting", 1) if handed else ("queued", 0)
        claim: tuple[Any, ...] = ()
        if self.dialect == "postgresql":
            claim = (self.owner, now) if handed else (None, None)
        inserts.append(
            (
                row_id,
                item.source,
                key,
                item.alert.id,
                item.playbook_id,
                item.playbook_path,
                run_id,
                item.mode,
                alert_json,
                status,
                attempts,
                now,
                now,
                now,
                *claim,
            )
        )
        batch.latest[key] = {
            "id": row_id,
            "run_id": run_id,
            "mode": item.mode,
            "status": status,
            "count": 1,
            "first_seen": now,
        }
        batch.queued += 1
        if handed:
            batch.handed.append(
                QueuedAlert(
                    row_id=row_id,
                    run_id=run_id,
                    source=item.source,
                    alert_key=key,
                    playbook_id=item.playbook_id,
                    playbook_path=item.playbook_path,
                    mode=item.mode,
                    alert=item.alert,
                    attempts=attempts,
                )
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

    def _attaches(self, row: Mapping[str, Any], window: float, now: float) -> bool:
        if in_window(row, window, now):
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
        self.write(self._dead_letter_work(source, reason, body, path, limit))

    async def dead_letter_async(
        self, source: str, reason: str, body: bytes, *, path: str | None = None, limit: int
    ) -> None:
        await self.write_async(self._dead_letter_work(source, reason, body, path, limit))

    @staticmethod
    def _dead_letter_work(
        source: str, reason: str, body: bytes, path: str | None, limit: int
    ) -> Work:
        args = (source, time.time(), reason[:2_000], path, bytes(body[:limit]))

        def work(db: sqlite3.Connection, batch: _Batch) -> None:
            db.execute(
                "INSERT INTO webhook_dead_letters (source, received_at, reason, path, body)"
                " VALUES (?, ?, ?, ?, ?)",
                args,
            )

        return work

    # -- the dispatcher's side -------------------------------------------------------

    def recover(self) -> int:
        """Put rows claimed by a process that died back in the queue; returns how many.

        On SQLite, called once at start-up: every 'starting' row is a dead process's
        (receivers on one file take turns). On PostgreSQL, other receivers share the
        table, so only rows whose claiming owner is gone (irbook.leases: its lease has
        expired and, on this host, its process is dead) go back, and dispatchers call this
        now and then, not only at start-up: a receiver killed mid-dispatch leaves its
        rows to the others, never to two. A row left 'starting' may or may not have
        started its run; starting it again is safe because the starter refuses a known
        run id.
        """

        if self.dialect == "postgresql":
            gone = self._gone_claimants()
            if not gone:
                return 0

            def again(db: Any, batch: _Batch) -> int:
                batch.latest.clear()
                return int(
                    db.execute(
                        "UPDATE webhook_alerts SET status = 'queued', claimed_by = NULL"
                        " WHERE status = 'starting' AND claimed_by = ANY(?)",
                        (gone,),
                    ).rowcount
                )

            recovered = int(self.write(again, durable=False))
            if recovered and self.on_queued is not None:
                self.on_queued()
            return recovered

        def work(db: sqlite3.Connection, batch: _Batch) -> int:
            batch.latest.clear()
            return db.execute(
                "UPDATE webhook_alerts SET status = 'queued' WHERE status = 'starting'"
            ).rowcount

        return int(self.write(work, durable=False))

    def _gone_claimants(self) -> list[str]:
        """Owners of 'starting' rows that are gone (PostgreSQL): see `recover`."""
        from irbook import leases

        now = time.time()
        found = (
            self._db()
            .execute(
                "SELECT DISTINCT w.claimed_by, o.id, o.host, o.pid, o.proc_start,"
                " o.lease_expires, w.claimed_at FROM webhook_alerts AS w"
                " LEFT JOIN run_owners AS o ON o.id = w.claimed_by"
                " WHERE w.status = 'starting'"
            )
            .fetchall()
        )
        gone = set()
        grace = leases.lease_seconds()
        for row in found:
            claimant = row[0]
            if claimant is None or claimant == self.owner:  # NULL: never, claims hold()
                continue
            if row[1] is None:  # no lease at all: a claim older than a lease is orphaned
                if now > float(row[6] or 0) + grace:
                    gone.add(str(claimant))
                continue
            owner = {
                "id": row[1],
                "host": row[2],
                "pid": row[3],
                "proc_start": row[4],
                "lease_expires": row[5],
            }
            if leases.owner_gone(owner, now):
                gone.add(str(claimant))
        return sorted(gone)

    def hold(self) -> str | None:
        """Register this process as an owner in the store (PostgreSQL): its claims are
        stamped with the owner id, and its lease tells other receivers it is alive."""
        if self.dialect == "postgresql" and self.owner is None:
            from irbook import leases

            self.owner = leases.hold(self.path)
        return self.owner

    def claim(self, limit: int, now: float | None = None) -> list[QueuedAlert]:
        """Mark up to `limit` due rows 'starting' and return them, oldest first."""
        if limit <= 0:
            return []
        when = time.time() if now is None else now
        self.hold()

        def work(db: Any, batch: _Batch) -> list[Any]:
            batch.latest.clear()
            if _is_postgres(db):
                # Rows another receiver's batch holds are skipped, not waited for; the
                # claim names this process, so only its death returns them (`recover`).
                return list(
                    db.execute(
                        "UPDATE webhook_alerts SET status = 'starting',"
                        " attempts = attempts + 1, claimed_by = ?, claimed_at = ?"
                        " WHERE id IN (SELECT id FROM webhook_alerts WHERE status = 'queued'"
                        " AND not_before <= ? ORDER BY received_at LIMIT ?"
                        " FOR UPDATE SKIP LOCKED) RETURNING *",
                        (self.owner, when, when, limit),
                    ).fetchall()
                )
            return list(
                db.execute(
                    "UPDATE webhook_alerts SET status = 'starting', attempts = attempts + 1"
                    " WHERE id IN (SELECT id FROM webhook_alerts INDEXED BY webhook_alerts_waiting"
                    " WHERE status = 'queued' AND not_before <= ? ORDER BY received_at LIMIT ?)"
                    " RETURNING *",
                    (when, limit),
                ).fetchall()
            )

        rows: list[Any] = self.write(work, durable=False)
        rows.sort(key=lambda row: (row["received_at"], row["id"]))  # RETURNING has no order
        # Parsed here, on the dispatcher's thread, not on the writer's.
        return [
            QueuedAlert(
                row_id=row["id"],
                run_id=row["run_id"],
                source=row["source"],
                alert_key=row["alert_key"],
                playbook_id=row["playbook_id"],
                playbook_path=row["playbook_path"],
                mode=row["mode"],
                alert=Alert.model_validate_json(row["alert"]),
                attempts=int(row["attempts"]),  # already counted by the claim
            )
            for row in rows
        ]

    def _update(self, sql: str, args: tuple[Any, ...]) -> None:
        def work(db: Any, batch: _Batch) -> None:
            batch.latest.clear()
            db.execute(sql, args)

        self.write(work, durable=False)

    def mark_started(self, row_id: str, ref: str | None = None) -> None:
        self.mark_started_later(row_id, ref).result()

    def mark_started_later(self, row_id: str, ref: str | None = None) -> Future[Any]:
        """`mark_started` without waiting for the commit (the dispatcher's workers).

        Marks made while one write of marks waits for the writer join it: a burst of
        starts costs one write, not one per start. Losing them to a crash is safe (see
        `write`): the row is started again, the starter refuses its run id, and the row
        is marked then.
        """
        with self._marks_lock:
            self._marks.append((row_id, ref, time.time()))
            future = self._marks_future
            if future is not None:
                return future
            future = self._marks_future = Future()
        future.add_done_callback(_log_lost_marks)
        self._submit(_Job(_Marks(self), future, None, durable=False))
        return future

    def unclaim(self, row_ids: Sequence[str]) -> None:
        """Put claimed rows nobody started back in the queue, as if never claimed."""
        if not row_ids:
            return
        ids = json.dumps(list(row_ids))

        def work(db: Any, batch: _Batch) -> None:
            batch.latest.clear()
            if _is_postgres(db):
                db.execute(
                    "UPDATE webhook_alerts SET status = 'queued', attempts = attempts - 1,"
                    " claimed_by = NULL WHERE status = 'starting' AND id = ANY(?)",
                    (list(row_ids),),
                )
                return
            db.execute(
                "UPDATE webhook_alerts SET status = 'queued', attempts = attempts - 1"
                " WHERE status = 'starting' AND id IN (SELECT value FROM json_each(?))",
                (ids,),
            )

        self.write(work, durable=False)

    def restart_run(
        self, run_id: str, new_run_id: str, max_restarts: int, *, counted: bool = True
    ) -> tuple[str, str]:
        """Start the alert of a crashed run again, under `new_run_id`, in the same row.

        The row keeps its count and first-seen time and now names the new run, so repeats
        of the alert attach to the run that will handle it, never to the crashed one, and
        the dispatcher starts it like any queued row. Returns (outcome, run id):
        ('restarted', new id); ('restarted', the id given before) when an earlier reaper
        had restarted it already; ('exhausted', run_id) after `max_restarts`; ('none',
        run_id) when no alert row started this run (a CLI run, a drill); ('pending',
        run_id) while the row is queued or starting (after a restart, a dispatcher is about
        to be refused this run id and mark the row started: its mark must not land on the
        new run, so the reaper asks again later).

        `counted=False`: a crash before any step of the run began does not count towards
        `max_restarts` (the process died for other reasons than this alert's run).
        """

        def work(db: Any, batch: _Batch) -> tuple[str, str]:
            batch.latest.clear()
            row = db.execute(
                "SELECT id, restarts, status FROM webhook_alerts WHERE run_id = ?", (run_id,)
            ).fetchone()
            if row is None:
                again = db.execute(
                    "SELECT run_id FROM webhook_alerts WHERE restarted_from = ?", (run_id,)
                ).fetchone()
                return ("restarted", str(again[0])) if again else ("none", run_id)
            if row[2] in PENDING:
                return ("pending", run_id)
            if counted and int(row[1]) >= max_restarts:
                return ("exhausted", run_id)
            changed = db.execute(
                "UPDATE webhook_alerts SET run_id = ?, restarted_from = ?, status = 'queued',"
                " attempts = 0, not_before = 0, error = NULL, started_ref = NULL,"
                " started_at = NULL, restarts = restarts + ? WHERE id = ? AND run_id = ?",
                (new_run_id, run_id, int(counted), row[0], run_id),
            ).rowcount
            if not changed:  # another receiver's reaper restarted it in between
                again = db.execute(
                    "SELECT run_id FROM webhook_alerts WHERE restarted_from = ?", (run_id,)
                ).fetchone()
                return ("restarted", str(again[0])) if again else ("none", run_id)
            batch.queued += 1  # the dispatcher is told after the commit
            return ("restarted", new_run_id)

        outcome: tuple[str, str] = self.write(work)
        return outcome

    def mark_retry(self, row_id: str, error: str, not_before: float) -> None:
        self._update(
            "UPDATE webhook_alerts SET status = 'queued', error = ?, not_before = ? WHERE id = ?",
            (error[:2_000], not_before, row_id),
        )

    def mark_failed(self, row_id: str, error: str) -> None:
        self._update(
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
        clause = " AND ".join(f"{name} = ?" for name in where) or "1 = 1"
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
        """Commit the writes already submitted, stop the writer, close every connection."""
        with self._cond:
            writer = self._writer
            self._closing = True
            self._cond.notify_all()
        try:
            if writer is not None and writer is not threading.current_thread():
                writer.join()
        finally:
            with self._cond:
                self._closing = False
        if self.dialect == "sqlite":  # a PostgreSQL pool is the process's (irbook.db)
            self._database.close()


__all__ = [
    "AlertQueue",
    "Enqueued",
    "QueueItem",
    "QueuedAlert",
    "alert_key",
    "new_run_id",
]
