"""IAM containment behaviours a responder relies on, beyond the per-action contract."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pydantic import ValidationError

from irbook.registry import ActionContext, ActionFailed
from tests.support import aws_world as world
from tests.support.aws import RecordingClients, assert_honest, model, run, undo

from .conftest import live_run

USER = "ml-inference-svc"


def test_a_known_user_skips_the_owner_lookup(clients: RecordingClients, ctx: ActionContext) -> None:
    key = world.access_key(clients, world.user(clients))
    params = {"access_key_id": key, "user_name": USER}
    result, calls = run(ctx, "aws.iam.deactivate_access_key", **params)
    assert_honest("aws.iam.deactivate_access_key", params, calls)
    assert [c.name for c in calls] == ["iam:ListAccessKeys", "iam:UpdateAccessKey"]
    assert (result.user_name, result.status) == (USER, "Inactive")


def test_an_alert_without_a_user_name_looks_the_user_up(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    key = world.access_key(clients, world.user(clients))
    result, calls = run(ctx, "aws.iam.deactivate_access_key", access_key_id=key, user_name="")
    assert calls[0].name == "iam:GetAccessKeyLastUsed"
    assert result.user_name == USER
    assert world.key_status(clients, USER, key) == "Inactive"


def test_a_key_of_another_user_is_refused(clients: RecordingClients, ctx: ActionContext) -> None:
    key = world.access_key(clients, world.user(clients))
    world.user(clients, "bob")
    with pytest.raises(ActionFailed, match=f"access key {key} not found for IAM user bob"):
        run(ctx, "aws.iam.deactivate_access_key", access_key_id=key, user_name="bob")
    assert world.key_status(clients, USER, key) == "Active"


def test_the_undo_leaves_a_key_that_was_already_inactive_alone(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    key = world.access_key(clients, world.user(clients))
    clients.aws("iam").update_access_key(UserName=USER, AccessKeyId=key, Status="Inactive")
    params = {"access_key_id": key}
    result, _ = run(ctx, "aws.iam.deactivate_access_key", **params)
    assert result.already_done is True
    undo(ctx, "aws.iam.deactivate_access_key", params, result)
    assert clients.calls == [], "the undo called AWS for a key it never changed"
    assert world.key_status(clients, USER, key) == "Inactive"


def test_deleting_twice_fails_rather_than_pretending(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    """A missing key may be a typo while the leaked key stays active: never "done"."""
    key = world.access_key(clients, world.user(clients))
    run(ctx, "aws.iam.delete_access_key", access_key_id=key, user_name=USER)
    with pytest.raises(ActionFailed, match=f"access key {key} not found for IAM user {USER}"):
        run(ctx, "aws.iam.delete_access_key", access_key_id=key, user_name=USER)


def _revocation(clients: RecordingClients, role: str = "ml-inference-role") -> dict[str, str]:
    document = world.inline_policies(clients, "role", role)["AWSRevokeOlderSessions"]
    statement = document["Statement"][0]
    assert (statement["Effect"], statement["Action"], statement["Resource"]) == (
        "Deny",
        ["*"],
        ["*"],
    )
    return {
        "sid": statement["Sid"],
        "cutoff": statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"],
    }


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_revoking_sessions_denies_tokens_issued_before_now(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    role = world.role(clients)
    started = dt.datetime.now(dt.UTC).replace(microsecond=0)
    result, _ = run(ctx, "aws.iam.revoke_role_sessions", role_name=role)
    cutoff = _utc(_revocation(clients)["cutoff"])
    assert cutoff >= started, "sessions issued when the step ran must be revoked too"
    assert cutoff <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    assert result.issued_before == _revocation(clients)["cutoff"]


def test_another_run_revokes_again_with_a_later_cutoff(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    role = world.role(clients)
    run(ctx, "aws.iam.revoke_role_sessions", role_name=role)
    first = _revocation(clients)
    later = ActionContext(run=live_run("run-0002"), clients=clients, region=ctx.region)
    result, _ = run(later, "aws.iam.revoke_role_sessions", role_name=role)
    assert result.already_done is False
    assert _revocation(clients)["sid"] != first["sid"]


def test_an_earlier_cutoff_than_the_existing_one_is_already_done(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    role = world.role(clients)
    run(ctx, "aws.iam.revoke_role_sessions", role_name=role, issued_before="2026-11-27T22:00:00Z")
    other = ActionContext(run=live_run("run-0002"), clients=clients, region=ctx.region)
    result, calls = run(
        other, "aws.iam.revoke_role_sessions", role_name=role, issued_before="2026-11-01T00:00:00"
    )
    assert result.already_done is True
    assert result.issued_before == "2026-11-27T22:00:00Z"
    assert [c.name for c in calls] == ["iam:GetRolePolicy"]


def test_the_undo_puts_back_an_older_console_revocation(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    role = world.role(clients)
    console = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Action": ["*"],
                "Resource": ["*"],
                "Condition": {"DateLessThan": {"aws:TokenIssueTime": "2026-06-01T00:00:00.000Z"}},
            }
        ],
    }
    clients.aws("iam").put_role_policy(
        RoleName=role, PolicyName="AWSRevokeOlderSessions", PolicyDocument=json.dumps(console)
    )
    params = {"role_name": role}
    result, _ = run(ctx, "aws.iam.revoke_role_sessions", **params)
    assert _revocation(clients)["cutoff"] == result.issued_before
    undo(ctx, "aws.iam.revoke_role_sessions", params, result)
    assert world.inline_policies(clients, "role", role) == {"AWSRevokeOlderSessions": console}


def test_quarantine_a_role_denies_everything(clients: RecordingClients, ctx: ActionContext) -> None:
    role = world.role(clients)
    params = {"role_name": role}
    _, calls = run(ctx, "aws.iam.quarantine_principal", **params)
    assert_honest("aws.iam.quarantine_principal", params, calls)
    statement = world.inline_policies(clients, "role", role)["IrbookQuarantineDenyAll"]["Statement"]
    assert statement == [
        {"Sid": "IrbookQuarantine", "Effect": "Deny", "Action": "*", "Resource": "*"}
    ]


def test_releasing_keeps_a_quarantine_that_predates_the_step(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    user = world.user(clients)
    params = {"user_name": user}
    run(ctx, "aws.iam.quarantine_principal", **params)
    again, _ = run(ctx, "aws.iam.quarantine_principal", **params)
    undo(ctx, "aws.iam.quarantine_principal", params, again)
    assert "IrbookQuarantineDenyAll" in world.inline_policies(clients, "user", user)


def test_bedrock_deny_covers_streaming_and_api_keys_and_nothing_else(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    role = world.role(clients)
    clients.aws("iam").put_role_policy(
        RoleName=role,
        PolicyName="app",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
            }
        ),
    )
    params = {"role_name": role}
    result, _ = run(ctx, "aws.bedrock.deny_model_invocation", **params)
    policies = world.inline_policies(clients, "role", role)
    assert policies["IrbookDenyBedrockInvocation"]["Statement"][0]["Action"] == [
        "bedrock:InvokeModel",
        "bedrock:InvokeModelWithResponseStream",
        "bedrock:CallWithBearerToken",
    ]
    undo(ctx, "aws.bedrock.deny_model_invocation", params, result)
    assert list(world.inline_policies(clients, "role", role)) == ["app"]


def test_a_user_without_a_console_password_is_already_done(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    user = world.user(clients)
    result, calls = run(ctx, "aws.iam.disable_console_login", user_name=user)
    assert result.already_done is True
    assert [c.name for c in calls] == ["iam:GetLoginProfile", "iam:GetUser"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "exactly one of user_name or role_name"),
        ({"user_name": "a", "role_name": "b"}, "exactly one of user_name or role_name"),
        ({"user_name": "bad name!"}, "String should match pattern"),
        ({"user_nmae": "a", "role_name": "b"}, "Extra inputs are not permitted"),
    ],
)
def test_principal_parameters_are_checked_before_any_call(
    params: dict[str, str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        model("aws.iam.quarantine_principal", params)


def test_an_instance_profile_of_another_account_is_refused(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    """GetInstanceProfile takes a name and reads this account's profile of that name: the
    ARN a finding gives must be the profile's, or the wrong role's sessions get revoked."""
    iam = clients.aws("iam")
    iam.create_instance_profile(InstanceProfileName="ml-gpu-profile")
    iam.add_role_to_instance_profile(
        InstanceProfileName="ml-gpu-profile", RoleName=world.role(clients)
    )
    other = "arn:aws:iam::210987654321:instance-profile/ml-gpu-profile"
    with pytest.raises(ActionFailed, match="not the instance's profile"):
        run(ctx, "aws.iam.instance_profile_roles", instance_profile=other)


def test_an_instance_profile_without_a_role_answers_no_roles(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    clients.aws("iam").create_instance_profile(InstanceProfileName="bare-profile")
    result, _ = run(ctx, "aws.iam.instance_profile_roles", instance_profile="bare-profile")
    assert (result.roles, result.status) == ([], "found")


@pytest.mark.parametrize(
    "bad",
    [
        "arn:aws:iam::123456789012:role/ml-inference-role",
        "arn:aws:iam::1234:instance-profile/x",
        "x; rm -rf /",
        "",
    ],
)
def test_an_instance_profile_param_that_is_not_one_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        model("aws.iam.instance_profile_roles", {"instance_profile": bad})
