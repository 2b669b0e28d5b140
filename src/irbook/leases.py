"""Who is running a run: one owner identity per process and its lease in the store.

A run record says 'running' from its first line to its last; a process killed in between
leaves it saying so for ever, and the receiver's dedup then attaches every repeat of the
alert to a run nobody is running. Time alone cannot tell such a run from a slow one (a
run may wait hours for an approval), so each process that runs runs registers itself as
an owner (host, pid, the pid's start time, a random nonce) in `run_owners`, stamps its
runs with that owner, and renews one lease row every few seconds from a heartbeat
thread: one UPDATE for all of its runs.

An owner is gone when its lease has expired AND, on this host, its process is not alive
(the pid is unused, a zombie, or a different process started since: /proc's start time
differs). Both are required: an expired lease alone may be a frozen or overloaded process,
and a pid alone cannot be checked across hosts or pid namespaces. From another host only
the lease tells. A clean exit expires the lease at once.

`IRBOOK_RUN_LEASE` sets the lease in seconds (default 30; the heartbeat renews it three
times per lease), for tests and for hosts whose processes may stall for longer.

On PostgreSQL the lease rows live in the shared database: a reaper on any host sees
every owner's lease, and judges one of another host by its lease alone.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any

from irbook import db as database

log = logging.getLogger("irbook.runs")

SCHEMA = """
CREATE TABLE IF NOT EXISTS run_owners (
    id TEXT PRIMARY KEY,              -- host:pid:nonce
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    proc_start TEXT,                  -- the process's start time (/proc), tells reused pids apart
    started_at REAL NOT NULL,
    lease_expires REAL NOT NULL       -- renewed by the heartbeat; 0 once released
);
"""

DEFAULT_LEASE = 30.0


def lease_seconds() -> float:
    """The lease an owner holds, from IRBOOK_RUN_LEASE (seconds, at least 0.5)."""
    text = os.environ.get("IRBOOK_RUN_LEASE", "")
    try:
        value = float(text) if text else DEFAULT_LEASE
    except ValueError:
        value = DEFAULT_LEASE
    return max(0.5, value)


def _proc_start(pid: int) -> str | None:
    """The start time of a process (clock ticks since boot), or None where /proc is absent."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if len(fields) < 20 or fields[0] in ("Z", "X"):  # a zombie has finished
        return "dead"
    return fields[19]


@dataclass(frozen=True, slots=True)
class Owner:
    id: str
    host: str
    pid: int
    proc_start: str | None


_owner: Owner | None = None
_owner_lock = threading.Lock()


def this_owner() -> Owner:
    """This process's owner identity (a new one after a fork)."""
    global _owner
    with _owner_lock:
        pid = os.getpid()
        if _owner is None or _owner.pid != pid:
            host = socket.gethostname()
            _owner = Owner(f"{host}:{pid}:{os.urandom(4).hex()}", host, pid, _proc_start(pid))
        return _owner


def process_alive(pid: int, proc_start: str | None) -> bool:
    """Whether the process that registered as (pid, proc_start) on this host still runs."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        pass
    now = _proc_start(pid)
    if now == "dead":
        return False
    if proc_start is None or now is None:  # no /proc here: the pid is all we have
        return True
    return now == proc_start


def owner_gone(row: Any, now: float) -> bool:
    """Whether the owner of a run is gone (see the module's docstring); never this process."""
    if row is None:
        return False  # a run without an owner: who ran it is unknown, so it is not judged
    if row["lease_expires"] is None:
        return True  # the owner never registered: it died between the run and its lease
    me = this_owner()
    if row["id"] == me.id:
        return False
    if float(row["lease_expires"]) > now:
        return False
    if row["host"] != me.host:
        return True
    if int(row["pid"]) == me.pid:  # our pid, another owner: an earlier life of this pid
        return True
    return not process_alive(int(row["pid"]), row["proc_start"])


class _Heartbeat:
    """Renews this process's lease in each store file it holds runs in."""

    def __init__(self) -> None:
        self.paths: set[str] = set()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.stop = threading.Event()

    def hold(self, path: str) -> str:
        owner = this_owner()
        with self.lock:
            if path not in self.paths:
                _renew(path, owner, time.time() + lease_seconds(), register=True)
                self.paths.add(path)
            if self.thread is None or not self.thread.is_alive():
                self.stop.clear()
                self.thread = threading.Thread(
                    target=self._loop, name="irbook-heartbeat", daemon=True
                )
                self.thread.start()
        return owner.id

    def _loop(self) -> None:
        while not self.stop.wait(lease_seconds() / 3):
            owner = this_owner()
            with self.lock:
                paths = sorted(self.paths)
            for path in paths:
                try:
                    _renew(path, owner, time.time() + lease_seconds())
                except Exception as exc:  # a busy or unreachable database: the next beat
                    if not isinstance(exc, (*database.errors(), database.DatabaseUrlError)):
                        raise
                    where = database.redacted_url(path)
                    log.warning("could not renew the run lease in %s: %s", where, exc)

    def release(self) -> None:
        """A clean exit: our runs cannot go on, so say so now rather than at expiry."""
        self.stop.set()
        owner = this_owner()
        with self.lock:
            paths, self.paths = sorted(self.paths), set()
        for path in paths:
            with contextlib.suppress(*database.errors(), database.DatabaseUrlError):
                _renew(path, owner, 0.0)  # else expiry will say it


def _renew(path: str, owner: Owner, expires: float, *, register: bool = False) -> None:
    if database.dialect_of(path) == "postgresql":  # the store created the table
        shared = database.shared_database(path)
        if shared is None and not register:
            return  # the process closed its pool: its stores are done, so is their lease
        pg = shared or database.open_database(path)
        _write(pg.conn(), owner, expires, register=register)
        return
    db = sqlite3.connect(database.sqlite_path(path), timeout=30, isolation_level=None)
    try:
        if register:
            db.executescript(SCHEMA)
        _write(db, owner, expires, register=register)
    finally:
        db.close()


def _write(db: Any, owner: Owner, expires: float, *, register: bool) -> None:
    if register:
        db.execute(
            "INSERT INTO run_owners (id, host, pid, proc_start, started_at, lease_expires)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE"
            " SET lease_expires = excluded.lease_expires",
            (owner.id, owner.host, owner.pid, owner.proc_start, time.time(), expires),
        )
    else:
        db.execute("UPDATE run_owners SET lease_expires = ? WHERE id = ?", (expires, owner.id))


_HEARTBEAT = _Heartbeat()
atexit.register(_HEARTBEAT.release)


def hold(path: str) -> str:
    """Register this process as an owner in the store at `path` and keep its lease renewed;
    returns the owner id to stamp on the runs it starts."""
    return _HEARTBEAT.hold(path)


__all__ = ["SCHEMA", "Owner", "hold", "lease_seconds", "owner_gone", "process_alive", "this_owner"]
