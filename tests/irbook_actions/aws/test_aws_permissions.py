"""Declared permissions and planned calls agree, so `irbook iam-policy` grants exactly
what a run uses: every planned call is allowed by a declared permission, and every
declared permission is used by some planned call or documented with its reason."""

from __future__ import annotations

import botocore.session
import pytest

from irbook.registry import PlannedCall
from irbook_actions.aws._base import EXTRA_PERMISSIONS
from tests.support.aws import aws_keys, model, spec
from tests.support.aws_scenarios import EXAMPLES

# Operations whose IAM action has another name. API Gateway authorises HTTP verbs on
# resource paths; S3 authorises object and bucket actions by purpose.
IAM_ACTIONS: dict[str, tuple[str, ...]] = {
    "apigateway:GetApiKey": ("apigateway:GET",),
    "apigateway:UpdateApiKey": ("apigateway:PATCH",),
    "apigateway:GetStage": ("apigateway:GET",),
    "apigateway:UpdateStage": ("apigateway:PATCH",),
    "apigateway:GetTags": ("apigateway:GET",),
    "apigateway:TagResource": ("apigateway:PUT",),
    "apigateway:UntagResource": ("apigateway:DELETE",),
    "s3:HeadObject": ("s3:GetObject",),
    "s3:GetObject": ("s3:GetObject",),
    "s3:CopyObject": ("s3:GetObject", "s3:PutObject"),
    "s3:PutObject": ("s3:PutObject",),
    "s3:ListObjectsV2": ("s3:ListBucket",),
    "s3:GetObjectLockConfiguration": ("s3:GetBucketObjectLockConfiguration",),
    "s3:PutObjectRetention": ("s3:PutObjectRetention",),
    "s3:GetBucketTagging": ("s3:GetBucketTagging",),
    "s3:PutBucketTagging": ("s3:PutBucketTagging",),
    "s3:DeleteBucketTagging": ("s3:PutBucketTagging",),
    "s3:CreateBucket": ("s3:CreateBucket",),
    "s3:GetPublicAccessBlock": ("s3:GetBucketPublicAccessBlock",),
    "s3:PutPublicAccessBlock": ("s3:PutBucketPublicAccessBlock",),
    "s3:DeletePublicAccessBlock": ("s3:PutBucketPublicAccessBlock",),
}

_MODELS = botocore.session.get_session()


def iam_actions(call: PlannedCall) -> tuple[str, ...]:
    return IAM_ACTIONS.get(call.name, (call.name,))


def planned(key: str) -> list[PlannedCall]:
    return [call for params in EXAMPLES[key] for call in spec(key).plan(model(key, params))]


@pytest.mark.parametrize("key", sorted(aws_keys()))
def test_planned_operations_exist_in_the_service_model(key: str) -> None:
    for call in planned(key):
        operations = _MODELS.get_service_model(call.service).operation_names
        assert call.operation in operations, f"{key}: {call.name} is not an AWS operation"


@pytest.mark.parametrize("key", sorted(aws_keys()))
def test_every_planned_call_is_allowed_by_a_declared_permission(key: str) -> None:
    declared = set(spec(key).permissions)
    for call in planned(key):
        missing = set(iam_actions(call)) - declared
        assert not missing, f"{key}: {call.name} needs {sorted(missing)}, not declared"


@pytest.mark.parametrize("key", sorted(aws_keys()))
def test_every_declared_permission_is_used_or_explained(key: str) -> None:
    used = {action for call in planned(key) for action in iam_actions(call)}
    explained = EXTRA_PERMISSIONS.get(key, {})
    unexplained = set(spec(key).permissions) - used - set(explained)
    assert not unexplained, f"{key} declares {sorted(unexplained)} that no planned call uses"
    assert all(reason.strip() for reason in explained.values())
    needless = set(explained) & used
    assert not needless, f"{key} explains {sorted(needless)}, which planned calls already use"


@pytest.mark.parametrize("key", sorted(aws_keys()))
def test_permissions_are_declared_once(key: str) -> None:
    declared = spec(key).permissions
    assert len(declared) == len(set(declared))
