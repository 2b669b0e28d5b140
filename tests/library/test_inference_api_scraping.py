"""inference-api-scraping: a Datadog signal of one API key scraping the inference API.

The raw signal starts this playbook and no other; a live run against the seeded fake
cloud blocks the address and disables the key without waiting, and throttles the stage
only once someone approves; the drill passes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.library.live_support import (
    DRILLS,
    Cloud,
    LiveRun,
    alert_file,
    cloud,  # noqa: F401 - fixture
    irbook,
    match,
    prefect_api,  # noqa: F401 - fixture
)

FIXTURE = DRILLS / "alerts" / "datadog-inference-api-scraping.json"
DRILL = DRILLS / "inference-api-scraping-night-shift.yaml"


def test_the_raw_datadog_signal_starts_this_playbook_and_no_other() -> None:
    verdict = match(FIXTURE, "datadog")

    assert verdict["exit"] == 0
    assert verdict["matches"] == [{"playbook": "inference-api-scraping", "trigger": 0}]
    assert verdict["alert"]["actor"]["ip"] == "203.0.113.45"
    assert verdict["alert"]["severity"] == 7


def test_a_recovered_signal_starts_nothing() -> None:
    payload = json.loads(FIXTURE.read_text())
    payload["alert_transition"] = "Recovered"
    verdict = match_payload(payload)
    assert verdict["exit"] == 1 and verdict["matches"] == []


def match_payload(payload: dict[str, object]) -> dict[str, object]:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "signal.json"
        path.write_text(json.dumps(payload))
        return match(path, "datadog")


def test_live_run_blocks_at_once_and_throttles_the_stage_only_after_approval(
    cloud: Cloud,  # noqa: F811
    tmp_path: Path,
) -> None:
    seeded = cloud.seeded
    payload = json.loads(FIXTURE.read_text())
    attributes = payload["security_signal_attributes"]
    attributes.update(
        apiId=seeded["rest_api_id"], stage=seeded["stage_name"], apiKeyId=seeded["api_key_id"]
    )
    alert = alert_file(payload, "datadog", tmp_path)
    gateway, waf = cloud.boto("apigateway"), cloud.boto("wafv2")

    def ip_set() -> list[str]:
        [summary] = waf.list_ip_sets(Scope="REGIONAL")["IPSets"]
        got = waf.get_ip_set(Name=summary["Name"], Scope="REGIONAL", Id=summary["Id"])
        return list(got["IPSet"]["Addresses"])

    def stage_limits() -> dict[str, object]:
        stage = gateway.get_stage(restApiId=seeded["rest_api_id"], stageName="prod")
        return dict(stage.get("methodSettings", {}).get("*/*", {}))

    with LiveRun("inference-api-scraping", alert, cloud) as run:
        run_id = run.awaiting("throttle-stage")
        # contained without a human: the address is blocked and the key refused ...
        assert ip_set() == ["203.0.113.45/32"]
        assert gateway.get_api_key(apiKey=seeded["api_key_id"])["enabled"] is False
        # ... while the stage every customer uses is untouched until someone decides
        assert stage_limits().get("throttlingRateLimit") is None

        approve = irbook("approve", run_id, "--by", "alice", env=cloud.env)
        assert approve.returncode == 0, approve.stderr
        code, out = run.finish()

    assert code == 0, out
    assert run.states() == dict.fromkeys(
        ("ticket", "block-ips", "disable-key", "throttle-stage", "notify"), "succeeded"
    )
    limits = stage_limits()
    assert (limits["throttlingRateLimit"], limits["throttlingBurstLimit"]) == (0.0, 0)
    [issue] = cloud.jira.issues.values()
    assert seeded["api_key_id"] in issue.fields["summary"]


def test_the_drill_passes() -> None:
    proc = irbook("drill", str(DRILL))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASSED" in proc.stdout
