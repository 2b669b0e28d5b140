"""The alert queue and dispatcher without HTTP: storms, windows, restarts, failures."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from irbook.model.alert import Alert
from irbook.triggers.dispatch import Dispatcher, StartRequest
from irbook.triggers.queue import AlertQueue, QueueItem
from tests.support.receiver import RecordingStarter, drain, wait_for


def item(alert_id: str = "a-1", playbook: str = "cred-exfil") -> QueueItem:
    return QueueItem("gd", Alert(id=alert_id, source="guardduty"), playbook, "/p.yaml", "live")


def test_storm_of_10000_copies_makes_one_row(tmp_path: Path) -> None:
    queue = AlertQueue(tmp_path / "q.db")
    with ThreadPoolExecutor(16) as pool:
        results = list(
            pool.map(lambda _: queue.enqueue([item()], windows=[3600.0])[0], range(10_000))
        )
    assert sum(r.status == "queued" for r in results) == 1
    assert len({r.run_id for r in results}) == 1
    (row,) = queue.rows()
    assert row["count"] == 10_000
    starter = RecordingStarter()
    drain(queue, starter, poll_interval=0.05)
    assert len(starter.calls) == 1


def test_window_and_playbook_separate_alerts(tmp_path: Path) -> None:
    queue = AlertQueue(tmp_path / "q.db")
    first = queue.enqueue([item()], windows=[60.0], now=1000.0)[0]
    queue.mark_started(first.row_id)
    assert queue.enqueue([item()], windows=[60.0], now=1059.0)[0].status == "deduplicated"
    later = queue.enqueue([item()], windows=[60.0], now=1061.0)[0]
    assert later.status == "queued" and later.run_id != first.run_id
    other = queue.enqueue([item(playbook="other")], windows=[60.0], now=1061.0)[0]
    assert other.status == "queued"


def test_active_run_keeps_attaching_after_the_window(tmp_path: Path) -> None:
    active: set[str] = set()
    queue = AlertQueue(tmp_path / "q.db", run_active=lambda run_id: run_id in active)
    first = queue.enqueue([item()], windows=[10.0], now=0.0)[0]
    queue.mark_started(first.row_id)
    active.add(first.run_id)
    assert queue.enqueue([item()], windows=[10.0], now=500.0)[0].run_id == first.run_id
    active.clear()
    assert queue.enqueue([item()], windows=[10.0], now=501.0)[0].run_id != first.run_id


def test_waiting_row_attaches_even_with_no_window(tmp_path: Path) -> None:
    queue = AlertQueue(tmp_path / "q.db")
    first = queue.enqueue([item()], windows=[0.0], now=0.0)[0]
    assert queue.enqueue([item()], windows=[0.0], now=9.0)[0].run_id == first.run_id


def test_restart_recovers_claimed_rows_and_refused_ids_count_as_started(tmp_path: Path) -> None:
    queue = AlertQueue(tmp_path / "q.db")
    queued = queue.enqueue([item("a"), item("b")], windows=[60.0, 60.0])
    claimed = queue.claim(10)  # a process claims both, starts "a", then dies
    assert len(claimed) == 2
    starter = RecordingStarter()
    starter(
        StartRequest(queued[0].run_id, "cred-exfil", "/p.yaml", item("a").alert, "live", "gd", "")
    )
    queue.close()

    again = AlertQueue(tmp_path / "q.db")
    drain(again, starter, poll_interval=0.05)
    assert sorted(c.alert.id for c in starter.calls) == ["a", "b"]
    assert {r["status"] for r in again.rows()} == {"started"}


def test_failing_starter_is_retried_then_marked_failed(tmp_path: Path) -> None:
    queue = AlertQueue(tmp_path / "q.db")
    calls: list[str] = []
    lock = threading.Lock()

    def broken(request: StartRequest) -> str:
        with lock:
            calls.append(request.run_id)
        raise RuntimeError("prefect is down")

    failed: list[str] = []
    dispatcher = Dispatcher(
        queue,
        broken,
        poll_interval=0.02,
        retry_delays=(0.0, 0.0),
        on_failed=lambda request, error: failed.append(error),
    )
    queue.enqueue([item()], windows=[60.0])
    dispatcher.start()
    try:
        assert wait_for(lambda: bool(failed))
    finally:
        dispatcher.stop()
    (row,) = queue.rows()
    assert row["status"] == "failed"
    assert "prefect is down" in row["error"]
    assert len(calls) == 3
    # A failed row does not swallow the next copy of the alert.
    assert queue.enqueue([item()], windows=[60.0])[0].status == "queued"


def test_dead_letter_body_is_capped(tmp_path: Path) -> None:
    queue = AlertQueue(tmp_path / "q.db")
    queue.dead_letter("gd", "bad", b"x" * 100, path="$.a", limit=10)
    (letter,) = queue.dead_letters()
    assert letter["body"] == b"x" * 10
    assert letter["path"] == "$.a"


def test_integrity_error_from_starter_is_already_started(tmp_path: Path) -> None:
    queue = AlertQueue(tmp_path / "q.db")

    def refuses(request: StartRequest) -> str:
        raise sqlite3.IntegrityError("UNIQUE constraint failed: runs.id")

    queue.enqueue([item()], windows=[60.0])
    drain(queue, refuses, poll_interval=0.02)
    assert queue.rows()[0]["status"] == "started"


def test_claimed_rows_held_for_a_worker_go_back_when_the_dispatcher_stops(
    tmp_path: Path,
) -> None:
    queue = AlertQueue(tmp_path / "q.db")
    queue.enqueue([item(f"held-{i}") for i in range(10)], windows=[60.0] * 10)
    entered, release = threading.Event(), threading.Event()
    started: list[str] = []

    def slow(request: StartRequest) -> str:
        started.append(request.alert.id)
        entered.set()
        assert release.wait(30)
        return request.run_id

    dispatcher = Dispatcher(queue, slow, workers=1, prefetch=8, poll_interval=0.02)
    dispatcher.start()
    try:
        assert entered.wait(30)
        # One claim took a batch: one row is being started, the others wait in memory.
        statuses = [row["status"] for row in queue.rows()]
        assert statuses.count("starting") == 8
        assert statuses.count("queued") == 2
    finally:
        release.set()
        dispatcher.stop()
    rows = {row["alert_id"]: row for row in queue.rows()}
    done = set(started)
    assert all(rows[alert_id]["status"] == "started" for alert_id in done)
    rest = [row for alert_id, row in rows.items() if alert_id not in done]
    # Held rows were never tried: back in the queue, their attempt not counted.
    assert rest and all((row["status"], row["attempts"]) == ("queued", 0) for row in rest)
    drain(queue, RecordingStarter(), poll_interval=0.02)
    assert {row["status"] for row in queue.rows()} == {"started"}


def test_new_rows_are_handed_to_a_running_dispatcher_and_recovered_after_a_crash(
    tmp_path: Path,
) -> None:
    queue = AlertQueue(tmp_path / "q.db")
    entered, release = threading.Event(), threading.Event()

    def blocked(request: StartRequest) -> str:
        entered.set()
        assert release.wait(30)
        return request.run_id

    dispatcher = Dispatcher(queue, blocked, workers=1, prefetch=4, poll_interval=0.02)
    dispatcher.start()
    try:
        queue.enqueue([item(f"hand-{i}") for i in range(6)], windows=[60.0] * 6)
        assert entered.wait(30)
        rows = {row["alert_id"]: row for row in queue.rows()}
        # The first `prefetch` new rows were inserted claimed; the rest wait in the queue.
        assert [rows[f"hand-{i}"]["status"] for i in range(6)] == ["starting"] * 4 + ["queued"] * 2
        assert rows["hand-0"]["attempts"] == 1
        # A process killed now: the handed rows are 'starting' in the file, and recovery
        # puts them back in the queue; the starter refuses the one that did start.
        crashed = AlertQueue(tmp_path / "q.db")
        try:
            assert crashed.recover() == 4
        finally:
            crashed.close()
    finally:
        release.set()
        dispatcher.stop()
    drain(queue, RecordingStarter(), poll_interval=0.02)
    assert {row["status"] for row in queue.rows()} == {"started"}


def test_handed_rows_start_with_no_claim(tmp_path: Path) -> None:
    queue = AlertQueue(tmp_path / "q.db")
    claimed: list[int] = []
    original = queue.claim

    def counting(limit: int, now: float | None = None) -> list[Any]:
        rows = original(limit, now)
        claimed.append(len(rows))
        return rows

    queue.claim = counting  # type: ignore[method-assign]
    starter = RecordingStarter()
    dispatcher = Dispatcher(queue, starter, prefetch=64, poll_interval=0.02)
    dispatcher.start()
    try:
        queue.enqueue([item(f"direct-{i}") for i in range(20)], windows=[60.0] * 20)
        assert wait_for(lambda: len(starter.calls) == 20)
        assert wait_for(lambda: queue.depth() == 0)
    finally:
        dispatcher.stop()
    assert sum(claimed) == 0  # every row came by hand-off
    assert {(row["status"], row["attempts"]) for row in queue.rows()} == {("started", 1)}
    assert sorted(call.alert.id for call in starter.calls) == sorted(
        f"direct-{i}" for i in range(20)
    )
