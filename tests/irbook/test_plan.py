"""The offline planner: inputs, branches, for_each, failures, approvals, calls, secrets."""

from __future__ import annotations

import json
import socket
import textwrap
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from irbook.loader import load_playbook
from irbook.model import Alert
from irbook.plan import PlanError, build_plan, execution_order, redact, render_text
from irbook.registry import REGISTRY, ActionContext, PlannedCall, RunInfo, action

# --- a test-only fake mutating action with a compensation ---------------------------


class KeyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    access_key_id: str
    user_name: str | None = None


class KeyResult(BaseModel):
    access_key_id: str
    user_name: str
    already_done: bool = False


def _plan_key(params: KeyParams) -> list[PlannedCall]:
    calls = []
    if params.user_name is None:
        calls.append(
            PlannedCall("iam", "GetAccessKeyLastUsed", {"AccessKeyId": params.access_key_id})
        )
    calls.append(
        PlannedCall(
            "iam",
            "UpdateAccessKey",
            {
                "AccessKeyId": params.access_key_id,
                "UserName": params.user_name or "<from iam:GetAccessKeyLastUsed>",
                "Status": "Inactive",
            },
        )
    )
    return calls


def _simulate_key(params: KeyParams, run: RunInfo) -> KeyResult:
    return KeyResult(access_key_id=params.access_key_id, user_name=params.user_name or "sim-user")


class Undo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    access_key_id: str
    user_name: str


@pytest.fixture(scope="module", autouse=True)
def fake_actions() -> Iterator[None]:
    def undo_plan(params: Undo) -> list[PlannedCall]:
        return [PlannedCall("iam", "UpdateAccessKey", {"Status": "Active"})]

    def undo_sim(params: Undo, run: RunInfo) -> KeyResult:
        return KeyResult(access_key_id=params.access_key_id, user_name=params.user_name)

    @action(
        "testing.key.activate",
        effect="mutate",
        calls=[("iam", "UpdateAccessKey")],
        planner=undo_plan,
        simulate=undo_sim,
        irreversible="test only",
    )
    def activate(ctx: ActionContext, params: Undo) -> KeyResult:
        raise AssertionError("a plan must never call an action for real")

    @action(
        "testing.key.deactivate",
        effect="mutate",
        calls=[("iam", "UpdateAccessKey"), ("iam", "GetAccessKeyLastUsed")],
        planner=_plan_key,
        simulate=_simulate_key,
        compensation="testing.key.activate",
        undo=lambda p, r: {"access_key_id": r.access_key_id, "user_name": r.user_name},
    )
    def deactivate(ctx: ActionContext, params: KeyParams) -> KeyResult:
        raise AssertionError("a plan must never call an action for real")

    yield
    REGISTRY.remove("testing.key.deactivate")
    REGISTRY.remove("testing.key.activate")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """The planner is offline: any connection attempt fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the planner tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


PLAYBOOK = """\
apiVersion: irbook/v1
kind: Playbook
metadata: {id: plan-test, title: Plan test, severity: critical}
inputs:
  access_key_id:
    type: string
    required: true
    pattern: '^(AKIA|ASIA)[A-Z0-9]{16}$'
    from: alert.actor.access_key_id
  endpoint_name: {type: string, default: ""}
  webhook_token: {type: string, default: "", secret: true}
  limit: {type: integer, default: 5}
steps:
  - id: notify-late
    action: core.note
    needs: [snapshot, tag]
    with: {text: "done ${{ steps.revoke.outputs.user_name }} ${{ steps.snapshot.outputs.text }}"}
  - id: revoke
    action: testing.key.deactivate
    approval: {required: true, timeout: 5m}
    with: {access_key_id: "${{ inputs.access_key_id }}"}
  - id: snapshot
    action: core.note
    needs: [revoke]
    if: "${{ inputs.endpoint_name != '' }}"
    with: {text: "snap ${{ inputs.endpoint_name }}"}
  - id: tag
    action: core.note
    for_each: "${{ alert.resources }}"
    with: {text: "tag ${{ item.arn }} token=${{ inputs.webhook_token }}"}
outputs:
  user: "${{ steps.revoke.outputs.user_name }}"
