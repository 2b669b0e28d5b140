"""Kibana alerting rules posting through the Webhook connector.

The body is whatever the rule's author wrote in Kibana, so this format expects the
documented action variables laid out under their own names. Two layouts:

Elastic Security detection rules (one post per rule run, a summary of its alerts): the
alert documents under `context.alerts` (a top-level `alerts` list is read the same way),
each becoming one alert. Kibana's mustache writes an object variable as its JSON and an
array as its elements joined by commas, hence the brackets; triple braces keep the
Webhook connector from escaping that JSON as string text:

    {"date": "{{date}}", "rule": {"id": "{{rule.id}}", "name": "{{rule.name}}"},
     "context": {"results_link": "{{context.results_link}}",
       "rule": {"name": "{{context.rule.name}}", "rule_id": "{{context.rule.rule_id}}",
                "severity": "{{context.rule.severity}}",
                "risk_score": "{{context.rule.risk_score}}",
                "description": "{{context.rule.description}}"},
       "alerts": [{{{context.alerts}}}]}}

Other rule types, one post per Kibana alert:

    {"date": "{{date}}", "rule": {"id": "{{rule.id}}", "name": "{{rule.name}}",
     "tags": {{rule.tags.asJSON}}}, "alert": {"id": "{{alert.id}}",
     "uuid": "{{alert.uuid}}", "actionGroup": "{{alert.actionGroup}}"},
     "context": {{context.asJSON}}}

Mapping of a Security alert document (ECS keys, dotted or nested): id =
kibana.alert.uuid (else `_id`), type and title = rule.name (else context.rule.name, else
kibana.alert.rule.name), description = kibana.alert.reason (else the rule's description),
severity = kibana.alert.risk_score / 10 (else the kibana.alert.severity word, else
context.rule's risk_score / severity; a word in `severity_map` wins), time = @timestamp
(else date), actor = user.name, source.ip, cloud.account.id, cloud.region and
CloudTrail's user_identity; host.name is a resource. kibana.alert.status "recovered" is
normalized as resolved.

A post with `alert.uuid` is one alert (id = alert.uuid, else `<rule.id>:<alert.id>`; time
= date; "recovered" action group = resolved), its details read from the first of
context.alerts when there is one. The `fields` option (paths from the payload root) fills
or overrides any field; `fields.id` makes the post one alert with that id.

An alert with no severity anywhere gets the source's `default_severity` (a label such as
high, or 0-10); without one the post is refused (422) naming the paths looked in.
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
    Severity,
    apply_fields,
    configured_severity,
    default_severity,
    field_map,
    lookup,
    read_options,
    settle_severity,
    severity_map,
    source_name,
)

OPTIONS = frozenset({"fields", "severity_map", "default_severity"})


def normalize(payload: Any, options: Mapping[str, Any] | None = None) -> list[Alert]:
    opts = read_options(options, OPTIONS)
    source = source_name(opts, "elastic")
    fields = field_map(opts)
    words = severity_map(opts)
    default = default_severity(opts, words)

    root = check_payload(payload)
    root.need_obj()
    rule, alert, context = root.get("rule"), root.get("alert"), root.get("context")
    rule.obj()
    alert.obj()
    docs_node = context.get("alerts")
    if not docs_node.present:
        docs_node = root.get("alerts")
    docs = docs_node.items(strict=True)
    post = _Post(root, rule, context, fields, words, default, source, payload)

    if "id" in fields or alert.get("uuid").present or alert.get("id").present or not docs:
        doc = docs[0] if docs else Node(None)
        draft = post.draft(_alert_id(fields, root, rule, alert, docs_node), doc)
        draft.time = first_time(root.get("date"))
        draft.resolved = alert.get("actionGroup").text() == "recovered"
        return [post.finish(draft, doc)]

    alerts = []
    for doc in docs:
        doc.need_obj()
        draft = post.draft(_doc_id(doc), doc)
        draft.time = first_time(_ecs(doc, "@timestamp"), root.get("date"))
        draft.resolved = _ecs(doc, "kibana.alert.status").first_text() == "recovered"
        alerts.append(post.finish(draft, doc))
    return alerts


class _Post:
    """What every alert of one post shares: the rule, the options, the payload."""

    def __init__(
        self,
        root: Node,
        rule: Node,
        context: Node,
        fields: Mapping[str, FieldSpec],
        words: Mapping[str, float],
        default: Severity | None,
        source: str,
        payload: Any,
    ) -> None:
        self.root, self.rule, self.context = root, rule, context
        self.fields, self.words, self.default = fields, words, default
        self.source, self.payload = source, payload
        self.rule_name = rule.get("name").text(TITLE_MAX)
        self.security_rule = context.get("rule")

    def draft(self, ident: str, doc: Node) -> Draft:
        doc.obj()
        context, security_rule = self.context, self.security_rule
        rule_name = (
            self.rule_name
            or security_rule.get("name").text(TITLE_MAX)
            or _ecs(doc, "kibana.alert.rule.name").first_text(TITLE_MAX)
        )
        return Draft(
            id=ident,
            source=self.source,
            raw=self.payload,
            type=rule_name or "",
            title=context.get("title").first_text(TITLE_MAX) or rule_name or "Kibana alert",
            description=(
                context.get("message").first_text(DESCRIPTION_MAX)
                or _ecs(doc, "kibana.alert.reason").first_text(DESCRIPTION_MAX)
                or context.get("reason").first_text(DESCRIPTION_MAX)
                or security_rule.get("description").first_text(DESCRIPTION_MAX)
                or ""
            ),
        )

    def finish(self, draft: Draft, doc: Node) -> Alert:
        found = _severity(draft, doc, self.security_rule, self.words)
        if doc.present:
            _actor(draft, doc)
        configured = apply_fields(draft, self.fields, self.root, mapping=self.words)
        if not found and not configured:
            looked = [
                *configured_severity(self.fields, self.root, self.root),
                _ecs(doc, "kibana.alert.risk_score") if doc.present else None,
                _ecs(doc, "kibana.alert.severity") if doc.present else None,
                self.security_rule.get("risk_score"),
                self.security_rule.get("severity"),
            ]
            settle_severity(draft, self.default, [n for n in looked if n is not None])
        return draft.build()


def _alert_id(
    fields: Mapping[str, FieldSpec], root: Node, rule: Node, alert: Node, docs: Node
) -> str:
    if "id" in fields:
        return lookup(fields, "id", root, root).ident(numbers=True)
    if alert.get("uuid").text(numbers=True):
        return alert.get("uuid").ident(numbers=True)
    rule_id, alert_id = rule.get("id"), alert.get("id")
    if rule_id.text(numbers=True) and alert_id.text(numbers=True):
        # Whole ids, not clipped ones: clip_id hashes what it cuts so ids stay distinct.
        return clip_id(f"{rule_id.ident(numbers=True)}:{alert_id.ident(numbers=True)}")
    raise alert.get("uuid").error(
        "missing (and no rule.id with alert.id, nor context.alerts with kibana.alert.uuid)"
    )


def _doc_id(doc: Node) -> str:
    """A Security alert's own id: kibana.alert.uuid, which Kibana keeps for the alert's
    life (and `_id`, the document id, which equals it in the alerts index)."""
    uuid = _ecs(doc, "kibana.alert.uuid")
    if uuid.present:
        return uuid.ident(numbers=True)
    if doc.get("_id").present:
        return doc.get("_id").ident(numbers=True)
    raise uuid.error("missing (each of context.alerts needs kibana.alert.uuid)")


def _severity(draft: Draft, doc: Node, rule: Node, words: Mapping[str, float]) -> bool:
    """The alert document's own score and label (a rule's severity override sets them per
    alert), else the rule's; a word of the source's severity_map wins over the score.
    True when one was found."""
    rule_score, rule_word = rule.get("risk_score").number(strings=True), rule.get("severity").text()
    score = _ecs(doc, "kibana.alert.risk_score").number(strings=True) if doc.present else None
    word = _ecs(doc, "kibana.alert.severity").text() if doc.present else None
    score = rule_score if score is None else score
    word = (word or rule_word or "").strip().lower()
    if word in words:
        draft.severity = words[word]
        return True
    label = canonical_label(word)
    draft.severity_label = label or ""
    if score is not None:
        draft.severity = clamp_severity(score / 10.0)
    elif label is not None:
        draft.severity = LABEL_FLOORS[label]
    return score is not None or label is not None


def _actor(draft: Draft, doc: Node) -> None:
    """Who and where, from the ECS fields of an alert document."""
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
