"""training-data-exposed: GuardDuty reports a training-data bucket open to anonymous users.

The raw finding starts this playbook and no other; a live run against the seeded fake
cloud closes the bucket with Block Public Access at once, keeps a locked copy of its
objects, opens the incident ticket and, for a bucket tagged as personal data, the privacy
ticket that states GDPR's 72-hour deadline counted from the alert; the drill passes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.support.live_cloud import DRILLS, Cloud, LiveRun, alert_file, irbook, match

FIXTURE = DRILLS / "alerts" / "guardduty-s3-anonymous-access.json"
BUCKET = "acme-llm-training-data"
ALL_ON = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


def test_the_raw_finding_starts_this_playbook_and_no_other() -> None:
    verdict = match(FIXTURE, "guardduty")
    assert verdict["exit"] == 0
    assert verdict["matches"] == [{"playbook": "training-data-exposed", "trigger": 0}]
    bucket = next(r for r in verdict["alert"]["resources"] if r["type"] == "AwsS3Bucket")
    assert bucket["tags"]["personal-data"] == "true"


def _payload(**tags: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(FIXTURE.read_text())
    [details] = payload["detail"]["resource"]["s3BucketDetails"]
    details["tags"] = [{"key": k.replace("_", "-"), "value": v} for k, v in tags.items()]
    return payload


def test_a_bucket_not_tagged_as_training_data_starts_nothing(tmp_path: Path) -> None:
    path = tmp_path / "finding.json"
    path.write_text(json.dumps(_payload(data_purpose="web-assets")))
    verdict = match(path, "guardduty")
    assert verdict["exit"] == 1 and verdict["matches"] == []


def _seed_public_bucket(cloud: Cloud) -> None:
    """The bucket as the finding describes it: no block, a policy letting anyone read."""
    s3 = cloud.boto("s3")
    s3.create_bucket(Bucket=BUCKET)
    for n in range(3):
        s3.put_object(Bucket=BUCKET, Key=f"chat-logs/2026-11/{n}.jsonl", Body=b'{"u": "x"}\n' * 5)
    public_read = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{BUCKET}/*",
            }
        ],
    }
    s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(public_read))


def _block(cloud: Cloud) -> dict[str, bool] | None:
    from botocore.exceptions import ClientError

    try:
        answer = cloud.boto("s3").get_public_access_block(Bucket=BUCKET)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "NoSuchPublicAccessBlockConfiguration"
        return None
    return dict(answer["PublicAccessBlockConfiguration"])


def _text(fields: dict[str, Any]) -> str:
    return json.dumps(fields)  # the description is Atlassian's rich text: its words are in it


def test_live_run_closes_the_bucket_keeps_evidence_and_starts_the_breach_clock(
    cloud: Cloud,
    tmp_path: Path,
) -> None:
    _seed_public_bucket(cloud)
    assert _block(cloud) is None
    alert = alert_file(json.loads(FIXTURE.read_text()), "guardduty", tmp_path)
    evidence = "irbook-library-evidence"

    with LiveRun("training-data-exposed", alert, cloud, f"evidence_bucket={evidence}") as run:
        code, out = run.finish()
    assert code == 0, out
    assert run.states() == {
        **dict.fromkeys(("ticket", "breach-clock", "close", "preserve", "report"), "succeeded"),
        "page-if-still-open": "skipped",  # closed: nobody is paged
    }
    assert not [r for r in cloud.slack.requests if r.path == "/v2/enqueue"]

    # the bucket is closed: all four settings on, the policy kept (it is only overridden)
    assert _block(cloud) == ALL_ON
    assert cloud.boto("s3").get_bucket_policy(Bucket=BUCKET)["Policy"]
    # the three exposed objects are in the evidence bucket under Object Lock
    s3 = cloud.boto("s3")
    locked = s3.get_object_lock_configuration(Bucket=evidence)["ObjectLockConfiguration"]
    assert locked["ObjectLockEnabled"] == "Enabled"
    kept = [o["Key"] for o in s3.list_objects_v2(Bucket=evidence)["Contents"]]
    assert sum(k.endswith(".jsonl") for k in kept) == 3
    assert any(k.endswith("manifest.json") for k in kept)

    # the incident ticket, and the privacy ticket with the deadline 72 hours after the alert
    issues = cloud.jira.issues
    assert sorted(issues) == ["PRIV-1", "SEC-1"]
    breach = issues["PRIV-1"].fields
    assert "2026-12-01T09:14:52Z" in breach["summary"]  # alert at 2026-11-28T09:14:52.104Z
    assert "2026-12-01T09:14:52Z" in _text(breach["description"])
    assert "SEC-1" in _text(breach["description"])
    report = _text(issues["SEC-1"].comments)
    assert "PRIV-1" in report and "manifest.json" in report

    # the undo puts back exactly what was there before: no block at all
    done = irbook("rollback", run.run_id or "", "--yes", env=cloud.env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _block(cloud) is None


def test_a_bucket_without_personal_data_gets_no_breach_clock(
    cloud: Cloud,
    tmp_path: Path,
) -> None:
    _seed_public_bucket(cloud)
    alert = alert_file(_payload(data_purpose="training"), "guardduty", tmp_path)

    with LiveRun("training-data-exposed", alert, cloud) as run:
        code, out = run.finish()
    assert code == 0, out
    assert run.states()["breach-clock"] == "skipped"
    assert _block(cloud) == ALL_ON
    assert sorted(cloud.jira.issues) == ["SEC-1"]
    assert "not started" in _text(cloud.jira.issues["SEC-1"].comments)


def test_the_drill_passes_from_the_raw_finding() -> None:
    done = irbook("drill", str(DRILLS / "training-data-public-bucket.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASSED" in done.stdout
    # the Jira outage the team must notice
    assert re.search(r"^  breach-clock +failed", done.stdout, re.M)


def test_the_failure_drill_pages_when_the_bucket_cannot_be_closed() -> None:
    done = irbook("drill", str(DRILLS / "training-data-close-denied.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^  page-if-still-open +succeeded", done.stdout, re.M)
    assert "ran: failure()" in done.stdout


def test_iam_policy_scopes_block_public_access_to_the_findings_bucket(tmp_path: Path) -> None:
    alert = alert_file(json.loads(FIXTURE.read_text()), "guardduty", tmp_path)
    done = irbook("iam-policy", "training-data-exposed", "--alert", str(alert))
    assert done.returncode == 0, done.stderr
    statements = json.loads(done.stdout)["Statement"]
    [close] = [s for s in statements if "s3:PutBucketPublicAccessBlock" in s["Action"]]
    assert close["Resource"] == f"arn:aws:s3:::{BUCKET}"
    assert sorted(close["Action"]) == [
        "s3:GetBucketPublicAccessBlock",
        "s3:PutBucketPublicAccessBlock",
    ]
