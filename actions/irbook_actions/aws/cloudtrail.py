"""What a principal did recently, from CloudTrail's 90-day management event history.

The answer is a summary a responder reads in Slack or a ticket: which calls, from where,
when first and last seen. LookupEvents is regional, so the step's region is searched.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from irbook.registry import ActionContext, PlannedCall, action
from irbook_actions.aws._base import (
    ACCESS_KEY_ID,
    IAM_NAME,
    AwsParams,
    AwsResult,
    blank_to_none,
    call,
    if_set,
    iso,
    now,
)

PAGE = 50  # LookupEvents' largest page


class LookupParams(AwsParams):
    access_key_id: str | None = Field(None, pattern=ACCESS_KEY_ID, description="an access key")
    user_name: str | None = Field(None, pattern=IAM_NAME, description="an IAM user name")
    hours: int = Field(24, ge=1, le=2160, description="how far back to look (at most 90 days)")
    max_events: int = Field(500, ge=1, le=5000, description="stop after this many events")

    @field_validator("access_key_id", "user_name", mode="before")
    @classmethod
    def blank_is_none(cls, value: Any) -> Any:
        return blank_to_none(value)

    @model_validator(mode="after")
    def exactly_one(self) -> LookupParams:
        if (self.access_key_id is None) == (self.user_name is None):
            raise ValueError("give exactly one of access_key_id or user_name")
        return self

    @property
    def attribute(self) -> dict[str, str]:
        if self.access_key_id is not None:
            return {"AttributeKey": "AccessKeyId", "AttributeValue": self.access_key_id}
        return {"AttributeKey": "Username", "AttributeValue": str(self.user_name)}


class LookupResult(AwsResult):
    principal: str
    hours: int
    events: int = Field(0, description="events found (at most max_events)")
    truncated: bool = Field(False, description="more events exist than were read")
    event_names: dict[str, int] = Field(default_factory=dict, description="event name -> count")
    event_sources: dict[str, int] = Field(default_factory=dict)
    source_ips: dict[str, int] = Field(default_factory=dict)
    user_agents: dict[str, int] = Field(default_factory=dict)
    errors: dict[str, int] = Field(default_factory=dict, description="error code -> count")
    first_seen: str | None = None
    last_seen: str | None = None
    status: Literal["found", "none", "simulated"] = "found"


def _plan(params: LookupParams) -> list[PlannedCall]:
    return [
        PlannedCall(
            "cloudtrail",
            "LookupEvents",
            {
                "LookupAttributes": [params.attribute],
                "StartTime": f"<now - {params.hours}h>",
                "EndTime": "<now>",
                "MaxResults": PAGE,
                "NextToken": if_set("cloudtrail:LookupEvents"),
            },
            note=f"repeated with NextToken while more events exist, up to {params.max_events}",
        )
    ]


def _top(counter: Counter[str]) -> dict[str, int]:
    return dict(counter.most_common(25))


@action(
    "aws.cloudtrail.lookup_events",
    effect="read",
    calls=[
        ("cloudtrail", "LookupEvents"),
    ],
    planner=_plan,
    simulate=lambda p, run: LookupResult(
        principal=p.attribute["AttributeValue"], hours=p.hours, status="simulated"
    ),
    idempotent=True,
)
def lookup_events(ctx: ActionContext, params: LookupParams) -> LookupResult:
    """Summarise the management events of an access key or user over the last hours."""
    trail = ctx.aws("cloudtrail")
    principal = params.attribute["AttributeValue"]
    end = now()
    start = end - dt.timedelta(hours=params.hours)
    names: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    ips: Counter[str] = Counter()
    agents: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    times: list[dt.datetime] = []
    seen = 0
    token: str | None = None
    truncated = False
    while True:
        kwargs: dict[str, Any] = {
            "LookupAttributes": [params.attribute],
            "StartTime": start,
            "EndTime": end,
            "MaxResults": PAGE,
        }
        if token:
            kwargs["NextToken"] = token
        page = call(trail, "LookupEvents", f"CloudTrail events of {principal}", **kwargs)
        for event in page.get("Events", []):
            if seen >= params.max_events:
                truncated = True
                break
            seen += 1
            names[str(event.get("EventName", "?"))] += 1
            sources[str(event.get("EventSource", "?"))] += 1
            when = event.get("EventTime")
            if isinstance(when, dt.datetime):
                times.append(when if when.tzinfo else when.replace(tzinfo=dt.UTC))
            detail = _detail(event.get("CloudTrailEvent"))
            if detail.get("sourceIPAddress"):
                ips[str(detail["sourceIPAddress"])] += 1
            if detail.get("userAgent"):
                agents[str(detail["userAgent"])[:120]] += 1
            if detail.get("errorCode"):
                errors[str(detail["errorCode"])] += 1
        token = page.get("NextToken")
        if truncated or not token:
            break
        if seen >= params.max_events:
            truncated = True  # more pages exist than we read
            break
    found = seen
    ctx.note(f"{found} CloudTrail events of {principal} in the last {params.hours}h")
    return LookupResult(
        principal=principal,
        hours=params.hours,
        events=found,
        truncated=truncated,
        event_names=_top(names),
        event_sources=_top(sources),
        source_ips=_top(ips),
        user_agents=_top(agents),
        errors=_top(errors),
        first_seen=iso(min(times)) if times else None,
        last_seen=iso(max(times)) if times else None,
        status="found" if found else "none",
    )


def _detail(text: Any) -> dict[str, Any]:
    if not isinstance(text, str):
        return {}
    try:
        parsed = json.loads(text)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
