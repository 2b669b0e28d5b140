"""A run accepted for a worker is recorded `queued` (#20): a worker claims it exactly once,
a cancelled one is never started, one whose flow run could not be created ends failed, and
every change is in the audit chain that `irbook audit verify` checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from irbook.runs import RunStore


def queued(store: RunStore, run_id: str) -> str:
    return store.create_run(
        playbook_id="pb",
        playbook_title="PB",
        mode="live",
        started_by="webhook:gd",
        inputs={},
        rollback="manual",
        run_id=run_id,
        state="queued",
    )


def verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", "audit", "verify", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_queued_run_is_claimed_once_and_stays_in_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "irbook.db"
    store = RunStore(str(path))
    queued(store, "wh-1")
    record = store.run("wh-1")
    assert record is not None and record["state"] == "queued" and record["owner"] is None
    store.owner = "worker-a"
    assert store.claim_queued("wh-1") is None  # this call started it
    record = store.run("wh-1")
    assert record is not None and record["state"] == "running" and record["owner"] == "worker-a"
    assert store.claim_queued("wh-1") == "running"  # a second delivery never runs it again
    assert store.claim_queued("wh-nope") == "missing"
    assert not store.fail_queued("wh-1", "not started")  # a started run keeps its own end
    store.finish_run("wh-1", "succeeded")
    result = verify(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cancelled_and_unstartable_queued_runs(tmp_path: Path) -> None:
    path = tmp_path / "irbook.db"
    store = RunStore(str(path))
    queued(store, "wh-2")
    store.finish_run("wh-2", "cancelled", "cancelled by cli:oncall")
    assert store.claim_queued("wh-2") == "cancelled"
    queued(store, "wh-3")
    assert store.fail_queued("wh-3", "not started: the Prefect API answered 503")
    record = store.run("wh-3")
    assert record is not None and record["state"] == "failed"
    assert record["message"] == "not started: the Prefect API answered 503"
    assert store.claim_queued("wh-3") == "failed"
    assert verify(path).returncode == 0
    # and a run only starts running or queued
    with pytest.raises(ValueError, match="running or queued"):
        store.create_run(
            playbook_id="pb",
            playbook_title="PB",
            mode="live",
            started_by="x",
            inputs={},
            rollback="manual",
            state="succeeded",
        )
