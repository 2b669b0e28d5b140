"""For every AWS action: how to set up moto for it, what state it changes, how it is
named when missing, and plan-only example parameters (every branch of its planner)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from irbook.registry import ActionContext

from . import aws_world as world
from .aws import RecordingClients, run, undo_params

Setup = Callable[[RecordingClients, ActionContext], dict[str, Any]]
State = Callable[[RecordingClients, dict[str, Any]], Any]

ACCOUNT = "123456789012"
KEY = "AKIAIOSFODNN7EXAMPLE"
MISSING_KEY = "AKIAAAAAAAAAAAAAAAAA"
MISSING_INSTANCE = "i-0123456789abcdef0"


@dataclass(frozen=True)
class Scenario:
    setup: Setup
    state: State
    missing: dict[str, Any]  # parameters naming something that does not exist
    names: str  # what the failure message must say
    rerun_done: bool = True  # a second run reports already_done


def after(forward: str, setup: Setup) -> Setup:
    """Set up, run the forward action, and return its undo's parameters."""

    def build(aws: RecordingClients, ctx: ActionContext) -> dict[str, Any]:
        params = setup(aws, ctx)
        result, _ = run(ctx, forward, **params)
        return undo_params(forward, params, result)

    return build


def _key(aws: RecordingClients, ctx: ActionContext) -> dict[str, Any]:
    return {"access_key_id": world.access_key(aws, world.user(aws))}


def _key_with_user(aws: RecordingClients, ctx: ActionContext) -> dict[str, Any]:
    return {**_key(aws, ctx), "user_name": "ml-inference-svc"}


def _key_state(aws: RecordingClients, p: dict[str, Any]) -> Any:
    return world.key_status(aws, "ml-inference-svc", p["access_key_id"])


def _keys(aws: RecordingClients, p: dict[str, Any]) -> Any:
    listed = aws.aws("iam").list_access_keys(UserName="ml-inference-svc")["AccessKeyMetadata"]
    return sorted(k["AccessKeyId"] for k in listed)


def _role(aws: RecordingClients, ctx: ActionContext) -> dict[str, Any]:
    return {"role_name": world.role(aws)}


def _user(aws: RecordingClients, ctx: ActionContext) -> dict[str, Any]:
    return {"user_name": world.user(aws)}


def _policies(aws: RecordingClients, p: dict[str, Any]) -> Any:
    if "user_name" in p:
        return world.inline_policies(aws, "user", p["user_name"])
    return world.inline_policies(aws, "role", p["role_name"])


def _console(aws: RecordingClients, ctx: ActionContext) -> dict[str, Any]:
    name = world.user(aws)
    aws.aws("iam").create_login_profile(UserName=name, Password="Phished-Passw0rd!")
    return {"user_name": name}


def _has_password(aws: RecordingClients, p: dict[str, Any]) -> bool:
    from botocore.exceptions import ClientError

    try:
        aws.aws("iam").get_login_profile(UserName=p["user_name"])
    except ClientError:
        return False
    return True


def _api_key(aws: RecordingClients, ctx: ActionContext) -> dict[str, Any]:
    return {"api_key_id": world.api_key(aws)}


def _api_key_state(aws: RecordingClients, p: dict[str, Any]) -> Any:
    return aws.aws("apigateway").get_api_key(apiKey=p["api_key_id"])["enabled"]


def _stage(aws: RecordingClients, ctx: ActionContext) -> dict[str, Any]:
    return world.stage(aws)


def _stage_state(aws: RecordingClients, p: dict[str, Any]) -> Any:
    return world.stage_limits(aws, p["rest_api_id"], p["stage_name"])


def _cognito(aws: RecordingClients, ctx: ActionContext) -> dict[str, Any]:
    user = world.cognito_user(aws)
    aws.cognito_user = user  # type: ignore[attr-defined]
    return {"user_pool_id": user["user_pool_id"], "username": user["username"]}


def _cognito_state(aws: RecordingClients, p: dict[str, Any]) -> Any:
    return world.refresh_works(aws, aws.cognito_user)  # type: ignore[attr-defined]


