"""A GuardDuty finding names the leaked access key as a resource without an ARN: the worked
example's for_each keeps only resources with one (`where()`), and the lint warns when a
for_each over alert.resources reads a field a resource may lack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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


def guardduty_alert(tmp_path: Path) -> Path:
    """What the receiver makes of a GuardDuty finding about an IAM user's key."""
    from irbook.triggers.normalizers import guardduty

    finding = {
        "detail-type": "GuardDuty Finding",
        "source": "aws.guardduty",
        "detail": {
            "id": "f1",
            "accountId": "123456789012",
            "region": "us-east-1",
            "type": "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
            "title": "key used from outside AWS",
            "severity": 8,
            "updatedAt": "2026-11-27T22:41:07Z",
            "resource": {
                "accessKeyDetails": {
                    "accessKeyId": "AKIAIOSFODNN7EXAMPLE",
                    "userName": "ml-inference-svc",
                    "userType": "IAMUser",
                },
                "s3BucketDetails": [{"name": "models", "arn": "arn:aws:s3:::models"}],
            },
        },
    }
    (alert,) = guardduty.normalize(finding)
    path = tmp_path / "alert.json"
    path.write_text(json.dumps(alert.model_dump(mode="json", exclude={"raw"})))
    return path


def test_the_worked_example_tags_only_the_resources_of_a_finding_that_have_an_arn(
    tmp_path: Path,
) -> None:
    alert = guardduty_alert(tmp_path)
    assert any(r["arn"] is None for r in json.loads(alert.read_text())["resources"])
    done = irbook("plan", "leaked-model-key", "--alert", str(alert), "--format", "json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    tag = next(s for s in plan["steps"] if s["id"] == "tag-each")
    assert tag["status"] == "run", tag
    assert [it["params"]["arn"] for it in tag["iterations"]] == ["arn:aws:s3:::models"]
    assert all(not it.get("error") for it in tag["iterations"])
    assert plan["outcome"] != "failed", plan["summary"]


def test_lint_warns_of_a_for_each_over_alert_resources_reading_an_absent_arn(
    tmp_path: Path,
) -> None:
    text = (ROOT / "playbooks" / "leaked-model-key.yaml").read_text()
    filtered = "\"${{ where(alert.resources, 'arn') }}\""
    assert filtered in text
    unfiltered = tmp_path / "unfiltered.yaml"
    unfiltered.write_text(text.replace(filtered, '"${{ alert.resources }}"'))
    done = irbook("validate", "--strict", str(unfiltered))
    assert done.returncode == 1, done.stdout + done.stderr
    line = next(x for x in done.stdout.splitlines() if "optional-resource-field" in x)
    assert line.startswith(f"{unfiltered}:")
    assert "step 'tag-each' reads item.arn" in line and "where(alert.resources, 'arn')" in line
    # filtering on another field does not cover the ARN
    other = tmp_path / "other.yaml"
    other.write_text(text.replace(filtered, "\"${{ where(alert.resources, 'name') }}\""))
    assert "item.arn" in irbook("validate", str(other)).stdout
    # nor does keeping one type of resource: an instance may have no ARN either
    typed = tmp_path / "typed.yaml"
    typed.write_text(
        text.replace(filtered, "\"${{ where(alert.resources, 'type', 'AwsEc2Instance') }}\"")
    )
    assert "item.arn" in irbook("validate", str(typed)).stdout
    # the shipped playbook, which filters, is clean
    shipped = irbook("validate", "--strict", str(ROOT / "playbooks" / "leaked-model-key.yaml"))
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
