"""Which IAM actions an AWS API call needs: the one table that turns an action's declared
calls into the permissions `irbook iam-policy` grants.

Most operations are authorised under their own name (`iam:UpdateAccessKey` for the call
`("iam", "UpdateAccessKey")`). The exceptions are listed in `IAM_ACTIONS`, per the
Service Authorization Reference. For the services in `EXPLICIT_SERVICES` the rule does not
hold at all (API Gateway authorises HTTP verbs on resource paths; S3 authorises object and
bucket actions by purpose), so every one of their operations must be in the table, and an
action that declares one that is not fails at registration, naming the action.
"""

from __future__ import annotations

import re

# (service, operation) -> the IAM actions it needs, where that is not `service:Operation`.
IAM_ACTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("apigateway", "GetApiKey"): ("apigateway:GET",),
    ("apigateway", "UpdateApiKey"): ("apigateway:PATCH",),
    ("apigateway", "GetStage"): ("apigateway:GET",),
    ("apigateway", "UpdateStage"): ("apigateway:PATCH",),
    ("apigateway", "GetTags"): ("apigateway:GET",),
    ("apigateway", "TagResource"): ("apigateway:PUT",),
    ("apigateway", "UntagResource"): ("apigateway:DELETE",),
    ("s3", "HeadObject"): ("s3:GetObject",),
    ("s3", "GetObject"): ("s3:GetObject",),
    ("s3", "CopyObject"): ("s3:GetObject", "s3:PutObject"),
    ("s3", "PutObject"): ("s3:PutObject",),
    ("s3", "ListObjectsV2"): ("s3:ListBucket",),
    ("s3", "GetObjectLockConfiguration"): ("s3:GetBucketObjectLockConfiguration",),
    ("s3", "PutObjectLockConfiguration"): ("s3:PutBucketObjectLockConfiguration",),
    ("s3", "PutObjectRetention"): ("s3:PutObjectRetention",),
    ("s3", "PutObjectTagging"): ("s3:PutObjectTagging",),
    ("s3", "PutBucketVersioning"): ("s3:PutBucketVersioning",),
    ("s3", "GetBucketTagging"): ("s3:GetBucketTagging",),
    ("s3", "PutBucketTagging"): ("s3:PutBucketTagging",),
    ("s3", "DeleteBucketTagging"): ("s3:PutBucketTagging",),
    ("s3", "CreateBucket"): ("s3:CreateBucket",),
    ("s3", "GetPublicAccessBlock"): ("s3:GetBucketPublicAccessBlock",),
    ("s3", "PutPublicAccessBlock"): ("s3:PutBucketPublicAccessBlock",),
    ("s3", "DeletePublicAccessBlock"): ("s3:PutBucketPublicAccessBlock",),
}

# Services whose IAM actions are not named after their operations: table entries only.
EXPLICIT_SERVICES = frozenset({"apigateway", "s3"})

# botocore's service name -> IAM's prefix, where they differ (planned calls use IAM's).
IAM_PREFIX: dict[str, str] = {
    "resourcegroupstaggingapi": "tag",
    "elbv2": "elasticloadbalancing",
    "stepfunctions": "states",
}

_SERVICE = re.compile(r"^[a-z0-9-]+$")
_OPERATION = re.compile(r"^[A-Z][A-Za-z0-9]*$")


def iam_actions(service: str, operation: str) -> tuple[str, ...] | None:
    """The IAM actions the call needs; None when irbook does not know them."""
    known = IAM_ACTIONS.get((service, operation))
    if known is not None:
        return known
    if service in EXPLICIT_SERVICES:
        return None
    return (f"{service}:{operation}",)


def call_problem(call: object) -> str | None:
    """Why `call` is not a (service, Operation) pair with known permissions, or None."""
    if not (
        isinstance(call, tuple)
        and len(call) == 2
        and all(isinstance(part, str) for part in call)
        and _SERVICE.match(call[0])
        and _OPERATION.match(call[1])
    ):
        return (
            f"call {call!r} is not a (service, Operation) pair such as ('iam', 'UpdateAccessKey')"
        )
    if iam_actions(call[0], call[1]) is None:
        return (
            f"call {call[0]}:{call[1]} has no known IAM permission "
            f"({call[0]} is authorised by a table, not by operation names: "
            "add it to irbook.permissions.IAM_ACTIONS)"
        )
    return None
