"""ReplayGuard: one acceptance per delivery id per window, across threads and restarts."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from irbook.triggers.limits import DAY, ReplayGuard

T0 = 1_700_000_000.0


def test_first_sight_is_accepted_and_a_repeat_is_refused(tmp_path: Path) -> None:
    with ReplayGuard(tmp_path / "irbook.db") as guard:
        assert guard.seen_before("github", "d-1", T0) is False
        assert guard.seen_before("github", "d-1", T0 + 1) is True
        assert guard.seen_before("github", "d-1", T0 + DAY - 1) is True


def test_ids_are_per_source(tmp_path: Path) -> None:
    with ReplayGuard(tmp_path / "irbook.db") as guard:
        assert guard.seen_before("github", "d-1", T0) is False
        assert guard.seen_before("pagerduty", "d-1", T0) is False
        assert guard.seen_before("github", "d-2", T0) is False
        assert guard.seen_before("pagerduty", "d-1", T0) is True


def test_an_id_is_forgotten_once_the_window_has_passed(tmp_path: Path) -> None:
    with ReplayGuard(tmp_path / "irbook.db", window=600) as guard:
        assert guard.seen_before("s", "d-1", T0) is False
        # A refused replay does not extend the window: it counts from the first sight.
        assert guard.seen_before("s", "d-1", T0 + 599) is True
        assert guard.seen_before("s", "d-1", T0 + 600) is False
        # ...and the new sight opens a new window.
        assert guard.seen_before("s", "d-1", T0 + 601) is True
        assert guard.seen_before("s", "d-1", T0 + 1199) is True
        assert guard.seen_before("s", "d-1", T0 + 1200) is False


def test_old_rows_are_pruned(tmp_path: Path) -> None:
    path = tmp_path / "irbook.db"
    with ReplayGuard(path, window=600, prune_every=60) as guard:
        for n in range(50):
            guard.seen_before("s", f"old-{n}", T0)
        guard.seen_before("s", "recent", T0 + 500)
        guard.seen_before("s", "trigger-prune", T0 + 700)
    with sqlite3.connect(path) as db:
        ids = {row[0] for row in db.execute("SELECT delivery_id FROM webhook_replay")}
    db.close()
    assert ids == {"recent", "trigger-prune"}


def test_prune_returns_what_it_removed(tmp_path: Path) -> None:
    with ReplayGuard(tmp_path / "irbook.db", window=600, prune_every=10**9) as guard:
        guard.seen_before("s", "a", T0)
        guard.seen_before("s", "b", T0 + 100)
        assert guard.prune(T0 + 650) == 1
        assert guard.prune(T0 + 650) == 0


def test_ids_survive_a_restart_on_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "irbook.db"
    first = ReplayGuard(path)
    assert first.seen_before("slack", "sha256:abc", T0) is False
    first.close()
    second = ReplayGuard(path)
    try:
        assert second.seen_before("slack", "sha256:abc", T0 + 60) is True
        assert second.seen_before("slack", "sha256:def", T0 + 60) is False
    finally:
        second.close()


def test_two_guards_on_one_file_agree(tmp_path: Path) -> None:
    """Two receiver processes on one home: each sees the other's ids."""
    path = tmp_path / "irbook.db"
    with ReplayGuard(path) as a, ReplayGuard(path) as b:
        assert a.seen_before("s", "d-1", T0) is False
        assert b.seen_before("s", "d-1", T0) is True


@pytest.mark.parametrize("round_", range(3))
def test_twenty_threads_racing_one_id_let_exactly_one_through(tmp_path: Path, round_: int) -> None:
    threads = 20
    with ReplayGuard(tmp_path / "irbook.db") as guard:
        start = threading.Barrier(threads)
        answers: list[bool] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def race() -> None:
            try:
                start.wait()
                seen = guard.seen_before("github", f"race-{round_}", T0)
                with lock:
                    answers.append(seen)
            except BaseException as error:  # reported below, not lost in the thread
                with lock:
                    errors.append(error)

        workers = [threading.Thread(target=race) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=30)
        assert errors == []
        assert len(answers) == threads
        assert answers.count(False) == 1


def test_the_default_file_is_under_irbook_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IRBOOK_HOME", str(tmp_path / "home"))
    with ReplayGuard() as guard:
        assert guard.seen_before("s", "d", T0) is False
        assert Path(guard.path) == tmp_path / "home" / "irbook.db"
    assert (tmp_path / "home" / "irbook.db").exists()


def test_the_window_may_not_be_shorter_than_the_timestamp_tolerance(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tolerance"):
        ReplayGuard(tmp_path / "irbook.db", window=60)
    with pytest.raises(ValueError, match="tolerance"):
        ReplayGuard(tmp_path / "irbook.db", window=600, tolerance=900)
    ReplayGuard(tmp_path / "irbook.db", window=900, tolerance=900).close()


def test_the_table_lives_beside_irbooks_other_tables(tmp_path: Path) -> None:
    path = tmp_path / "irbook.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE runs (id TEXT PRIMARY KEY)")
        db.execute("INSERT INTO runs VALUES ('r-1')")
    db.close()
    with ReplayGuard(path) as guard:
        guard.seen_before("s", "d", T0)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT id FROM runs").fetchall() == [("r-1",)]
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    db.close()
    assert mode == "wal"
