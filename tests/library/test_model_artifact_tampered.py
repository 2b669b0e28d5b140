"""model-artifact-tampered: GuardDuty S3 Protection reports an unusual write to a bucket
tagged as holding a served model.

The raw finding starts this playbook and no other (and the same write to an untagged
bucket starts nothing); a live run against the seeded fake cloud keeps the model's files
and the endpoint's model under Object Lock before anyone decides, records their digests
in the ticket, and drains the endpoint only once someone approves; the drill passes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tests.support.live_cloud import DRILLS, Cloud, LiveRun, alert_file, irbook, match

FIXTURE = DRILLS / "alerts" / "guardduty-s3-model-write.json"
DRILL = DRILLS / "model-artifact-tampered-jira-down.yaml"
SEEDED_MODEL = b"fraud-scoring weights v7\n" * 64  # what `irbook sandbox` writes


def finding(**tags: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(FIXTURE.read_text())
    if tags:
        [bucket] = payload["detail"]["resource"]["s3BucketDetails"]
        bucket["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
    return payload


def test_the_raw_guardduty_finding_starts_this_playbook_and_no_other() -> None:
    verdict = match(FIXTURE, "guardduty")

    assert verdict["exit"] == 0
    assert verdict["matches"] == [{"playbook": "model-artifact-tampered", "trigger": 0}]


def test_a_write_to_a_bucket_without_a_served_model_starts_nothing(tmp_path: Path) -> None:
    path = tmp_path / "finding.json"
    path.write_text(json.dumps(finding(team="ml-platform")))

    verdict = match(path, "guardduty")

    assert verdict["exit"] == 1 and verdict["matches"] == []


def test_live_run_preserves_first_and_drains_the_endpoint_only_after_approval(
    cloud: Cloud,
    tmp_path: Path,
) -> None:
    seeded = cloud.seeded
    payload = finding(ml_endpoint=seeded["endpoint_name"], ml_model_prefix="fraud-scoring/")
    # instance-role credentials: the normalizer lists the key and the instance before the
    # bucket, and the steps must still find the bucket by its tags
    keys = payload["detail"]["resource"]["accessKeyDetails"]
    keys["principalId"] = "AROAJQABLZS4A7QSWZKDT:i-0a1b2c3d4e5f67890"
    [bucket] = payload["detail"]["resource"]["s3BucketDetails"]
    bucket.update(name=seeded["model_bucket"], arn=f"arn:aws:s3:::{seeded['model_bucket']}")
    alert = alert_file(payload, "guardduty", tmp_path)
    s3, sagemaker = cloud.boto("s3"), cloud.boto("sagemaker")

    def weights() -> list[tuple[float, int]]:
        variants = sagemaker.describe_endpoint(EndpointName=seeded["endpoint_name"])
        return [
            (v["CurrentWeight"], v["CurrentInstanceCount"]) for v in variants["ProductionVariants"]
        ]

    serving = weights()
    with LiveRun("model-artifact-tampered", alert, cloud) as run:
        run_id = run.awaiting("isolate-endpoint")
        # kept before anyone decided: the model file, twice (its prefix and the endpoint's
        # model), each a byte-identical copy under a COMPLIANCE lock
        listed = s3.list_objects_v2(Bucket="ir-evidence", Prefix=f"irbook/{run_id}/")
        copies = [o["Key"] for o in listed["Contents"] if o["Key"].endswith("model.tar.gz")]
        assert len(copies) == 2, copies
        for key in copies:
            got = s3.get_object(Bucket="ir-evidence", Key=key)
            assert got["Body"].read() == SEEDED_MODEL
            assert got["ObjectLockMode"] == "COMPLIANCE"
        assert weights() == serving  # the endpoint still serves until someone decides

        approve = irbook("approve", run_id, "--by", "bob", env=cloud.env)
        assert approve.returncode == 0, approve.stderr
        code, out = run.finish()

    assert code == 0, out
    states = run.states()
    assert states.pop("escalate") == "skipped"  # contained: nobody is paged
    assert set(states.values()) == {"succeeded"}, states
    assert weights() == [(0.0, 0)]
    # the ticket holds the digest of the file as the bucket had it
    [issue] = cloud.jira.issues.values()
    comments = json.dumps(issue.comments)
    assert hashlib.sha256(SEEDED_MODEL).hexdigest() in comments
    assert [link["url"] for link in issue.links] == [
        f"https://s3.console.aws.amazon.com/s3/buckets/ir-evidence?prefix=irbook/{run_id}/"
    ]


def test_the_drill_passes() -> None:
    proc = irbook("drill", str(DRILL))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASSED" in proc.stdout
