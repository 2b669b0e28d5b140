"""Tagging dispatches on the ARN's service; the undo brings back the tags as they were."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from irbook.registry import ActionContext, ActionFailed
from tests.support import aws_world as world
from tests.support.aws import RecordingClients, assert_honest, model, run, spec, undo

ACCOUNT = "123456789012"
Made = tuple[str, Callable[[], dict[str, str]]]


def _iam_role(aws: RecordingClients) -> Made:
    name = world.role(aws)
    aws.aws("iam").tag_role(RoleName=name, Tags=[{"Key": "team", "Value": "ml"}])

    def tags() -> dict[str, str]:
        found = aws.aws("iam").list_role_tags(RoleName=name)["Tags"]
        return {t["Key"]: t["Value"] for t in found}

    return f"arn:aws:iam::{ACCOUNT}:role/service/{name}", tags


def _bucket(aws: RecordingClients) -> Made:
    s3 = aws.aws("s3")
    s3.create_bucket(Bucket="training-data")
    s3.put_bucket_tagging(
        Bucket="training-data", Tagging={"TagSet": [{"Key": "team", "Value": "ml"}]}
    )

    def tags() -> dict[str, str]:
        try:
            found = s3.get_bucket_tagging(Bucket="training-data")["TagSet"]
        except s3.exceptions.ClientError:
            return {}
        return {t["Key"]: t["Value"] for t in found}

    return "arn:aws:s3:::training-data", tags


def _endpoint(aws: RecordingClients) -> Made:
    world.endpoint(aws)
    sm = aws.aws("sagemaker")
    arn = sm.describe_endpoint(EndpointName="fraud-scoring")["EndpointArn"]
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": "team", "Value": "ml"}])
    return arn, lambda: {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}


def _function(aws: RecordingClients) -> Made:
    name = world.function(aws)
    functions = aws.aws("lambda")
    arn = functions.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    functions.tag_resource(Resource=arn, Tags={"team": "ml"})
    return f"{arn}:prod", lambda: dict(functions.list_tags(Resource=arn)["Tags"])


def _instance(aws: RecordingClients) -> Made:
    box = world.instance(aws)
    ec2 = aws.aws("ec2")
    ec2.create_tags(Resources=[box["instance_id"]], Tags=[{"Key": "team", "Value": "ml"}])

    def tags() -> dict[str, str]:
        found = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [box["instance_id"]]}])
        return {t["Key"]: t["Value"] for t in found["Tags"]}

    return f"arn:aws:ec2:us-east-1:{ACCOUNT}:instance/{box['instance_id']}", tags


def _secret(aws: RecordingClients) -> Made:
    arn = world.secret(aws)
    manager = aws.aws("secretsmanager")
    manager.tag_resource(SecretId=arn, Tags=[{"Key": "team", "Value": "ml"}])
    return arn, lambda: {
        t["Key"]: t["Value"] for t in manager.describe_secret(SecretId=arn).get("Tags", [])
    }


def _topic(aws: RecordingClients) -> Made:
    arn = world.topic(aws)
    sns = aws.aws("sns")
    sns.tag_resource(ResourceArn=arn, Tags=[{"Key": "team", "Value": "ml"}])
    return arn, lambda: {
        t["Key"]: t["Value"] for t in sns.list_tags_for_resource(ResourceArn=arn)["Tags"]
    }


def _stage(aws: RecordingClients) -> Made:
    ids = world.stage(aws)
    gateway = aws.aws("apigateway")
    arn = f"arn:aws:apigateway:us-east-1::/restapis/{ids['rest_api_id']}/stages/prod"
    gateway.tag_resource(resourceArn=arn, tags={"team": "ml"})
    return arn, lambda: dict(gateway.get_tags(resourceArn=arn)["tags"])


def _ip_set(aws: RecordingClients) -> Made:
    world.ip_set(aws)
    waf = aws.aws("wafv2")
    arn = waf.list_ip_sets(Scope="REGIONAL")["IPSets"][0]["ARN"]
    waf.tag_resource(ResourceARN=arn, Tags=[{"Key": "team", "Value": "ml"}])

    def tags() -> dict[str, str]:
        found = waf.list_tags_for_resource(ResourceARN=arn)["TagInfoForResource"]
        return {t["Key"]: t["Value"] for t in found.get("TagList", [])}

    return arn, tags


KINDS = {
    "iam-role": _iam_role,
    "s3-bucket": _bucket,
    "sagemaker-endpoint": _endpoint,
    "lambda-function": _function,
    "ec2-instance": _instance,
    "secret": _secret,
    "sns-topic": _topic,
    "apigateway-stage": _stage,
    "wafv2-ip-set": _ip_set,
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_tag_and_untag_through_the_service_of_the_arn(
    kind: str, clients: RecordingClients, ctx: ActionContext
) -> None:
    arn, tags = KINDS[kind](clients)
    before = tags()
    params: dict[str, Any] = {"arn": arn, "tags": {"irbook-incident": "INC-42", "team": "hold"}}
    result, calls = run(ctx, "aws.tag_resource", **params)
    assert_honest("aws.tag_resource", params, calls)
    assert tags() == {"irbook-incident": "INC-42", "team": "hold"}
    assert (result.added, result.replaced) == (["irbook-incident"], {"team": "ml"})
    assert run(ctx, "aws.tag_resource", **params)[0].already_done is True
    undo_params = spec("aws.tag_resource").compensation_params(
        model("aws.tag_resource", params), result
    )
    _, undo_calls = run(ctx, "aws.untag_resource", **undo_params)
    assert_honest("aws.untag_resource", undo_params, undo_calls)
    assert tags() == before


def test_removing_the_last_bucket_tag_deletes_the_tag_set(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    clients.aws("s3").create_bucket(Bucket="bare-bucket")
    params = {"arn": "arn:aws:s3:::bare-bucket", "tags": {"irbook-incident": "INC-42"}}
    result, _ = run(ctx, "aws.tag_resource", **params)
    undo(ctx, "aws.tag_resource", params, result)
    assert [c.name for c in clients.calls] == ["s3:GetBucketTagging", "s3:DeleteBucketTagging"]


@pytest.mark.parametrize(
    "arn",
    [
        f"arn:aws:cognito-idp:us-east-1:{ACCOUNT}:userpool/us-east-1_AbC",
        f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/prompts",
        "arn:aws:s3:::bucket/an/object",
    ],
)
def test_unsupported_arns_fail_in_the_plan_already(arn: str) -> None:
    params = model("aws.tag_resource", {"arn": arn, "tags": {"a": "b"}})
    with pytest.raises(ActionFailed, match=f"tagging {arn} is not supported"):
        spec("aws.tag_resource").plan(params)


def test_reserved_tag_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="aws:"):
        model("aws.tag_resource", {"arn": "arn:aws:s3:::b", "tags": {"aws:owner": "x"}})
