"""Network isolation of instances and subnets, and volume snapshots."""

from __future__ import annotations

import pytest

from irbook.registry import ActionContext, ActionFailed
from tests.support import aws_world as world
from tests.support.aws import RecordingClients, run, undo

from .conftest import live_run


def _group(clients: RecordingClients, group_id: str) -> dict:
    return clients.aws("ec2").describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]


def test_quarantine_moves_every_interface_to_a_group_with_no_rules(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    box = world.instance(clients, interfaces=2)
    result, _ = run(ctx, "aws.ec2.quarantine_instance", instance_id=box["instance_id"])
    group = _group(clients, result.quarantine_group_id)
    assert (group["GroupName"], group["VpcId"]) == ("irbook-quarantine", box["vpc_id"])
    assert group["IpPermissions"] == [] and group["IpPermissionsEgress"] == []
    assert set(map(tuple, world.interface_groups(clients, box["instance_id"]).values())) == {
        (result.quarantine_group_id,)
    }
    assert world.termination_protected(clients, box["instance_id"]) is True
    assert result.previous_groups == {
        box["enis"][0]: box["groups"],
        box["enis"][1]: box["groups"][:1],
    }


def test_the_quarantine_group_is_reused_and_kept_empty(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    box = world.instance(clients)
    ec2 = clients.aws("ec2")
    existing = ec2.create_security_group(
        GroupName="irbook-quarantine", Description="q", VpcId=box["vpc_id"]
    )["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=existing,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
        ],
    )
    result, calls = run(ctx, "aws.ec2.quarantine_instance", instance_id=box["instance_id"])
    assert (result.quarantine_group_id, result.group_created) == (existing, False)
    group = _group(clients, existing)
    assert group["IpPermissions"] == [] and group["IpPermissionsEgress"] == []
    assert "ec2:CreateSecurityGroup" not in [c.name for c in calls]


def test_a_given_group_from_another_vpc_is_refused(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    box = world.instance(clients)
    ec2 = clients.aws("ec2")
    other_vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    foreign = ec2.create_security_group(GroupName="x", Description="x", VpcId=other_vpc)["GroupId"]
    with pytest.raises(ActionFailed, match=f"security group {foreign} is in {other_vpc}"):
        run(
            ctx,
            "aws.ec2.quarantine_instance",
            instance_id=box["instance_id"],
            quarantine_group_id=foreign,
        )
    assert world.interface_groups(clients, box["instance_id"]) == {box["enis"][0]: box["groups"]}


def test_a_retried_quarantine_still_knows_the_groups_before(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    """The first try changed the instance; the retry's result must still undo to the
    original groups, which it reads back from the instance's tag."""
    box = world.instance(clients, interfaces=2)
    before = world.interface_groups(clients, box["instance_id"])
    params = {"instance_id": box["instance_id"]}
    run(ctx, "aws.ec2.quarantine_instance", **params)
    retried, _ = run(ctx, "aws.ec2.quarantine_instance", **params)
    assert retried.already_done is True
    assert retried.previous_groups == before
    undo(ctx, "aws.ec2.quarantine_instance", params, retried)
    assert world.interface_groups(clients, box["instance_id"]) == before
    assert world.termination_protected(clients, box["instance_id"]) is False
    tags = clients.aws("ec2").describe_tags(
        Filters=[{"Name": "resource-id", "Values": [box["instance_id"]]}]
    )["Tags"]
    assert "irbook:pre-quarantine" not in [t["Key"] for t in tags]


def test_release_keeps_termination_protection_that_was_on_before(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    box = world.instance(clients)
    clients.aws("ec2").modify_instance_attribute(
        InstanceId=box["instance_id"], DisableApiTermination={"Value": True}
    )
    params = {"instance_id": box["instance_id"]}
    result, calls = run(ctx, "aws.ec2.quarantine_instance", **params)
    assert "ec2:ModifyInstanceAttribute" not in [c.name for c in calls]
    undo(ctx, "aws.ec2.quarantine_instance", params, result)
    assert world.termination_protected(clients, box["instance_id"]) is True


def test_subnet_deny_moves_only_that_subnet(clients: RecordingClients, ctx: ActionContext) -> None:
    box = world.instance(clients)
    ec2 = clients.aws("ec2")
    neighbour = ec2.create_subnet(VpcId=box["vpc_id"], CidrBlock="10.0.2.0/24")["Subnet"][
        "SubnetId"
    ]
    shared = world.subnet_acl(clients, neighbour)
    assert world.subnet_acl(clients, box["subnet_id"]) == shared
    params = {"subnet_id": box["subnet_id"]}
    result, _ = run(ctx, "aws.ec2.deny_subnet_traffic", **params)
    acl = ec2.describe_network_acls(NetworkAclIds=[result.network_acl_id])["NetworkAcls"][0]
    assert [e for e in acl["Entries"] if e["RuleAction"] == "allow"] == []
    assert world.subnet_acl(clients, neighbour) == shared
    assert result.previous_network_acl_id == shared
    undo(ctx, "aws.ec2.deny_subnet_traffic", params, result)
    assert world.subnet_acl(clients, box["subnet_id"]) == shared
    remaining = [a["NetworkAclId"] for a in ec2.describe_network_acls()["NetworkAcls"]]
    assert result.network_acl_id not in remaining, "the quarantine ACL was left behind"


def test_a_retried_subnet_deny_still_knows_the_acl_before(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    box = world.instance(clients)
    original = world.subnet_acl(clients, box["subnet_id"])
    params = {"subnet_id": box["subnet_id"]}
    run(ctx, "aws.ec2.deny_subnet_traffic", **params)
    retried, calls = run(ctx, "aws.ec2.deny_subnet_traffic", **params)
    assert (retried.already_done, retried.previous_network_acl_id) == (True, original)
    assert [c.name for c in calls] == ["ec2:DescribeNetworkAcls"]


def test_snapshots_carry_the_run_and_a_new_run_takes_new_ones(
    clients: RecordingClients, ctx: ActionContext
) -> None:
    box = world.instance(clients)
    params = {"instance_id": box["instance_id"], "retention_days": None}
    first, _ = run(ctx, "aws.ec2.snapshot_volumes", **params)
    [snapshot] = clients.aws("ec2").describe_snapshots(SnapshotIds=list(first.snapshots.values()))[
        "Snapshots"
    ]
    tags = {t["Key"]: t["Value"] for t in snapshot["Tags"]}
    assert tags["irbook:run-id"] == "run-0001"
    assert tags["irbook:incident"] == "INC-42"
    later = type(ctx)(run=live_run("run-0002"), clients=clients, region=ctx.region)
    second, _ = run(later, "aws.ec2.snapshot_volumes", **params)
    assert second.already_done is False
    assert set(second.snapshots.values()).isdisjoint(first.snapshots.values())
