"""Two `irbook serve` processes on one PostgreSQL URL behave as one receiver (#16).

Real processes, as an operator runs them: one receiver names the database in its
configuration (`database_url:`), the other gets it from IRBOOK_DATABASE_URL; each has a
home of its own, so nothing is shared but the URL. Findings are posted over HTTP with the
source's API key; runs are dry runs of a test playbook in the receivers themselves
(runner: embedded), on the session's Prefect API. What the receivers did is read back
by a third process that has only the URL (`irbook runs --format json`, `irbook audit
verify`) and, for counting, from the tables themselves.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.receiver import body_of, free_port

ROOT = Path(__file__).resolve().parents[4]
TOKEN = "gd-token-0123456789"
IRBOOK = (sys.executable, "-m", "irbook.cli.main")

PLAYBOOK = """\
apiVersion: irbook/v1
kind: Playbook
metadata: {id: cred-exfil, title: Instance credentials used outside AWS}
triggers:
  - format: guardduty
    match:
      type: "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.*"
      severity: {gte: 7}
steps:
  - {id: note, action: core.note, with: {text: "alert ${{ alert.id }}"}}
"""


def write_config(root: Path, url: str | None) -> Path:
    books = root / "playbooks"
    books.mkdir(parents=True, exist_ok=True)
    (books / "cred-exfil.yaml").write_text(PLAYBOOK)
    config = root / "receiver.yaml"
    config.write_text(
        (f"database_url: {url}\n" if url else "") + f"playbooks: [{json.dumps(str(books))}]\n"
        "sources:\n  gd:\n    format: guardduty\n    mode: dry-run\n"
        "    auth: {scheme: api_key, token_env: GD_TOKEN, header: X-Irbook-Token}\n"
        "    rate: {per_second: 1000, burst: 1000}\n"
    )
    return config


class Receiver:
    """`irbook serve` in a process of its own, with a home of its own."""

    def __init__(self, root: Path, url: str, api: str, *, in_config: bool) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config = write_config(root, url if in_config else None)
        env = {
            **os.environ,
            "GD_TOKEN": TOKEN,
            "IRBOOK_HOME": str(root / "home"),
            "PREFECT_API_URL": api,
            "IRBOOK_RUN_LEASE": "3",
        }
        env.pop("IRBOOK_DATABASE_URL", None)
        if not in_config:
            env["IRBOOK_DATABASE_URL"] = url
        self.log = root / "serve.log"
        self._out = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*IRBOOK, "serve", "--port", str(self.port), "--config", str(config)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def wait_healthy(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"irbook serve exited: {self.log.read_text()}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2).close()
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"irbook serve did not answer: {self.log.read_text()}")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._out.close()

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        return self.log.read_text()


def post(port: int, body: bytes) -> int:
    """The status the receiver answered; 0 when no answer came (a killed receiver)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/hooks/gd",
        data=body,
        headers={"Content-Type": "application/json", "X-Irbook-Token": TOKEN},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        with exc:  # it holds the connection
            return int(exc.code)
    except OSError:
        return 0


@pytest.fixture
def receivers(tmp_path: Path, pg_url: str, prefect_api: str) -> Iterator[list[Receiver]]:
    pair = [
        Receiver(tmp_path / "a", pg_url, prefect_api, in_config=True),
        Receiver(tmp_path / "b", pg_url, prefect_api, in_config=False),
    ]
    try:
        for receiver in pair:
            receiver.wait_healthy()
        yield pair
    finally:
        logs = [receiver.stop() for receiver in pair]
    for text in logs:
        assert "Traceback" not in text, text


