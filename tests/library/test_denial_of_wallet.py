"""denial-of-wallet: Alertmanager's webhook for a Prometheus alert on the LLM gateway's
token rate.

The raw notification starts this playbook and no other (its resolution starts nothing); a
live run against the seeded fake cloud pages at once, and throttles the API Gateway stage
and stops the Lambda function its labels name only once each is approved; a rejected
throttle changes nothing and tells the channel; rollback puts both back. The drill
passes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.support.live_cloud import DRILLS, Cloud, LiveRun, alert_file, irbook, match

FIXTURE = DRILLS / "alerts" / "alertmanager-llm-token-spend.json"
PLAYBOOK = "denial-of-wallet"


def test_the_raw_notification_starts_this_playbook_and_no_other() -> None:
    verdict = match(FIXTURE, "alertmanager")
    assert verdict["exit"] == 0
    assert verdict["matches"] == [{"playbook": PLAYBOOK, "trigger": 0}]
    assert verdict["alert"]["severity"] >= 7


def test_its_resolution_starts_nothing(tmp_path: Path) -> None:
    payload = json.loads(FIXTURE.read_text())
    payload["status"] = "resolved"
    for alert in payload["alerts"]:
        alert["status"] = "resolved"
        alert["endsAt"] = "2026-12-01T02:58:40.118Z"
    path = tmp_path / "resolved.json"
    path.write_text(json.dumps(payload))
    verdict = match(path, "alertmanager")
    assert verdict["exit"] == 1 and verdict["matches"] == []


def _payload(cloud: Cloud, *, function: bool = True) -> dict[str, Any]:
    """The notification, labelled with the sandbox's API; without function_name if asked."""
    text = FIXTURE.read_text().replace("a1b2c3d4e5", cloud.seeded["rest_api_id"])
    payload: dict[str, Any] = json.loads(text)
    if not function:
        del payload["commonLabels"]["function_name"]
        for alert in payload["alerts"]:
            del alert["labels"]["function_name"]
    return payload


def _stage_limits(cloud: Cloud) -> tuple[Any, Any]:
    """(rate, burst) on every method of the stage; absent and -1 both mean no limit."""
    stage = cloud.boto("apigateway").get_stage(
        restApiId=cloud.seeded["rest_api_id"], stageName=cloud.seeded["stage_name"]
    )
    every = stage.get("methodSettings", {}).get("*/*", {})
    rate, burst = every.get("throttlingRateLimit"), every.get("throttlingBurstLimit")
    return (
        None if rate is None or rate < 0 else rate,
        None if burst is None or burst < 0 else burst,
    )


def _concurrency(cloud: Cloud) -> Any:
    answer = cloud.boto("lambda").get_function_concurrency(FunctionName="prompt-router")
    return answer.get("ReservedConcurrentExecutions")


def _pages(cloud: Cloud) -> list[Any]:
    return [r for r in cloud.slack.requests if r.path == "/v2/enqueue"]


def test_live_run_pages_at_once_and_stops_the_spend_only_once_approved(
    cloud: Cloud, tmp_path: Path
) -> None:
    before = _stage_limits(cloud)
    alert = alert_file(_payload(cloud), "alertmanager", tmp_path)

    with LiveRun(PLAYBOOK, alert, cloud) as run:
        run.awaiting("throttle-stage")
        [page] = _pages(cloud)  # paged while the approvals wait
        assert page.json["payload"]["severity"] == "critical"
        assert (_stage_limits(cloud), _concurrency(cloud)) == (before, None)
        run.decide("throttle-stage")
        run.decide("block-function")
        code, out = run.finish()
    assert code == 0, out
    assert run.states() == {
        "page": "succeeded",
        "throttle-stage": "succeeded",
        "block-function": "succeeded",
        "spend-continues": "skipped",
    }
    assert _stage_limits(cloud) == (0.0, 0)
    assert _concurrency(cloud) == 0

    done = irbook("rollback", run.run_id or "", "--yes", env=cloud.env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _stage_limits(cloud) == before
    assert _concurrency(cloud) is None  # the function had no reserved concurrency


def test_a_rejected_throttle_changes_nothing_and_tells_the_channel(
    cloud: Cloud, tmp_path: Path
) -> None:
    before = _stage_limits(cloud)
    alert = alert_file(_payload(cloud, function=False), "alertmanager", tmp_path)

    with LiveRun(PLAYBOOK, alert, cloud) as run:
        run.decide("throttle-stage", reject=True)
        code, out = run.finish()
    assert code != 0, out  # containment refused is not a success
    states = run.states()
    assert states["throttle-stage"] == "rejected"
    assert states["block-function"] == "skipped"  # no function label: nothing to stop
    assert states["spend-continues"] == "succeeded"
    assert _stage_limits(cloud) == before
    [post] = [r for r in cloud.slack.requests if r.path == "/api/chat.postMessage"]
    assert post.data["channel"] == "#ir"
    assert "NOT contained" in post.data["text"]


def test_the_drill_passes_from_the_raw_notification() -> None:
    done = irbook("drill", str(DRILLS / "denial-of-wallet-night-spike.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^  spend-continues +succeeded", done.stdout, re.M)
