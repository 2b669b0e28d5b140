"""Group commit: concurrent writes share transactions, and a 202 always means committed."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from irbook.model.alert import Alert
from irbook.triggers.app import WebhookReceiver, create_app
from irbook.triggers.queue import AlertQueue, QueueItem
from tests.support.receiver import SECRETS, body_of, wait_for


def item(alert_id: str) -> QueueItem:
    return QueueItem("gd", Alert(id=alert_id, source="guardduty"), "cred-exfil", "/p.yaml", "live")


def stored_ids(path: Path) -> set[str]:
    """What a fresh connection (another process, after a crash) finds in the file."""
    db = sqlite3.connect(path)
    try:
        return {row[0] for row in db.execute("SELECT alert_id FROM webhook_alerts")}
    finally:
        db.close()


class Blocker:
    """A write that holds the writer until released, so the next writes queue up and are
    taken as one batch."""

    def __init__(self, queue: AlertQueue) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=queue.write, args=(self._work,), daemon=True)

    def _work(self, db: sqlite3.Connection, batch: Any) -> None:
        self.entered.set()
        assert self.release.wait(30)

    def __enter__(self) -> Blocker:
        self.thread.start()
        assert self.entered.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.thread.join(30)


def pending(queue: AlertQueue) -> int:
    return len(queue._pending)


def test_concurrent_enqueues_are_all_durable_and_share_commits(tmp_path: Path) -> None:
    queue = AlertQueue(tmp_path / "q.db")

    async def main() -> list[Any]:
        return await asyncio.gather(
            *[queue.enqueue_async([item(f"a-{i}")], windows=[60.0]) for i in range(300)]
        )

    try:
        results = asyncio.run(main())
        assert all(r[0].status == "queued" for r in results)
        assert len({r[0].run_id for r in results}) == 300
        # Every caller was answered after its commit: a fresh connection sees every row.
        assert stored_ids(tmp_path / "q.db") == {f"a-{i}" for i in range(300)}
        assert queue.batched_jobs == 300
        assert queue.batches < 300  # shared transactions
    finally:
        queue.close()


def test_copies_in_one_batch_make_one_row_with_their_count(tmp_path: Path) -> None:
    queue = AlertQueue(tmp_path / "q.db")
    try:
        with Blocker(queue):
            done: list[Any] = []
            threads = [
                threading.Thread(
                    target=lambda: done.append(queue.enqueue([item("storm")], windows=[60.0]))
                )
                for _ in range(20)
            ]
            for thread in threads:
                thread.start()
            assert wait_for(lambda: pending(queue) == 20)
        for thread in threads:
            thread.join(30)
        statuses = sorted(result[0].status for result in done)
        assert statuses == ["deduplicated"] * 19 + ["queued"]
        assert sorted(result[0].count for result in done) == list(range(1, 21))
        (row,) = queue.rows()
        assert row["count"] == 20
    finally:
        queue.close()


def test_a_failed_batch_fails_every_write_in_it_and_keeps_nothing(tmp_path: Path) -> None:
    queue = AlertQueue(tmp_path / "q.db")
    errors: list[BaseException] = []
    lock = threading.Lock()

    def enqueue(alert_id: str) -> None:
        try:
            queue.enqueue([item(alert_id)], windows=[60.0])
        except sqlite3.OperationalError as exc:
            with lock:
                errors.append(exc)

    def disk_full(db: sqlite3.Connection, batch: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    try:
        queue.enqueue([item("before")], windows=[60.0])
        with Blocker(queue):
            threads = [threading.Thread(target=enqueue, args=(f"b-{i}",)) for i in range(5)]
            for thread in threads:
                thread.start()
            failing = threading.Thread(target=lambda: enqueue_work(queue, disk_full, errors))
            failing.start()
            assert wait_for(lambda: pending(queue) == 6)
        for thread in [*threads, failing]:
            thread.join(30)
        assert len(errors) == 6  # the five enqueues and the failing write itself
        assert stored_ids(tmp_path / "q.db") == {"before"}  # accepted before: still there
        # The store works again for the next batch.
        assert queue.enqueue([item("after")], windows=[60.0])[0].status == "queued"
        assert stored_ids(tmp_path / "q.db") == {"before", "after"}
    finally:
        queue.close()


def enqueue_work(queue: AlertQueue, work: Any, errors: list[BaseException]) -> None:
    try:
        queue.write(work)
    except sqlite3.OperationalError as exc:
        errors.append(exc)


def test_a_broken_write_fails_alone(tmp_path: Path) -> None:
    queue = AlertQueue(tmp_path / "q.db")
    failures: list[BaseException] = []

    def broken(db: sqlite3.Connection, batch: Any) -> None:
        raise ValueError("a bug in one caller's write")

    def run_broken() -> None:
        try:
            queue.write(broken)
        except ValueError as exc:
            failures.append(exc)

    try:
        with Blocker(queue):
            threads = [
                threading.Thread(
                    target=queue.enqueue, args=([item(f"c-{i}")],), kwargs={"windows": [60.0]}
                )
                for i in range(4)
            ]
            threads.append(threading.Thread(target=run_broken))
            for thread in threads:
                thread.start()
            assert wait_for(lambda: pending(queue) == 5)
        for thread in threads:
            thread.join(30)
        assert len(failures) == 1
        assert stored_ids(tmp_path / "q.db") == {f"c-{i}" for i in range(4)}
    finally:
        queue.close()


def test_bookkeeping_writes_commit_and_close_drains(tmp_path: Path) -> None:
    queue = AlertQueue(tmp_path / "q.db")
    (first,) = queue.enqueue([item("d-1")], windows=[60.0])
    (claimed,) = queue.claim(5)
    assert claimed.run_id == first.run_id
    assert claimed.attempts == 1
    queue.mark_started(claimed.row_id, "flow-1")
    queue.close()
    again = AlertQueue(tmp_path / "q.db")
    try:
        (row,) = again.rows()
        assert (row["status"], row["started_ref"], row["attempts"]) == ("started", "flow-1", 1)
    finally:
        again.close()


def post_all(hooks: WebhookReceiver, bodies: list[bytes], token: str) -> list[httpx.Response]:
    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(hooks=hooks))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await asyncio.gather(
                *[
                    client.post("/hooks/gd", content=body, headers={"X-Irbook-Token": token})
                    for body in bodies
                ]
            )

    return asyncio.run(main())


def test_http_batch_failure_answers_503_to_every_post_in_it(
    hooks: WebhookReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = hooks.queue
    original = queue._transaction
    failed: list[int] = []

    def fail_once(db: sqlite3.Connection, jobs: list[Any]) -> int:
        if not failed and len(jobs) > 1:  # the posts' batch, not the blocker's
            failed.append(len(jobs))
            raise sqlite3.OperationalError("disk I/O error")
        return original(db, jobs)

    monkeypatch.setattr(queue, "_transaction", fail_once)
    bodies = [body_of(f"http-{i}") for i in range(6)]
    with Blocker(queue):
        # The blocker's own batch is already running; the posts queue up behind it.
        result: list[list[httpx.Response]] = []
        thread = threading.Thread(
            target=lambda: result.append(post_all(hooks, bodies, SECRETS["GD_TOKEN"]))
        )
        thread.start()
        assert wait_for(lambda: pending(queue) == 6)
    thread.join(30)
    (responses,) = result
    assert failed == [6]
    assert [r.status_code for r in responses] == [503] * 6
    assert all(r.headers["Retry-After"] == "5" for r in responses)
    assert stored_ids(tmp_path / "irbook.db") == set()
    # The senders retry; now every post is committed before its 202.
    again = post_all(hooks, bodies, SECRETS["GD_TOKEN"])
    assert [r.status_code for r in again] == [202] * 6
    assert stored_ids(tmp_path / "irbook.db") == {f"http-{i}" for i in range(6)}


def test_identical_posts_are_each_authenticated_and_counted(hooks: WebhookReceiver) -> None:
    body = body_of("same-body")
    first = post_all(hooks, [body] * 3, SECRETS["GD_TOKEN"])
    assert [r.status_code for r in first] == [202] * 3
    # The remembered body does not skip authentication.
    refused = post_all(hooks, [body], "wrong-token")
    assert [r.status_code for r in refused] == [401]
    again = post_all(hooks, [body], SECRETS["GD_TOKEN"])
    assert again[0].json()["queued"][0]["status"] == "deduplicated"
    (row,) = hooks.queue.rows(alert_id="same-body")
    assert row["count"] == 4
