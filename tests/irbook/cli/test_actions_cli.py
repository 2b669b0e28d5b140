"""`irbook actions ACTION`: a readable description by default, the JSON Schema with
`--format json`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def irbook(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_an_action_is_described_as_a_table() -> None:
    done = irbook("actions", "aws.iam.deactivate_access_key")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "aws.iam.deactivate_access_key  [mutate]"
    assert "  effect:      mutate" in lines
    assert (
        "  permissions: iam:GetAccessKeyLastUsed, iam:ListAccessKeys, iam:UpdateAccessKey" in lines
    )
    assert "  undo:        aws.iam.activate_access_key" in lines
    params = lines[lines.index("Parameters:") + 1 : lines.index("Outputs:")]
    assert params[0].split() == ["name", "type", "default", "description"]
    assert params[1].split()[:3] == ["access_key_id", "string", "required"]
    assert params[2].split()[:5] == ["user_name", "string", "or", "null", "null"]
    assert "looked up with iam:GetAccessKeyLastUsed when absent" in params[2]
    assert not done.stdout.lstrip().startswith("{")


def test_irreversible_and_secret_parameters_are_said() -> None:
    rotate = irbook("actions", "aws.secretsmanager.rotate_secret").stdout
    assert "  undo:        irreversible: the old value is compromised" in rotate
    assert "  evidence:    none to keep first: Secrets Manager keeps the old value" in rotate
    assert '"auto" | "rotation_function" | "new_value"' in rotate
    webhook = irbook("actions", "notify.webhook").stdout
    url = next(line for line in webhook.splitlines() if line.startswith("  url "))
    assert url.endswith("(secret: shown as ***)")


def test_json_format_keeps_the_schema() -> None:
    done = irbook("actions", "aws.iam.deactivate_access_key", "--format", "json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["params"]["required"] == ["access_key_id"]
    assert info["compensation"] == "aws.iam.activate_access_key"
