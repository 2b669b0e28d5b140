"""Security Hub findings (ASFF) delivered by EventBridge: one alert per `detail.findings[]`.

Mapping per finding: id = Id, type = Types[0] (else GeneratorId), severity =
Severity.Normalized / 10 (else the floor of Severity.Label's band), label = Label, time =
UpdatedAt. The actor comes from an AwsIamAccessKey resource's details and the remote IP of
Action (else Network.SourceIpV4); resources are Resources[] with the id taken from the end
of an ARN-like Id. A finding whose Workflow.Status is RESOLVED or whose RecordState is
ARCHIVED is normalized as resolved.

`detail-type` may be "Security Hub Findings - Imported" or "... - Custom Action" (same
shape). The OCSF "Findings Imported V2" events are refused with a pointer to the `ocsf`
format, which reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from irbook.model.alert import Alert
from irbook.triggers.normalizers._base import (
    DESCRIPTION_MAX,
    LABEL_FLOORS,
    TITLE_MAX,
    Draft,
    Node,
    arn_tail,
    canonical_label,
    check_payload,
    clamp_severity,
    first_time,
    resource,
    tags_from_object,
)
from irbook.triggers.normalizers._options import read_options, source_name

DETAIL_TYPES = ("Security Hub Findings - Imported", "Security Hub Findings - Custom Action")
OCSF_DETAIL_TYPE = "Findings Imported V2"
_ACCESS_KEY_PREFIX = "AWS::IAM::AccessKey:"
_LABELS = ("INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL")


def normalize(payload: Any, options: Mapping[str, Any] | None = None) -> list[Alert]:
    opts = read_options(options)
    source = source_name(opts, "securityhub")
    root = check_payload(payload)
    root.need_obj()
    detail_type = root.get("detail-type")
    if detail_type.present and detail_type.text() not in DETAIL_TYPES:
        if detail_type.value == OCSF_DETAIL_TYPE:
            raise detail_type.error("an OCSF finding: declare this source with format ocsf")
        raise detail_type.error("expected 'Security Hub Findings - Imported'")
    findings = root.at("detail", "findings").required().items(strict=True)
    if not findings:
        raise root.at("detail", "findings").error("expected at least one finding")
    return [_finding(node, root, payload, source) for node in findings]


def _finding(f: Node, root: Node, payload: Any, source: str) -> Alert:
    f.need_obj()
    types = f.get("Types").items(limit=16)
    kind = types[0].text() if types else None
    draft = Draft(
        id=f.get("Id").ident(),
        source=source,
        raw=payload,
        type=kind or f.get("GeneratorId").text() or "",
        title=f.get("Title").text(TITLE_MAX) or "",
        description=f.get("Description").text(DESCRIPTION_MAX) or "",
        time=first_time(
            f.get("UpdatedAt"), f.get("LastObservedAt"), f.get("CreatedAt"), root.get("time")
        ),
        account=f.get("AwsAccountId").text(numbers=True) or root.get("account").text(),
        region=f.get("Region").text(),
    )
    _severity(draft, f.get("Severity"))
    workflow = f.at("Workflow", "Status").text() or f.get("WorkflowState").text()
    draft.resolved = workflow == "RESOLVED" or f.get("RecordState").text() == "ARCHIVED"

    action = f.get("Action")
    for name in ("AwsApiCallAction", "NetworkConnectionAction", "PortProbeAction"):
        ip = action.at(name, "RemoteIpDetails", "IpAddressV4").text()
        if ip:
            draft.ip = ip
            break
    draft.ip = draft.ip or f.at("Network", "SourceIpV4").text()

    for r in f.get("Resources").items():
        _resource(draft, r)
    # A finding without Region is about its resources' region, not the event bus's.
    regions = [r.region for r in draft.resources if r.region]
    draft.region = draft.region or (regions[0] if regions else root.get("region").text())
    return draft.build()


def _severity(draft: Draft, sev: Node) -> None:
    sev.required().obj()
    label_text = sev.get("Label").text()
    if label_text and label_text not in _LABELS:
        raise sev.get("Label").error(f"expected one of {', '.join(_LABELS)}")
    label = canonical_label(label_text)
    normalized = sev.get("Normalized").number(strings=True)
    if normalized is not None:
        draft.severity = clamp_severity(normalized / 10.0)
    elif label is not None:
        draft.severity = LABEL_FLOORS[label]
    else:
        raise sev.error("expected Label or Normalized")
    draft.severity_label = label or ""


def _resource(draft: Draft, r: Node) -> None:
    kind = r.get("Type").text() or ""
    raw_id = r.get("Id").text() or ""
    details = r.at("Details", kind) if kind else Node(None)
    region = r.get("Region").text() or draft.region
    arn = raw_id if raw_id.startswith("arn:") else None
    res_id = raw_id.removeprefix(_ACCESS_KEY_PREFIX) if kind == "AwsIamAccessKey" else raw_id
    user = None
    if kind == "AwsIamAccessKey":
        user = details.get("PrincipalName").text() or details.get("UserName").text()
    draft.add(
        resource(
            kind,
            arn_tail(res_id),
            arn=arn,
            name=user,
            region=region,
            tags=tags_from_object(r.get("Tags")),
        )
    )
    if kind == "AwsIamAccessKey":
        key = details.get("AccessKeyId").text() or (res_id if res_id != raw_id else None)
        draft.access_key_id = draft.access_key_id or key
        draft.user_name = draft.user_name or user
        issuer = details.at("SessionContext", "SessionIssuer", "Arn").text()
        if issuer and issuer.startswith("arn:"):
            draft.principal_arn = draft.principal_arn or issuer
    elif kind in ("AwsIamUser", "AwsIamRole") and arn:
        draft.principal_arn = draft.principal_arn or arn
