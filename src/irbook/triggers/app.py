"""irbook's HTTP receiver (`irbook serve`): an ASGI app under uvicorn.

It serves SIEM webhooks (`POST /hooks/{source}`), Slack's interactivity callbacks
(approval buttons), a health check, Prometheus metrics and an OpenAPI description.
Starlette is imported when the app is built, so the core package stays light, and
nothing here imports Prefect: runs are started through an injected `StartRun`.

A webhook post goes through cheap refusals first and expensive work last, so a flood
or an attacker costs as little as possible: unknown source (404), declared size (413,
before reading), actual size (413, reading stops at the limit) and time (408, the body
read has a deadline), signature over the raw bytes (401), replay (200 "duplicate"),
the source's rate (429), JSON (400/415), the format (422, kept as a dead letter), then
matching and a durable enqueue before the 202. Any input that still manages to raise is
answered 400, never 500: a sender retrying a 5xx forever is a flood of our own making.

The rate is spent only by authenticated posts, so junk cannot lock a real sender out.
Posts that fail authentication spend a budget of their own per client address instead
(`failed_auth`), past which they are answered 429 and no longer logged one by one. A
post over its source's rate whose every alert is a duplicate of a stored one is still
taken (its count goes up): in a storm, duplicates are what must be absorbed cheaply, and
a 429 would only make the sender send them again.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import logging
import sqlite3
import threading
import time
from bisect import bisect_left
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from irbook import db as dbmod
from irbook.errors import LoadFailed
from irbook.triggers.auth import QUERY, AuthError
from irbook.triggers.config import (
    ConfigError,
    HookSource,
    LoadedConfig,
    ReceiverConfig,
    route_playbooks,
)
from irbook.triggers.dispatch import Dispatcher, StartRequest, StartRun
from irbook.triggers.limits import (
    DAY,
    BadContentLength,
    BodyDeadlines,
    BodyTimeout,
    BodyTooLarge,
    RateLimiter,
    ReplayGuard,
    aread_limited,
    check_content_length,
    retry_after_header,
)
from irbook.triggers.match import matches
from irbook.triggers.normalizers import NORMALIZERS, NormalizeError, is_resolved, is_sample
from irbook.triggers.normalizers._base import plain_json_body, vouched
from irbook.triggers.queue import (
    AlertQueue,
    Enqueued,
    QueueItem,
    alert_key,
    in_window,
    latest_rows,
)
from irbook.triggers.slack import SlackInteractions
from irbook.validate import validate

log = logging.getLogger("irbook.webhooks")

MAX_BODY = 1024 * 1024
INLINE_BODY = 64 * 1024  # bodies up to this size are checked on the event loop
RECENT_BODIES = 256  # bodies whose matched alerts are remembered (storms re-send the same)
RECENT_BODY_MAX = 16 * 1024
SEEN_BODIES = 4096  # hashes of recent bodies: a body is remembered when it comes again
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JSON_TYPES = ("application/json", "text/plain")  # plus any application/*+json


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A post to keep as a dead letter (committed) before `answer` is sent."""

    source: str
    reason: str
    body: bytes
    path: str | None
    limit: int
    answer: Answer


@dataclass(frozen=True, slots=True)
class Prepared:
    """A post that passed every check: the alerts to commit before answering 202."""

    source: str
    now: float
    items: list[QueueItem]
    windows: list[float]
    skipped: list[dict[str, Any]]
    replay_key: str | None
    charged: bool = True  # spent a token of the source's rate (given back for duplicates)


