"""A SIEM post to `irbook serve` starts a real run: the receiver process, a signed
GuardDuty finding over HTTP, the Prefect flow run, the run record; a repeat of the same
finding is deduplicated onto that run instead of starting another."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from irbook.runs import RunStore
from tests.support.receiver import PAYLOADS, free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "gd-token-0123456789"

PLAYBOOK = """\
apiVersion: irbook/v1
kind: Playbook
metadata: {id: cred-exfil, title: Instance credentials used outside AWS}
triggers:
  - source: guardduty
    match:
      type: "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.*"
      severity: {gte: 7}
steps:
  - {id: note, action: core.note, with: {text: "alert ${{ alert.id }}"}}
  - {id: gate, action: core.approval, needs: [note], with: {prompt: "Contain?"}}
"""


def post(port: int, body: bytes) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/hooks/gd",
        data=body,
        headers={"Content-Type": "application/json", "X-Irbook-Token": TOKEN},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())


@contextlib.contextmanager
def serving(tmp_path: Path) -> Iterator[int]:
    """`irbook serve` on a free port with one GuardDuty source in dry-run; its output is
    checked for tracebacks when it stops."""
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "cred-exfil.yaml").write_text(PLAYBOOK)
    config = tmp_path / "receiver.yaml"
    config.write_text(
        f"playbooks: [{json.dumps(str(books))}]\n"
        "sources:\n  gd:\n    format: guardduty\n    mode: dry-run\n"
        "    auth: {scheme: api_key, token_env: GD_TOKEN, header: X-Irbook-Token}\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "irbook.cli.main",
            "serve",
            "--port",
            str(port),
            "--config",
            str(config),
        ],
        cwd=ROOT,
        env={**os.environ, "GD_TOKEN": TOKEN},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert "Traceback" not in out + err, err


def test_a_finding_posted_to_the_receiver_runs_its_playbook(tmp_path: Path) -> None:
    with serving(tmp_path) as port:
        deadline = time.monotonic() + 60
        finding = json.loads((PAYLOADS / "guardduty_credential_exfiltration.json").read_text())
        status, answer = post(port, json.dumps(finding).encode())
        assert status == 202, answer
        store = RunStore()
        run = None
        while time.monotonic() < deadline:
            runs = store.recent_runs(5)
            if runs and runs[0]["state"] == "succeeded":
                run = runs[0]
                break
            time.sleep(0.2)
        assert run is not None, store.recent_runs(5)
        assert run["started_by"] == "webhook:gd" and run["mode"] == "dry-run"
        steps = {s["step_id"]: s for s in store.steps(run["id"])}
        assert steps["gate"]["approval"]["how"] == "simulated"  # a dry run decides itself
        # the same finding again: attached to the run, not a second one
        status, again = post(port, json.dumps(finding).encode())
        assert status in (200, 202), again
        time.sleep(1.0)
        assert len(store.recent_runs(5)) == 1


def test_distinct_findings_at_once_run_side_by_side_in_one_server(tmp_path: Path) -> None:
    """Several flows in one `irbook serve` process at the same time: each its own flow
    run and record, none mixed up with another."""
    finding = json.loads((PAYLOADS / "guardduty_credential_exfiltration.json").read_text())
    bodies = []
    for n in range(6):
        finding["detail"]["id"] = f"concurrent-{n}"
        bodies.append(json.dumps(finding).encode())
    with serving(tmp_path) as port:
        with ThreadPoolExecutor(max_workers=6) as pool:
            answers = list(pool.map(lambda body: post(port, body), bodies))
        assert [status for status, _ in answers] == [202] * 6, answers
        store = RunStore()
        deadline = time.monotonic() + 120
        runs: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            runs = store.recent_runs(20)
            if len(runs) == 6 and all(r["state"] != "running" for r in runs):
                break
            time.sleep(0.3)
        assert sorted(str(r["state"]) for r in runs) == ["succeeded"] * 6, runs
        records = [store.run(str(r["id"])) or {} for r in runs]
        assert len({r.get("flow_run_id") for r in records} - {None}) == 6
        for run in runs:
            notes = [s for s in store.steps(str(run["id"])) if s["step_id"] == "note"]
            # each run rendered its own alert, not a neighbour's
            assert str(run["alert_id"]).endswith(str(notes[0]["params"]["text"])[-12:])
