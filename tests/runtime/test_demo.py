"""The README demo: the example playbook, live, against `irbook sandbox`'s fake AWS.

Approved through `irbook approve`; the key really ends up inactive and tagged in the
fake AWS, and the evidence snapshot lands in the evidence bucket with a manifest.
Slack and Jira are not configured here, so their steps fail and the run goes on
(notifications are on_failure: continue), which is what an outage looks like too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    from moto.server import ThreadedMotoServer

    from irbook_actions.aws import sandbox as seed

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    # moto's state is per process, shared by every server in it: start from nothing
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))
    created = seed.seed(url)
    for key, value in {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    for key in ("SLACK_BOT_TOKEN", "JIRA_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    yield {**created, "url": url}
    server.stop()


def boto(service: str, url: str) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_the_example_playbook_contains_a_leaked_key_in_the_sandbox(
    tmp_path: Path, sandbox: dict[str, str]
) -> None:
    alert = json.loads((ROOT / "runbooks/drills/alerts/guardduty-exfil.json").read_text())
    alert["actor"]["access_key_id"] = sandbox["access_key_id"]
    alert_file = tmp_path / "alert.json"
    alert_file.write_text(json.dumps(alert))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "irbook.cli.main",
            "run",
            "leaked-model-key",
            "--alert",
            str(alert_file),
            "--param",
            f"endpoint_name={sandbox['endpoint_name']}",
            "--param",
            f"evidence_bucket={sandbox['evidence_bucket']}",
            "--yes",
            "--plain",
            "--quiet",
        ],
        cwd=ROOT,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    from irbook.runs import RunStore

    store = RunStore()
    deadline = time.monotonic() + 90
    run_id = None
    while time.monotonic() < deadline and run_id is None:
        for row in store.recent_runs(3):
            if any(s["state"] == "awaiting-approval" for s in store.steps(row["id"])):
                run_id = row["id"]
        time.sleep(0.2)
    assert run_id is not None, "the run never asked for approval"
    iam = boto("iam", sandbox["url"])
    keys = iam.list_access_keys(UserName=sandbox["user_name"])["AccessKeyMetadata"]
    assert {k["Status"] for k in keys} == {"Active"}  # nothing changed before the decision
    approve = subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", "approve", run_id, "--by", "oncall"],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert approve.returncode == 0, approve.stderr
    out, err = proc.communicate(timeout=180)
    assert "Traceback" not in out + err
    steps = {s["step_id"]: s for s in store.steps(run_id)}
    assert steps["revoke"]["state"] == "succeeded", steps["revoke"]
    assert steps["snapshot"]["state"] == "succeeded", steps["snapshot"]
    assert steps["ticket"]["state"] == "failed"  # no Jira here: it says so and moves on
    keys = iam.list_access_keys(UserName=sandbox["user_name"])["AccessKeyMetadata"]
    key = next(k for k in keys if k["AccessKeyId"] == sandbox["access_key_id"])
    assert key["Status"] == "Inactive"
    tags = iam.list_user_tags(UserName=sandbox["user_name"])["Tags"]
    assert any(t["Key"] == "irbook-incident" for t in tags)
    manifest_uri = steps["snapshot"]["outputs"]["manifest_uri"]
    bucket, key_name = manifest_uri.removeprefix("s3://").split("/", 1)
    manifest = json.loads(
        boto("s3", sandbox["url"]).get_object(Bucket=bucket, Key=key_name)["Body"].read()
    )
    assert manifest["run"]["run_id"] == run_id
    # what the plan predicted for the revoke step is what the live step did
    planned = [c["call"] for c in steps["revoke"]["planned_calls"]]
    real = [c["call"] for c in steps["revoke"]["real_calls"]]
    assert planned == real, (planned, real)
    # failed notifications do not fail the run, and the verdict says they failed (exit 3)
    assert proc.returncode == 3, out + err
    assert ": succeeded with 3 failed steps: ticket, activity, notify" in out, out
    # the Slack post does not need the ticket: it says it has none instead of skipping
    assert steps["notify"]["state"] == "failed", steps["notify"]
