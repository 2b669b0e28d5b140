"""Starts the runs of queued alerts, at most once each, surviving restarts.

The receiver only commits alerts; this thread turns committed rows into runs through an
injected `StartRun`, so the core never imports Prefect (`irbook serve` wires a
Prefect-backed starter in). Starting happens in a bounded pool of worker threads: a
slow Prefect API slows the starts, never the webhook's answers.

Exactly once, by construction rather than by luck:
- at least once: a row stays in the table until its start is confirmed, and rows a dead
  process had claimed go back to the queue at start-up (`AlertQueue.recover`); on
  PostgreSQL, where several receivers dispatch from one table, every dispatcher also
  looks every `recover_every` seconds for rows claimed by a receiver whose lease has
  expired, so a receiver killed mid-dispatch leaves its rows to the others;
- at most once: the run id was fixed at enqueue time and the starter refuses an id that
  already exists (`RunStore.create_run` raises an IntegrityError on the duplicate
  primary key, sqlite3's or psycopg's), which the dispatcher reads as "this run was
  already started".
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from irbook import db as dbmod
from irbook.model.alert import Alert
from irbook.triggers.queue import AlertQueue, QueuedAlert

log = logging.getLogger("irbook.webhooks")


@dataclass(frozen=True, slots=True)
class StartRequest:
    """Everything a starter needs to start one playbook run for one alert.

    `run_id` is already assigned: the starter must create the run under exactly this id
    and refuse (raise an IntegrityError, or `AlreadyStarted`) if it exists.
    """

    run_id: str
    playbook_id: str
    playbook_path: str
    alert: Alert
    mode: str  # live | dry-run
    source: str
    alert_key: str


StartRun = Callable[[StartRequest], str]


class AlreadyStarted(Exception):  # an outcome, not a failure
    """A starter's way to say that this run id already has a run (like IntegrityError)."""


class StartFailed(Exception):
    """A starter's one-line account of a failure that may pass (an API that is down, a
    deployment not registered yet): retried with backoff like any other exception, but
    recorded with this message instead of a library's exception text."""


class StartRefused(Exception):
    """A starter's refusal that retrying cannot change (the run would leak a secret, the
    configuration does not allow it): the row is marked failed at once, with this reason."""


