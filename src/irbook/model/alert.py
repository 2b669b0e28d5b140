"""The normalized alert: what every SIEM payload becomes before it meets a playbook."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Actor(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_name: str | None = None
    principal_arn: str | None = None
    access_key_id: str | None = None
    ip: str | None = None


class Resource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = ""
    id: str = ""
    arn: str | None = None
    name: str | None = None
    region: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class Alert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=512)  # the source's stable key
    source: str = "manual"  # the receiver's configured source name (guardduty-prod)
    format: str = ""  # that source's format (guardduty); empty for a hand-made alert
    type: str = ""
    title: str = ""
    description: str = ""
    severity: float = Field(default=0.0, ge=0, le=10)
    severity_label: str = ""
    time: datetime | None = None
    account: str | None = None
    region: str | None = None
    actor: Actor = Field(default_factory=Actor)
    resources: list[Resource] = Field(default_factory=list)
    raw: Any = None

    def as_context(self) -> dict[str, Any]:
        """Plain data for expressions: times as ISO-8601 text in UTC."""
        return self.model_dump(mode="json")
