"""`irbook sandbox` starts a fake AWS, seeds it and prints the environment to use it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_sandbox_once_prints_a_usable_environment() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", "sandbox", "--once"],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    exports = dict(
        line.removeprefix("export ").split("=", 1)
        for line in done.stdout.splitlines()
        if line.startswith("export ")
    )
    assert exports["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert exports["AWS_ACCESS_KEY_ID"] == "testing"
    assert "#   endpoint_name = fraud-scoring" in done.stdout
    assert "#   access_key_id = AKIA" in done.stdout
    # boto3 reads AWS_DEFAULT_REGION, not AWS_REGION: a user's own check needs both
    assert exports["AWS_DEFAULT_REGION"] == exports["AWS_REGION"] == "us-east-1"
    # the fake Slack and Jira, on the same local port, with the sandbox's own credentials
    base = exports["AWS_ENDPOINT_URL"]
    assert exports["IRBOOK_SLACK_BASE_URL"].startswith(base + "/")
    assert exports["JIRA_URL"].startswith(base + "/")
    assert "sandbox" in exports["SLACK_BOT_TOKEN"] and "sandbox" in exports["JIRA_EMAIL"]
    assert exports["JIRA_API_TOKEN"]
    assert done.stdout.startswith("# irbook sandbox: a fake AWS, Slack and Jira")
