"""Trigger matching on normalized alerts."""

from __future__ import annotations

from typing import Any

import pytest

from irbook.model import Alert, Trigger
from irbook.triggers import matches

ALERT = Alert.model_validate(
    {
        "id": "f-1",
        "source": "guardduty",
        "type": "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
        "severity": 8.0,
        "region": "us-east-1",
        "actor": {"user_name": "ml-svc"},
        "resources": [
            {"type": "AwsIamAccessKey", "id": "k"},
            {"type": "AwsSageMakerEndpoint", "id": "fraud", "tags": {"env": "prod"}},
        ],
    }
)


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        ({}, True),
        ({"type": "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.*"}, True),
        ({"type": "unauthorizedaccess:*"}, False),  # finding types are case-sensitive
        ({"type": ["Recon:*", "UnauthorizedAccess:*"]}, True),
        ({"severity": {"gte": 7}}, True),
        ({"severity": {"gt": 8}}, False),
        ({"severity": {"gte": 7, "lt": 9}}, True),
        ({"severity": 8}, True),
        ({"region": {"ne": "us-east-1"}}, False),
        ({"actor.user_name": "ml-*"}, True),
        ({"resources.type": "AwsSageMaker*"}, True),  # any resource may match
        ({"resources.tags.env": "prod"}, True),
        ({"resources.type": "AwsEc2*"}, False),
        ({"account": "*"}, False),  # a missing field matches nothing
        ({"type": "*", "severity": {"lt": 5}}, False),  # every condition must hold
    ],
)
def test_conditions(match: dict[str, Any], expected: bool) -> None:
    assert matches(Trigger(source="guardduty", match=match), ALERT) is expected


def test_source_must_match() -> None:
    assert not matches(Trigger(source="splunk", match={}), ALERT)


def test_glob_characters_in_alert_text_are_only_compared() -> None:
    alert = ALERT.model_copy(update={"type": "[*]?"})
    assert not matches(Trigger(source="guardduty", match={"type": "UnauthorizedAccess:*"}), alert)
    assert matches(Trigger(source="guardduty", match={"type": "[[]*"}), alert)


def test_format_matches_any_source_of_that_format() -> None:
    prod = ALERT.model_copy(update={"source": "guardduty-prod", "format": "guardduty"})
    dev = ALERT.model_copy(update={"source": "guardduty-dev", "format": "guardduty"})
    assert matches(Trigger(format="guardduty"), prod)
    assert matches(Trigger(format="guardduty"), dev)
    assert matches(Trigger(source="guardduty-prod"), prod)
    assert not matches(Trigger(source="guardduty-prod"), dev)
    assert matches(Trigger(source="guardduty-prod", format="guardduty"), prod)
    assert not matches(Trigger(source="guardduty-prod", format="splunk"), prod)


def test_a_trigger_names_a_source_or_a_format() -> None:
    with pytest.raises(ValueError, match="a trigger needs source"):
        Trigger.model_validate({"match": {}})
