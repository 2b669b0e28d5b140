"""The run record's write pace: chained writes per second (a step update or an event, each
its own transaction with its audit link) on the SQLite default and on PostgreSQL, one
process and several at once, in the same run. PostgreSQL is reported as a ratio of SQLite.

    .venv/bin/python bench/run_store.py [--writes N] [--processes P] [--url postgresql://...]

Without --url it uses IRBOOK_TEST_POSTGRES (default postgres@127.0.0.1:5432), creating and
dropping a database of its own. On a 2-core machine the writer processes share the cores
with the database server: the several-process rate says that appends queue on one lock
(one chain), not what a bigger host does; there the single-writer pace is the bound.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
import uuid


def _writes(url: str, n: int, tag: str) -> float:
    from irbook.runs import RunStore

    store = RunStore(url)
    run = store.create_run(
        playbook_id="bench",
        playbook_title="Bench",
        mode="dry-run",
        started_by=f"bench:{tag}",
        inputs={},
        rollback="manual",
    )
    start = time.perf_counter()
    for i in range(n):
        store.upsert_step(run, "s", i, action="core.note", effect="read", state="running")
        store.event(run, "note", "s", text=str(i))
    return 2 * n / (time.perf_counter() - start)


def _worker(args: tuple[str, int, str]) -> float:
    return _writes(*args)


def rate(url: str, n: int, processes: int) -> float:
    """Chained writes per second, all processes together."""
    if processes == 1:
        return _writes(url, n, "1")
    from irbook.runs import RunStore

    RunStore(url)  # the tables exist before the writers start
    context = multiprocessing.get_context("spawn")
    start = time.perf_counter()
    with context.Pool(processes) as pool:
        pool.map(_worker, [(url, n, str(i)) for i in range(processes)])
    return 2 * n * processes / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--url", help="a PostgreSQL database to use (its tables are added)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import psycopg

    server = os.environ.get("IRBOOK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
    made = None
    url = args.url
    if url is None:
        made = f"irbook_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{made}"')
        url = f"{server}/{made}"
    results: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            sqlite = os.path.join(tmp, "irbook.db")
            for name, target in (("sqlite", sqlite), ("postgresql", url)):
                results[f"{name}_1"] = rate(target, args.writes, 1)
                results[f"{name}_{args.processes}"] = rate(target, args.writes, args.processes)
    finally:
        if made is not None:
            from irbook import db

            for shared in list(db._shared.values()):
                shared.close()
            with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{made}" WITH (FORCE)')
    base = results["sqlite_1"]
    if args.json:
        print(json.dumps({k: round(v, 1) for k, v in results.items()}))
        return 0
    for key, value in results.items():
        print(f"{key:<16} {value:8.0f} chained writes/s  {value / base:5.2f}x sqlite_1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
