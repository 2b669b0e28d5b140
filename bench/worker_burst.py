"""A burst of alerts through Prefect workers against the embedded runner, in one run (#20).

The same 20 distinct GuardDuty findings are posted at once (one thread each) to a real
`irbook serve --config`, twice: first with `runner: embedded` (runs in the receiver's
process), then with `runner: deployments` after `irbook deploy`, with `--workers` real
`prefect worker start --pool ... --type process` processes (each `--limit` flow runs at
once, polling every `--query-seconds`). The playbook's first step is a `core.note`.

Printed: the POST -> first-step latency (median and the slowest, i.e. the whole burst)
for each runner and their ratio (deployments / embedded; the issue's target is 3x), how
many runs each worker took, and where a deployed run's time goes, from the run record and
Prefect's state history (medians):

    record     POST -> the run recorded queued (receiver: accept, queue, dispatch, plan)
    create     recorded -> its flow run created (the receiver's run_deployment call)
    pickup     flow run created -> Pending (a worker's poll found and claimed it)
    process    Pending -> Running (the worker spawns `python -m prefect.engine`: a new
               Python process imports Prefect, irbook and the flow)
    first step Running -> the first step starts (playbook load, plan, run record)

    .venv/bin/python bench/worker_burst.py [--alerts 20] [--workers 2] [--limit 10]
        [--query-seconds 2] [--json]

Starts a local Prefect server in a temporary IRBOOK_HOME (PREFECT_API_URL is ignored: the
bench needs a server it can fill with deployments of its own).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import urllib.request

from crash_recovery import FINDING, TOKEN, Serve, query

PLAYBOOK = """\
apiVersion: irbook/v1
kind: Playbook
metadata: {id: burst-note, title: First step of a burst}
triggers:
  - source: gd
    match: {type: "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.*"}
steps:
  - {id: note, action: core.note, with: {text: "alert ${{ alert.id }}"}}
"""


def workspace(work: Path, name: str, runner: str) -> Path:
    books = work / "playbooks"
    books.mkdir(parents=True, exist_ok=True)
    (books / "burst-note.yaml").write_text(PLAYBOOK, encoding="utf-8")
    config = work / f"receiver-{name}.yaml"
    config.write_text(
        f"playbooks: [{json.dumps(str(books))}]\n"
        f"runner: {runner}\n"
        "sources:\n"
        "  gd:\n"
        "    format: guardduty\n    mode: live\n    rate: {per_second: 10000, burst: 10000}\n"
        "    auth: {scheme: api_key, token_env: BENCH_TOKEN, header: X-Irbook-Token}\n"
        "    playbooks: [burst-note]\n",
        encoding="utf-8",
    )
    return config


def burst(url: str, prefix: str, alerts: int) -> dict[str, float]:
    """POST `alerts` distinct findings at once; alert id -> wall time of its POST."""
    finding = json.loads(FINDING.read_text())
    posted: dict[str, float] = {}
    gate = threading.Barrier(alerts)

    def send(i: int) -> None:
        body = json.loads(json.dumps(finding))
        body["detail"]["id"] = f"{prefix}-{i}"
        request = urllib.request.Request(
            f"{url}/hooks/gd",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "X-Irbook-Token": TOKEN},
            method="POST",
        )
        gate.wait()
        posted[f"{prefix}-{i}"] = time.time()
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status in (200, 202), response.status

    threads = [threading.Thread(target=send, args=(i,)) for i in range(alerts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return posted


def first_steps(db: Path, posted: dict[str, float], timeout: float) -> dict[str, dict[str, Any]]:
    """Wait until every posted alert's run has started its first step; alert -> row."""
    deadline = time.monotonic() + timeout
    rows: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        found = query(
            db,
            "SELECT runs.alert_id, runs.id AS run_id, runs.created_at, runs.flow_run_id,"
            " MIN(steps.started_at) AS first FROM runs JOIN steps ON steps.run_id = runs.id"
            " WHERE steps.started_at IS NOT NULL GROUP BY runs.id",
        )
        rows = {r["alert_id"]: dict(r) for r in found if r["alert_id"] in posted}
        if len(rows) == len(posted):
            break
        time.sleep(0.2)
    return rows


