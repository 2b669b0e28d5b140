"""GuardDuty and Security Hub findings delivered by EventBridge.

Payloads follow the documented shapes:
- EventBridge envelope: GuardDuty User Guide, "Monitoring GuardDuty findings with Amazon
  EventBridge" (awsdocs/amazon-guardduty-user-guide, guardduty_findings_cloudwatch.md).
- Finding fields: GuardDuty API Reference (Finding, Resource, AccessKeyDetails,
  AwsApiCallAction, ModelDetail, BedrockGuardrailDetails, BedrockGuardrail) and the sample
  finding JSON GuardDuty generates ("Generate sample findings", sample_findings.md).
- AI Protection: GuardDuty User Guide, "GuardDuty AI Protection finding types"
  (Impact:IAMUser/AnomalousModelInvocation, CostHarvesting, PromptInjection.Direct;
  resource.modelDetails and resource.bedrockGuardrailDetails).
- Severity bands: GuardDuty User Guide, "Severity levels of GuardDuty findings".
- Security Hub: "EventBridge event formats for Security Hub CSPM" (Findings - Imported)
  and the ASFF reference (Severity, AwsIamAccessKey resource details). The documented
  event carries one finding; the list shape allows more, which the second finding tests.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from irbook.triggers.normalizers import NORMALIZERS, NormalizeError, is_resolved, is_sample
from irbook.triggers.normalizers.guardduty import normalize as guardduty
from irbook.triggers.normalizers.securityhub import normalize as securityhub
from tests.support.payloads import load

Edit = Callable[[dict[str, Any]], object]


def test_credential_exfiltration_names_the_key_the_user_and_the_remote_ip() -> None:
    (alert,) = guardduty(load("guardduty_credential_exfiltration"))
    assert alert.id == "a2c7a0b4e1f64c31b6f8c1d5e3b2a901"
    assert alert.source == "guardduty"
    assert alert.type == "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS"
    assert (alert.severity, alert.severity_label) == (8.0, "high")
    assert alert.time == datetime(2024, 5, 14, 9, 20, 59, 871000, tzinfo=UTC)
    assert (alert.account, alert.region) == ("111122223333", "us-east-1")
    assert alert.actor.access_key_id == "ASIAIOSFODNN7EXAMPLE"
    assert alert.actor.user_name == "ml-inference-role"
    assert alert.actor.ip == "198.51.100.23"
    # principalId is "AROA...:i-...", not an ARN: never passed off as one.
    assert alert.actor.principal_arn is None
    assert [(r.type, r.id) for r in alert.resources] == [
        ("AwsIamAccessKey", "ASIAIOSFODNN7EXAMPLE"),
        ("AwsEc2Instance", "i-0a1b2c3d4e5f67890"),  # the instance role's session name
    ]
    assert alert.resources[1].arn == (
        "arn:aws:ec2:us-east-1:111122223333:instance/i-0a1b2c3d4e5f67890"
    )
    assert not is_sample(alert)
    assert not is_resolved(alert)


def test_ai_protection_model_invocation_lists_the_bedrock_and_sagemaker_models() -> None:
    (alert,) = guardduty(load("guardduty_ai_model_invocation"))
    assert alert.type == "Impact:IAMUser/AnomalousModelInvocation"
    assert (alert.severity, alert.severity_label) == (5.5, "medium")
    assert alert.actor.user_name == "data-scientist-ci"
    models = [(r.type, r.id, r.arn) for r in alert.resources[1:]]
    assert models == [
        (
            "AwsBedrockFoundationModel",
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "arn:aws:bedrock:us-west-2::foundation-model/anthropic.claude-3-5-sonnet-20240620-v1:0",
        ),
        (
            "AwsSageMakerEndpoint",
            "fraud-scoring",
            "arn:aws:sagemaker:us-west-2:111122223333:endpoint/fraud-scoring",
        ),
    ]


def test_prompt_injection_names_the_guardrail_that_intervened() -> None:
    (alert,) = guardduty(load("guardduty_prompt_injection"))
    assert alert.type == "Impact:IAMUser/PromptInjection.Direct"
    assert alert.actor.ip is None  # no remote IP in this finding
    kinds = {r.type: r for r in alert.resources}
    assert kinds["AwsBedrockModel"].id == "anthropic.claude-3-haiku-20240307-v1:0"
    guardrail = kinds["AwsBedrockGuardrail"]
    assert guardrail.id == "abc123def456"
    assert guardrail.arn == "arn:aws:bedrock:us-east-1:111122223333:guardrail/abc123def456"
    # guardrailArn (deprecated) and guardrails[] name the same guardrail: listed once.
    assert sum(r.type == "AwsBedrockGuardrail" for r in alert.resources) == 1


def test_a_bare_model_id_invoked_through_sagemaker_runtime_is_an_endpoint() -> None:
    payload = load("guardduty_prompt_injection")
    action = payload["detail"]["service"]["action"]["awsApiCallAction"]
    action["serviceName"] = "runtime.sagemaker.amazonaws.com"
    payload["detail"]["resource"]["modelDetails"] = [{"modelId": "churn-model-prod"}]
    (alert,) = guardduty(payload)
    assert ("AwsSageMakerEndpoint", "churn-model-prod") in [(r.type, r.id) for r in alert.resources]


def test_sample_findings_are_flagged_for_the_receiver() -> None:
    (alert,) = guardduty(load("guardduty_sample"))
    assert is_sample(alert)
    assert alert.resources[1].tags == {
        "GeneratedFindingInstaceTag1": "GeneratedFindingInstaceValue1"
    }


@pytest.mark.parametrize(
    ("severity", "label"),
    [
        (0.5, "low"),
        (3.9, "low"),
        (4.0, "medium"),
        (6.9, "medium"),
        (7.0, "high"),
        (8.9, "high"),
        (9.0, "critical"),
        (10, "critical"),
        (0, "informational"),
    ],
)
def test_severity_labels_follow_guardduty_bands(severity: float, label: str) -> None:
    payload = load("guardduty_credential_exfiltration")
    payload["detail"]["severity"] = severity
    (alert,) = guardduty(payload)
    assert (alert.severity, alert.severity_label) == (severity, label)


def test_id_falls_back_to_the_finding_arn() -> None:
    payload = load("guardduty_credential_exfiltration")
    del payload["detail"]["id"]
    (alert,) = guardduty(payload)
    assert alert.id == payload["detail"]["arn"]


def test_security_hub_posts_one_alert_per_finding() -> None:
    first, second = securityhub(load("securityhub_findings"))
    assert first.source == "securityhub"
    assert first.id.endswith("/finding/a2c7a0b4e1f64c31b6f8c1d5e3b2a901")
    assert first.type == (
        "TTPs/Initial Access/UnauthorizedAccess:IAMUser-InstanceCredentialExfiltration.OutsideAWS"
    )
    assert (first.severity, first.severity_label) == (8.0, "high")  # Normalized 80 / 10
    assert first.actor.access_key_id == "ASIAIOSFODNN7EXAMPLE"
    assert first.actor.user_name == "ml-inference-role"
    assert first.actor.principal_arn == "arn:aws:iam::111122223333:role/ml-inference-role"
    assert first.actor.ip == "198.51.100.23"
    assert [(r.type, r.id) for r in first.resources] == [
        ("AwsIamAccessKey", "ASIAIOSFODNN7EXAMPLE")
    ]

    assert (second.severity, second.severity_label) == (4.0, "medium")  # Label only
    assert second.region == "us-west-2"  # from its resource, not the event bus
    (notebook,) = second.resources
    assert (notebook.type, notebook.id) == ("AwsSageMakerNotebookInstance", "fraud-research")
    assert (
        notebook.arn == "arn:aws:sagemaker:us-west-2:111122223333:notebook-instance/fraud-research"
    )
    assert notebook.tags == {"env": "prod", "team": "ml"}
    assert not is_sample(first)


def test_security_hub_resolved_and_sample_findings() -> None:
    payload = load("securityhub_findings")
    payload["detail"]["findings"][0]["Workflow"]["Status"] = "RESOLVED"
    payload["detail"]["findings"][1]["Sample"] = True
    first, second = securityhub(payload)
    assert is_resolved(first) and first.severity == 0 and first.title.startswith("[RESOLVED] ")
    assert is_sample(second)


def test_guardduty_sample_flag_survives_security_hub() -> None:
    payload = load("securityhub_findings")
    fields = payload["detail"]["findings"][0]["ProductFields"]
    fields["aws/guardduty/service/additionalInfo/sample"] = "true"
    assert is_sample(securityhub(payload)[0])


def test_the_registry_serves_these_functions() -> None:
    assert NORMALIZERS["guardduty"] is guardduty
    assert NORMALIZERS["securityhub"] is securityhub


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda p: p.update({"detail-type": "AWS API Call via CloudTrail"}), "$['detail-type']"),
        (lambda p: p.pop("detail"), "$.detail"),
        (lambda p: p.update(detail=["not", "an", "object"]), "$.detail"),
        (lambda p: [p["detail"].pop(k) for k in ("id", "arn")], "$.detail.id"),
        (lambda p: p["detail"].update(id=""), "$.detail.id"),
        (lambda p: p["detail"].pop("type"), "$.detail.type"),
        (lambda p: p["detail"].update(type={"a": 1}), "$.detail.type"),
        (lambda p: p["detail"].update(severity="high"), "$.detail.severity"),
        (lambda p: p["detail"].update(severity=True), "$.detail.severity"),
        (lambda p: p["detail"].update(resource=[]), "$.detail.resource"),
        (
            lambda p: p["detail"]["service"].update(action="AWS_API_CALL"),
            "$.detail.service.action",
        ),
        (
            lambda p: p["detail"]["resource"]["accessKeyDetails"].update(userName=7),
            "$.detail.resource.accessKeyDetails.userName",
        ),
        (
            lambda p: p["detail"]["service"]["action"]["awsApiCallAction"].update(
                remoteIpDetails={"ipAddressV4": ["198.51.100.23"]}
            ),
            "$.detail.service.action.awsApiCallAction.remoteIpDetails.ipAddressV4",
        ),
    ],
)
def test_malformed_guardduty_findings_name_the_bad_field(edit: Edit, path: str) -> None:
    payload = load("guardduty_credential_exfiltration")
    edit(payload)
    with pytest.raises(NormalizeError) as caught:
        guardduty(payload)
    assert caught.value.path == path


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda p: p["detail"].pop("findings"), "$.detail.findings"),
        (lambda p: p["detail"].update(findings=[]), "$.detail.findings"),
        (lambda p: p["detail"]["findings"][1].pop("Id"), "$.detail.findings[1].Id"),
        (lambda p: p["detail"]["findings"][1].pop("Severity"), "$.detail.findings[1].Severity"),
        (
            lambda p: p["detail"]["findings"][0]["Severity"].update(Label="SEVERE"),
            "$.detail.findings[0].Severity.Label",
        ),
        (
            lambda p: p["detail"]["findings"][0]["Resources"][0].update(Tags=["env"]),
            "$.detail.findings[0].Resources[0].Tags",
        ),
        (lambda p: p.update({"detail-type": "Findings Imported V2"}), "$['detail-type']"),
    ],
)
def test_malformed_security_hub_events_name_the_bad_field(edit: Edit, path: str) -> None:
    payload = load("securityhub_findings")
    edit(payload)
    with pytest.raises(NormalizeError) as caught:
        securityhub(payload)
    assert caught.value.path == path
