"""What keeps the webhook receiver standing: replay refusal, rate limits, body caps.

These guard a receiver that starts incident-response runs which revoke keys and
isolate hosts, so a replayed or flooded request costs more than a wasted CPU cycle.
They are plain objects with an injected `now` so that tests and drills control time,
and they know nothing of any web framework.

- `ReplayGuard` keeps delivery ids in irbook's database (the SQLite file, or the
  PostgreSQL database every receiver of a scaled-out deployment shares), so a restart, or
  another receiver on the same database, does not forget what was already accepted.
- `RateLimiter` is in memory on purpose: it protects this process, and a restart that
  refills the buckets is harmless. Several receivers each have their own buckets.
- `read_limited` / `aread_limited` stop pulling body chunks the moment a limit is passed,
  so an oversized body never sits whole in memory.
- `BodyDeadlines` ends a body read that takes too long, so a sender trickling a byte a
  second cannot hold a connection (and its task) for ever.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import OrderedDict
from collections.abc import AsyncIterable, Awaitable, Iterable, Mapping
from typing import Any, TypeVar

from irbook.cache import home
from irbook.db import open_database

DAY = 86_400.0
DEFAULT_BODY_LIMIT = 1024 * 1024  # 1 MiB: PagerDuty caps at 256 KB, GitHub at 25 MB (!)

REPLAY_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_replay (
    source TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (source, delivery_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS webhook_replay_seen ON webhook_replay (seen_at);
"""


def replay_schema(postgres: bool) -> str:
    """PostgreSQL has no WITHOUT ROWID: its tables are heaps with the key as an index."""
    return REPLAY_SCHEMA.replace(") WITHOUT ROWID;", ");") if postgres else REPLAY_SCHEMA


class ReplayGuard:
    """Refuses a delivery id seen from the same source within `window` seconds.

    The window must cover the timestamp tolerance of the verifier in front of it:
    otherwise a request could be replayed after its id is forgotten but while its
    signed timestamp is still accepted. The default day also covers senders that
    retry for hours (PagerDuty, GitHub redeliveries) without a timestamp at all.

    One upsert decides atomically, in the database, whether an id is new; threads each
    use their own connection, and separate processes on the same file or PostgreSQL
    database agree too (the primary key, not this process's memory, decides).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        window: float = DAY,
        tolerance: float = 300.0,
        prune_every: float = 600.0,
    ) -> None:
        if not window >= tolerance > 0:
            raise ValueError(
                f"replay window ({window:g}s) must be at least the timestamp tolerance"
                f" ({tolerance:g}s)"
            )
        self.path = str(path) if path is not None else str(home() / "irbook.db")
        self.window = float(window)
        self.prune_every = prune_every
        self._database = open_database(self.path)
        self._lock = threading.Lock()
        self._next_prune: float | None = None
        self._db().executescript(replay_schema(self._database.dialect == "postgresql"))

    def _db(self) -> Any:
        return self._database.conn()

    def seen_before(self, source: str, delivery_id: str, now: float) -> bool:
        """Record the id and say whether it was already recorded within the window.

        A single statement: insert, or take over a row older than the window; SQLite
        reports one changed row exactly when this caller is the first to see the id.
        """
        return self.record(self._db(), source, delivery_id, now)

    def record(self, db: Any, source: str, delivery_id: str, now: float) -> bool:
        """`seen_before` on the caller's connection, inside the caller's transaction.

        The receiver records a delivery in the very transaction that queues its alerts,
        so the two commit together or not at all. Pruning, when due, happens there too.
        """
        changed = db.execute(
            "INSERT INTO webhook_replay (source, delivery_id, seen_at) VALUES (?, ?, ?)"
            " ON CONFLICT (source, delivery_id) DO UPDATE SET seen_at = excluded.seen_at"
            " WHERE webhook_replay.seen_at <= ?",
            (source, delivery_id, now, now - self.window),
        ).rowcount
        if self._prune_due(now):
            db.execute("DELETE FROM webhook_replay WHERE seen_at <= ?", (now - self.window,))
        return bool(changed != 1)

    def prune(self, now: float) -> int:
        """Forget ids older than the window; returns how many rows went."""
        cursor = self._db().execute(
            "DELETE FROM webhook_replay WHERE seen_at <= ?", (now - self.window,)
        )
        return int(cursor.rowcount)

    def _prune_due(self, now: float) -> bool:
        with self._lock:
            due = self._next_prune is None or now >= self._next_prune
            if due:
                self._next_prune = now + self.prune_every
        return due

    def close(self) -> None:
        """Close every thread's connection (call once the receiver has stopped); a
        PostgreSQL pool is the process's, shared with its other stores, and stays open."""
        if self._database.dialect == "sqlite":
            self._database.close()

    def __enter__(self) -> ReplayGuard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RateLimiter:
    """A token bucket per source: `burst` requests at once, then `rate` per second.

    `check` answers None (go ahead) or the seconds until one more request would be
    allowed, which is what a 429's Retry-After header needs (see `retry_after_header`).
    Buckets of sources that are idle and full are dropped when more than `max_sources`
    exist: a full bucket is the same as a fresh one, so nothing is lost by that.
    """

    def __init__(self, rate: float, burst: float, *, max_sources: int = 10_000) -> None:
        if not rate > 0:
            raise ValueError("rate must be a positive number of requests per second")
        if not burst >= 1:
            raise ValueError("burst must allow at least one request")
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_sources = max_sources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, source: str, now: float) -> float | None:
        with self._lock:
            tokens, last = self._buckets.get(source, (self.burst, now))
            # A clock that steps back refills nothing rather than draining the bucket.
            tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[source] = (tokens - 1.0, max(now, last))
                self._buckets.move_to_end(source)
                if len(self._buckets) > self.max_sources:
                    self._evict(now)
                return None
            self._buckets[source] = (tokens, max(now, last))
            self._buckets.move_to_end(source)
            return (1.0 - tokens) / self.rate

    def refund(self, source: str) -> None:
        """Give back the request `check` just allowed (a duplicate that cost nothing).

        A bucket evicted in between is full anyway, so there is nothing to give back.
        """
        with self._lock:
            bucket = self._buckets.get(source)
            if bucket is not None:
                tokens, last = bucket
                self._buckets[source] = (min(self.burst, tokens + 1.0), last)

    def _evict(self, now: float) -> None:
        full = [
            source
            for source, (tokens, last) in self._buckets.items()
            if tokens + max(0.0, now - last) * self.rate >= self.burst
        ]
        for source in full:
            del self._buckets[source]
        while len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)  # least recently seen


