"""The drill referee and the expectations, without Prefect: decisions, injected faults,
the drill clock and the precise expectation messages."""

from __future__ import annotations

from typing import Any

import yaml

from irbook.drill.clock import DrillController
from irbook.drill.expect import containment_time, evaluate
from irbook.drill.result import StepRecord
from irbook.loader import load_playbook
from irbook.model.scenario import Drill, Expect

PLAYBOOK = load_playbook("playbooks/leaked-model-key.yaml").playbook


def controller(body: str) -> DrillController:
    head = "apiVersion: irbook/v1\nkind: Drill\nmetadata: {id: t}\nplaybook: x\nalert: {file: a}\n"
    return DrillController(Drill.model_validate(yaml.safe_load(head + body)), PLAYBOOK)


def test_an_approver_in_time_decides_and_a_late_one_is_a_timeout() -> None:
    c = controller("approvers: [{step: revoke, decision: reject, after: 3m, by: bob}]\n")
    ruled = c.decide(PLAYBOOK.step("revoke"), 900.0, "reject")
    assert (ruled.approved, ruled.by, ruled.how, ruled.wait) == (False, "bob", "scenario", 180.0)
    late = c.decide(PLAYBOOK.step("revoke"), 60.0, "approve")
    assert (late.approved, late.by, late.how, late.wait) == (True, "timeout", "timeout", 60.0)
    assert late.comment == "no decision within 1m (bob would answer after 3m); on_timeout: approve"
    nobody = controller("").decide(PLAYBOOK.step("revoke"), 900.0, "reject")
    assert (nobody.approved, nobody.how, nobody.wait) == (False, "timeout", 900.0)


def test_fail_outage_and_delay_injects_fail_exactly_the_attempts_they_name() -> None:
    c = controller(
        "injects:\n"
        "  - {at_step: revoke, fail: 2, error: Throttling}\n"
        "  - {outage: slack}\n"
        "  - {at_step: snapshot, delay: 10m}\n"
        "  - {at_step: ticket, outage: jira, error: '502'}\n"
    )
    revoke, notify = PLAYBOOK.step("revoke"), PLAYBOOK.step("notify")
    assert c.attempt_error(revoke, 0, 1) == "Throttling (drill: attempt 1 of 2 fails)"
    assert c.attempt_error(revoke, 0, 2) is not None
    assert c.attempt_error(revoke, 0, 3) is None
    assert c.attempt_error(notify, 0, 5) == "ServiceUnavailable: slack is down (drill)"
    assert c.attempt_error(PLAYBOOK.step("ticket"), 0, 1) == "502: jira is down (drill)"
    # snapshot has no timeout: a long delay stretches it, it does not fail it
    assert c.attempt_error(PLAYBOOK.step("snapshot"), 0, 1) is None
    assert c.attempt_seconds(PLAYBOOK.step("snapshot"), 3) == 600.0
    assert c.attempt_seconds(PLAYBOOK.step("ticket"), 3) == 3.0
    assert c.attempt_seconds(PLAYBOOK.step("ticket"), 0) == 1.0
    assert c.injected(notify) == ["outage of slack"]
    assert len(c.failures[("revoke", 0)]) == 2


def test_outputs_per_item_for_for_each_steps() -> None:
    c = controller("outputs:\n  tag-each: [{arn: a}, {arn: b}]\n  ticket: {key: SEC-1}\n")
    assert c.output("tag-each", 1) == {"arn": "b"}
    assert c.output("tag-each", 5) is None
    assert c.output("ticket", 0) == {"key": "SEC-1"}
    assert c.output("notify", 0) is None


def row(step: str, state: str, **kw: Any) -> dict[str, Any]:
    return {"step_id": step, "item": 0, "state": state, "effect": "mutate", **kw}


def test_the_clock_starts_a_step_when_its_needs_and_its_approval_are_done() -> None:
    c = controller("approvers: [{step: revoke, decision: approve, after: 5m, by: a}]\n")
    c.decide(PLAYBOOK.step("revoke"), 900.0, "reject")
    calls = [{"call": "iam:UpdateAccessKey"}]
    rows = [
        row("ticket", "succeeded", effect="notify", planned_calls=[{"call": "jira:CreateIssue"}]),
        row("activity", "succeeded", effect="read"),
        row("revoke", "succeeded", attempts=1, planned_calls=calls),
        row("snapshot", "skipped", reason="if: false"),
        row("tag-each", "succeeded", planned_calls=[{"call": "tag:TagResources"}]),
        row("notify", "succeeded", effect="notify"),
    ]
    steps, markers = c.timeline(rows, {"revoke": "aws.iam.activate_access_key"})
    by = {s.id: s for s in steps}
    assert (by["revoke"].start, by["revoke"].end) == (300.0, 301.0)
    assert by["revoke"].compensation == "aws.iam.activate_access_key"
    assert (by["tag-each"].start, by["snapshot"].start) == (301.0, None)
    assert by["notify"].start == 301.0  # after ticket, activity, revoke and snapshot
    assert [(m.at, m.kind) for m in markers] == [(0.0, "approval"), (300.0, "approval")]
    # the skipped snapshot was the playbook's choice: containment is the revoke and tags
    assert containment_time(steps) == 302.0


def record(sid: str, state: str, effect: str = "mutate", **kw: Any) -> StepRecord:
    return StepRecord(id=sid, action="x", effect=effect, state=state, **kw)


def test_expectation_messages_name_the_step_and_why() -> None:
    steps = [
        record("a", "succeeded", start=0.0, end=700.0, planned_calls=["iam:UpdateAccessKey"]),
        record("b", "skipped", reason="upstream step 'a' failed"),
        record("c", "failed", effect="notify", reason="boom", start=1.0, end=2.0),
    ]
    expect = Expect.model_validate(
        {
            "steps_run": ["a", "b"],
            "steps_skipped": [],
            "steps_failed": ["c"],
            "calls_include": ["iam:UpdateAccessKey", "s3:PutObject"],
            "calls_exclude": ["iam:UpdateAccessKey"],
            "contained_within": "10m",
            "outcome": "succeeded",
        }
    )
    results = {r.name: r for r in evaluate(expect, steps, "failed", containment_time(steps))}
    assert results["steps_run"].detail == "'b' skipped (upstream step 'a' failed)"
    assert results["steps_skipped"].detail == "'b' skipped (upstream step 'a' failed), not expected"
    assert results["steps_failed"].ok
    assert results["calls_include"].detail == "not planned by any step that ran: s3:PutObject"
    assert results["calls_exclude"].detail == "planned although excluded: iam:UpdateAccessKey"
    assert (
        results["contained_within"].detail
        == "not contained: 'b' skipped (upstream step 'a' failed)"
    )
    assert results["outcome"].detail == "the run ended failed, expected succeeded"
    on_time = evaluate(Expect.model_validate({"contained_within": "10m"}), steps[:1], "x", 700.0)
    assert on_time[0].detail == "contained at 11m40s, 1m40s late"
