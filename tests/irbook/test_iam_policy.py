"""`irbook iam-policy` scopes resources where the playbook or the alert names them.

moto does not enforce IAM, so these tests read the generated JSON: its statements, the
ARNs' shape, and the reasons given for each `Resource: "*"` that is left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from irbook.iam import arn_shape_errors

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"


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


def resources_of(policy: dict[str, Any], action: str) -> list[str]:
    found: list[str] = []
    for statement in policy["Statement"]:
        if action in statement["Action"]:
            value = statement["Resource"]
            found += value if isinstance(value, list) else [value]
    return found


def all_resources(policy: dict[str, Any]) -> list[str]:
    return [r for s in policy["Statement"] for r in resources_of(policy, s["Action"][0])]


def guardduty_alert(tmp_path: Path, user: str = "ml-inference-svc") -> Path:
    from irbook.triggers.normalizers import guardduty

    finding = {
        "detail-type": "GuardDuty Finding",
        "detail": {
            "id": "f1",
            "accountId": ACCOUNT,
            "region": "eu-west-1",
            "type": "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
            "severity": 8,
            "updatedAt": "2026-11-27T22:41:07Z",
            "resource": {
                "accessKeyDetails": {
                    "accessKeyId": "AKIAIOSFODNN7EXAMPLE",
                    "userName": user,
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


def test_without_an_alert_resources_are_typed_patterns_and_every_star_is_explained() -> None:
    done = irbook("iam-policy", "leaked-model-key")
    assert done.returncode == 0, done.stderr
    policy = json.loads(done.stdout)
    assert arn_shape_errors(all_resources(policy)) == []
    # the key's user is known only from the alert: any IAM user, never any resource
    assert resources_of(policy, "iam:UpdateAccessKey") == ["arn:*:iam::*:user/*"]
    assert resources_of(policy, "sagemaker:DescribeEndpoint") == ["arn:*:sagemaker:*:*:endpoint/*"]
    assert resources_of(policy, "s3:PutObject") == ["arn:*:s3:::*/*"]
    # LookupEvents has no resource-level permissions: "*", and the Sid says so
    (trail,) = [s for s in policy["Statement"] if "cloudtrail:LookupEvents" in s["Action"]]
    assert trail["Resource"] == "*" and trail["Sid"] == "IrbookCloudtrailApiNeedsAnyResource"
    stars = [s["Sid"] for s in policy["Statement"] if s["Resource"] == "*"]
    notes = [line for line in done.stderr.splitlines() if line.startswith("note: ")]
    assert [n.split(":")[1].strip() for n in notes] == stars
    assert "no resource-level permissions" in next(n for n in notes if "Cloudtrail" in n)


def test_an_alert_scopes_the_key_the_evidence_bucket_the_endpoint_and_the_tags(
    tmp_path: Path,
) -> None:
    alert = guardduty_alert(tmp_path)
    done = irbook(
        "iam-policy",
        "leaked-model-key",
        "--alert",
        str(alert),
        "--param",
        "endpoint_name=Fraud-Scoring",
        "--param",
        "evidence_bucket=ir-evidence-prod",
    )
    assert done.returncode == 0, done.stderr
    policy = json.loads(done.stdout)
    assert arn_shape_errors(all_resources(policy)) == []
    user = f"arn:aws:iam::{ACCOUNT}:user"
    for action in ("iam:UpdateAccessKey", "iam:ListAccessKeys", "iam:GetAccessKeyLastUsed"):
        assert sorted(resources_of(policy, action)) == [
            f"{user}/*/ml-inference-svc",  # a user under a path
            f"{user}/ml-inference-svc",
        ]
    assert resources_of(policy, "s3:PutObject") == ["arn:aws:s3:::ir-evidence-prod/*"]
    assert resources_of(policy, "s3:CreateBucket") == ["arn:aws:s3:::ir-evidence-prod"]
    endpoint = f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:endpoint"
    assert sorted(resources_of(policy, "sagemaker:DescribeEndpoint")) == [
        f"{endpoint}/Fraud-Scoring",
        f"{endpoint}/fraud-scoring",  # SageMaker's ARNs spell names in lower case
    ]
    # the finding names one resource with an ARN, a bucket: only S3 tagging, on it
    assert resources_of(policy, "s3:PutBucketTagging") == ["arn:aws:s3:::models"]
    granted = {a for s in policy["Statement"] for a in s["Action"]}
    assert not any(a.startswith(("iam:Tag", "lambda:", "sns:", "wafv2:")) for a in granted)
    # what the model artifacts are is known at run time only
    assert resources_of(policy, "s3:GetObject") == ["*"]
    # narrower than without the alert, never wider: no action appears that was not there
    wide = json.loads(irbook("iam-policy", "leaked-model-key").stdout)
    assert granted <= {a for s in wide["Statement"] for a in s["Action"]}


def test_alert_values_that_are_not_names_do_not_bend_the_arn(tmp_path: Path) -> None:
    alert = guardduty_alert(tmp_path, user="x:*")
    done = irbook("iam-policy", "leaked-model-key", "--alert", str(alert))
    # the plan refuses such a user name for the step, so the policy falls back to a pattern
    assert done.returncode == 0, done.stderr
    policy = json.loads(done.stdout)
    assert resources_of(policy, "iam:UpdateAccessKey") == [f"arn:aws:iam::{ACCOUNT}:user/*"]


def test_param_without_alert_is_one_clear_line() -> None:
    done = irbook("iam-policy", "leaked-model-key", "--param", "evidence_bucket=x")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "irbook: error: --param scopes the policy together with --alert (give both)"
    ]


def test_block_public_access_is_scoped_to_the_bucket_the_alert_names(tmp_path: Path) -> None:
    """Get and Put (which also authorises the undo's Delete) on that bucket only."""
    playbook = tmp_path / "close-bucket.yaml"
    playbook.write_text(
        """apiVersion: irbook/v1
kind: Playbook
metadata: {id: close-bucket, title: Close a bucket, severity: high}
rollback: manual
steps:
  - id: close
    action: aws.s3.block_public_access
    with: {bucket: "${{ where(alert.resources, 'arn')[0].name }}"}
""",
        encoding="utf-8",
    )
    wide = json.loads(irbook("iam-policy", str(playbook)).stdout)
    perms = ("s3:GetBucketPublicAccessBlock", "s3:PutBucketPublicAccessBlock")
    for perm in perms:
        assert resources_of(wide, perm) == ["arn:*:s3:::*"]
    done = irbook("iam-policy", str(playbook), "--alert", str(guardduty_alert(tmp_path)))
    assert done.returncode == 0, done.stderr
    policy = json.loads(done.stdout)
    for perm in perms:
        assert resources_of(policy, perm) == ["arn:aws:s3:::models"]
    assert arn_shape_errors(all_resources(policy)) == []


def test_a_step_that_only_moves_region_is_scoped_to_the_playbooks_role_account(
    tmp_path: Path,
) -> None:
    """The ARNs name the account and region the engine sends the step's calls to
    (Playbook.aws_for): a step's `aws: {region}` keeps the playbook's role, so its
    account is the role's, not the alert's (nor `*`), in the step's own region."""
    path = tmp_path / "where.yaml"
    path.write_text(
        "apiVersion: irbook/v1\nkind: Playbook\nmetadata: {id: where, title: Where}\n"
        'aws: {region: eu-west-1, role_arn: "arn:aws:iam::111122223333:role/ir",'
        " external_id: ir-ext-1}\n"
        "steps:\n"
        "  - id: revoke\n"
        "    action: aws.iam.deactivate_access_key\n"
        "    aws: {region: us-east-2}\n"
        "    with: {access_key_id: AKIAIOSFODNN7EXAMPLE, user_name: ml-svc}\n"
        "  - id: snapshot\n"
        "    action: aws.sagemaker.snapshot_model\n"
        "    aws: {region: us-east-2}\n"
        "    with: {endpoint_name: scoring, evidence_bucket: ir-evidence}\n"
    )
    alert = guardduty_alert(tmp_path)  # in account 123456789012, eu-west-1
    for extra in ((), ("--alert", str(alert))):
        done = irbook("iam-policy", str(path), *extra)
        assert done.returncode == 0, done.stderr
        policy = json.loads(done.stdout)
        assert sorted(resources_of(policy, "iam:UpdateAccessKey")) == [
            "arn:aws:iam::111122223333:user/*/ml-svc",
            "arn:aws:iam::111122223333:user/ml-svc",
        ]
        assert resources_of(policy, "sagemaker:DescribeEndpoint") == [
            "arn:aws:sagemaker:us-east-2:111122223333:endpoint/scoring"
        ]
