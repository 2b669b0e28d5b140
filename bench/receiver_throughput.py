"""Webhook receiver throughput and latency, as a ratio to a bare endpoint in the same run.

Both servers run under one uvicorn worker in their own process; wrk (Debian's `wrk`)
loads them over loopback. The bare endpoint only reads the body and answers 202. The
receiver authenticates (API-key header), parses, normalizes a GuardDuty finding,
matches it to a playbook and commits it to the SQLite WAL queue (synchronous=FULL)
before answering.

What is measured is accepting alerts, as the target says: the receiver runs with
`dispatch=False`, so no run starts during a load. Starting is a separate stage with its
own cost (a Prefect flow run per alert, seconds of it), measured by
bench/alert_to_containment.py; a dispatcher fed by a starter that costs nothing would
add our bookkeeping at a start rate no real starter has. After the loads, the bench
checks that every alert answered 202 is in the store, then starts a dispatcher on that
file with a starter that only counts and prints how fast it drains the backlog (starts
per second; no target).

    .venv/bin/python bench/receiver_throughput.py [--rounds N] [--seconds N] [--json]

Two loads: distinct findings (a new finding id per request), and an alert storm (the
same finding again and again, deduplicated). Targets: at least 0.5x the bare endpoint's
requests per second, with p99 under 20 ms, for both. Exit status 1 when missed.

Fairness. wrk runs on the same cores as the server, and its own CPU per request depends
on the Lua script: the distinct load builds every body with `string.gsub`, the storm
sends one static body. So the bare endpoint is measured under *each* script, and each
receiver load is compared with the bare endpoint under the same script, in the same run.
Every load uses the same wrk settings (`-t1 -c{connections}`, 32 connections by default:
a SIEM or an EventBridge API destination delivers concurrently, and 8 in flight is
fewer than one busy sender keeps open); the bare endpoint gets exactly the same. The
loads run in rounds, each load once per round; figures are medians per load, and a
ratio is the median of the rounds' ratios (each against the same round's bare load):
the bare endpoint alone varies by half between runs on these shared machines, and a
single round's ratio moves with it. bench/receiver_stages.py says where the time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FINDING = ROOT / "tests" / "corpus" / "payloads" / "guardduty_credential_exfiltration.json"
TOKEN = "bench-token-0123456789"
TARGET_RATIO, TARGET_P99_MS = 0.5, 20.0

BARE = """\
import sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def hook(request):
    await request.body()
    return Response(status_code=202)

