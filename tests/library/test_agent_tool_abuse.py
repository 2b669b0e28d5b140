"""agent-tool-abuse: a Splunk correlation search finds an agent's tool driven by a prompt
injection.

The raw webhook post starts this playbook and no other; a live run against the seeded
fake cloud stops the tool's Lambda and revokes its role's sessions without waiting, and
replaces the secret the tool holds only once someone approves; the drill passes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.live_cloud import DRILLS, Cloud, LiveRun, alert_file, irbook, match

FIXTURE = DRILLS / "alerts" / "splunk-agent-tool-abuse.json"
DRILL = DRILLS / "agent-tool-abuse-iam-outage.yaml"
SEEDED_SECRET = "sk-sandbox-not-real"  # what `irbook sandbox` stores


def test_the_raw_splunk_post_starts_this_playbook_and_no_other() -> None:
    verdict = match(FIXTURE, "splunk")

    assert verdict["exit"] == 0
    assert verdict["matches"] == [{"playbook": "agent-tool-abuse", "trigger": 0}]
    assert verdict["alert"]["actor"]["ip"] == "198.51.100.77"


def test_a_lower_urgency_row_starts_nothing(tmp_path: Path) -> None:
    payload = json.loads(FIXTURE.read_text())
    payload["result"].update(severity="medium", urgency="medium")
    path = tmp_path / "post.json"
    path.write_text(json.dumps(payload))

    verdict = match(path, "splunk")

    assert verdict["exit"] == 1 and verdict["matches"] == []


def tool_abuse(fake: Cloud, tmp_path: Path) -> Path:
    """The fixture's row about the seeded function, its role and the seeded secret."""
    payload: dict[str, Any] = json.loads(FIXTURE.read_text())
    payload["result"].update(
        function_name=fake.seeded["function_name"],
        role_name=fake.seeded["role_name"],
        secret_id=fake.seeded["secret_id"],
    )
    return alert_file(payload, "splunk", tmp_path)


def test_live_run_stops_the_tool_at_once_and_rotates_its_secret_only_after_approval(
    cloud: Cloud,
    tmp_path: Path,
) -> None:
    seeded = cloud.seeded
    alert = tool_abuse(cloud, tmp_path)
    functions, iam, secrets = cloud.boto("lambda"), cloud.boto("iam"), cloud.boto("secretsmanager")

    def secret() -> str:
        return str(secrets.get_secret_value(SecretId=seeded["secret_id"])["SecretString"])

    with LiveRun("agent-tool-abuse", alert, cloud) as run:
        run_id = run.awaiting("rotate-secret")
        # contained without a human: the tool takes no invocation, old sessions are denied
        concurrency = functions.get_function_concurrency(FunctionName=seeded["function_name"])
        assert concurrency["ReservedConcurrentExecutions"] == 0
        policies = iam.list_role_policies(RoleName=seeded["role_name"])["PolicyNames"]
        assert "AWSRevokeOlderSessions" in policies
        assert secret() == SEEDED_SECRET  # not yet: rotation waits for a decision

        approve = irbook("approve", run_id, "--by", "dana", env=cloud.env)
        assert approve.returncode == 0, approve.stderr
        code, out = run.finish()

    assert code == 0, out
    states = run.states()
    assert states.pop("escalate") == "skipped"  # contained: nobody is paged
    assert set(states.values()) == {"succeeded"}, states
    assert secret() != SEEDED_SECRET
    assert cloud.pages() == []


def test_the_drill_passes() -> None:
    proc = irbook("drill", str(DRILL))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASSED" in proc.stdout
