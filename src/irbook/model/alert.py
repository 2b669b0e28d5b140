"""The normalized alert: what every SIEM payload becomes before it meets a playbook."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Actor(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    user_name: str | None = Field(default=None, description="IAM user or account name")
    principal_arn: str | None = Field(default=None, description="ARN of the acting principal")
    access_key_id: str | None = Field(default=None, description="The access key used (AKIA…)")
    ip: str | None = Field(default=None, description="Source IP address of the activity")


class Resource(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    type: str = Field(default="", description="Kind of resource: AccessKey, Instance, Endpoint")
    id: str = Field(default="", description="The resource's id in its service")
    arn: str | None = Field(default=None, description="Its ARN, when the source gives one")
    name: str | None = Field(default=None, description="Its name")
    region: str | None = Field(default=None, description="Its region")
    tags: dict[str, str] = Field(default_factory=dict, description="Its tags, name -> value")


class Alert(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    id: str = Field(
        min_length=1, max_length=512, description="The source's stable key (dedup uses it)"
    )
    source: str = Field(
        default="manual", description="The receiver's configured source name (guardduty-prod)"
    )
    format: str = Field(
        default="", description="That source's format (guardduty); empty for a hand-made alert"
    )
    type: str = Field(default="", description="The finding type, as the source names it")
    title: str = Field(default="", description="One line from the source")
    description: str = Field(default="", description="The source's longer text")
    severity: float = Field(default=0.0, ge=0, le=10, description="0 to 10, normalized")
    severity_label: str = Field(default="", description="The source's own word: HIGH, P1")
    time: datetime | None = Field(
        default=None, description="When it happened, as ISO-8601 text in UTC"
    )
    account: str | None = Field(default=None, description="The AWS account id concerned")
    region: str | None = Field(default=None, description="The AWS region concerned")
    actor: Actor = Field(default_factory=Actor, description="Who did it")
    resources: list[Resource] = Field(default_factory=list, description="What it concerns")
    raw: Any = Field(default=None, description="The source's payload as received")

    def as_context(self) -> dict[str, Any]:
        """Plain data for expressions: times as ISO-8601 text in UTC."""
        return self.model_dump(mode="json")
