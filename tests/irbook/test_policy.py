"""irbook.policy's one check, without Prefect: grants by scope, identities by source,
Slack user groups, the two-person rule and separation of duties."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from irbook.errors import LoadFailed
from irbook.policy import Gate, Identity, Scope, Vote, decide, gate_for, judge, load_policy

ROOT = Path(__file__).resolve().parents[2]

POLICY = """\
apiVersion: irbook/v1
kind: Policy
people:
  - {name: alice, users: [alice], emails: [Alice@Example.com], slack: [U0ALICE]}
  - {name: bob, users: [bob], slack: [U0BOB]}
  - {name: dana, slack: [U0DANA]}
groups:
  - {name: secops, members: [alice], slack_groups: [S0SECOPS]}
roles:
  - name: responder
    members: [secops]
    grants:
      - {allow: [run-live, approve], playbooks: ["leaked-*"], severities: [high, critical]}
  - name: rehearsal
    members: [bob, "source:guardduty"]
    grants:
      - {allow: [run, drill], modes: [dry-run]}
"""

HIGH_LIVE = Scope("leaked-model-key", "high", "live")


@pytest.fixture
def policy(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "irbook-policy.yaml"
    path.write_text(POLICY)
    return load_policy(str(path)).policy


def test_grants_hold_only_within_their_scope(policy) -> None:  # type: ignore[no-untyped-def]
    alice = Identity("cli", "alice")
    assert decide(policy, alice, "run-live", HIGH_LIVE).allowed
    assert not decide(policy, alice, "run-live", Scope("other", "high", "live")).allowed
    low = decide(policy, alice, "run-live", Scope("leaked-model-key", "low", "live"))
    assert not low.allowed
    assert low.reason == (
        "alice (cli:alice) has no run-live grant for playbook leaked-model-key (low, live)"
    )
    assert not decide(policy, alice, "rollback", HIGH_LIVE).allowed
    bob = Identity("cli", "bob")
    assert decide(policy, bob, "run", Scope("x", "low", "dry-run")).allowed
    assert not decide(policy, bob, "run-live", Scope("x", "low", "live")).allowed


def test_each_identity_source_proves_its_own_names(policy) -> None:  # type: ignore[no-untyped-def]
    assert decide(policy, Identity("cli", "alice@example.com"), "approve", HIGH_LIVE).allowed
    assert decide(policy, Identity("slack", "U0ALICE"), "approve", HIGH_LIVE).allowed
    # a Slack id typed at the CLI, or a user name typed into Prefect, is nobody
    assert not decide(policy, Identity("cli", "U0ALICE"), "approve", HIGH_LIVE).allowed
    prefect = decide(policy, Identity("prefect", "alice"), "approve", HIGH_LIVE)
    assert not prefect.allowed and prefect.reason.startswith("prefect:alice is nobody")
    source = decide(policy, Identity("webhook", "guardduty"), "run", Scope("x", "low", "dry-run"))
    assert source.allowed and source.principal == "source:guardduty"
    assert decide(None, Identity("cli", "anyone"), "run-live", HIGH_LIVE).allowed  # no policy


def test_slack_user_groups_count_and_an_outage_lets_nobody_in(policy) -> None:  # type: ignore[no-untyped-def]
    dana = Identity("slack", "U0DANA")
    assert not decide(policy, dana, "approve", HIGH_LIVE).allowed
    assert decide(policy, dana, "approve", HIGH_LIVE, lambda g: {"U0DANA"}).allowed

    def down(group: str) -> set[str]:
        raise OSError("slack is down")

    assert not decide(policy, dana, "approve", HIGH_LIVE, down).allowed


def test_two_distinct_approvers_and_no_self_approval(policy) -> None:  # type: ignore[no-untyped-def]
    rules = load_policy_with_two(policy)
    gate = gate_for(
        irreversible=True,
        min_approvers=2,
        separate_duties=None,
        approvers=(),
        policy_in_force=True,
    )
    assert gate == Gate("approve-irreversible", 2, True, ())
    scope = HIGH_LIVE
    alice, bob = Identity("cli", "alice"), Identity("slack", "U0BOB")
    mine = judge(rules, gate, alice, True, scope, started_by="slack:U0ALICE", votes=[])
    assert mine.outcome == "refused" and "separation of duties" in mine.reason
    first = judge(rules, gate, bob, True, scope, started_by="cli:alice", votes=[])
    assert (first.outcome, first.waiting_for) == ("recorded", 1)
    votes = [Vote("slack:U0BOB", "bob")]
    again = judge(rules, gate, Identity("cli", "bob"), True, scope, started_by="x", votes=votes)
    assert again.outcome == "refused" and "bob approved already" in again.reason
    dana = Identity("slack", "U0DANA")
    done = judge(rules, gate, dana, True, scope, started_by="cli:alice", votes=votes)
    assert done.outcome == "approved"
    # a rejection needs the same grant, and one ends the gate
    stranger = judge(rules, gate, Identity("cli", "eve"), False, scope, started_by="x", votes=[])
    assert stranger.outcome == "refused" and "may not reject" in stranger.reason
    assert judge(rules, gate, dana, False, scope, started_by="x", votes=[]).outcome == "rejected"


def load_policy_with_two(policy):  # type: ignore[no-untyped-def]
    """The fixture's policy where bob and dana may approve irreversible steps too."""
    from irbook.policy import GrantRule, Role

    role = Role(name="second", members=["bob", "dana"], grants=[GrantRule(allow=["approve"])])
    worst = [GrantRule(allow=["approve-irreversible"])]
    first = policy.roles[0].model_copy(
        update={"members": ["secops", "bob", "dana"], "grants": worst}
    )
    return policy.model_copy(update={"roles": [first, role]})


def test_without_a_policy_separation_of_duties_is_opt_in() -> None:
    gate = gate_for(
        irreversible=True,
        min_approvers=1,
        separate_duties=None,
        approvers=(),
        policy_in_force=False,
    )
    assert not gate.separate_duties
    own = judge(None, gate, Identity("cli", "a"), True, HIGH_LIVE, started_by="cli:a", votes=[])
    assert own.outcome == "approved"
    strict = Gate("approve", 1, True, ())
    own = judge(None, strict, Identity("cli", "a"), True, HIGH_LIVE, started_by="cli:a", votes=[])
    assert own.outcome == "refused"


def test_a_broken_policy_file_is_refused_with_located_errors(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(POLICY.replace("[run, drill]", "[run, deploy]"))
    with pytest.raises(LoadFailed) as caught:
        load_policy(str(path))
    assert str(caught.value) == (
        f"{path}:17:23: error: 'roles[1].grants[0].allow[1]': 'deploy' is not one of 'run',"
        " 'run-live', 'approve', 'approve-irreversible', 'rollback' or 'drill'"
    )


def test_the_readme_pins_the_exit_statuses_of_irbook_approve() -> None:
    from irbook.cli.common import EXIT_LATE, EXIT_OK, EXIT_RECORDED, EXIT_REFUSED

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Who may do what", 1)[1].split("\n## ", 1)[0]
    table = dict(re.findall(r"^\| (\d) \| ([a-z ]+?) +\|", section, re.M))
    assert table == {
        str(EXIT_OK): "decided",
        str(EXIT_RECORDED): "recorded",
        str(EXIT_REFUSED): "refused",
        str(EXIT_LATE): "too late",
    }
    assert "IRBOOK_POLICY" in section and "IRBOOK_USER" in section
