"""API Gateway, Lambda, WAF and SNS: the previous state comes back exactly, and only
what a step changed is undone."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from irbook.registry import ActionContext, ActionFailed
from tests.support import aws_world as world
from tests.support.aws import RecordingClients, assert_honest, model, run, undo


def test_the_undo_puts_back_earlier_stage_limits(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    ids = world.stage(clients)
    clients.aws("apigateway").update_stage(
        **{"restApiId": ids["rest_api_id"], "stageName": ids["stage_name"]},
        patchOperations=[
            {"op": "replace", "path": "/*/*/throttling/rateLimit", "value": "50"},
            {"op": "replace", "path": "/*/*/throttling/burstLimit", "value": "100"},
        ],
    )
    result, _ = run(ctx, "aws.apigateway.throttle_stage", **ids)
    assert world.stage_limits(clients, **ids) == (0, 0)
    assert (result.previous_rate_limit, result.previous_burst_limit) == (50, 100)
    undo(ctx, "aws.apigateway.throttle_stage", ids, result)
    assert world.stage_limits(clients, **ids) == (50, 100)


def test_a_key_disabled_before_the_step_stays_disabled(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    key = world.api_key(clients)
    gateway = clients.aws("apigateway")
    gateway.update_api_key(
        apiKey=key, patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}]
    )
    params = {"api_key_id": key}
    result, _ = run(ctx, "aws.apigateway.disable_api_key", **params)
    undo(ctx, "aws.apigateway.disable_api_key", params, result)
    assert gateway.get_api_key(apiKey=key)["enabled"] is False


def test_a_function_without_reserved_concurrency_gets_none_back(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    name = world.function(clients)
    params = {"function_name": name}
    result, _ = run(ctx, "aws.lambda.block_invocations", **params)
    assert world.concurrency(clients, name) == 0
    assert result.previous_reserved_concurrency is None
    undo(ctx, "aws.lambda.block_invocations", params, result)
    assert world.concurrency(clients, name) is None


def test_addresses_are_normalised_and_only_new_ones_are_undone(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    world.ip_set(clients, addresses=["198.51.100.23/32"])
    params = {
        "ip_set_name": "blocklist",
        "addresses": ["198.51.100.23", "203.0.113.9", "203.0.113.9/32"],
    }
    result, calls = run(ctx, "aws.wafv2.block_ips", **params)
    assert_honest("aws.wafv2.block_ips", params, calls)
    assert (result.changed, result.unchanged) == (["203.0.113.9/32"], ["198.51.100.23/32"])
    assert sorted(world.ip_set_addresses(clients)) == ["198.51.100.23/32", "203.0.113.9/32"]
    undo(ctx, "aws.wafv2.block_ips", params, result)
    assert world.ip_set_addresses(clients) == ["198.51.100.23/32"]


def test_the_ip_set_keeps_its_description(clients: RecordingClients, ctx: ActionContext) -> None:
    world.ip_set(clients)
    run(ctx, "aws.wafv2.block_ips", ip_set_name="blocklist", addresses=["198.51.100.23"])
    waf = clients.aws("wafv2")
    summary = waf.list_ip_sets(Scope="REGIONAL")["IPSets"][0]
    got = waf.get_ip_set(Name="blocklist", Scope="REGIONAL", Id=summary["Id"])["IPSet"]
    assert got["Description"] == "incident blocks"


def test_ipv6_addresses_do_not_go_into_an_ipv4_set(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    world.ip_set(clients)
    with pytest.raises(ActionFailed, match="holds IPV4 addresses; 2001:db8::/32 cannot go in"):
        run(ctx, "aws.wafv2.block_ips", ip_set_name="blocklist", addresses=["2001:db8::/32"])


def test_an_address_that_is_not_one_is_a_parameter_error() -> None:
    with pytest.raises(ValidationError, match=re.escape("'198.51.100.300' is not an IP address")):
        model("aws.wafv2.block_ips", {"ip_set_name": "b", "addresses": ["198.51.100.300"]})


def test_cloudfront_ip_sets_are_changed_in_us_east_1(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    clients.aws("wafv2").create_ip_set(
        Name="edge", Scope="CLOUDFRONT", IPAddressVersion="IPV4", Addresses=[]
    )
    elsewhere = type(ctx)(run=ctx.run, clients=clients, region="eu-west-1")
    result, _ = run(
        elsewhere,
        "aws.wafv2.block_ips",
        ip_set_name="edge",
        scope="CLOUDFRONT",
        addresses=["198.51.100.23"],
    )
    assert result.changed == ["198.51.100.23/32"]  # the set exists only in us-east-1


def test_publish_reaches_the_subscribers(clients: RecordingClients, ctx: ActionContext) -> None:
    topic = world.topic(clients)
    inbox = world.sqs_inbox(clients, topic)
    elsewhere = type(ctx)(run=ctx.run, clients=clients, region="eu-west-1")
    result, _ = run(
        elsewhere,
        "aws.sns.publish",
        topic_arn=topic,
        subject="Key revoked",
        message="AKIAIOSFODNN7EXAMPLE is inactive",
    )
    [received] = world.received(clients, inbox)
    assert (received["Subject"], received["Message"]) == (
        "Key revoked",
        "AKIAIOSFODNN7EXAMPLE is inactive",
    )
    assert received["MessageId"] == result.message_id


def test_a_subject_must_be_one_line() -> None:
    with pytest.raises(ValidationError, match="subject"):
        model(
            "aws.sns.publish",
            {
                "topic_arn": "arn:aws:sns:us-east-1:123456789012:t",
                "subject": "two\nlines",
                "message": "m",
            },
        )


def test_global_sign_out_revokes_refresh_tokens(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    user = world.cognito_user(clients)
    assert world.refresh_works(clients, user) is True
    result, _ = run(
        ctx,
        "aws.cognito.global_sign_out",
        user_pool_id=user["user_pool_id"],
        username=user["username"],
    )
    assert result.status == "signed out"
    assert world.refresh_works(clients, user) is False


def test_a_bucket_without_a_block_gets_none_back(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    """The undo deletes the block it added rather than leaving four settings the bucket
    never had (which would break whatever relied on its public access)."""
    clients.aws("s3").create_bucket(Bucket="training-data")
    params = {"bucket": "training-data"}
    result, calls = run(ctx, "aws.s3.block_public_access", **params)
    assert_honest("aws.s3.block_public_access", params, calls)
    assert world.public_access_block(clients, "training-data") == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    assert result.previous_configuration is None
    undo_with = {"bucket": "training-data"}
    restored, calls = run(ctx, "aws.s3.restore_public_access", **undo_with)
    assert_honest("aws.s3.restore_public_access", undo_with, calls)
    assert [c.name for c in calls] == ["s3:GetPublicAccessBlock", "s3:DeletePublicAccessBlock"]
    assert world.public_access_block(clients, "training-data") is None
    assert restored.already_done is False


def test_a_fully_blocked_bucket_is_left_alone_and_stays_blocked(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    s3 = clients.aws("s3")
    s3.create_bucket(Bucket="training-data")
    every = {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    s3.put_public_access_block(Bucket="training-data", PublicAccessBlockConfiguration=every)
    params = {"bucket": "training-data"}
    result, calls = run(ctx, "aws.s3.block_public_access", **params)
    assert result.already_done is True
    assert [c.name for c in calls] == ["s3:GetPublicAccessBlock"]
    undo(ctx, "aws.s3.block_public_access", params, result)
    assert world.public_access_block(clients, "training-data") == every


def test_restore_public_access_takes_all_four_settings_or_none() -> None:
    with pytest.raises(ValidationError, match="restrict_public_buckets"):
        model(
            "aws.s3.restore_public_access",
            {"bucket": "training-data", "previous": {"block_public_acls": True}},
        )
