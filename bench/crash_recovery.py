"""Crash recovery under load: SIGKILL `irbook serve` mid-load, restart it, count every alert.

A real `irbook serve --config` (runner: embedded, live mode) receives distinct GuardDuty
findings from 8 concurrent senders, which retry until they get a 2xx as a SIEM would.
Two playbooks: `contain-read` (a note, then a 1 s wait: nothing outside irbook changes)
and, for every fifth alert, `contain-act`, whose last step `bench.effect` (bench/
crash_actions.py) waits 1 s and then appends the alert id to an effects file, a side
effect the bench counts itself. While alerts are being accepted and run, the receiver is
killed with SIGKILL `--kills` times (each time once a step is in flight) and restarted
on the same files; then the bench waits until nothing is running or queued, and reports:

    answered 2xx    alerts whose POST was answered 2xx (after the sender's retries)
    stored          of those, alerts with a row in the alert store
    lost            answered alerts with no final outcome (no row, never started, or
                    their run still not final): must be 0
    started twice   alerts with two runs that were not superseded (a crashed run is
                    superseded by its restart), or whose effect happened twice: must be 0
    left running    runs still 'running' at the end: must be 0
    needing a human runs that crashed while `bench.effect` had begun (listed)

    .venv/bin/python bench/crash_recovery.py [--alerts 150] [--kills 3] [--json]

Uses PREFECT_API_URL when set, else starts a local Prefect server in a temporary
IRBOOK_HOME. IRBOOK_RUN_LEASE is set to 2 s so a restarted receiver reaps quickly.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FINDING = ROOT / "tests" / "corpus" / "payloads" / "guardduty_credential_exfiltration.json"
TOKEN = "bench-token-0123456789"
MATCH = 'match: {type: "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.*"}'

PLAYBOOKS = {
    "contain-read": f"""\
apiVersion: irbook/v1
kind: Playbook
metadata: {{id: contain-read, title: Look and wait}}
triggers:
  - source: guardduty
    {MATCH}
steps:
  - {{id: note, action: core.note, with: {{text: "alert ${{{{ alert.id }}}}"}}}}
  - {{id: wait, action: core.sleep, needs: [note], with: {{duration: WAIT}}}}
""",
    "contain-act": f"""\
apiVersion: irbook/v1
kind: Playbook
metadata: {{id: contain-act, title: "Look, wait and act"}}
triggers:
  - source: guardduty
    {MATCH}
steps:
  - {{id: note, action: core.note, with: {{text: "alert ${{{{ alert.id }}}}"}}}}
  - {{id: wait, action: core.sleep, needs: [note], with: {{duration: WAIT}}}}
  - id: act
    action: bench.effect
    needs: [wait]
    with: {{alert_id: "${{{{ alert.id }}}}", seconds: ACT}}
""",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_workspace(
    work: Path,
    *,
    max_runs: int | None = 8,
    wait: str = "1s",
    act_seconds: float = 1.0,
    retry_delays: str | None = "[1s, 2s]",
) -> Path:
    """Playbooks, the plugin's entry point and the receiver's configuration; returns it.
    `max_runs` and `retry_delays` None: the runner's defaults."""
    books = work / "playbooks"
    books.mkdir(parents=True, exist_ok=True)
    for name, text in PLAYBOOKS.items():
        text = text.replace("WAIT", wait).replace("ACT", str(act_seconds))
        (books / f"{name}.yaml").write_text(text, encoding="utf-8")
    dist = work / "plugins" / "irbook_crash_bench-0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "entry_points.txt").write_text("[irbook.actions]\nbench = bench.crash_actions\n")
    source = (
        "    format: guardduty\n    mode: live\n    rate: {per_second: 10000, burst: 10000}\n"
        "    auth: {scheme: api_key, token_env: BENCH_TOKEN, header: X-Irbook-Token}\n"
    )
    runner = [f"max_concurrent_runs: {max_runs}"] if max_runs is not None else []
    runner += [f"retry_delays: {retry_delays}"] if retry_delays is not None else []
    config = work / "receiver.yaml"
    config.write_text(
        f"playbooks: [{json.dumps(str(books))}]\n"
        + (f"runner: {{type: embedded, {', '.join(runner)}}}\n" if runner else "")
        + "sources:\n"
        f"  gd:\n{source}    playbooks: [contain-read]\n"
        f"  gm:\n{source}    playbooks: [contain-act]\n",
        encoding="utf-8",
    )
    return config