app = Starlette(routes=[Route("/hooks/{source}", hook, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error")
"""

RECEIVER = """\
import sys
import uvicorn
from irbook.triggers.app import WebhookReceiver, create_app
from irbook.triggers.config import load_config

started = []
def start(request):
    started.append(request.run_id)
    return request.run_id

hooks = WebhookReceiver(load_config(sys.argv[2]), start, dispatch=False)
uvicorn.run(create_app(hooks=hooks), host="127.0.0.1", port=int(sys.argv[1]),
            log_level="error")
"""

PLAYBOOK = """\
apiVersion: irbook/v1
kind: Playbook
metadata: {id: cred-exfil, title: Credential exfiltration}
triggers:
  - source: guardduty
    match: {type: "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.*"}
steps:
  - {id: note, action: core.note, with: {text: "alert ${{ alert.id }}"}}
"""

# A new finding id per request: wrk's Lua builds each body from a counter, after a tag
# given per wrk run (wrk seeds its random numbers the same way in every run, so without
# the tag the measured run would repeat the warm-up's ids, and find them deduplicated).
DISTINCT_LUA = """\
counter = 0
tag = "run"
function init(args)
  if args[1] then tag = args[1] end
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Irbook-Token"] = "%(token)s"
local template = %(template)s
request = function()
  counter = counter + 1
  local id = tag .. "-" .. tostring(counter)
  local body = string.gsub(template, "BENCHID", id)
  return wrk.format(nil, nil, nil, body)
end
"""

STORM_LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Irbook-Token"] = "%(token)s"
wrk.body = %(body)s
"""


BARE_DISTINCT, BARE_STORM = "bare endpoint, distinct script", "bare endpoint, storm script"
# (load, on the receiver?, wrk script, bare load it is compared with), in the order run.
LOADS = (
    (BARE_DISTINCT, False, "distinct.lua", None),
    ("receiver, distinct alerts", True, "distinct.lua", BARE_DISTINCT),
    (BARE_STORM, False, "storm.lua", None),
    ("receiver, alert storm (duplicates)", True, "storm.lua", BARE_STORM),
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_up(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"server on port {port} did not start")


def lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def wrk(port: int, script: Path, seconds: int, connections: int) -> dict[str, float]:
    tag = f"{os.getpid()}-{time.monotonic_ns()}"  # new finding ids for every wrk run
    done = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/hooks/gd",
            "--",
            tag,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    out = done.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(label: str) -> float:
        match = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out)
        if match is None:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    return {
        "requests": float(total.group(1)) if total else float("nan"),
        "rps": rps,
        "p50_ms": pct("50"),
        "p99_ms": pct("99"),
        "non_2xx": float(non2xx.group(1)) if non2xx else 0.0,
    }


def drain_backlog(path: Path) -> dict[str, float]:
    """Rows the receiver committed, and a dispatcher's starts per second draining them."""
    import threading

    from irbook.triggers.dispatch import Dispatcher, StartRequest
    from irbook.triggers.queue import AlertQueue

    queue = AlertQueue(path)
    try:
        rows = float(queue.depth())
        done = threading.Event()
        count = [0]

        def start(request: StartRequest) -> str:
            count[0] += 1
            if count[0] >= rows:
                done.set()
            return request.run_id

        dispatcher = Dispatcher(queue, start)
        began = time.perf_counter()
        dispatcher.start()
        done.wait(300)
        elapsed = time.perf_counter() - began
        dispatcher.stop()
        return {"rows": rows, "started": float(count[0]), "starts_per_s": count[0] / elapsed}
    finally:
        queue.close()


def write_workspace(work: Path) -> Path:
    """The playbook, the receiver's configuration, the bare endpoint (bare.py) and the
    distinct-findings wrk script (distinct.lua) in `work`; returns the configuration."""
    books = work / "playbooks"
    books.mkdir()
    (books / "cred-exfil.yaml").write_text(PLAYBOOK)
    config = work / "receiver.yaml"
    config.write_text(
        textwrap.dedent(f"""\
        playbooks: [{json.dumps(str(books))}]
        sources:
          gd:
            format: guardduty
            auth: {{scheme: api_key, token_env: BENCH_TOKEN, header: X-Irbook-Token}}
            rate: {{per_second: 100000, burst: 100000}}
        """)
    )
    (work / "bare.py").write_text(BARE)
    finding = json.loads(FINDING.read_text())
    finding["detail"]["id"] = "BENCHID"
    (work / "distinct.lua").write_text(
        DISTINCT_LUA % {"token": TOKEN, "template": lua_string(json.dumps(finding))}
    )
    return config


def paired_ratio(runs: list[dict[str, float]], baseline: list[dict[str, float]]) -> float:
    """The median over rounds of each round's req/s against that round's baseline."""
    return statistics.median(
        mine["rps"] / base["rps"] for mine, base in zip(runs, baseline, strict=True)
    )


def rounds(text: str) -> int:
    """`--rounds`: a median needs at least one."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="per load and round")
    parser.add_argument("--rounds", type=rounds, default=3, help="medians of this many")
    parser.add_argument("--connections", type=int, default=32, help="wrk -c, for every load")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("needs wrk: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="irbook-bench-hooks-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        config = write_workspace(work)
        (work / "receiver.py").write_text(RECEIVER)
        storm = json.loads(FINDING.read_text())
        (work / "storm.lua").write_text(
            STORM_LUA % {"token": TOKEN, "body": lua_string(json.dumps(storm))}
        )
        env = {**os.environ, "BENCH_TOKEN": TOKEN, "IRBOOK_HOME": str(work / "home")}
        bare_port, hook_port = free_port(), free_port()
        procs.append(
            subprocess.Popen([sys.executable, str(work / "bare.py"), str(bare_port)], env=env)
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, str(work / "receiver.py"), str(hook_port), str(config)], env=env
            )
        )
        wait_up(bare_port)
        wait_up(hook_port)
        check = urllib.request.Request(
            f"http://127.0.0.1:{hook_port}/hooks/gd",
            data=json.dumps(storm).encode(),
            headers={"Content-Type": "application/json", "X-Irbook-Token": TOKEN},
            method="POST",
        )
        with urllib.request.urlopen(check, timeout=10) as response:
            assert response.status == 202, response.status
        runs: dict[str, list[dict[str, float]]] = {name: [] for name, *_ in LOADS}
        accepted = 1.0  # the check above
        # Rounds of every load in turn: the machine's drift touches each alike.
        for _ in range(args.rounds):
            for name, on_receiver, script, _ in LOADS:
                port = hook_port if on_receiver else bare_port
                warm = wrk(port, work / script, 2, args.connections)
                runs[name].append(wrk(port, work / script, args.seconds, args.connections))
                if on_receiver and script == "distinct.lua":
                    for row in (warm, runs[name][-1]):
                        accepted += row["requests"] - row["non_2xx"]
        results = {
            name: {
                "rps": statistics.median(row["rps"] for row in rows),
                "p50_ms": statistics.median(row["p50_ms"] for row in rows),
                "p99_ms": statistics.median(row["p99_ms"] for row in rows),
                "non_2xx": sum(row["non_2xx"] for row in rows),
                "requests": sum(row["requests"] for row in rows),
            }
            for name, rows in runs.items()
        }
        receiver = procs.pop()
        receiver.terminate()
        receiver.wait(timeout=30)
        drain = drain_backlog(work / "home" / "irbook.db")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    # wrk counts answers it read before its deadline; a post answered after it is still
    # committed, so the store may hold more rows than counted 202s, never fewer.
    kept = drain["rows"] >= accepted
    ok = kept and drain["started"] == drain["rows"]
    rows = []
    for name, _, _, baseline in LOADS:
        row = results[name]
        ratio = paired_ratio(runs[name], runs[baseline or name])
        good = baseline is None or (
            ratio >= TARGET_RATIO and row["p99_ms"] <= TARGET_P99_MS and row["non_2xx"] == 0
        )
        ok &= good
        rows.append(
            {
                "load": name,
                **{k: round(v, 2) for k, v in row.items()},
                "ratio": round(ratio, 2),
                "ok": good,
            }
        )
    durable = {"accepted_202": accepted, **drain, "none_lost": kept}
    if args.json:
        print(
            json.dumps(
                {
                    "rows": rows,
                    "rounds": args.rounds,
                    "durability": durable,
                    "target_ratio": TARGET_RATIO,
                    "target_p99_ms": TARGET_P99_MS,
                },
                indent=2,
            )
        )
    else:
        for row in rows:
            print(
                f"  {row['load']:<38} {row['rps']:>8.0f} req/s  {row['ratio']:.2f}x  "
                f"p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms"
                + ("" if row["non_2xx"] == 0 else f"  non-2xx {row['non_2xx']:.0f}")
            )
        print(
            f"  targets: >= {TARGET_RATIO}x the bare endpoint under the same wrk script,"
            f" p99 <= {TARGET_P99_MS} ms  (medians of {args.rounds} rounds,"
            f" wrk -t1 -c{args.connections})"
        )
        print(
            f"  store: {drain['rows']:.0f} alerts committed for {accepted:.0f} answered 202"
            f" ({'none lost' if kept else 'ALERTS LOST'}); a dispatcher then started"
            f" {drain['started']:.0f} runs at {drain['starts_per_s']:.0f} starts/s"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
