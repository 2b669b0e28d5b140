"""What each stage of the webhook receiver costs, as a share of its throughput ratio.

bench/receiver_throughput.py says whether the receiver meets its target; this says where
the time goes, by taking stages out. Same setup, same wrk script, same bare endpoint as
there (distinct findings, `wrk -t1 -c32`, everything on one machine), in the same run:

- `full`: the real receiver (dispatch off, as in receiver_throughput.py);
- `no checks`: auth, parse, normalize and match replaced by a copy of the first post's
  outcome under a fresh alert id (a pydantic `model_copy`, a few microseconds);
- `no store`: the group commit replaced by an answer made at once (nothing is written);
- `neither`: both taken out, leaving uvicorn, the ASGI handler, body reading, metrics and
  the JSON answer: the HTTP cost the bare endpoint also pays, plus the 202's body.

The three partial receivers are not receivers: they answer 202 without doing the work,
and exist only in this script's child processes. What they measure is a ceiling: how
high the ratio could go if a stage cost nothing. Rounds alternate the five servers, so
the machine's drift (the bare endpoint varies by half between runs here) touches all of
them alike; each ratio is the median of the rounds' ratios (a server against the bare
endpoint of the same round).

    .venv/bin/python bench/receiver_stages.py [--rounds N] [--seconds N] [--json]
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from receiver_throughput import (
    TOKEN,
    free_port,
    paired_ratio,
    rounds,
    wait_up,
    write_workspace,
    wrk,
)

# argv: port, config, stage to take out ("", "checks", "store" or "checks,store").
STAGED = """\
import itertools
import sys
import time

import uvicorn
from irbook.triggers.app import Prepared, WebhookReceiver, create_app
from irbook.triggers.config import load_config
from irbook.triggers.queue import Enqueued, QueueItem

hooks = WebhookReceiver(load_config(sys.argv[2]), lambda request: request.run_id,
                        dispatch=False)
out = set(filter(None, sys.argv[3].split(",")))
real_prepare, first, counter = hooks.prepare, [], itertools.count()

def prepare(name, headers, body, content_type):
    if not first:
        step = real_prepare(name, headers, body, content_type)
        assert isinstance(step, Prepared), step
        first.append(step)
    step, n = first[0], next(counter)
    items = [
        QueueItem(i.source, i.alert.model_copy(update={"id": f"stage-{n}"}), i.playbook_id,
                  i.playbook_path, i.mode, i.alert_json)
        for i in step.items
    ]
    return Prepared(name, time.time(), items, step.windows, [], None)

async def enqueue_async(items, *, windows, now, also):
    return [
        Enqueued(row_id=f"r{n}", run_id=f"wh-{n}", alert_key=f"k{n}",
                 playbook_id=item.playbook_id, mode=item.mode, status="queued", count=1)
        for item, n in zip(items, counter)
    ]

if "checks" in out:
    hooks.prepare = prepare
if "store" in out:
    hooks.queue.enqueue_async = enqueue_async
uvicorn.run(create_app(hooks=hooks), host="127.0.0.1", port=int(sys.argv[1]),
            log_level="error")
"""

SERVERS = (
    ("bare endpoint", None),
    ("receiver, full", ""),
    ("receiver, no checks", "checks"),
    ("receiver, no store", "store"),
    ("receiver, neither", "checks,store"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=rounds, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("needs wrk: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="irbook-bench-stages-"))
    procs: list[subprocess.Popen[bytes]] = []
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _ in SERVERS}
    try:
        config = write_workspace(work)
        (work / "staged.py").write_text(STAGED)
        script = work / "distinct.lua"
        ports: dict[str, int] = {}
        for name, out in SERVERS:
            port = ports[name] = free_port()
            env = {
                **os.environ,
                "BENCH_TOKEN": TOKEN,
                "IRBOOK_HOME": str(work / f"home-{port}"),  # a store per server
            }
            argv = [str(work / "bare.py"), str(port)]
            if out is not None:
                argv = [str(work / "staged.py"), str(port), str(config), out]
            procs.append(subprocess.Popen([sys.executable, *argv], env=env))
        for port in ports.values():
            wait_up(port)
        for _ in range(args.rounds):
            for name, _ in SERVERS:
                wrk(ports[name], script, 2, args.connections)  # warm-up
                runs[name].append(wrk(ports[name], script, args.seconds, args.connections))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    for name, _ in SERVERS:
        rps = statistics.median(row["rps"] for row in runs[name])
        ratio = paired_ratio(runs[name], runs["bare endpoint"])
        rows.append(
            {
                "server": name,
                "rps": round(rps),
                "ratio": round(ratio, 2),
                "p99_ms": round(statistics.median(row["p99_ms"] for row in runs[name]), 2),
                "non_2xx": sum(row["non_2xx"] for row in runs[name]),
            }
        )
    if args.json:
        print(json.dumps({"rounds": args.rounds, "rows": rows}, indent=2))
    else:
        for row in rows:
            print(
                f"  {row['server']:<22} {row['rps']:>7.0f} req/s  {row['ratio']:.2f}x"
                f"  p99 {row['p99_ms']:.2f} ms"
                + ("" if not row["non_2xx"] else f"  non-2xx {row['non_2xx']:.0f}")
            )
        print(
            f"  medians of {args.rounds} rounds, wrk -t1 -c{args.connections}, distinct findings;"
            " the partial receivers answer without doing the stage they lack"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
