"""The alert queue, replay guard and dispatch on PostgreSQL, several receivers in one
process: what makes receivers on one URL behave as one (#16). Each AlertQueue here is what
one `irbook serve` holds; tests/irbook/triggers/receiver/test_scale_out.py runs real processes."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import psycopg
import pytest

from irbook.model.alert import Alert
from irbook.triggers.app import WebhookReceiver
from irbook.triggers.config import ConfigError, load_config
from irbook.triggers.dispatch import Dispatcher
from irbook.triggers.limits import ReplayGuard
from irbook.triggers.queue import AlertQueue, QueueItem
from tests.support.receiver import SECRETS, RecordingStarter, body_of, wait_for, write_fixture


def item(alert_id: str) -> QueueItem:
    alert = Alert.model_validate({"id": alert_id, "source": "gd", "title": "t", "severity": 8})
    return QueueItem("gd", alert, "cred-exfil", "/pb/cred-exfil.yaml", "dry-run")


def test_duplicates_from_two_receivers_at_once_make_one_row(pg_url: str) -> None:
    first, second = AlertQueue(pg_url), AlertQueue(pg_url)
    results = []
    lock = threading.Lock()

    def post(queue: AlertQueue) -> None:
        for _ in range(25):
            out = queue.enqueue([item("storm-1")], windows=[3600.0])
            with lock:
                results.extend(out)

    threads = [threading.Thread(target=post, args=(q,)) for q in (first, second) * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert len({r.row_id for r in results}) == 1
        assert [r.status for r in results].count("queued") == 1
        (row,) = second.rows()
        assert row["count"] == 100  # every copy counted, none lost
    finally:
        first.close()
        second.close()


def test_distinct_alerts_from_two_receivers_are_each_stored(pg_url: str) -> None:
    first, second = AlertQueue(pg_url), AlertQueue(pg_url)
    try:
        for i in range(20):
            (first if i % 2 else second).enqueue([item(f"distinct-{i}")], windows=[3600.0])
        assert len(first.rows()) == 20 and first.depth() == 20
    finally:
        first.close()
        second.close()


def test_claims_of_two_dispatchers_never_overlap(pg_url: str) -> None:
    first, second = AlertQueue(pg_url), AlertQueue(pg_url)
    try:
        first.enqueue([item(f"c-{i}") for i in range(40)], windows=[3600.0] * 40)
        taken: list[list[str]] = [[], []]

        def claim(index: int, queue: AlertQueue) -> None:
            while rows := queue.claim(3):
                taken[index].extend(r.row_id for r in rows)

        threads = [threading.Thread(target=claim, args=pair) for pair in enumerate((first, second))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not set(taken[0]) & set(taken[1])
        assert len(taken[0]) + len(taken[1]) == 40
        owners = {row["claimed_by"] for row in first.rows()}
        assert owners == {first.owner} or owners == {first.owner, second.owner}
    finally:
        first.close()
        second.close()


def _claimed_by_a_dead_receiver(pg_url: str, queue: AlertQueue, alive: bool) -> str:
    """Rows claimed under an owner whose lease has expired: a process of this host that
    is dead (pid 2**22 + 1 is above any pid_max), or alive (pytest's parent process, with
    its start time: a receiver that stalled past its lease)."""
    from irbook import leases

    me = leases.this_owner()
    pid = os.getppid() if alive else 2**22 + 1
    owner = f"{me.host}:{pid}:claimant"
    started = leases._proc_start(pid) if alive else None
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO run_owners (id, host, pid, proc_start, started_at, lease_expires)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (owner, me.host, pid, started, time.time() - 100, time.time() - 50),
        )
        conn.execute(
            "UPDATE webhook_alerts SET status = 'starting', attempts = 1, claimed_by = %s,"
            " claimed_at = %s",
            (owner, time.time() - 60),
        )
    return owner


def test_rows_a_dead_receiver_claimed_go_to_another_once(pg_url: str) -> None:
    """A receiver SIGKILLed between its claim and its starts: another dispatcher finds
    the rows (the claimant's lease expired, its process is gone) and starts each once."""
    queue = AlertQueue(pg_url)
    queue.enqueue([item(f"dead-{i}") for i in range(5)], windows=[3600.0] * 5)
    queue.hold()
    _claimed_by_a_dead_receiver(pg_url, queue, alive=False)
    starter = RecordingStarter()
    dispatcher = Dispatcher(queue, starter, poll_interval=0.05, recover_every=0.1)
    dispatcher.start()
    try:
        assert wait_for(lambda: len(starter.calls) == 5)
        assert wait_for(lambda: {r["status"] for r in queue.rows()} == {"started"})
        assert sorted(c.alert.id for c in starter.calls) == [f"dead-{i}" for i in range(5)]
    finally:
        dispatcher.stop()
        queue.close()


def test_rows_a_live_receiver_claimed_stay_with_it(pg_url: str) -> None:
    """A lease that expired while its process still runs (a stalled receiver on this
    host) is not taken over: its rows are not given to a second dispatcher."""
    queue = AlertQueue(pg_url)
    queue.enqueue([item("live-0")], windows=[3600.0])
    queue.hold()
    _claimed_by_a_dead_receiver(pg_url, queue, alive=True)
    assert queue.recover() == 0
    assert {r["status"] for r in queue.rows()} == {"starting"}
    queue.close()


def test_the_replay_guard_is_shared(pg_url: str) -> None:
    first, second = ReplayGuard(pg_url), ReplayGuard(pg_url)
    now = time.time()
    assert first.seen_before("gd", "delivery-1", now) is False
    assert second.seen_before("gd", "delivery-1", now + 1) is True
    assert second.seen_before("gd", "delivery-2", now) is False
    first.close()
    second.close()


def test_a_replayed_delivery_to_another_receiver_is_refused(tmp_path: Path, pg_url: str) -> None:
    config_path, _ = write_fixture(tmp_path)
    loaded = load_config(str(config_path), env=SECRETS)
    one = WebhookReceiver(loaded, RecordingStarter(), db_path=pg_url, dispatch=False)
    two = WebhookReceiver(loaded, RecordingStarter(), db_path=pg_url, dispatch=False)
    try:
        headers = {"authorization": f"Bearer {SECRETS['BEARER_TOKEN']}", "x-delivery": "d-1"}
        body = body_of("replayed-1")
        first = one.process("br", headers, body, "application/json")
        again = two.process("br", headers, body, "application/json")
        assert first.status == 202, first.body
        assert (again.status, again.body) == (200, {"status": "duplicate"})
        assert len(one.queue.rows()) == 1
    finally:
        one.stop()
        two.stop()


def test_the_environment_wins_over_the_configured_database_url(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path, _ = write_fixture(tmp_path)
    text = config_path.read_text()
    config_path.write_text(f"database_url: sqlite:///{tmp_path / 'configured.db'}\n" + text)
    loaded = load_config(str(config_path), env=SECRETS)
    monkeypatch.setenv("IRBOOK_DATABASE_URL", pg_url)
    hooks = WebhookReceiver(loaded, RecordingStarter(), dispatch=False)
    try:
        assert hooks.queue.dialect == "postgresql"
        assert not (tmp_path / "configured.db").exists()
    finally:
        hooks.stop()
    monkeypatch.delenv("IRBOOK_DATABASE_URL")
    hooks = WebhookReceiver(loaded, RecordingStarter(), dispatch=False)
    try:
        assert hooks.queue.dialect == "sqlite"
        assert (tmp_path / "configured.db").exists()
    finally:
        hooks.stop()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("mysql://root@db/irbook", "database_url: unsupported database 'mysql'"),
        ("''", "database_url: String should have at least 1 character"),
        ("[1]", "database_url: Input should be a valid string"),
    ],
)
def test_a_bad_database_url_is_one_line_naming_the_field(
    tmp_path: Path, value: str, expected: str
) -> None:
    config_path, _ = write_fixture(tmp_path)
    config_path.write_text(f"database_url: {value}\n" + config_path.read_text())
    with pytest.raises(ConfigError) as caught:
        load_config(str(config_path), env=SECRETS)
    message = str(caught.value)
    assert expected in message and "\n" not in message
    assert message.startswith(f"{config_path}:1:")


def test_a_password_in_the_configured_url_is_warned_about(tmp_path: Path) -> None:
    config_path, _ = write_fixture(tmp_path)
    url = "postgresql://irbook:hunter2@db:5432/irbook"
    config_path.write_text(f"database_url: {url}\n" + config_path.read_text())
    loaded = load_config(str(config_path), env=SECRETS)
    assert any("database_url holds a password" in w for w in loaded.warnings)
    assert not any("hunter2" in w for w in loaded.warnings)
