"""Rotate a leaked secret in Secrets Manager or Parameter Store.

Neither action ever returns, logs or notes the new value: only version ids. Each run's
rotation carries a token derived from the run and step (a Secrets Manager
ClientRequestToken, a Parameter Store version label), so a retried step sees its own
rotation and stops instead of rotating twice.
"""

from __future__ import annotations

import secrets as _random
from typing import Any, Literal

from pydantic import Field

from irbook.registry import ActionContext, ActionFailed, PlannedCall, action
from irbook_actions.aws._base import (
    AwsParams,
    AwsResult,
    call,
    run_token,
    short_hash,
)

NEW_VALUE = "<new random value, never shown>"
VERSION_ID = "<uuid of run id, step and secret>"


def _new_value() -> str:
    """40 URL-safe characters: fits most consumers' alphabets and any size limit."""
    return _random.token_urlsafe(30)


# --- Secrets Manager -----------------------------------------------------------------------------


class RotateSecretParams(AwsParams):
    secret_id: str = Field(min_length=1, max_length=2048, description="the secret's name or ARN")
    method: Literal["auto", "rotation_function", "new_value"] = Field(
        "auto",
        description="auto: the secret's rotation function when it has one, else a new random "
        "value; rotation_function fails without one; new_value always writes a random value",
    )


class RotateSecretResult(AwsResult):
    secret_arn: str
    version_id: str = Field(description="the new version (its value is never shown)")
    method: Literal["rotation_function", "new_value"]
    status: Literal["rotation started", "new value is current"]


def _rotates_itself(description: dict[str, Any]) -> bool:
    """A rotation function, or a service that manages the secret (RDS, Redshift...)."""
    return bool(
        description.get("RotationLambdaARN")
        or description.get("OwningService")
        or description.get("RotationEnabled")
    )


def _plan_secret(params: RotateSecretParams) -> list[PlannedCall]:
    describe = PlannedCall(
        "secretsmanager",
        "DescribeSecret",
        {"SecretId": params.secret_id},
        note="finds the rotation function and this run's version, if any",
    )
    rotate = PlannedCall(
        "secretsmanager",
        "RotateSecret",
        {
            "SecretId": params.secret_id,
            "ClientRequestToken": VERSION_ID,
            "RotateImmediately": True,
        },
        note=(
            "when the secret has no rotation function: secretsmanager:PutSecretValue with a "
            "new random value as AWSCURRENT instead"
            if params.method == "auto"
            else ""
        ),
    )
    put = PlannedCall(
        "secretsmanager",
        "PutSecretValue",
        {
            "SecretId": params.secret_id,
            "ClientRequestToken": VERSION_ID,
            "SecretString": NEW_VALUE,
            "VersionStages": ["AWSCURRENT"],
        },
    )
    return [describe, put if params.method == "new_value" else rotate]


@action(
    "aws.secretsmanager.rotate_secret",
    effect="mutate",
    calls=[
        ("secretsmanager", "DescribeSecret"),
        ("secretsmanager", "RotateSecret"),
        ("secretsmanager", "PutSecretValue"),
    ],
    planner=_plan_secret,
    simulate=lambda p, run: RotateSecretResult(
        secret_arn=p.secret_id
        if p.secret_id.startswith("arn:")
        else "<from secretsmanager:DescribeSecret>",
        version_id=run_token(run, "secret", p.secret_id),
        method="new_value" if p.method == "new_value" else "rotation_function",
        status="new value is current" if p.method == "new_value" else "rotation started",
    ),
    irreversible="the old value is compromised; putting it back would reopen the incident",
    no_evidence="Secrets Manager keeps the old value as version AWSPREVIOUS",
    idempotent=True,
)
def rotate_secret(ctx: ActionContext, params: RotateSecretParams) -> RotateSecretResult:
    """Replace a secret's value: through its rotation function when it has one, since only
    that also changes the credential where it is used (a database password); otherwise by
    writing a new random value as AWSCURRENT, which invalidates a leaked API token."""
    manager = ctx.aws("secretsmanager")
    what = f"secret {params.secret_id}"
    description = call(manager, "DescribeSecret", what, SecretId=params.secret_id)
    token = run_token(ctx.run, "secret", params.secret_id)
    arn = str(description.get("ARN", params.secret_id))
    use_function = params.method == "rotation_function" or (
        params.method == "auto" and _rotates_itself(description)
    )
    if params.method == "rotation_function" and not _rotates_itself(description):
        raise ActionFailed(f"{what} has no rotation function; use method: new_value")
    method: Literal["rotation_function", "new_value"] = (
        "rotation_function" if use_function else "new_value"
    )
    stages = description.get("VersionIdsToStages", {}).get(token)
    if stages is not None:  # this step already rotated it
        current = "AWSCURRENT" in stages
        return RotateSecretResult(
            secret_arn=arn,
            version_id=token,
            method=method,
            status="new value is current" if current else "rotation started",
            already_done=True,
        )
    if use_function:
        call(
            manager,
            "RotateSecret",
            what,
            SecretId=params.secret_id,
            ClientRequestToken=token,
            RotateImmediately=True,
        )
        ctx.note(f"started rotation of {what} (version {token})")
        status: Literal["rotation started", "new value is current"] = "rotation started"
    else:
        call(
            manager,
            "PutSecretValue",
            what,
            SecretId=params.secret_id,
            ClientRequestToken=token,
            SecretString=_new_value(),
            VersionStages=["AWSCURRENT"],
        )
        ctx.note(f"wrote a new random value to {what} as AWSCURRENT (version {token})")
        status = "new value is current"
    return RotateSecretResult(secret_arn=arn, version_id=token, method=method, status=status)


