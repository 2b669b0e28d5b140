"""The pieces of crash recovery without processes: the dispatcher's bound on runs going on,
and a crashed run's alert started again in its queue row
(tests/irbook_flows/test_crash_recovery.py kills a real `irbook serve`)."""

from __future__ import annotations

import threading
from pathlib import Path

from irbook.triggers.dispatch import Dispatcher, StartRequest
from irbook.triggers.queue import AlertQueue
from tests.irbook.triggers.receiver.test_queue import item
from tests.support.receiver import wait_for


class HeldRuns:
    """A starter whose runs go on until released, like the embedded runner's threads."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.live = 0
        self.most = 0
        self.lock = threading.Lock()

    def __call__(self, request: StartRequest) -> str:
        with self.lock:
            self.started.append(request.run_id)
            self.live += 1
            self.most = max(self.most, self.live)
        return request.run_id

    def running(self) -> int:
        with self.lock:
            return self.live

    def end_all(self) -> None:
        with self.lock:
            self.live = 0


def test_beyond_the_run_limit_alerts_stay_queued_until_runs_end(tmp_path: Path) -> None:
    queue = AlertQueue(tmp_path / "q.db")
    runs = HeldRuns()
    dispatcher = Dispatcher(
        queue, runs, workers=4, poll_interval=0.02, run_limit=3, running=runs.running
    )
    queue.on_queued = dispatcher.notify
    dispatcher.start()
    try:
        queue.enqueue([item(f"a-{n}") for n in range(10)], windows=[60.0] * 10)
        assert wait_for(lambda: len(runs.started) == 3)
        assert not wait_for(lambda: len(runs.started) > 3, timeout=0.5)
        assert queue.depth() == 7  # waiting in the store, not dropped
        runs.end_all()
        dispatcher.notify()
        assert wait_for(lambda: len(runs.started) == 6)
        runs.end_all()
        dispatcher.notify()
        assert wait_for(lambda: len(runs.started) == 9)
        runs.end_all()
        dispatcher.notify()
        assert wait_for(lambda: len(runs.started) == 10 and queue.depth() == 0)
    finally:
        dispatcher.stop()
        queue.close()
    assert runs.most == 3
    assert len(set(runs.started)) == 10


def test_a_crashed_runs_alert_restarts_in_its_row_and_repeats_follow(tmp_path: Path) -> None:
    queue = AlertQueue(tmp_path / "q.db")
    first = queue.enqueue([item("x")], windows=[60.0], now=1000.0)[0]
    # Claimed but not yet marked started: the dispatcher has it in hand.
    assert queue.restart_run(first.run_id, "wh-new", 2) == ("pending", first.run_id)
    queue.mark_started(first.row_id)
    assert queue.restart_run(first.run_id, "wh-new", 2) == ("restarted", "wh-new")
    # A second reaper asking about the same crashed run gets the same new run.
    assert queue.restart_run(first.run_id, "wh-other", 2) == ("restarted", "wh-new")
    again = queue.enqueue([item("x")], windows=[60.0], now=1001.0)[0]
    assert (again.status, again.run_id) == ("deduplicated", "wh-new")
    (row,) = queue.rows()
    assert (row["status"], row["restarts"], row["count"]) == ("queued", 1, 2)
    queue.mark_started(row["id"])
    # A crash before any step began is not held against the alert; one while running is.
    assert queue.restart_run("wh-new", "wh-free", 1, counted=False) == ("restarted", "wh-free")
    queue.mark_started(row["id"])
    assert queue.restart_run("wh-free", "wh-third", 1) == ("exhausted", "wh-free")
    assert queue.restart_run("wh-cli-run", "wh-x", 2) == ("none", "wh-cli-run")
    queue.close()
