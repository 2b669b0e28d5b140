"""The audit chain: intact after real writes (also from several threads), and every kind of
tampering with the run record, the chain or the tables `irbook runs` prints from, named by
`irbook audit verify` (a subprocess, as an operator runs it), exit 1."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from irbook import audit
from irbook.runs import RunStore


def record(path: Path) -> RunStore:
    """Two runs written the way the engine writes them: run1 approved by alice and
    succeeded, run2 failed at its one step."""
    store = RunStore(str(path))
    run = store.create_run(
        playbook_id="pb",
        playbook_title="PB",
        mode="live",
        started_by="cli:alice",
        inputs={"key_id": "AKIAEXAMPLE", "token": "[redacted]"},
        rollback="manual",
        alert_source="guardduty",
        alert_id="a-1",
        incident_key="pb:a-1",
        run_id="run1",
    )
    store.set_flow_run(run, "8f7e6d5c-0000-4000-8000-000000000001")
    store.upsert_step(
        run,
        "revoke",
        0,
        action="aws.iam.x",
        effect="mutate",
        state="awaiting-approval",
        approval={"timeout": "15m", "on_timeout": "reject"},
    )
    decided = {"decision": "approved", "by": "alice", "comment": "ok", "how": "human", "at": 1.5}
    store.upsert_step(run, "revoke", 0, action="aws.iam.x", effect="mutate", approval=decided)
    store.event(run, "approval-approved", "revoke", **decided)
    store.upsert_step(
        run,
        "revoke",
        0,
        action="aws.iam.x",
        effect="mutate",
        state="running",
        params={"access_key_id": "AKIAEXAMPLE"},
        planned_calls=[{"call": "iam:UpdateAccessKey", "params": {"AccessKeyId": "AKIA..."}}],
        irreversible=None,
        started_at=2.0,
    )
    store.upsert_step(run, "revoke", 0, attempts=1)
    store.upsert_step(
        run,
        "revoke",
        0,
        state="succeeded",
        outputs={"status": "Inactive"},
        real_calls=[{"call": "iam:UpdateAccessKey", "params": {"AccessKeyId": "AKIA..."}}],
        compensation={"action": "aws.iam.y", "with": {"access_key_id": "AKIAEXAMPLE"}},
        attempts=1,
        finished_at=3.0,
    )
    store.upsert_step(run, "page", 0, state="skipped", reason="when: false")
    store.finish_run(run, "succeeded", "", {"revoked": True})

    other = store.create_run(
        playbook_id="pb",
        playbook_title="PB",
        mode="dry-run",
        started_by="webhook:guardduty",
        inputs={},
        rollback="auto",
        run_id="run2",
    )
    store.upsert_step(other, "isolate", 0, action="aws.sm.x", effect="mutate", state="running")
    store.upsert_step(other, "isolate", 0, state="failed", reason="AccessDenied", finished_at=4.0)
    store.finish_run(other, "failed", "step 'isolate' failed: AccessDenied")
    return store


def verify(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", "audit", "verify", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def tamper(path: Path, sql: str) -> None:
    with sqlite3.connect(path) as db:
        db.executescript(sql)
    db.close()


def seq_of(path: Path, run_id: str, kind: str) -> int:
    with sqlite3.connect(path) as db:
        row = db.execute(
            "SELECT seq FROM events WHERE run_id = ? AND kind = ? ORDER BY seq",
            (run_id, kind),
        ).fetchone()
    db.close()
    return int(row[0])


def test_an_untouched_record_verifies_and_keeps_the_calls(tmp_path: Path) -> None:
    path = tmp_path / "irbook.db"
    store = record(path)
    done = verify(path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "audit chain intact, 14 records; 2 runs and 3 steps match it" in done.stdout
    assert "head 14:" in done.stdout
    ended = [e for e in store.events("run1") if e["kind"] == "step-succeeded"]
    assert ended[0]["detail"]["set"]["real_calls"][0]["call"] == "iam:UpdateAccessKey"


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        (
            'UPDATE events SET detail = \'{"by": "mallory"}\' WHERE kind = "approval-approved"',
            "record 5 (run run1, approval-approved) does not match its link",
        ),
        ("DELETE FROM events WHERE seq = 3", "record 3 was removed"),
        (
            "DELETE FROM events WHERE seq = 3; DELETE FROM audit WHERE seq = 3",
            "record 3 removed (from the events and the chain both)",
        ),
        (
            "INSERT INTO events (run_id, at, kind, step_id, detail)"
            " VALUES ('run1', 1.0, 'approval-approved', 'x', '{}')",
            "record 15 is not in the chain (run run1, approval-approved): added outside irbook",
        ),
        ("UPDATE audit SET hash = '" + "ab" * 32 + "' WHERE seq = 2", "record 2 (run run1"),
    ],
)
def test_tampering_with_events_is_named(tmp_path: Path, sql: str, problem: str) -> None:
    path = tmp_path / "irbook.db"
    record(path)
    tamper(path, sql)
    done = verify(path)
    assert done.returncode == 1
    assert "audit chain BROKEN" in done.stdout and problem in done.stdout, done.stdout


# --- what `irbook runs` and `runs show` print: the runs and steps tables ----------------


def test_an_edited_started_by_is_named(tmp_path: Path) -> None:
    path = tmp_path / "irbook.db"
    record(path)
    tamper(path, "UPDATE runs SET started_by = 'cli:mallory' WHERE id = 'run1'")
    done = verify(path)
    assert done.returncode == 1
    assert done.stdout.strip().endswith(
        'run record does not match its audit chain: run run1: runs.started_by is "cli:mallory"'
        ' in the table but "cli:alice" in the chain (audit seq 1)'
    ), done.stdout


def test_an_edited_step_state_is_named(tmp_path: Path) -> None:
    path = tmp_path / "irbook.db"
    record(path)
    failed = seq_of(path, "run2", "step-failed")
    tamper(path, "UPDATE steps SET state = 'succeeded', reason = NULL WHERE step_id = 'isolate'")
    done = verify(path)
    assert done.returncode == 1
    assert (
        'run run2: steps.state of step \'isolate\' is "succeeded" in the table but "failed"'
        f" in the chain (audit seq {failed}) (and 1 more disagreement)"
    ) in done.stdout, done.stdout


def test_an_edited_approver_is_named(tmp_path: Path) -> None:
    path = tmp_path / "irbook.db"
    record(path)
    decided = seq_of(path, "run1", "step-updated")  # the approval's record, without a state
    tamper(path, "UPDATE steps SET approval = json_set(approval, '$.by', 'mallory')")
    done = verify(path)
    assert done.returncode == 1
    assert done.stdout.strip().endswith(
        "run run1: steps.approval.by of step 'revoke' is \"mallory\" in the table but"
        f' "alice" in the chain (audit seq {decided})'
    ), done.stdout


def test_edited_inputs_are_named(tmp_path: Path) -> None:
    path = tmp_path / "irbook.db"
    record(path)
    tamper(
        path,
        "UPDATE runs SET inputs = json_set(inputs, '$.key_id', 'AKIAOTHER') WHERE id = 'run1'",
    )
    done = verify(path)
    assert done.returncode == 1
    assert done.stdout.strip().endswith(
        'run run1: runs.inputs.key_id is "AKIAOTHER" in the table but "AKIAEXAMPLE" in the'
        " chain (audit seq 1)"
    ), done.stdout


def test_a_deleted_run_is_named(tmp_path: Path) -> None:
    path = tmp_path / "irbook.db"
    record(path)
    started = seq_of(path, "run2", "run-started")
    tamper(path, "DELETE FROM steps WHERE run_id = 'run2'; DELETE FROM runs WHERE id = 'run2'")
    done = verify(path)
    assert done.returncode == 1
    assert f"run run2 is missing from the runs table (chained at audit seq {started})" in (
        done.stdout
    ), done.stdout


def test_an_inserted_run_is_named(tmp_path: Path) -> None:
    path = tmp_path / "irbook.db"
    record(path)
    tamper(
        path,
        "INSERT INTO runs (id, playbook_id, playbook_title, mode, started_by, state, inputs,"
        " rollback, created_at) VALUES ('run3', 'pb', 'PB', 'live', 'cli:alice', 'succeeded',"
        " '{}', 'manual', 5.0)",
    )
    done = verify(path)
    assert done.returncode == 1
    assert "run run3 is in the runs table but not in the audit chain: added outside irbook" in (
        done.stdout
    ), done.stdout


def test_an_inserted_step_is_named(tmp_path: Path) -> None:
    path = tmp_path / "irbook.db"
    record(path)
    tamper(
        path,
        "INSERT INTO steps (run_id, step_id, item, action, effect, state)"
        " VALUES ('run1', 'cleanup', 0, 'core.note', 'read', 'succeeded')",
    )
    done = verify(path)
    assert done.returncode == 1
    assert "step 'cleanup' of run run1 is in the steps table but not in the audit chain" in (
        done.stdout
    ), done.stdout


# --- the chain itself: empty, started late, cut short ----------------------------------


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("DELETE FROM audit", "record 1 is not in the chain (run run1, run-started)"),
        ("DELETE FROM events; DELETE FROM audit", "record 1 to 14 removed"),
        (
            "DELETE FROM events; DELETE FROM audit; DELETE FROM audit_head",
            "run record does not match its audit chain: run run1 is in the runs table but not"
            " in the audit chain",
        ),
        (
            "INSERT INTO events (seq, run_id, at, kind, step_id, detail)"
            " VALUES (0, 'run1', 0.5, 'note', NULL, '{}')",
            "record 0 (run run1, note) is before the chain's first record 1",
        ),
        (
            "INSERT INTO events (seq, run_id, at, kind, step_id, detail)"
            " VALUES (-1, 'run1', 0.5, 'note', NULL, '{}');"
            " INSERT INTO audit (seq, hash) VALUES (-1, '" + "0" * 64 + "')",
            "record -1 (run run1, note) is before the chain's first record 1",
        ),
    ],
    ids=["audit-emptied", "chain-emptied", "chain-and-head-emptied", "seq-0", "seq-minus-1"],
)
def test_an_emptied_or_extended_chain_fails(tmp_path: Path, sql: str, problem: str) -> None:
    path = tmp_path / "irbook.db"
    record(path)
    tamper(path, sql)
    done = verify(path)
    assert done.returncode == 1
    assert problem in done.stdout, done.stdout


def test_a_truncated_tail_fails(tmp_path: Path) -> None:
    path = tmp_path / "irbook.db"
    record(path)
    tamper(path, "DELETE FROM events WHERE seq > 12; DELETE FROM audit WHERE seq > 12")
    done = verify(path)
    assert done.returncode == 1
    assert "record 13 to 14 removed: the chain ends at 12 but 14 were written" in done.stdout
    # the head's count covered up, not its link: the head names the record it expected
    tamper(path, "UPDATE audit_head SET seq = 12")
    done = verify(path)
    assert done.returncode == 1
    assert "the chain's head says record 12 has link" in done.stdout, done.stdout
    # the head covered up too: the tables still say more than the chain
    tamper(path, "UPDATE audit_head SET hash = (SELECT hash FROM audit WHERE seq = 12)")
    done = verify(path)
    assert done.returncode == 1
    assert (
        'run record does not match its audit chain: run run2: runs.state is "failed" in the'
        ' table but "running" in the chain (audit seq 11) (and 5 more disagreements)'
    ) in done.stdout, done.stdout


# --- the published head ----------------------------------------------------------------


def head_of(path: Path) -> str:
    done = verify(path)
    assert done.returncode == 0, done.stdout
    return done.stdout.split("head ")[1].split()[0]


def rechain(path: Path) -> None:
    """What someone who can write the file can do: rebuild every link after an edit."""
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        prev = audit.GENESIS
        for row in db.execute("SELECT * FROM events ORDER BY seq").fetchall():
            prev = audit.link(prev, row)
            db.execute("UPDATE audit SET hash = ? WHERE seq = ?", (prev, row["seq"]))
        db.execute("UPDATE audit_head SET hash = ?", (prev,))
    db.close()


def test_a_rebuilt_chain_fails_against_the_published_head(tmp_path: Path) -> None:
    path = tmp_path / "irbook.db"
    record(path)
    head = head_of(path)
    tamper(
        path,
        "UPDATE runs SET started_by = 'cli:mallory' WHERE id = 'run1';"
        " UPDATE events SET detail = replace(detail, 'cli:alice', 'cli:mallory') WHERE seq = 1",
    )
    rechain(path)
    forged = head_of(path)  # consistent again: only the published head can tell
    assert forged != head
    done = verify(path, "--expect-head", head)
    assert done.returncode == 1
    assert (
        f"audit chain does not hold the published head: the link at seq 14 is"
        f" {forged[3:19]}…, not the published head {head[:19]}…: the chain was rewritten"
    ) in done.stdout, done.stdout
    bare = verify(path, "--expect-head", head.split(":")[1])
    assert bare.returncode == 1 and "is not in the chain: it was rewritten or cut short" in (
        bare.stdout
    )


def test_a_run_cut_off_with_its_records_fails_against_the_published_head(
    tmp_path: Path,
) -> None:
    path = tmp_path / "irbook.db"
    record(path)
    head = head_of(path)
    first = seq_of(path, "run2", "run-started")
    tamper(
        path,
        "DELETE FROM steps WHERE run_id = 'run2'; DELETE FROM runs WHERE id = 'run2';"
        f" DELETE FROM events WHERE seq >= {first}; DELETE FROM audit WHERE seq >= {first};"
        f" UPDATE audit_head SET seq = {first - 1},"
        f" hash = (SELECT hash FROM audit WHERE seq = {first - 1})",
    )
    assert verify(path).returncode == 0  # a shorter, consistent record
    done = verify(path, "--expect-head", head)
    assert done.returncode == 1
    assert (
        f"the chain ends at seq {first - 1}, before the published head 14:" in done.stdout
        and "the newest records were removed" in done.stdout
    ), done.stdout


def test_a_published_head_holds_as_the_record_grows(tmp_path: Path) -> None:
    path = tmp_path / "irbook.db"
    store = record(path)
    head = head_of(path)
    store.event("run2", "note", None, text="reviewed")
    done = verify(path, "--expect-head", head, "--expect-head", head.split(":")[1])
    assert done.returncode == 0, done.stdout
    assert done.stdout.count("holds (1 newer records)") == 2
    assert "head 15:" in done.stdout


def test_a_malformed_head_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "irbook.db"
    record(path)
    done = verify(path, "--expect-head", "14:nothex")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "irbook: error: --expect-head: '14:nothex' is not SEQ:HASH as `irbook audit verify`"
        " prints it"
    )


# --- writers and readers at the same time -----------------------------------------------


def test_writers_in_several_threads_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "irbook.db"
    store = record(path)

    def write(n: int) -> None:
        for i in range(25):
            store.event("run1", "note", f"s{n}", text=f"{n}-{i}")
            store.upsert_step("run1", f"s{n}", 0, action="core.note", state="running")
            store.upsert_step("run1", f"s{n}", 0, attempts=i)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = verify(path)
    assert done.returncode == 0 and "314 records; 2 runs and 7 steps" in done.stdout, done.stdout


def test_verify_while_a_run_writes_sees_no_half_write(tmp_path: Path) -> None:
    """A row and its event commit together and verify reads one snapshot, so a run
    writing meanwhile is never reported as tampering."""
    from irbook.cli.main import main

    path = tmp_path / "irbook.db"
    store = record(path)
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            store.upsert_step("run1", "busy", 0, action="core.note", state="running")
            store.upsert_step("run1", "busy", 0, attempts=i, reason=f"try {i}")

    writer = threading.Thread(target=write)
    writer.start()
    try:
        codes = [main(["audit", "verify", str(path)]) for _ in range(30)]
    finally:
        stop.set()
        writer.join()
    assert codes == [0] * 30


def test_a_missing_or_foreign_file_is_one_line(tmp_path: Path) -> None:
    done = verify(tmp_path / "none.db")
    assert done.returncode == 1 and "no such file" in done.stderr
    junk = tmp_path / "junk.db"
    junk.write_text("not sqlite " * 100)
    done = verify(junk)
    assert done.returncode == 1 and "not an irbook run record" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_cancelled_run_stays_cancelled_when_its_engine_ends_later(tmp_path: Path) -> None:
    """`irbook cancel` can land while a step still runs; the engine's own end comes after
    and must not turn the run back into 'succeeded'. What happened is in the chain."""
    path = tmp_path / "irbook.db"
    store = RunStore(str(path))
    run = store.create_run(
        playbook_id="pb",
        playbook_title="PB",
        mode="live",
        started_by="cli:alice",
        inputs={},
        rollback="manual",
    )
    store.finish_run(run, "cancelled", "cancelled by cli:bob")
    store.finish_run(run, "succeeded", "")
    assert (store.run(run) or {})["state"] == "cancelled"
    assert [e["kind"] for e in store.events(run)][-1] == "run-end-after-cancel"
    done = verify(path)
    assert done.returncode == 0, done.stdout + done.stderr
