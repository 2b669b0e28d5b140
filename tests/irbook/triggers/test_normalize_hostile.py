"""Hostile input: what an attacker who can reach the webhook might post.

Whatever arrives, a normalizer returns alerts or raises NormalizeError with a path; text is
kept literally (never formatted, templated or evaluated) and clipped when absurdly long.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from irbook.model import Alert
from irbook.triggers.normalizers import (
    NORMALIZERS,
    NormalizeError,
    OptionsError,
    is_resolved,
    is_sample,
)
from irbook.triggers.normalizers._base import ID_MAX, clip_id, parse_time
from tests.support.payloads import load

# One documented payload per format, with the options the format needs.
SAMPLES: dict[str, tuple[str, dict[str, Any] | None]] = {
    "guardduty": ("guardduty_credential_exfiltration", None),
    "securityhub": ("securityhub_findings", None),
    "splunk": ("splunk_alert", None),
    "elastic": ("elastic_security_rule", None),
    "sentinel": ("sentinel_incident", None),
    "msgraph": ("msgraph_alerts", None),
    "datadog": ("datadog_signal", None),
    "wazuh": ("wazuh_alert", None),
    "alertmanager": ("alertmanager_group", None),
    "pagerduty": ("pagerduty_incident_triggered", None),
    "google_secops": ("google_secops_detection", None),
    "ocsf": ("ocsf_detection_finding", None),
    "generic": (
        "generic_custom",
        {
            "fields": {"id": "$.alert.id", "title": "$.alert['display name']", "severity": "$.sev"},
            "severity_map": {"sev2": 7},
        },
    ),
}

# Where each format reads its title, and where its id comes from.
TITLES: dict[str, tuple[str | int, ...]] = {
    "guardduty": ("detail", "title"),
    "securityhub": ("detail", "findings", 0, "Title"),
    "splunk": ("search_name",),
    "elastic": ("rule", "name"),
    "sentinel": ("object", "properties", "title"),
    "msgraph": ("value", 0, "title"),
    "datadog": ("security_signal_title",),
    "wazuh": ("rule", "description"),
    "alertmanager": ("alerts", 0, "annotations", "summary"),
    "pagerduty": ("event", "data", "title"),
    "google_secops": ("detection", 0, "ruleName"),
    "ocsf": ("finding_info", "title"),
    "generic": ("alert", "display name"),
}
IDS: dict[str, tuple[str | int, ...]] = {
    "guardduty": ("detail", "id"),
    "securityhub": ("detail", "findings", 0, "Id"),
    "elastic": ("alert", "uuid"),
    "sentinel": ("object", "id"),
    "msgraph": ("value", 0, "id"),
    "datadog": ("security_signal_id",),
    "wazuh": ("id",),
    "alertmanager": ("alerts", 0, "fingerprint"),
    "pagerduty": ("event", "data", "id"),
    "google_secops": ("id",),
    "ocsf": ("finding_info", "uid"),
    "generic": ("alert", "id"),
}
TEMPLATES = ["${{ inputs.x }}", "{{7*7}}", "{{ config.__class__ }}", "%(x)s {0} $HOME `id`"]


def _set(payload: Any, path: tuple[str | int, ...], value: Any) -> None:
    for key in path[:-1]:
        payload = payload[key]
    payload[path[-1]] = value


def _run(fmt: str, payload: Any) -> list[Alert]:
    options = SAMPLES[fmt][1]
    return NORMALIZERS[fmt](payload, options)


def test_every_format_is_registered_and_has_a_sample() -> None:
    assert set(NORMALIZERS) == set(SAMPLES) == set(TITLES)
    assert set(IDS) == set(SAMPLES) - {"splunk"}  # Splunk's id is built, not read


def test_the_readme_lists_every_format() -> None:
    """The receiver section's `format:` comment is where users look for the names."""
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    start = readme.index("    format: guardduty              # ")
    lines = readme[start:].splitlines()[:2]
    listed = " ".join(line.split("#", 1)[1] for line in lines).split()
    assert sorted(listed) == sorted(NORMALIZERS)


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
@pytest.mark.parametrize("payload", [None, [], "text", 42, 3.5, True, [{"id": "x"}]])
def test_non_object_payloads_are_refused_at_the_root(fmt: str, payload: Any) -> None:
    with pytest.raises(NormalizeError) as caught:
        _run(fmt, payload)
    # `generic` reads the id wherever the operator said; `ocsf` takes a list of findings
    # and finds this one's class missing; the others fail at the root.
    expected = "$"
    if fmt == "generic":
        expected = "$.alert.id"
    elif fmt == "ocsf" and payload == [{"id": "x"}]:
        expected = "$[0].class_uid"
    assert caught.value.path == expected


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
@pytest.mark.parametrize(
    ("bad", "path"),
    [
        ({"source": "Has Spaces"}, "options.source"),
        ({"colour": "red"}, "options.colour"),
        ({"source": 7}, "options.source"),
    ],
)
def test_options_are_checked_before_the_payload(fmt: str, bad: dict[str, Any], path: str) -> None:
    """The receiver probes a source's options at start-up by normalizing `{}`: every bad
    option must surface as an OptionsError then, not as a payload error."""
    options = {**(SAMPLES[fmt][1] or {}), **bad}
    with pytest.raises(OptionsError) as caught:
        NORMALIZERS[fmt]({}, options)
    assert caught.value.path == path
    with pytest.raises(OptionsError):
        NORMALIZERS[fmt]({}, ["not", "a", "mapping"])  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_the_source_option_names_the_alert_source(fmt: str) -> None:
    options = {**(SAMPLES[fmt][1] or {}), "source": "prod-east_1"}
    alerts = NORMALIZERS[fmt](load(SAMPLES[fmt][0]), options)
    assert {a.source for a in alerts} == {"prod-east_1"}
    assert {a.source for a in _run(fmt, load(SAMPLES[fmt][0]))} == {fmt}


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_empty_object_is_refused(fmt: str) -> None:
    with pytest.raises(NormalizeError):
        _run(fmt, {})


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
@pytest.mark.parametrize("template", TEMPLATES)
def test_template_syntax_stays_literal(fmt: str, template: str) -> None:
    payload = load(SAMPLES[fmt][0])
    _set(payload, TITLES[fmt], template)
    alert = _run(fmt, payload)[0]
    assert template in alert.title  # not rendered: no 49, no config, no substitution
    if fmt in IDS:
        _set(payload, IDS[fmt], template)
        assert _run(fmt, payload)[0].id == template


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_huge_strings_are_clipped(fmt: str) -> None:
    payload = load(SAMPLES[fmt][0])
    _set(payload, TITLES[fmt], "T" * 200_000)
    alert = _run(fmt, payload)[0]
    assert len(alert.title) <= 1_000
    assert alert.raw is payload  # the original stays whole in raw


