"""compromised-inference-host: a crypto-miner or backdoor on a GPU inference instance.

Its raw GuardDuty finding (and the other mining and command-and-control types) starts
this playbook and no other, while a finding naming no instance starts nothing; a live run
against the seeded fake cloud snapshots the host's volumes, moves its network interface
into a group with no rules, and revokes the sessions of the role its instance profile
hands it (found through the profile the finding names), each read back with boto3; a
rejected isolation leaves the host on its own group, still revokes the sessions and says
NOT CONTAINED; and the drills pass (a late isolation approval, an IAM outage)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.live_cloud import DRILLS, Cloud, LiveRun, alert_file, irbook, match

FIXTURE = DRILLS / "alerts" / "guardduty-cryptominer-gpu-host.json"
PLAYBOOK = "compromised-inference-host"


def finding(**instance: Any) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(FIXTURE.read_text())
    payload["detail"]["resource"]["instanceDetails"].update(instance)
    return payload


def test_the_raw_finding_starts_this_playbook_and_no_other() -> None:
    verdict = match(FIXTURE, "guardduty")

    assert verdict["exit"] == 0
    assert verdict["matches"] == [{"playbook": PLAYBOOK, "trigger": 0}]
    [host] = verdict["alert"]["resources"]
    assert (host["type"], host["id"]) == ("AwsEc2Instance", "i-0f1e2d3c4b5a69788")


@pytest.mark.parametrize(
    "kind",
    [
        "Backdoor:EC2/C&CActivity.B",
        "Impact:EC2/BitcoinDomainRequest.Reputation",
        "Impact:Runtime/CryptoMinerExecuted",
    ],
)
def test_command_and_control_and_runtime_findings_start_it_too(kind: str, tmp_path: Path) -> None:
    payload = finding()
    payload["detail"]["type"] = kind
    path = tmp_path / "finding.json"
    path.write_text(json.dumps(payload))

    assert match(path, "guardduty")["matches"] == [{"playbook": PLAYBOOK, "trigger": 0}]


def test_a_finding_that_names_no_instance_starts_nothing(tmp_path: Path) -> None:
    """A Runtime Monitoring finding about an EKS workload: no host to isolate here."""
    payload = finding()
    payload["detail"]["type"] = "Impact:Runtime/CryptoMinerExecuted"
    payload["detail"]["resource"] = {
        "resourceType": "EKSCluster",
        "eksClusterDetails": {
            "name": "inference",
            "arn": "arn:aws:eks:us-east-1:123456789012:cluster/inference",
        },
    }
    path = tmp_path / "finding.json"
    path.write_text(json.dumps(payload))

    verdict = match(path, "guardduty")

    assert verdict["exit"] == 1 and verdict["matches"] == []


def _groups(cloud: Cloud, instance_id: str) -> set[str]:
    """The security groups of the host's network interfaces, which carry its traffic."""
    interfaces = cloud.boto("ec2").describe_network_interfaces(
        Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}]
    )["NetworkInterfaces"]
    assert interfaces
    return {g["GroupId"] for i in interfaces for g in i["Groups"]}


def _revocation(cloud: Cloud, role: str) -> dict[str, Any]:
    policy = cloud.boto("iam").get_role_policy(RoleName=role, PolicyName="AWSRevokeOlderSessions")
    [statement] = policy["PolicyDocument"]["Statement"]
    return dict(statement)


def _live_alert(cloud: Cloud, folder: Path) -> Path:
    """The fixture, naming the seeded host and its instance profile (moto picks the ids)."""
    seeded = cloud.seeded
    payload = finding(
        instanceId=seeded["instance_id"],
        iamInstanceProfile={"arn": seeded["instance_profile_arn"], "id": "AIPAEXAMPLEPROFILE123"},
    )
    return alert_file(payload, "guardduty", folder)


