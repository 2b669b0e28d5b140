"""Publish to an SNS topic: the pager, e-mail list or chat bridge an organisation already has."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from irbook.registry import ActionContext, PlannedCall, action
from irbook_actions.aws._base import AwsParams, AwsResult, call, client

TOPIC_ARN = r"^arn:aws[a-zA-Z-]*:sns:[a-z0-9-]+:\d{12}:[\w-]+(\.fifo)?$"


class PublishParams(AwsParams):
    topic_arn: str = Field(pattern=TOPIC_ARN, max_length=512, description="the topic's ARN")
    subject: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[^\r\n]+$",
        description="one line, at most 100 characters (the e-mail subject)",
    )
    message: str = Field(min_length=1, max_length=262_144, description="the message body")


class PublishResult(AwsResult):
    topic_arn: str
    message_id: str
    status: Literal["published", "simulated"] = "published"


@action(
    "aws.sns.publish",
    effect="notify",
    calls=[
        ("sns", "Publish"),
    ],
    planner=lambda p: [
        PlannedCall(
            "sns",
            "Publish",
            {"TopicArn": p.topic_arn, "Subject": p.subject, "Message": p.message},
        )
    ],
    simulate=lambda p, run: PublishResult(
        topic_arn=p.topic_arn, message_id="simulated", status="simulated"
    ),
)
def publish(ctx: ActionContext, params: PublishParams) -> PublishResult:
    """Tell the people subscribed to a topic; the topic's region comes from its ARN."""
    region = params.topic_arn.split(":")[3]
    answer = call(
        client(ctx, "sns", region),
        "Publish",
        f"SNS topic {params.topic_arn}",
        TopicArn=params.topic_arn,
        Subject=params.subject,
        Message=params.message,
    )
    return PublishResult(topic_arn=params.topic_arn, message_id=str(answer.get("MessageId", "")))
