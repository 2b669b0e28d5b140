"""Property: whatever JSON arrives, a normalizer returns sound alerts or a NormalizeError.

Two kinds of input per format: arbitrary JSON (keys drawn partly from the format's own
vocabulary, so the shape is sometimes almost right), and a documented sample with one
subtree replaced by arbitrary JSON or removed, which reaches the deep branches.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from irbook.model import Alert
from irbook.triggers.normalizers import NORMALIZERS, NormalizeError
from tests.support.payloads import load

SETTINGS = settings(max_examples=150, deadline=None, database=None)

SAMPLES: dict[str, str] = {
    "guardduty": "guardduty_ai_model_invocation",
    "securityhub": "securityhub_findings",
    "splunk": "splunk_alert",
    "elastic": "elastic_security_rule",
    "sentinel": "sentinel_incident",
    "msgraph": "msgraph_alerts",
    "datadog": "datadog_signal",
    "wazuh": "wazuh_alert",
    "alertmanager": "alertmanager_group",
    "pagerduty": "pagerduty_incident_triggered",
    "google_secops": "google_secops_detection",
    "ocsf": "ocsf_detection_finding",
    "generic": "generic_custom",
}
# Options that exercise the mapping code of the formats that take them.
OPTIONS: dict[str, dict[str, Any] | None] = {
    "splunk": {"fields": {"actor.access_key_id": "user_access_key", "resource.id": "$.app"}},
    "elastic": {"fields": {"severity": "$.context.alerts[0]['kibana.alert.severity']"}},
    "datadog": {"severity_map": {"p0": 10}},
    "alertmanager": {"severity_map": {"page": 8}},
    "ocsf": {"severity_map": {"other": 5}},
    "generic": {
        "fields": {
            "id": "$.alert.id",
            "title": "$.alert['display name']",
            "severity": "$.sev",
            "time": "$.at",
            "actor.ip": "$.src",
            "resource.id": "$.hosts",
        },
        "severity_map": {"sev2": 7},
    },
}


def _keys(value: Any, into: set[str]) -> set[str]:
    if isinstance(value, dict):
        for key, child in value.items():
            into.add(key)
            _keys(child, into)
    elif isinstance(value, list):
        for child in value:
            _keys(child, into)
    return into


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out += _paths(child, (*prefix, index))
    return out


VOCABULARY = sorted(set().union(*(_keys(load(name), set()) for name in SAMPLES.values())))
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["high", "resolved", "P1", "4", "2024-05-14T09:20:59Z", "arn:aws:x"])
    | st.sampled_from(["\ud800", "{{7*7}}", "${{ inputs.x }}", "x" * 3_000])
)
KEYS = st.sampled_from(VOCABULARY) | st.text(max_size=8)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=25,
)


@st.composite
def payloads(draw: st.DrawFn, fmt: str) -> Any:
    if draw(st.booleans()):
        return draw(JSON)
    payload = load(SAMPLES[fmt])
    path = draw(st.sampled_from(_paths(payload)))
    parent = payload
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(JSON)
    return payload


def _check(fmt: str, payload: Any) -> None:
    try:
        alerts = NORMALIZERS[fmt](payload, OPTIONS.get(fmt))
    except NormalizeError as error:
        assert error.path.startswith("$")
        assert "\n" not in str(error)
        return
    assert isinstance(alerts, list)
    for alert in alerts:
        assert isinstance(alert, Alert)
        assert 0 <= alert.severity <= 10
        assert 1 <= len(alert.id) <= 512 and len(alert.title) <= 1_000
        assert alert.time is None or alert.time.utcoffset() is not None
        json.dumps(alert.as_context())  # what triggers match on
        assert Alert.model_validate_json(alert.model_dump_json()).id == alert.id  # the queue


@pytest.mark.parametrize("fmt", ["guardduty", "securityhub", "ocsf"])
@SETTINGS
@given(data=st.data())
def test_aws_formats_never_raise_anything_else(fmt: str, data: st.DataObject) -> None:
    _check(fmt, data.draw(payloads(fmt)))


@pytest.mark.parametrize("fmt", ["sentinel", "msgraph"])
@SETTINGS
@given(data=st.data())
def test_microsoft_formats_never_raise_anything_else(fmt: str, data: st.DataObject) -> None:
    _check(fmt, data.draw(payloads(fmt)))


@pytest.mark.parametrize("fmt", ["splunk", "elastic", "datadog", "generic"])
@SETTINGS
@given(data=st.data())
def test_user_defined_webhooks_never_raise_anything_else(fmt: str, data: st.DataObject) -> None:
    _check(fmt, data.draw(payloads(fmt)))


@pytest.mark.parametrize("fmt", ["wazuh", "alertmanager", "pagerduty", "google_secops"])
@SETTINGS
@given(data=st.data())
def test_other_formats_never_raise_anything_else(fmt: str, data: st.DataObject) -> None:
    _check(fmt, data.draw(payloads(fmt)))


def test_families_cover_every_format() -> None:
    assert set(SAMPLES) == set(NORMALIZERS)
