"""What `irbook sandbox` serves in front of moto, through the clients a user would point
at it: CloudTrail LookupEvents from the seeded events (filtered, paged, newest first),
and the fake Slack's token check."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from irbook_actions import sandbox_fakes as fakes
from irbook_actions.aws import sandbox


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, dict[str, str]]]:
    server = fakes.SandboxServer()
    url = server.start()
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))
    created = sandbox.seed(url)
    server.app.events.extend(sandbox.cloudtrail_events(created, time.time()))
    yield url, created
    # moto's state is per process: leave none for the next test's server
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))
    server.stop()


def trail(url: str) -> Any:
    return boto3.client(
        "cloudtrail",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_lookup_events_answers_with_the_seeded_events_of_the_key(
    served: tuple[str, dict[str, str]],
) -> None:
    url, created = served
    key = {"AttributeKey": "AccessKeyId", "AttributeValue": created["access_key_id"]}
    pages = (
        trail(url)
        .get_paginator("lookup_events")
        .paginate(LookupAttributes=[key], PaginationConfig={"PageSize": 4})
    )
    sizes, events = [], []
    for page in pages:
        sizes.append(len(page["Events"]))
        events += page["Events"]
    assert len(events) == len(sandbox.cloudtrail_events(created, 0)) and max(sizes) == 4
    times = [e["EventTime"] for e in events]
    assert times == sorted(times, reverse=True)  # newest first, as CloudTrail answers
    assert all(e["EventId"].startswith("sandbox-") for e in events)
    assert all(sandbox.SEEDED in e["CloudTrailEvent"] for e in events)
    other = {"AttributeKey": "AccessKeyId", "AttributeValue": "AKIAAAAAAAAAAAAAAAAA"}
    assert trail(url).lookup_events(LookupAttributes=[other])["Events"] == []


def test_the_fake_slack_takes_only_the_sandbox_token(served: tuple[str, dict[str, str]]) -> None:
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    url, _ = served
    good = WebClient(token=fakes.SLACK_TOKEN, base_url=url + fakes.SLACK_PREFIX)
    sent = good.chat_postMessage(channel="#ir", text="hello")
    assert sent["ok"] and sent["ts"]
    with pytest.raises(SlackApiError, match="invalid_auth"):
        WebClient(token="xoxb-other", base_url=url + fakes.SLACK_PREFIX).chat_postMessage(
            channel="#ir", text="hello"
        )
