"""Formats whose body the SIEM's user writes: Splunk, Kibana, Datadog and `generic`.

Payloads follow:
- Splunk: "Use a webhook alert action" (Splunk Enterprise Alerting Manual, 9.x/10.0):
  `{result, sid, results_link, search_name, owner, app}`; result fields use CIM names.
- Kibana: "Rule action variables" (elastic/kibana docs/user/alerting/action-variables):
  date, rule.id/name/tags/url, alert.id/uuid/actionGroup, context; Elastic Security puts
  context.rule and context.alerts (alert documents, "Alert schema", with ECS fields).
- Datadog: "Webhooks" integration, Variables ($ID, $SECURITY_SIGNAL_ID,
  $SECURITY_SIGNAL_SEVERITY, $SECURITY_SIGNAL_ATTRIBUTES, $ALERT_PRIORITY, $TAGS, $DATE...)
  laid out under their lower-case names.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from irbook.triggers.normalizers import NormalizeError, OptionsError, is_resolved
from irbook.triggers.normalizers.datadog import normalize as datadog
from irbook.triggers.normalizers.elastic import normalize as elastic
from irbook.triggers.normalizers.generic import normalize as generic
from irbook.triggers.normalizers.splunk import normalize as splunk
from tests.support.payloads import load

Edit = Callable[[dict[str, Any]], object]
_DOC_IDS = ("kibana.alert.uuid", "_id")

GENERIC_OPTIONS: dict[str, Any] = {
    "source": "ai-guard",
    "fields": {
        "id": "$.alert.id",
        "type": "$.alert.kind",
        "title": "$.alert['display name']",
        "description": "$.alert.detail",
        "severity": "$.sev",
        "time": "$.at",
        "account": "$.cloud.account",
        "region": "$.cloud.region",
        "actor.ip": "$.src",
        "actor.user_name": "$.who.user",
        "actor.access_key_id": "$.who.key",
        "resource.id": "$.hosts",
    },
    "severity_map": {"sev1": 9, "sev2": 7, "sev3": 4},
}


def test_splunk_id_is_the_sid_plus_a_stable_hash_of_the_row() -> None:
    (alert,) = splunk(load("splunk_alert"))
    sid = "scheduler_admin_search_W2_at_14232356_132"
    assert alert.id.startswith(sid + ":")
    reordered = load("splunk_alert")
    reordered["result"] = dict(reversed(list(reordered["result"].items())))
    assert splunk(reordered)[0].id == alert.id  # key order does not matter
    other_row = load("splunk_alert")
    other_row["result"]["src_ip"] = "198.51.100.24"
    assert splunk(other_row)[0].id != alert.id

    assert alert.type == alert.title == "Instance credentials used outside AWS"
    assert (alert.severity, alert.severity_label) == (7.0, "high")
    assert alert.time == datetime(2024, 5, 14, 9, 20, 59, tzinfo=UTC)
    assert (alert.account, alert.region) == ("111122223333", "us-east-1")
    assert (alert.actor.user_name, alert.actor.ip) == ("ml-inference-role", "198.51.100.23")
    assert alert.actor.access_key_id is None  # not a CIM field: needs an option
    assert [(r.type, r.id) for r in alert.resources] == [("Host", "training-data-prod")]


def test_splunk_options_map_result_fields_and_payload_paths() -> None:
    options = {
        "source": "splunk-es",
        "fields": {
            "actor.access_key_id": "user_access_key",
            "resource.type": "sourcetype",
            "resource.id": "dest",
            "title": "$.app",
        },
    }
    (alert,) = splunk(load("splunk_alert"), options)
    assert alert.source == "splunk-es"
    assert alert.actor.access_key_id == "ASIAIOSFODNN7EXAMPLE"
    assert alert.title == "search"
    assert ("aws:cloudtrail", "training-data-prod") in [(r.type, r.id) for r in alert.resources]


def test_splunk_documented_example_without_search_name() -> None:
    payload = {
        "result": {"sourcetype": "mongod", "count": "8"},
        "sid": "scheduler_admin_search_W2_at_14232356_132",
        "results_link": "http://web.example.local:8000/app/search/@go?sid=x",
        "search_name": None,
        "owner": "admin",
        "app": "search",
    }
    with pytest.raises(NormalizeError) as caught:  # no severity: refused, not a silent 0
        splunk(payload)
    assert caught.value.path == "$.result.severity"
    assert "$.result.urgency" in caught.value.reason
    (alert,) = splunk(payload, {"default_severity": 2.5})
    assert (alert.title, alert.type, alert.severity) == ("Splunk alert", "", 2.5)


def test_kibana_security_rule_alert() -> None:
    (alert,) = elastic(load("elastic_security_rule"))
    assert alert.id == "0f7e6d5c-4b3a-4291-8e7f-6a5b4c3d2e1f"  # alert.uuid
    assert alert.type == "AWS Bedrock Invocations without Guardrails"
    assert (alert.severity, alert.severity_label) == (7.3, "high")  # risk_score 73 / 10
    assert alert.time == datetime(2024, 5, 14, 9, 30, tzinfo=UTC)
    assert (alert.account, alert.region) == ("111122223333", "us-west-2")
    assert alert.actor.user_name == "data-scientist-ci"  # nested ECS
    assert alert.actor.ip == "203.0.113.77"  # dotted ECS key
    assert alert.actor.principal_arn == "arn:aws:iam::111122223333:user/data-scientist-ci"
    assert alert.actor.access_key_id == "AKIAI44QH8DHBEXAMPLE"
    assert [(r.type, r.id) for r in alert.resources] == [("Host", "ci-runner-07")]


def test_kibana_without_uuid_uses_rule_and_alert_ids_and_recovery_resolves() -> None:
    payload = load("elastic_security_rule")
    del payload["alert"]["uuid"]
    payload["alert"]["actionGroup"] = "recovered"
    (alert,) = elastic(payload)
    assert alert.id == "5b0f2a94-6d0e-4c4a-9a3e-2f6a1b3c4d5e:5b0f2a94-6d0e-4c4a-9a3e-2f6a1b3c4d5e"
    assert is_resolved(alert)


def test_kibana_fields_option_reads_a_custom_body() -> None:
    payload = {"rule": {"name": "Token spike"}, "ctx": {"key": "k-1", "sev": "sev1"}}
    options = {"fields": {"id": "$.ctx.key", "severity": "$.ctx.sev"}, "severity_map": {"SEV1": 9}}
    (alert,) = elastic(payload, options)
    assert (alert.id, alert.type, alert.severity, alert.severity_label) == (
        "k-1",
        "Token spike",
        9.0,
        "critical",
    )


SUMMARY_IDS = [
    "4c1d7e2a9b3f4e10a6d58c2b7f9e0a31",
    "a07f3b9c5d2e4f8196c0b4e1d3a52f77",
    "e58b0c1f7a6d4392b8e2f0c9d1a4b6e3",
]


def test_kibana_security_summary_is_one_alert_per_alert_document() -> None:
    """A Security rule's action posts a summary (context.alerts, no alert.*): each alert
    document is an alert of its own, with its own id, severity, actor and place."""
    first, second, third = elastic(load("elastic_security_summary"))
    assert [first.id, second.id, third.id] == SUMMARY_IDS  # kibana.alert.uuid
    rule = "AWS IAM Access Key Used to Invoke Bedrock from a New Country"
    assert {(a.type, a.title) for a in (first, second, third)} == {(rule, rule)}
    assert first.description.startswith("event with source 203.0.113.77")  # alert reason
    assert (first.severity, first.severity_label) == (7.3, "high")
    assert (second.severity, second.severity_label) == (9.9, "critical")  # its own override
    assert first.time == datetime(2024, 5, 14, 10, 5, 10, 4000, tzinfo=UTC)
    assert (first.actor.user_name, first.actor.ip) == ("data-scientist-ci", "203.0.113.77")
    assert first.actor.access_key_id == "AKIAI44QH8DHBEXAMPLE"  # nested ECS
    assert (second.actor.user_name, second.actor.ip) == ("ml-batch-runner", "198.51.100.23")
    assert second.actor.principal_arn == "arn:aws:iam::111122223333:user/ml-batch-runner"
    assert (second.region, third.account, third.region) == (
        "us-east-1",
        "444455556666",
        "eu-west-1",
    )
    assert [(r.type, r.id) for r in second.resources] == [("Host", "batch-worker-3")]
    assert first.resources == third.resources == []


def test_kibana_summary_under_a_top_level_alerts_key_and_rule_severity_fallback() -> None:
    """`{"alerts": {{{context.alerts}}}, ...}` works too; a document without its own
    score takes the rule's (context.rule)."""
    payload = load("elastic_security_summary")
    payload["alerts"] = payload["context"].pop("alerts")
    for doc in payload["alerts"]:
        del doc["kibana.alert.risk_score"], doc["kibana.alert.severity"]
    alerts = elastic(payload)
    assert [a.id for a in alerts] == SUMMARY_IDS
    assert {(a.severity, a.severity_label) for a in alerts} == {(7.3, "high")}


