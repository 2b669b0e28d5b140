"""A receiver as a real process, for the SIGKILL test: `python -m tests.support.receiver_launcher`.

Its StartRun mirrors the real contract: the run is created under the pre-assigned id in a
table whose primary key refuses a second start (like RunStore.create_run), and then
"launching" takes `--launch-delay` seconds, a slow Prefect API. Every call is logged.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import time

import uvicorn

from irbook.triggers.app import WebhookReceiver, create_app
from irbook.triggers.config import load_config
from irbook.triggers.dispatch import StartRequest

STARTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS starts (run_id TEXT PRIMARY KEY, alert_id TEXT, pid INTEGER);
CREATE TABLE IF NOT EXISTS attempts (run_id TEXT, pid INTEGER, outcome TEXT);
"""


def make_starter(path: str, delay: float) -> object:
    def start(request: StartRequest) -> str:
        db = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            try:
                db.execute(
                    "INSERT INTO starts (run_id, alert_id, pid) VALUES (?, ?, ?)",
                    (request.run_id, request.alert.id, os.getpid()),
                )
            except sqlite3.IntegrityError:
                db.execute(
                    "INSERT INTO attempts VALUES (?, ?, 'refused')", (request.run_id, os.getpid())
                )
                raise
            db.execute(
                "INSERT INTO attempts VALUES (?, ?, 'started')", (request.run_id, os.getpid())
            )
        finally:
            db.close()
        time.sleep(delay)
        return request.run_id

    return start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--db", required=True)
    parser.add_argument("--starts", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--launch-delay", type=float, default=0.2)
    parser.add_argument("--log-level", default="error", help="info shows uvicorn's access log")
    args = parser.parse_args()
    db = sqlite3.connect(args.starts)
    db.executescript(STARTS_SCHEMA)
    db.close()
    loaded = load_config(args.config)
    hooks = WebhookReceiver(
        loaded,
        make_starter(args.starts, args.launch_delay),  # type: ignore[arg-type]
        db_path=args.db,
        workers=4,
        poll_interval=0.1,
    )
    uvicorn.run(create_app(hooks=hooks), host="127.0.0.1", port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
