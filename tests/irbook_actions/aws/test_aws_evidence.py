"""Evidence an investigator can rely on: the bytes, their SHA-256, locked, and a manifest
that says what they are and which run took them."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from typing import Any

import pytest
from botocore.exceptions import ClientError

from irbook.registry import ActionContext, ActionFailed
from irbook_actions.aws import _evidence
from tests.support import aws_world as world
from tests.support.aws import RecordingClients, assert_honest, differences, model, run, spec

EVIDENCE = "evidence-locker"


def _manifest(clients: RecordingClients, uri: str) -> dict[str, Any]:
    bucket, key = uri[5:].split("/", 1)
    return json.loads(clients.aws("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def _lock(clients: RecordingClients, uri: str, version: str) -> tuple[str, dt.datetime]:
    bucket, key = uri[5:].split("/", 1)
    head = clients.aws("s3").head_object(Bucket=bucket, Key=key, VersionId=version)
    return head["ObjectLockMode"], head["ObjectLockRetainUntilDate"]


def test_the_model_artifact_is_copied_locked_and_described(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    world.evidence_bucket(clients)
    served = world.endpoint(clients)
    result, _ = run(
        ctx,
        "aws.sagemaker.snapshot_model",
        endpoint_name=served["name"],
        evidence_bucket=EVIDENCE,
        retention_days=365,
    )
    digest = hashlib.sha256(served["body"]).hexdigest()
    assert list(result.digests.values()) == [digest]
    assert result.models == [served["model"]]
    assert result.bytes == len(served["body"])
    manifest = _manifest(clients, result.manifest_uri)
    assert manifest["run"]["run_id"] == "run-0001"
    assert manifest["run"]["incident_key"] == "INC-42"
    assert manifest["descriptions"]["endpoint"]["EndpointName"] == served["name"]
    assert manifest["descriptions"]["endpoint_config"]["EndpointConfigName"] == served["config"]
    [copied] = manifest["objects"]
    assert copied["source"] == "s3://models-bucket/fraud/model.tar.gz"
    assert (copied["sha256"], copied["size"]) == (digest, len(served["body"]))
    stored = (
        clients.aws("s3")
        .get_object(Bucket=EVIDENCE, Key=copied["key"], VersionId=copied["version_id"])["Body"]
        .read()
    )
    assert stored == served["body"]
    mode, until = _lock(clients, copied["uri"], copied["version_id"])
    assert mode == "COMPLIANCE"
    assert until.date() >= (dt.datetime.now(dt.UTC) + dt.timedelta(days=364)).date()
    text = json.dumps(manifest)
    assert "sk-live-do-not-keep" not in text, "a secret from the model environment was locked away"
    assert "PROVIDER_API_KEY" in text


def test_locked_evidence_cannot_be_deleted(clients: RecordingClients, ctx: ActionContext) -> None:
    world.evidence_bucket(clients)
    served = world.endpoint(clients)
    result, _ = run(
        ctx, "aws.sagemaker.snapshot_model", endpoint_name=served["name"], evidence_bucket=EVIDENCE
    )
    manifest = _manifest(clients, result.manifest_uri)
    targets = [(o["key"], o["version_id"]) for o in manifest["objects"]]
    targets.append((result.manifest_uri.split("/", 3)[3], result.manifest_version_id))
    for key, version in targets:
        with pytest.raises(ClientError, match="AccessDenied"):
            clients.aws("s3").delete_object(Bucket=EVIDENCE, Key=key, VersionId=version)
    assert _lock(clients, result.manifest_uri, result.manifest_version_id)[0] == "COMPLIANCE"


def test_the_manifest_digest_is_the_stored_manifest(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    world.evidence_bucket(clients)
    result, _ = run(
        ctx,
        "aws.sagemaker.snapshot_model",
        endpoint_name=world.endpoint(clients)["name"],
        evidence_bucket=EVIDENCE,
    )
    key = result.manifest_uri.split("/", 3)[3]
    body = clients.aws("s3").get_object(Bucket=EVIDENCE, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == result.manifest_sha256


def test_an_absent_evidence_bucket_is_created_with_object_lock(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    params = {"endpoint_name": world.endpoint(clients)["name"], "evidence_bucket": "new-locker"}
    result, calls = run(ctx, "aws.sagemaker.snapshot_model", **params)
    assert result.bucket_created is True
    lock = clients.aws("s3").get_object_lock_configuration(Bucket="new-locker")
    assert lock["ObjectLockConfiguration"]["ObjectLockEnabled"] == "Enabled"
    # the branch the plan's first note announces: CreateBucket right after the lock check
    assert calls[1].name == "s3:CreateBucket"
    assert calls[1].params == {"Bucket": "new-locker", "ObjectLockEnabledForBucket": True}
    assert not differences(
        spec("aws.sagemaker.snapshot_model").plan(model("aws.sagemaker.snapshot_model", params)),
        calls[:1] + calls[2:],
    )


def test_a_bucket_without_object_lock_is_refused(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    clients.aws("s3").create_bucket(Bucket="plain-bucket")
    with pytest.raises(ActionFailed, match="evidence bucket plain-bucket has no S3 Object Lock"):
        run(
            ctx,
            "aws.sagemaker.snapshot_model",
            endpoint_name=world.endpoint(clients)["name"],
            evidence_bucket="plain-bucket",
        )
    assert "Contents" not in clients.aws("s3").list_objects_v2(Bucket="plain-bucket")


def test_a_rerun_returns_the_same_evidence(clients: RecordingClients, ctx: ActionContext) -> None:
    world.evidence_bucket(clients)
    params = {"endpoint_name": world.endpoint(clients)["name"], "evidence_bucket": EVIDENCE}
    first, _ = run(ctx, "aws.sagemaker.snapshot_model", **params)
    again, calls = run(ctx, "aws.sagemaker.snapshot_model", **params)
    assert again.already_done is True
    assert (again.manifest_uri, again.digests, again.manifest_sha256) == (
        first.manifest_uri,
        first.digests,
        first.manifest_sha256,
    )
    assert [c.name for c in calls] == [
        "s3:GetObjectLockConfiguration",
        "s3:HeadObject",
        "s3:GetObject",
    ]


def test_a_model_shared_by_two_variants_is_copied_once(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    world.evidence_bucket(clients)
    served = world.endpoint(clients, variants=2)
    params = {"endpoint_name": served["name"], "evidence_bucket": EVIDENCE}
    result, calls = run(ctx, "aws.sagemaker.snapshot_model", **params)
    assert_honest("aws.sagemaker.snapshot_model", params, calls)
    assert result.objects == 1
    assert [c.name for c in calls].count("s3:CopyObject") == 1


def test_artifacts_of_every_model_are_kept(clients: RecordingClients, ctx: ActionContext) -> None:
    world.evidence_bucket(clients)
    s3, sm = clients.aws("s3"), clients.aws("sagemaker")
    s3.create_bucket(Bucket="models-bucket")
    for name in ("ranker", "guard"):
        s3.put_object(Bucket="models-bucket", Key=f"{name}/model.tar.gz", Body=name.encode() * 50)
        sm.create_model(
            ModelName=name,
            ExecutionRoleArn="arn:aws:iam::123456789012:role/sm",
            PrimaryContainer={
                "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1",
                "ModelDataUrl": f"s3://models-bucket/{name}/model.tar.gz",
            },
        )
    sm.create_endpoint_config(
        EndpointConfigName="ab-test",
        ProductionVariants=[
            {
                "VariantName": n,
                "ModelName": n,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
                "InitialVariantWeight": 1.0,
            }
            for n in ("ranker", "guard")
        ],
    )
    sm.create_endpoint(EndpointName="ab", EndpointConfigName="ab-test")
    params = {"endpoint_name": "ab", "evidence_bucket": EVIDENCE}
    result, calls = run(ctx, "aws.sagemaker.snapshot_model", **params)
    assert_honest("aws.sagemaker.snapshot_model", params, calls)
    assert result.models == ["ranker", "guard"]
    assert sorted(result.digests.values()) == sorted(
        hashlib.sha256(n.encode() * 50).hexdigest() for n in ("ranker", "guard")
    )


def test_a_missing_artifact_is_named(clients: RecordingClients, ctx: ActionContext) -> None:
    world.evidence_bucket(clients)
    served = world.endpoint(clients)
    clients.aws("s3").delete_object(Bucket="models-bucket", Key="fraud/model.tar.gz")
    where = "model artifact s3://models-bucket/fraud/model.tar.gz not found"
    with pytest.raises(ActionFailed, match=re.escape(where)):
        run(
            ctx,
            "aws.sagemaker.snapshot_model",
            endpoint_name=served["name"],
            evidence_bucket=EVIDENCE,
        )


def test_objects_over_five_gib_are_refused_before_copying(ctx: ActionContext) -> None:
    evidence = _evidence.Evidence(ctx, EVIDENCE, "irbook/run/x/", 90, s3=object())
    with pytest.raises(ActionFailed, match=r"s3://big/weights.bin is 6442450944 bytes"):
        evidence.copy("big", "weights.bin", '"etag"', 6 * 1024**3)


def test_preserve_copies_only_the_prefix(clients: RecordingClients, ctx: ActionContext) -> None:
    world.evidence_bucket(clients)
    s3 = clients.aws("s3")
    s3.create_bucket(Bucket="prompt-logs")
    bodies = {f"2026/11/{d}.jsonl": f"prompts of day {d}\n".encode() for d in ("01", "02")}
    for key, body in bodies.items():
        s3.put_object(Bucket="prompt-logs", Key=key, Body=body)
    s3.put_object(Bucket="prompt-logs", Key="2026/12/01.jsonl", Body=b"not this month")
    result, _ = run(
        ctx,
        "aws.s3.preserve_objects",
        bucket="prompt-logs",
        prefix="2026/11/",
        evidence_bucket=EVIDENCE,
    )
    manifest = _manifest(clients, result.manifest_uri)
    assert {o["source"]: o["sha256"] for o in manifest["objects"]} == {
        f"s3://prompt-logs/{k}": hashlib.sha256(b).hexdigest() for k, b in bodies.items()
    }
    assert manifest["subject"] == {
        "kind": "s3-prefix",
        "bucket": "prompt-logs",
        "prefix": "2026/11/",
    }


def test_two_prefixes_of_one_run_are_kept_apart(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    world.evidence_bucket(clients)
    s3 = clients.aws("s3")
    s3.create_bucket(Bucket="prompt-logs")
    s3.put_object(Bucket="prompt-logs", Key="a/1", Body=b"a")
    s3.put_object(Bucket="prompt-logs", Key="b/1", Body=b"b")
    common = {"bucket": "prompt-logs", "evidence_bucket": EVIDENCE}
    first, _ = run(ctx, "aws.s3.preserve_objects", prefix="a/", **common)
    second, _ = run(ctx, "aws.s3.preserve_objects", prefix="b/", **common)
    assert second.already_done is False
    assert first.manifest_uri != second.manifest_uri


def test_too_many_objects_are_refused_before_copying(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    world.evidence_bucket(clients)
    s3 = clients.aws("s3")
    s3.create_bucket(Bucket="prompt-logs")
    for i in range(4):
        s3.put_object(Bucket="prompt-logs", Key=f"logs/{i}", Body=b"x")
    with pytest.raises(ActionFailed, match="s3://prompt-logs/logs/ holds more than 3 objects"):
        run(
            ctx,
            "aws.s3.preserve_objects",
            bucket="prompt-logs",
            prefix="logs/",
            evidence_bucket=EVIDENCE,
            max_objects=3,
        )
    assert "Versions" not in s3.list_object_versions(Bucket=EVIDENCE)


def test_an_empty_prefix_is_named(clients: RecordingClients, ctx: ActionContext) -> None:
    world.evidence_bucket(clients)
    clients.aws("s3").create_bucket(Bucket="prompt-logs")
    with pytest.raises(ActionFailed, match="no objects under s3://prompt-logs/nothing/"):
        run(
            ctx,
            "aws.s3.preserve_objects",
            bucket="prompt-logs",
            prefix="nothing/",
            evidence_bucket=EVIDENCE,
        )
