"""Wazuh, Alertmanager, PagerDuty and Google SecOps.

Payloads follow:
- Wazuh: alerts.json alert layout (timestamp, rule.level/description/id/groups/mitre,
  agent, manager, id, full_log, decoder, data.srcip/srcuser, location) from the Wazuh
  documentation; levels per "Rules classification".
- Alertmanager: "Configuration / webhook_config" payload, version "4" (receiver, status,
  alerts[] with status, labels, annotations, startsAt, endsAt, generatorURL, fingerprint;
  groupLabels, commonLabels, externalURL, groupKey, truncatedAlerts).
- PagerDuty: "Webhooks v3 overview" event payload (event.id, event_type, resource_type,
  occurred_at, agent, data incident with priority, urgency, service).
- Google SecOps: Detection Engine API detection (type RULE_DETECTION, detection[] with
  ruleName, ruleLabels, riskScore, outcomes; collectionElements[].references[].event UDM;
  createdTime, detectionTime, timeWindow).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from irbook.triggers.normalizers import NormalizeError, is_resolved
from irbook.triggers.normalizers.alertmanager import normalize as alertmanager
from irbook.triggers.normalizers.google_secops import normalize as google_secops
from irbook.triggers.normalizers.pagerduty import normalize as pagerduty
from irbook.triggers.normalizers.wazuh import normalize as wazuh
from tests.support.payloads import load

Edit = Callable[[dict[str, Any]], object]


def test_wazuh_alert() -> None:
    (alert,) = wazuh(load("wazuh_alert"))
    assert alert.id == "1715678493.2931741"
    assert alert.type == "5712"
    assert alert.title.startswith("sshd: brute force")
    assert alert.severity == pytest.approx(6.667)  # level 10 of 15
    assert alert.severity_label == "medium"  # Wazuh's band for levels 7-11
    assert alert.time == datetime(2024, 5, 14, 9, 21, 33, 512000, tzinfo=UTC)  # +0000
    assert (alert.actor.user_name, alert.actor.ip) == ("admin", "203.0.113.90")
    assert [(r.type, r.id, r.name) for r in alert.resources] == [("Host", "007", "gpu-node-03")]


@pytest.mark.parametrize(
    ("level", "severity", "label"),
    [
        (0, 0.0, "informational"),
        (3, 2.0, "low"),
        (12, 8.0, "high"),
        (15, 10.0, "critical"),
        (16, 10.0, "critical"),
    ],
)
def test_wazuh_levels(level: int, severity: float, label: str) -> None:
    payload = load("wazuh_alert")
    payload["rule"]["level"] = level
    (alert,) = wazuh(payload)
    assert (alert.severity, alert.severity_label) == (severity, label)


def test_wazuh_cloudtrail_alert_names_the_aws_principal() -> None:
    payload = load("wazuh_alert")
    payload["data"] = {
        "aws": {
            "accountId": "111122223333",
            "region": "us-east-1",
            "sourceIPAddress": "198.51.100.23",
            "userIdentity": {
                "type": "IAMUser",
                "arn": "arn:aws:iam::111122223333:user/ci-deployer",
                "accessKeyId": "AKIAIOSFODNN7EXAMPLE",
                "userName": "ci-deployer",
            },
        }
    }
    (alert,) = wazuh(payload)
    assert (alert.account, alert.region) == ("111122223333", "us-east-1")
    assert alert.actor.model_dump() == {
        "user_name": "ci-deployer",
        "principal_arn": "arn:aws:iam::111122223333:user/ci-deployer",
        "access_key_id": "AKIAIOSFODNN7EXAMPLE",
        "ip": "198.51.100.23",
    }


def test_alertmanager_group_yields_one_alert_per_alert_and_marks_resolved() -> None:
    firing, resolved = alertmanager(load("alertmanager_group"))
    assert firing.id == "1a30ba71cca2921f"
    assert firing.type == "ModelEndpointTokenSpike"
    assert firing.title == "Token spike on fraud-scoring"
    assert (firing.severity, firing.severity_label) == (9.0, "critical")
    assert firing.region == "eu-west-1"
    assert firing.time == datetime(2024, 5, 14, 9, 10, 45, 828000, tzinfo=UTC)
    assert [(r.type, r.id, r.name) for r in firing.resources] == [
        ("PrometheusTarget", "inference-gw-1:9090", "llm-gateway")
    ]
    assert not is_resolved(firing)

    assert resolved.id == "b2c4d6e8f0a1c3e5"
    assert resolved.type == "ModelEndpointTokenSpike"  # still matchable by type...
    assert (resolved.severity, resolved.severity_label) == (0.0, "resolved")  # ...not severity
    assert resolved.title == "[RESOLVED] Token spike on fraud-scoring"
    assert is_resolved(resolved)


def test_alertmanager_severity_words_and_map() -> None:
    payload = load("alertmanager_group")
    payload["alerts"][0]["labels"]["severity"] = "page"
    with pytest.raises(NormalizeError) as caught:  # unknown word: no guess, and no silent 0
        alertmanager(payload)
    assert caught.value.path == "$.alerts[0].labels.severity"
    assert caught.value.reason.startswith("unknown severity")
    assert alertmanager(payload, {"default_severity": "low"})[0].severity_label == "low"
    (first, _) = alertmanager(payload, {"severity_map": {"page": 8}})
    assert (first.severity, first.severity_label) == (8.0, "high")
    payload["alerts"][0]["labels"]["severity"] = "warning"
    assert alertmanager(payload)[0].severity_label == "medium"


def test_pagerduty_incident_triggered() -> None:
    (alert,) = pagerduty(load("pagerduty_incident_triggered"))
    assert alert.id == "PGR0VU2"  # the incident, shared by all its events
    assert alert.type == "incident.triggered"
    assert alert.title == "LLM gateway leaking system prompts"
    assert (alert.severity, alert.severity_label) == (9.0, "critical")  # P1
    assert alert.time == datetime(2024, 5, 14, 9, 22, 10, 169000, tzinfo=UTC)
    assert [(r.type, r.id, r.name) for r in alert.resources] == [
        ("PagerDutyService", "PF9KMXH", "LLM Gateway")
    ]


def test_pagerduty_resolved_and_urgency_fallback() -> None:
    payload = load("pagerduty_incident_triggered")
    payload["event"]["data"]["priority"] = None
    payload["event"]["data"]["urgency"] = "low"
    assert pagerduty(payload)[0].severity_label == "low"
    payload["event"]["event_type"] = "incident.resolved"
    (alert,) = pagerduty(payload)
    assert is_resolved(alert) and alert.type == "incident.resolved"


def test_google_secops_detection() -> None:
    (alert,) = google_secops(load("google_secops_detection"))
    assert alert.id == "de_5f2c1e0a-1111-2222-3333-444455556666"
    assert alert.type == alert.title == "aws_bedrock_invoke_from_tor"
    assert (alert.severity, alert.severity_label) == (8.5, "high")  # riskScore 85 / 10
    assert alert.time == datetime(2024, 5, 14, 9, 21, tzinfo=UTC)
    assert (alert.actor.user_name, alert.actor.ip) == ("data-scientist-ci", "185.220.101.4")
    (model,) = alert.resources
    assert (model.type, model.id) == (
        "AwsBedrockModel",
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
    )
    assert model.arn is not None and model.arn.startswith("arn:aws:bedrock:")


def test_google_secops_detection_list_and_label_fallback() -> None:
    detection = load("google_secops_detection")
    del detection["detection"][0]["riskScore"]
    del detection["detection"][0]["outcomes"]
    second = load("google_secops_detection")
    second["id"] = "de_other"
    first, other = google_secops({"detections": [detection, second], "nextPageToken": ""})
    assert (first.severity, first.severity_label) == (7.0, "high")  # ruleLabels severity
    assert other.id == "de_other"


@pytest.mark.parametrize(
    ("normalize", "name", "edit", "path"),
    [
        (wazuh, "wazuh_alert", lambda p: p.pop("rule"), "$.rule"),
        (wazuh, "wazuh_alert", lambda p: p["rule"].pop("level"), "$.rule.level"),
        (wazuh, "wazuh_alert", lambda p: p["rule"].update(level="high"), "$.rule.level"),
        (wazuh, "wazuh_alert", lambda p: p["rule"].pop("id"), "$.rule.id"),
        (wazuh, "wazuh_alert", lambda p: p.pop("id"), "$.id"),
        (wazuh, "wazuh_alert", lambda p: p["data"].update(srcip=["a"]), "$.data.srcip"),
        (alertmanager, "alertmanager_group", lambda p: p.update(version="3"), "$.version"),
        (alertmanager, "alertmanager_group", lambda p: p.pop("alerts"), "$.alerts"),
        (alertmanager, "alertmanager_group", lambda p: p.update(alerts={}), "$.alerts"),
        (
            alertmanager,
            "alertmanager_group",
            lambda p: p["alerts"][1].pop("fingerprint"),
            "$.alerts[1].fingerprint",
        ),
        (
            alertmanager,
            "alertmanager_group",
            lambda p: p["alerts"][0].update(status="pending"),
            "$.alerts[0].status",
        ),
        (
            alertmanager,
            "alertmanager_group",
            lambda p: p["alerts"][0]["labels"].update(severity=5),
            "$.alerts[0].labels.severity",
        ),
        (
            alertmanager,
            "alertmanager_group",
            lambda p: p["alerts"][0]["labels"].update({"team name": ["x"]}),
            "$.alerts[0].labels['team name']",
        ),
        (pagerduty, "pagerduty_incident_triggered", lambda p: p.pop("event"), "$.event"),
        (
            pagerduty,
            "pagerduty_incident_triggered",
            lambda p: p["event"].pop("event_type"),
            "$.event.event_type",
        ),
        (
            pagerduty,
            "pagerduty_incident_triggered",
            lambda p: p["event"].update(data="PGR0VU2"),
            "$.event.data",
        ),
        (
            pagerduty,
            "pagerduty_incident_triggered",
            lambda p: p["event"]["data"].update(priority="P1"),
            "$.event.data.priority",
        ),
        (google_secops, "google_secops_detection", lambda p: p.pop("id"), "$.id"),
        (google_secops, "google_secops_detection", lambda p: p.pop("detection"), "$.detection"),
        (google_secops, "google_secops_detection", lambda p: p.update(detection=[]), "$.detection"),
        (
            google_secops,
            "google_secops_detection",
            lambda p: p["detection"][0].update(riskScore="very"),
            "$.detection[0].riskScore",
        ),
        (
            google_secops,
            "google_secops_detection",
            lambda p: p["collectionElements"][0]["references"][0]["event"].update(principal=[]),
            "$.collectionElements[0].references[0].event.principal",
        ),
    ],
)
def test_malformed_payloads_name_the_bad_field(
    normalize: Any, name: str, edit: Edit, path: str
) -> None:
    payload = load(name)
    edit(payload)
    with pytest.raises(NormalizeError) as caught:
        normalize(payload)
    assert caught.value.path == path