def _endpoint(aws: RecordingClients, ctx: ActionContext) -> dict[str, Any]:
    return {"endpoint_name": world.endpoint(aws, variants=2)["name"]}


def _endpoint_state(aws: RecordingClients, p: dict[str, Any]) -> Any:
    return world.variants(aws, p["endpoint_name"])


def _snapshot(aws: RecordingClients, ctx: ActionContext) -> dict[str, Any]:
    world.evidence_bucket(aws)
    return {"endpoint_name": world.endpoint(aws)["name"], "evidence_bucket": "evidence-locker"}


def _evidence(aws: RecordingClients, p: dict[str, Any]) -> Any:
    s3 = aws.aws("s3")
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    if p["evidence_bucket"] not in names:
        return []
    listed = s3.list_object_versions(Bucket=p["evidence_bucket"]).get("Versions", [])
    return sorted((v["Key"], v["VersionId"]) for v in listed)


def _preserve(aws: RecordingClients, ctx: ActionContext) -> dict[str, Any]:
    world.evidence_bucket(aws)
    s3 = aws.aws("s3")
    s3.create_bucket(Bucket="prompt-logs")
    for day in ("01", "02", "03"):
        s3.put_object(Bucket="prompt-logs", Key=f"2026/11/{day}.jsonl", Body=b'{"p": "hi"}\n' * 9)
    s3.put_object(Bucket="prompt-logs", Key="other/keep-out.txt", Body=b"not evidence")
    return {"bucket": "prompt-logs", "prefix": "2026/11/", "evidence_bucket": "evidence-locker"}


def _public_bucket(aws: RecordingClients, ctx: ActionContext) -> dict[str, Any]:
    """A training-data bucket with half its block turned off, as a misconfiguration leaves it."""
    s3 = aws.aws("s3")
    s3.create_bucket(Bucket="training-data")
    s3.put_public_access_block(
        Bucket="training-data",
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": False,
            "RestrictPublicBuckets": False,
        },
    )
    return {"bucket": "training-data"}


def _public_access(aws: RecordingClients, p: dict[str, Any]) -> Any:
    return world.public_access_block(aws, p["bucket"])


def _function(aws: RecordingClients, ctx: ActionContext) -> dict[str, Any]:
    name = world.function(aws)
    aws.aws("lambda").put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=7)
    return {"function_name": name}


def _function_state(aws: RecordingClients, p: dict[str, Any]) -> Any:
    return world.concurrency(aws, p["function_name"])


def _instance(aws: RecordingClients, ctx: ActionContext) -> dict[str, Any]:
    return {"instance_id": world.instance(aws, interfaces=2)["instance_id"]}


def _instance_state(aws: RecordingClients, p: dict[str, Any]) -> Any:
    return (
        world.interface_groups(aws, p["instance_id"]),
        world.termination_protected(aws, p["instance_id"]),
    )


def _subnet(aws: RecordingClients, ctx: ActionContext) -> dict[str, Any]:
    return {"subnet_id": world.instance(aws)["subnet_id"]}


def _subnet_state(aws: RecordingClients, p: dict[str, Any]) -> Any:
    return world.subnet_acl(aws, p["subnet_id"])


def _volumes(aws: RecordingClients, ctx: ActionContext) -> dict[str, Any]:
    return {"instance_id": world.instance(aws)["instance_id"], "retention_days": None}


def _snapshots(aws: RecordingClients, p: dict[str, Any]) -> Any:
    found = aws.aws("ec2").describe_snapshots(
        OwnerIds=["self"],
        Filters=[{"Name": "tag:irbook:instance-id", "Values": [p["instance_id"]]}],
    )
    return sorted(s["SnapshotId"] for s in found["Snapshots"])


def _ip_set(aws: RecordingClients, ctx: ActionContext) -> dict[str, Any]:
    return {"ip_set_name": world.ip_set(aws), "addresses": ["198.51.100.23", "203.0.113.0/24"]}


def _ip_state(aws: RecordingClients, p: dict[str, Any]) -> Any:
    return sorted(world.ip_set_addresses(aws, p["ip_set_name"]))