class Dispatcher:
    """The thread that takes queued rows and starts their runs.

    A failed start is retried with backoff (`retry_delays`), then the row is marked
    'failed' with the error; `on_started(request)` and `on_failed(request, error)` let
    the receiver count both.

    Claims take up to `prefetch` rows at once (at least one per free worker), held here
    until a worker is free: a burst of alerts costs a claim per `prefetch` rows, not one
    per worker slot, and a worker does not wait for its "started" mark to commit. While
    it runs, the queue hands it new rows as they are committed, up to `prefetch` held
    (`AlertQueue.handoff`), so those need no claim at all. Rows held when the dispatcher
    stops go back to the queue; after a crash, `recover` does it.

    `run_limit` bounds the runs going on at once, as `running()` counts them (the embedded
    starter's runs in this process): beyond it rows stay in the store, queued, and are
    started as runs end (call `notify` then). Without `running`, only starts are bounded.
    """

    def __init__(
        self,
        queue: AlertQueue,
        start_run: StartRun,
        *,
        workers: int = 4,
        poll_interval: float = 0.5,
        retry_delays: tuple[float, ...] = (1.0, 5.0, 30.0),
        on_started: Callable[[StartRequest], None] | None = None,
        on_failed: Callable[[StartRequest, str], None] | None = None,
        prefetch: int = 64,
        run_limit: int | None = None,
        running: Callable[[], int] | None = None,
        recover_every: float | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if run_limit is not None and run_limit < 1:
            raise ValueError("run_limit must be at least 1")
        self.run_limit = run_limit
        self.running = running
        self.prefetch = max(prefetch, workers)
        self.queue = queue
        self.start_run = start_run
        self.workers = workers
        self.poll_interval = poll_interval
        self.retry_delays = retry_delays
        self.on_started = on_started
        self.on_failed = on_failed
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._slots = threading.Semaphore(workers)
        self._busy = 0
        self._busy_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._held: deque[QueuedAlert] = deque()  # claimed, waiting for a free worker
        #: Seconds between looks for dead receivers' claims (PostgreSQL); default: a third
        #: of the lease (irbook.leases), so a dead receiver's rows wait about one lease.
        self.recover_every = recover_every
        self._next_recover = 0.0

    def start(self) -> None:
        """Recover rows a dead process left half-claimed, then start dispatching."""
        if self._thread is not None:
            return
        self.queue.hold()  # PostgreSQL: claims name this process, alive while it renews
        if self.recover_every is None and self.queue.dialect == "postgresql":
            from irbook import leases

            self.recover_every = leases.lease_seconds() / 3
        self._next_recover = time.monotonic() + (self.recover_every or 0.0)
        recovered = self.queue.recover()
        if recovered:
            log.warning("re-queued %d alert(s) whose start was interrupted", recovered)
        self._stop.clear()
        self.queue.handoff = self._room
        self.queue.on_handed = self._take
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="irbook-start")
        self._thread = threading.Thread(target=self._loop, name="irbook-dispatch", daemon=True)
        self._thread.start()

    def _room(self) -> int:
        """How many new rows the queue may hand over now (asked on the writer thread)."""
        if self._stop.is_set():
            return 0
        return max(0, self.prefetch - len(self._held))

    def _take(self, rows: list[QueuedAlert]) -> None:
        """New rows, already claimed for us in the transaction that inserted them."""
        self._held.extend(rows)
        self._wake.set()

    def notify(self) -> None:
        """New rows are committed: look now instead of at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming, wait for starts already under way, and give back held rows."""
        self._stop.set()
        self._wake.set()
        if self.queue.handoff == self._room:
            self.queue.handoff = None
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        # The writer commits in submission order: once a write queued now has committed,
        # so have the workers' started marks, and any batch already past `_room` has
        # handed its rows over (they are held here, and given back below).
        try:
            self.queue.write(lambda db, batch: None, durable=False)
        except dbmod.errors():
            log.exception("could not wait for the alert store's writer")
        held = [row.row_id for row in self._held]
        self._held.clear()
        try:
            self.queue.unclaim(held)
        except dbmod.errors():  # recover() puts them back (at the next start, or others')
            log.exception("could not give back %d claimed alert(s)", len(held))

    @property
    def busy(self) -> int:
        with self._busy_lock:
            return self._busy

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self._recover_due()
                claimed = self._claim_available()
            except dbmod.errors():
                log.exception("could not read the alert queue; retrying")
                claimed = 0
            if claimed == 0:
                self._wake.wait(self.poll_interval)

    def _recover_due(self) -> None:
        """Take back rows of receivers that died holding them (PostgreSQL), when due."""
        if not self.recover_every or time.monotonic() < self._next_recover:
            return
        self._next_recover = time.monotonic() + self.recover_every
        recovered = self.queue.recover()
        if recovered:
            log.warning("re-queued %d alert(s) a receiver that died had claimed", recovered)

    def _claim_available(self) -> int:
        """Hand held rows to free workers, claiming more when none are held; returns how
        many were handed out."""
        free = 0
        while self._slots.acquire(blocking=False):
            free += 1
        if free == 0:
            # Every worker is busy; one finishing will wake us.
            return 0
        if self.run_limit is not None and self.running is not None:
            # Starts under way become runs: count them against the limit too.
            room = max(0, self.run_limit - self.running() - self.busy)
            for _ in range(free - min(free, room)):
                self._slots.release()
            free = min(free, room)
            if free == 0:  # a run ending wakes us (notify), or the next poll
                return 0
        try:
            if not self._held:
                self._held.extend(self.queue.claim(max(free, self.prefetch)))
        except BaseException:
            for _ in range(free):
                self._slots.release()
            raise
        handed = min(free, len(self._held))
        for _ in range(free - handed):
            self._slots.release()
        pool = self._pool
        assert pool is not None
        for _ in range(handed):
            row = self._held.popleft()
            with self._busy_lock:
                self._busy += 1
            pool.submit(self._start_one, row)
        return handed

    def _start_one(self, row: QueuedAlert) -> None:
        request = StartRequest(
            run_id=row.run_id,
            playbook_id=row.playbook_id,
            playbook_path=row.playbook_path,
            alert=row.alert,
            mode=row.mode,
            source=row.source,
            alert_key=row.alert_key,
        )
        try:
            self._attempt(row, request)
        except Exception:
            log.exception("bookkeeping failed for run %s; it will be retried", row.run_id)
        finally:
            with self._busy_lock:
                self._busy -= 1
            self._slots.release()
            self._wake.set()

    def _attempt(self, row: QueuedAlert, request: StartRequest) -> None:
        try:
            ref = self.start_run(request)
        except (AlreadyStarted, *dbmod.integrity_errors()):  # type: ignore[misc]
            # Started before a crash (or by another receiver): confirm, do not repeat.
            log.info("run %s was already started", row.run_id)
            self.queue.mark_started_later(row.row_id, None)
            return
        except StartRefused as exc:
            error = str(exc)
            log.error("starting run %s refused: %s", row.run_id, error)
            self.queue.mark_failed(row.row_id, error)
            if self.on_failed is not None:
                self.on_failed(request, error)
            return
        except Exception as exc:  # a starter may fail any way it likes
            error = str(exc) if isinstance(exc, StartFailed) else f"{type(exc).__name__}: {exc}"
            if row.attempts <= len(self.retry_delays):
                delay = self.retry_delays[row.attempts - 1]
                log.warning(
                    "starting run %s failed (%s); retrying in %gs", row.run_id, error, delay
                )
                self.queue.mark_retry(row.row_id, error, time.time() + delay)
            else:
                log.error("starting run %s failed for good: %s", row.run_id, error)
                self.queue.mark_failed(row.row_id, error)
                if self.on_failed is not None:
                    self.on_failed(request, error)
            return
        self.queue.mark_started_later(row.row_id, ref if isinstance(ref, str) else None)
        if self.on_started is not None:
            self.on_started(request)


__all__ = [
    "AlreadyStarted",
    "Dispatcher",
    "StartFailed",
    "StartRefused",
    "StartRequest",
    "StartRun",
]
