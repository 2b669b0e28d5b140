"""bedrock-llmjacking: stolen credentials invoking Bedrock models.

Its raw GuardDuty AI Protection finding starts this playbook and no other; the principal
type picks the containment (a user: deny + Bedrock API keys; a role: deny + session
revocation), checked in the plan for both; a live run of the role branch against the
sandbox's fake AWS leaves the deny and the revocation on the role (read back with
boto3); and the drill passes. moto implements no service-specific credentials, so the
user branch's key deactivation is rehearsed by the drill and tested with botocore's
Stubber in tests/irbook_actions/aws, not run live here."""

# The session fixtures are imported from _live, so arguments of the same names redefine them.
# ruff: noqa: F811
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.live import (
    ALERTS,
    DRILLS,
    boto,
    drill,
    irbook,
    match,
    normalized,
    run_live,
    sandbox,  # noqa: F401
    sandbox_server,  # noqa: F401
    step_states,
    user_env,
)

FIXTURE = ALERTS / "guardduty-bedrock-llmjacking.json"
ROLE = "genai-chatbot-task"


def _as_role(folder: Path) -> Path:
    """The same finding for an assumed role's temporary key."""
    payload = json.loads(FIXTURE.read_text())
    payload["detail"]["resource"]["accessKeyDetails"] = {
        "accessKeyId": "ASIAI44QH8DHBEXAMPLE",
        "principalId": "AROAEXAMPLEROLEID67890:chatbot-session",
        "userType": "AssumedRole",
        "userName": ROLE,
    }
    path = folder / "role.json"
    path.write_text(json.dumps(payload))
    return path


def test_the_raw_finding_starts_this_playbook_and_no_other(tmp_path: Path) -> None:
    assert match(FIXTURE, "guardduty")["matches"] == [
        {"playbook": "bedrock-llmjacking", "trigger": 0}
    ]
    assert match(_as_role(tmp_path), "guardduty")["matches"] == [
        {"playbook": "bedrock-llmjacking", "trigger": 0}
    ]


def _plan(alert: Path) -> dict[str, str]:
    done = irbook("plan", "bedrock-llmjacking", "--alert", str(alert), "--format", "json")
    assert done.returncode in (0, 3), done.stdout + done.stderr
    return {s["id"]: s["status"] for s in json.loads(done.stdout)["steps"]}


def test_the_principal_type_picks_the_containment(tmp_path: Path) -> None:
    user = _plan(normalized(FIXTURE, "guardduty", tmp_path))
    assert (user["deny-user"], user["bedrock-keys"]) == ("run", "run")
    assert (user["deny-role"], user["revoke-sessions"]) == ("skip", "skip")
    assert user["page"] == "run"  # GuardDuty rated it 8
    role = _plan(normalized(_as_role(tmp_path), "guardduty", tmp_path))
    assert (role["deny-role"], role["revoke-sessions"]) == ("run", "run")
    assert (role["deny-user"], role["bedrock-keys"]) == ("skip", "skip")


def test_a_live_run_cuts_the_role_off_from_models_and_revokes_its_sessions(
    tmp_path: Path, prefect_api: str, sandbox: Any
) -> None:
    iam = boto("iam", sandbox)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(trust))
    payload = json.loads(_as_role(tmp_path).read_text())
    payload["detail"]["severity"] = 5.5  # no page: the sandbox has no PagerDuty
    raw = tmp_path / "medium.json"
    raw.write_text(json.dumps(payload))
    alert = normalized(raw, "guardduty", tmp_path)

    code, out, run_id = run_live(
        "bedrock-llmjacking", alert, user_env(prefect_api, sandbox), {"deny-role": "approve"}
    )

    assert code == 0, out
    deny = iam.get_role_policy(RoleName=ROLE, PolicyName="IrbookDenyBedrockInvocation")
    [statement] = deny["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny" and "bedrock:InvokeModel" in statement["Action"]
    revoke = iam.get_role_policy(RoleName=ROLE, PolicyName="AWSRevokeOlderSessions")
    assert "aws:TokenIssueTime" in json.dumps(revoke["PolicyDocument"])
    states = step_states(run_id)
    assert states["deny-user"] == "skipped" and states["bedrock-keys"] == "skipped", states
    assert states["page"] == "skipped" and states["not-contained"] == "skipped", states


def test_the_drill_passes(prefect_api: str) -> None:
    done = drill(DRILLS / "bedrock-llmjacking-sunday.yaml", prefect_api)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "DRILL bedrock-llmjacking-sunday: PASSED" in done.stdout