def _secret(aws: RecordingClients, ctx: ActionContext) -> dict[str, Any]:
    world.secret(aws)
    return {"secret_id": "ml/provider-key", "method": "new_value"}


def _parameter(aws: RecordingClients, ctx: ActionContext) -> dict[str, Any]:
    return {"name": world.parameter(aws)}


def _tag(aws: RecordingClients, ctx: ActionContext) -> dict[str, Any]:
    name = world.user(aws)
    aws.aws("iam").tag_user(UserName=name, Tags=[{"Key": "team", "Value": "ml-platform"}])
    return {
        "arn": f"arn:aws:iam::{ACCOUNT}:user/{name}",
        "tags": {"irbook-incident": "INC-42", "team": "security-hold"},
    }


def _tags(aws: RecordingClients, p: dict[str, Any]) -> Any:
    name = p["arn"].rsplit("/", 1)[1]
    return sorted(
        (t["Key"], t["Value"]) for t in aws.aws("iam").list_user_tags(UserName=name)["Tags"]
    )


def _topic(aws: RecordingClients, ctx: ActionContext) -> dict[str, Any]:
    arn = world.topic(aws)
    aws.inbox = world.sqs_inbox(aws, arn)  # type: ignore[attr-defined]
    return {"topic_arn": arn, "subject": "Key revoked", "message": "AKIA... deactivated"}


def _inbox(aws: RecordingClients, p: dict[str, Any]) -> Any:
    return [m["Message"] for m in world.received(aws, aws.inbox)]  # type: ignore[attr-defined]


