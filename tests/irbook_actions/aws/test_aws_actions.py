"""Every AWS action against moto: the live run makes the planned calls and changes state,
a rerun says it is already done, the undo restores state, and a missing resource fails
with one line that names it. The dry run (planner + simulate) makes no call at all."""

from __future__ import annotations

import json
from typing import Any

import pytest

from irbook.registry import REGISTRY, ActionContext, ActionFailed, RunInfo
from tests.support.aws import RecordingClients, assert_honest, aws_keys, model, run, spec, undo
from tests.support.aws_scenarios import EXAMPLES, READS, SCENARIOS, STUBBED

LIVE = sorted(SCENARIOS)


def test_every_aws_action_has_a_scenario_or_a_stubbed_test() -> None:
    assert set(aws_keys()) == set(SCENARIOS) | set(STUBBED) | set(READS)
    assert all(spec(key).effect == "read" for key in READS)
    assert set(EXAMPLES) == set(aws_keys())


@pytest.mark.parametrize("key", LIVE)
def test_the_live_run_makes_the_planned_calls_and_changes_state(
    key: str, clients: RecordingClients, ctx: ActionContext
) -> None:
    scenario = SCENARIOS[key]
    params = scenario.setup(clients, ctx)
    before = scenario.state(clients, params)
    result, calls = run(ctx, key, **params)
    assert_honest(key, params, calls)
    assert scenario.state(clients, params) != before, f"{key} changed nothing"
    assert result.already_done is False


@pytest.mark.parametrize("key", LIVE)
def test_a_rerun_is_already_done_and_the_undo_restores_state(
    key: str, clients: RecordingClients, ctx: ActionContext
) -> None:
    scenario = SCENARIOS[key]
    params = scenario.setup(clients, ctx)
    before = scenario.state(clients, params)
    first, _ = run(ctx, key, **params)
    changed = scenario.state(clients, params)
    if scenario.rerun_done:
        again, calls = run(ctx, key, **params)
        assert again.already_done is True, f"{key}: a rerun did the work again"
        assert scenario.state(clients, params) == changed
        mutating = [
            c.name for c in calls if not c.operation.startswith(("Get", "List", "Describe", "Head"))
        ]
        assert mutating == [], f"{key}: a rerun still called {mutating}"
    if spec(key).compensation is None:
        assert spec(key).irreversible or spec(key).effect != "mutate"
        return
    undo(ctx, key, params, first)
    assert scenario.state(clients, params) == before, f"{key}: the undo did not restore state"


@pytest.mark.parametrize("key", LIVE)
def test_a_missing_resource_fails_naming_it(key: str, ctx: ActionContext) -> None:
    scenario = SCENARIOS[key]
    with pytest.raises(ActionFailed) as failed:
        run(ctx, key, **scenario.missing)
    message = str(failed.value)
    assert scenario.names in message
    assert "\n" not in message and "Traceback" not in message


@pytest.mark.parametrize("key", sorted(READS))
def test_a_read_makes_its_planned_calls_and_answers_from_aws(
    key: str, clients: RecordingClients, ctx: ActionContext
) -> None:
    read = READS[key]
    params = read.setup(clients, ctx)
    result, calls = run(ctx, key, **params)
    assert_honest(key, params, calls)
    assert all(c.operation.startswith(("Get", "List", "Describe", "Head")) for c in calls)
    answer = result.model_dump(mode="json")
    assert {k: answer[k] for k in read.answer} == read.answer
    simulated = spec(key).simulated(model(key, params), ctx.run).model_dump(mode="json")
    assert simulated != answer, f"{key}: the dry run claims to know what only AWS can say"


@pytest.mark.parametrize("key", sorted(READS))
def test_a_read_of_a_missing_resource_fails_naming_it(key: str, ctx: ActionContext) -> None:
    read = READS[key]
    with pytest.raises(ActionFailed) as failed:
        run(ctx, key, **read.missing)
    message = str(failed.value)
    assert read.names in message
    assert "\n" not in message and "Traceback" not in message


DRY = [(key, i) for key in sorted(EXAMPLES) for i in range(len(EXAMPLES[key]))]


@pytest.mark.parametrize(("key", "example"), DRY)
def test_the_dry_run_makes_no_call(key: str, example: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Planner and simulation never reach a client, and what they produce is what the
    plan output and a dry-run rollback need: JSON, a valid result, valid undo params."""
    from botocore.client import BaseClient

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a dry run made an AWS call")

    monkeypatch.setattr(BaseClient, "_make_api_call", refuse)
    action = spec(key)
    params = model(key, EXAMPLES[key][example])
    run_info = RunInfo(run_id="plan-7", playbook_id="pb", step_id="s", incident_key="INC-9")
    calls = action.plan(params)
    for call in calls:
        json.dumps(call.as_dict())
        assert call.service in {
            "iam",
            "s3",
            "sagemaker",
            "lambda",
            "ec2",
            "apigateway",
            "cognito-idp",
            "wafv2",
            "secretsmanager",
            "ssm",
            "sns",
            "cloudtrail",
        }
    result = action.simulated(params, run_info)
    assert isinstance(result, action.result)
    json.dumps(result.model_dump(mode="json"))
    assert action.plan(params) == calls, "the plan must not depend on anything but the params"
    if action.compensation is not None:
        undo_with = action.compensation_params(params, result)
        REGISTRY.get(action.compensation).params.model_validate(undo_with)


@pytest.mark.parametrize("key", sorted(aws_keys()))
def test_the_declaration_is_complete(key: str) -> None:
    action = spec(key)
    assert action.summary, f"{key} needs a docstring: it is the action's summary"
    assert "already_done" in action.result.model_fields
    if action.effect == "mutate":
        assert action.idempotent or key == "aws.iam.delete_access_key"
    assert not REGISTRY.check()
