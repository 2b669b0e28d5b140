"""inference-api-scraping: a Datadog signal of one API key scraping the inference API.

The raw signal starts this playbook and no other; a live run against the seeded fake
cloud blocks the address and disables the key without waiting, and throttles the stage
only once someone approves; the drill passes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.live_cloud import DRILLS, Cloud, LiveRun, alert_file, irbook, match

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


def scraping(fake: Cloud, tmp_path: Path) -> Path:
    """The fixture's signal about the seeded API, stage and key, as a run's alert."""
    seeded = fake.seeded
    payload = json.loads(FIXTURE.read_text())
    payload["security_signal_attributes"].update(
        apiId=seeded["rest_api_id"], stage=seeded["stage_name"], apiKeyId=seeded["api_key_id"]
    )
    return alert_file(payload, "datadog", tmp_path)


def ip_set(fake: Cloud) -> list[str]:
    waf = fake.boto("wafv2")
    [summary] = waf.list_ip_sets(Scope="REGIONAL")["IPSets"]
    got = waf.get_ip_set(Name=summary["Name"], Scope="REGIONAL", Id=summary["Id"])
    return list(got["IPSet"]["Addresses"])


def key_enabled(fake: Cloud) -> bool:
    return bool(fake.boto("apigateway").get_api_key(apiKey=fake.seeded["api_key_id"])["enabled"])


def stage_limits(fake: Cloud) -> dict[str, Any]:
    stage = fake.boto("apigateway").get_stage(
        restApiId=fake.seeded["rest_api_id"], stageName=fake.seeded["stage_name"]
    )
    return dict(stage.get("methodSettings", {}).get("*/*", {}))


def test_live_run_blocks_at_once_and_throttles_the_stage_only_after_approval(
    cloud: Cloud,
    tmp_path: Path,
) -> None:
    alert = scraping(cloud, tmp_path)

    with LiveRun("inference-api-scraping", alert, cloud) as run:
        run_id = run.awaiting("throttle-stage")
        # contained without a human: the address is blocked and the key refused ...
        assert ip_set(cloud) == ["203.0.113.45/32"]
        assert key_enabled(cloud) is False
        # ... while the stage every customer uses is untouched until someone decides
        assert stage_limits(cloud).get("throttlingRateLimit") is None

        approve = irbook("approve", run_id, "--by", "alice", env=cloud.env)
        assert approve.returncode == 0, approve.stderr
        code, out = run.finish()

    assert code == 0, out
    assert run.states() == {
        **dict.fromkeys(
            ("ticket", "block-ips", "disable-key", "throttle-stage", "notify"), "succeeded"
        ),
        "escalate": "skipped",  # contained: nobody is paged
    }
    limits = stage_limits(cloud)
    assert (limits["throttlingRateLimit"], limits["throttlingBurstLimit"]) == (0.0, 0)
    [issue] = cloud.jira.issues.values()
    assert cloud.seeded["api_key_id"] in issue.fields["summary"]
    assert cloud.pages() == []


def test_live_run_with_the_stage_throttle_rejected_pages_and_fails(
    cloud: Cloud,
    tmp_path: Path,
) -> None:
    alert = scraping(cloud, tmp_path)

    with LiveRun("inference-api-scraping", alert, cloud) as run:
        run_id = run.awaiting("throttle-stage")
        reject = irbook("approve", run_id, "--reject", "--by", "alice", env=cloud.env)
        assert reject.returncode == 0, reject.stderr
        code, out = run.finish()

    assert code != 0, out  # the run says containment did not finish
    states = run.states()
    assert (states["throttle-stage"], states["escalate"]) == ("rejected", "succeeded")
    assert stage_limits(cloud).get("throttlingRateLimit") is None
    assert key_enabled(cloud) is False  # what was done stays done
    [page] = cloud.pages()
    assert page["event_action"] == "trigger"
    assert "throttle rejected" in page["payload"]["summary"]


def test_the_drill_passes() -> None:
    proc = irbook("drill", str(DRILL))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASSED" in proc.stdout
