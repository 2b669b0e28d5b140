"""What a real run records, approvals included, verifies; what `irbook runs show` prints
from it cannot be edited in the file without `irbook audit verify` naming it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.irbook_flows.test_runs import GATED, ROOT, cli, write


def test_a_real_run_verifies_and_an_edited_approver_does_not(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"IRBOOK_HOME": str(home)}
    path = write(tmp_path, GATED.replace("TIMEOUT", "5m"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "irbook.cli.main", "run", str(path), "--yes", "--plain", "--quiet"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    db = home / "irbook.db"
    deadline = time.monotonic() + 60
    waiting = None
    while waiting is None and time.monotonic() < deadline:
        if db.exists():
            with sqlite3.connect(db) as conn:
                waiting = conn.execute(
                    "SELECT run_id FROM steps WHERE state = 'awaiting-approval'"
                ).fetchone()
            conn.close()
        time.sleep(0.2)
    assert waiting is not None, "the run never waited for its approval"
    run_id = waiting[0]
    done = cli("approve", run_id, "--by", "alice", "--comment", "checked", env=env)
    assert done.returncode == 0, done.stderr
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err

    done = cli("audit", "verify", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 run and 2 steps match it" in done.stdout
    head = done.stdout.split("head ")[1].split()[0]
    assert "approval: approved by alice (human)" in cli("runs", "show", run_id, env=env).stdout

    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE steps SET approval = json_set(approval, '$.by', 'mallory')")
    conn.close()
    assert "approved by mallory" in cli("runs", "show", run_id, env=env).stdout
    done = cli("audit", "verify", "--expect-head", head, env=env)
    assert done.returncode == 1
    assert (
        f"run record does not match its audit chain: run {run_id}: steps.approval.by of step"
        ' \'gate\' is "mallory" in the table but "alice" in the chain (audit seq'
    ) in done.stdout, done.stdout