"""

KEY = "AKIAIOSFODNN7EXAMPLE"


def write(tmp_path: Path, text: str, name: str = "pb.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def alert(**over: Any) -> Alert:
    data: dict[str, Any] = {
        "id": "gd-1",
        "source": "guardduty",
        "type": "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
        "title": "exfil ${{ inputs.access_key_id }}",
        "severity": 8,
        "actor": {"access_key_id": KEY},
        "resources": [{"type": "AwsIamUser", "id": "u1", "arn": "arn:aws:iam::1:user/u1"}],
    }
    data.update(over)
    return Alert.model_validate(data)


def test_plan_follows_the_branches(tmp_path: Path) -> None:
    pb = load_playbook(str(write(tmp_path, PLAYBOOK))).playbook
    plan = build_plan(pb, alert(), {"webhook_token": "tok-123"})
    assert [s.id for s in plan.steps] == ["revoke", "snapshot", "tag", "notify-late"]
    revoke = plan.step("revoke")
    assert revoke.status == "run"
    assert revoke.approval == {"timeout": "5m", "on_timeout": "reject", "approvers": []}
    assert [c.name for c in revoke.calls] == ["iam:GetAccessKeyLastUsed", "iam:UpdateAccessKey"]
    assert revoke.iterations[0].compensation == {
        "action": "testing.key.activate",
        "with": {"access_key_id": KEY, "user_name": "sim-user"},
    }
    snapshot = plan.step("snapshot")
    assert snapshot.status == "skip"
    assert "inputs.endpoint_name != ''" in snapshot.reason
    tag = plan.step("tag")
    assert [it.params["text"] for it in tag.iterations] == [
        "tag arn:aws:iam::1:user/u1 token=tok-123"
    ]
    late = plan.step("notify-late")
    # it reads the outputs of a skipped step: skipped with that reason, never run with blanks
    assert late.status == "skip"
    assert late.reason == "reads the outputs of step 'snapshot', which skipped"
    assert plan.outputs == {"user": "sim-user"}
    assert plan.outcome == "succeeds"


def test_default_says_a_missing_output_is_expected(tmp_path: Path) -> None:
    text = PLAYBOOK.replace(
        "${{ steps.snapshot.outputs.text }}", "${{ default(steps.snapshot.outputs.text, 'none') }}"
    )
    pb = load_playbook(str(write(tmp_path, text))).playbook
    late = build_plan(pb, alert(), {}).step("notify-late")
    assert late.status == "run"
    assert late.iterations[0].params["text"] == "done sim-user none"


def test_the_other_branch_runs_when_the_input_is_given(tmp_path: Path) -> None:
    pb = load_playbook(str(write(tmp_path, PLAYBOOK))).playbook
    plan = build_plan(pb, alert(), {"endpoint_name": "fraud-model"})
    assert plan.step("snapshot").status == "run"
    assert plan.step("notify-late").iterations[0].params["text"] == "done sim-user snap fraud-model"


def test_secrets_are_redacted_everywhere(tmp_path: Path) -> None:
    pb = load_playbook(str(write(tmp_path, PLAYBOOK))).playbook
    plan = build_plan(pb, alert(), {"webhook_token": "tok-123"})
    text = render_text(plan)
    dumped = json.dumps(plan.as_dict())
    assert "tok-123" not in text
    assert "tok-123" not in dumped
    assert "token=***" in text
    assert plan.as_dict()["inputs"]["webhook_token"] == "***"


SECRET = 's3cr"et\\é-42'


@pytest.mark.parametrize(
    "quoted",
    [
        SECRET,
        json.dumps(SECRET),
        json.dumps(SECRET, ensure_ascii=False),
        repr(SECRET),
        repr(SECRET + "'"),
        ascii(SECRET),
        repr(SECRET.encode()),
        json.dumps(repr(SECRET)),
        repr(json.dumps(SECRET)),
        urllib.parse.quote(SECRET, safe=""),
    ],
    ids=[
        "raw",
        "json",
        "json-utf8",
        "repr",
        "repr-both-quotes",
        "ascii",
        "bytes",
        "json-of-repr",
        "repr-of-json",
        "percent",
    ],
)
def test_redact_finds_the_secret_however_it_was_quoted(quoted: str) -> None:
    message = {"error": [f"lookup of {quoted} failed"]}
    shown = redact(message, [SECRET])
    assert "42" not in json.dumps(shown), shown
    assert shown["error"][0].startswith("lookup of ") and "***" in shown["error"][0]


def test_alert_text_stays_data_in_the_plan(tmp_path: Path) -> None:
    book = PLAYBOOK.replace('"tag ${{ item.arn }}', '"tag ${{ alert.title }}')
    pb = load_playbook(str(write(tmp_path, book))).playbook
    plan = build_plan(pb, alert())
    assert (
        plan.step("tag")
        .iterations[0]
        .params["text"]
        .startswith("tag exfil ${{ inputs.access_key_id }}")
    )


@pytest.mark.parametrize(
    ("params", "alert_over", "message"),
    [
        ({}, {"actor": {}}, "input 'access_key_id' is required: give --param access_key_id=..."),
        ({"access_key_id": "nope"}, {}, "input 'access_key_id': 'nope' does not match"),
        ({"limit": "many"}, {}, "input 'limit': expected integer, got 'many'"),
        ({"limt": "3"}, {}, "unknown input 'limt'"),
        ({"webhook_token": ""}, {"actor": {"access_key_id": "bad"}}, "'bad' does not match"),
    ],
)
def test_input_errors_name_the_input(
    tmp_path: Path, params: dict[str, str], alert_over: dict[str, Any], message: str
) -> None:
    pb = load_playbook(str(write(tmp_path, PLAYBOOK))).playbook
    with pytest.raises(PlanError) as info:
        build_plan(pb, alert(**alert_over), params)
    assert message in str(info.value)


def test_secret_input_values_are_not_echoed_in_errors(tmp_path: Path) -> None:
    book = PLAYBOOK.replace(
        'webhook_token: {type: string, default: "", secret: true}',
        "webhook_token: {type: string, default: '', secret: true, pattern: '^tok-'}",
    )
    pb = load_playbook(str(write(tmp_path, book))).playbook
    with pytest.raises(PlanError) as info:
        build_plan(pb, alert(), {"webhook_token": "hunter2"})
    assert "hunter2" not in str(info.value)
    assert "***" in str(info.value)


def test_a_failing_step_blocks_its_dependents(tmp_path: Path) -> None:
    book = textwrap.dedent(
        """\
        apiVersion: irbook/v1
        kind: Playbook
        metadata: {id: fails, title: Fails}
        inputs:
          fp: {type: boolean, default: false}
        steps:
          - id: guard
            action: core.fail
            if: "${{ inputs.fp }}"
            with: {message: "false positive: stop"}
          - id: after
            action: core.note
            needs: [guard]
            with: {text: "contained"}
          - id: soft
            action: core.fail
            on_failure: continue
            with: {message: "best effort"}
          - id: after-soft
            action: core.note
            needs: [soft]
            with: {text: "still runs"}
        """
    )
    pb = load_playbook(str(write(tmp_path, book))).playbook
    quiet = build_plan(pb, None, {})
    assert quiet.step("guard").status == "skip"
    assert quiet.step("after").status == "run"
    assert quiet.step("soft").status == "fail"
    assert quiet.step("after-soft").status == "run"
    # the failed step says on_failure: continue: the run goes on, and says what failed
    assert quiet.outcome == "succeeds with 1 failed step"

    loud = build_plan(pb, None, {"fp": "yes"})
    assert loud.step("guard").status == "fail"
    assert loud.step("guard").reason == "false positive: stop"
    assert loud.step("after").status == "blocked"
    assert loud.step("after").reason == "upstream step 'guard' failed"
    assert loud.outcome == "fails"


def test_bad_rendered_parameters_fail_the_step_not_the_planner(tmp_path: Path) -> None:
    book = textwrap.dedent(
        """\
        apiVersion: irbook/v1
        kind: Playbook
        metadata: {id: bad-param, title: Bad param}
        steps:
          - id: wait
            action: core.sleep
            with: {duration: "${{ alert.title }}"}
          - id: each
            action: core.note
            for_each: "${{ alert.title }}"
            with: {text: x}
        """
    )
    pb = load_playbook(str(write(tmp_path, book))).playbook
    plan = build_plan(pb, alert(title="soon"), {})
    assert plan.step("wait").status == "fail"
    assert "core.sleep: parameter 'duration'" in plan.step("wait").reason
    assert plan.step("each").reason == "for_each yielded string, not a list"


def test_execution_order_prefers_file_order_among_ready_steps(tmp_path: Path) -> None:
    pb = load_playbook(str(write(tmp_path, PLAYBOOK))).playbook
    assert [s.id for s in execution_order(pb)] == ["revoke", "snapshot", "tag", "notify-late"]


def test_plan_json_is_stable_and_complete(tmp_path: Path) -> None:
    pb = load_playbook(str(write(tmp_path, PLAYBOOK))).playbook
    first = build_plan(pb, alert(), {}).as_dict()
    second = build_plan(pb, alert(), {}).as_dict()
    assert first == second
    assert first["kind"] == "Plan"
    assert first["summary"] == {
        "steps": 4,
        "run": 2,
        "skipped": 2,
        "failed": 0,
        "calls": 2,
        "approvals": 1,
    }
    revoke = next(s for s in first["steps"] if s["id"] == "revoke")
    assert revoke["iterations"][0]["calls"][1] == {
        "call": "iam:UpdateAccessKey",
        "params": {
            "AccessKeyId": KEY,
            "UserName": "<from iam:GetAccessKeyLastUsed>",
            "Status": "Inactive",
        },
    }
    assert revoke["permissions"] == ["iam:UpdateAccessKey", "iam:GetAccessKeyLastUsed"]