class Serve:
    """`irbook serve` as a subprocess on fixed files; killed and restarted at will."""

    def __init__(self, work: Path, config: Path, env: dict[str, str]) -> None:
        self.work, self.config, self.env = work, config, env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.lives = 0

    def start(self, timeout: float = 120.0) -> None:
        self.lives += 1
        log = open(self.work / f"serve-{self.lives}.log", "wb")  # noqa: SIM115 - the child's
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("irbook")),
                "serve",
                "--port",
                str(self.port),
                "--config",
                str(self.config),
            ],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"irbook serve exited with {self.proc.returncode}: {self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("irbook serve did not come up") from None
                time.sleep(0.1)

    def log(self) -> str:
        return (self.work / f"serve-{self.lives}.log").read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def post(url: str, source: str, alert_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """One POST of a finding with this id; raises on anything but a 2xx."""
    finding = json.loads(FINDING.read_text())
    finding["detail"]["id"] = alert_id
    request = urllib.request.Request(
        f"{url}/hooks/{source}",
        data=json.dumps(finding).encode(),
        headers={"Content-Type": "application/json", "X-Irbook-Token": TOKEN},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def query(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    """Rows of a read of the store; none while it (or its folder) does not exist yet."""
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return list(conn.execute(sql, args).fetchall())
    except sqlite3.OperationalError:  # a table not created yet
        return []
    finally:
        conn.close()


def source_of(i: int) -> str:
    return "gm" if i % 5 == 0 else "gd"


def run_load(
    serve: Serve, db: Path, alerts: int, kills: int, *, prefix: str = "crash", settle: float = 600
) -> dict[str, Any]:
    """Post `alerts` distinct findings, SIGKILL and restart the receiver `kills` times while
    they are accepted and run, wait until everything settled, and count (see the module)."""
    answered: dict[str, str] = {}  # alert id -> source, for every 2xx
    lock = threading.Lock()
    stop_sending = time.monotonic() + settle

    def send(i: int) -> None:
        alert_id, source = f"{prefix}-{i}", source_of(i)
        while time.monotonic() < stop_sending:  # a SIEM retries until it gets a 2xx
            try:
                post(serve.url, source, alert_id)
            except (OSError, urllib.error.HTTPError):
                time.sleep(0.2)
                continue
            with lock:
                answered[alert_id] = source
            return

    def in_flight(step: str) -> bool:
        rows = query(
            db,
            "SELECT COUNT(*) FROM steps JOIN runs ON runs.id = steps.run_id"
            " WHERE runs.state = 'running' AND steps.state = 'running' AND steps.step_id = ?",
            (step,),
        )
        return bool(rows and rows[0][0])

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(send, i) for i in range(alerts)]
        for kill in range(kills):
            # Mid-load: some alerts answered, and a step in flight (the mutating one when
            # there is one), at most 30 s of looking for it.
            target = (kill + 1) * alerts // (kills + 1)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with lock:
                    enough = len(answered) >= target
                if enough and (in_flight("act") or (kill % 2 and in_flight("wait"))):
                    break
                time.sleep(0.05)
            serve.kill()
            serve.start()
        for future in futures:
            future.result()
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        running = query(db, "SELECT COUNT(*) FROM runs WHERE state = 'running'")[0][0]
        waiting = query(
            db, "SELECT COUNT(*) FROM webhook_alerts WHERE status IN ('queued', 'starting')"
        )[0][0]
        if running == 0 and waiting == 0:
            break
        time.sleep(0.5)
    return count(db, answered, serve.work / "effects.log")


def count(db: Path, answered: dict[str, str], effects: Path) -> dict[str, Any]:
    rows = {r["alert_id"]: r for r in query(db, "SELECT * FROM webhook_alerts")}
    runs = query(db, "SELECT id, alert_id, state, message FROM runs")
    state = {r["id"]: r["state"] for r in runs}
    by_alert: dict[str, list[sqlite3.Row]] = {}
    for run in runs:
        by_alert.setdefault(run["alert_id"], []).append(run)
    final = ("succeeded", "failed", "rejected", "cancelled", "needs-human")
    lost = sorted(
        alert
        for alert in answered
        if alert not in rows
        or rows[alert]["status"] != "started"
        or state.get(rows[alert]["run_id"]) not in final
    )
    done: dict[str, int] = {}
    if effects.exists():
        for line in effects.read_text().splitlines():
            alert = line.split()[1]
            done[alert] = done.get(alert, 0) + 1
    twice = sorted(
        {a for a, rs in by_alert.items() if sum(r["state"] != "crashed" for r in rs) > 1}
        | {a for a, n in done.items() if n > 1}
    )
    human = [
        {"run_id": r["id"], "alert_id": r["alert_id"], "message": r["message"]}
        for r in runs
        if r["state"] == "needs-human"
    ]
    states: dict[str, int] = {}
    for run in runs:
        states[run["state"]] = states.get(run["state"], 0) + 1
    return {
        "answered_2xx": len(answered),
        "stored": sum(alert in rows for alert in answered),
        "lost": len(lost),
        "lost_alerts": lost[:20],
        "started_twice": len(twice),
        "started_twice_alerts": twice[:20],
        "left_running": states.get("running", 0),
        "needing_human": human,
        "runs_by_state": states,
        "restarted": sum(
            r["state"] == "crashed" and "started again" in (r["message"] or "") for r in runs
        ),
    }


def environment(work: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "IRBOOK_HOME": str(work / "home"),
        "IRBOOK_RUN_LEASE": "2",
        "BENCH_TOKEN": TOKEN,
        "BENCH_EFFECTS": str(work / "effects.log"),
        "PYTHONPATH": os.pathsep.join([str(work / "plugins"), str(ROOT)]),
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=150)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--max-runs", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="irbook-bench-crash-"))
    env = environment(work)
    own_server = "PREFECT_API_URL" not in os.environ
    if own_server:
        os.environ["IRBOOK_HOME"] = env["IRBOOK_HOME"]
        from irbook_flows.server import ensure_api

        env["PREFECT_API_URL"] = ensure_api()
    serve = Serve(work, write_workspace(work, max_runs=args.max_runs), env)
    started = time.monotonic()
    try:
        serve.start()
        report = run_load(serve, work / "home" / "irbook.db", args.alerts, args.kills)
    finally:
        serve.stop()
        state = work / "home" / "prefect" / "server.json"
        if own_server and state.exists():
            with contextlib.suppress(OSError):
                os.killpg(json.loads(state.read_text())["pid"], signal.SIGTERM)
    report.update(alerts=args.alerts, kills=args.kills, seconds=round(time.monotonic() - started))
    ok = report["lost"] == 0 and report["started_twice"] == 0 and report["left_running"] == 0
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"  {args.alerts} distinct alerts, {args.kills} SIGKILLs mid-load ({work}):")
        print(f"    answered 2xx   {report['answered_2xx']}")
        print(f"    stored         {report['stored']}")
        print(f"    lost           {report['lost']} {report['lost_alerts'] or ''}")
        print(
            f"    started twice  {report['started_twice']} {report['started_twice_alerts'] or ''}"
        )
        print(f"    left running   {report['left_running']}")
        print(f"    restarted      {report['restarted']} (crashed runs whose alert started again)")
        print(f"    runs by state  {json.dumps(report['runs_by_state'], sort_keys=True)}")
        print(f"    needing a human {len(report['needing_human'])}:")
        for item in report["needing_human"]:
            print(f"      {item['run_id']} ({item['alert_id']}): {item['message']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