def _decide(run: LiveRun, step: str, *, reject: bool = False) -> None:
    """`irbook approve RUN_ID --step STEP [--reject]` from another process, once it waits."""
    run_id = run.awaiting(step)
    args = ["approve", run_id, "--step", step, "--by", "oncall", *(["--reject"] if reject else [])]
    done = irbook(*args, env=run.env)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_live_run_keeps_the_disks_isolates_the_host_and_revokes_its_role(
    cloud: Cloud, tmp_path: Path
) -> None:
    seeded = cloud.seeded
    instance_id, role = seeded["instance_id"], seeded["role_name"]
    alert = _live_alert(cloud, tmp_path)
    ec2 = cloud.boto("ec2")

    with LiveRun(PLAYBOOK, alert, cloud) as run:
        run.awaiting("quarantine")
        # the disks are kept before anyone decides, and nothing else has changed yet
        volumes = ec2.describe_volumes(
            Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}]
        )["Volumes"]
        snapshots = ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
        assert {s["VolumeId"] for s in snapshots} >= {v["VolumeId"] for v in volumes} != set()
        assert _groups(cloud, instance_id) == {seeded["security_group_id"]}
        assert cloud.boto("iam").list_role_policies(RoleName=role)["PolicyNames"] == []
        _decide(run, "quarantine")
        _decide(run, "revoke-sessions")
        code, out = run.finish()

    assert code == 0, out
    [quarantine] = _groups(cloud, instance_id)
    assert quarantine != seeded["security_group_id"]
    group = ec2.describe_security_groups(GroupIds=[quarantine])["SecurityGroups"][0]
    assert group["IpPermissions"] == [] and group["IpPermissionsEgress"] == []
    statement = _revocation(cloud, role)
    assert statement["Effect"] == "Deny" and "aws:TokenIssueTime" in json.dumps(statement)
    states = run.states()
    assert states.pop("not-contained") == "skipped"
    assert set(states.values()) == {"succeeded"}, states
    assert run.steps()["role"]["state"] == "succeeded"


def test_a_rejected_isolation_still_revokes_the_sessions_and_says_not_contained(
    cloud: Cloud, tmp_path: Path
) -> None:
    seeded = cloud.seeded
    instance_id, role = seeded["instance_id"], seeded["role_name"]
    alert = _live_alert(cloud, tmp_path)

    with LiveRun(PLAYBOOK, alert, cloud) as run:
        _decide(run, "quarantine", reject=True)
        _decide(run, "revoke-sessions")
        code, out = run.finish()

    assert code == 2, out  # an approval was rejected: the run is not a success
    assert _groups(cloud, instance_id) == {seeded["security_group_id"]}
    assert _revocation(cloud, role)["Effect"] == "Deny"
    states = run.states()
    assert states["quarantine"] == "rejected" and states["revoke-sessions"] == "succeeded"
    assert states["not-contained"] == "succeeded" and states["notify"] == "skipped"
    posts = [r.data for r in cloud.slack.requests if r.path == "/api/chat.postMessage"]
    notices = [str(p["text"]) for p in posts if "NOT CONTAINED" in str(p.get("text"))]
    assert len(notices) == 1 and "quarantine rejected" in notices[0], posts


@pytest.mark.parametrize(
    "name",
    ["compromised-inference-host-miner-at-night", "compromised-inference-host-iam-outage"],
)
def test_the_drills_pass(name: str, prefect_api: str) -> None:
    # on the session's Prefect API: without one, `irbook drill` would start its own server
    proc = irbook("drill", str(DRILLS / f"{name}.yaml"), env={"PREFECT_API_URL": prefect_api})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"DRILL {name}: PASSED" in proc.stdout


def test_a_finding_whose_profile_is_not_an_instance_profile_arn_is_refused_whole(
    cloud: Cloud, tmp_path: Path
) -> None:
    """The profile comes from the raw finding, which the normalizer does not check: a value
    that is not an instance profile ARN refuses the run in one line, before any change."""
    seeded = cloud.seeded
    payload = finding(
        instanceId=seeded["instance_id"],
        iamInstanceProfile={"arn": f"{seeded['role_arn']}", "id": "AIPAEXAMPLEPROFILE123"},
    )
    alert = alert_file(payload, "guardduty", tmp_path)

    done = irbook("run", PLAYBOOK, "--alert", str(alert), "--yes", "--plain", env=cloud.env)

    assert done.returncode == 1, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "input 'instance_profile'" in line and seeded["role_arn"] in line
    ec2 = cloud.boto("ec2")
    volumes = ec2.describe_volumes(
        Filters=[{"Name": "attachment.instance-id", "Values": [seeded["instance_id"]]}]
    )["Volumes"]
    snapshots = ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
    assert volumes and not {s["VolumeId"] for s in snapshots} & {v["VolumeId"] for v in volumes}
