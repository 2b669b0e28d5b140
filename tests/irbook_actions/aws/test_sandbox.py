"""The sandbox deployment: everything the playbooks act on, in moto, and usable by them."""

from __future__ import annotations

import pytest

from irbook.errors import IrbookError
from irbook.registry import ActionContext
from irbook_actions.aws.sandbox import seed
from tests.support import aws_world as world
from tests.support.aws import RecordingClients, run


@pytest.fixture
def sandbox(clients: RecordingClients, moto_url: str) -> dict[str, str]:
    return seed(moto_url)


def test_seed_creates_an_ai_deployment(clients: RecordingClients, sandbox: dict[str, str]) -> None:
    iam = clients.aws("iam")
    keys = iam.list_access_keys(UserName=sandbox["user_name"])["AccessKeyMetadata"]
    assert [k["AccessKeyId"] for k in keys] == [sandbox["access_key_id"]]
    assert iam.get_role(RoleName=sandbox["role_name"])["Role"]["Arn"] == sandbox["role_arn"]
    endpoint = clients.aws("sagemaker").describe_endpoint(EndpointName=sandbox["endpoint_name"])
    assert endpoint["EndpointStatus"] == "InService"
    model = clients.aws("sagemaker").describe_model(ModelName=sandbox["model_name"])
    bucket, key = model["PrimaryContainer"]["ModelDataUrl"][5:].split("/", 1)
    assert clients.aws("s3").head_object(Bucket=bucket, Key=key)["ContentLength"] > 0
    stage = clients.aws("apigateway").get_stage(
        restApiId=sandbox["rest_api_id"], stageName=sandbox["stage_name"]
    )
    assert stage["stageName"] == "prod"
    assert clients.aws("apigateway").get_api_key(apiKey=sandbox["api_key_id"])["enabled"] is True
    assert clients.aws("lambda").get_function(FunctionName=sandbox["function_name"])
    instance = clients.aws("ec2").describe_instances(InstanceIds=[sandbox["instance_id"]])
    assert instance["Reservations"][0]["Instances"][0]["SubnetId"] == sandbox["subnet_id"]
    assert clients.aws("secretsmanager").describe_secret(SecretId=sandbox["secret_id"])
    parameter = clients.aws("ssm").get_parameter(Name=sandbox["parameter_name"])["Parameter"]
    assert parameter["Type"] == "SecureString"
    assert sandbox["access_key_id"].startswith("AKIA")


def test_a_playbook_can_contain_the_sandbox(
    clients: RecordingClients, ctx: ActionContext, sandbox: dict[str, str]
) -> None:
    """The leaked-model-key path, end to end: revoke, keep evidence, isolate, rotate."""
    key, _ = run(ctx, "aws.iam.deactivate_access_key", access_key_id=sandbox["access_key_id"])
    assert world.key_status(clients, sandbox["user_name"], sandbox["access_key_id"]) == "Inactive"
    evidence, _ = run(
        ctx,
        "aws.sagemaker.snapshot_model",
        endpoint_name=sandbox["endpoint_name"],
        evidence_bucket=sandbox["evidence_bucket"],
    )
    assert evidence.objects == 1 and evidence.bucket_created
    run(ctx, "aws.sagemaker.isolate_endpoint", endpoint_name=sandbox["endpoint_name"])
    assert world.variants(clients, sandbox["endpoint_name"]) == [("AllTraffic", 0.0, 0)]
    run(ctx, "aws.apigateway.throttle_stage", rest_api_id=sandbox["rest_api_id"], stage_name="prod")
    run(ctx, "aws.ec2.quarantine_instance", instance_id=sandbox["instance_id"])
    assert world.termination_protected(clients, sandbox["instance_id"])
    run(ctx, "aws.secretsmanager.rotate_secret", secret_id=sandbox["secret_id"])
    run(ctx, "aws.tag_resource", arn=sandbox["user_arn"], tags={"irbook-incident": "INC-42"})
    run(ctx, "aws.iam.disable_console_login", user_name=sandbox["user_name"])
    run(ctx, "aws.wafv2.block_ips", ip_set_name=sandbox["ip_set_name"], addresses=["198.51.100.23"])
    run(
        ctx,
        "aws.cognito.global_sign_out",
        user_pool_id=sandbox["user_pool_id"],
        username=sandbox["cognito_username"],
    )
    run(
        ctx,
        "aws.sns.publish",
        topic_arn=sandbox["topic_arn"],
        subject="Contained",
        message=f"key {key.access_key_id} of {key.user_name} deactivated",
    )


def test_seeding_twice_says_so_in_one_line(clients: RecordingClients, moto_url: str) -> None:
    seed(moto_url)
    with pytest.raises(IrbookError, match="seed a fresh server") as failed:
        seed(moto_url)
    assert "\n" not in str(failed.value)


def test_the_sandbox_refuses_a_remote_endpoint() -> None:
    with pytest.raises(IrbookError, match="only seeds a local fake AWS"):
        seed("https://iam.amazonaws.com")


def test_the_inference_host_gets_its_role_from_an_instance_profile(
    clients: RecordingClients, ctx: ActionContext, sandbox: dict[str, str]
) -> None:
    """compromised-inference-host finds the role to revoke through the instance's profile."""
    described = clients.aws("ec2").describe_instances(InstanceIds=[sandbox["instance_id"]])
    [instance] = described["Reservations"][0]["Instances"]
    assert instance["IamInstanceProfile"]["Arn"] == sandbox["instance_profile_arn"]
    result, _ = run(
        ctx, "aws.iam.instance_profile_roles", instance_profile=sandbox["instance_profile_arn"]
    )
    assert result.roles == [sandbox["role_name"]]
