"""A GuardDuty finding through the receiver runs the worked example to the end.

GuardDuty names the leaked access key as a resource without an ARN (and the bucket it
read, with one). `tag-each` used to get `arn: None` for the key and fail the run; the
playbook now keeps only resources with an ARN.
"""

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
from tests.support.receiver import free_port

ROOT = Path(__file__).resolve().parents[2]
FINDING = ROOT / "runbooks" / "drills" / "alerts" / "guardduty-leaked-model-key.json"
TOKEN = "gd-token-0123456789"


def test_a_guardduty_finding_runs_the_worked_example_with_every_step_done(
    tmp_path: Path,
) -> None:
    config = tmp_path / "receiver.yaml"
    config.write_text(
        f"playbooks: [{json.dumps(str(ROOT / 'playbooks'))}]\n"
        "sources:\n  gd:\n    format: guardduty\n    mode: dry-run\n"
        "    auth: {scheme: api_key, token_env: GD_TOKEN, header: X-Irbook-Token}\n"
        "    playbooks: [leaked-model-key]\n"
    )
    port = free_port()
    argv = [sys.executable, "-m", "irbook.cli.main", "serve", "--port", str(port)]
    proc = subprocess.Popen(
        [*argv, "--config", str(config)],
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
        payload = json.loads(FINDING.read_text())
        payload["detail"]["resource"]["s3BucketDetails"] = [
            {"name": "model-artifacts-prod", "arn": "arn:aws:s3:::model-artifacts-prod"}
        ]
        finding = json.dumps(payload).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/hooks/gd",
            data=finding,
            headers={"Content-Type": "application/json", "X-Irbook-Token": TOKEN},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 202, response.read()
        store = RunStore()
        run = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and run is None:
            runs = store.recent_runs(5)
            if runs and runs[0]["state"] not in ("running", "pending", "scheduled"):
                run = runs[0]
            time.sleep(0.3)
        assert run is not None, store.recent_runs(5)
        steps = {s["step_id"]: s for s in store.steps(run["id"])}
        assert steps["tag-each"]["state"] == "succeeded", steps["tag-each"]
        tagged = json.dumps(steps["tag-each"]["planned_calls"])
        assert "None" not in tagged
        assert "model-artifacts-prod" in tagged  # the bucket, which has an ARN
        assert run["state"] == "succeeded", (run, {k: s["state"] for k, s in steps.items()})
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert "Traceback" not in out + err, err
