"""PagerDuty v3 webhooks: `{"event": {id, event_type, resource_type, occurred_at, data}}`.

Mapping: id = event.data.id (the incident's id, so every event about one incident shares
a key; falls back to event.id for events without data), type = event.event_type
(incident.triggered, incident.acknowledged...), title = data.title (else data.summary),
time = occurred_at, severity from data.priority.summary (P1 critical ... P5
informational; else urgency high/low; with neither, the source's `default_severity`
option, else a 422 naming both paths), the service is a resource. incident.resolved
events, or data.status "resolved", are normalized as resolved.
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
    check_payload,
    first_time,
    resource,
)
from irbook.triggers.normalizers._options import (
    default_severity,
    read_options,
    settle_severity,
    source_name,
)

PRIORITIES = {"p1": "critical", "p2": "high", "p3": "medium", "p4": "low", "p5": "informational"}
URGENCIES = {"high": "high", "low": "low"}
OPTIONS = frozenset({"default_severity"})


def normalize(payload: Any, options: Mapping[str, Any] | None = None) -> list[Alert]:
    opts = read_options(options, OPTIONS)
    source = source_name(opts, "pagerduty")
    default = default_severity(opts, {})
    root = check_payload(payload)
    root.need_obj()
    event = root.get("event")
    event.need_obj()
    event_id = event.get("id").ident()
    event_type = event.get("event_type").need_text()
    data = event.get("data")
    data.obj()
    data_id = data.get("id").text()

    title = data.get("title").text(TITLE_MAX) or data.get("summary").text(TITLE_MAX)
    draft = Draft(
        id=data.get("id").ident() if data_id else event_id,
        source=source,
        raw=payload,
        type=event_type,
        title=title or event_type,
        description=data.get("description").text(DESCRIPTION_MAX) or "",
        time=first_time(event.get("occurred_at"), data.get("created_at")),
        resolved=event_type == "incident.resolved" or data.get("status").text() == "resolved",
    )
    priority = (data.at("priority", "summary").text() or "").strip().lower()
    urgency = (data.get("urgency").text() or "").strip().lower()
    label = PRIORITIES.get(priority) or URGENCIES.get(urgency)
    if label is not None:
        draft.severity, draft.severity_label = LABEL_FLOORS[label], label
    else:
        looked = [data.at("priority", "summary"), data.get("urgency")]
        settle_severity(draft, default, looked, mappable=False)
    service = data.get("service")
    service_id = service.get("id").text()
    if service_id:
        draft.add(resource("PagerDutyService", service_id, name=service.get("summary").text()))
    return [draft.build()]
