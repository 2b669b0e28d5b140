"""A SIEM post to `irbook serve` starts a real run: the receiver process, a signed
GuardDuty finding over HTTP, the Prefect flow run, the run record; a repeat of the same
finding is deduplicated onto that run instead of starting another."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from irbook.runs import RunStore
from tests.receiver._support import PAYLOADS, free_port

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


def test_a_finding_posted_to_the_receiver_runs_its_playbook(tmp_path: Path) -> None:
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
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert "Traceback" not in out + err, err