@pytest.mark.parametrize("fmt", sorted(IDS))
def test_huge_ids_are_shortened_without_colliding(fmt: str) -> None:
    first, second = load(SAMPLES[fmt][0]), load(SAMPLES[fmt][0])
    _set(first, IDS[fmt], "A" * 5_000 + "1")
    _set(second, IDS[fmt], "A" * 5_000 + "2")
    id1, id2 = _run(fmt, first)[0].id, _run(fmt, second)[0].id
    assert len(id1) == len(id2) == ID_MAX
    assert id1 != id2
    assert _run(fmt, first)[0].id == id1  # and stable


def test_clip_id_keeps_short_ids() -> None:
    assert clip_id("abc") == "abc"
    assert clip_id("x" * ID_MAX) == "x" * ID_MAX


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_deep_nesting_is_refused_with_its_path(fmt: str) -> None:
    payload = load(SAMPLES[fmt][0])
    deep: Any = "bottom"
    for _ in range(10_000):
        deep = {"x": deep}
    payload["extra"] = deep
    with pytest.raises(NormalizeError) as caught:
        _run(fmt, payload)
    assert caught.value.path.startswith("$.extra.x.x.x")
    assert caught.value.reason == "nested too deeply"


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_cycles_and_non_json_values_are_refused(fmt: str) -> None:
    payload = load(SAMPLES[fmt][0])
    payload["loop"] = payload
    with pytest.raises(NormalizeError):
        _run(fmt, payload)
    payload = load(SAMPLES[fmt][0])
    payload["odd"] = {"value": object()}
    with pytest.raises(NormalizeError) as caught:
        _run(fmt, payload)
    assert caught.value.path == "$.odd.value"


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_alerts_survive_a_json_round_trip(fmt: str) -> None:
    """The receiver stores and matches alerts as JSON: every normalized alert must dump."""
    for alert in _run(fmt, load(SAMPLES[fmt][0])):
        data = alert.as_context()
        assert Alert.model_validate_json(json.dumps(data)).id == alert.id
        assert 0 <= alert.severity <= 10


def test_error_text_is_one_line_with_the_path_and_no_payload_value() -> None:
    payload = load("guardduty_credential_exfiltration")
    payload["detail"]["type"] = {"secret": "AKIA-LEAK\nnext line"}
    with pytest.raises(NormalizeError) as caught:
        NORMALIZERS["guardduty"](payload)
    text = str(caught.value)
    assert text == "$.detail.type: error: expected a string"
    assert "AKIA" not in text


def test_attacker_keys_in_paths_are_escaped_and_clipped() -> None:
    payload = load("alertmanager_group")
    key = "it's\n" + "k" * 500
    payload["alerts"][0]["labels"][key] = {"not": "text"}
    with pytest.raises(NormalizeError) as caught:
        NORMALIZERS["alertmanager"](payload)
    assert caught.value.path.startswith("$.alerts[0].labels['it\\'s\\u000a")
    assert len(caught.value.path) < 120 and "\n" not in caught.value.path


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_severity_is_refused(value: float) -> None:
    payload = load("guardduty_credential_exfiltration")
    payload["detail"]["severity"] = value
    with pytest.raises(NormalizeError) as caught:
        NORMALIZERS["guardduty"](payload)
    assert caught.value.path == "$.detail.severity"


