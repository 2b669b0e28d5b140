"""Actions whose AWS operations moto 5 does not implement, tested with botocore's Stubber.

Stubber checks each request against the real service model (parameter names and types)
and each canned response against the output shape, so these tests still catch a call AWS
would reject; they cannot catch AWS behaving differently from the canned answers.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from irbook.registry import ActionContext, ActionFailed
from tests.support.aws import assert_honest, run, undo_params

USER = "ml-inference-svc"
BEDROCK = "bedrock.amazonaws.com"
ACTIVE = "ACCAEXAMPLEACTIVE0001"
INACTIVE = "ACCAEXAMPLEINACTIVE01"


@pytest.fixture
def iam_stub(stub_ctx: ActionContext) -> Iterator[Stubber]:
    with Stubber(stub_ctx.aws("iam")) as stub:
        yield stub
        stub.assert_no_pending_responses()


def _credential(cred_id: str, status: str) -> dict[str, Any]:
    return {
        "UserName": USER,
        "Status": status,
        "ServiceUserName": f"{USER}-at-123456789012",
        "CreateDate": dt.datetime(2026, 10, 1, tzinfo=dt.UTC),
        "ServiceSpecificCredentialId": cred_id,
        "ServiceName": BEDROCK,
    }


def _listing(stub: Stubber, *creds: tuple[str, str]) -> None:
    stub.add_response(
        "list_service_specific_credentials",
        {"ServiceSpecificCredentials": [_credential(c, s) for c, s in creds]},
        {"UserName": USER, "ServiceName": BEDROCK},
    )


def _update(stub: Stubber, cred: str, status: str) -> None:
    stub.add_response(
        "update_service_specific_credential",
        {},
        {"UserName": USER, "ServiceSpecificCredentialId": cred, "Status": status},
    )


def test_deactivate_bedrock_api_keys_stubbed_moto_lacks_service_specific_credentials(
    stub_ctx: ActionContext, iam_stub: Stubber
) -> None:
    _listing(iam_stub, (ACTIVE, "Active"), (INACTIVE, "Inactive"))
    _update(iam_stub, ACTIVE, "Inactive")
    params = {"user_name": USER}
    result, calls = run(stub_ctx, "aws.iam.deactivate_service_credentials", **params)
    assert_honest("aws.iam.deactivate_service_credentials", params, calls)
    assert result.changed == [ACTIVE]
    assert result.unchanged == [INACTIVE]
    # the undo reactivates the one key this step turned off, not the one already off
    assert undo_params("aws.iam.deactivate_service_credentials", params, result) == {
        "user_name": USER,
        "service": BEDROCK,
        "service_specific_credential_ids": [ACTIVE],
    }


def test_reactivate_exactly_the_deactivated_keys_stubbed_moto_lacks_service_specific_credentials(
    stub_ctx: ActionContext, iam_stub: Stubber
) -> None:
    _listing(iam_stub, (ACTIVE, "Inactive"), (INACTIVE, "Inactive"))
    _update(iam_stub, ACTIVE, "Active")
    params = {"user_name": USER, "service_specific_credential_ids": [ACTIVE]}
    result, calls = run(stub_ctx, "aws.iam.activate_service_credentials", **params)
    assert_honest("aws.iam.activate_service_credentials", params, calls)
    assert result.changed == [ACTIVE]


def test_a_rerun_changes_nothing_stubbed_moto_lacks_service_specific_credentials(
    stub_ctx: ActionContext, iam_stub: Stubber
) -> None:
    _listing(iam_stub, (ACTIVE, "Inactive"))
    result, calls = run(stub_ctx, "aws.iam.deactivate_service_credentials", user_name=USER)
    assert result.already_done is True
    assert [c.name for c in calls] == ["iam:ListServiceSpecificCredentials"]


def test_one_named_credential_only_stubbed_moto_lacks_service_specific_credentials(
    stub_ctx: ActionContext, iam_stub: Stubber
) -> None:
    _listing(iam_stub, (ACTIVE, "Active"), (INACTIVE, "Active"))
    _update(iam_stub, INACTIVE, "Inactive")
    params = {"user_name": USER, "service_specific_credential_id": INACTIVE}
    result, calls = run(stub_ctx, "aws.iam.deactivate_service_credentials", **params)
    assert_honest("aws.iam.deactivate_service_credentials", params, calls)
    assert result.changed == [INACTIVE]


def test_an_unknown_credential_is_named_stubbed_moto_lacks_service_specific_credentials(
    stub_ctx: ActionContext, iam_stub: Stubber
) -> None:
    _listing(iam_stub, (ACTIVE, "Active"))
    with pytest.raises(ActionFailed, match=f"credential {INACTIVE} for {BEDROCK} not found"):
        run(
            stub_ctx,
            "aws.iam.deactivate_service_credentials",
            user_name=USER,
            service_specific_credential_id=INACTIVE,
        )


def test_a_missing_user_is_named_stubbed_moto_lacks_service_specific_credentials(
    stub_ctx: ActionContext, iam_stub: Stubber
) -> None:
    iam_stub.add_client_error(
        "list_service_specific_credentials",
        service_error_code="NoSuchEntity",
        service_message="The user with name ghost cannot be found.",
        http_status_code=404,
    )
    with pytest.raises(ActionFailed, match="IAM user ghost not found"):
        run(stub_ctx, "aws.iam.deactivate_service_credentials", user_name="ghost")


# --- CloudTrail ----------------------------------------------------------------------------


def _event(
    name: str, source: str, ip: str, minute: int, error: str | None = None
) -> dict[str, Any]:
    detail: dict[str, Any] = {"sourceIPAddress": ip, "userAgent": "Boto3/1.34 md/leaked"}
    if error:
        detail["errorCode"] = error
    return {
        "EventId": f"e-{name}-{minute}",
        "EventName": name,
        "EventSource": source,
        "EventTime": dt.datetime(2026, 11, 27, 22, minute, tzinfo=dt.UTC),
        "CloudTrailEvent": json.dumps(detail),
    }


LOOKUP = {
    "LookupAttributes": [{"AttributeKey": "AccessKeyId", "AttributeValue": "AKIAIOSFODNN7EXAMPLE"}],
    "StartTime": ANY,
    "EndTime": ANY,
    "MaxResults": 50,
}


def test_lookup_events_summarises_two_pages_stubbed_moto_lacks_lookup_events(
    stub_ctx: ActionContext,
) -> None:
    with Stubber(stub_ctx.aws("cloudtrail")) as stub:
        stub.add_response(
            "lookup_events",
            {
                "Events": [
                    _event("InvokeEndpoint", "sagemaker.amazonaws.com", "198.51.100.23", 41),
                    _event("ListUsers", "iam.amazonaws.com", "198.51.100.23", 43, "AccessDenied"),
                ],
                "NextToken": "page-2",
            },
            LOOKUP,
        )
        stub.add_response(
            "lookup_events",
            {"Events": [_event("InvokeEndpoint", "sagemaker.amazonaws.com", "203.0.113.9", 2)]},
            {**LOOKUP, "NextToken": "page-2"},
        )
        params = {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "hours": 24}
        result, calls = run(stub_ctx, "aws.cloudtrail.lookup_events", **params)
        stub.assert_no_pending_responses()
    assert_honest("aws.cloudtrail.lookup_events", params, calls)
    assert result.events == 3
    assert result.event_names == {"InvokeEndpoint": 2, "ListUsers": 1}
    assert result.source_ips == {"198.51.100.23": 2, "203.0.113.9": 1}
    assert result.errors == {"AccessDenied": 1}
    assert (result.first_seen, result.last_seen) == ("2026-11-27T22:02:00Z", "2026-11-27T22:43:00Z")
    assert result.truncated is False
    start, end = calls[0].params["StartTime"], calls[0].params["EndTime"]
    assert end - start == dt.timedelta(hours=24)


def test_lookup_events_stops_at_max_events_stubbed_moto_lacks_lookup_events(
    stub_ctx: ActionContext,
) -> None:
    with Stubber(stub_ctx.aws("cloudtrail")) as stub:
        stub.add_response(
            "lookup_events",
            {
                "Events": [
                    _event("GetObject", "s3.amazonaws.com", "198.51.100.23", m) for m in range(3)
                ],
                "NextToken": "more",
            },
            LOOKUP,
        )
        result, calls = run(
            stub_ctx,
            "aws.cloudtrail.lookup_events",
            access_key_id="AKIAIOSFODNN7EXAMPLE",
            hours=24,
            max_events=2,
        )
    assert (result.events, result.truncated) == (2, True)
    assert len(calls) == 1


def test_lookup_events_denied_is_one_line_stubbed_moto_lacks_lookup_events(
    stub_ctx: ActionContext,
) -> None:
    with Stubber(stub_ctx.aws("cloudtrail")) as stub:
        stub.add_client_error(
            "lookup_events", service_error_code="AccessDeniedException", http_status_code=400
        )
        with pytest.raises(ActionFailed, match="access denied to CloudTrail events of alice"):
            run(stub_ctx, "aws.cloudtrail.lookup_events", user_name="alice", hours=1)


# --- EBS snapshot lock -----------------------------------------------------------------------


def test_snapshots_are_locked_in_compliance_mode_stubbed_moto_lacks_lock_snapshot(
    stub_ctx: ActionContext,
) -> None:
    instance = "i-0abc1234def567890"
    with Stubber(stub_ctx.aws("ec2")) as stub:
        stub.add_response("describe_snapshots", {"Snapshots": []})
        stub.add_response(
            "create_snapshots",
            {
                "Snapshots": [
                    {"SnapshotId": "snap-0aaa1111bbbb2222c", "VolumeId": "vol-0aaa1111bbbb2222c"},
                    {"SnapshotId": "snap-0ddd3333eeee4444f", "VolumeId": "vol-0ddd3333eeee4444f"},
                ]
            },
        )
        for snapshot in ("snap-0aaa1111bbbb2222c", "snap-0ddd3333eeee4444f"):
            stub.add_response(
                "lock_snapshot",
                {"SnapshotId": snapshot, "LockState": "compliance"},
                {"SnapshotId": snapshot, "LockMode": "compliance", "LockDuration": 30},
            )
        params = {"instance_id": instance, "retention_days": 30}
        result, calls = run(stub_ctx, "aws.ec2.snapshot_volumes", **params)
        stub.assert_no_pending_responses()
    assert_honest("aws.ec2.snapshot_volumes", params, calls)
    assert result.snapshots == {
        "vol-0aaa1111bbbb2222c": "snap-0aaa1111bbbb2222c",
        "vol-0ddd3333eeee4444f": "snap-0ddd3333eeee4444f",
    }
    assert result.locked_until is not None
    tags = calls[1].params["TagSpecifications"][0]["Tags"]
    assert {"Key": "irbook:run-id", "Value": "run-0001"} in tags
    assert {"Key": "irbook:incident", "Value": "INC-42"} in tags


# --- Secrets Manager rotation functions -------------------------------------------------------


def _described(rotation: bool, versions: dict[str, list[str]] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf",
        "Name": "db",
        "VersionIdsToStages": versions or {"11111111-1111-1111-1111-111111111111": ["AWSCURRENT"]},
    }
    if rotation:
        answer["RotationEnabled"] = True
        answer["RotationLambdaARN"] = "arn:aws:lambda:us-east-1:123456789012:function:rotate-db"
    return answer


def test_rotate_secret_uses_its_rotation_function_stubbed_moto_cannot_run_rotation_lambdas(
    stub_ctx: ActionContext,
) -> None:
    with Stubber(stub_ctx.aws("secretsmanager")) as stub:
        stub.add_response("describe_secret", _described(True), {"SecretId": "db"})
        stub.add_response(
            "rotate_secret",
            {"ARN": _described(True)["ARN"], "Name": "db", "VersionId": "2" * 36},
            {"SecretId": "db", "ClientRequestToken": ANY, "RotateImmediately": True},
        )
        result, calls = run(stub_ctx, "aws.secretsmanager.rotate_secret", secret_id="db")
        stub.assert_no_pending_responses()
    assert_honest("aws.secretsmanager.rotate_secret", {"secret_id": "db"}, calls)
    assert (result.method, result.status) == ("rotation_function", "rotation started")
    assert calls[1].params["ClientRequestToken"] == result.version_id


def test_a_retried_rotation_sees_its_own_version_stubbed_moto_cannot_run_rotation_lambdas(
    stub_ctx: ActionContext,
) -> None:
    with Stubber(stub_ctx.aws("secretsmanager")) as stub:
        stub.add_response("describe_secret", _described(True), {"SecretId": "db"})
        stub.add_response("rotate_secret", {"Name": "db"}, None)
        first, _ = run(stub_ctx, "aws.secretsmanager.rotate_secret", secret_id="db")
        pending = {first.version_id: ["AWSPENDING"]}
        stub.add_response("describe_secret", _described(True, pending), {"SecretId": "db"})
        again, calls = run(stub_ctx, "aws.secretsmanager.rotate_secret", secret_id="db")
    assert again.already_done is True
    assert [c.name for c in calls] == ["secretsmanager:DescribeSecret"]
