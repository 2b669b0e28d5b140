"""OCSF Detection Findings (class_uid 2004), the `ocsf` format.

The sample is a GuardDuty finding as Security Hub's OCSF findings (and Security Lake)
carry it, built from the OCSF schema's Detection Finding class: base event attributes
(class_uid, activity_id, severity_id / severity, status_id, time, message, metadata,
cloud), finding_info (uid, title, desc, types, analytic, created/modified times), actor
(user with credential_uid, session.issuer), src_endpoint and resources[] (uid, type, name,
region, tags as name/value pairs).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from irbook.triggers.normalizers import NORMALIZERS, NormalizeError, is_resolved
from irbook.triggers.normalizers.ocsf import normalize as ocsf
from tests.support.payloads import load

FINDING_ARN = (
    "arn:aws:guardduty:us-east-1:111122223333:detector/12abc34d567e8fa901bc2d34e56789f0"
    "/finding/7ab9d1b2c3d4e5f60718293a4b5c6d7e"
)


def test_detection_finding_maps_to_the_alert_model() -> None:
    (alert,) = ocsf(load("ocsf_detection_finding"))
    assert alert.id == FINDING_ARN  # finding_info.uid
    assert alert.source == "ocsf"
    assert alert.type == "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS"
    assert alert.title.startswith("Credentials for instance role ml-inference-role")
    assert alert.description.startswith("Credentials created exclusively for an EC2 instance")
    assert (alert.severity, alert.severity_label) == (7.0, "high")  # severity_id 4
    assert alert.time == datetime(2024, 5, 14, 9, 20, 59, tzinfo=UTC)  # time, epoch millis
    assert (alert.account, alert.region) == ("111122223333", "us-east-1")
    assert alert.actor.user_name == "ml-inference-role"
    assert alert.actor.principal_arn == "arn:aws:iam::111122223333:role/ml-inference-role"
    assert alert.actor.access_key_id == "ASIAIOSFODNN7EXAMPLE"  # user.credential_uid
    assert alert.actor.ip == "198.51.100.23"
    key, instance = alert.resources
    assert (key.type, key.id, key.arn, key.name) == (
        "AWS::IAM::AccessKey",
        "ASIAIOSFODNN7EXAMPLE",
        None,
        "ml-inference-role",
    )
    assert (instance.type, instance.id) == ("AWS::EC2::Instance", "i-0a1b2c3d4e5f67890")
    assert instance.arn == "arn:aws:ec2:us-east-1:111122223333:instance/i-0a1b2c3d4e5f67890"
    assert instance.tags == {"Name": "llm-inference-01", "team": "ml-platform"}
    assert not is_resolved(alert)


def _two() -> list[dict[str, Any]]:
    first = load("ocsf_detection_finding")
    second = copy.deepcopy(first)
    second["finding_info"]["uid"] = "finding-2"
    second["severity_id"] = 5
    return [first, second]


@pytest.mark.parametrize(
    "wrap",
    [
        lambda findings: findings,
        lambda findings: {"findings": findings},
        lambda findings: {
            "version": "0",
            "detail-type": "Findings Imported V2",
            "source": "aws.securityhub",
            "detail": {"findings": findings},
        },
    ],
    ids=["list", "findings", "eventbridge"],
)
def test_a_list_of_findings_gives_one_alert_each(wrap: Any) -> None:
    first, second = ocsf(wrap(_two()))
    assert (first.id, second.id) == (FINDING_ARN, "finding-2")
    assert (second.severity, second.severity_label) == (9.0, "critical")


@pytest.mark.parametrize(
    ("class_uid", "path"), [(1001, "$.class_uid"), (2003, "$.class_uid"), ("2002", "$.class_uid")]
)
def test_other_classes_are_refused_naming_class_uid(class_uid: Any, path: str) -> None:
    payload = load("ocsf_detection_finding")
    payload["class_uid"] = class_uid
    with pytest.raises(NormalizeError) as caught:
        ocsf(payload)
    assert caught.value.path == path
    assert "2004" in caught.value.reason


def test_a_foreign_class_in_a_list_is_refused_at_its_element() -> None:
    findings = _two()
    findings[1]["class_uid"] = 4001  # a network activity is not an alert
    with pytest.raises(NormalizeError) as caught:
        ocsf(findings)
    assert caught.value.path == "$[1].class_uid"
    payload = load("ocsf_detection_finding")
    del payload["class_uid"]
    with pytest.raises(NormalizeError) as caught:
        ocsf(payload)
    assert (caught.value.path, caught.value.reason) == ("$.class_uid", "missing")


@pytest.mark.parametrize(
    ("severity_id", "caption", "score", "label"),
    [
        (1, "Informational", 0.0, "informational"),
        (2, "Low", 1.0, "low"),
        (3, "Medium", 4.0, "medium"),
        (4, "High", 7.0, "high"),
        (5, "Critical", 9.0, "critical"),
        (6, "Fatal", 10.0, "critical"),
        (99, "High", 7.0, "high"),  # Other: the caption says which
        (0, "Fatal", 10.0, "critical"),
        ("4", None, 7.0, "high"),
    ],
)
def test_severity_id_and_caption(severity_id: Any, caption: Any, score: float, label: str) -> None:
    payload = load("ocsf_detection_finding")
    payload["severity_id"], payload["severity"] = severity_id, caption
    (alert,) = ocsf(payload)
    assert (alert.severity, alert.severity_label) == (score, label)


def test_other_severity_caption_can_be_mapped() -> None:
    payload = load("ocsf_detection_finding")
    payload["severity_id"], payload["severity"] = 99, "Sev-2"
    with pytest.raises(NormalizeError) as caught:
        ocsf(payload)
    assert caught.value.path == "$.severity"
    (alert,) = ocsf(payload, {"severity_map": {"sev-2": 8}})
    assert (alert.severity, alert.severity_label) == (8.0, "high")


@pytest.mark.parametrize("severity_id", [7, 100, -1, 4.5, True, "high"])
def test_bad_severity_ids_are_refused(severity_id: Any) -> None:
    payload = load("ocsf_detection_finding")
    payload["severity_id"] = severity_id
    with pytest.raises(NormalizeError) as caught:
        ocsf(payload)
    assert caught.value.path == "$.severity_id"


def test_id_falls_back_to_metadata_uid_and_is_required() -> None:
    payload = load("ocsf_detection_finding")
    del payload["finding_info"]["uid"]
    payload["metadata"]["uid"] = "meta-1"
    assert ocsf(payload)[0].id == "meta-1"
    del payload["metadata"]["uid"]
    with pytest.raises(NormalizeError) as caught:
        ocsf(payload)
    assert caught.value.path == "$.finding_info.uid"


def test_type_and_title_fallbacks_and_evidence_ip() -> None:
    payload = load("ocsf_detection_finding")
    del payload["finding_info"]["types"], payload["finding_info"]["title"]
    del payload["src_endpoint"]
    payload["evidences"] = [{"api": {}}, {"src_endpoint": {"ip": "192.0.2.9"}}]
    (alert,) = ocsf(payload)
    assert alert.type == "InstanceCredentialExfiltration.OutsideAWS"  # analytic.name
    assert alert.title == payload["message"]
    assert alert.actor.ip == "192.0.2.9"


@pytest.mark.parametrize(
    ("edit", "resolved"),
    [
        ({"status_id": 4, "status": "Resolved"}, True),
        ({"status_id": 5}, True),
        ({"activity_id": 3, "activity_name": "Close"}, True),
        ({"status_id": 2, "activity_id": 2}, False),
        ({"status_id": 3}, False),  # Suppressed is not over
    ],
)
def test_closed_and_resolved_findings(edit: dict[str, Any], resolved: bool) -> None:
    payload = {**load("ocsf_detection_finding"), **edit}
    (alert,) = ocsf(payload)
    assert is_resolved(alert) is resolved
    if resolved:
        assert alert.severity == 0.0 and alert.title.startswith("[RESOLVED] ")


def test_empty_lists_are_refused() -> None:
    for payload, path in (([], "$"), ({"findings": []}, "$.findings")):
        with pytest.raises(NormalizeError) as caught:
            ocsf(payload)
        assert caught.value.path == path


def test_the_asff_format_points_security_hub_v2_events_here() -> None:
    event = {"detail-type": "Findings Imported V2", "detail": {"findings": _two()}}
    with pytest.raises(NormalizeError) as caught:
        NORMALIZERS["securityhub"](event)
    assert caught.value.path == "$['detail-type']"
    assert "format ocsf" in caught.value.reason
    assert len(ocsf(event)) == 2