SCENARIOS: dict[str, Scenario] = {
    "aws.iam.deactivate_access_key": Scenario(
        _key, _key_state, {"access_key_id": MISSING_KEY}, f"access key {MISSING_KEY}"
    ),
    "aws.iam.activate_access_key": Scenario(
        after("aws.iam.deactivate_access_key", _key),
        _key_state,
        {"access_key_id": MISSING_KEY, "user_name": "ghost"},
        "IAM user ghost",
    ),
    "aws.iam.delete_access_key": Scenario(
        _key_with_user,
        _keys,
        {"access_key_id": MISSING_KEY, "user_name": "ghost"},
        "IAM user ghost",
        rerun_done=False,
    ),
    "aws.iam.revoke_role_sessions": Scenario(
        _role, _policies, {"role_name": "ghost-role"}, "IAM role ghost-role"
    ),
    "aws.iam.remove_session_revocation": Scenario(
        after("aws.iam.revoke_role_sessions", _role),
        _policies,
        {"role_name": "ghost-role"},
        "IAM role ghost-role",
    ),
    "aws.iam.quarantine_principal": Scenario(
        _user, _policies, {"user_name": "ghost"}, "IAM user ghost"
    ),
    "aws.iam.release_principal": Scenario(
        after("aws.iam.quarantine_principal", _user),
        _policies,
        {"user_name": "ghost"},
        "IAM user ghost",
    ),
    "aws.iam.disable_console_login": Scenario(
        _console, _has_password, {"user_name": "ghost"}, "IAM user ghost"
    ),
    "aws.bedrock.deny_model_invocation": Scenario(
        _role, _policies, {"role_name": "ghost-role"}, "IAM role ghost-role"
    ),
    "aws.bedrock.allow_model_invocation": Scenario(
        after("aws.bedrock.deny_model_invocation", _role),
        _policies,
        {"role_name": "ghost-role"},
        "IAM role ghost-role",
    ),
    "aws.apigateway.disable_api_key": Scenario(
        _api_key, _api_key_state, {"api_key_id": "nokey12345"}, "API Gateway API key nokey12345"
    ),
    "aws.apigateway.enable_api_key": Scenario(
        after("aws.apigateway.disable_api_key", _api_key),
        _api_key_state,
        {"api_key_id": "nokey12345"},
        "API Gateway API key nokey12345",
    ),
    "aws.apigateway.throttle_stage": Scenario(
        _stage,
        _stage_state,
        {"rest_api_id": "noapi12345", "stage_name": "prod"},
        "API Gateway stage prod of REST API noapi12345",
    ),
    "aws.apigateway.restore_stage_throttle": Scenario(
        after("aws.apigateway.throttle_stage", _stage),
        _stage_state,
        {"rest_api_id": "noapi12345", "stage_name": "prod"},
        "API Gateway stage prod of REST API noapi12345",
    ),
    "aws.cognito.global_sign_out": Scenario(
        _cognito,
        _cognito_state,
        {"user_pool_id": "us-east-1_nopool", "username": "nobody"},
        "Cognito user nobody in user pool us-east-1_nopool",
        rerun_done=False,
    ),
    "aws.sagemaker.isolate_endpoint": Scenario(
        _endpoint, _endpoint_state, {"endpoint_name": "ghost"}, "SageMaker endpoint ghost"
    ),
    "aws.sagemaker.restore_endpoint": Scenario(
        after("aws.sagemaker.isolate_endpoint", _endpoint),
        _endpoint_state,
        {
            "endpoint_name": "ghost",
            "variants": [{"variant_name": "v0", "weight": 1.0, "instance_count": 1}],
        },
        "SageMaker endpoint ghost",
    ),
    "aws.sagemaker.snapshot_model": Scenario(
        _snapshot,
        _evidence,
        {"endpoint_name": "ghost", "evidence_bucket": "evidence-locker"},
        "SageMaker endpoint ghost",
    ),
    "aws.s3.preserve_objects": Scenario(
        _preserve,
        _evidence,
        {"bucket": "ghost-bucket", "prefix": "x/", "evidence_bucket": "evidence-locker"},
        "s3://ghost-bucket/x/",
    ),
    "aws.s3.block_public_access": Scenario(
        _public_bucket, _public_access, {"bucket": "ghost-bucket"}, "S3 bucket ghost-bucket"
    ),
    "aws.s3.restore_public_access": Scenario(
        after("aws.s3.block_public_access", _public_bucket),
        _public_access,
        {"bucket": "ghost-bucket"},
        "S3 bucket ghost-bucket",
    ),
    "aws.lambda.block_invocations": Scenario(
        _function, _function_state, {"function_name": "ghost-fn"}, "Lambda function ghost-fn"
    ),
    "aws.lambda.restore_invocations": Scenario(
        after("aws.lambda.block_invocations", _function),
        _function_state,
        {"function_name": "ghost-fn"},
        "Lambda function ghost-fn",
    ),
    "aws.ec2.quarantine_instance": Scenario(
        _instance,
        _instance_state,
        {"instance_id": MISSING_INSTANCE},
        f"EC2 instance {MISSING_INSTANCE}",
    ),
    "aws.ec2.release_instance": Scenario(
        after("aws.ec2.quarantine_instance", _instance),
        _instance_state,
        {"instance_id": MISSING_INSTANCE},
        f"EC2 instance {MISSING_INSTANCE}",
    ),
    "aws.ec2.deny_subnet_traffic": Scenario(
        _subnet,
        _subnet_state,
        {"subnet_id": "subnet-0123456789abcdef0"},
        "subnet subnet-0123456789abcdef0",
    ),
    "aws.ec2.restore_subnet_traffic": Scenario(
        after("aws.ec2.deny_subnet_traffic", _subnet),
        _subnet_state,
        {"subnet_id": "subnet-0123456789abcdef0"},
        "subnet subnet-0123456789abcdef0",
    ),
    "aws.ec2.snapshot_volumes": Scenario(
        _volumes,
        _snapshots,
        {"instance_id": MISSING_INSTANCE, "retention_days": None},
        f"EC2 instance {MISSING_INSTANCE}",
    ),
    "aws.wafv2.block_ips": Scenario(
        _ip_set,
        _ip_state,
        {"ip_set_name": "ghost-set", "addresses": ["198.51.100.23"]},
        "WAF IP set ghost-set (REGIONAL)",
    ),
    "aws.wafv2.unblock_ips": Scenario(
        after("aws.wafv2.block_ips", _ip_set),
        _ip_state,
        {"ip_set_name": "ghost-set", "addresses": ["198.51.100.23"]},
        "WAF IP set ghost-set (REGIONAL)",
    ),
    "aws.secretsmanager.rotate_secret": Scenario(
        _secret,
        lambda aws, p: world.secret_value(aws),
        {"secret_id": "ghost/secret"},
        "secret ghost/secret",
    ),
    "aws.ssm.rotate_parameter": Scenario(
        _parameter,
        lambda aws, p: world.parameter_value(aws),
        {"name": "/ghost/token"},
        "SSM parameter /ghost/token",
    ),
    "aws.tag_resource": Scenario(
        _tag,
        _tags,
        {"arn": f"arn:aws:iam::{ACCOUNT}:user/ghost", "tags": {"a": "b"}},
        "IAM user ghost",
    ),
    "aws.untag_resource": Scenario(
        after("aws.tag_resource", _tag),
        _tags,
        {"arn": f"arn:aws:iam::{ACCOUNT}:user/ghost", "tag_keys": ["a"]},
        "IAM user ghost",
    ),
    "aws.sns.publish": Scenario(
        _topic,
        _inbox,
        {
            "topic_arn": f"arn:aws:sns:us-east-1:{ACCOUNT}:ghost-topic",
            "subject": "s",
            "message": "m",
        },
        f"SNS topic arn:aws:sns:us-east-1:{ACCOUNT}:ghost-topic",
        rerun_done=False,
    ),
}


