"""leaked-secret-in-ml-code: a secret scanner's Security Hub finding of a credential in a
log, a notebook or code.

Prowler's raw finding of a secret in a Lambda's log starts this playbook and no other; a
live run against the seeded fake cloud rotates the secret the log group's tag names only
once someone approves. A CI scanner's finding that names a long-term AWS key gets the key
deactivated at once, and the tagged parameter rotated after approval; a rejected rotation
changes nothing. The drill passes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.live_cloud import DRILLS, Cloud, LiveRun, alert_file, irbook, match

PROWLER = DRILLS / "alerts" / "securityhub-prowler-secret-in-logs.json"
CI_SCAN = Path(__file__).parent / "fixtures" / "securityhub-ci-secret-scan-aws-key.json"
PLAYBOOK = "leaked-secret-in-ml-code"


def test_prowlers_raw_finding_starts_this_playbook_and_no_other() -> None:
    verdict = match(PROWLER, "securityhub")
    assert verdict["exit"] == 0
    assert verdict["matches"] == [{"playbook": PLAYBOOK, "trigger": 1}]
    [where] = verdict["alert"]["resources"]
    assert where["tags"]["irbook:secret-id"] == "ml/llm-provider-api-key"


def test_a_scanner_finding_typed_as_a_leaked_password_starts_it_too() -> None:
    verdict = match(CI_SCAN, "securityhub")
    assert verdict["matches"] == [{"playbook": PLAYBOOK, "trigger": 0}]
    assert verdict["alert"]["actor"]["access_key_id"] == "AKIAIOSFODNN7EXAMPLE"


def test_a_passing_prowler_check_starts_nothing(tmp_path: Path) -> None:
    payload = json.loads(PROWLER.read_text())
    [finding] = payload["detail"]["findings"]
    finding["Compliance"]["Status"] = "PASSED"
    finding["Description"] = "No secrets found in log group /aws/lambda/rag-indexer."
    path = tmp_path / "passed.json"
    path.write_text(json.dumps(payload))
    verdict = match(path, "securityhub")
    assert verdict["exit"] == 1 and verdict["matches"] == []


def _secret(cloud: Cloud) -> str:
    value = cloud.boto("secretsmanager").get_secret_value(SecretId="ml/llm-provider-api-key")
    return str(value["SecretString"])


def _parameter(cloud: Cloud) -> str:
    ssm = cloud.boto("ssm")
    answer = ssm.get_parameter(Name="/ml/inference/api-token", WithDecryption=True)
    return str(answer["Parameter"]["Value"])


def _key_status(cloud: Cloud) -> str:
    keys = cloud.boto("iam").list_access_keys(UserName="ml-inference-svc")["AccessKeyMetadata"]
    [key] = [k for k in keys if k["AccessKeyId"] == cloud.seeded["access_key_id"]]
    return str(key["Status"])


def test_live_run_rotates_the_tagged_secret_only_after_approval(
    cloud: Cloud, tmp_path: Path
) -> None:
    leaked = _secret(cloud)
    alert = alert_file(json.loads(PROWLER.read_text()), "securityhub", tmp_path)

    with LiveRun(PLAYBOOK, alert, cloud) as run:
        run.awaiting("rotate-secret")
        assert _secret(cloud) == leaked  # nothing rotated before the decision
        run.decide("rotate-secret")
        code, out = run.finish()
    assert code == 0, out
    assert run.states() == {
        "ticket": "succeeded",
        "deactivate-key": "skipped",  # a log finding names no AWS key
        "rotate-secret": "succeeded",
        "rotate-parameter": "skipped",  # the log group's tags name no parameter
        "report": "succeeded",
        "page-if-not-contained": "skipped",
    }
    assert _secret(cloud) != leaked
    assert _key_status(cloud) == "Active"
    [ticket] = cloud.jira.issues.values()
    assert "/aws/lambda/rag-indexer" in ticket.fields["summary"]
    assert "Secret Keyword on line 3" in json.dumps(ticket.fields["description"])
    assert "ml/llm-provider-api-key" in json.dumps(ticket.comments)


def _ci_finding(cloud: Cloud) -> dict[str, Any]:
    """The CI scanner's finding, naming the key the sandbox created for the user."""
    text = CI_SCAN.read_text().replace("AKIAIOSFODNN7EXAMPLE", cloud.seeded["access_key_id"])
    payload: dict[str, Any] = json.loads(text)
    return payload


def test_live_run_deactivates_an_aws_key_at_once_and_a_rejected_rotation_changes_nothing(
    cloud: Cloud, tmp_path: Path
) -> None:
    leaked = _parameter(cloud)
    alert = alert_file(_ci_finding(cloud), "securityhub", tmp_path)

    with LiveRun(PLAYBOOK, alert, cloud) as run:
        run.awaiting("rotate-parameter")
        assert _key_status(cloud) == "Inactive"  # before anyone was asked
        run.decide("rotate-parameter", reject=True)
        code, out = run.finish()
    assert code != 0, out  # a rejected containment is not a success
    states = run.states()
    assert states["deactivate-key"] == "succeeded"
    assert states["rotate-parameter"] == "rejected"
    assert states["rotate-secret"] == "skipped"
    assert states["page-if-not-contained"] == "succeeded"
    assert _key_status(cloud) == "Inactive"
    assert _parameter(cloud) == leaked
    # on-call is paged that the leaked value still works
    [page] = [r for r in cloud.slack.requests if r.path == "/v2/enqueue"]
    assert page.json["payload"]["severity"] == "critical"
    assert "NOT contained" in page.json["payload"]["summary"]


def test_live_run_rotates_the_tagged_parameter_once_approved(cloud: Cloud, tmp_path: Path) -> None:
    leaked = _parameter(cloud)
    alert = alert_file(_ci_finding(cloud), "securityhub", tmp_path)

    with LiveRun(PLAYBOOK, alert, cloud) as run:
        run.decide("rotate-parameter")
        code, out = run.finish()
    assert code == 0, out
    assert run.states()["rotate-parameter"] == "succeeded"
    assert _parameter(cloud) != leaked
    assert _key_status(cloud) == "Inactive"
    # the undo of the key's deactivation puts it back; the rotation stays (irreversible)
    done = irbook("rollback", run.run_id or "", "--yes", env=cloud.env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _key_status(cloud) == "Active"
    assert _parameter(cloud) != leaked


def test_the_drill_passes_from_prowlers_raw_finding() -> None:
    done = irbook("drill", str(DRILLS / "leaked-secret-in-rag-logs.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASSED" in done.stdout
    assert "approved by rag-app-owner at 14m" in done.stdout