def query(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return list(conn.execute(sql, args).fetchall())


def irbook(url: str, home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """A command run by a third process that has the URL and nothing else."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IRBOOK_", "PREFECT_"))}
    env.update(IRBOOK_DATABASE_URL=url, IRBOOK_HOME=str(home))
    return subprocess.run(
        [*IRBOOK, *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def runs_seen_by_a_third_process(url: str, home: Path) -> list[dict[str, Any]]:
    done = irbook(url, home, "runs", "--limit", "500", "--format", "json")
    assert done.returncode == 0, done.stderr
    runs: list[dict[str, Any]] = json.loads(done.stdout)
    return runs


def settled(url: str, count: int) -> bool:
    """`count` runs exist and every one of them has ended."""
    rows = query(url, "SELECT state FROM runs")
    return len(rows) >= count and all(state not in ("running", "queued") for (state,) in rows)


def wait(predicate: Any, timeout: float = 180.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.25)
    return bool(predicate())


def test_two_receivers_on_one_url_act_as_one(
    receivers: list[Receiver], pg_url: str, tmp_path: Path
) -> None:
    a, b = receivers
    # A retrying SIEM: the same finding 50 times to each receiver, all at once.
    storm = body_of("scale-storm")
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda i: post((a, b)[i % 2].port, storm), range(100)))
    assert set(statuses) <= {200, 202} and statuses.count(202) >= 1, statuses
    rows = query(pg_url, "SELECT count, run_id FROM webhook_alerts")
    assert len(rows) == 1 and rows[0][0] == statuses.count(202), rows
    # 20 distinct findings, split between them.
    with ThreadPoolExecutor(8) as pool:
        statuses = list(
            pool.map(lambda i: post((a, b)[i % 2].port, body_of(f"scale-{i}")), range(20))
        )
    assert statuses == [202] * 20
    assert wait(lambda: settled(pg_url, 21)), query(pg_url, "SELECT id, state FROM runs")

    runs = runs_seen_by_a_third_process(pg_url, tmp_path / "third")
    by_alert: dict[str, list[str]] = {}
    for run in runs:
        by_alert.setdefault(run["alert_id"], []).append(run["id"])
    assert sorted(by_alert) == sorted(["scale-storm", *(f"scale-{i}" for i in range(20))])
    assert all(len(ids) == 1 for ids in by_alert.values()), by_alert
    assert {run["state"] for run in runs} == {"succeeded"}, runs
    # both receivers started runs: dispatch is shared, not one receiver's
    owners = query(pg_url, "SELECT count(DISTINCT started_by), count(DISTINCT owner) FROM runs")
    assert owners[0][1] == 2, owners

    verified = irbook(pg_url, tmp_path / "third", "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_receiver_killed_under_load_loses_nothing_and_starts_nothing_twice(
    receivers: list[Receiver], pg_url: str, tmp_path: Path
) -> None:
    a, b = receivers
    accepted: list[str] = []
    refused: list[tuple[str, int]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def sender(index: int) -> None:
        n = 0
        while not stop.is_set() and n < 40:
            alert_id = f"kill-{index}-{n}"
            # Each finding goes to one receiver; retried at the other one when the first
            # gave no 2xx, as a SIEM behind a load balancer retries.
            for target in (a, b) if index % 2 else (b, a):
                status = post(target.port, body_of(alert_id))
                with lock:
                    if status in (200, 202):
                        accepted.append(alert_id)
                        break
                    refused.append((alert_id, status))
            n += 1

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    a.kill()  # SIGKILL mid-load: its posts in flight get no answer, its claims are orphaned
    for thread in threads:
        thread.join(timeout=180)
    stop.set()
    assert len(accepted) >= 100, (len(accepted), refused[:5])

    # Nothing answered 2xx is lost: every accepted finding has its row...
    stored = {alert_id for (alert_id,) in query(pg_url, "SELECT alert_id FROM webhook_alerts")}
    assert set(accepted) <= stored
    # ...and its run, started by the survivor when the dead one had claimed it.
    assert wait(lambda: settled(pg_url, len(stored)), timeout=240)
    assert wait(
        lambda: (
            query(pg_url, "SELECT count(*) FROM webhook_alerts WHERE status != 'started'") == [(0,)]
        ),
        timeout=60,
    ), query(pg_url, "SELECT alert_id, status, claimed_by FROM webhook_alerts")
    # No run starts twice. Each finding has one run that did not crash; a run the killed
    # receiver was executing is `crashed` (the survivor's reaper saw its lease expire) and
    # its finding was started again under a new run id, in the same row, which names it.
    rows = query(pg_url, "SELECT alert_id, run_id, restarted_from FROM webhook_alerts")
    runs = query(pg_url, "SELECT alert_id, id, state FROM runs")
    assert len({run_id for _, run_id, _ in runs}) == len(runs)
    for alert_id, run_id, restarted_from in rows:
        mine = {rid: state for aid, rid, state in runs if aid == alert_id}
        survivors = [rid for rid, state in mine.items() if state != "crashed"]
        assert survivors == [run_id], (alert_id, mine, run_id)
        crashed = sorted(set(mine) - {run_id})
        assert crashed == ([restarted_from] if restarted_from else []), (alert_id, mine)
    verified = irbook(pg_url, tmp_path / "third", "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_database_the_receiver_cannot_reach_is_one_line_before_prefect_starts(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, "postgresql://irbook@127.0.0.1:1/irbook")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IRBOOK_", "PREFECT_"))}
    env.update(GD_TOKEN=TOKEN, IRBOOK_HOME=str(tmp_path / "home"))
    for url, said in (
        (None, "database_url: cannot connect to postgresql://irbook@127.0.0.1:1/irbook"),
        # the environment wins over the file, and the message names it instead
        (
            "postgresql://irbook:pw@127.0.0.1:1/other",
            "IRBOOK_DATABASE_URL: cannot connect to postgresql://irbook:***@127.0.0.1:1/other: ",
        ),
    ):
        if url is not None:
            env["IRBOOK_DATABASE_URL"] = url
        done = subprocess.run(
            [*IRBOOK, "serve", "--port", str(free_port()), "--config", str(config)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and said in lines[0], done.stderr
        assert "connection failed" not in lines[0] and "pw@" not in lines[0]
        assert "Traceback" not in done.stderr
        assert not (tmp_path / "home" / "prefect").exists()  # refused before Prefect started
