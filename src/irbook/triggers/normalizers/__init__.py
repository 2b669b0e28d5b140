"""SIEM payloads -> normalized alerts, one module per `format:` a source can declare.

Each module's `normalize(payload, options)` returns a list (Security Hub, Alertmanager,
Kibana Security summaries, OCSF lists, Graph collections and SecOps detection lists carry
several alerts per post) and raises
only `NormalizeError(path, message)`, `path` being the JSON path of the first bad field.
Options errors are `OptionsError`, a NormalizeError subclass, so the receiver can tell a
bad post (422) from a bad configuration.

Two facts about an alert live outside the Alert model and are read back here:
`is_sample` (GuardDuty or Security Hub says the finding is a generated sample: never start
a live run for it) and `is_resolved` (the source says the problem is over).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from irbook.model.alert import Alert
from irbook.triggers.normalizers import (
    alertmanager,
    datadog,
    elastic,
    generic,
    google_secops,
    guardduty,
    msgraph,
    ocsf,
    pagerduty,
    securityhub,
    sentinel,
    splunk,
    wazuh,
)
from irbook.triggers.normalizers._base import RESOLVED, NormalizeError, OptionsError

Normalizer = Callable[[Any, Mapping[str, Any] | None], list[Alert]]

NORMALIZERS: dict[str, Normalizer] = {
    "guardduty": guardduty.normalize,
    "securityhub": securityhub.normalize,
    "splunk": splunk.normalize,
    "elastic": elastic.normalize,
    "sentinel": sentinel.normalize,
    "msgraph": msgraph.normalize,
    "datadog": datadog.normalize,
    "wazuh": wazuh.normalize,
    "alertmanager": alertmanager.normalize,
    "pagerduty": pagerduty.normalize,
    "google_secops": google_secops.normalize,
    "ocsf": ocsf.normalize,
    "generic": generic.normalize,
}


def normalize_as(
    fmt: str, payload: Any, options: Mapping[str, Any] | None = None, source: str | None = None
) -> list[Alert]:
    """The alerts a payload of format `fmt` holds, each stamped with its origin as the
    receiver stamps it: `source` (the configured source's name; the format without one)
    and `format`, which triggers match on. `irbook match` and drills of raw payloads read
    payloads through here, so they see the alert a receiver would see.

    Raises what the normalizer raises (NormalizeError; KeyError for an unknown format)."""
    alerts = NORMALIZERS[fmt](payload, options)
    for alert in alerts:
        alert.source, alert.format = source or fmt, fmt
    return alerts


_GUARDDUTY_SAMPLE_FIELD = "aws/guardduty/service/additionalInfo/sample"


def is_sample(alert: Alert) -> bool:
    """Whether the source marked this finding as a sample (GuardDuty's "Generate sample
    findings", or a Security Hub finding with `Sample: true` or GuardDuty's sample flag).

    Read from `raw`, so it holds for any alert built from such a payload. When one post
    holds several findings and any is a sample, all count as samples: the safe side, since
    the receiver must never start a live run for a sample.
    """
    raw = alert.raw
    if not isinstance(raw, Mapping):
        return False
    detail = raw.get("detail")
    if not isinstance(detail, Mapping):
        return False
    info = _get(detail, "service", "additionalInfo")
    if isinstance(info, Mapping) and _truthy(info.get("sample")):
        return True
    findings = detail.get("findings")
    if not isinstance(findings, list):
        return False
    for finding in findings[:1_000]:
        if not isinstance(finding, Mapping):
            continue
        fields = finding.get("ProductFields")
        if _truthy(finding.get("Sample")) or (
            isinstance(fields, Mapping) and _truthy(fields.get(_GUARDDUTY_SAMPLE_FIELD))
        ):
            return True
    return False


def is_resolved(alert: Alert) -> bool:
    """Whether the source said the problem is over (Alertmanager "resolved", PagerDuty
    incident.resolved, Kibana "recovered"...): such alerts have severity 0, this label and
    a "[RESOLVED] " title prefix, and should not start playbooks."""
    return alert.severity_label == RESOLVED


def _get(data: Mapping[str, Any], *keys: str) -> Any:
    value: Any = data
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


__all__ = [
    "NORMALIZERS",
    "NormalizeError",
    "Normalizer",
    "OptionsError",
    "is_resolved",
    "is_sample",
    "normalize_as",
]
