"""Kibana alerting rules posting through the Webhook connector.

The body is whatever the rule's author wrote in Kibana, so this format expects the
documented action variables laid out under their own names, for example:

    {"date": "{{date}}", "rule": {"id": "{{rule.id}}", "name": "{{rule.name}}",
     "tags": {{rule.tags.asJSON}}}, "alert": {"id": "{{alert.id}}",
     "uuid": "{{alert.uuid}}", "actionGroup": "{{alert.actionGroup}}"},
     "context": {{context.asJSON}}}

Mapping: id = alert.uuid (stable while the alert is active), else `<rule.id>:<alert.id>`;
type and title = rule.name (context.title, when a rule type provides one, is the title);
time = date. Severity and the actor come from the `fields` option or, for Elastic Security
rules, from context.rule (risk_score 0-100, severity) and the first of context.alerts (ECS
fields: user.name, source.ip, cloud.account.id, cloud.region, host.name). The "recovered"
action group is normalized as resolved.
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
    canonical_label,
    check_payload,
    child_path,
    clamp_severity,
    clip_id,
    first_time,
    resource,
)
from irbook.triggers.normalizers._options import (
    FieldSpec,
    apply_fields,
    field_map,
    lookup,
    number_option,
    read_options,
    severity_map,
    source_name,
)

OPTIONS = frozenset({"fields", "severity_map", "default_severity"})


def normalize(payload: Any, options: Mapping[str, Any] | None = None) -> list[Alert]:
    opts = read_options(options, OPTIONS)
    source = source_name(opts, "elastic")
    fields = field_map(opts)
    words = severity_map(opts)
    default = number_option(opts, "default_severity", 0.0, 0.0)

    root = check_payload(payload)
    root.need_obj()
    rule, alert, context = root.get("rule"), root.get("alert"), root.get("context")
    rule_name = rule.get("name").text(TITLE_MAX)
    draft = Draft(
        id=_alert_id(fields, root, rule, alert),
        source=source,
        raw=payload,
        type=rule_name or "",
        title=context.get("title").first_text(TITLE_MAX) or rule_name or "Kibana alert",
        description=(
            context.get("message").first_text(DESCRIPTION_MAX)
            or context.get("reason").first_text(DESCRIPTION_MAX)
            or context.at("rule", "description").first_text(DESCRIPTION_MAX)
            or ""
        ),
        severity=default,
        time=first_time(root.get("date")),
        resolved=alert.get("actionGroup").text() == "recovered",
    )
    _security_rule(draft, context)
    apply_fields(draft, fields, root, mapping=words)
    return [draft.build()]


def _alert_id(fields: Mapping[str, FieldSpec], root: Node, rule: Node, alert: Node) -> str:
    if "id" in fields:
        return lookup(fields, "id", root, root).ident(numbers=True)
    if alert.get("uuid").text(numbers=True):
        return alert.get("uuid").ident(numbers=True)
    rule_id, alert_id = rule.get("id"), alert.get("id")
    if rule_id.text(numbers=True) and alert_id.text(numbers=True):
        # Whole ids, not clipped ones: clip_id hashes what it cuts so ids stay distinct.
        return clip_id(f"{rule_id.ident(numbers=True)}:{alert_id.ident(numbers=True)}")
    raise alert.get("uuid").error("missing (and no rule.id with alert.id to build one)")


def _security_rule(draft: Draft, context: Node) -> None:
    """Elastic Security puts the rule under context.rule and alert documents under
    context.alerts; alert documents use dotted ECS keys, flat or nested."""
    rule = context.get("rule")
    alerts = context.get("alerts").items(limit=1)
    doc = alerts[0] if alerts else Node(None)
    score = rule.get("risk_score").number(strings=True)
    if score is None:
        score = _ecs(doc, "kibana.alert.risk_score").number(strings=True)
    word = rule.get("severity").text() or _ecs(doc, "kibana.alert.severity").text()
    label = canonical_label(word)
    if score is not None:
        draft.severity = clamp_severity(score / 10.0)
    elif label is not None:
        draft.severity = LABEL_FLOORS[label]
    draft.severity_label = label or ""
    if not doc.present:
        return
    doc.need_obj()
    draft.user_name = _ecs(doc, "user.name").first_text()
    draft.ip = _ecs(doc, "source.ip").first_text()
    draft.account = _ecs(doc, "cloud.account.id").first_text()
    draft.region = _ecs(doc, "cloud.region").first_text()
    draft.access_key_id = _ecs(doc, "aws.cloudtrail.user_identity.access_key_id").first_text()
    arn = _ecs(doc, "aws.cloudtrail.user_identity.arn").first_text()
    draft.principal_arn = arn if arn and arn.startswith("arn:") else None
    host = _ecs(doc, "host.name").first_text()
    if host:
        draft.add(resource("Host", host, name=host, region=draft.region))


def _ecs(doc: Node, dotted: str) -> Node:
    """An ECS field whether the document spells it `{"user": {"name": ..}}` or `"user.name"`."""
    parts = dotted.split(".")
    value, path = doc.value, doc.path
    i = 0
    while i < len(parts):
        if not isinstance(value, Mapping):
            return Node(None, path)
        for j in range(len(parts), i, -1):
            key = ".".join(parts[i:j])
            if key in value:
                value, path, i = value[key], child_path(path, key), j
                break
        else:
            return Node(None, child_path(path, ".".join(parts[i:])))
    return Node(value, path)
