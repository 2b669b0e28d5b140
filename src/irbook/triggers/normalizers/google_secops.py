"""Google SecOps (Chronicle) rule detections, in the Detection Engine API's JSON.

Accepts one detection, or `{"detections": [...]}` as ListDetections returns them (one
Alert per detection). Mapping: id = id (`de_...`), type and title = detection[0].ruleName,
description = detection[0].description, severity = detection[0].riskScore (0-100) / 10
(else the `risk_score` outcome, else the rule's `severity` label; with none of them, the
source's `default_severity` option, else a 422 naming riskScore), time = detectionTime.
The actor comes from the first event's UDM principal (user.userid or first email, first
ip); principal and target hostnames and the target resource become resources.
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
    parse_number,
    resource,
)
from irbook.triggers.normalizers._options import (
    Severity,
    default_severity,
    read_options,
    settle_severity,
    source_name,
)

_EVENTS_MAX = 20  # events read for actor and resources; the rest stay in raw
OPTIONS = frozenset({"default_severity"})


def normalize(payload: Any, options: Mapping[str, Any] | None = None) -> list[Alert]:
    opts = read_options(options, OPTIONS)
    source = source_name(opts, "google_secops")
    default = default_severity(opts, {})
    root = check_payload(payload)
    mapping = root.need_obj()
    if "detections" in mapping and "id" not in mapping:
        items = root.get("detections").required().items(strict=True)
        return [_detection(d, payload, source, default) for d in items]
    return [_detection(root, payload, source, default)]


def _detection(d: Node, payload: Any, source: str, default: Severity | None) -> Alert:
    d.need_obj()
    rules = d.get("detection").required().items(limit=8)
    if not rules:
        raise d.get("detection").error("expected at least one rule")
    rule = rules[0]
    rule.need_obj()
    name = rule.get("ruleName").text(TITLE_MAX) or ""
    labels = _pairs(rule.get("ruleLabels"))
    draft = Draft(
        id=d.get("id").ident(),
        source=source,
        raw=payload,
        type=name,
        title=name or "Google SecOps detection",
        description=(
            rule.get("description").text(DESCRIPTION_MAX)
            or labels.get("description", "")[:DESCRIPTION_MAX]
        ),
        time=first_time(
            d.get("detectionTime"), d.get("createdTime"), d.at("timeWindow", "endTime")
        ),
    )
    score = rule.get("riskScore").number(strings=True)
    if score is None:
        outcome = _pairs(rule.get("outcomes")).get("risk_score")
        score = parse_number(outcome) if outcome is not None else None
    label = canonical_label(labels.get("severity"))
    draft.severity_label = label or ""
    if score is not None:
        draft.severity = clamp_severity(score / 10.0)
    elif label is not None:
        draft.severity = LABEL_FLOORS[label]
    else:
        looked = [rule.get("riskScore"), rule.get("ruleLabels")]
        settle_severity(draft, default, looked, mappable=False)

    events = [
        ref.get("event")
        for element in d.get("collectionElements").items(limit=_EVENTS_MAX)
        for ref in element.get("references").items(limit=_EVENTS_MAX)
    ]
    for event in events[:_EVENTS_MAX]:
        _event(draft, event)
    return draft.build()


def _pairs(node: Node) -> dict[str, str]:
    """`[{key, value}]` lists (ruleLabels, outcomes, detectionFields) as a dict of text."""
    out: dict[str, str] = {}
    for item in node.items(limit=64):
        key, value = item.get("key").text(), item.get("value").text(numbers=True)
        if key and value is not None and key not in out:
            out[key] = value
    return out


def _event(draft: Draft, event: Node) -> None:
    principal, target = event.get("principal"), event.get("target")
    user = principal.get("user")
    emails = user.get("emailAddresses").items(limit=1)
    draft.user_name = (
        draft.user_name or user.get("userid").text() or (emails[0].text() if emails else None)
    )
    ips = principal.get("ip").items(limit=1)
    draft.ip = draft.ip or (ips[0].text() if ips else None)
    for side in (principal, target):
        host = side.get("hostname").text()
        if host:
            draft.add(resource("Host", host, name=host))
    res = target.get("resource")
    res_id = res.get("productObjectId").text() or res.get("name").text()
    if res_id:
        kind = res.get("resourceType").text() or res.get("type").text() or "Resource"
        arn = res_id if res_id.startswith("arn:") else None
        draft.add(resource(kind, arn_tail(res_id), arn=arn, name=res.get("name").text()))
