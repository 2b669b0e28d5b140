"""Evidence copies under S3 Object Lock, with SHA-256 checksums and a manifest.

The evidence bucket must have Object Lock; it is created with it when absent. Each object
is copied with CopySourceIfMatch (the bytes copied are the bytes listed) and a SHA-256
checksum S3 computes, then its new version is locked in COMPLIANCE mode: nobody, root
included, can delete or overwrite it before the retention date. Retention is set per
version after the copy rather than through bucket defaults, so it holds whatever the
bucket's defaults say. The manifest (descriptions, keys, versions, sizes, digests, run id)
is written last, already locked; a rerun that finds it reads it back instead of copying.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from irbook.registry import ActionContext, ActionFailed, PlannedCall, RunInfo
from irbook_actions.aws._base import (
    RUN_ID,
    AwsResult,
    call,
    from_call,
    iso,
    key_safe,
    now,
    try_call,
)

LOCK_MODE = "COMPLIANCE"
MAX_COPY_BYTES = 5 * 1024**3  # CopyObject's limit; larger objects need a multipart copy
FORMAT = "irbook-evidence/1"

EVIDENCE_EXTRA_PERMISSIONS = {
    "s3:CreateBucket": "creates the evidence bucket when it is absent",
    "s3:PutBucketObjectLockConfiguration": "CreateBucket with Object Lock needs it",
    "s3:PutBucketVersioning": "CreateBucket with Object Lock needs it",
    "s3:GetObjectTagging": "CopyObject copies the source object's tags",
    "s3:PutObjectTagging": "CopyObject copies the source object's tags",
}


class EvidenceResult(AwsResult):
    evidence_bucket: str
    manifest_uri: str = Field(description="s3:// URI of manifest.json")
    manifest_version_id: str = ""
    manifest_sha256: str = Field("", description="hex SHA-256 of manifest.json")
    digests: dict[str, str] = Field(
        default_factory=dict, description="evidence object URI -> hex SHA-256"
    )
    objects: int = 0
    bytes: int = 0
    retain_until: str = ""
    bucket_created: bool = False


def prefix_for(run_id: str, kind: str, name: str) -> str:
    """Where one evidence set lives; the planner passes RUN_ID, shown as is."""
    run = run_id if run_id == RUN_ID else key_safe(run_id)
    return f"irbook/{run}/{kind}/{key_safe(name)}/"


@dataclass
class Evidence:
    """One evidence set: a prefix in the evidence bucket, its objects and its manifest."""

    ctx: ActionContext
    bucket: str
    prefix: str
    retention_days: int
    s3: Any = None
    until: dt.datetime = field(default_factory=now)
    bucket_created: bool = False
    objects: list[dict[str, Any]] = field(default_factory=list)

    @property
    def manifest_key(self) -> str:
        return self.prefix + "manifest.json"

    @property
    def manifest_uri(self) -> str:
        return f"s3://{self.bucket}/{self.manifest_key}"

    @classmethod
    def open(cls, ctx: ActionContext, bucket: str, prefix: str, retention_days: int) -> Evidence:
        evidence = cls(ctx, bucket, prefix, retention_days, s3=ctx.aws("s3"))
        evidence.until = now() + dt.timedelta(days=retention_days)
        evidence._ensure_bucket()
        return evidence

    def _ensure_bucket(self) -> None:
        what = f"evidence bucket {self.bucket}"
        answer, code = try_call(
            self.s3,
            "GetObjectLockConfiguration",
            what,
            ("NoSuchBucket", "ObjectLockConfigurationNotFoundError"),
            Bucket=self.bucket,
        )
        if code == "NoSuchBucket":
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "ObjectLockEnabledForBucket": True}
            region = getattr(getattr(self.s3, "meta", None), "region_name", None)
            if region and region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
            _, taken = try_call(
                self.s3, "CreateBucket", what, ("BucketAlreadyOwnedByYou",), **kwargs
            )
            self.bucket_created = not taken
            self.ctx.note(f"created {what} with S3 Object Lock")
            return
        enabled = (answer or {}).get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
        if code or enabled != "Enabled":
            raise ActionFailed(
                f"{what} has no S3 Object Lock, so evidence in it could be deleted; "
                "use a bucket created with Object Lock (or a new name, created for you)"
            )

    def existing(self) -> EvidenceResult | None:
        """The result of an earlier run of this step, read back from its manifest."""
        what = f"evidence manifest {self.manifest_uri}"
        head = call(
            self.s3,
            "HeadObject",
            what,
            absent=("404", "NoSuchKey", "NotFound"),
            Bucket=self.bucket,
            Key=self.manifest_key,
        )
        if head is None:
            return None
        body = call(self.s3, "GetObject", what, Bucket=self.bucket, Key=self.manifest_key)
        data = body["Body"].read()
        try:
            manifest = json.loads(data)
        except ValueError:
            raise ActionFailed(f"{what} exists but is not JSON; look at it by hand") from None
        objects = manifest.get("objects", [])
        return EvidenceResult(
            evidence_bucket=self.bucket,
            manifest_uri=self.manifest_uri,
            manifest_version_id=str(head.get("VersionId") or ""),
            manifest_sha256=hashlib.sha256(data).hexdigest(),
            digests={str(o["uri"]): str(o["sha256"]) for o in objects},
            objects=len(objects),
            bytes=sum(int(o.get("size", 0)) for o in objects),
            retain_until=str(manifest.get("retention", {}).get("retain_until", "")),
            already_done=True,
        )

    def copy(self, source_bucket: str, source_key: str, etag: str, size: int) -> dict[str, Any]:
        source = f"s3://{source_bucket}/{source_key}"
        if size > MAX_COPY_BYTES:
            raise ActionFailed(
                f"{source} is {size} bytes; CopyObject copies at most 5 GiB and irbook does not "
                "do multipart copies yet: preserve it by hand"
            )
        key = f"{self.prefix}objects/{source_bucket}/{source_key}"
        answer = call(
            self.s3,
            "CopyObject",
            source,
            Bucket=self.bucket,
            Key=key,
            CopySource={"Bucket": source_bucket, "Key": source_key},
            CopySourceIfMatch=etag,
            ChecksumAlgorithm="SHA256",
        )
        version = answer.get("VersionId")
        checksum = answer.get("CopyObjectResult", {}).get("ChecksumSHA256")
        if not version:
            raise ActionFailed(
                f"evidence bucket {self.bucket} gave the copy of {source} no version"
            )
        if not checksum:
            raise ActionFailed(f"S3 returned no SHA-256 checksum for the copy of {source}")
        call(
            self.s3,
            "PutObjectRetention",
            f"s3://{self.bucket}/{key}",
            Bucket=self.bucket,
            Key=key,
            VersionId=version,
            Retention={"Mode": LOCK_MODE, "RetainUntilDate": self.until},
        )
        record = {
            "source": source,
            "source_etag": etag,
            "source_version_id": answer.get("CopySourceVersionId"),
            "uri": f"s3://{self.bucket}/{key}",
            "key": key,
            "version_id": version,
            "size": size,
            "sha256": base64.b64decode(checksum).hex(),
            "checksum_sha256": checksum,
        }
        self.objects.append(record)
        return record

    def finish(
        self,
        run: RunInfo,
        subject: dict[str, Any],
        descriptions: dict[str, Any],
        notes: list[str],
    ) -> EvidenceResult:
        manifest = {
            "format": FORMAT,
            "created_at": iso(now()),
            "run": {
                "run_id": run.run_id,
                "playbook_id": run.playbook_id,
                "step_id": run.step_id,
                "incident_key": run.incident_key,
            },
            "subject": subject,
            "retention": {
                "mode": LOCK_MODE,
                "days": self.retention_days,
                "retain_until": iso(self.until),
            },
            "descriptions": descriptions,
            "objects": self.objects,
            "notes": notes,
        }
        body = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
        digest = hashlib.sha256(body)
        answer = call(
            self.s3,
            "PutObject",
            f"evidence manifest {self.manifest_uri}",
            Bucket=self.bucket,
            Key=self.manifest_key,
            Body=body,
            ContentType="application/json",
            ChecksumAlgorithm="SHA256",
            ObjectLockMode=LOCK_MODE,
            ObjectLockRetainUntilDate=self.until,
        )
        stored = answer.get("ChecksumSHA256")
        if stored and stored != base64.b64encode(digest.digest()).decode():
            raise ActionFailed(f"S3 stored {self.manifest_uri} with another checksum than sent")
        self.ctx.note(
            f"evidence: {len(self.objects)} objects under {LOCK_MODE} lock until "
            f"{iso(self.until)}; manifest {self.manifest_uri}"
        )
        return EvidenceResult(
            evidence_bucket=self.bucket,
            manifest_uri=self.manifest_uri,
            manifest_version_id=str(answer.get("VersionId") or ""),
            manifest_sha256=digest.hexdigest(),
            digests={o["uri"]: o["sha256"] for o in self.objects},
            objects=len(self.objects),
            bytes=sum(int(o["size"]) for o in self.objects),
            retain_until=iso(self.until),
            bucket_created=self.bucket_created,
        )


def list_objects(s3: Any, bucket: str, prefix: str, limit: int) -> list[tuple[str, str, int]]:
    """(key, ETag, size) of every object under a prefix; more than `limit` is an error."""
    found: list[tuple[str, str, int]] = []
    token: str | None = None
    what = f"s3://{bucket}/{prefix}"
    while True:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if token:
            kwargs["ContinuationToken"] = token
        page = call(s3, "ListObjectsV2", what, **kwargs)
        for item in page.get("Contents", []):
            found.append((str(item["Key"]), str(item["ETag"]), int(item["Size"])))
        if len(found) > limit:
            raise ActionFailed(
                f"{what} holds more than {limit} objects; narrow the prefix or raise max_objects"
            )
        token = page.get("NextContinuationToken") if page.get("IsTruncated") else None
        if not token:
            return found


# --- what the planner shows -------------------------------------------------------------------


def plan_open(bucket: str, prefix: str) -> list[PlannedCall]:
    return [
        PlannedCall(
            "s3",
            "GetObjectLockConfiguration",
            {"Bucket": bucket},
            note="s3:CreateBucket with Object Lock instead when the bucket is absent",
        ),
        PlannedCall(
            "s3",
            "HeadObject",
            {"Bucket": bucket, "Key": prefix + "manifest.json"},
            note="a manifest from an earlier try of this step is read back (s3:GetObject)",
        ),
    ]


def plan_copy(
    bucket: str, prefix: str, source_bucket: str, source_key: str, etag: str, days: int
) -> list[PlannedCall]:
    key = f"{prefix}objects/{source_bucket}/{source_key}"
    return [
        PlannedCall(
            "s3",
            "CopyObject",
            {
                "Bucket": bucket,
                "Key": key,
                "CopySource": {"Bucket": source_bucket, "Key": source_key},
                "CopySourceIfMatch": etag,
                "ChecksumAlgorithm": "SHA256",
            },
            note="once per object",
        ),
        PlannedCall(
            "s3",
            "PutObjectRetention",
            {
                "Bucket": bucket,
                "Key": key,
                "VersionId": from_call("s3:CopyObject"),
                "Retention": {"Mode": LOCK_MODE, "RetainUntilDate": f"<now + {days} days>"},
            },
            note="once per object",
        ),
    ]


def plan_manifest(bucket: str, prefix: str, days: int) -> PlannedCall:
    return PlannedCall(
        "s3",
        "PutObject",
        {
            "Bucket": bucket,
            "Key": prefix + "manifest.json",
            "Body": "<manifest.json>",
            "ContentType": "application/json",
            "ChecksumAlgorithm": "SHA256",
            "ObjectLockMode": LOCK_MODE,
            "ObjectLockRetainUntilDate": f"<now + {days} days>",
        },
    )


def simulated(bucket: str, prefix: str, days: int) -> EvidenceResult:
    return EvidenceResult(
        evidence_bucket=bucket,
        manifest_uri=f"s3://{bucket}/{prefix}manifest.json",
        retain_until=f"<now + {days} days>",
    )