@pytest.mark.parametrize("value", [-3, 11, 10**400])
def test_out_of_range_severity_is_clamped(value: int) -> None:
    payload = load("guardduty_credential_exfiltration")
    payload["detail"]["severity"] = value
    (alert,) = NORMALIZERS["guardduty"](payload)
    assert alert.severity == (0.0 if value < 0 else 10.0)


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "",
        "2024-13-45T99:99:99Z",
        10**30,
        10**400,
        -5,
        float("nan"),
        True,
        {"t": 1},
        "9" * 80,
        "1e400",
    ],
)
def test_unusable_times_are_dropped_not_refused(value: Any) -> None:
    payload = load("guardduty_credential_exfiltration")
    for key in ("updatedAt", "createdAt"):
        payload["detail"][key] = value
    del payload["time"]
    (alert,) = NORMALIZERS["guardduty"](payload)
    assert alert.time is None


@pytest.mark.parametrize(
    ("value", "iso"),
    [
        ("2024-05-14T09:20:59Z", "2024-05-14T09:20:59+00:00"),
        ("2024-05-14T11:20:59+02:00", "2024-05-14T09:20:59+00:00"),
        ("2024-05-14T09:20:59.123456789Z", "2024-05-14T09:20:59.123456+00:00"),
        ("2024-05-14T09:20:59", "2024-05-14T09:20:59+00:00"),
        (1715678459, "2024-05-14T09:20:59+00:00"),
        (1715678459000, "2024-05-14T09:20:59+00:00"),
        ("1715678459.5", "2024-05-14T09:20:59.500000+00:00"),
    ],
)
def test_times_are_utc(value: Any, iso: str) -> None:
    parsed = parse_time(value)
    assert parsed is not None and parsed.isoformat() == iso


@pytest.mark.parametrize("raw", [None, [], "x", {"detail": []}, {"detail": {"findings": "x"}}])
def test_is_sample_never_fails_on_odd_raw(raw: Any) -> None:
    alert = Alert(id="x", raw=raw)
    assert not is_sample(alert)
    assert not is_resolved(alert)


def test_a_title_saying_sample_does_not_make_a_sample() -> None:
    """Only the documented flag counts: a crafted title must not silence a live response."""
    payload = load("guardduty_credential_exfiltration")
    payload["detail"]["title"] = "[SAMPLE] definitely a drill"
    assert not is_sample(NORMALIZERS["guardduty"](payload)[0])


def test_arns_are_only_built_from_parts_that_look_right() -> None:
    payload = load("guardduty_credential_exfiltration")
    payload["detail"]["region"] = "us-east-1:999999999999:instance/i-00000000:x"
    (alert,) = NORMALIZERS["guardduty"](payload)
    instance = next(r for r in alert.resources if r.type == "AwsEc2Instance")
    assert instance.id == "i-0a1b2c3d4e5f67890" and instance.arn is None


def test_lone_surrogates_are_refused_at_their_path() -> None:
    """JSON may escape half a surrogate pair; pydantic cannot store such text."""
    payload = load("guardduty_credential_exfiltration")
    payload["detail"]["title"] = json.loads('"broken \\ud800 text"')
    with pytest.raises(NormalizeError) as caught:
        NORMALIZERS["guardduty"](payload)
    assert caught.value.path == "$.detail.title"


def test_too_many_alerts_in_one_post_are_refused() -> None:
    payload = load("alertmanager_group")
    payload["alerts"] = payload["alerts"][:1] * 1_001
    with pytest.raises(NormalizeError) as caught:
        NORMALIZERS["alertmanager"](payload)
    assert caught.value.path == "$.alerts"


def test_kibana_summary_ids_stay_literal_and_long_ones_distinct() -> None:
    """In a Security rule summary each alert document brings its own id: the same rules
    as any id (kept literally, clipped without collisions)."""
    payload = load("elastic_security_summary")
    docs = payload["context"]["alerts"]
    docs[0]["kibana.alert.uuid"] = "{{7*7}}"
    docs[1]["kibana.alert.uuid"] = "A" * 5_000 + "1"
    docs[2]["kibana.alert.uuid"] = "A" * 5_000 + "2"
    first, second, third = NORMALIZERS["elastic"](payload)
    assert first.id == "{{7*7}}"
    assert len(second.id) == len(third.id) == ID_MAX and second.id != third.id


def test_too_many_alert_documents_in_one_summary_are_refused() -> None:
    payload = load("elastic_security_summary")
    payload["context"]["alerts"] = payload["context"]["alerts"][:1] * 1_001
    with pytest.raises(NormalizeError) as caught:
        NORMALIZERS["elastic"](payload)
    assert caught.value.path == "$.context.alerts"
