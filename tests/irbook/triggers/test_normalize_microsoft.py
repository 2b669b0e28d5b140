"""Microsoft Sentinel incidents and Microsoft Graph security alerts.

Payloads follow:
- Sentinel: the Logic Apps "Microsoft Sentinel incident" trigger body (Microsoft Learn,
  "Use triggers and actions in Microsoft Sentinel playbooks"; connector reference
  "Microsoft Sentinel"): objectSchemaType, workspaceInfo, object.id/name/properties with
  title, severity, status, incidentNumber, createdTimeUtc, alerts, relatedEntities; entity
  properties per "Microsoft Sentinel entity types reference" (Account, Ip, AzureResource).
- Graph: "alert resource type" (microsoft.graph.security.alert, alerts_v2) and the
  alertEvidence types userEvidence, ipEvidence, deviceEvidence, amazonResourceEvidence
  (microsoftgraph/microsoft-graph-docs-contrib, api-reference/v1.0/resources), in the
  `{"value": [...]}` collection the List alerts_v2 API returns.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from irbook.triggers.normalizers import NormalizeError, is_resolved
from irbook.triggers.normalizers.msgraph import normalize as msgraph
from irbook.triggers.normalizers.sentinel import normalize as sentinel
from tests.support.payloads import load

Edit = Callable[[dict[str, Any]], object]


def test_sentinel_incident_maps_entities_to_actor_and_resources() -> None:
    (alert,) = sentinel(load("sentinel_incident"))
    assert alert.id.endswith("/Incidents/63883bf7-5be1-42f4-809a-0417943b837b")
    assert alert.source == "sentinel"
    assert alert.type == alert.title == "Suspicious access to Azure OpenAI keys"
    assert (alert.severity, alert.severity_label) == (7.0, "high")
    # Seven fractional digits, as Sentinel writes them, still parse (cut to microseconds).
    assert alert.time == datetime(2024, 5, 14, 9, 12, 3, 813672, tzinfo=UTC)
    assert alert.account == "d0cfe6b2-9ac0-4464-9919-dccaee2e48c0"
    assert alert.actor.user_name == "svc-llm-gateway@contoso.com"
    assert alert.actor.ip == "192.0.2.44"
    (res,) = alert.resources
    assert (res.type, res.name) == ("AzureResource", "openai-prod")
    assert res.id.endswith("/Microsoft.CognitiveServices/accounts/openai-prod")


@pytest.mark.parametrize(
    ("severity", "score", "label"),
    [("Informational", 0.0, "informational"), ("Low", 1.0, "low"), ("Medium", 4.0, "medium")],
)
def test_sentinel_severities(severity: str, score: float, label: str) -> None:
    payload = load("sentinel_incident")
    payload["object"]["properties"]["severity"] = severity
    (alert,) = sentinel(payload)
    assert (alert.severity, alert.severity_label) == (score, label)


def test_closed_sentinel_incident_is_resolved() -> None:
    payload = load("sentinel_incident")
    payload["object"]["properties"]["status"] = "Closed"
    (alert,) = sentinel(payload)
    assert is_resolved(alert) and alert.severity == 0


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda p: p.pop("object"), "$.object"),
        (lambda p: p["object"].pop("properties"), "$.object.properties"),
        (lambda p: [p["object"].pop(k) for k in ("id", "name")], "$.object.id"),
        (lambda p: p["object"]["properties"].pop("title"), "$.object.properties.title"),
        (
            lambda p: p["object"]["properties"].update(severity="Sev1"),
            "$.object.properties.severity",
        ),
        (
            lambda p: p["object"]["properties"].update(relatedEntities={"kind": "Ip"}),
            "$.object.properties.relatedEntities",
        ),
        (
            lambda p: p["object"]["properties"]["relatedEntities"][1]["properties"].update(
                address=3232235777
            ),
            "$.object.properties.relatedEntities[1].properties.address",
        ),
    ],
)
def test_malformed_sentinel_incidents_name_the_bad_field(edit: Edit, path: str) -> None:
    payload = load("sentinel_incident")
    edit(payload)
    with pytest.raises(NormalizeError) as caught:
        sentinel(payload)
    assert caught.value.path == path


def test_graph_collection_yields_one_alert_per_element() -> None:
    first, second = msgraph(load("msgraph_alerts"))
    assert first.id == "da637551227677560813_-961444813"
    assert first.source == "msgraph"
    assert first.type == "InitialAccess"
    assert (first.severity, first.severity_label) == (7.0, "high")
    assert first.account == "b3c1b5fc-828c-45fa-a1e1-10d74f6d6e9c"
    assert first.actor.user_name == "ml-admin@contoso.com"
    assert first.actor.ip == "203.0.113.201"
    (endpoint,) = first.resources
    assert (endpoint.type, endpoint.id) == ("AwsSageMakerEndpoint", "fraud-scoring")
    assert endpoint.arn == "arn:aws:sagemaker:us-east-1:111122223333:endpoint/fraud-scoring"

    assert second.type == "Execution"
    assert is_resolved(second) and second.title == "[RESOLVED] Suspicious PowerShell command line"
    (device,) = second.resources
    assert (device.type, device.name) == ("Device", "gpu-node-03.contoso.com")


def test_a_single_graph_alert_is_accepted_too() -> None:
    alert_json = load("msgraph_alerts")["value"][0]
    (alert,) = msgraph(alert_json)
    assert alert.id == "da637551227677560813_-961444813"
    assert alert.raw is alert_json


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda p: p.update(value={"id": "x"}), "$.value"),
        (lambda p: p["value"][1].pop("id"), "$.value[1].id"),
        (lambda p: p["value"][0].update(severity="critical!"), "$.value[0].severity"),
        (lambda p: p["value"][0].pop("severity"), "$.value[0].severity"),
        (lambda p: p["value"][0].update(evidence="none"), "$.value[0].evidence"),
        (
            lambda p: p["value"][0]["evidence"][0].update(userAccount=["ml-admin"]),
            "$.value[0].evidence[0].userAccount",
        ),
        (lambda p: p["value"].append(None), "$.value[2]"),
    ],
)
def test_malformed_graph_alerts_name_the_bad_field(edit: Edit, path: str) -> None:
    payload = load("msgraph_alerts")
    edit(payload)
    with pytest.raises(NormalizeError) as caught:
        msgraph(payload)
    assert caught.value.path == path
