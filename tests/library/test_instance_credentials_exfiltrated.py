"""instance-credentials-exfiltrated: an inference host's role credentials (ASIA...) used
outside the instance.

Its raw GuardDuty finding starts this playbook and no other; a live run against the
sandbox's fake AWS revokes the role's sessions, snapshots the instance's volumes and
moves it into a quarantine group, each read back with boto3; a rejected isolation
leaves the instance on its own groups; and the drill passes."""

# The session fixtures are imported from _live, so arguments of the same names redefine them.
# ruff: noqa: F811
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

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

FIXTURE = ALERTS / "guardduty-instance-credentials-exfiltrated.json"
ROLE = "ml-inference-role"


def test_the_raw_finding_starts_this_playbook_and_no_other() -> None:
    result = match(FIXTURE, "guardduty")
    assert result["matches"] == [{"playbook": "instance-credentials-exfiltrated", "trigger": 0}]
    assert result["alert"]["actor"]["access_key_id"].startswith("ASIA")
    instances = [r for r in result["alert"]["resources"] if r["type"] == "AwsEc2Instance"]
    assert [r["id"] for r in instances] == ["i-0a1b2c3d4e5f67890"]


def test_the_inside_aws_variant_starts_it_too(tmp_path: Path) -> None:
    payload = json.loads(FIXTURE.read_text())
    payload["detail"]["type"] = (
        "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.InsideAWS"
    )
    path = tmp_path / "inside.json"
    path.write_text(json.dumps(payload))
    assert match(path, "guardduty")["matches"] == [
        {"playbook": "instance-credentials-exfiltrated", "trigger": 0}
    ]


def test_a_long_term_key_does_not_start_it(tmp_path: Path) -> None:
    """An AKIA key cannot be an instance's: that finding would be mislabelled, and a
    session revocation would not stop a long-term key."""
    payload = json.loads(FIXTURE.read_text())
    payload["detail"]["resource"]["accessKeyDetails"]["accessKeyId"] = "AKIAIOSFODNN7EXAMPLE"
    path = tmp_path / "akia.json"
    path.write_text(json.dumps(payload))
    done = irbook("match", str(path), "--from", "guardduty", "--format", "json")
    out = json.loads(done.stdout)
    assert out["matches"] == []
    why = {m["playbook"]: m["why"] for m in out["near_misses"]}
    assert why["instance-credentials-exfiltrated"].startswith("actor.access_key_id: expected")


def _seed(sandbox: Any) -> tuple[str, str]:
    """The role and a running instance with a volume and its own security group; the
    alert is then made to name that instance (moto picks instance ids)."""
    iam = boto("iam", sandbox)
    iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(TRUST))
    ec2 = boto("ec2", sandbox)
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.30.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="inference", Description="x", VpcId=vpc)
    # the interface is created first: moto then reports its groups faithfully after a swap
    eni = ec2.create_network_interface(SubnetId=subnet, Groups=[group["GroupId"]])
    instance = ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        InstanceType="g5.xlarge",
        NetworkInterfaces=[
            {"NetworkInterfaceId": eni["NetworkInterface"]["NetworkInterfaceId"], "DeviceIndex": 0}
        ],
        BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 8}}],
    )["Instances"][0]
    return instance["InstanceId"], group["GroupId"]


TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def _alert_for(instance_id: str, folder: Path) -> Path:
    payload = json.loads(FIXTURE.read_text())
    details = payload["detail"]["resource"]["accessKeyDetails"]
    details["principalId"] = f"AROAEXAMPLEROLEID12345:{instance_id}"
    raw = folder / "finding.json"
    raw.write_text(json.dumps(payload))
    return normalized(raw, "guardduty", folder)


def _groups(sandbox: Any, instance_id: str) -> set[str]:
    """The security groups of the instance's network interfaces, which carry its traffic."""
    ec2 = boto("ec2", sandbox)
    interfaces = ec2.describe_network_interfaces(
        Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}]
    )["NetworkInterfaces"]
    assert interfaces
    return {g["GroupId"] for i in interfaces for g in i["Groups"]}


def test_a_live_run_revokes_the_sessions_keeps_the_disks_and_isolates_the_host(
    tmp_path: Path, prefect_api: str, sandbox: Any
) -> None:
    instance_id, group = _seed(sandbox)
    alert = _alert_for(instance_id, tmp_path)

    code, out, run_id = run_live(
        "instance-credentials-exfiltrated",
        alert,
        user_env(prefect_api, sandbox),
        {"revoke-sessions": "approve", "quarantine": "approve"},
    )

    assert code == 0, out
    iam = boto("iam", sandbox)
    policy = iam.get_role_policy(RoleName=ROLE, PolicyName="AWSRevokeOlderSessions")
    [statement] = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny" and "aws:TokenIssueTime" in json.dumps(statement)
    ec2 = boto("ec2", sandbox)
    volumes = ec2.describe_volumes(
        Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}]
    )["Volumes"]
    snapshots = ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
    assert {s["VolumeId"] for s in snapshots} >= {v["VolumeId"] for v in volumes} != set()
    [quarantine] = _groups(sandbox, instance_id)
    assert quarantine != group
    rules = ec2.describe_security_groups(GroupIds=[quarantine])["SecurityGroups"][0]
    assert rules["IpPermissions"] == [] and rules["IpPermissionsEgress"] == []
    states = step_states(run_id)
    assert states.pop("not-contained") == "skipped"
    assert set(states.values()) == {"succeeded"}, states


def test_a_rejected_isolation_leaves_the_host_on_its_network(
    tmp_path: Path, prefect_api: str, sandbox: Any
) -> None:
    instance_id, group = _seed(sandbox)
    alert = _alert_for(instance_id, tmp_path)

    code, out, run_id = run_live(
        "instance-credentials-exfiltrated",
        alert,
        user_env(prefect_api, sandbox),
        {"revoke-sessions": "approve", "quarantine": "reject"},
    )

    assert code == 2, out  # an approval was rejected
    assert _groups(sandbox, instance_id) == {group}
    # the sessions stay revoked: that containment was approved and stands
    iam = boto("iam", sandbox)
    assert iam.get_role_policy(RoleName=ROLE, PolicyName="AWSRevokeOlderSessions")
    states = step_states(run_id)
    assert states["revoke-sessions"] == "succeeded" and states["snapshot"] == "succeeded"
    assert states["quarantine"] == "rejected" and states["not-contained"] == "succeeded"
    posts = [json.dumps(m) for m in sandbox.app.messages if m["method"] == "chat.postMessage"]
    notices = [m for m in posts if "NOT CONTAINED" in m]
    assert len(notices) == 1 and "quarantine rejected" in notices[0], sandbox.app.messages


@pytest.mark.parametrize(
    "name", ["instance-credentials-ssrf-at-3am", "instance-credentials-isolation-refused"]
)
def test_the_drills_pass(name: str, prefect_api: str) -> None:
    done = drill(DRILLS / f"{name}.yaml", prefect_api)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"DRILL {name}: PASSED" in done.stdout
