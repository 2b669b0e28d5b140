"""`irbook serve` killed with SIGKILL while runs are under way, then restarted on the same
files: no run stays 'running', an alert whose run had changed nothing is started again
(and its repeats attach to the new run), one whose mutating step had begun is handed to a
human, never re-run; the crash bench's counts (bench/crash_recovery.py) hold under load.
Also: a Prefect API that fails flow-run creation, and the bound on concurrent runs."""

from __future__ import annotations

import http.server
import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from bench.crash_recovery import Serve, environment, post, query, run_load, write_workspace

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Serve]]:
    made: list[Serve] = []

    def make(env: dict[str, str] | None = None, **workspace: Any) -> Serve:
        config = write_workspace(tmp_path, **workspace)
        server = Serve(tmp_path, config, {**environment(tmp_path), **(env or {})})
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


def until(predicate: Callable[[], Any], timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


def run_of(db: Path, alert_id: str) -> sqlite3.Row | None:
    rows = query(
        db,
        "SELECT runs.* FROM webhook_alerts JOIN runs ON runs.id = webhook_alerts.run_id"
        " WHERE webhook_alerts.alert_id = ?",
        (alert_id,),
    )
    return rows[0] if rows else None


def step_running(db: Path, alert_id: str, step: str) -> bool:
    run = run_of(db, alert_id)
    if run is None:
        return False
    rows = query(
        db,
        "SELECT 1 FROM steps WHERE run_id = ? AND step_id = ? AND state = 'running'",
        (run["id"], step),
    )
    return bool(rows)


def prefect_state(flow_run_id: str) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(flow_run_id)).state
    return state.type.value if state is not None else ""


def irbook(tmp_path: Path, *args: str) -> str:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("irbook")), *args],
        env=environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout


def test_runs_of_a_killed_receiver_are_restarted_or_handed_to_a_human(
    tmp_path: Path, serve: Callable[..., Serve]
) -> None:
    db = tmp_path / "home" / "irbook.db"
    server = serve(wait="3s", act_seconds=60, max_runs=None, retry_delays=None)
    server.start()
    # m-1's mutating step is under way, r-1 has only looked (note) and is waiting.
    assert post(server.url, "gm", "m-1")["queued"][0]["status"] == "queued"
    assert until(lambda: step_running(db, "m-1", "act")), "the mutating step never started"
    assert post(server.url, "gd", "r-1")["queued"][0]["status"] == "queued"
    assert until(lambda: step_running(db, "r-1", "wait")), "r-1 never got to its wait"
    crashed_r1 = run_of(db, "r-1")
    crashed_m1 = run_of(db, "m-1")
    assert crashed_r1 is not None and crashed_m1 is not None
    server.kill()

    server.start()

    def settled() -> bool:
        running = query(db, "SELECT COUNT(*) FROM runs WHERE state = 'running'")[0][0]
        again = run_of(db, "r-1")
        return running == 0 and again is not None and again["state"] == "succeeded"

    assert until(settled), query(db, "SELECT id, alert_id, state, message FROM runs")
    runs = {r["id"]: r for r in query(db, "SELECT * FROM runs")}
    # r-1: the crashed run says what replaced it; the alert's row names the new run.
    new_r1 = run_of(db, "r-1")
    assert new_r1 is not None and new_r1["id"] != crashed_r1["id"]
    old = runs[crashed_r1["id"]]
    assert old["state"] == "crashed"
    assert f"started again as run {new_r1['id']}" in old["message"]
    assert "last step: wait" in old["message"]
    assert until(lambda: prefect_state(old["flow_run_id"]) == "CRASHED", timeout=30)
    # m-1: handed to a human, and its mutating step not run a second time.
    human = runs[crashed_m1["id"]]
    assert human["state"] == "needs-human"
    assert "act (bench.effect, running) had begun" in human["message"]
    assert [r for r in runs.values() if r["alert_id"] == "m-1"] == [human]
    effects = tmp_path / "effects.log"
    assert not effects.exists() or "m-1" not in effects.read_text()
    # A repeat of r-1 attaches to the run handling it, not to the crashed one.
    again = post(server.url, "gd", "r-1")["queued"][0]
    assert (again["status"], again["run_id"]) == ("deduplicated", new_r1["id"])
    # The user sees both: the list says who needs a human, `show` which step was in flight.
    listing = irbook(tmp_path, "runs")
    assert "1 run(s) need a human" in listing and crashed_m1["id"] in listing
    assert "crashed" in listing
    shown = irbook(tmp_path, "runs", "show", crashed_m1["id"])
    assert "needs-human" in shown
    assert "in flight when it crashed: act" in shown
    # what the reaper wrote (owners taken over, crashed and needs-human) is in the chain
    verified = irbook(tmp_path, "audit", "verify")
    assert "audit chain intact" in verified, verified  # and irbook() checked exit 0


