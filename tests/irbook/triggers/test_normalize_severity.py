"""A missing severity is never a silent 0 (issue #18, item 5).

Severity 0 "informational" slips under every `severity: {gte: n}` trigger: nobody is told.
Wherever a format's severity can be absent, the source's `default_severity` fills it, and
without one the post is refused with the paths the normalizer looked in, the message the
receiver's 422 and dead letter (and later `irbook match`) show.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from irbook.triggers.config import ConfigError, parse_config
from irbook.triggers.normalizers import NORMALIZERS, NormalizeError, OptionsError
from tests.support.payloads import load

Edit = Callable[[Any], object]


def _drop(*path: str | int) -> Edit:
    def edit(payload: Any) -> None:
        for key in path[:-1]:
            payload = payload[key]
        payload.pop(path[-1], None)

    return edit


def _all(*edits: Edit) -> Edit:
    def edit(payload: Any) -> None:
        for one in edits:
            one(payload)

    return edit


def _set(value: Any, *path: str | int) -> Edit:
    def edit(payload: Any) -> None:
        for key in path[:-1]:
            payload = payload[key]
        payload[path[-1]] = value

    return edit


def _no_secops_severity(payload: Any) -> None:
    rule = payload["detection"][0]
    rule.pop("riskScore")
    rule.pop("outcomes", None)
    rule["ruleLabels"] = [x for x in rule["ruleLabels"] if x["key"] != "severity"]


# format, sample, options the sample needs, edit removing its severity, the path named first
# and every other path the message must name.
CASES: list[tuple[str, str, dict[str, Any], Edit, str, tuple[str, ...]]] = [
    (
        "datadog",
        "datadog_signal",
        {},
        _all(_drop("security_signal_severity"), _drop("alert_priority")),
        "$.security_signal_severity",
        ("$.alert_priority",),
    ),
    (
        "elastic",
        "elastic_security_summary",
        {},
        _all(
            _drop("context", "rule", "severity"),
            _drop("context", "rule", "risk_score"),
            *(_drop("context", "alerts", i, k) for i in range(3) for k in _KIBANA)
            if (_KIBANA := ("kibana.alert.severity", "kibana.alert.risk_score"))
            else (),
        ),
        "$.context.alerts[0]['kibana.alert.risk_score']",
        ("$.context.alerts[0]['kibana.alert.severity']", "$.context.rule.risk_score"),
    ),
    (
        "splunk",
        "splunk_alert",
        {},
        _all(_drop("result", "severity"), _drop("result", "urgency")),
        "$.result.severity",
        ("$.result.urgency",),
    ),
    (
        "alertmanager",
        "alertmanager_group",
        {},
        _drop("alerts", 0, "labels", "severity"),
        "$.alerts[0].labels.severity",
        (),
    ),
    (
        "pagerduty",
        "pagerduty_incident_triggered",
        {},
        _all(_drop("event", "data", "priority"), _drop("event", "data", "urgency")),
        "$.event.data.priority.summary",
        ("$.event.data.urgency",),
    ),
    (
        "google_secops",
        "google_secops_detection",
        {},
        _no_secops_severity,
        "$.detection[0].riskScore",
        (),
    ),
    (
        "ocsf",
        "ocsf_detection_finding",
        {},
        _all(_set(0, "severity_id"), _set("Unknown", "severity")),
        "$.severity_id",
        ("$.severity",),
    ),
    (
        "generic",
        "generic_custom",
        {"fields": {"id": "$.alert.id", "severity": "$.sev"}, "severity_map": {"sev2": 7}},
        _drop("sev"),
        "$.sev",
        (),
    ),
]
IDS = [case[0] for case in CASES]


@pytest.mark.parametrize(("fmt", "name", "options", "edit", "path", "others"), CASES, ids=IDS)
def test_a_missing_severity_is_refused_naming_where_it_was_looked_for(
    fmt: str, name: str, options: dict[str, Any], edit: Edit, path: str, others: tuple[str, ...]
) -> None:
    payload = load(name)
    alerts = NORMALIZERS[fmt](payload, options)
    assert all(a.severity > 0 for a in alerts if a.severity_label != "resolved")  # it had one
    edit(payload)
    with pytest.raises(NormalizeError) as caught:
        NORMALIZERS[fmt](payload, options)
    assert caught.value.path == path
    assert caught.value.reason.startswith("no severity (looked in ")
    for other in (path, *others):
        assert other in caught.value.reason
    assert "options.default_severity" in caught.value.reason
    assert not isinstance(caught.value, OptionsError)  # the sender's 422, not a bad config
    # one line, from the normalizer: what the 422, the dead letter and `irbook match` show
    assert str(caught.value) == f"{path}: error: {caught.value.reason}"
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("fmt", "name", "options", "edit", "path", "others"), CASES, ids=IDS)
@pytest.mark.parametrize(
    ("default", "score", "label"),
    [("high", 7.0, "high"), ("Critical", 9.0, "critical"), (5, 5.0, "medium"), (0, 0.0, "")],
)
def test_a_configured_default_severity_fills_it(
    fmt: str,
    name: str,
    options: dict[str, Any],
    edit: Edit,
    path: str,
    others: tuple[str, ...],
    default: str | int,
    score: float,
    label: str,
) -> None:
    payload = load(name)
    edit(payload)
    alerts = NORMALIZERS[fmt](payload, {**options, "default_severity": default})
    firing = [a for a in alerts if a.severity_label != "resolved"]
    assert firing
    for alert in firing:
        assert alert.severity == score
        assert alert.severity_label == (label or "informational")


def test_a_default_severity_never_replaces_one_the_payload_gave() -> None:
    (alert,) = NORMALIZERS["datadog"](load("datadog_signal"), {"default_severity": "low"})
    assert (alert.severity, alert.severity_label) == (7.0, "high")


def test_a_default_may_be_a_word_of_the_severity_map() -> None:
    payload = load("datadog_signal")
    del payload["security_signal_severity"], payload["alert_priority"]
    options = {"severity_map": {"sev2": 6.5}, "default_severity": "SEV2"}
    (alert,) = NORMALIZERS["datadog"](payload, options)
    assert (alert.severity, alert.severity_label) == (6.5, "medium")


def test_a_configured_severity_path_is_named_first() -> None:
    payload = load("datadog_signal")
    del payload["security_signal_severity"], payload["alert_priority"]
    with pytest.raises(NormalizeError) as caught:
        NORMALIZERS["datadog"](payload, {"fields": {"severity": "$.signal.level"}})
    assert caught.value.path == "$.signal.level"
    assert "$.security_signal_severity" in caught.value.reason


def test_an_unknown_word_is_named_as_such() -> None:
    payload = load("alertmanager_group")
    payload["alerts"][0]["labels"]["severity"] = "page"
    with pytest.raises(NormalizeError) as caught:
        NORMALIZERS["alertmanager"](payload)
    assert caught.value.path == "$.alerts[0].labels.severity"
    assert caught.value.reason.startswith("unknown severity (map it with options.severity_map")


def test_a_resolved_alert_needs_no_severity() -> None:
    """A recovery says the problem is over: it gets 0 and "resolved" whatever it carries,
    so refusing it for a missing severity would only lose the news."""
    payload = load("alertmanager_group")
    for alert in payload["alerts"]:
        alert["labels"].pop("severity")
        alert["status"] = "resolved"
    assert {a.severity_label for a in NORMALIZERS["alertmanager"](payload)} == {"resolved"}


def test_graph_unknown_severity_is_refused_unless_defaulted() -> None:
    payload = load("msgraph_alerts")
    payload["value"][0]["severity"] = "unknown"
    with pytest.raises(NormalizeError) as caught:
        NORMALIZERS["msgraph"](payload)
    assert caught.value.path == "$.value[0].severity"
    assert "options.default_severity" in caught.value.reason
    first, _ = NORMALIZERS["msgraph"](payload, {"default_severity": "medium"})
    assert (first.severity, first.severity_label) == (4.0, "medium")


def test_generic_without_any_severity_is_a_configuration_error() -> None:
    with pytest.raises(OptionsError) as caught:
        NORMALIZERS["generic"]({}, {"fields": {"id": "$.id"}})
    assert caught.value.path == "options.fields.severity"
    (alert,) = NORMALIZERS["generic"](
        {"id": "x"}, {"fields": {"id": "$.id"}, "default_severity": "medium"}
    )
    assert alert.severity == 4.0


FORMATS_WITH_DEFAULT = [
    "alertmanager",
    "datadog",
    "elastic",
    "generic",
    "google_secops",
    "msgraph",
    "ocsf",
    "pagerduty",
    "splunk",
]


@pytest.mark.parametrize("fmt", FORMATS_WITH_DEFAULT)
@pytest.mark.parametrize("bad", ["urgent", 11, -1, True, [7], float("nan")])
def test_a_bad_default_is_an_options_error(fmt: str, bad: Any) -> None:
    options: dict[str, Any] = {"default_severity": bad}
    if fmt == "generic":
        options["fields"] = {"id": "$.id"}
    with pytest.raises(OptionsError) as caught:
        NORMALIZERS[fmt]({}, options)
    assert caught.value.path == "options.default_severity"


def test_a_bad_default_stops_the_receiver_at_start_up() -> None:
    config = {
        "sources": {
            "dd": {
                "format": "datadog",
                "auth": {"scheme": "api_key", "token_env": "T"},
                "options": {"default_severity": "urgent"},
            }
        }
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(config, env={"T": "t" * 32})
    assert "sources.dd.options.default_severity" in str(caught.value)


def test_formats_whose_vendor_always_sends_a_severity_take_no_default() -> None:
    """GuardDuty, Security Hub, Sentinel and Wazuh refuse a post without one already (at
    its path); a default there would only hide a malformed post."""
    for fmt in sorted(set(NORMALIZERS) - set(FORMATS_WITH_DEFAULT)):
        with pytest.raises(OptionsError):
            NORMALIZERS[fmt]({}, {"default_severity": "high"})


def test_the_hint_offers_severity_map_only_where_the_source_has_one() -> None:
    payload = load("pagerduty_incident_triggered")
    payload["event"]["data"]["priority"]["summary"] = "P0"
    del payload["event"]["data"]["urgency"]
    with pytest.raises(NormalizeError) as caught:
        NORMALIZERS["pagerduty"](payload)
    assert caught.value.path == "$.event.data.priority.summary"
    assert caught.value.reason == "unknown severity (set options.default_severity)"


@pytest.mark.parametrize(
    ("fmt", "name", "edit", "word"),
    [
        (
            "elastic",
            "elastic_security_summary",
            _all(
                *(_drop("context", "alerts", i, "kibana.alert.risk_score") for i in range(3)),
                *(_set("sev1", "context", "alerts", i, "kibana.alert.severity") for i in range(3)),
                _drop("context", "rule", "risk_score"),
            ),
            "sev1",
        ),
        (
            "datadog",
            "datadog_signal",
            _all(_drop("security_signal_severity"), _set("P0", "alert_priority")),
            "p0",
        ),
    ],
)
def test_an_unknown_word_can_be_mapped(fmt: str, name: str, edit: Edit, word: str) -> None:
    payload = load(name)
    edit(payload)
    with pytest.raises(NormalizeError) as caught:
        NORMALIZERS[fmt](payload)
    assert caught.value.reason.startswith("unknown severity (map it with options.severity_map")
    alerts = NORMALIZERS[fmt](payload, {"severity_map": {word: 9.5}})
    assert {(a.severity, a.severity_label) for a in alerts} == {(9.5, "critical")}