# --- Parameter Store ----------------------------------------------------------------------


class RotateParameterParams(AwsParams):
    name: str = Field(pattern=r"^[\w./-]+$", max_length=2048, description="the parameter's name")


class RotateParameterResult(AwsResult):
    name: str
    version: int = Field(description="the version holding the new value")
    label: str = Field(description="the version label that marks this run's rotation")
    status: Literal["new value is current"] = "new value is current"


def _label(token: str) -> str:
    """Labels may not start with a digit, "aws" or "ssm"."""
    return "irbook-" + short_hash(token, 24)


def _plan_parameter(params: RotateParameterParams) -> list[PlannedCall]:
    label = "irbook-<hash of run id, step and name>"
    return [
        PlannedCall(
            "ssm",
            "GetParameter",
            {"Name": f"{params.name}:{label}"},
            note="a version with this run's label means done (the value stays encrypted)",
        ),
        PlannedCall(
            "ssm",
            "DescribeParameters",
            {"ParameterFilters": [{"Key": "Name", "Option": "Equals", "Values": [params.name]}]},
            note="keeps the parameter's KMS key and tier",
        ),
        PlannedCall(
            "ssm",
            "PutParameter",
            {
                "Name": params.name,
                "Value": NEW_VALUE,
                "Type": "SecureString",
                "KeyId": "<from ssm:DescribeParameters, alias/aws/ssm when unset>",
                "Tier": "<from ssm:DescribeParameters>",
                "Overwrite": True,
            },
        ),
        PlannedCall(
            "ssm",
            "LabelParameterVersion",
            {
                "Name": params.name,
                "ParameterVersion": "<from ssm:PutParameter>",
                "Labels": [label],
            },
        ),
    ]


@action(
    "aws.ssm.rotate_parameter",
    effect="mutate",
    calls=[
        ("ssm", "GetParameter"),
        ("ssm", "DescribeParameters"),
        ("ssm", "PutParameter"),
        ("ssm", "LabelParameterVersion"),
    ],
    planner=_plan_parameter,
    simulate=lambda p, run: RotateParameterResult(
        name=p.name, version=0, label=_label(run_token(run, "parameter", p.name))
    ),
    irreversible="the old value is compromised; putting it back would reopen the incident",
    no_evidence="Parameter Store keeps the old value in the parameter's version history",
    idempotent=True,
)
def rotate_parameter(ctx: ActionContext, params: RotateParameterParams) -> RotateParameterResult:
    """Overwrite a parameter with a new random SecureString value, encrypted with the KMS key
    it already uses. Whatever reads it gets the new value; the leaked one is history."""
    ssm = ctx.aws("ssm")
    what = f"SSM parameter {params.name}"
    label = _label(run_token(ctx.run, "parameter", params.name))
    mine = call(
        ssm,
        "GetParameter",
        what,
        absent=("ParameterNotFound", "ParameterVersionLabelNotFound"),
        Name=f"{params.name}:{label}",
    )
    if mine is not None:
        version = int(mine.get("Parameter", {}).get("Version", 0))
        return RotateParameterResult(
            name=params.name, version=version, label=label, already_done=True
        )
    found = call(
        ssm,
        "DescribeParameters",
        what,
        ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [params.name]}],
    ).get("Parameters", [])
    if not found:
        raise ActionFailed(f"{what} not found")
    current = found[0]
    if current.get("Type") != "SecureString":
        ctx.note(f"{what} was a {current.get('Type')}; the new value is a SecureString")
    put = call(
        ssm,
        "PutParameter",
        what,
        Name=params.name,
        Value=_new_value(),
        Type="SecureString",
        KeyId=current.get("KeyId") or "alias/aws/ssm",
        Tier=current.get("Tier") or "Standard",
        Overwrite=True,
    )
    version = int(put["Version"])
    call(
        ssm,
        "LabelParameterVersion",
        what,
        Name=params.name,
        ParameterVersion=version,
        Labels=[label],
    )
    ctx.note(f"wrote a new random value to {what} (version {version}, label {label})")
    return RotateParameterResult(name=params.name, version=version, label=label)