def summary(posted: dict[str, float], rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    latencies = [rows[a]["first"] - t for a, t in posted.items() if a in rows]
    return {
        "started": len(latencies),
        "median_s": round(statistics.median(latencies), 2) if latencies else None,
        "all_s": round(max(latencies), 2) if latencies else None,
    }


def prefect_breakdown(posted: dict[str, float], rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from prefect.client.orchestration import get_client

    parts: dict[str, list[float]] = {
        "record": [],
        "create": [],
        "pickup": [],
        "process": [],
        "first step": [],
    }
    with get_client(sync_client=True) as client:
        for alert, row in rows.items():
            states = client.read_flow_run_states(uuid.UUID(row["flow_run_id"]))
            when = {s.type.value: s.timestamp.timestamp() for s in states if s.timestamp}
            created = min(s.timestamp.timestamp() for s in states if s.timestamp)
            if "PENDING" not in when or "RUNNING" not in when:
                continue
            parts["record"].append(row["created_at"] - posted[alert])
            parts["create"].append(created - row["created_at"])
            parts["pickup"].append(when["PENDING"] - created)
            parts["process"].append(when["RUNNING"] - when["PENDING"])
            parts["first step"].append(row["first"] - when["RUNNING"])
    return {k: round(statistics.median(v), 2) for k, v in parts.items() if v}


def worker_shares(
    db: Path, rows: dict[str, dict[str, Any]], workers: dict[int, str]
) -> dict[str, int]:
    """Runs per worker: the process that owned each run (its lease). An irbook worker runs
    them itself; under a process worker each run has a process of its own."""
    run_ids = {r["run_id"] for r in rows.values()}
    owners = query(
        db,
        "SELECT runs.id, run_owners.pid FROM runs JOIN run_owners ON run_owners.id = runs.owner",
    )
    shares: dict[str, int] = {}
    for owner in owners:
        if owner["id"] in run_ids:
            name = workers.get(int(owner["pid"]), "a process of its own")
            shares[name] = shares.get(name, 0) + 1
    return dict(sorted(shares.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=10, help="flow runs per worker at once")
    parser.add_argument("--query-seconds", type=float, default=2.0)
    parser.add_argument(
        "--worker",
        choices=("irbook", "process"),
        default="irbook",
        help="irbook worker (runs on threads) or prefect's process worker (a process per run)",
    )
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="irbook-bench-burst-"))
    home = work / "home"
    env = {
        **os.environ,
        "IRBOOK_HOME": str(home),
        "IRBOOK_PLAYBOOKS": str(work / "playbooks"),
        "BENCH_TOKEN": TOKEN,
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    env.pop("PREFECT_API_URL", None)
    os.environ.pop("PREFECT_API_URL", None)
    os.environ["IRBOOK_HOME"] = str(home)
    from irbook_flows.server import ensure_api

    env["PREFECT_API_URL"] = ensure_api()
    db = home / "irbook.db"
    report: dict[str, Any] = {
        "alerts": args.alerts,
        "workers": args.workers,
        "worker": args.worker,
    }
    workers: list[subprocess.Popen[bytes]] = []
    try:
        runner = "{type: embedded, max_concurrent_runs: 64}"
        embedded = Serve(work, workspace(work, "embedded", runner), env)
        embedded.start()
        try:
            posted = burst(embedded.url, "emb", args.alerts)
            report["embedded"] = summary(posted, first_steps(db, posted, args.timeout))
        finally:
            embedded.stop()

        pool = "burst"
        deploy = subprocess.run(
            [str(Path(sys.executable).with_name("irbook")), "deploy", "--pool", pool],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if deploy.returncode != 0:
            raise RuntimeError(f"irbook deploy failed: {deploy.stderr}")
        worker_env = {**env, "PREFECT_WORKER_QUERY_SECONDS": str(args.query_seconds)}
        for i in range(args.workers):
            log = work / f"worker-{i}.log"
            with open(log, "wb") as out:
                workers.append(
                    subprocess.Popen(
                        (
                            [str(Path(sys.executable).with_name("irbook")), "worker"]
                            if args.worker == "irbook"
                            else [
                                str(Path(sys.executable).with_name("prefect")),
                                *("worker", "start", "--type", "process"),
                            ]
                        )
                        + ["--pool", pool, "--limit", str(args.limit), "--name", f"bench-{i}"],
                        env=worker_env,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        time.sleep(args.query_seconds * 2 + 3)  # the workers are up and polling
        config = workspace(work, "deployments", f"{{type: deployments, pool: {pool}}}")
        deployed = Serve(work, config, env)
        deployed.start()
        try:
            posted = burst(deployed.url, "dep", args.alerts)
            rows = first_steps(db, posted, args.timeout)
            report["deployments"] = summary(posted, rows)
            report["breakdown"] = prefect_breakdown(posted, rows)
            names = {proc.pid: f"bench-{i}" for i, proc in enumerate(workers)}
            report["worker_shares"] = worker_shares(db, rows, names)
        finally:
            deployed.stop()
    finally:
        for proc in workers:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGTERM)
        state = home / "prefect" / "server.json"
        if state.exists():
            with contextlib.suppress(OSError, ValueError, KeyError):
                os.killpg(json.loads(state.read_text())["pid"], signal.SIGTERM)
    emb, dep = report["embedded"], report["deployments"]
    if emb["median_s"] and dep["median_s"]:
        report["ratio_median"] = round(dep["median_s"] / emb["median_s"], 1)
        report["ratio_all"] = round(dep["all_s"] / emb["all_s"], 1)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"  a burst of {args.alerts} alerts, POST -> first step ({work}):")
        print(f"    embedded      median {emb['median_s']} s, all {emb['all_s']} s")
        print(
            f"    deployments   median {dep['median_s']} s, all {dep['all_s']} s"
            f" ({args.workers} {args.worker} workers, --limit {args.limit},"
            f" poll {args.query_seconds:g} s)"
        )
        print(
            f"    ratio         median {report.get('ratio_median')}x,"
            f" all {report.get('ratio_all')}x (target 3x)"
        )
        print(f"    worker shares {report['worker_shares']}")
        print(f"    where a deployed run's time goes (medians, s): {report['breakdown']}")
    return 0 if dep["started"] == args.alerts and emb["started"] == args.alerts else 1


if __name__ == "__main__":
    sys.exit(main())
