"""Preserve any S3 prefix as evidence: training data, prompt logs, model outputs."""

from __future__ import annotations

from pydantic import Field, model_validator

from irbook.registry import ActionContext, ActionFailed, PlannedCall, RunInfo, action
from irbook_actions.aws import _evidence
from irbook_actions.aws._base import (
    RUN_ID,
    S3_BUCKET,
    AwsParams,
    from_call,
    if_set,
    permissions,
    short_hash,
)


class PreserveParams(AwsParams):
    bucket: str = Field(pattern=S3_BUCKET, description="the bucket holding the objects")
    prefix: str = Field(max_length=1024, description="the key prefix to preserve")
    evidence_bucket: str = Field(
        pattern=S3_BUCKET,
        description="S3 bucket with Object Lock for evidence (created when absent)",
    )
    retention_days: int = Field(
        90, ge=1, le=36500, description="days the copies stay under COMPLIANCE lock"
    )
    max_objects: int = Field(
        1000, ge=1, le=10_000, description="refuse prefixes holding more objects than this"
    )

    @model_validator(mode="after")
    def not_into_itself(self) -> PreserveParams:
        if self.bucket == self.evidence_bucket:
            raise ValueError("evidence_bucket must differ from bucket")
        return self


class PreserveResult(_evidence.EvidenceResult):
    bucket: str
    prefix: str


def _prefix(run_id: str, params: PreserveParams) -> str:
    """One evidence set per bucket and prefix; the hash keeps two prefixes of a run apart."""
    name = f"{params.bucket}/{short_hash(params.prefix)}"
    return _evidence.prefix_for(run_id, "s3", name.replace("/", "-"))


def _plan(params: PreserveParams) -> list[PlannedCall]:
    prefix = _prefix(RUN_ID, params)
    return [
        *_evidence.plan_open(params.evidence_bucket, prefix),
        PlannedCall(
            "s3",
            "ListObjectsV2",
            {
                "Bucket": params.bucket,
                "Prefix": params.prefix,
                "ContinuationToken": if_set("s3:ListObjectsV2"),
            },
            note="repeated with ContinuationToken for more than 1000 objects",
        ),
        *_evidence.plan_copy(
            params.evidence_bucket,
            prefix,
            params.bucket,
            from_call("s3:ListObjectsV2"),
            from_call("s3:ListObjectsV2", "ETag"),
            params.retention_days,
        ),
        _evidence.plan_manifest(params.evidence_bucket, prefix, params.retention_days),
    ]


def _simulate(params: PreserveParams, run: RunInfo) -> PreserveResult:
    base = _evidence.simulated(
        params.evidence_bucket, _prefix(run.run_id, params), params.retention_days
    )
    return PreserveResult(**base.model_dump(), bucket=params.bucket, prefix=params.prefix)


@action(
    "aws.s3.preserve_objects",
    effect="mutate",
    permissions=permissions(
        "aws.s3.preserve_objects",
        [
            "s3:GetBucketObjectLockConfiguration",
            "s3:GetObject",
            "s3:ListBucket",
            "s3:PutObject",
            "s3:PutObjectRetention",
        ],
        _evidence.EVIDENCE_EXTRA_PERMISSIONS,
    ),
    planner=_plan,
    simulate=_simulate,
    irreversible="evidence copies are kept under S3 Object Lock until their retention ends",
    idempotent=True,
    evidence=True,
)
def preserve_objects(ctx: ActionContext, params: PreserveParams) -> PreserveResult:
    """Copy every object under a prefix into the evidence bucket under Object Lock, with
    SHA-256 digests and a manifest, before a cleanup or an attacker changes them."""
    evidence = _evidence.Evidence.open(
        ctx, params.evidence_bucket, _prefix(ctx.run.run_id, params), params.retention_days
    )
    earlier = evidence.existing()
    if earlier is not None:
        return PreserveResult(**earlier.model_dump(), bucket=params.bucket, prefix=params.prefix)
    listing = _evidence.list_objects(
        evidence.s3, params.bucket, params.prefix, limit=params.max_objects
    )
    if not listing:
        raise ActionFailed(f"no objects under s3://{params.bucket}/{params.prefix}")
    for key, etag, size in listing:
        evidence.copy(params.bucket, key, etag, size)
    result = evidence.finish(
        ctx.run,
        subject={"kind": "s3-prefix", "bucket": params.bucket, "prefix": params.prefix},
        descriptions={},
        notes=[],
    )
    return PreserveResult(**result.model_dump(), bucket=params.bucket, prefix=params.prefix)