def retry_after_header(seconds: float) -> str:
    """Retry-After takes whole seconds; round up so a client that obeys succeeds."""
    whole = int(seconds)
    return str(max(1, whole if whole == seconds else whole + 1))


class BodyTooLarge(Exception):
    """A request body over the limit: answer 413 without reading further."""

    def __init__(self, limit: int, declared: int | None = None) -> None:
        super().__init__(
            f"request body over {limit} bytes"
            + (f" (Content-Length {declared})" if declared is not None else "")
        )
        self.limit = limit
        self.declared = declared


class BadContentLength(ValueError):
    """A Content-Length that is not one non-negative integer: answer 400."""


def check_content_length(headers: Mapping[str, str], limit: int = DEFAULT_BODY_LIMIT) -> int | None:
    """Refuse a declared size over the limit before reading anything.

    Returns the declared length, or None when there is none (chunked transfer); the
    body must still be read with `read_limited`, since a declaration is only a claim.
    """
    values = {value.strip() for key, value in headers.items() if key.lower() == "content-length"}
    if not values:
        return None
    if len(values) > 1:
        raise BadContentLength("conflicting Content-Length headers")
    (text,) = values
    # Only ASCII digits: int() would also take "+5", " 5", "5_0" and Unicode digits.
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise BadContentLength("Content-Length is not a byte count")
    declared = int(text)
    if declared > limit:
        raise BodyTooLarge(limit, declared)
    return declared


def read_limited(chunks: Iterable[bytes], limit: int = DEFAULT_BODY_LIMIT) -> bytes:
    """The whole body, or BodyTooLarge as soon as more than `limit` bytes arrived.

    No chunk is pulled after the one that passes the limit, and a generator source is
    closed, so the rest of an oversized body is never read.
    """
    parts: list[bytes] = []
    size = 0
    iterator = iter(chunks)
    try:
        for chunk in iterator:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(limit)
            parts.append(bytes(chunk))
    finally:
        close = getattr(iterator, "close", None)
        if size > limit and callable(close):
            close()
    return b"".join(parts)


async def aread_limited(chunks: AsyncIterable[bytes], limit: int = DEFAULT_BODY_LIMIT) -> bytes:
    """`read_limited` for an async body stream (an ASGI receive loop, httpx, ...)."""
    parts: list[bytes] = []
    size = 0
    iterator = aiter(chunks)
    try:
        async for chunk in iterator:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(limit)
            parts.append(bytes(chunk))
    finally:
        aclose = getattr(iterator, "aclose", None)
        if size > limit and callable(aclose):
            await aclose()
    return b"".join(parts)


T = TypeVar("T")


class BodyTimeout(Exception):
    """A request body that was not in by its deadline: answer 408 and close."""


class BodyDeadlines:
    """Deadlines for body reads, enforced by one watcher task instead of a timer each.

    A timer per request (`asyncio.timeout`) costs a few microseconds on the receiver's
    hot path; noting the reading task in a dict costs a fraction of one. The watcher
    wakes every `tick` seconds and cancels the reads past their deadline, so a read may
    last up to `timeout + tick`. Without a running watcher (`run` not started) reads
    have no deadline, which is what a test calling the app without its lifespan gets.
    """

    def __init__(self, timeout: float, tick: float | None = None) -> None:
        if not timeout > 0:
            raise ValueError("the body timeout must be a positive number of seconds")
        self.timeout = float(timeout)
        self.tick = tick if tick is not None else min(1.0, self.timeout / 4)
        self._reads: dict[asyncio.Task[object], float] = {}
        self._expired: set[asyncio.Task[object]] = set()

    async def read(self, reading: Awaitable[T]) -> T:
        """Await `reading` (a body read) within the deadline, or raise BodyTimeout."""
        task: asyncio.Task[object] | None = asyncio.current_task()
        if task is None:  # pragma: no cover - always inside a task under an ASGI server
            return await reading
        self._reads[task] = asyncio.get_running_loop().time() + self.timeout
        try:
            return await reading
        except asyncio.CancelledError:
            if task not in self._expired:
                raise
            self._expired.discard(task)
            task.uncancel()
            raise BodyTimeout(f"request body not received within {self.timeout:g}s") from None
        finally:
            self._reads.pop(task, None)

    async def run(self) -> None:
        """The watcher: run it as a task for the server's lifetime, cancel it at the end."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.tick)
            now = loop.time()
            late = [task for task, deadline in self._reads.items() if deadline <= now]
            for task in late:
                del self._reads[task]
                self._expired.add(task)
                task.cancel()


__all__ = [
    "DAY",
    "DEFAULT_BODY_LIMIT",
    "BadContentLength",
    "BodyDeadlines",
    "BodyTimeout",
    "BodyTooLarge",
    "RateLimiter",
    "ReplayGuard",
    "aread_limited",
    "check_content_length",
    "read_limited",
    "retry_after_header",
]
