"""S3: preserve any prefix as evidence (training data, prompt logs, model outputs), and
close a bucket to the public with Block Public Access, keeping what it had for the undo."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from irbook.registry import ActionContext, ActionFailed, PlannedCall, RunInfo, action
from irbook_actions.aws import _evidence
from irbook_actions.aws._base import (
    RUN_ID,
    S3_BUCKET,
    AwsParams,
    AwsResult,
    call,
    from_call,
    if_set,
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
    calls=[
        ("s3", "GetObjectLockConfiguration"),
        ("s3", "HeadObject"),
        ("s3", "ListObjectsV2"),
        ("s3", "CopyObject"),
        ("s3", "PutObject"),
        ("s3", "PutObjectRetention"),
    ],
    extra_permissions=_evidence.EVIDENCE_EXTRA_PERMISSIONS,
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


# --- public access ---------------------------------------------------------------------------

_ABSENT_BLOCK = ("NoSuchPublicAccessBlockConfiguration",)


class PublicAccessBlock(AwsParams):
    """A bucket's four Block Public Access settings, as S3 names them (in snake case)."""

    block_public_acls: bool = Field(description="reject requests that add public ACLs")
    ignore_public_acls: bool = Field(description="ignore every public ACL on the bucket")
    block_public_policy: bool = Field(description="reject bucket policies that grant public access")
    restrict_public_buckets: bool = Field(
        description="only AWS principals and the owner's account may use a public policy"
    )

    def as_aws(self) -> dict[str, bool]:
        return {
            "BlockPublicAcls": self.block_public_acls,
            "IgnorePublicAcls": self.ignore_public_acls,
            "BlockPublicPolicy": self.block_public_policy,
            "RestrictPublicBuckets": self.restrict_public_buckets,
        }

    @classmethod
    def from_aws(cls, answer: dict[str, Any]) -> PublicAccessBlock:
        return cls(
            block_public_acls=bool(answer.get("BlockPublicAcls", False)),
            ignore_public_acls=bool(answer.get("IgnorePublicAcls", False)),
            block_public_policy=bool(answer.get("BlockPublicPolicy", False)),
            restrict_public_buckets=bool(answer.get("RestrictPublicBuckets", False)),
        )


ALL_BLOCKED = PublicAccessBlock(
    block_public_acls=True,
    ignore_public_acls=True,
    block_public_policy=True,
    restrict_public_buckets=True,
)


class BucketParams(AwsParams):
    bucket: str = Field(
        pattern=S3_BUCKET, description="the bucket whose Block Public Access settings change"
    )


class RestorePublicAccessParams(BucketParams):
    previous: PublicAccessBlock | None = Field(
        None,
        description="the bucket's earlier Block Public Access settings; none deletes the "
        "bucket's block (it had none)",
    )


class PublicAccessResult(AwsResult):
    bucket: str
    configuration: PublicAccessBlock | None = Field(
        description="the bucket's settings after the step; none when it has no block"
    )
    previous_configuration: PublicAccessBlock | None = Field(
        None, description="the settings before the step; none when the bucket had no block"
    )


def _current_block(ctx: ActionContext, bucket: str) -> tuple[Any, PublicAccessBlock | None]:
    s3 = ctx.aws("s3")
    answer = call(
        s3, "GetPublicAccessBlock", f"S3 bucket {bucket}", absent=_ABSENT_BLOCK, Bucket=bucket
    )
    if answer is None:
        return s3, None
    return s3, PublicAccessBlock.from_aws(answer.get("PublicAccessBlockConfiguration", {}))


def _get_block(params: BucketParams) -> PlannedCall:
    return PlannedCall(
        "s3",
        "GetPublicAccessBlock",
        {"Bucket": params.bucket},
        note="records the current settings for the undo (none when the bucket has no block)",
    )


def _put_block(bucket: str, wanted: PublicAccessBlock, note: str = "") -> PlannedCall:
    return PlannedCall(
        "s3",
        "PutPublicAccessBlock",
        {"Bucket": bucket, "PublicAccessBlockConfiguration": wanted.as_aws()},
        note=note,
    )