class Metrics:
    """Counters and one latency histogram, rendered in Prometheus' text format.

    Labels are only ever configured source names and fixed reason codes, never anything
    a sender chose, so an attacker cannot blow up the number of series.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        # Per bucket, the observations that fell in it (the last one: above every bound);
        # `render` adds them up into Prometheus' cumulative buckets.
        self._buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self._latency_sum = 0.0
        self._latency_count = 0

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        with self._lock:
            self.counters[(name, tuple(sorted(labels.items())))] += amount

    def inc_source(self, name: str, source: str) -> None:
        """`inc(name, source=source)`, the receiver's per-request counters, without
        building keyword arguments and sorting them."""
        key = (name, (("source", source),))
        with self._lock:
            self.counters[key] += 1.0

    def get(self, name: str, **labels: str) -> float:
        with self._lock:
            return self.counters.get((name, tuple(sorted(labels.items()))), 0.0)

    def observe(self, seconds: float) -> None:
        index = bisect_left(LATENCY_BUCKETS, seconds)  # the first bound >= seconds
        with self._lock:
            self._latency_sum += seconds
            self._latency_count += 1
            self._buckets[index] += 1

    def render(self, gauges: Mapping[str, float]) -> str:
        helps = {
            "irbook_webhook_received_total": "Posts received, by configured source.",
            "irbook_webhook_rejected_total": "Posts refused, by source and reason.",
            "irbook_webhook_replays_total": "Deliveries refused as replays of accepted ones.",
            "irbook_webhook_alerts_queued_total": "Alerts queued for a new run.",
            "irbook_webhook_alerts_deduplicated_total": "Alerts attached to an existing run.",
            "irbook_webhook_alerts_unmatched_total": "Alerts no playbook's trigger matched.",
            "irbook_webhook_runs_started_total": "Runs started from webhook alerts.",
            "irbook_webhook_runs_failed_total": "Runs that could not be started.",
            "irbook_webhook_auth_throttled_total": "Posts that failed authentication from an"
            " address over its failed_auth budget (answered 429).",
            "irbook_webhook_duplicates_over_rate_total": "Posts over the source's rate taken"
            " because each of their alerts was a duplicate of a stored one.",
            "irbook_slack_requests_total": "Posts to /slack/interactions.",
            "irbook_slack_rejected_total": "Slack interactions refused, by reason.",
        }
        lines: list[str] = []
        with self._lock:
            counters = dict(self.counters)
            buckets = list(self._buckets)
            total, count = self._latency_sum, self._latency_count
        for name, text in helps.items():
            lines += [f"# HELP {name} {text}", f"# TYPE {name} counter"]
            for (metric, labels), value in sorted(counters.items()):
                if metric == name:
                    lines.append(f"{name}{_labels(labels)} {value:g}")
        for name, value in gauges.items():
            lines += [f"# TYPE {name} gauge", f"{name} {value:g}"]
        hist = "irbook_webhook_request_duration_seconds"
        lines += [
            f"# HELP {hist} Time to answer a webhook post.",
            f"# TYPE {hist} histogram",
        ]
        seen = 0
        for bound, fell in zip(LATENCY_BUCKETS, buckets, strict=False):
            seen += fell
            lines.append(f'{hist}_bucket{{le="{bound:g}"}} {seen}')
        lines += [
            f'{hist}_bucket{{le="+Inf"}} {count}',
            f"{hist}_sum {total:.6f}",
            f"{hist}_count {count}",
        ]
        return "\n".join(lines) + "\n"


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(
        f'{key}="{value.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for key, value in labels
    )
    return "{" + inner + "}"


@dataclass(frozen=True)
class HookPlaybook:
    """What the receiver needs of a loaded playbook: its id, file and triggers."""

    id: str
    path: str
    triggers: tuple[Any, ...]


def load_playbooks(folders: Iterable[str]) -> list[HookPlaybook]:
    """Every playbook in the folders, checked; a broken one stops the receiver starting.

    A receiver that silently skipped a broken playbook would leave an incident type
    without its response, which nobody would notice until that incident.
    """
    result = validate(list(folders))
    if result.errors:
        more = len(result.errors) - 1
        suffix = f" (and {more} more; run irbook validate)" if more else ""
        first = result.errors[0]
        raise ConfigError(first.message + suffix, first.location)
    try:
        loaded = result.playbooks()
    except LoadFailed as exc:  # a file edited since its cached check
        raise ConfigError(exc.diagnostics[0].message, exc.diagnostics[0].location) from None
    return [
        HookPlaybook(item.playbook.metadata.id, item.path, tuple(item.playbook.triggers))
        for item in loaded
    ]


class WebhookReceiver:
    """The framework-free part of `POST /hooks/{source}`, plus the dispatcher it feeds.

    `db_path` holds the alert queue, the dead letters and the replay table; without it,
    the database irbook.db.database_url names (IRBOOK_DATABASE_URL, else the
    configuration's `database_url:`, else irbook's SQLite file). Receivers on one
    PostgreSQL URL act as one: shared dedup, replay refusal and dispatch. `playbooks`
    defaults to loading the configured folders once, here: a playbook edited while the
    receiver runs takes effect on restart, so what runs is what was validated.

    `dispatch=False` accepts and commits alerts without starting their runs: another
    process dispatching from the same file starts them (a `Dispatcher` over an
    `AlertQueue` of that path), or this one once started with dispatch on. The receiver
    benchmark measures acceptance this way, and the dispatcher's draining separately.
    """

    def __init__(
        self,
        config: LoadedConfig,
        start_run: StartRun,
        *,
        db_path: str | None = None,
        playbooks: list[HookPlaybook] | None = None,
        workers: int = 4,
        clock: Callable[[], float] = time.time,
        run_active: Callable[[str], bool] | None = None,
        poll_interval: float = 0.5,
        dispatch: bool = True,
        running: Callable[[], int] | None = None,
    ) -> None:
        from irbook.source import default_playbook_dirs

        self.config = config
        self.sources: dict[str, HookSource] = dict(config.sources)
        self.clock = clock
        self.dispatch = dispatch
        if playbooks is None:
            folders = config.config.playbooks or default_playbook_dirs()
            playbooks = load_playbooks(folders)
        self.playbooks = playbooks
        routes = route_playbooks(config, playbooks)
        self._per_source = routes.per_source
        self.warnings = routes.warnings
        if db_path is None:
            db_path = dbmod.database_url(config.config.database_url)
        self.queue = AlertQueue(db_path, run_active=run_active)
        tolerance = max([src.verifier.tolerance or 0.0 for src in self.sources.values()] + [300.0])
        self.replay = ReplayGuard(self.queue.path, window=max(DAY, tolerance), tolerance=tolerance)
        self._replay_local = threading.local()
        self._replay_lock = threading.Lock()
        self._replay_dbs: list[sqlite3.Connection] = []
        self.limiters = {
            name: RateLimiter(src.config.rate.per_second, src.config.rate.burst)
            for name, src in self.sources.items()
        }
        self.metrics = Metrics()
        # (source, body) -> what `_alerts` made of it. Normalizing and matching are pure
        # functions of the body, so a storm of identical posts is parsed once; each copy
        # is still authenticated, replay-checked and committed (count, last seen).
        self._recent: OrderedDict[
            tuple[str, bytes], tuple[list[QueueItem], list[float], list[dict[str, Any]]]
        ] = OrderedDict()
        self._recent_lock = threading.Lock()
        # Hashes of recent bodies: only a body seen before is remembered in `_recent`, so
        # distinct alerts do not keep their payloads alive (and in the collector's older
        # generations) for the next 256 posts. Ints, not tracked by the collector.
        self._seen: OrderedDict[int, None] = OrderedDict()
        self.dispatcher = Dispatcher(
            self.queue,
            start_run,
            workers=workers,
            poll_interval=poll_interval,
            on_started=self._started,
            on_failed=self._failed,
            run_limit=config.config.runner.max_concurrent_runs if running else None,
            running=running,
        )
        self.queue.on_queued = self.dispatcher.notify

    def _started(self, request: StartRequest) -> None:
        self.metrics.inc("irbook_webhook_runs_started_total", source=request.source)

    def _failed(self, request: StartRequest, error: str) -> None:
        self.metrics.inc("irbook_webhook_runs_failed_total", source=request.source)

    def start(self) -> None:
        if self.dispatch:
            self.dispatcher.start()

    def stop(self) -> None:
        self.dispatcher.stop()
        self.queue.close()
        self.replay.close()
        with self._replay_lock:
            connections, self._replay_dbs = self._replay_dbs, []
        for db in connections:
            db.close()
        self._replay_local = threading.local()

    # -- pieces the HTTP layer calls in order ------------------------------------------

    def reject(self, source: str, reason: str, status: int, message: str) -> Answer:
        self.metrics.inc("irbook_webhook_rejected_total", source=source, reason=reason)
        return Answer(status, {"error": message, "reason": reason})

    def _reader(self) -> Any:
        """This thread's read connection to the alert store (replays, stored alerts);
        on PostgreSQL, one borrowed from the pool per statement."""
        if self.queue.dialect == "postgresql":
            return self.queue.reader()
        db: sqlite3.Connection | None = getattr(self._replay_local, "db", None)
        if db is None:
            db = sqlite3.connect(
                self.replay.path, timeout=60, isolation_level=None, check_same_thread=False
            )
            self._replay_local.db = db
            with self._replay_lock:
                self._replay_dbs.append(db)
        return db

    def _replayed(self, source: str, key: str, now: float) -> bool:
        """Whether the delivery was already accepted, without recording it.

        Recording waits until the alert is queued (`ReplayGuard.seen_before`), so a post
        that failed half-way can be retried by its sender.
        """
        db = self._reader()
        row = db.execute(
            "SELECT 1 FROM webhook_replay WHERE source = ? AND delivery_id = ? AND seen_at > ?",
            (source, key, now - self.replay.window),
        ).fetchone()
        return row is not None

    def process(
        self, name: str, headers: Mapping[str, str], body: bytes, content_type: str | None
    ) -> Answer:
        """Everything after the body is read: auth, parse, normalize, match, enqueue.

        The blocking form of what the HTTP layer does with `prepare`, the queue's
        `enqueue_async` and `finish`.
        """
        step = self.prepare(name, headers, body, content_type)
        if isinstance(step, Answer):
            return step
        if isinstance(step, DeadLetter):
            self.queue.dead_letter(
                step.source, step.reason, step.body, path=step.path, limit=step.limit
            )
            return step.answer
        results = self.queue.enqueue(
            step.items,
            windows=step.windows,
            now=step.now,
            also=self.recorder(step),
            locks=self.locks(step),
        )
        return self.finish(step, results)

    def prepare(
        self, name: str, headers: Mapping[str, str], body: bytes, content_type: str | None
    ) -> Answer | DeadLetter | Prepared:
        """Auth, parse, normalize and match: everything but the write.

        Returns a final answer, a dead letter to keep before answering, or the alerts to
        commit before the 202. Only CPU work and one indexed read (the replay check), so
        the HTTP layer runs it on the event loop for ordinary bodies.
        """
        src = self.sources[name]
        now = self.clock()
        try:
            verified = src.verifier.verify(headers, body, now)
        except AuthError as exc:
            # Logged by the HTTP layer, within the sender address's failure budget.
            return self.reject(name, exc.reason, 401, "authentication failed")
        if verified.replay_key is not None and self._replayed(name, verified.replay_key, now):
            self.metrics.inc("irbook_webhook_replays_total", source=name)
            return Answer(200, {"status": "duplicate"})
        # After authentication: only a sender holding the secret spends the source's rate.
        wait = self.limiters[name].check(name, time.monotonic())
        step = self._checked(name, src, body, content_type, now, verified.replay_key)
        if wait is None:
            return step
        if isinstance(step, Prepared) and self._all_stored(step):
            self.metrics.inc_source("irbook_webhook_duplicates_over_rate_total", name)
            return replace(step, charged=False)
        answer = self.reject(name, "rate-limited", 429, "too many requests")
        return Answer(answer.status, answer.body, {"Retry-After": retry_after_header(wait)})

    def _checked(
        self,
        name: str,
        src: HookSource,
        body: bytes,
        content_type: str | None,
        now: float,
        replay_key: str | None,
    ) -> Answer | DeadLetter | Prepared:
        """`prepare` after authentication: media type, JSON, normalize and match."""
        if content_type is not None and not _is_json_type(content_type):
            return self.reject(name, "unsupported-media-type", 415, "send application/json")
        key = (name, body) if len(body) <= RECENT_BODY_MAX else None
        if key is not None:
            with self._recent_lock:
                known = self._recent.get(key)
                if known is not None:
                    self._recent.move_to_end(key)
            if known is not None:
                items, windows, skipped = known
                return Prepared(name, now, items, windows, skipped, replay_key)
        try:
            payload = _parse_json(body)
        except ValueError as exc:
            answer = self.reject(name, "bad-json", 400, f"body is not JSON: {exc}")
            return DeadLetter(name, f"bad JSON: {exc}", body, None, src.config.max_body, answer)
        step = self._alerts(name, src, payload, body, now, replay_key)
        # Only outcomes without side effects to repeat (an unmatched alert is counted).
        if (
            key is not None
            and isinstance(step, Prepared)
            and all(skip["reason"] == "resolved" for skip in step.skipped)
            and self._seen_before(hash(key))
        ):
            with self._recent_lock:
                self._recent[key] = (step.items, step.windows, step.skipped)
                if len(self._recent) > RECENT_BODIES:
                    self._recent.popitem(last=False)
        return step

    def _all_stored(self, step: Prepared) -> bool:
        """Whether every alert of `step` would attach to a stored row (count + 1).

        A read of the queue's rows, as `AlertQueue` decides in its write: a row waiting
        or starting, or first seen within the window. A row whose window has passed but
        whose run is still active is not counted here, so such a post is answered 429.
        """
        if not step.items:
            return False
        keys = [alert_key(item.source, item.playbook_id, item.alert.id) for item in step.items]
        latest = latest_rows(self._reader(), keys)
        for key, window in zip(keys, step.windows, strict=True):
            row = latest.get(key)
            if row is None or not in_window(row, window, step.now):
                return False
        return True

    def _seen_before(self, digest: int) -> bool:
        """Whether a body with this hash came recently; records that it came now."""
        with self._recent_lock:
            if digest in self._seen:
                self._seen.move_to_end(digest)
                return True
            self._seen[digest] = None
            if len(self._seen) > SEEN_BODIES:
                self._seen.popitem(last=False)
            return False

    @staticmethod
    def locks(step: Prepared) -> tuple[str, ...]:
        """What `recorder` writes, for the queue to lock in order (PostgreSQL)."""
        key = step.replay_key
        return () if key is None else (f"replay/{step.source}/{key}",)

    def recorder(self, step: Prepared) -> Callable[[Any], None] | None:
        """What records the delivery id, in the transaction that queues its alerts."""
        key = step.replay_key
        if key is None:
            return None
        replay, name, now = self.replay, step.source, step.now

        def record(db: Any) -> None:
            replay.record(db, name, key, now)

        return record

    def _alerts(
        self,
        name: str,
        src: HookSource,
        payload: Any,
        body: bytes,
        now: float,
        replay_key: str | None,
    ) -> Answer | DeadLetter | Prepared:
        limit = src.config.max_body
        normalize = NORMALIZERS[src.config.format]
        try:
            if plain_json_body(body):
                # Parsed by us from a body that cannot hold anything the payload check
                # refuses (see plain_json_body): skip its walk over the whole payload.
                with vouched(payload):
                    alerts = normalize(payload, src.config.options)
            else:
                alerts = normalize(payload, src.config.options)
        except NormalizeError as exc:
            self.metrics.inc("irbook_webhook_rejected_total", source=name, reason="normalize-error")
            answer = Answer(422, {"error": exc.reason, "path": exc.path})
            return DeadLetter(name, exc.reason, body, exc.path, limit, answer)
        except (RecursionError, ValueError, TypeError) as exc:
            # Normalizers promise NormalizeError only; a slip is still the sender's 422.
            log.warning("webhook %s: normalizer failed on a post (%s)", name, type(exc).__name__)
            reason = f"normalizer failed: {type(exc).__name__}"
            self.metrics.inc("irbook_webhook_rejected_total", source=name, reason="normalize-error")
            answer = Answer(422, {"error": "payload could not be normalized", "path": "$"})
            return DeadLetter(name, reason, body, "$", limit, answer)
        items: list[QueueItem] = []
        windows: list[float] = []
        skipped: list[dict[str, Any]] = []
        origin = src.config.alert_source(name)
        for alert in alerts:
            alert.source, alert.format = origin, src.config.format
            if is_resolved(alert):
                skipped.append({"alert_id": alert.id, "reason": "resolved"})
                continue
            data = _context(alert)
            matched = [
                pb for pb in self._per_source[name] if any(matches(t, data) for t in pb.triggers)
            ]
            if not matched:
                self.metrics.inc("irbook_webhook_alerts_unmatched_total", source=name)
                skipped.append({"alert_id": alert.id, "reason": "no playbook matched"})
                continue
            mode = "dry-run" if is_sample(alert) else src.config.mode
            text = _alert_json(data)  # once, whatever the number of playbooks
            for pb in matched:
                items.append(QueueItem(name, alert, pb.id, pb.path, mode, text))
                windows.append(src.config.dedup_window)
        if not items:
            return Answer(200, {"status": "no-match", "queued": [], "skipped": skipped})
        return Prepared(name, now, items, windows, skipped, replay_key)

    def finish(self, step: Prepared, results: list[Enqueued]) -> Answer:
        """The 202, once `step`'s alerts are committed."""
        name = step.source
        queued = []
        fresh = False
        for item, result in zip(step.items, results, strict=True):
            if result.status == "queued":
                fresh = True
                counter = "irbook_webhook_alerts_queued_total"
            else:
                counter = "irbook_webhook_alerts_deduplicated_total"
            self.metrics.inc_source(counter, name)
            queued.append(
                {
                    "alert_id": item.alert.id,
                    "playbook_id": result.playbook_id,
                    "run_id": result.run_id,
                    "mode": result.mode,
                    "status": result.status,
                    "count": result.count,
                }
            )
        if step.charged and not fresh:
            # Only duplicates of stored alerts: they do not spend the source's rate.
            self.limiters[name].refund(name)
        return Answer(202, {"status": "accepted", "queued": queued, "skipped": step.skipped})

    def gauges(self) -> dict[str, float]:
        try:
            depth = float(self.queue.depth())
        except dbmod.errors():
            depth = -1.0
        return {
            "irbook_webhook_queue_depth": depth,
            "irbook_webhook_starts_in_progress": float(self.dispatcher.busy),
        }