def _nested(doc: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        *parents, last = key.split(".") if not key.startswith(("@", "_")) else [key]
        target = out
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = _nested(value) if isinstance(value, dict) else value
    return out


def test_kibana_summary_documents_with_nested_keys_read_the_same() -> None:
    """Kibana may expand the dotted keys of alert documents into nested objects."""
    payload = load("elastic_security_summary")
    flat = elastic(payload)
    payload["context"]["alerts"] = [_nested(doc) for doc in payload["context"]["alerts"]]
    assert payload["context"]["alerts"][1]["kibana"]["alert"]["uuid"] == SUMMARY_IDS[1]
    assert [a.model_dump(exclude={"raw"}) for a in elastic(payload)] == [
        a.model_dump(exclude={"raw"}) for a in flat
    ]


def test_kibana_summary_ids_fall_back_to_the_document_id_and_recovery_resolves() -> None:
    payload = load("elastic_security_summary")
    del payload["context"]["alerts"][0]["kibana.alert.uuid"]
    payload["context"]["alerts"][1]["kibana.alert.status"] = "recovered"
    first, second, _ = elastic(payload)
    assert first.id == "4c1d7e2a9b3f4e10a6d58c2b7f9e0a31"  # _id
    assert is_resolved(second) and not is_resolved(first)


def test_kibana_summary_document_without_an_id_is_refused_at_its_path() -> None:
    payload = load("elastic_security_summary")
    for key in ("kibana.alert.uuid", "_id"):
        del payload["context"]["alerts"][2][key]
    with pytest.raises(NormalizeError) as caught:
        elastic(payload)
    assert caught.value.path == "$.context.alerts[2]['kibana.alert.uuid']"


def test_datadog_security_signal() -> None:
    (alert,) = datadog(load("datadog_signal"))
    assert alert.id == "AAAAAYxXc2dGHk1Zp0AAAABBWXhYYzJkR0FBQzZrZW5EX2FBQQ"
    assert alert.type == "AWS EC2 instance credentials used from outside AWS"
    assert alert.title == "Bedrock model invoked with exfiltrated EC2 credentials"
    assert (alert.severity, alert.severity_label) == (7.0, "high")
    assert alert.time == datetime(2024, 5, 14, 9, 20, 59, tzinfo=UTC)  # $DATE, epoch millis
    assert (alert.account, alert.region) == ("111122223333", "us-east-1")  # from $TAGS
    assert alert.actor.ip == "198.51.100.23"
    assert alert.actor.access_key_id == "ASIAIOSFODNN7EXAMPLE"
    assert alert.actor.principal_arn == (
        "arn:aws:sts::111122223333:assumed-role/ml-inference-role/i-0a1b2c3d4e5f67890"
    )
    assert alert.resources == []  # $HOSTNAME was empty


def test_datadog_attributes_sent_as_quoted_json_and_priority_fallback() -> None:
    payload = load("datadog_signal")
    payload["security_signal_attributes"] = '{"network": {"client": {"ip": "192.0.2.9"}}}'
    del payload["security_signal_severity"]
    payload["alert_priority"] = "P1"
    payload["alert_transition"] = "Triggered"
    (alert,) = datadog(payload)
    assert alert.actor.ip == "192.0.2.9"
    assert (alert.severity, alert.severity_label) == (9.0, "critical")
    payload["alert_transition"] = "Recovered"
    assert is_resolved(datadog(payload)[0])


def test_generic_format_reads_everything_from_options() -> None:
    (alert,) = generic(load("generic_custom"), GENERIC_OPTIONS)
    assert alert.id == "ai-guard-000194"
    assert alert.source == "ai-guard"
    assert alert.type == "llm.prompt_exfiltration"
    assert alert.title == "Prompt exfiltration pattern detected"  # key with a space
    assert (alert.severity, alert.severity_label) == (7.0, "high")
    assert alert.time == datetime(2024, 5, 14, 9, 20, 59, tzinfo=UTC)  # epoch seconds
    assert alert.actor.ip == "192.0.2.150"
    assert alert.actor.access_key_id == "AKIAIOSFODNN7EXAMPLE"
    assert [r.id for r in alert.resources] == ["llm-gw-1", "llm-gw-2"]


def test_generic_alerts_option_yields_several_and_indexes_paths() -> None:
    payload = {"items": [{"k": "a", "s": 90}, {"k": "b", "s": 35}, {"s": 1}]}
    options = {
        "fields": {"id": "$.k", "severity": "$.s", "title": "$['k']"},
        "severity_scale": 100,
        "alerts": "$.items",
    }
    with pytest.raises(NormalizeError) as caught:
        generic(payload, options)
    assert caught.value.path == "$.items[2].k"  # the third item has no id
    payload["items"].pop()
    first, second = generic(payload, options)
    assert (first.id, first.severity, first.severity_label) == ("a", 9.0, "critical")
    assert (second.id, second.severity, second.severity_label) == ("b", 3.5, "low")


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"alert": {}}, "$.alert.id"),
        ({"alert": {"id": {"nested": 1}}}, "$.alert.id"),
        ({"alert": {"id": "x"}, "sev": "sev9"}, "$.sev"),
        ({"alert": {"id": "x"}, "sev": {"level": 3}}, "$.sev"),
        ({"alert": {"id": "x", "kind": {"a": 1}}}, "$.alert.kind"),
        ("a string", "$.alert.id"),
        ([{"alert": {"id": "x"}}], "$.alert.id"),
    ],
)
def test_generic_errors_name_the_configured_path(payload: Any, path: str) -> None:
    with pytest.raises(NormalizeError) as caught:
        generic(payload, GENERIC_OPTIONS)
    assert caught.value.path == path
    assert not isinstance(caught.value, OptionsError)