def test_crash_bench_under_load_loses_nothing_and_starts_nothing_twice(
    tmp_path: Path, serve: Callable[..., Serve]
) -> None:
    server = serve(max_runs=None, retry_delays=None)
    server.start()
    report = run_load(server, tmp_path / "home" / "irbook.db", alerts=15, kills=2, settle=240)
    assert report["answered_2xx"] == 15 and report["stored"] == 15, report
    assert report["lost"] == 0, report
    assert report["started_twice"] == 0, report
    assert report["left_running"] == 0, report
    assert report["runs_by_state"].get("crashed", 0) + len(report["needing_human"]) > 0, report


class _Unavailable(http.server.BaseHTTPRequestHandler):
    """A Prefect API that answers 503 to everything: flow runs cannot be created."""

    hits = 0

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        type(self).hits += 1
        body = b'{"detail": "Service Unavailable"}'
        self.send_response(503)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_flow_run_prefect_cannot_create_is_retried_then_the_run_fails(
    tmp_path: Path, serve: Callable[..., Serve]
) -> None:
    api = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    try:
        env = {
            "PREFECT_API_URL": f"http://127.0.0.1:{api.server_port}/api",
            "PREFECT_CLIENT_MAX_RETRIES": "0",  # Prefect's own retries: counted apart
        }
        server = serve(env, retry_delays="[200ms, 500ms]")
        server.start()
        assert post(server.url, "gd", "down-1")["queued"][0]["status"] == "queued"
        db = tmp_path / "home" / "irbook.db"
        run = until(lambda: (r := run_of(db, "down-1")) is not None and r["state"] != "running")
        assert run, "the run stayed running"
        run = run_of(db, "down-1")
        assert run is not None
        assert run["state"] == "failed"
        assert "Prefect could not create the flow run after 3 attempts" in run["message"]
        retries = query(
            db,
            "SELECT detail FROM events WHERE run_id = ? AND kind = 'flow-run-retry'",
            (run["id"],),
        )
        assert [json.loads(r[0])["attempt"] for r in retries] == [1, 2]
        assert _Unavailable.hits >= 3
        listing = irbook(tmp_path, "runs")
        assert f"{run['id']}" in listing and "failed" in listing
    finally:
        api.shutdown()
        api.server_close()


def test_alerts_beyond_the_run_limit_wait_queued_and_all_run(
    tmp_path: Path, serve: Callable[..., Serve]
) -> None:
    server = serve(max_runs=2, wait="1s")
    server.start()
    for n in range(7):
        assert post(server.url, "gd", f"many-{n}")["queued"][0]["status"] == "queued"
    db = tmp_path / "home" / "irbook.db"

    def done() -> bool:
        rows = query(db, "SELECT state FROM runs")
        return len(rows) == 7 and all(r[0] == "succeeded" for r in rows)

    assert until(done, timeout=180), query(db, "SELECT id, state, message FROM runs")
    # From the records: never more than 2 runs between their creation and their end.
    spans = query(db, "SELECT created_at, finished_at FROM runs")
    edges = sorted(
        [(r[0], 1) for r in spans] + [(r[1], -1) for r in spans], key=lambda e: (e[0], e[1])
    )
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    assert most <= 2
    assert query(db, "SELECT COUNT(*) FROM webhook_alerts WHERE status = 'started'")[0][0] == 7


CLI_PLAYBOOK = """\
apiVersion: irbook/v1
kind: Playbook
metadata: {id: slow-look, title: Look slowly}
steps:
  - {id: look, action: core.note, with: {text: looking}}
  - {id: wait, action: core.sleep, needs: [look], with: {duration: 5m}}
"""


def test_irbook_runs_marks_a_killed_cli_run_crashed_and_leaves_a_live_one(
    tmp_path: Path,
) -> None:
    book = tmp_path / "slow-look.yaml"
    book.write_text(CLI_PLAYBOOK)
    db = tmp_path / "home" / "irbook.db"
    env = environment(tmp_path)
    procs = [
        subprocess.Popen(
            [str(Path(sys.executable).with_name("irbook")), "run", str(book), "--yes", "--plain"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    try:

        def waiting() -> list[str]:
            rows = query(
                db,
                "SELECT run_id FROM steps WHERE step_id = 'wait' AND state = 'running'"
                " ORDER BY started_at",
            )
            return [r[0] for r in rows] if len(rows) == 2 else []

        runs = until(waiting)
        assert runs, "the two CLI runs never got to their wait"
        killed, alive = procs
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        states: dict[str, str] = {}

        def settled() -> bool:
            irbook(tmp_path, "runs")
            states.update({r[0]: r[1] for r in query(db, "SELECT id, state FROM runs")})
            return "crashed" in states.values()

        assert until(settled, timeout=60), states
        assert sorted(states.values()) == ["crashed", "running"]
        dead = next(run for run, state in states.items() if state == "crashed")
        shown = irbook(tmp_path, "runs", "show", dead)
        assert "last step: wait (running)" in shown
        assert "in flight when it crashed: wait" in shown
        assert alive.poll() is None
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
