"""Dry runs of the notify actions: no network, deterministic results, honest declarations."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from irbook.registry import REGISTRY
from tests.support.notify import live_run

EXAMPLES: dict[str, dict[str, Any]] = {
    "slack.post_message": {"channel": "#ir", "text": "Key deactivated"},
    "slack.request_approval": {
        "channel": "#ir",
        "step": "revoke",
        "planned_calls": ["iam:UpdateAccessKey"],
        "compensation": "aws.iam.activate_access_key",
    },
    "jira.create_issue": {"project": "SEC", "summary": "Leaked key"},
    "jira.comment": {"issue": "SEC-1", "body": "Contained"},
    "jira.transition": {"issue": "SEC-1", "to": "Done"},
    "jira.link_evidence": {"issue": "SEC-1", "url": "https://e.test/m.json?sig=abc"},
    "notify.webhook": {"url": "https://hooks.example.com/a/b", "json": {"text": "hi"}},
    "pagerduty.trigger": {"routing_key": "R" * 32, "summary": "s", "severity": "critical"},
}


@pytest.mark.parametrize("key", sorted(EXAMPLES))
def test_dry_run_makes_no_network_call_and_repeats_itself(key: str, no_network: list[Any]) -> None:
    spec = REGISTRY.get(key)
    params = spec.params.model_validate(EXAMPLES[key])
    run = live_run(dry_run=True)

    calls = spec.plan(params)
    first = spec.simulated(params, run)
    second = spec.simulated(params, run)

    assert calls, "a dry run must show what the live run would call"
    assert no_network == []
    assert first == second


def test_simulated_results_look_like_the_real_ones() -> None:
    run = live_run(dry_run=True)

    def simulate(key: str) -> dict[str, Any]:
        spec = REGISTRY.get(key)
        out = spec.simulated(spec.params.model_validate(EXAMPLES[key]), run)
        return out.model_dump()

    assert simulate("jira.create_issue")["key"] == "SEC-DRYRUN-1"
    assert simulate("slack.post_message")["ts"] == "0000000000.000001"
    assert simulate("pagerduty.trigger")["dedup_key"] == "irbook-0123456789ab"
    assert "abc" not in simulate("jira.link_evidence")["url"]


@pytest.mark.parametrize("key", sorted(EXAMPLES))
def test_notify_actions_do_not_stop_a_run_when_they_fail(key: str) -> None:
    spec = REGISTRY.get(key)

    assert spec.effect == "notify"
    assert spec.on_failure == "continue"
    assert spec.summary


def test_later_steps_plan_against_the_simulated_ticket() -> None:
    run = live_run(dry_run=True)
    create = REGISTRY.get("jira.create_issue")
    ticket = create.simulated(create.params.model_validate(EXAMPLES["jira.create_issue"]), run)
    transition = REGISTRY.get("jira.transition")

    params = transition.params.model_validate({"issue": ticket.model_dump()["key"], "to": "Done"})

    assert [c.name for c in transition.plan(params)] == [
        "jira:GET /rest/api/3/issue/SEC-DRYRUN-1/transitions",
        "jira:POST /rest/api/3/issue/SEC-DRYRUN-1/transitions",
    ]


def test_importing_the_actions_does_not_import_their_libraries() -> None:
    code = (
        "import sys\n"
        "import irbook_actions.slack, irbook_actions.jira, irbook_actions.notify,"
        " irbook_actions.pagerduty\n"
        "heavy = [m for m in ('slack_sdk', 'jira', 'requests') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    assert out.stdout.strip() == ""
