"""Prometheus Alertmanager's webhook (payload version "4"): one Alert per `alerts[]`.

Mapping per alert: id = fingerprint (stable for a label set, so a firing alert and its
resolution share it), type = labels.alertname, title = annotations.summary (else the
alert name), description = annotations.description, time = startsAt, region =
labels.region, severity from labels.severity (critical, high/error, warning, info...;
`severity_map` adds your own words), the `instance` label is a resource. A firing alert
without a severity label, or with a word neither list knows, gets the source's
`default_severity` (a label such as high, or 0-10), else the post is refused (422) at
that label: as severity 0 it would slip under every trigger unseen. status "resolved" is
normalized as resolved (severity 0, label "resolved", title prefixed "[RESOLVED] "), so
triggers on severity never fire on a recovery.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from irbook.model.alert import Alert
from irbook.triggers.normalizers._base import (
    DESCRIPTION_MAX,
    TITLE_MAX,
    Draft,
    Node,
    NormalizeError,
    check_payload,
    first_time,
    resource,
)
from irbook.triggers.normalizers._options import (
    Severity,
    default_severity,
    read_options,
    set_severity,
    settle_severity,
    severity_map,
    severity_of,
    source_name,
)

OPTIONS = frozenset({"severity_map", "default_severity"})
STATUSES = ("firing", "resolved")


def normalize(payload: Any, options: Mapping[str, Any] | None = None) -> list[Alert]:
    opts = read_options(options, OPTIONS)
    words = severity_map(opts)
    default = default_severity(opts, words)
    source = source_name(opts, "alertmanager")
    root = check_payload(payload)
    root.need_obj()
    version = root.get("version")
    if version.present and version.text(numbers=True) != "4":
        raise version.error("unsupported version (expected '4')")
    alerts = root.get("alerts").required().items(strict=True)
    return [_alert(a, payload, source, words, default) for a in alerts]


def _alert(
    a: Node, payload: Any, source: str, words: Mapping[str, float], default: Severity | None
) -> Alert:
    a.need_obj()
    status = a.get("status").need_text()
    if status not in STATUSES:
        raise a.get("status").error("expected firing or resolved")
    labels = a.get("labels")
    labels.need_obj()
    for _, value in labels.entries():
        value.text()  # label values are strings in Alertmanager; refuse anything else
    annotations = a.get("annotations")
    for _, value in annotations.entries():
        value.text(DESCRIPTION_MAX)

    name = labels.get("alertname").text() or ""
    draft = Draft(
        id=a.get("fingerprint").ident(),
        source=source,
        raw=payload,
        type=name,
        title=annotations.get("summary").text(TITLE_MAX) or name or "Alertmanager alert",
        description=annotations.get("description").text(DESCRIPTION_MAX) or "",
        time=first_time(a.get("startsAt")),
        region=labels.get("region").text(),
        resolved=status == "resolved",
    )
    try:
        found = severity_of(labels.get("severity"), words)
    except NormalizeError:
        found = None  # label values are free text; an unmapped word is not a bad post
    if found is not None:
        set_severity(draft, found)
    else:
        settle_severity(draft, default, [labels.get("severity")])
    instance = labels.get("instance").text()
    if instance:
        draft.add(resource("PrometheusTarget", instance, name=labels.get("job").text()))
    return draft.build()
