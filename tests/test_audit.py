"""The audit chain: intact after real writes (also from several threads), and every kind of
tampering with the run record named by `irbook audit verify`, exit 1."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from irbook.cli.main import main
from irbook.runs import RunStore


def record(path: Path) -> RunStore:
    store = RunStore(str(path))
    run = store.create_run(
        playbook_id="pb",
        playbook_title="PB",
        mode="live",
        started_by="cli:alice",
        inputs={},
        rollback="manual",
        run_id="run1",
    )
    store.upsert_step(run, "revoke", 0, action="aws.iam.x", effect="mutate", state="running")
    store.upsert_step(
        run,
        "revoke",
        0,
        state="succeeded",
        real_calls=[{"call": "iam:UpdateAccessKey", "params": {"AccessKeyId": "AKIA..."}}],
    )
    store.event(run, "approval-approved", "revoke", by="alice")
    store.finish_run(run, "succeeded")
    return store


def verify(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["audit", "verify", str(path)])
    return code, capsys.readouterr().out


def test_an_untouched_record_verifies_and_keeps_the_calls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "irbook.db"
    store = record(path)
    code, out = verify(path, capsys)
    assert code == 0, out
    assert "audit chain intact, 5 records" in out and "head 5:" in out
    done = [e for e in store.events("run1") if e["kind"] == "step-succeeded"]
    assert done[0]["detail"]["real_calls"][0]["call"] == "iam:UpdateAccessKey"


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        (
            'UPDATE events SET detail = \'{"by": "mallory"}\' WHERE seq = 4',
            "record 4 (run run1, approval-approved) does not match its link",
        ),
        ("DELETE FROM events WHERE seq = 3", "record 3 was removed"),
        (
            "DELETE FROM events WHERE seq = 3; DELETE FROM audit WHERE seq = 3",
            "record 4 (run run1, approval-approved) does not match its link",
        ),
        (
            "INSERT INTO events (run_id, at, kind, step_id, detail)"
            " VALUES ('run1', 1.0, 'approval-approved', 'x', '{}')",
            "record 6 is not in the chain (run run1, approval-approved): added outside irbook",
        ),
        ("UPDATE audit SET hash = '" + "ab" * 32 + "' WHERE seq = 2", "record 2 (run run1"),
    ],
)
def test_tampering_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tamper: str, problem: str
) -> None:
    path = tmp_path / "irbook.db"
    record(path)
    with sqlite3.connect(path) as db:
        db.executescript(tamper)
    code, out = verify(path, capsys)
    assert code == 1
    assert "audit chain BROKEN" in out and problem in out, out


def test_writers_in_several_threads_keep_one_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "irbook.db"
    store = record(path)

    def write(n: int) -> None:
        for i in range(25):
            store.event("run1", "note", f"s{n}", text=f"{n}-{i}")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    code, out = verify(path, capsys)
    assert code == 0 and "105 records" in out, out


def test_records_from_before_the_chain_are_counted_not_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "irbook.db"
    record(path)
    # as if an older irbook, without the chain, had written these five events
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM audit")
    RunStore(str(path)).event("run1", "note", None, text="after upgrade")
    code, out = verify(path, capsys)
    assert code == 0 and "1 record; 5 older records predate the chain" in out, out


def test_a_missing_or_foreign_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "verify", str(tmp_path / "none.db")]) == 1
    assert "no such file" in capsys.readouterr().err
    junk = tmp_path / "junk.db"
    junk.write_text("not sqlite " * 100)
    assert main(["audit", "verify", str(junk)]) == 1
    assert "not an irbook run record" in capsys.readouterr().err
