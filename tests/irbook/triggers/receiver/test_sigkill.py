"""Kill -9 the receiver while alerts are being started; a restart on the same files must
start every alert that got a 202, and none twice."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.receiver import SECRETS, body_of, free_port, wait_for, write_fixture

ROOT = Path(__file__).resolve().parents[4]
N = 40


class Process:
    def __init__(self, config: Path, db: Path, starts: Path, delay: float) -> None:
        self.port = free_port()
        env = {**os.environ, **SECRETS}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.receiver_launcher",
                str(config),
                "--db",
                str(db),
                "--starts",
                str(starts),
                "--port",
                str(self.port),
                "--launch-delay",
                str(delay),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        assert wait_for(self._healthy, timeout=30), "the receiver process did not come up"

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"receiver exited with {self.proc.returncode}")
        try:
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for proc in started:
        proc.stop()


def rows(path: Path, query: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path, timeout=30)
    try:
        return list(db.execute(query).fetchall())
    finally:
        db.close()


def test_sigkill_mid_start_then_restart_starts_each_alert_once(
    tmp_path: Path, processes: list[Process]
) -> None:
    config, _ = write_fixture(tmp_path)
    db, starts = tmp_path / "irbook.db", tmp_path / "starts.db"
    # First life: each launch hangs after the run is created, so claimed rows are caught
    # half-way (run created, row not yet marked started) when the kill comes.
    first = Process(config, db, starts, delay=30.0)
    processes.append(first)

    accepted: dict[str, str] = {}  # alert id -> run id, for every 202
    lock = threading.Lock()

    def send(i: int) -> None:
        alert_id = f"kill-{i}"
        headers = {"X-Irbook-Token": SECRETS["GD_TOKEN"]}
        try:
            response = httpx.post(
                f"{first.url}/hooks/gd", content=body_of(alert_id), headers=headers, timeout=10
            )
        except httpx.HTTPError:
            return  # the kill cut it off: no 202, no promise
        if response.status_code == 202:
            with lock:
                accepted[alert_id] = response.json()["queued"][0]["run_id"]

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(send, i) for i in range(N)]
        # Kill once some runs are created (under way) and some posts were answered.
        assert wait_for(
            lambda: (
                len(accepted) >= N // 4 and bool(rows(starts, "SELECT COUNT(*) FROM starts")[0][0])
            ),
            timeout=30,
        )
        first.kill()
        for future in futures:
            future.result()
    assert accepted, "no post was accepted before the kill"
    before = {r[0] for r in rows(starts, "SELECT run_id FROM starts")}

    second = Process(config, db, starts, delay=0.05)
    processes.append(second)

    def all_started() -> bool:
        started = {r[0] for r in rows(starts, "SELECT run_id FROM starts")}
        pending = rows(db, "SELECT COUNT(*) FROM webhook_alerts WHERE status != 'started'")
        return set(accepted.values()) <= started and pending[0][0] == 0

    assert wait_for(all_started, timeout=40), "not every accepted alert was started"
    per_run = rows(
        starts.parent / "starts.db",
        "SELECT run_id, COUNT(*) FROM attempts WHERE outcome = 'started' GROUP BY run_id",
    )
    assert all(count == 1 for _, count in per_run)
    started_runs = rows(starts, "SELECT run_id, alert_id FROM starts")
    assert len({alert for _, alert in started_runs}) == len(started_runs)  # one run per alert
    for alert_id, run_id in accepted.items():
        assert (run_id, alert_id) in started_runs
    # The runs created just before the kill were retried after it and refused, not redone.
    refused = {r[0] for r in rows(starts, "SELECT run_id FROM attempts WHERE outcome = 'refused'")}
    assert refused and refused <= before
