"""Drill scenario files: every problem reported once, at the scenario's file:line:col.

The scenarios here drill the shipped playbook (playbooks/leaked-model-key.yaml) with the
shipped alert; each test pins the exact line `irbook drill` prints for one check.

The corpus under tests/corpus/drill/bad pins whole outputs; after a deliberate change of
wording, regenerate and review the diff:

    IRBOOK_REGEN_CORPUS=1 .venv/bin/pytest tests/irbook/drill/test_scenario.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from irbook.drill.scenario import LoadedScenario, json_path, load_scenario
from irbook.errors import LoadFailed

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = ROOT / "playbooks" / "leaked-model-key.yaml"
ALERT = ROOT / "runbooks" / "drills" / "alerts" / "guardduty-exfil.json"
PAYLOADS = ROOT / "tests" / "corpus" / "payloads"
SCENARIOS = ROOT / "tests" / "corpus" / "scenarios"
CORPUS = ROOT / "tests" / "corpus" / "drill" / "bad"
CASES = sorted(p.name for p in CORPUS.glob("*.yaml"))
REGEN = os.environ.get("IRBOOK_REGEN_CORPUS") == "1"

# Lines 1-6; a test's body starts on line 7.
HEAD = (
    "apiVersion: irbook/v1\n"
    "kind: Drill\n"
    "metadata: {id: t, title: Test drill}\n"
    f"playbook: {PLAYBOOK}\n"
    f"alert: {{file: {ALERT}}}\n"
    "inputs: {endpoint_name: fraud-scoring}\n"
)


def write(tmp_path: Path, text: str, name: str = "drill.yaml") -> str:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def scenario(tmp_path: Path, body: str) -> str:
    return write(tmp_path, HEAD + body)


def errors(path: str) -> list[str]:
    with pytest.raises(LoadFailed) as info:
        load_scenario(path)
    lines = [str(d) for d in info.value.diagnostics]
    assert all("\n" not in line for line in lines)
    return lines


def error(path: str) -> str:
    found = errors(path)
    assert len(found) == 1, found
    return found[0]


# --- scenarios that load -----------------------------------------------------------


def test_the_shipped_scenario_loads_with_its_playbook_and_alert() -> None:
    path = str(ROOT / "runbooks" / "drills" / "leaked-key-friday-night.yaml")
    loaded = load_scenario(path)
    assert isinstance(loaded, LoadedScenario)
    assert loaded.path == path and loaded.source.path == path
    assert loaded.drill.metadata.id == "leaked-key-friday-night"
    # `playbook: leaked-model-key` is an id: found in the repository's playbooks folder
    assert Path(loaded.playbook.path).resolve() == PLAYBOOK
    assert loaded.playbook.playbook.metadata.id == "leaked-model-key"
    assert loaded.alert.source == "guardduty"
    assert loaded.alert.actor.access_key_id == "AKIAIOSFODNN7EXAMPLE"
    assert [i.kind for i in loaded.drill.injects] == ["fail", "outage", "note", "note"]
    line = loaded.source.at(("approvers", 0, "step")).line
    assert "step: revoke" in loaded.source.text.splitlines()[line - 1]


def test_a_scenario_by_id_is_found_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./playbooks here: the scenario's repository has one
    loaded = load_scenario(str(ROOT / "runbooks" / "drills" / "leaked-key-friday-night.yaml"))
    assert Path(loaded.playbook.path).resolve() == PLAYBOOK


def test_relative_playbook_and_alert_paths_are_relative_to_the_scenario() -> None:
    loaded = load_scenario(str(SCENARIOS / "relative-paths.yaml"))
    assert Path(loaded.playbook.path).resolve() == PLAYBOOK
    assert loaded.alert.id.endswith("7ab2f3a41c0b4cbd9e8d1f6a2b3c4d5e")
    assert loaded.drill.outputs["tag-each"][1] == {"added": ["irbook-incident"]}


def test_a_raw_payload_is_read_by_its_formats_normalizer() -> None:
    loaded = load_scenario(str(SCENARIOS / "raw-guardduty.yaml"))
    assert loaded.alert.source == "guardduty"
    assert loaded.alert.id == "a2c7a0b4e1f64c31b6f8c1d5e3b2a901"
    assert loaded.alert.actor.access_key_id == "ASIAIOSFODNN7EXAMPLE"


def test_a_payload_with_several_alerts_drills_the_first(tmp_path: Path) -> None:
    payload = json.loads((PAYLOADS / "securityhub_findings.json").read_text())
    from irbook.triggers.normalizers import NORMALIZERS

    alerts = NORMALIZERS["securityhub"](payload, None)
    assert len(alerts) > 1
    # the same playbook, started by Security Hub findings of the first finding's type
    playbook = PLAYBOOK.read_text()
    start = playbook.index("  - format: guardduty    # any configured source of format guardduty\n")
    end = playbook.index("rollback: manual")
    playbook = (
        playbook[:start]
        + f"  - format: securityhub\n    match: {{type: {json.dumps(alerts[0].type)}}}\n"
        + playbook[end:]
    )
    assert "format: securityhub" in playbook
    (tmp_path / "pb.yaml").write_text(playbook)
    body = (
        HEAD.replace(f"playbook: {PLAYBOOK}", "playbook: pb.yaml").replace(
            f"alert: {{file: {ALERT}}}",
            f"alert: {{file: {PAYLOADS / 'securityhub_findings.json'}, from: securityhub}}",
        )
        + "inputs: {endpoint_name: x, access_key_id: AKIAIOSFODNN7EXAMPLE}\n"
    )
    body = body.replace("inputs: {endpoint_name: fraud-scoring}\n", "", 1)
    loaded = load_scenario(write(tmp_path, body))
    assert loaded.alert.id == alerts[0].id
    assert (loaded.alert_format, loaded.trigger) == ("securityhub", 0)


def test_an_inline_normalized_alert(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEAD.replace(
            f"alert: {{file: {ALERT}}}",
            "alert:\n  normalized:\n    id: tabletop-1\n    source: manual\n"
            "    actor: {access_key_id: AKIAIOSFODNN7EXAMPLE}",
        ),
    )
    loaded = load_scenario(path)
    assert (loaded.alert.id, loaded.alert.source) == ("tabletop-1", "manual")


def test_template_syntax_in_notes_and_errors_is_just_text(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        "injects:\n"
        "  - {at: 90s, note: '${{ steps.revoke.outputs.status }} ${{ oops'}\n"
        "  - {at_step: revoke, fail: 1, error: '${{ alert.title }}'}\n",
    )
    loaded = load_scenario(path)
    assert loaded.drill.injects[0].note == "${{ steps.revoke.outputs.status }} ${{ oops"


# --- the file itself ---------------------------------------------------------------


def test_yaml_errors_keep_their_location(tmp_path: Path) -> None:
    path = write(tmp_path, "apiVersion: irbook/v1\nkind: Drill\nmetadata:\n\tid: x\n")
    assert (
        error(path)
        == f"{path}:4:1: error: invalid YAML: tab character; YAML indentation must use spaces"
    )


def test_an_empty_or_binary_or_missing_file(tmp_path: Path) -> None:
    empty = write(tmp_path, "", "empty.yaml")
    assert error(empty) == f"{empty}:1:1: error: empty file"
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"kind: Drill\x00\x01")
    assert error(str(binary)) == (
        f"{binary}:1:12: error: binary file (contains NUL bytes), expected YAML text"
    )
    missing = str(tmp_path / "missing.yaml")
    assert error(missing) == f"{missing}: error: no such file"


def test_a_huge_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + "# " + "x" * (1024 * 1024) + "\n")
    assert error(path) == (f"{path}: error: file is 1.0 MiB, over the 1 MiB limit for a playbook")


def test_the_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- kind: Drill\n")
    assert error(path) == (
        f"{path}:1:1: error: expected a drill scenario mapping at the top level, got list"
    )


def test_a_playbook_given_as_a_scenario_is_refused_at_its_kind(tmp_path: Path) -> None:
    path = write(tmp_path, PLAYBOOK.read_text())
    assert error(path) == f"{path}:6:7: error: kind is 'Playbook'; expected Drill"


def test_structure_errors_come_from_the_model_at_their_values(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        "injects:\n"
        "  - {at_step: revoke}\n"
        "  - {at_step: revoke, outage: slack, at: 3s}\n"
        "approvers: [{step: revoke, decision: maybe}]\n"
        "expect: {steps_run: notify, outcome: won}\n"
        "extra: 1\n",
    )
    assert errors(path) == [
        f"{path}:8:5: error: 'injects[0]': an inject is exactly one of fail, outage, delay or note",
        f"{path}:9:5: error: 'injects[1]': 'at' is for notes; an 'outage' inject takes 'at_step'",
        f"{path}:10:38: error: 'approvers[0].decision': 'maybe' is not one of 'approve' or "
        "'reject'",
        f"{path}:11:21: error: 'expect.steps_run': expected a list, got string",
        f"{path}:11:38: error: 'expect.outcome': 'won' is not one of 'succeeded', 'partial', "
        "'failed' or 'rejected'",
        f"{path}:12:1: error: unknown field 'extra' (allowed: apiVersion, kind, metadata, "
        "playbook, alert, inputs, outputs, injects, approvers, expect)",
    ]


# --- playbook ----------------------------------------------------------------------


def test_an_unknown_playbook_id_is_one_error_at_playbook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    path = write(tmp_path, HEAD.replace(f"playbook: {PLAYBOOK}", "playbook: leaked-model-kye"))
    assert error(path) == (
        f"{path}:4:11: error: playbook 'leaked-model-kye': not found in playbooks "
        "(did you mean 'leaked-model-key'?)"
    )


def test_ids_are_looked_up_in_irbook_playbooks_then_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "playbooks").mkdir()
    (repo / "playbooks" / "key.yaml").write_text(PLAYBOOK.read_text())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("IRBOOK_PLAYBOOKS", str(elsewhere))
    monkeypatch.chdir(tmp_path)
    text = HEAD.replace(f"playbook: {PLAYBOOK}", "playbook: leaked-model-key")
    path = write(repo, text, "runbooks/drills/d.yaml")
    assert load_scenario(path).playbook.path == str(repo / "playbooks" / "key.yaml")
    missing = write(repo, text.replace("leaked-model-key", "other-book"), "runbooks/drills/e.yaml")
    assert error(missing) == (
        f"{missing}:4:11: error: playbook 'other-book': not found in {elsewhere}, "
        f"{repo / 'playbooks'}"
    )


def test_a_playbook_path_that_does_not_exist(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD.replace(f"playbook: {PLAYBOOK}", "playbook: ../book.yaml"))
    assert error(path) == (
        f"{path}:4:11: error: playbook '../book.yaml': no such file ({tmp_path.parent}/book.yaml)"
    )


def test_a_playbook_that_does_not_validate_is_one_error(tmp_path: Path) -> None:
    text = PLAYBOOK.read_text().replace("retries: 2", "retries: 20")
    line = text[: text.index("retries: 20")].count("\n") + 1
    book = write(tmp_path, text, "b.yaml")
    path = write(tmp_path, HEAD.replace(f"playbook: {PLAYBOOK}", "playbook: b.yaml"))
    assert error(path) == (
        f"{path}:4:11: error: playbook 'b.yaml' does not validate: {book}:{line}:14: "
        "step 'revoke' field 'retries': must be at most 10, got 20"
    )
    other = write(tmp_path, HEAD.replace(f"playbook: {PLAYBOOK}", "playbook: drill.yaml"), "o.yaml")
    assert error(other) == (
        f"{other}:4:11: error: playbook 'drill.yaml' does not validate: "
        f"{tmp_path}/drill.yaml:2:7: kind is 'Drill'; expected Playbook"
    )


# --- alert -------------------------------------------------------------------------


def with_alert(tmp_path: Path, alert: str, body: str = "") -> str:
    return write(tmp_path, HEAD.replace(f"alert: {{file: {ALERT}}}", alert) + body)


def test_an_alert_file_that_does_not_exist_is_reported_at_alert_file(tmp_path: Path) -> None:
    path = with_alert(tmp_path, "alert: {file: alerts/nope.json}")
    assert error(path) == (
        f"{path}:5:15: error: alert file 'alerts/nope.json': no such file "
        f"({tmp_path}/alerts/nope.json)"
    )


def test_errors_inside_an_alert_file_stand_in_that_file(tmp_path: Path) -> None:
    alert = json.loads(ALERT.read_text())
    alert["severity"] = 12
    write(tmp_path, json.dumps(alert, indent=1), "alert.json")
    path = with_alert(tmp_path, "alert: {file: alert.json}")
    assert (
        error(path) == f"{tmp_path}/alert.json:7:14: error: 'severity': must be at most 10, got 12"
    )
    write(tmp_path, "[1, 2]\n", "list.json")
    listed = with_alert(tmp_path, "alert: {file: list.json}")
    assert error(listed) == f"{tmp_path}/list.json:1:1: error: an alert file must hold a mapping"


def test_an_alert_that_is_not_a_mapping_or_gives_two_kinds(tmp_path: Path) -> None:
    assert error(with_alert(tmp_path, "alert: 5")).endswith(
        ":5:8: error: 'alert': expected a mapping, got number"
    )
    assert error(with_alert(tmp_path, "alert: {file: a.json, normalized: {id: x}}")).endswith(
        ":5:8: error: 'alert': give exactly one of file, normalized or raw"
    )


def test_an_unknown_format_is_reported_at_alert_from(tmp_path: Path) -> None:
    path = with_alert(tmp_path, "alert: {file: a.json, from: gaurdduty}")
    assert error(path) == (
        f"{path}:5:29: error: unknown alert format 'gaurdduty' (did you mean 'guardduty'?); "
        "known: alertmanager, datadog, elastic, generic, google_secops, guardduty, msgraph, "
        "ocsf, pagerduty, securityhub, sentinel, splunk, wazuh"
    )


def test_a_raw_payload_that_does_not_fit_its_format_names_the_json_path(
    tmp_path: Path,
) -> None:
    path = with_alert(
        tmp_path,
        "alert:\n"
        "  from: guardduty\n"
        "  raw:\n"
        "    detail-type: GuardDuty Finding\n"
        "    detail: {id: abc, severity: high}\n",
    )
    assert error(path) == (
        f"{path}:9:33: error: not a guardduty payload: $.detail.severity: expected a number"
    )
    quoted = with_alert(tmp_path, "alert: {from: guardduty, raw: {detail-type: Nope}}")
    assert error(quoted) == (
        f"{quoted}:5:45: error: not a guardduty payload: $['detail-type']: "
        "expected 'GuardDuty Finding'"
    )
    scalar = with_alert(tmp_path, "alert: {from: guardduty, raw: [1]}")
    assert error(scalar) == f"{scalar}:5:31: error: not a guardduty payload: $: expected an object"


def test_a_raw_payload_file_is_reported_in_that_file(tmp_path: Path) -> None:
    # a normalized alert given as a GuardDuty event: its keys are not an event's
    path = with_alert(tmp_path, f"alert: {{file: {ALERT}, from: guardduty}}")
    assert error(path) == f"{ALERT}:1:1: error: not a guardduty payload: $.detail: missing"


def test_a_raw_payload_must_start_the_playbook(tmp_path: Path) -> None:
    """A drill of a raw payload rehearses payload -> trigger -> run: a payload the
    playbook's triggers do not match is an error naming the condition, as `irbook match`
    names it for a near miss."""
    raw = ROOT / "runbooks" / "drills" / "alerts" / "guardduty-leaked-model-key.json"
    event = json.loads(raw.read_text())
    event["detail"]["severity"] = 3
    (tmp_path / "low.json").write_text(json.dumps(event))
    path = with_alert(tmp_path, "alert: {file: low.json, from: guardduty}")
    assert error(path) == (
        f"{path}:5:1: error: the alert does not start playbook 'leaked-model-key': "
        'severity: expected {"gte": 5}, got 3.0'
    )
    event["detail"]["severity"] = 8
    (tmp_path / "high.json").write_text(json.dumps(event))
    loaded = load_scenario(with_alert(tmp_path, "alert: {file: high.json, from: guardduty}"))
    assert (loaded.alert.format, loaded.alert_format, loaded.trigger) == (
        "guardduty",
        "guardduty",
        0,
    )


def test_the_playbook_must_be_started_by_the_payloads_format(tmp_path: Path) -> None:
    payload = PAYLOADS / "securityhub_findings.json"
    path = with_alert(tmp_path, f"alert: {{file: {payload}, from: securityhub}}")
    assert errors(path)[-1].endswith(
        "error: the alert does not start playbook 'leaked-model-key': "
        'format: expected "guardduty", got "securityhub"'
    )


def test_a_payload_with_no_alert_is_an_error(tmp_path: Path) -> None:
    path = with_alert(tmp_path, "alert: {from: alertmanager, raw: {alerts: []}}")
    assert error(path) == f"{path}:5:34: error: the alertmanager payload holds no alert to drill"


def test_an_inline_normalized_alert_is_checked_under_alert_normalized(tmp_path: Path) -> None:
    path = with_alert(
        tmp_path,
        "alert:\n"
        "  normalized:\n"
        "    id: x\n"
        "    severity: 11\n"
        "    actor: {access_key_id: AKIAIOSFODNN7EXAMPLE, bogus: 1}",
    )
    assert errors(path) == [
        f"{path}:8:15: error: 'alert.normalized.severity': must be at most 10, got 11",
        f"{path}:9:50: error: unknown field 'bogus' (allowed: user_name, principal_arn, "
        "access_key_id, ip)",
    ]


# --- step references ---------------------------------------------------------------


def test_unknown_steps_are_reported_with_a_suggestion_where_they_are_named(
    tmp_path: Path,
) -> None:
    path = scenario(
        tmp_path,
        "outputs:\n"
        "  activty: {events: 1}\n"
        "injects:\n"
        "  - {at_step: revok, fail: 2}\n"
        "  - {at_step: nothing-like-it, delay: 5m}\n"
        "approvers:\n"
        "  - {step: revokee, decision: approve}\n"
        "expect:\n"
        "  steps_run: [tickt]\n"
        "  steps_skipped: [snapshoot]\n",
    )
    assert errors(path) == [
        f"{path}:8:3: error: unknown step 'activty' (did you mean 'activity'?)",
        f"{path}:10:15: error: unknown step 'revok' (did you mean 'revoke'?)",
        f"{path}:11:15: error: unknown step 'nothing-like-it' (steps: ticket, activity, revoke, "
        "snapshot, tag-each, notify, not-contained)",
        f"{path}:13:12: error: unknown step 'revokee' (did you mean 'revoke'?)",
        f"{path}:15:15: error: unknown step 'tickt' (did you mean 'ticket'?)",
        f"{path}:16:19: error: unknown step 'snapshoot' (did you mean 'snapshot'?)",
    ]


# --- approvers ---------------------------------------------------------------------


def test_an_approver_needs_a_gated_step_and_decides_it_once(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        "approvers:\n"
        "  - {step: ticket, decision: approve}\n"
        "  - {step: revoke, decision: approve, after: 4m}\n"
        "  - {step: revoke, decision: reject}\n",
    )
    assert errors(path) == [
        f"{path}:8:12: error: step 'ticket' has no approval gate (gated steps: revoke)",
        f"{path}:10:12: error: a second approver entry for step 'revoke' (first at line 9); "
        "a gate is decided once",
    ]


def test_a_core_approval_step_is_a_gate(tmp_path: Path) -> None:
    book = PLAYBOOK.read_text().replace(
        "steps:\n",
        "steps:\n  - id: go\n    action: core.approval\n    with: {prompt: Go?}\n",
        1,
    )
    write(tmp_path, book, "book.yaml")
    path = write(
        tmp_path,
        HEAD.replace(f"playbook: {PLAYBOOK}", "playbook: book.yaml")
        + "approvers: [{step: go, decision: approve}]\n",
    )
    assert load_scenario(path).drill.approvers[0].step == "go"
    outputs = write(
        tmp_path,
        HEAD.replace(f"playbook: {PLAYBOOK}", "playbook: book.yaml")
        + "outputs: {go: {prompt: Went}}\n",
        "outputs.yaml",
    )
    assert error(outputs) == (
        f"{outputs}:7:11: error: step 'go' runs core.approval, which has no I/O and runs as "
        "itself in a drill: its outputs cannot be set"
    )


# --- outputs -----------------------------------------------------------------------


def test_outputs_name_fields_of_the_steps_result_with_values_of_their_type(
    tmp_path: Path,
) -> None:
    path = scenario(
        tmp_path,
        "outputs:\n"
        "  activity: {evnts: 3, events: lots, event_names: {a: b}, status: found}\n"
        "  ticket: {key: SEC-1, zzz: 1}\n"
        "  revoke: {status: Gone}\n",
    )
    assert errors(path) == [
        f"{path}:8:14: error: unknown output 'evnts' of aws.cloudtrail.lookup_events "
        "(did you mean 'events'?)",
        f"{path}:8:32: error: aws.cloudtrail.lookup_events output 'events': expected an "
        "integer, got string",
        f"{path}:8:55: error: aws.cloudtrail.lookup_events output 'event_names.a': expected an "
        "integer, got string",
        f"{path}:9:24: error: unknown output 'zzz' of jira.create_issue (fields: key, url, "
        "created)",
        f"{path}:10:20: error: aws.iam.deactivate_access_key output 'status': 'Gone' is not one "
        "of 'Active', 'Inactive' or 'Deleted'",
    ]


def test_outputs_are_a_mapping_or_a_list_of_them_for_a_for_each_step(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        "outputs:\n"
        "  ticket: [{key: SEC-1}]\n"
        "  activity: 412\n"
        "  tag-each: [{arn: 'arn:aws:iam::1:user/a'}, 3, {added: [x]}]\n",
    )
    assert errors(path) == [
        f"{path}:8:11: error: outputs of step 'ticket': a list is for a for_each step (one "
        "mapping per item); give one mapping of jira.create_issue result fields",
        f"{path}:9:13: error: outputs of step 'activity': expected a mapping of "
        "aws.cloudtrail.lookup_events result fields, got number",
        f"{path}:10:46: error: outputs of step 'tag-each' item 1: expected a mapping of "
        "aws.tag_resource result fields, got number",
    ]


# --- injects -----------------------------------------------------------------------


def test_an_outage_must_touch_a_step_of_the_playbook(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        "injects:\n"
        "  - {outage: github}\n"
        "  - {outage: slakc}\n"
        "  - {outage: jira, at_step: notify}\n"
        "  - {outage: aws.iam, at_step: revoke}\n"
        "  - {outage: aws.iam.deactivate_access_key}\n",
    )
    assert errors(path) == [
        f"{path}:8:14: error: outage 'github' touches no step of the playbook (it uses: aws, "
        "aws.cloudtrail, aws.iam, aws.sagemaker, jira, slack)",
        f"{path}:9:14: error: outage 'slakc' touches no step of the playbook (did you mean "
        "'slack'? it uses: aws, aws.cloudtrail, aws.iam, aws.sagemaker, jira, slack)",
        f"{path}:10:14: error: outage 'jira' does not touch step 'notify', which runs "
        "slack.post_message",
    ]


def test_one_fail_and_one_delay_inject_per_step(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        "injects:\n"
        "  - {at_step: revoke, fail: 1}\n"
        "  - {at_step: snapshot, delay: 5m}\n"
        "  - {at_step: revoke, fail: 2}\n"
        "  - {at_step: snapshot, delay: 1m}\n"
        "  - {at_step: revoke, delay: 1m}\n",
    )
    assert errors(path) == [
        f"{path}:10:29: error: a second 'fail' inject for step 'revoke' (first at line 8); "
        "give one",
        f"{path}:11:32: error: a second 'delay' inject for step 'snapshot' (first at line 9); "
        "give one",
    ]


# --- expect ------------------------------------------------------------------------


def test_expected_calls_are_written_service_colon_operation(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        "expect:\n"
        "  calls_include: ['iam:UpdateAccessKey', 'iam.UpdateAccessKey']\n"
        "  calls_exclude: ['IAM:DeleteAccessKey', 'slack:chat.postMessage',"
        " 'jira:POST /rest/api/3/issue']\n",
    )
    assert errors(path) == [
        f"{path}:8:42: error: 'iam.UpdateAccessKey' is not an API call: write service:Operation "
        "as the plan shows it, such as iam:UpdateAccessKey or slack:chat.postMessage",
        f"{path}:9:19: error: 'IAM:DeleteAccessKey' is not an API call: write service:Operation "
        "as the plan shows it, such as iam:UpdateAccessKey or slack:chat.postMessage",
    ]


def test_contradictory_step_lists(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        "expect:\n"
        "  steps_run: [ticket, notify, ticket]\n"
        "  steps_failed: [notify]\n"  # ran and failed: consistent
        "  steps_skipped: [notify]\n"
        "  steps_succeeded: [ticket]\n"
        "  steps_rejected: [revoke, ticket]\n",
    )
    assert errors(path) == [
        f"{path}:8:31: error: step 'ticket' is listed twice in steps_run",
        f"{path}:10:19: error: step 'notify' cannot be in both steps_run and steps_skipped",
        f"{path}:12:28: error: step 'ticket' cannot be in both steps_run and steps_rejected",
    ]


def test_only_a_gated_step_can_be_expected_rejected(tmp_path: Path) -> None:
    path = scenario(tmp_path, "expect: {steps_rejected: [revoke, notify]}\n")
    assert error(path) == (
        f"{path}:7:35: error: step 'notify' has no approval gate, so it cannot be rejected "
        "(gated steps: revoke)"
    )


# --- inputs ------------------------------------------------------------------------


def test_inputs_are_the_playbooks_and_fit_their_types(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEAD.replace(
            "inputs: {endpoint_name: fraud-scoring}",
            "inputs:\n"
            "  endpoint_nam: x\n"
            "  region: us-east-1\n"
            "  access_key_id: not-a-key\n"
            "  evidence_bucket: 1.10\n",
        ),
    )
    assert errors(path) == [
        f"{path}:7:3: error: unknown input 'endpoint_nam' (did you mean 'endpoint_name'?)",
        f"{path}:8:3: error: unknown input 'region' (playbook leaked-model-key takes: "
        "access_key_id, endpoint_name, evidence_bucket)",
        f"{path}:9:18: error: input 'access_key_id': 'not-a-key' does not match "
        "^AKIA[A-Z0-9]{16}$",
        f"{path}:10:20: error: input 'evidence_bucket': expected string, got number (quote it)",
    ]


def test_a_required_input_the_alert_does_not_provide(tmp_path: Path) -> None:
    path = with_alert(tmp_path, "alert: {normalized: {id: x}}")
    assert error(path) == (
        f"{path}:6:1: error: input 'access_key_id' is required: give inputs.access_key_id or an "
        "alert with alert.actor.access_key_id"
    )
    bad = with_alert(tmp_path, "alert: {normalized: {id: x, actor: {access_key_id: nope}}}")
    assert error(bad) == (
        f"{bad}:5:1: error: input 'access_key_id': 'nope' does not match "
        "^AKIA[A-Z0-9]{16}$ (from the alert's alert.actor.access_key_id)"
    )
    given = write(
        tmp_path,
        HEAD.replace(f"alert: {{file: {ALERT}}}", "alert: {normalized: {id: x}}").replace(
            "inputs: {endpoint_name: fraud-scoring}",
            "inputs: {endpoint_name: fraud-scoring, access_key_id: AKIAI44QH8DHBEXAMPLE}",
        ),
    )
    assert load_scenario(given).alert.id == "x"


# --- hostile input -----------------------------------------------------------------


def test_odd_values_never_traceback(tmp_path: Path) -> None:
    long_key = "k" * 1000
    path = scenario(
        tmp_path,
        "outputs:\n"
        f"  {long_key}: {{}}\n"
        '  "line\\nbreak": 1\n'
        '  activity: {events: .nan, "\\u202e": 1}\n'
        "injects: [{at: 1s, note: \"${{ 'x' * 9999999 }}\"}, {outage: slack, at_step: 5}]\n"
        "approvers: [{step: [revoke], decision: approve}]\n"
        "expect: {calls_include: [{a: 1}], steps_run: [1, null]}\n",
    )
    found = errors(path)
    assert found[0].startswith(f"{path}:8:3: error: unknown step 'kkkkkkkk")
    assert len(found[0]) < 300
    assert f"{path}:9:3: error: unknown step 'line\\nbreak'" in found[1]
    assert all(line.startswith(f"{path}:") for line in found)


def test_json_paths_of_normalizers_become_locations() -> None:
    assert json_path("$") == ()
    assert json_path("$.detail.findings[3].Id") == ("detail", "findings", 3, "Id")
    assert json_path("$['detail-type']") == ("detail-type",)
    assert json_path("$['it\\'s'].x") == ("it's", "x")
    assert json_path("$['\\u00e9']") == ("é",)
    assert json_path("not a path") == ()
    assert json_path("$.a[") == ("a",)


# --- the corpus --------------------------------------------------------------------


def _corpus_output(name: str) -> str:
    relative = f"tests/corpus/drill/bad/{name}"
    try:
        load_scenario(relative)
    except LoadFailed as exc:
        return "".join(f"{d}\n" for d in exc.diagnostics)
    return "(loaded)\n"


@pytest.mark.parametrize("name", CASES)
def test_bad_scenario_output_is_pinned(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    actual = _corpus_output(name)
    expected = CORPUS / (Path(name).stem + ".expected")
    if REGEN:
        expected.write_text(actual, encoding="utf-8")
    assert expected.is_file(), f"{expected.name} is missing: run IRBOOK_REGEN_CORPUS=1 pytest"
    assert actual == expected.read_text(encoding="utf-8")
    assert actual != "(loaded)\n"


def test_the_corpus_has_no_orphans_and_enough_cases() -> None:
    assert len(CASES) >= 12
    orphans = [
        p.name for p in CORPUS.glob("*.expected") if not (CORPUS / f"{p.stem}.yaml").is_file()
    ]
    assert not orphans
