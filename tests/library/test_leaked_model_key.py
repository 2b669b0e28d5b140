"""leaked-model-key: a long-term IAM user key (AKIA...) used from a Tor exit node.

Its raw GuardDuty finding starts this playbook and no other; run live against moto's
server it deactivates exactly that key (read back with boto3); the shipped drill passes;
and the normalized alert the README plans with is what the receiver makes of that raw
finding, so the two cannot drift apart."""

# The session fixtures are imported from _live, so arguments of the same names redefine them.
# ruff: noqa: F811
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.live import (
    ALERTS,
    DRILLS,
    ROOT,
    boto,
    drill,
    match,
    normalized,
    run_live,
    sandbox,  # noqa: F401
    sandbox_server,  # noqa: F401
    step_states,
    user_env,
)

FIXTURE = ALERTS / "guardduty-leaked-model-key.json"
README_ALERT = ALERTS / "leaked-model-key.alert.json"


def test_the_raw_finding_starts_this_playbook_and_no_other() -> None:
    result = match(FIXTURE, "guardduty")
    assert result["matches"] == [{"playbook": "leaked-model-key", "trigger": 0}]
    assert result["alert"]["actor"]["access_key_id"].startswith("AKIA")


def test_temporary_keys_and_other_finding_types_do_not_start_it(tmp_path: Path) -> None:
    from tests.support.live import irbook

    payload = json.loads(FIXTURE.read_text())
    payload["detail"]["resource"]["accessKeyDetails"].update(
        accessKeyId="ASIAIOSFODNN7EXAMPLE", userType="AssumedRole"
    )
    path = tmp_path / "temporary.json"
    path.write_text(json.dumps(payload))
    done = irbook("match", str(path), "--from", "guardduty", "--format", "json")
    out = json.loads(done.stdout)
    assert "leaked-model-key" not in [m["playbook"] for m in out["matches"]]
    why = {m["playbook"]: m["why"] for m in out["near_misses"]}
    assert why["leaked-model-key"].startswith('actor.access_key_id: expected "AKIA*"')


def test_the_readme_alert_is_the_normalized_raw_finding() -> None:
    assert json.loads(README_ALERT.read_text()) == match(FIXTURE, "guardduty")["alert"]
    main_job = (ROOT / "README.md").read_text().split("```sh\n", 1)[1].split("```", 1)[0]
    assert "--alert runbooks/drills/alerts/leaked-model-key.alert.json" in main_job


def test_a_live_run_deactivates_the_users_key(
    tmp_path: Path, prefect_api: str, sandbox: Any
) -> None:
    iam = boto("iam", sandbox)
    iam.create_user(UserName="ml-inference-svc")
    leaked = iam.create_access_key(UserName="ml-inference-svc")["AccessKey"]["AccessKeyId"]
    spare = iam.create_access_key(UserName="ml-inference-svc")["AccessKey"]["AccessKeyId"]
    alert = normalized(FIXTURE, "guardduty", tmp_path, access_key_id=leaked)

    code, out, run_id = run_live(
        "leaked-model-key", alert, user_env(prefect_api, sandbox), {"revoke": "approve"}
    )

    keys = {
        k["AccessKeyId"]: k["Status"]
        for k in iam.list_access_keys(UserName="ml-inference-svc")["AccessKeyMetadata"]
    }
    assert keys == {leaked: "Inactive", spare: "Active"}, out
    states = step_states(run_id)
    assert set(states.values()) <= {"succeeded", "skipped"}, states
    assert states["revoke"] == "succeeded" and states["not-contained"] == "skipped", states
    assert code == 0, out
    # the ticket and the channel heard of it, at the sandbox's Jira and Slack
    [issue] = sandbox.app.issues.values()
    assert leaked in json.dumps(issue)
    assert any(leaked in json.dumps(m) for m in sandbox.app.messages)


def test_a_rejected_deactivation_changes_nothing(
    tmp_path: Path, prefect_api: str, sandbox: Any
) -> None:
    iam = boto("iam", sandbox)
    iam.create_user(UserName="ml-inference-svc")
    leaked = iam.create_access_key(UserName="ml-inference-svc")["AccessKey"]["AccessKeyId"]
    alert = normalized(FIXTURE, "guardduty", tmp_path, access_key_id=leaked)

    code, out, run_id = run_live(
        "leaked-model-key", alert, user_env(prefect_api, sandbox), {"revoke": "reject"}
    )

    [key] = iam.list_access_keys(UserName="ml-inference-svc")["AccessKeyMetadata"]
    assert key["Status"] == "Active"
    states = step_states(run_id)
    assert states["revoke"] == "rejected" and states["not-contained"] == "succeeded", states
    assert code == 2, out  # an approval was rejected
    # the channel is told at once that the key still works, and only that
    posts = [m for m in sandbox.app.messages if m["method"] == "chat.postMessage"]
    [message] = [json.dumps(m) for m in posts]
    assert "NOT CONTAINED" in message and leaked in message


def test_the_drill_passes(prefect_api: str) -> None:
    done = drill(DRILLS / "leaked-key-friday-night.yaml", prefect_api)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "DRILL leaked-key-friday-night: PASSED" in done.stdout