# ASGI's three, spelled here so that importing this module does not import Starlette.
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
_JSON_HEADER = (b"content-type", b"application/json")
_QUERY = QUERY.encode("ascii")


class _Headers(Mapping[str, str]):
    """An ASGI request's headers as the receiver reads them: every (name, value) pair,
    names lower-case (ASGI servers send them so), each decoded once.

    Repeated names are kept (`items()`), since a verifier refuses a request whose copies
    of a header disagree; `get` and `[]` give the first.
    """

    __slots__ = ("_pairs",)

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        self._pairs = [
            (key.decode("latin-1").lower(), value.decode("latin-1")) for key, value in raw
        ]

    def __getitem__(self, name: str) -> str:
        wanted = name.lower()
        for key, value in self._pairs:
            if key == wanted:
                return value
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter([key for key, _ in self._pairs])

    def __len__(self) -> int:
        return len(self._pairs)

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        return list(self._pairs)


async def send_json(send: Send, answer: Answer) -> None:
    """Send `answer` as Starlette's JSONResponse would (compact UTF-8 JSON)."""
    try:
        body = orjson.dumps(answer.body)
    except TypeError:  # an integer beyond 64 bits, say: the standard library writes it
        body = json.dumps(
            answer.body, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode("utf-8")
    headers = [(b"content-length", str(len(body)).encode("ascii")), _JSON_HEADER]
    for key, value in answer.headers.items():
        headers.append((key.lower().encode("latin-1"), value.encode("latin-1")))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _AsgiEndpoint:
    """Wraps an ASGI callable so that Starlette's Route mounts it as-is (Route wraps plain
    functions in its request/response adapter)."""

    def __init__(self, handler: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handler(scope, receive, send)


class _HookFront:
    """The receiver's ASGI app: `POST /hooks/{source}` straight to its handler, anything
    else (and a request under a root path) through the Starlette app behind it."""

    def __init__(
        self, app: Any, hook: Callable[[Scope, Receive, Send, str], Awaitable[None]]
    ) -> None:
        self.app = app
        self.hook = hook

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            path: str = scope["path"]
            if path.startswith("/hooks/"):
                name = path[7:]
                if name and "/" not in name:
                    await self.hook(scope, receive, send, name)
                    return
        if scope["type"] == "http" and scope["path"].startswith("/hooks/"):
            # A mistyped hook URL (a trailing slash, a GET) still must not log a url_token.
            scope["query_string"] = b""
        await self.app(scope, receive, send)


def _context(alert: Any) -> dict[str, Any]:
    """`alert.as_context()` without copying `raw`, which is already plain JSON data (the
    parsed body, or part of it): matching reads it, never changes it."""
    data: dict[str, Any] = alert.model_dump(mode="json", exclude={"raw"})
    data["raw"] = alert.raw
    return data


def _alert_json(context: dict[str, Any]) -> str:
    """`alert.model_dump_json()` from its `_context`: the same JSON data, made by orjson
    (the context is already plain JSON data). Anything orjson refuses, such as an integer
    beyond 64 bits in `raw`, is made by the standard library instead."""
    try:
        return orjson.dumps(context).decode("utf-8")
    except TypeError:
        return json.dumps(context, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _is_json_type(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    if not kind:
        return True
    return kind in JSON_TYPES or (kind.startswith("application/") and kind.endswith("+json"))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Every byte to a space but digits, which become "d": a run of digits in a body is a run
# of "d"s in its translation.
_DIGITS = bytes(0x64 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
# orjson holds integers from -2**63 to 2**64 - 1; any integer outside has 19 digits or more.
_LONG_NUMBER = b"d" * 19


def _parse_json(body: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, bounded nesting (RecursionError is a 400).

    orjson first, where it reads the body exactly as the standard library would: it is as
    strict and about twice as fast, but turns an integer beyond 64 bits into a float
    (silently changing an id), so a body with a run of 19 digits anywhere skips it.
    Whatever orjson refuses (a byte-order mark, nesting deeper than 1024, real errors) is
    parsed again by the standard library, whose outcome and messages are the reference.
    """
    if _LONG_NUMBER not in body.translate(_DIGITS):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    try:
        text = body.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    if not text.strip():
        raise ValueError("empty body")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "irbook receiver",
        "version": "1",
        "description": "SIEM webhooks that start incident-response playbook runs, and Slack"
        " approval callbacks.",
    },
    "paths": {
        "/hooks/{source}": {
            "post": {
                "summary": "Deliver alerts from a configured source",
                "description": "The body is the source's native payload (format configured per"
                " source). Authentication is the source's configured scheme over the raw body.",
                "parameters": [
                    {
                        "name": "source",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]*$"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {}}},
                },
                "responses": {
                    "200": {
                        "description": "A replayed delivery, or alerts no playbook matched",
                        "content": {"application/json": {"schema": {"$ref": "#/$defs/Result"}}},
                    },
                    "202": {
                        "description": "Alerts durably queued (or attached to a queued run)",
                        "content": {"application/json": {"schema": {"$ref": "#/$defs/Result"}}},
                    },
                    "400": {"$ref": "#/components/responses/Error"},
                    "401": {"$ref": "#/components/responses/Error"},
                    "404": {"$ref": "#/components/responses/Error"},
                    "408": {"$ref": "#/components/responses/Error"},
                    "413": {"$ref": "#/components/responses/Error"},
                    "415": {"$ref": "#/components/responses/Error"},
                    "422": {
                        "description": "The payload does not fit the source's format",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "error": {"type": "string"},
                                        "path": {"type": "string"},
                                    },
                                    "required": ["error", "path"],
                                }
                            }
                        },
                    },
                    "429": {
                        "description": "Rate limited (the source's rate, or the address's"
                        " failed_auth budget); retry after the given seconds",
                        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                    },
                },
            }
        },
        "/slack/interactions": {
            "post": {
                "summary": "Slack interactivity callbacks (approval buttons)",
                "responses": {"200": {"description": "Handled"}},
            }
        },
        "/healthz": {"get": {"responses": {"200": {"description": "ok"}}}},
        "/metrics": {
            "get": {
                "description": "Served only when configured (metrics: token_env or public).",
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "401": {"description": "The configured bearer token is missing or wrong"},
                    "404": {"description": "Metrics are off"},
                },
            }
        },
        "/openapi.json": {"get": {"responses": {"200": {"description": "This document"}}}},
    },
    "components": {
        "responses": {
            "Error": {
                "description": "Refused",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "error": {"type": "string"},
                                "reason": {"type": "string"},
                            },
                            "required": ["error"],
                        }
                    }
                },
            }
        },
        "schemas": {
            "Result": {
                "type": "object",
                "properties": {
                    "status": {"enum": ["accepted", "no-match", "duplicate"]},
                    "queued": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "alert_id": {"type": "string"},
                                "playbook_id": {"type": "string"},
                                "run_id": {"type": "string"},
                                "mode": {"enum": ["live", "dry-run"]},
                                "status": {"enum": ["queued", "deduplicated"]},
                                "count": {"type": "integer"},
                            },
                        },
                    },
                    "skipped": {"type": "array", "items": {"type": "object"}},
                },
                "required": ["status"],
            }
        },
    },
}


def create_app(
    *,
    slack: SlackInteractions | None = None,
    max_body: int = MAX_BODY,
    hooks: WebhookReceiver | None = None,
    config: LoadedConfig | None = None,
) -> Any:
    """The ASGI app. With `hooks`, its dispatcher runs for the app's lifetime.

    The receiver-wide settings (failed_auth, body_timeout, metrics) come from the hooks'
    configuration, else from `config` (a receiver with Slack approvals only); without
    either, the defaults hold and `/metrics` is off.
    """
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    if hooks is not None:
        config = hooks.config
    settings = config.config if config is not None else ReceiverConfig()
    metrics_token = config.metrics_token if config is not None else None
    counters = hooks.metrics if hooks is not None else Metrics()
    deadlines = BodyDeadlines(settings.body_timeout)
    # Per client address: what failed authentication may cost before it is answered 429.
    failures = RateLimiter(settings.failed_auth.per_second, settings.failed_auth.burst)

    def auth_failed(where: str, client: str, reason: str) -> Answer | None:
        """Spend the address's failure budget: None within it (answer 401, logged),
        else the 429 to answer instead, unlogged, so a flood of junk fills no log."""
        wait = failures.check(client, time.monotonic())
        if wait is None:
            log.warning("%s: refused (%s) from %s", where, reason, client or "?")
            return None
        return Answer(
            429,
            {"error": "too many failed requests", "reason": "auth-throttled"},
            {"Retry-After": retry_after_header(wait)},
        )

    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def read_body(request: Request) -> bytes | None:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > max_body):
            return None
        try:
            return await aread_limited(request.stream(), max_body)
        except BodyTooLarge:
            return None

    async def slack_interactions(request: Request) -> JSONResponse:
        if slack is None:
            return JSONResponse({"error": "Slack approvals are not configured"}, status_code=404)
        counters.inc("irbook_slack_requests_total")
        try:
            body = await deadlines.read(read_body(request))
        except BodyTimeout:
            counters.inc("irbook_slack_rejected_total", reason="body-timeout")
            return JSONResponse(
                {"error": "request body not received in time"},
                status_code=408,
                headers={"Connection": "close"},
            )
        if body is None:
            counters.inc("irbook_slack_rejected_total", reason="too-large")
            return JSONResponse({"error": "body too large"}, status_code=413)
        answer = await run_in_threadpool(slack.handle, dict(request.headers), body)
        reason = answer.reason
        if answer.status == 401 and reason is not None:
            client = request.client.host if request.client is not None else ""
            throttled = auth_failed("slack interactions", client, reason)
            if throttled is not None:
                counters.inc("irbook_slack_rejected_total", reason="auth-throttled")
                return JSONResponse(throttled.body, status_code=429, headers=throttled.headers)
        if reason is not None:
            counters.inc("irbook_slack_rejected_total", reason=reason)
        return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)

    async def answer_hook(
        name: str, headers: Mapping[str, str], chunks: AsyncIterator[bytes], client: str = ""
    ) -> Answer:
        """Everything `POST /hooks/{source}` answers, whatever carried the request."""
        started = time.perf_counter()
        try:
            answer = await handle_hook(name, headers, chunks, client)
        except Exception:
            # The body is never logged: it may hold credentials the alert is about.
            log.exception(
                "webhook %s: unexpected error", name if hooks and name in hooks.sources else "?"
            )
            answer = Answer(400, {"error": "the request could not be processed"})
            if hooks is not None:
                source = name if name in hooks.sources else ""
                hooks.metrics.inc("irbook_webhook_rejected_total", source=source, reason="error")
        if hooks is not None:
            hooks.metrics.observe(time.perf_counter() - started)
        return answer

    async def handle_hook(
        name: str, headers: Mapping[str, str], chunks: AsyncIterator[bytes], client: str
    ) -> Answer:
        if hooks is None or name not in hooks.sources:
            if hooks is not None:
                hooks.metrics.inc(
                    "irbook_webhook_rejected_total", source="", reason="unknown-source"
                )
            return Answer(404, {"error": "unknown source"})
        src = hooks.sources[name]
        limit = src.config.max_body
        hooks.metrics.inc_source("irbook_webhook_received_total", name)
        try:
            check_content_length(headers, limit)
        except BodyTooLarge:
            return hooks.reject(name, "too-large", 413, f"body over {limit} bytes")
        except BadContentLength:
            return hooks.reject(name, "bad-content-length", 400, "bad Content-Length")
        # The source's rate is spent after authentication, in `prepare`: spent here,
        # before anything is known of the sender, junk would lock real alerts out.
        try:
            body = await deadlines.read(aread_limited(chunks, limit))
        except BodyTooLarge:
            return hooks.reject(name, "too-large", 413, f"body over {limit} bytes")
        except BodyTimeout:
            answer = hooks.reject(name, "body-timeout", 408, "request body not received in time")
            return Answer(answer.status, answer.body, {"Connection": "close"})
        except ClientDisconnect:
            return hooks.reject(name, "disconnected", 400, "client disconnected")
        content_type = headers.get("content-type")
        try:
            # Ordinary posts are checked on the event loop: the work is a fraction of a
            # millisecond, less than a hop to the thread pool and back. Big bodies (parse
            # and walk time grows with size) go to a thread so they cannot stall the loop.
            if len(body) <= INLINE_BODY:
                step = hooks.prepare(name, headers, body, content_type)
            else:
                step = await run_in_threadpool(hooks.prepare, name, headers, body, content_type)
            if isinstance(step, Answer):
                if step.status == 401:
                    throttled = auth_failed(f"webhook {name}", client, step.body["reason"])
                    if throttled is not None:
                        hooks.metrics.inc_source("irbook_webhook_auth_throttled_total", name)
                        return throttled
                return step
            if isinstance(step, DeadLetter):
                await hooks.queue.dead_letter_async(
                    step.source, step.reason, step.body, path=step.path, limit=step.limit
                )
                return step.answer
            # Group commit: the writer thread commits this post with the others waiting,
            # and the 202 is built only after that commit.
            results = await hooks.queue.enqueue_async(
                step.items,
                windows=step.windows,
                now=step.now,
                also=hooks.recorder(step),
                locks=hooks.locks(step),
            )
            return hooks.finish(step, results)
        except dbmod.busy_errors():
            log.exception("webhook %s: the alert store is unavailable", name)
            hooks.metrics.inc("irbook_webhook_rejected_total", source=name, reason="store-busy")
            return Answer(503, {"error": "try again later"}, {"Retry-After": "5"})

    async def hook(scope: Scope, receive: Receive, send: Send, name: str) -> None:
        """`POST /hooks/{source}` as a bare ASGI handler.

        This is the receiver's hot path, so it skips Starlette's request, response and
        middleware objects (about a third of a bare endpoint's cost per request, measured
        in bench/receiver_throughput.py); what it does is what the route would.
        """

        async def chunks() -> AsyncIterator[bytes]:
            # The body as ASGI delivers it, as Starlette's `request.stream()` would.
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnect()
                yield message.get("body", b"")
                if not message.get("more_body", False):
                    return

        raw = scope["headers"]
        query = scope.get("query_string")
        if query:
            # It may hold a url_token source's token: out of the scope, so that uvicorn's
            # access log (path and query) never prints it; the verifier gets it as QUERY.
            scope["query_string"] = b""
            raw = [*raw, (_QUERY, query)]
        peer = scope.get("client")
        answer = await answer_hook(name, _Headers(raw), chunks(), peer[0] if peer else "")
        await send_json(send, answer)

    async def hook_route(scope: Scope, receive: Receive, send: Send) -> None:
        # The same handler, reached through Starlette's router (a root path, say).
        await hook(scope, receive, send, str(scope.get("path_params", {}).get("source", "")))

    async def metrics(request: Request) -> Response:
        # Off unless configured: the page names every source and how each is refused.
        if settings.metrics is None:
            return PlainTextResponse("metrics are off (see metrics: in the configuration)", 404)
        if metrics_token is not None:
            given = request.headers.get("authorization", "").encode("utf-8")
            if not hmac.compare_digest(given, f"Bearer {metrics_token}".encode()):
                client = request.client.host if request.client is not None else ""
                throttled = auth_failed("metrics", client, "bad-token")
                if throttled is not None:
                    return JSONResponse(throttled.body, 429, headers=throttled.headers)
                return PlainTextResponse(
                    "a bearer token is required", 401, headers={"WWW-Authenticate": "Bearer"}
                )
        gauges = hooks.gauges if hooks is not None else dict
        text = await run_in_threadpool(lambda: counters.render(gauges()))
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(OPENAPI)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        # What is loaded by now (modules, models, playbooks) lives as long as the server:
        # out of the collector's sight, a full collection under load takes about 10 ms
        # instead of 25-30 (bench/receiver_throughput.py), which was most of its p99.
        gc.collect()
        gc.freeze()
        watcher = asyncio.create_task(deadlines.run())
        if hooks is not None:
            hooks.start()
        try:
            yield
        finally:
            watcher.cancel()
            if hooks is not None:
                await run_in_threadpool(hooks.stop)

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            Route("/hooks/{source}", _AsgiEndpoint(hook_route), methods=["POST"]),
            Route("/slack/interactions", slack_interactions, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    return _HookFront(app, hook)


__all__ = [
    "MAX_BODY",
    "OPENAPI",
    "Answer",
    "DeadLetter",
    "HookPlaybook",
    "Metrics",
    "Prepared",
    "WebhookReceiver",
    "create_app",
    "load_playbooks",
]