def _instance_profile(aws: RecordingClients, ctx: ActionContext) -> dict[str, Any]:
    iam = aws.aws("iam")
    arn = iam.create_instance_profile(InstanceProfileName="ml-gpu-profile", Path="/ml/")[
        "InstanceProfile"
    ]["Arn"]
    iam.add_role_to_instance_profile(InstanceProfileName="ml-gpu-profile", RoleName=world.role(aws))
    return {"instance_profile": arn}


@dataclass(frozen=True)
class Read:
    """A read action: what to set up, what it must answer, and a missing resource."""

    setup: Setup
    answer: dict[str, Any]  # fields the result must hold
    missing: dict[str, Any]
    names: str


# Read actions change nothing, so they have no Scenario: test_aws_actions checks that they
# make their planned calls, answer from AWS, call nothing that mutates, and name what is
# missing.
READS: dict[str, Read] = {
    "aws.iam.instance_profile_roles": Read(
        _instance_profile,
        {
            "instance_profile": "ml-gpu-profile",
            "instance_profile_arn": f"arn:aws:iam::{ACCOUNT}:instance-profile/ml/ml-gpu-profile",
            "roles": ["ml-inference-role"],
            "role_arns": [f"arn:aws:iam::{ACCOUNT}:role/ml-inference-role"],
            "status": "found",
        },
        {"instance_profile": "ghost-profile"},
        "IAM instance profile ghost-profile",
    ),
}

# Actions whose calls moto does not implement: tested with botocore's Stubber instead, in
# test_aws_stubbed.py (the test names say which operation moto lacks).
STUBBED = {
    "aws.iam.deactivate_service_credentials": "iam:ListServiceSpecificCredentials",
    "aws.iam.activate_service_credentials": "iam:UpdateServiceSpecificCredential",
    "aws.cloudtrail.lookup_events": "cloudtrail:LookupEvents",
}

ARN_USER = f"arn:aws:iam::{ACCOUNT}:user/path/ml-inference-svc"

