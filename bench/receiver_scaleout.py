"""Receivers scaled out on PostgreSQL: accepted alerts/s against one receiver on SQLite.

Three loads of distinct GuardDuty findings (a new finding id per request), in rounds,
each against the same round's first load:

1. one receiver on SQLite (the default: WAL, synchronous=FULL, group commit);
2. one receiver on PostgreSQL (IRBOOK_DATABASE_URL: a fresh database on the machine's
   server, dropped afterwards; IRBOOK_BENCH_POSTGRES names the server,
   default postgresql://postgres@127.0.0.1:5432);
3. two receivers on that PostgreSQL database, each loaded by its own wrk at half the
   connections, their answers per second added up.

Each receiver is its own process (one uvicorn worker), accepting without starting runs
(`dispatch=False`, as bench/receiver_throughput.py measures it), and every load keeps
the same number of connections in flight in total (`--connections`, 32 by default).
After the loads the bench counts the rows each database holds against the 202s wrk
read: none may be missing.

    .venv/bin/python bench/receiver_scaleout.py [--rounds N] [--seconds N] [--json]

No target: on a machine with two cores, wrk, the receivers and PostgreSQL share them, so
a second receiver gets no core of its own here. The ratios say what one receiver costs
on each back-end and whether a second one adds or only divides; see the README's
"Scale out" section for what they predict on a larger host.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import receiver_throughput as rt  # the sibling benchmark's pieces

SERVER = os.environ.get("IRBOOK_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
LOADS = ("1 receiver, SQLite", "1 receiver, PostgreSQL", "2 receivers, PostgreSQL")


def create_database() -> str:
    import psycopg

    name = f"irbook_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return f"{SERVER}/{name}"


def drop_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def count_rows(url: str) -> int:
    import psycopg

    if url.startswith("postgresql://"):
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM webhook_alerts").fetchone()
    else:
        import sqlite3

        with sqlite3.connect(url) as db:
            row = db.execute("SELECT count(*) FROM webhook_alerts").fetchone()
    return int(row[0]) if row else 0


def start_receiver(work: Path, config: Path, url: str) -> tuple[subprocess.Popen[bytes], int]:
    port = rt.free_port()
    env = {
        **os.environ,
        "BENCH_TOKEN": rt.TOKEN,
        "IRBOOK_HOME": str(work / "home"),
        "IRBOOK_DATABASE_URL": url,
    }
    proc = subprocess.Popen(
        [sys.executable, str(work / "receiver.py"), str(port), str(config)], env=env
    )
    rt.wait_up(port)
    # the first post creates nothing the loads need, but loads the code paths once
    check = urllib.request.Request(
        f"http://127.0.0.1:{port}/hooks/gd",
        data=json.dumps(json.loads(rt.FINDING.read_text())).encode(),
        headers={"Content-Type": "application/json", "X-Irbook-Token": rt.TOKEN},
        method="POST",
    )
    with urllib.request.urlopen(check, timeout=30) as response:
        assert response.status == 202, response.status
    return proc, port


def load(ports: list[int], script: Path, seconds: int, connections: int) -> dict[str, float]:
    """wrk against each port at once, `connections` split among them; summed."""
    share = max(1, connections // len(ports))
    results: list[dict[str, float]] = [{} for _ in ports]

    def run(index: int) -> None:
        results[index] = rt.wrk(ports[index], script, seconds, share)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(ports))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "rps": sum(r["rps"] for r in results),
        "p99_ms": max(r["p99_ms"] for r in results),
        "accepted": sum(r["requests"] - r["non_2xx"] for r in results),
        "non_2xx": sum(r["non_2xx"] for r in results),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="per load and round")
    parser.add_argument("--rounds", type=rt.rounds, default=3, help="medians of this many")
    parser.add_argument("--connections", type=int, default=32, help="in flight, per load")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("needs wrk: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="irbook-bench-scaleout-"))
    procs: list[subprocess.Popen[bytes]] = []
    pg_url = create_database()
    sqlite_url = str(work / "home" / "irbook.db")
    try:
        config = rt.write_workspace(work)
        (work / "receiver.py").write_text(rt.RECEIVER)
        script = work / "distinct.lua"
        lite, lite_port = start_receiver(work, config, sqlite_url)
        pg_one, pg_port = start_receiver(work, config, pg_url)
        pg_two, pg_port2 = start_receiver(work, config, pg_url)
        procs += [lite, pg_one, pg_two]
        targets = {LOADS[0]: [lite_port], LOADS[1]: [pg_port], LOADS[2]: [pg_port, pg_port2]}
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in LOADS}
        accepted = {sqlite_url: 1.0, pg_url: 1.0}  # the check posts (one finding, twice on PG)
        for _ in range(args.rounds):
            for name in LOADS:
                ports = targets[name]
                warm = load(ports, script, 2, args.connections)
                runs[name].append(load(ports, script, args.seconds, args.connections))
                where = sqlite_url if name == LOADS[0] else pg_url
                accepted[where] += warm["accepted"] + runs[name][-1]["accepted"]
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
        procs.clear()
        stored = {url: count_rows(url) for url in accepted}
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
        drop_database(pg_url)
        shutil.rmtree(work, ignore_errors=True)
    base = runs[LOADS[0]]
    rows = []
    for name in LOADS:
        mine = runs[name]
        rows.append(
            {
                "load": name,
                "rps": round(statistics.median(r["rps"] for r in mine), 1),
                "p99_ms": round(statistics.median(r["p99_ms"] for r in mine), 2),
                "ratio": round(
                    statistics.median(m["rps"] / b["rps"] for m, b in zip(mine, base, strict=True)),
                    2,
                ),
                "non_2xx": sum(r["non_2xx"] for r in mine),
            }
        )
    two_vs_one = statistics.median(
        two["rps"] / one["rps"] for two, one in zip(runs[LOADS[2]], runs[LOADS[1]], strict=True)
    )
    kept = all(stored[url] >= accepted[url] for url in accepted)
    if args.json:
        print(
            json.dumps(
                {
                    "rows": rows,
                    "two_over_one_postgres": round(two_vs_one, 2),
                    "rounds": args.rounds,
                    "cores": os.cpu_count(),
                    "none_lost": kept,
                },
                indent=2,
            )
        )
    else:
        for row in rows:
            print(
                f"  {row['load']:<26} {row['rps']:>8.0f} alerts/s  {row['ratio']:.2f}x"
                f"  p99 {row['p99_ms']:.1f} ms"
                + ("" if not row["non_2xx"] else f"  non-2xx {row['non_2xx']:.0f}")
            )
        print(
            f"  two PostgreSQL receivers / one: {two_vs_one:.2f}x  (medians of {args.rounds}"
            f" rounds, {args.connections} connections per load, {os.cpu_count()} cores"
            " shared by wrk, the receivers and PostgreSQL)"
        )
        for url, count in accepted.items():
            where = "SQLite" if url == sqlite_url else "PostgreSQL"
            print(
                f"  {where}: {stored[url]} alerts stored for {count:.0f} answered 202"
                f" ({'none lost' if stored[url] >= count else 'ALERTS LOST'})"
            )
    return 0 if kept else 1


if __name__ == "__main__":
    sys.exit(main())
