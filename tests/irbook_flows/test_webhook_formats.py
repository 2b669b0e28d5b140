"""Issue #18 through the user's path: vendor posts to a real `irbook serve` process.

- a Kibana Security rule's summary of three alerts is three stored alerts (three ids) and
  three runs;
- a Datadog signal without a severity is a 422 naming the path (kept as a dead letter),
  and accepted with the source's default_severity;
- an OCSF Detection Finding starts its playbook, whose run sees the finding's fields.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from irbook.runs import RunStore
from tests.support.receiver import PAYLOADS, free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "formats-token-0123456789"

PLAYBOOKS = {
    "kibana-bedrock": """\
apiVersion: irbook/v1
kind: Playbook
metadata: {id: kibana-bedrock, title: Bedrock key used from a new country}
triggers:
  - source: elastic
    match: {severity: {gte: 7}}
steps:
  - {id: note, action: core.note, with: {text: "${{ alert.actor.user_name }}"}}
""",
    "datadog-signal": """\
apiVersion: irbook/v1
kind: Playbook
metadata: {id: datadog-signal, title: Datadog high signal}
triggers:
  - source: datadog
    match: {severity: {gte: 7}}
steps:
  - {id: note, action: core.note, with: {text: "${{ alert.severity_label }}"}}
""",
    "ocsf-cred-exfil": """\
apiVersion: irbook/v1
kind: Playbook
metadata: {id: ocsf-cred-exfil, title: Instance credentials used outside AWS (OCSF)}
triggers:
  - source: ocsf
    match:
      type: "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.*"
      severity: {gte: 7}
steps:
  - id: note
    action: core.note
    with:
      text: "${{ alert.actor.access_key_id }} ${{ alert.account }} ${{ alert.region }}"
""",
}

CONFIG = """\
sources:
  kb:
    format: elastic
    mode: dry-run
    auth: {scheme: api_key, token_env: HOOK_TOKEN, header: X-Irbook-Token}
  dd:
    format: datadog
    mode: dry-run
    auth: {scheme: api_key, token_env: HOOK_TOKEN, header: X-Irbook-Token}
  dd-default:
    format: datadog
    mode: dry-run
    auth: {scheme: api_key, token_env: HOOK_TOKEN, header: X-Irbook-Token}
    options: {default_severity: high}
  lake:
    format: ocsf
    mode: dry-run
    auth: {scheme: api_key, token_env: HOOK_TOKEN, header: X-Irbook-Token}
"""


@dataclass
class Served:
    port: int
    home: Path

    def post(self, source: str, payload: Any) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/hooks/{source}",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", "X-Irbook-Token": TOKEN},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(self.home / "irbook.db", timeout=30)
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()

    def finished_runs(self, count: int, timeout: float = 120) -> list[dict[str, Any]]:
        """The first `count` runs once none is still running."""
        store = RunStore(str(self.home / "irbook.db"))
        deadline = time.monotonic() + timeout
        runs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            runs = store.recent_runs(50)
            if len(runs) >= count and all(r["state"] != "running" for r in runs):
                break
            time.sleep(0.3)
        return runs

    def note(self, run_id: str) -> str:
        steps = RunStore(str(self.home / "irbook.db")).steps(run_id)
        return str(next(s for s in steps if s["step_id"] == "note")["params"]["text"])


@contextlib.contextmanager
def serving(root: Path) -> Iterator[Served]:
    """`irbook serve` with the four sources above, under its own IRBOOK_HOME; its output
    is checked for tracebacks when it stops."""
    books = root / "playbooks"
    books.mkdir()
    for name, text in PLAYBOOKS.items():
        (books / f"{name}.yaml").write_text(text)
    config = root / "receiver.yaml"
    config.write_text(f"playbooks: [{json.dumps(str(books))}]\n" + CONFIG)
    home = root / "home"
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
        env={**os.environ, "HOOK_TOKEN": TOKEN, "IRBOOK_HOME": str(home)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"irbook serve exited: {proc.communicate()[1]}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        yield Served(port, home)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert "Traceback" not in out + err, err


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serving(tmp_path) as server:
        yield server


def test_kibana_security_summary_of_three_alerts_is_three_alerts(served: Served) -> None:
    summary = json.loads((PAYLOADS / "elastic_security_summary.json").read_text())
    uuids = [doc["kibana.alert.uuid"] for doc in summary["context"]["alerts"]]
    status, answer = served.post("kb", summary)
    assert status == 202, answer
    assert sorted(q["alert_id"] for q in answer["queued"]) == sorted(uuids)
    stored = served.rows("SELECT alert_id, alert FROM webhook_alerts WHERE source = 'kb'")
    assert sorted(row[0] for row in stored) == sorted(uuids)  # three distinct ids, kept
    users = {row[0]: json.loads(row[1])["actor"]["user_name"] for row in stored}
    assert users[uuids[1]] == "ml-batch-runner"  # each alert its own document's actor
    runs = served.finished_runs(3)
    assert sorted(str(r["alert_id"]) for r in runs) == sorted(uuids)
    assert {r["state"] for r in runs} == {"succeeded"}
    notes = {served.note(str(r["id"])) for r in runs}
    assert notes == {"data-scientist-ci", "ml-batch-runner", "eval-pipeline"}


def test_datadog_signal_without_severity_is_a_422_unless_a_default_is_set(
    served: Served,
) -> None:
    signal_ = json.loads((PAYLOADS / "datadog_signal.json").read_text())
    del signal_["security_signal_severity"], signal_["alert_priority"]
    status, answer = served.post("dd", signal_)
    assert status == 422, answer
    assert answer["path"] == "$.security_signal_severity"
    assert "$.alert_priority" in answer["error"]
    assert "default_severity" in answer["error"]
    letters = served.rows("SELECT path, reason FROM webhook_dead_letters WHERE source = 'dd'")
    assert letters == [("$.security_signal_severity", answer["error"])]  # nothing lost

    status, answer = served.post("dd-default", signal_)
    assert status == 202, answer
    (stored,) = served.rows("SELECT alert FROM webhook_alerts WHERE source = 'dd-default'")
    alert = json.loads(stored[0])
    assert (alert["severity"], alert["severity_label"]) == (7.0, "high")
    (run,) = served.finished_runs(1)
    assert (run["playbook_id"], run["state"]) == ("datadog-signal", "succeeded")
    assert served.note(str(run["id"])) == "high"


def test_ocsf_detection_finding_runs_its_playbook(served: Served) -> None:
    finding = json.loads((PAYLOADS / "ocsf_detection_finding.json").read_text())
    status, answer = served.post("lake", finding)
    assert status == 202, answer
    (queued,) = answer["queued"]
    assert queued["playbook_id"] == "ocsf-cred-exfil"
    assert queued["alert_id"] == finding["finding_info"]["uid"]
    (stored,) = served.rows("SELECT alert FROM webhook_alerts WHERE source = 'lake'")
    alert = json.loads(stored[0])
    assert alert["type"] == "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS"
    assert (alert["severity"], alert["actor"]["ip"]) == (7.0, "198.51.100.23")
    (run,) = served.finished_runs(1)
    assert (run["playbook_id"], run["state"], run["mode"]) == (
        "ocsf-cred-exfil",
        "succeeded",
        "dry-run",
    )
    assert run["alert_source"] == "lake"  # the configured source; its format is ocsf
    assert served.note(str(run["id"])) == "ASIAIOSFODNN7EXAMPLE 111122223333 us-east-1"

    finding["class_uid"] = 4001  # a network activity, not a finding
    status, answer = served.post("lake", finding)
    assert (status, answer["path"]) == (422, "$.class_uid")