# Parameters for plan-only tests: together they take every branch of every planner.
EXAMPLES: dict[str, list[dict[str, Any]]] = {
    "aws.iam.deactivate_access_key": [
        {"access_key_id": KEY},
        {"access_key_id": KEY, "user_name": "ml-inference-svc"},
    ],
    "aws.iam.activate_access_key": [
        {"access_key_id": KEY},
        {"access_key_id": KEY, "user_name": "ml-inference-svc"},
        {"access_key_id": KEY, "skip": "was inactive"},
    ],
    "aws.iam.delete_access_key": [{"access_key_id": KEY}],
    "aws.iam.revoke_role_sessions": [
        {"role_name": "ml-inference-role"},
        {"role_name": "ml-inference-role", "issued_before": "2026-11-27T22:41:07Z"},
    ],
    "aws.iam.remove_session_revocation": [
        {"role_name": "ml-inference-role"},
        {
            "role_name": "ml-inference-role",
            "previous_policy_document": '{"Version": "2012-10-17", "Statement": []}',
        },
    ],
    "aws.iam.quarantine_principal": [{"user_name": "u"}, {"role_name": "r"}],
    "aws.iam.release_principal": [
        {"user_name": "u"},
        {"role_name": "r"},
        {"role_name": "r", "skip": "x"},
    ],
    "aws.iam.disable_console_login": [{"user_name": "u"}],
    "aws.iam.deactivate_service_credentials": [
        {"user_name": "u"},
        {"user_name": "u", "service_specific_credential_id": "ACCA" + "A" * 17},
    ],
    "aws.iam.activate_service_credentials": [
        {"user_name": "u", "service_specific_credential_ids": ["ACCA" + "A" * 17]},
        {"user_name": "u"},
    ],
    "aws.bedrock.deny_model_invocation": [{"user_name": "u"}, {"role_name": "r"}],
    "aws.bedrock.allow_model_invocation": [{"user_name": "u"}, {"role_name": "r"}],
    "aws.apigateway.disable_api_key": [{"api_key_id": "abc123"}],
    "aws.apigateway.enable_api_key": [{"api_key_id": "abc123"}, {"api_key_id": "a", "skip": "x"}],
    "aws.apigateway.throttle_stage": [{"rest_api_id": "abc123", "stage_name": "prod"}],
    "aws.apigateway.restore_stage_throttle": [
        {"rest_api_id": "abc123", "stage_name": "prod"},
        {"rest_api_id": "abc123", "stage_name": "prod", "rate_limit": 50, "burst_limit": 100},
    ],
    "aws.cognito.global_sign_out": [{"user_pool_id": "us-east-1_AbC123", "username": "a"}],
    "aws.sagemaker.isolate_endpoint": [
        {"endpoint_name": "fraud-scoring"},
        {"endpoint_name": "fraud-scoring", "mode": "delete"},
    ],
    "aws.sagemaker.restore_endpoint": [
        {
            "endpoint_name": "fraud-scoring",
            "variants": [{"variant_name": "AllTraffic", "weight": 1.0, "instance_count": 2}],
        },
        {
            "endpoint_name": "fraud-scoring",
            "mode": "delete",
            "endpoint_config_name": "fraud-config",
            "tags": {"team": "ml"},
        },
    ],
    "aws.sagemaker.snapshot_model": [
        {"endpoint_name": "fraud-scoring", "evidence_bucket": "ir-evidence"}
    ],
    "aws.s3.preserve_objects": [
        {"bucket": "prompt-logs", "prefix": "2026/", "evidence_bucket": "ir-evidence"}
    ],
    "aws.s3.block_public_access": [{"bucket": "training-data"}],
    "aws.s3.restore_public_access": [
        {"bucket": "training-data"},
        {
            "bucket": "training-data",
            "previous": {
                "block_public_acls": True,
                "ignore_public_acls": True,
                "block_public_policy": False,
                "restrict_public_buckets": False,
            },
        },
    ],
    "aws.lambda.block_invocations": [{"function_name": "prompt-router"}],
    "aws.lambda.restore_invocations": [
        {"function_name": "prompt-router"},
        {"function_name": "prompt-router", "reserved_concurrency": 5},
    ],
    "aws.ec2.quarantine_instance": [
        {"instance_id": "i-0abc1234def567890"},
        {"instance_id": "i-0abc1234def567890", "quarantine_group_id": "sg-0abc1234def567890"},
    ],
    "aws.ec2.release_instance": [
        {"instance_id": "i-0abc1234def567890"},
        {
            "instance_id": "i-0abc1234def567890",
            "previous_groups": {"eni-0abc1234def567890": ["sg-0123456789abcdef0"]},
            "termination_protection": False,
        },
    ],
    "aws.ec2.deny_subnet_traffic": [{"subnet_id": "subnet-0abc1234def567890"}],
    "aws.ec2.restore_subnet_traffic": [
        {"subnet_id": "subnet-0abc1234def567890"},
        {"subnet_id": "subnet-0abc1234def567890", "network_acl_id": "acl-0abc1234def567890"},
    ],
    "aws.ec2.snapshot_volumes": [
        {"instance_id": "i-0abc1234def567890"},
        {"instance_id": "i-0abc1234def567890", "retention_days": None},
    ],
    "aws.wafv2.block_ips": [
        {"ip_set_name": "blocklist", "addresses": ["198.51.100.23"]},
        {"ip_set_name": "edge", "scope": "CLOUDFRONT", "addresses": ["2001:db8::/32"]},
    ],
    "aws.wafv2.unblock_ips": [
        {"ip_set_name": "blocklist", "addresses": ["198.51.100.23"]},
        {"ip_set_name": "blocklist", "addresses": []},
    ],
    "aws.secretsmanager.rotate_secret": [
        {"secret_id": "ml/provider-key"},
        {"secret_id": "ml/provider-key", "method": "new_value"},
        {"secret_id": "ml/provider-key", "method": "rotation_function"},
    ],
    "aws.ssm.rotate_parameter": [{"name": "/ml/api-token"}],
    "aws.iam.instance_profile_roles": [
        {"instance_profile": f"arn:aws:iam::{ACCOUNT}:instance-profile/ml/ml-gpu-profile"},
        {"instance_profile": "ml-gpu-profile"},
    ],
    "aws.cloudtrail.lookup_events": [
        {"access_key_id": KEY, "hours": 24},
        {"user_name": "ml-inference-svc", "hours": 2},
    ],
    "aws.tag_resource": [
        {"arn": ARN_USER, "tags": {"irbook-incident": "INC-1"}},
        {"arn": f"arn:aws:iam::{ACCOUNT}:role/r", "tags": {"a": "b"}},
        {"arn": "arn:aws:s3:::prompt-logs", "tags": {"a": "b"}},
        {"arn": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/fraud", "tags": {"a": "b"}},
        {"arn": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:f:prod", "tags": {"a": "b"}},
        {
            "arn": f"arn:aws:ec2:us-east-1:{ACCOUNT}:instance/i-0abc1234def567890",
            "tags": {"a": "b"},
        },
        {"arn": f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:k-AbCdEf", "tags": {"a": "b"}},
        {"arn": f"arn:aws:sns:us-east-1:{ACCOUNT}:ir-alerts", "tags": {"a": "b"}},
        {"arn": "arn:aws:apigateway:us-east-1::/restapis/abc123/stages/prod", "tags": {"a": "b"}},
        {"arn": f"arn:aws:wafv2:us-east-1:{ACCOUNT}:regional/ipset/b/1-2", "tags": {"a": "b"}},
    ],
    "aws.untag_resource": [
        {"arn": arn, "tag_keys": ["irbook-incident"], "restore": {"team": "ml"}}
        for arn in (
            ARN_USER,
            f"arn:aws:iam::{ACCOUNT}:role/r",
            "arn:aws:s3:::prompt-logs",
            f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/fraud",
            f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:f",
            f"arn:aws:ec2:us-east-1:{ACCOUNT}:volume/vol-0abc1234",
            f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:k",
            f"arn:aws:sns:us-east-1:{ACCOUNT}:ir-alerts",
            "arn:aws:apigateway:us-east-1::/restapis/abc123",
            f"arn:aws:wafv2:us-east-1:{ACCOUNT}:regional/ipset/b/1-2",
        )
    ]
    + [{"arn": ARN_USER}, {"arn": ARN_USER, "tag_keys": ["irbook-incident"]}],
    "aws.sns.publish": [
        {
            "topic_arn": f"arn:aws:sns:eu-west-1:{ACCOUNT}:ir-alerts",
            "subject": "Key revoked",
            "message": "details",
        }
    ],
}
