"""What irbook's runtime costs on top of Prefect, as ratios measured in the same run.

1. `irbook run --dry-run` of a 10-step playbook, whole process, against a running local
   Prefect API, divided by a plain Prefect script with one task against the same API.
   Target: at most 1.3x.
2. Orchestration overhead per step: the pace of a chain of 100 dependent steps in a
   dry run in one process (scheduling, Prefect task runs, the run record), minus the
   same planners and simulators called in a plain loop. Target: at most 10 ms per step.

    .venv/bin/python bench/run_overhead.py [--rounds N] [--json]

Uses a Prefect server of its own under a temporary IRBOOK_HOME (started by irbook's
server manager, as the embedded default does), so it neither needs nor disturbs
another one. Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_RATIO = 1.3
TARGET_STEP_MS = 10.0

BASELINE = """\
from prefect import flow, task

@task
def one() -> int:
    return 1

@flow
def baseline() -> int:
    return one()

baseline()
"""


def playbook(steps: int, chains: int = 2) -> str:
    lines = [
        "apiVersion: irbook/v1",
        "kind: Playbook",
        f"metadata: {{id: bench-{steps}, title: Bench {steps} steps}}",
        "steps:",
    ]
    for n in range(steps):
        needs = f", needs: [s{n - chains}]" if n >= chains else ""  # parallel chains
        lines.append(
            f"  - {{id: s{n}, action: core.note{needs}, with: {{text: 'step {n} "
            f"${{{{ run.id }}}}'}}}}"
        )
    return "\n".join(lines) + "\n"


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr.decode()[-2000:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="irbook-bench-run-"))
    os.environ["IRBOOK_HOME"] = str(work / "home")
    os.environ.pop("PREFECT_API_URL", None)
    os.environ.pop("PREFECT_HOME", None)
    from irbook_flows.server import ensure_api

    url = ensure_api()
    env = {**os.environ, "PREFECT_API_URL": url, "PREFECT_LOGGING_LEVEL": "WARNING"}
    try:
        book = work / "bench.yaml"
        book.write_text(playbook(10))
        script = work / "baseline.py"
        script.write_text(BASELINE)
        irbook = str(Path(sys.executable).with_name("irbook"))
        commands = {
            "baseline: plain Prefect flow, 1 task": [sys.executable, str(script)],
            "irbook run --dry-run, 10 steps": [
                irbook,
                "run",
                str(book),
                "--dry-run",
                "--plain",
                "--quiet",
            ],
        }
        for cmd in commands.values():
            timed(cmd, env)  # warm up: the API's caches, the page cache
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, cmd in commands.items():
                samples[name].append(timed(cmd, env))
        medians = {name: statistics.median(v) for name, v in samples.items()}
        base, ours = medians.values()
        ratio = ours / base

        per_step_ms = _per_step(work, 100)
    finally:
        state = work / "home" / "prefect" / "server.json"
        if state.exists():
            pid = json.loads(state.read_text())["pid"]
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGTERM)
        shutil.rmtree(work, ignore_errors=True)
    ok = ratio <= TARGET_RATIO and per_step_ms <= TARGET_STEP_MS
    result = {
        "process_medians_s": {k: round(v, 3) for k, v in medians.items()},
        "ratio": round(ratio, 2),
        "target_ratio": TARGET_RATIO,
        "overhead_ms_per_step": round(per_step_ms, 2),
        "target_ms_per_step": TARGET_STEP_MS,
        "ok": ok,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, value in medians.items():
            print(f"  {name:<42} {value:6.3f} s (median of {args.rounds})")
        print(f"  ratio: {ratio:.2f}x (target <= {TARGET_RATIO})")
        print(
            f"  orchestration overhead: {per_step_ms:.2f} ms per step (target <= {TARGET_STEP_MS})"
        )
    return 0 if ok else 1


def _per_step(work: Path, steps: int) -> float:
    """In one process: the steady pace of a chain of dependent steps, minus the planners.

    Each step needs the one before, so every step pays the whole round trip: scheduling,
    Prefect's task run, the run record. Timed between the first and the last step's
    completion, which leaves out the flow's fixed start and end (its heartbeat thread's
    join alone is about 1 s here, and would hide short runs entirely).
    """
    from irbook.loader import load_playbook
    from irbook.plan import manual_alert
    from irbook.registry import REGISTRY, RunInfo
    from irbook.runs import RunStore
    from irbook_flows.engine import RunSpec
    from irbook_flows.flow import execute, quiet_console

    quiet_console()
    store = RunStore(str(work / "bench.db"))
    path = work / f"chain-{steps}.yaml"
    path.write_text(playbook(steps, chains=1))
    book = load_playbook(str(path)).playbook

    def pace() -> float:
        run_id = store.create_run(
            playbook_id=book.metadata.id,
            playbook_title=book.metadata.title,
            mode="dry-run",
            started_by="bench",
            inputs={},
            rollback="manual",
        )
        done: list[float] = []

        def on_event(kind: str, step: str, state: str, detail: str) -> None:
            if state == "succeeded":
                done.append(time.perf_counter())

        spec = RunSpec(
            run_id=run_id,
            playbook=book,
            alert=manual_alert(),
            inputs={},
            dry_run=True,
            started_by="bench",
            store=store,
            on_event=on_event,
        )
        outcome = execute(spec)
        assert outcome.state == "succeeded", outcome.message
        assert len(done) == steps
        return (done[-1] - done[0]) / (steps - 1)

    def plain_loop() -> float:
        start = time.perf_counter()
        for step in book.steps:
            spec = REGISTRY.get(step.action)
            params = spec.params.model_validate({"text": "x"})
            spec.plan(params)
            spec.simulated(params, RunInfo())
        return (time.perf_counter() - start) / steps

    paces = [pace() for _ in range(3)]
    loop = statistics.median([plain_loop() for _ in range(3)])
    print(
        f"  (chain of {steps} steps: {statistics.median(paces) * 1000:.2f} ms a step; "
        f"planners alone {loop * 1000:.3f} ms a step)",
        file=sys.stderr,
    )
    return (statistics.median(paces) - loop) * 1000


if __name__ == "__main__":
    sys.exit(main())
