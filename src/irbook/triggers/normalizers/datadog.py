"""Datadog security signals posted by the Webhooks integration.

The payload is the template configured in the Webhooks tile; this format expects the
documented `$` variables under their lower-case names, for example:

    {"id": "$ID", "security_signal_id": "$SECURITY_SIGNAL_ID",
     "security_signal_title": "$SECURITY_SIGNAL_TITLE",
     "security_signal_msg": "$SECURITY_SIGNAL_MSG",
     "security_signal_severity": "$SECURITY_SIGNAL_SEVERITY",
     "security_signal_attributes": $SECURITY_SIGNAL_ATTRIBUTES,
     "security_rule_id": "$SECURITY_RULE_ID", "security_rule_name": "$SECURITY_RULE_NAME",
     "security_rule_type": "$SECURITY_RULE_TYPE", "alert_priority": "$ALERT_PRIORITY",
     "alert_transition": "$ALERT_TRANSITION", "date": "$DATE", "tags": "$TAGS",
     "hostname": "$HOSTNAME", "link": "$LINK", "title": "$EVENT_TITLE", "body": "$EVENT_MSG"}

Mapping: id = security_signal_id (else id), type = security_rule_name (else event_type),
title = security_signal_title (else title, alert_title), severity =
security_signal_severity (info / low / medium / high / critical, else alert_priority
P1-P5), time = date (epoch millis). A signal with neither gets the source's
`default_severity` (a label such as high, or 0-10), else it is refused (422) naming both
paths: a template laid out otherwise must not pass as severity 0, below every trigger.
The actor comes from the signal attributes (usr.name, network.client.ip, and
CloudTrail's userIdentity.arn / accessKeyId); region and account from the `region:` and
`aws_account:` tags of Datadog's AWS integration; hostname is a resource.
alert_transition "Recovered" is normalized as resolved. The `fields`, `severity_map` and
`default_severity` options adapt other templates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from irbook.model.alert import Alert
from irbook.triggers.normalizers._base import (
    DESCRIPTION_MAX,
    LABEL_FLOORS,
    TITLE_MAX,
    Draft,
    Node,
    check_payload,
    first_time,
    resource,
)
from irbook.triggers.normalizers._options import (
    Severity,
    apply_fields,
    configured_severity,
    default_severity,
    field_map,
    lookup,
    read_options,
    set_severity,
    settle_severity,
    severity_map,
    severity_of,
    source_name,
)

OPTIONS = frozenset({"fields", "severity_map", "default_severity"})
PRIORITIES = {"p1": "critical", "p2": "high", "p3": "medium", "p4": "low", "p5": "informational"}
_ATTRIBUTES_MAX = 200_000  # characters of attributes sent as a JSON string we will parse


def normalize(payload: Any, options: Mapping[str, Any] | None = None) -> list[Alert]:
    opts = read_options(options, OPTIONS)
    source = source_name(opts, "datadog")
    fields = field_map(opts)
    words = severity_map(opts)
    default = default_severity(opts, words)

    root = check_payload(payload)
    root.need_obj()
    id_node = root.get("security_signal_id")
    if not id_node.present:
        id_node = root.get("id")
    if "id" in fields:
        id_node = lookup(fields, "id", root, root)
    elif not id_node.present:
        raise root.get("security_signal_id").error("missing (and no id either)")

    title = (
        root.get("security_signal_title").text(TITLE_MAX)
        or root.get("title").text(TITLE_MAX)
        or root.get("alert_title").text(TITLE_MAX)
        or root.get("security_rule_name").text(TITLE_MAX)
        or "Datadog signal"
    )
    draft = Draft(
        id=id_node.ident(numbers=True),
        source=source,
        raw=payload,
        type=root.get("security_rule_name").text() or root.get("event_type").text() or "",
        title=title,
        description=(
            root.get("security_signal_msg").text(DESCRIPTION_MAX)
            or root.get("body").text(DESCRIPTION_MAX)
            or root.get("event_msg").text(DESCRIPTION_MAX)
            or ""
        ),
        time=first_time(root.get("date"), root.get("last_updated")),
        resolved=(root.get("alert_transition").text() or "").lower() == "recovered",
    )
    found = _severity(root, words)
    if found is not None:
        set_severity(draft, found)
    _tags(draft, root.get("tags"))
    _attributes(draft, root.get("security_signal_attributes"))
    host = root.get("hostname").text()
    if host:
        draft.add(resource("Host", host, name=host, region=draft.region))

    if not apply_fields(draft, fields, root, mapping=words) and found is None:
        looked = [root.get("security_signal_severity"), root.get("alert_priority")]
        settle_severity(draft, default, [*configured_severity(fields, root, root), *looked])
    return [draft.build()]


def _severity(root: Node, words: Mapping[str, float]) -> Severity | None:
    found = severity_of(root.get("security_signal_severity"), words)
    if found is None:
        priority = (root.get("alert_priority").text() or "").strip().lower()
        label = PRIORITIES.get(priority)
        if priority in words:
            found = words[priority], None
        elif label is not None:
            found = LABEL_FLOORS[label], label
    return found


def _tags(draft: Draft, tags: Node) -> None:
    """`$TAGS` is "a:b, c:d" text; a template may also send it as a JSON list."""
    if isinstance(tags.value, str):
        items = [t.strip() for t in tags.value[:20_000].split(",")]
    else:
        items = [t.value for t in tags.items(limit=200) if isinstance(t.value, str)]
    for item in items[:200]:
        key, _, value = item.partition(":")
        if key == "region" and value and not draft.region:
            draft.region = value
        elif key == "aws_account" and value and not draft.account:
            draft.account = value


def _attributes(draft: Draft, attrs: Node) -> None:
    """Signal attributes: a JSON object, or the same object as text when the template
    quoted the variable. Unparseable text is ignored: the attributes are context."""
    if isinstance(attrs.value, str):
        text = attrs.value
        if len(text) > _ATTRIBUTES_MAX or not text.lstrip().startswith("{"):
            return
        try:
            attrs = Node(json.loads(text), attrs.path)
        except (ValueError, RecursionError):
            return
    if not isinstance(attrs.value, Mapping):
        attrs.obj()  # absent is fine; any other kind is a type error at its path
        return
    identity = attrs.get("userIdentity")
    draft.user_name = (
        attrs.at("usr", "name").first_text()
        or attrs.at("usr", "id").first_text()
        or identity.get("userName").first_text()
    )
    draft.ip = attrs.at("network", "client", "ip").first_text()
    draft.access_key_id = identity.get("accessKeyId").first_text()
    arn = identity.get("arn").first_text()
    draft.principal_arn = arn if arn and arn.startswith("arn:") else None
