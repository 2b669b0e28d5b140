"""An AWS action's permissions are derived from the calls it declares, so `irbook
iam-policy` grants exactly what a run uses: every call its planner makes is declared,
every declared call is made by some planned example, each is a real AWS operation, and
the extras (permissions no planned call shows) come with their reasons."""

from __future__ import annotations

import botocore.session
import pytest

from irbook.permissions import EXPLICIT_SERVICES, IAM_ACTIONS, IAM_PREFIX, iam_actions
from irbook.registry import PlannedCall
from tests.support.aws import aws_keys, model, spec
from tests.support.aws_scenarios import EXAMPLES

_MODELS = botocore.session.get_session()
_BOTOCORE_NAME = {prefix: name for name, prefix in IAM_PREFIX.items()}


def planned(key: str) -> list[PlannedCall]:
    return [call for params in EXAMPLES[key] for call in spec(key).plan(model(key, params))]


@pytest.mark.parametrize("key", sorted(aws_keys()))
def test_declared_calls_are_operations_of_the_service_model(key: str) -> None:
    for service, operation in spec(key).calls:
        operations = _MODELS.get_service_model(_BOTOCORE_NAME.get(service, service))
        assert operation in operations.operation_names, (
            f"{key}: {service}:{operation} is not an AWS operation"
        )


@pytest.mark.parametrize("key", sorted(aws_keys()))
def test_the_examples_plan_every_declared_call(key: str) -> None:
    # spec.plan() itself refuses a planned call that is not declared; this is the converse
    made = {(call.service, call.operation) for call in planned(key)}
    unused = set(spec(key).calls) - made
    assert not unused, f"{key} declares {sorted(unused)}, which no example plans"


@pytest.mark.parametrize("key", sorted(aws_keys()))
def test_permissions_are_the_calls_iam_actions_then_the_explained_extras(key: str) -> None:
    action = spec(key)
    derived = [perm for call in action.calls for perm in iam_actions(*call) or ()]
    extras = [perm for perm, reason in action.extra_permissions if reason.strip()]
    assert set(action.permissions) == set(derived) | set(extras)
    assert len(action.permissions) == len(set(action.permissions))


def test_the_table_covers_what_is_not_service_colon_operation() -> None:
    assert iam_actions("iam", "UpdateAccessKey") == ("iam:UpdateAccessKey",)
    assert iam_actions("s3", "PutPublicAccessBlock") == ("s3:PutBucketPublicAccessBlock",)
    assert iam_actions("s3", "CopyObject") == ("s3:GetObject", "s3:PutObject")
    assert iam_actions("apigateway", "UpdateStage") == ("apigateway:PATCH",)
    assert iam_actions("s3", "GetBucketAcl") is None  # not in the table: unknown, not guessed
    assert {service for service, _ in IAM_ACTIONS} <= EXPLICIT_SERVICES