@pytest.mark.parametrize(
    ("options", "path"),
    [
        ({}, "options.fields.id"),
        ({"fields": {"title": "$.t"}}, "options.fields.id"),
        ({"fields": {"id": "alert.id"}}, "options.fields.id"),
        ({"fields": {"id": "$.a[x]"}}, "options.fields.id"),
        ({"fields": {"id": "$.a['unclosed"}}, "options.fields.id"),
        ({"fields": {"id": "$.a", "owner": "$.o"}}, "options.fields.owner"),
        ({"fields": {"id": "$.a"}, "severity_map": {"p1": 11}}, "options.severity_map.p1"),
        ({"fields": {"id": "$.a"}, "severity_scale": 0}, "options.severity_scale"),
        ({"fields": {"id": "$.a"}, "alerts": 3}, "options.alerts"),
        ({"fields": {"id": "$.a"}, "source": "Not A Name"}, "options.source"),
        ({"fields": {"id": "$.a"}, "feilds": {}}, "options.feilds"),
    ],
)
def test_bad_options_are_options_errors(options: dict[str, Any], path: str) -> None:
    with pytest.raises(OptionsError) as caught:
        generic({"a": "x"}, options)
    assert caught.value.path == path


@pytest.mark.parametrize(
    ("normalize", "name", "edit", "path"),
    [
        (splunk, "splunk_alert", lambda p: p.pop("sid"), "$.sid"),
        (splunk, "splunk_alert", lambda p: p.update(sid=["a"]), "$.sid"),
        (splunk, "splunk_alert", lambda p: p.pop("result"), "$.result"),
        (splunk, "splunk_alert", lambda p: p.update(result="x"), "$.result"),
        (splunk, "splunk_alert", lambda p: p.update(search_name=1.5), "$.search_name"),
        (splunk, "splunk_alert", lambda p: p["result"].update(user={"a": 1}), "$.result.user"),
        (
            elastic,
            "elastic_security_rule",
            lambda p: [p.pop("alert"), *(p["context"]["alerts"][0].pop(k) for k in _DOC_IDS)],
            "$.context.alerts[0]['kibana.alert.uuid']",
        ),
        (
            elastic,
            "elastic_security_rule",
            lambda p: [p.pop("alert"), p["context"].pop("alerts")],
            "$.alert.uuid",
        ),
        (elastic, "elastic_security_rule", lambda p: p.update(rule="r"), "$.rule"),
        (
            elastic,
            "elastic_security_rule",
            lambda p: p["context"]["rule"].update(risk_score="high"),
            "$.context.rule.risk_score",
        ),
        (
            elastic,
            "elastic_security_rule",
            lambda p: p["context"].update(alerts=[["x"]]),
            "$.context.alerts[0]",
        ),
        (
            datadog,
            "datadog_signal",
            lambda p: [p.pop(k) for k in ("id", "security_signal_id")],
            "$.security_signal_id",
        ),
        (
            datadog,
            "datadog_signal",
            lambda p: p.update(security_signal_severity="urgent"),
            "$.security_signal_severity",
        ),
        (
            datadog,
            "datadog_signal",
            lambda p: p.update(security_signal_attributes=[1]),
            "$.security_signal_attributes",
        ),
    ],
)
def test_malformed_webhook_bodies_name_the_bad_field(
    normalize: Any, name: str, edit: Edit, path: str
) -> None:
    payload = load(name)
    edit(payload)
    with pytest.raises(NormalizeError) as caught:
        normalize(payload)
    assert caught.value.path == path
