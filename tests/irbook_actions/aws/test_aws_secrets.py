"""Rotation replaces a leaked value and never shows the new one."""

from __future__ import annotations

import json

import pytest

from irbook.registry import ActionContext, ActionFailed
from tests.support import aws_world as world
from tests.support.aws import RecordingClients, run, spec

from .conftest import live_run


def _shown(result: object, ctx: ActionContext) -> str:
    return json.dumps(result.model_dump(mode="json")) + " ".join(ctx.notes)  # type: ignore[attr-defined]


def test_a_secret_without_rotation_function_gets_a_new_current_value(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    world.secret(clients)
    result, calls = run(ctx, "aws.secretsmanager.rotate_secret", secret_id="ml/provider-key")
    new = world.secret_value(clients)
    assert new != "sk-leaked" and len(new) >= 32
    assert new not in _shown(result, ctx)
    assert (result.method, result.status) == ("new_value", "new value is current")
    previous = clients.aws("secretsmanager").get_secret_value(
        SecretId="ml/provider-key", VersionStage="AWSPREVIOUS"
    )
    assert previous["SecretString"] == "sk-leaked"
    # "auto" planned the rotation function; without one the live run takes the branch the
    # plan's note names instead
    planned = spec("aws.secretsmanager.rotate_secret").plan(
        spec("aws.secretsmanager.rotate_secret").params.model_validate(
            {"secret_id": "ml/provider-key"}
        )
    )
    assert "PutSecretValue" in planned[1].note
    assert [c.name for c in calls] == [
        "secretsmanager:DescribeSecret",
        "secretsmanager:PutSecretValue",
    ]


def test_rotation_function_is_required_when_asked_for(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    world.secret(clients)
    with pytest.raises(ActionFailed, match="secret ml/provider-key has no rotation function"):
        run(
            ctx,
            "aws.secretsmanager.rotate_secret",
            secret_id="ml/provider-key",
            method="rotation_function",
        )
    assert world.secret_value(clients) == "sk-leaked"


def test_another_run_rotates_again(clients: RecordingClients, ctx: ActionContext) -> None:
    world.secret(clients)
    run(ctx, "aws.secretsmanager.rotate_secret", secret_id="ml/provider-key")
    first = world.secret_value(clients)
    later = type(ctx)(run=live_run("run-0002"), clients=clients, region=ctx.region)
    result, _ = run(later, "aws.secretsmanager.rotate_secret", secret_id="ml/provider-key")
    assert result.already_done is False
    assert world.secret_value(clients) != first


def test_a_parameter_keeps_its_key_and_is_never_shown(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    ssm = clients.aws("ssm")
    ssm.put_parameter(
        Name="/ml/api-token", Value="tok-leaked", Type="SecureString", KeyId="alias/ml-secrets"
    )
    result, calls = run(ctx, "aws.ssm.rotate_parameter", name="/ml/api-token")
    new = world.parameter_value(clients)
    assert new != "tok-leaked" and new not in _shown(result, ctx)
    put = next(c for c in calls if c.operation == "PutParameter")
    assert put.params["KeyId"] == "alias/ml-secrets"
    labelled = ssm.get_parameter(Name=f"/ml/api-token:{result.label}")["Parameter"]
    assert labelled["Version"] == result.version == 2


def test_a_plain_string_parameter_becomes_a_secure_string(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    clients.aws("ssm").put_parameter(Name="/ml/plain", Value="leaked", Type="String")
    run(ctx, "aws.ssm.rotate_parameter", name="/ml/plain")
    got = clients.aws("ssm").get_parameter(Name="/ml/plain")["Parameter"]
    assert got["Type"] == "SecureString"
    assert any("was a String" in note for note in ctx.notes)
