"""Microsoft Graph security alerts (the `alerts_v2` resource, microsoft.graph.security.alert).

Accepts one alert object, or a collection `{"value": [alert, ...]}` as the list API and
Graph change notifications with resource data carry them (one Alert per element).

Mapping: id = id, title = title, type = category (the MITRE tactic Defender assigns; else
the title), severity from the documented enum (informational / low / medium / high;
"unknown" gets the source's `default_severity` option, else is refused with a 422 at its
path, since as 0 it would slip under every trigger), time = createdDateTime, account =
tenantId. From evidence: the first userEvidence gives the actor's user name
(userPrincipalName, else accountName), the first ipEvidence its IP; device, Azure
resource, Amazon resource and cloud application evidence become resources. status
"resolved" is normalized as resolved.
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
    check_payload,
    first_time,
    resource,
)
from irbook.triggers.normalizers._options import (
    Severity,
    default_severity,
    read_options,
    settle_severity,
    source_name,
)

OPTIONS = frozenset({"default_severity"})
UNKNOWN = ("unknown", "unknownfuturevalue")
SEVERITIES: dict[str, str] = {
    "informational": "informational",
    "low": "low",
    "medium": "medium",
    "high": "high",
}
_EVIDENCE = "#microsoft.graph.security."


def normalize(payload: Any, options: Mapping[str, Any] | None = None) -> list[Alert]:
    opts = read_options(options, OPTIONS)
    source = source_name(opts, "msgraph")
    default = default_severity(opts, {})
    root = check_payload(payload)
    mapping = root.need_obj()
    if "value" in mapping and "id" not in mapping:
        items = root.get("value").required().items(strict=True)
        return [_alert(item, payload, source, default) for item in items]
    return [_alert(root, payload, source, default)]


def _alert(a: Node, payload: Any, source: str, default: Severity | None) -> Alert:
    a.need_obj()
    title = a.get("title").text(TITLE_MAX) or ""
    word = a.get("severity").need_text().lower()
    label = SEVERITIES.get(word)
    if label is None and word not in UNKNOWN:
        raise a.get("severity").error("expected informational, low, medium, high or unknown")
    draft = Draft(
        id=a.get("id").ident(),
        source=source,
        raw=payload,
        type=a.get("category").text() or title,
        title=title,
        description=a.get("description").text(DESCRIPTION_MAX) or "",
        time=first_time(a.get("createdDateTime"), a.get("firstActivityDateTime")),
        account=a.get("tenantId").text(),
        resolved=a.get("status").text() == "resolved",
    )
    if label is not None:
        draft.severity, draft.severity_label = LABEL_FLOORS[label], label
    elif draft.resolved or default is not None:
        settle_severity(draft, default, [])
    else:
        raise a.get("severity").error(
            "severity is unknown; set options.default_severity to accept such alerts"
        )
    for evidence in a.get("evidence").items():
        _evidence(draft, evidence)
    return draft.build()


def _evidence(draft: Draft, ev: Node) -> None:
    ev.need_obj()
    kind = (ev.get("@odata.type").text() or "").removeprefix(_EVIDENCE)
    if kind == "userEvidence" and not draft.user_name:
        account = ev.get("userAccount")
        draft.user_name = (
            account.get("userPrincipalName").text() or account.get("accountName").text()
        )
    elif kind == "ipEvidence" and not draft.ip:
        draft.ip = ev.get("ipAddress").text()
    elif kind == "deviceEvidence":
        device_id = ev.get("mdeDeviceId").text() or ev.get("azureAdDeviceId").text()
        draft.add(resource("Device", device_id, name=ev.get("deviceDnsName").text()))
    elif kind == "azureResourceEvidence":
        draft.add(
            resource(
                ev.get("resourceType").text() or "AzureResource",
                ev.get("resourceId").text(),
                name=ev.get("resourceName").text(),
            )
        )
    elif kind == "amazonResourceEvidence":
        arn = ev.get("amazonResourceId").text()
        draft.add(
            resource(
                ev.get("resourceType").text() or "AmazonResource",
                arn_tail(arn) if arn else None,
                arn=arn if arn and arn.startswith("arn:") else None,
                name=ev.get("resourceName").text(),
            )
        )
    elif kind == "cloudApplicationEvidence":
        app = ev.get("appId").text(numbers=True)
        draft.add(resource("CloudApplication", app, name=ev.get("displayName").text()))