def _undo_block(params: BucketParams, result: PublicAccessResult | None) -> dict[str, Any]:
    """Back to exactly what the bucket had; a dry run (no result) restores to 'no block'."""
    previous = None if result is None else result.previous_configuration
    return {
        "bucket": params.bucket,
        **({"previous": previous.model_dump()} if previous is not None else {}),
    }


@action(
    "aws.s3.block_public_access",
    effect="mutate",
    calls=[
        ("s3", "GetPublicAccessBlock"),
        ("s3", "PutPublicAccessBlock"),
    ],
    planner=lambda p: [
        _get_block(p),
        _put_block(p.bucket, ALL_BLOCKED, note="skipped when all four are already on"),
    ],
    simulate=lambda p, run: PublicAccessResult(bucket=p.bucket, configuration=ALL_BLOCKED),
    compensation="aws.s3.restore_public_access",
    undo=_undo_block,
    idempotent=True,
)
def block_public_access(ctx: ActionContext, params: BucketParams) -> PublicAccessResult:
    """Turn on all four Block Public Access settings of a bucket, which overrides any
    public ACL or bucket policy at once without changing or losing either."""
    s3, previous = _current_block(ctx, params.bucket)
    result = PublicAccessResult(
        bucket=params.bucket, configuration=ALL_BLOCKED, previous_configuration=previous
    )
    if previous == ALL_BLOCKED:
        return result.model_copy(update={"already_done": True})
    what = f"S3 bucket {params.bucket}"
    call(
        s3,
        "PutPublicAccessBlock",
        what,
        Bucket=params.bucket,
        PublicAccessBlockConfiguration=ALL_BLOCKED.as_aws(),
    )
    ctx.note(f"{what}: Block Public Access {_describe(previous)} -> all on")
    return result


def _describe(block: PublicAccessBlock | None) -> str:
    if block is None:
        return "none"
    on = [name for name, value in block.model_dump().items() if value]
    return ", ".join(on) + " on" if on else "all off"


def _plan_restore_block(params: RestorePublicAccessParams) -> list[PlannedCall]:
    if params.previous is None:
        change = PlannedCall(
            "s3",
            "DeletePublicAccessBlock",
            {"Bucket": params.bucket},
            note="the bucket had no block before; skipped when it has none",
        )
    else:
        change = _put_block(params.bucket, params.previous, note="skipped when already equal")
    return [_get_block(params), change]


@action(
    "aws.s3.restore_public_access",
    effect="mutate",
    calls=[
        ("s3", "GetPublicAccessBlock"),
        ("s3", "DeletePublicAccessBlock"),
        ("s3", "PutPublicAccessBlock"),
    ],
    planner=_plan_restore_block,
    simulate=lambda p, run: PublicAccessResult(
        bucket=p.bucket, configuration=p.previous, previous_configuration=ALL_BLOCKED
    ),
    compensation="aws.s3.block_public_access",
    undo=lambda p, r: {"bucket": p.bucket},
    idempotent=True,
)
def restore_public_access(
    ctx: ActionContext, params: RestorePublicAccessParams
) -> PublicAccessResult:
    """Put back a bucket's earlier Block Public Access settings, or delete its block when
    it had none, so the bucket is exactly as exposed as before the step."""
    s3, current = _current_block(ctx, params.bucket)
    result = PublicAccessResult(
        bucket=params.bucket, configuration=params.previous, previous_configuration=current
    )
    if current == params.previous:
        return result.model_copy(update={"already_done": True})
    what = f"S3 bucket {params.bucket}"
    if params.previous is None:
        call(s3, "DeletePublicAccessBlock", what, Bucket=params.bucket)
    else:
        call(
            s3,
            "PutPublicAccessBlock",
            what,
            Bucket=params.bucket,
            PublicAccessBlockConfiguration=params.previous.as_aws(),
        )
    ctx.note(f"{what}: Block Public Access {_describe(current)} -> {_describe(params.previous)}")
    return result
