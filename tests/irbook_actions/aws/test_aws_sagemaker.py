"""Endpoint isolation keeps what is needed to bring the endpoint back exactly as it was."""

from __future__ import annotations

import pytest

from irbook.registry import ActionContext, ActionFailed
from tests.support import aws_world as world
from tests.support.aws import RecordingClients, assert_honest, run, undo


def test_drain_zeroes_every_variant_and_the_undo_restores_each(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    world.endpoint(clients, variants=2)
    before = world.variants(clients, "fraud-scoring")
    assert before == [("v0", 1.0, 1), ("v1", 2.0, 2)]
    params = {"endpoint_name": "fraud-scoring"}
    result, _ = run(ctx, "aws.sagemaker.isolate_endpoint", **params)
    assert world.variants(clients, "fraud-scoring") == [("v0", 0.0, 0), ("v1", 0.0, 0)]
    assert [(v.variant_name, v.weight, v.instance_count) for v in result.variants] == before
    undo(ctx, "aws.sagemaker.isolate_endpoint", params, result)
    assert world.variants(clients, "fraud-scoring") == before


def test_delete_keeps_config_and_tags_to_create_the_endpoint_again(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    served = world.endpoint(clients)
    sm = clients.aws("sagemaker")
    arn = sm.describe_endpoint(EndpointName="fraud-scoring")["EndpointArn"]
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": "team", "Value": "fraud"}])
    params = {"endpoint_name": "fraud-scoring", "mode": "delete"}
    result, calls = run(ctx, "aws.sagemaker.isolate_endpoint", **params)
    assert_honest("aws.sagemaker.isolate_endpoint", params, calls)
    assert world.endpoint_names(clients) == []
    assert (result.endpoint_config_name, result.tags) == (served["config"], {"team": "fraud"})
    restored = undo(ctx, "aws.sagemaker.isolate_endpoint", params, result)
    assert restored.status == "created"
    again = sm.describe_endpoint(EndpointName="fraud-scoring")
    assert again["EndpointConfigName"] == served["config"]
    tags = sm.list_tags(ResourceArn=again["EndpointArn"])["Tags"]
    assert {"Key": "team", "Value": "fraud"} in tags


def test_delete_is_refused_when_the_endpoint_could_not_come_back(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    served = world.endpoint(clients)
    clients.aws("sagemaker").delete_endpoint_config(EndpointConfigName=served["config"])
    with pytest.raises(
        ActionFailed, match=f"endpoint config {served['config']} .* no longer exists"
    ):
        run(ctx, "aws.sagemaker.isolate_endpoint", endpoint_name="fraud-scoring", mode="delete")
    assert world.endpoint_names(clients) == ["fraud-scoring"]


def test_deleting_twice_fails_naming_the_endpoint(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    """Like a deleted key, a gone endpoint and a mistyped name look the same: no "done"."""
    world.endpoint(clients)
    run(ctx, "aws.sagemaker.isolate_endpoint", endpoint_name="fraud-scoring", mode="delete")
    with pytest.raises(ActionFailed, match="SageMaker endpoint fraud-scoring not found"):
        run(ctx, "aws.sagemaker.isolate_endpoint", endpoint_name="fraud-scoring", mode="delete")


def test_restoring_a_deleted_endpoint_twice_is_already_done(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    world.endpoint(clients)
    params = {"endpoint_name": "fraud-scoring", "mode": "delete"}
    result, _ = run(ctx, "aws.sagemaker.isolate_endpoint", **params)
    undo(ctx, "aws.sagemaker.isolate_endpoint", params, result)
    again = undo(ctx, "aws.sagemaker.isolate_endpoint", params, result)
    assert again.already_done is True
    assert world.endpoint_names(clients) == ["fraud-scoring"]
