"""Isolate EC2 instances and subnets, and snapshot an instance's volumes as evidence.

Security groups are stateful: swapping an instance onto a group with no rules stops new
connections, but connections already tracked may continue for a while. For an immediate
cut-off, `aws.ec2.deny_subnet_traffic` moves the whole subnet to a network ACL with no
allow rules (network ACLs are stateless and deny every packet at once).

State needed to undo is recorded twice: in the step's result, and as a tag on the
resource itself, so a retried step (whose first try already changed things) still knows
what was there before.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import Field, field_validator

from irbook.registry import ActionContext, ActionFailed, PlannedCall, RunInfo, action
from irbook_actions.aws._base import (
    RUN_ID,
    AwsParams,
    AwsResult,
    blank_to_none,
    call,
    from_call,
    iso,
    now,
    tag_dict,
    tag_list,
    try_call,
)

INSTANCE_ID = r"^i-[0-9a-f]{8,17}$"
GROUP_ID = r"^sg-[0-9a-f]{8,17}$"
SUBNET_ID = r"^subnet-[0-9a-f]{8,17}$"
ACL_ID = r"^acl-[0-9a-f]{8,17}$"

QUARANTINE_GROUP = "irbook-quarantine"
PURPOSE_TAG = "irbook:purpose"
BEFORE_TAG = "irbook:pre-quarantine"  # on the instance: its groups before quarantine
SUBNET_TAG = "irbook:subnet"
PREVIOUS_ACL_TAG = "irbook:previous-acl"
TERMINATION = "disableApiTermination"
TAG_LIMIT = 256

_TAGGED_AT_CREATION = {"ec2:CreateTags": "tags the new resource at creation (TagSpecifications)"}


# --- instances ------------------------------------------------------------------------------------


def _instance(ec2: Any, instance_id: str) -> dict[str, Any]:
    what = f"EC2 instance {instance_id}"
    answer = call(ec2, "DescribeInstances", what, InstanceIds=[instance_id])
    for reservation in answer.get("Reservations", []):
        for instance in reservation.get("Instances", []):
            if instance.get("State", {}).get("Name") == "terminated":
                raise ActionFailed(f"{what} is terminated")
            return dict(instance)
    raise ActionFailed(f"{what} not found")


def _interfaces(instance: dict[str, Any]) -> dict[str, list[str]]:
    """Network interface -> its security groups, in device order."""
    enis = sorted(
        instance.get("NetworkInterfaces", []),
        key=lambda n: n.get("Attachment", {}).get("DeviceIndex", 0),
    )
    return {
        str(n["NetworkInterfaceId"]): [str(g["GroupId"]) for g in n.get("Groups", [])] for n in enis
    }


def _protected(ec2: Any, instance_id: str) -> bool:
    answer = call(
        ec2,
        "DescribeInstanceAttribute",
        f"EC2 instance {instance_id}",
        InstanceId=instance_id,
        Attribute=TERMINATION,
    )
    return bool(answer.get("DisableApiTermination", {}).get("Value"))


def _encode(groups: dict[str, list[str]], protected: bool) -> str:
    """ "term=false eni-1:sg-a+sg-b": characters every tagging API accepts."""
    parts = [f"term={'true' if protected else 'false'}"]
    parts += [f"{eni}:{'+'.join(ids)}" for eni, ids in groups.items()]
    return " ".join(parts)


def _decode(text: str) -> tuple[dict[str, list[str]], bool] | None:
    if not text.startswith("term="):
        return None
    head, *rest = text.split()
    groups = {}
    for part in rest:
        eni, _, ids = part.partition(":")
        groups[eni] = [g for g in ids.split("+") if g]
    return groups, head == "term=true"


class InstanceParams(AwsParams):
    instance_id: str = Field(pattern=INSTANCE_ID, description="the EC2 instance")


class QuarantineParams(InstanceParams):
    quarantine_group_id: str | None = Field(
        None,
        pattern=GROUP_ID,
        description="a security group to use; default irbook-quarantine, created without rules",
    )

    @field_validator("quarantine_group_id", mode="before")
    @classmethod
    def blank_is_none(cls, value: Any) -> Any:
        return blank_to_none(value)


class QuarantineResult(AwsResult):
    instance_id: str
    vpc_id: str = ""
    quarantine_group_id: str
    group_created: bool = False
    previous_groups: dict[str, list[str]] = Field(
        default_factory=dict, description="network interface -> security groups before"
    )
    termination_protection_was: bool = False


def _permissions(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Described rules as RevokeSecurityGroup* takes them back."""
    out = []
    for rule in rules:
        clean: dict[str, Any] = {"IpProtocol": rule["IpProtocol"]}
        for key in ("FromPort", "ToPort"):
            if key in rule:
                clean[key] = rule[key]
        for key in ("IpRanges", "Ipv6Ranges", "PrefixListIds"):
            if rule.get(key):
                clean[key] = rule[key]
        if rule.get("UserIdGroupPairs"):
            clean["UserIdGroupPairs"] = [
                {k: v for k, v in pair.items() if k in ("GroupId", "UserId")}
                for pair in rule["UserIdGroupPairs"]
            ]
        out.append(clean)
    return out


def _empty(ec2: Any, group: dict[str, Any]) -> None:
    """No rules at all: the default allow-all egress goes, and anything added later."""
    group_id = str(group["GroupId"])
    what = f"security group {group_id}"
    if group.get("IpPermissionsEgress"):
        call(
            ec2,
            "RevokeSecurityGroupEgress",
            what,
            GroupId=group_id,
            IpPermissions=_permissions(group["IpPermissionsEgress"]),
        )
    if group.get("IpPermissions"):
        call(
            ec2,
            "RevokeSecurityGroupIngress",
            what,
            GroupId=group_id,
            IpPermissions=_permissions(group["IpPermissions"]),
        )


def _by_name(ec2: Any, vpc_id: str) -> dict[str, Any] | None:
    answer = call(
        ec2,
        "DescribeSecurityGroups",
        f"security group {QUARANTINE_GROUP} in {vpc_id}",
        Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]},
            {"Name": "group-name", "Values": [QUARANTINE_GROUP]},
        ],
    )
    groups = answer.get("SecurityGroups", [])
    return dict(groups[0]) if groups else None


def _quarantine_group(
    ctx: ActionContext, ec2: Any, vpc_id: str, given: str | None
) -> tuple[str, bool]:
    """(group id, created): the given group, or irbook-quarantine in the VPC, emptied."""
    if given is not None:
        answer = call(ec2, "DescribeSecurityGroups", f"security group {given}", GroupIds=[given])
        group = answer["SecurityGroups"][0]
        if group.get("VpcId") != vpc_id:
            raise ActionFailed(
                f"security group {given} is in {group.get('VpcId')}, not the instance's {vpc_id}"
            )
        return given, False  # the team's own group: its rules are theirs to decide
    group = _by_name(ec2, vpc_id)
    if group is not None:
        _empty(ec2, group)
        return str(group["GroupId"]), False
    created, code = try_call(
        ec2,
        "CreateSecurityGroup",
        f"security group {QUARANTINE_GROUP} in {vpc_id}",
        ("InvalidGroup.Duplicate",),
        GroupName=QUARANTINE_GROUP,
        Description="irbook isolation group: no rules, nothing in or out",
        VpcId=vpc_id,
        TagSpecifications=[
            {"ResourceType": "security-group", "Tags": tag_list({PURPOSE_TAG: "quarantine"})}
        ],
    )
    if code:  # created by a concurrent run a moment ago
        group = _by_name(ec2, vpc_id)
        if group is None:
            raise ActionFailed(f"security group {QUARANTINE_GROUP} in {vpc_id} vanished")
        _empty(ec2, group)
        return str(group["GroupId"]), False
    group_id = str(created["GroupId"])
    described = call(
        ec2, "DescribeSecurityGroups", f"security group {group_id}", GroupIds=[group_id]
    )
    _empty(ec2, described["SecurityGroups"][0])
    ctx.note(f"created security group {group_id} ({QUARANTINE_GROUP}) in {vpc_id} with no rules")
    return group_id, True


def _plan_quarantine(params: QuarantineParams) -> list[PlannedCall]:
    instance = {"InstanceId": params.instance_id}
    calls = [
        PlannedCall("ec2", "DescribeInstances", {"InstanceIds": [params.instance_id]}),
        PlannedCall(
            "ec2",
            "DescribeInstanceAttribute",
            {**instance, "Attribute": TERMINATION},
            note="records termination protection for the undo",
        ),
    ]
    if params.quarantine_group_id is not None:
        group = params.quarantine_group_id
        calls.append(
            PlannedCall(
                "ec2",
                "DescribeSecurityGroups",
                {"GroupIds": [group]},
                note="checks the group is in the instance's VPC",
            )
        )
    else:
        vpc = from_call("ec2:DescribeInstances")
        group = from_call("ec2:CreateSecurityGroup")
        calls += [
            PlannedCall(
                "ec2",
                "DescribeSecurityGroups",
                {
                    "Filters": [
                        {"Name": "vpc-id", "Values": [vpc]},
                        {"Name": "group-name", "Values": [QUARANTINE_GROUP]},
                    ]
                },
                note=f"an existing {QUARANTINE_GROUP} group is reused (any rules revoked) "
                "instead of the next three calls",
            ),
            PlannedCall(
                "ec2",
                "CreateSecurityGroup",
                {
                    "GroupName": QUARANTINE_GROUP,
                    "Description": "irbook isolation group: no rules, nothing in or out",
                    "VpcId": vpc,
                    "TagSpecifications": [
                        {
                            "ResourceType": "security-group",
                            "Tags": tag_list({PURPOSE_TAG: "quarantine"}),
                        }
                    ],
                },
            ),
            PlannedCall("ec2", "DescribeSecurityGroups", {"GroupIds": [group]}),
            PlannedCall(
                "ec2",
                "RevokeSecurityGroupEgress",
                {
                    "GroupId": group,
                    "IpPermissions": from_call("ec2:DescribeSecurityGroups", "default egress"),
                },
                note="removes the allow-all egress rule every new group has",
            ),
        ]
    calls += [
        PlannedCall(
            "ec2",
            "CreateTags",
            {
                "Resources": [params.instance_id],
                "Tags": [{"Key": BEFORE_TAG, "Value": "<groups per interface, protection>"}],
            },
            note="records the state before, on the instance itself",
        ),
        PlannedCall(
            "ec2",
            "ModifyNetworkInterfaceAttribute",
            {"NetworkInterfaceId": from_call("ec2:DescribeInstances"), "Groups": [group]},
            note="once per network interface",
        ),
        PlannedCall(
            "ec2",
            "ModifyInstanceAttribute",
            {**instance, "DisableApiTermination": {"Value": True}},
            note="skipped when termination protection is already on",
        ),
    ]
    return calls


def _undo_quarantine(params: QuarantineParams, result: QuarantineResult | None) -> dict[str, Any]:
    out: dict[str, Any] = {"instance_id": params.instance_id}
    if result is not None:
        out["previous_groups"] = {k: list(v) for k, v in result.previous_groups.items()}
        out["termination_protection"] = result.termination_protection_was
    return out


@action(
    "aws.ec2.quarantine_instance",
    effect="mutate",
    calls=[
        ("ec2", "DescribeInstances"),
        ("ec2", "DescribeInstanceAttribute"),
        ("ec2", "DescribeSecurityGroups"),
        ("ec2", "CreateSecurityGroup"),
        ("ec2", "RevokeSecurityGroupEgress"),
        ("ec2", "CreateTags"),
        ("ec2", "ModifyNetworkInterfaceAttribute"),
        ("ec2", "ModifyInstanceAttribute"),
    ],
    extra_permissions={
        "ec2:RevokeSecurityGroupIngress": "clears rules someone added to irbook-quarantine"
    },
    planner=_plan_quarantine,
    simulate=lambda p, run: QuarantineResult(
        instance_id=p.instance_id,
        vpc_id=from_call("ec2:DescribeInstances"),
        quarantine_group_id=p.quarantine_group_id or from_call("ec2:CreateSecurityGroup"),
        group_created=p.quarantine_group_id is None,
        previous_groups={from_call("ec2:DescribeInstances"): [from_call("ec2:DescribeInstances")]},
    ),
    compensation="aws.ec2.release_instance",
    undo=_undo_quarantine,
    idempotent=True,
)
def quarantine_instance(ctx: ActionContext, params: QuarantineParams) -> QuarantineResult:
    """Cut an instance off the network but keep it running for forensics: every network
    interface moves to a security group with no rules, and termination protection goes on
    so nobody destroys the evidence in its memory and disks."""
    ec2 = ctx.aws("ec2")
    instance = _instance(ec2, params.instance_id)
    vpc_id = str(instance.get("VpcId", ""))
    interfaces = _interfaces(instance)
    if not interfaces:
        raise ActionFailed(f"EC2 instance {params.instance_id} has no network interfaces")
    protected = _protected(ec2, params.instance_id)
    group_id, created = _quarantine_group(ctx, ec2, vpc_id, params.quarantine_group_id)
    before, protected_before = interfaces, protected
    recorded = _decode(tag_dict(instance.get("Tags")).get(BEFORE_TAG, ""))
    resumed = recorded is not None and any(g == [group_id] for g in interfaces.values())
    if recorded is not None and resumed:
        before, protected_before = recorded  # an earlier try of this quarantine saw them
    result = QuarantineResult(
        instance_id=params.instance_id,
        vpc_id=vpc_id,
        quarantine_group_id=group_id,
        group_created=created,
        previous_groups=before,
        termination_protection_was=protected_before,
    )
    moving = [eni for eni, groups in interfaces.items() if groups != [group_id]]
    if not moving and protected:
        return result.model_copy(update={"already_done": True})
    if not resumed:
        value = _encode(interfaces, protected)
        if len(value) <= TAG_LIMIT:
            call(
                ec2,
                "CreateTags",
                f"EC2 instance {params.instance_id}",
                Resources=[params.instance_id],
                Tags=[{"Key": BEFORE_TAG, "Value": value}],
            )
        else:
            ctx.note(f"too many interfaces to record in tag {BEFORE_TAG}; the result keeps them")
    for eni in moving:
        call(
            ec2,
            "ModifyNetworkInterfaceAttribute",
            f"network interface {eni} of EC2 instance {params.instance_id}",
            NetworkInterfaceId=eni,
            Groups=[group_id],
        )
    if not protected:
        call(
            ec2,
            "ModifyInstanceAttribute",
            f"EC2 instance {params.instance_id}",
            InstanceId=params.instance_id,
            DisableApiTermination={"Value": True},
        )
    ctx.note(
        f"EC2 instance {params.instance_id}: {len(moving)} interface(s) moved to {group_id}; "
        "termination protection on"
    )
    return result


class ReleaseInstanceParams(InstanceParams):
    previous_groups: dict[str, list[str]] = Field(
        default_factory=dict,
        description="network interface -> groups to restore; default from the instance's tag",
    )
    termination_protection: bool | None = Field(
        None, description="termination protection to restore; default from the instance's tag"
    )


class ReleaseInstanceResult(AwsResult):
    instance_id: str
    groups: dict[str, list[str]] = Field(default_factory=dict)
    termination_protection: bool | None = None


def _plan_release(params: ReleaseInstanceParams) -> list[PlannedCall]:
    instance = {"InstanceId": params.instance_id}
    calls = [
        PlannedCall(
            "ec2",
            "DescribeInstances",
            {"InstanceIds": [params.instance_id]},
            note=f"current groups, and tag {BEFORE_TAG}",
        ),
        PlannedCall("ec2", "DescribeInstanceAttribute", {**instance, "Attribute": TERMINATION}),
    ]
    groups = params.previous_groups or {
        from_call("ec2:DescribeInstances", BEFORE_TAG): [from_call("ec2:DescribeInstances")]
    }
    for eni, ids in groups.items():
        calls.append(
            PlannedCall(
                "ec2",
                "ModifyNetworkInterfaceAttribute",
                {"NetworkInterfaceId": eni, "Groups": list(ids)},
                note="skipped for interfaces already back",
            )
        )
    if params.termination_protection is not True:
        calls.append(
            PlannedCall(
                "ec2",
                "ModifyInstanceAttribute",
                {**instance, "DisableApiTermination": {"Value": False}},
                note="only when protection was off before the quarantine",
            )
        )
    calls.append(
        PlannedCall(
            "ec2",
            "DeleteTags",
            {"Resources": [params.instance_id], "Tags": [{"Key": BEFORE_TAG}]},
        )
    )
    return calls


@action(
    "aws.ec2.release_instance",
    effect="mutate",
    calls=[
        ("ec2", "DescribeInstances"),
        ("ec2", "DescribeInstanceAttribute"),
        ("ec2", "ModifyNetworkInterfaceAttribute"),
        ("ec2", "ModifyInstanceAttribute"),
        ("ec2", "DeleteTags"),
    ],
    planner=_plan_release,
    simulate=lambda p, run: ReleaseInstanceResult(
        instance_id=p.instance_id,
        groups={k: list(v) for k, v in p.previous_groups.items()},
        termination_protection=p.termination_protection,
    ),
    compensation="aws.ec2.quarantine_instance",
    undo=lambda p, r: {"instance_id": p.instance_id},
    idempotent=True,
)
def release_instance(ctx: ActionContext, params: ReleaseInstanceParams) -> ReleaseInstanceResult:
    """Put a quarantined instance's interfaces back on their groups and its termination
    protection back as it was."""
    ec2 = ctx.aws("ec2")
    what = f"EC2 instance {params.instance_id}"
    instance = _instance(ec2, params.instance_id)
    tags = tag_dict(instance.get("Tags"))
    recorded = _decode(tags.get(BEFORE_TAG, ""))
    groups = params.previous_groups or (recorded[0] if recorded else {})
    protection = params.termination_protection
    if protection is None and recorded is not None:
        protection = recorded[1]
    if not groups:
        raise ActionFailed(
            f"{what} has no tag {BEFORE_TAG}; give previous_groups to say what to restore"
        )
    current = _interfaces(instance)
    protected = _protected(ec2, params.instance_id)
    changed = False
    for eni, ids in groups.items():
        if eni not in current:
            ctx.note(f"network interface {eni} is no longer attached to {what}; skipped")
            continue
        if current[eni] != ids:
            call(
                ec2,
                "ModifyNetworkInterfaceAttribute",
                f"network interface {eni} of {what}",
                NetworkInterfaceId=eni,
                Groups=list(ids),
            )
            changed = True
    if protection is False and protected:
        call(
            ec2,
            "ModifyInstanceAttribute",
            what,
            InstanceId=params.instance_id,
            DisableApiTermination={"Value": False},
        )
        changed = True
    if BEFORE_TAG in tags:
        call(
            ec2,
            "DeleteTags",
            what,
            Resources=[params.instance_id],
            Tags=[{"Key": BEFORE_TAG}],
        )
    if changed:
        ctx.note(f"{what} released from quarantine")
    return ReleaseInstanceResult(
        instance_id=params.instance_id,
        groups=dict(groups),
        termination_protection=protection if protection is not None else protected,
        already_done=not changed,
    )


# --- subnets --------------------------------------------------------------------------------------


class SubnetParams(AwsParams):
    subnet_id: str = Field(pattern=SUBNET_ID, description="the subnet to cut off")


class RestoreSubnetParams(SubnetParams):
    network_acl_id: str | None = Field(
        None,
        pattern=ACL_ID,
        description="the network ACL to put back; default the one the quarantine ACL records",
    )


class SubnetResult(AwsResult):
    subnet_id: str
    network_acl_id: str = Field(description="the network ACL associated now")
    previous_network_acl_id: str | None = None
    vpc_id: str = ""


def _association(ec2: Any, subnet_id: str) -> tuple[dict[str, Any], str]:
    """The subnet's network ACL and the id of its association."""
    answer = call(
        ec2,
        "DescribeNetworkAcls",
        f"subnet {subnet_id}",
        Filters=[{"Name": "association.subnet-id", "Values": [subnet_id]}],
    )
    for acl in answer.get("NetworkAcls", []):
        for association in acl.get("Associations", []):
            if association.get("SubnetId") == subnet_id:
                return dict(acl), str(association["NetworkAclAssociationId"])
    raise ActionFailed(f"subnet {subnet_id} not found (no network ACL is associated with it)")


def _describe_acls(subnet_id: str) -> PlannedCall:
    return PlannedCall(
        "ec2",
        "DescribeNetworkAcls",
        {"Filters": [{"Name": "association.subnet-id", "Values": [subnet_id]}]},
        note="the subnet's current network ACL and association",
    )


def _quarantine_tags(subnet_id: str, previous: str) -> dict[str, str]:
    return {
        "Name": f"irbook-quarantine-{subnet_id}",
        PURPOSE_TAG: "quarantine",
        SUBNET_TAG: subnet_id,
        PREVIOUS_ACL_TAG: previous,
    }


@action(
    "aws.ec2.deny_subnet_traffic",
    effect="mutate",
    calls=[
        ("ec2", "DescribeNetworkAcls"),
        ("ec2", "CreateNetworkAcl"),
        ("ec2", "ReplaceNetworkAclAssociation"),
    ],
    extra_permissions=_TAGGED_AT_CREATION,
    planner=lambda p: [
        _describe_acls(p.subnet_id),
        PlannedCall(
            "ec2",
            "CreateNetworkAcl",
            {
                "VpcId": from_call("ec2:DescribeNetworkAcls"),
                "TagSpecifications": [
                    {
                        "ResourceType": "network-acl",
                        "Tags": tag_list(
                            _quarantine_tags(p.subnet_id, from_call("ec2:DescribeNetworkAcls"))
                        ),
                    }
                ],
            },
            note="a new network ACL has no allow rules: it denies everything",
        ),
        PlannedCall(
            "ec2",
            "ReplaceNetworkAclAssociation",
            {
                "AssociationId": from_call("ec2:DescribeNetworkAcls"),
                "NetworkAclId": from_call("ec2:CreateNetworkAcl"),
            },
        ),
    ],
    simulate=lambda p, run: SubnetResult(
        subnet_id=p.subnet_id,
        network_acl_id=from_call("ec2:CreateNetworkAcl"),
        previous_network_acl_id=from_call("ec2:DescribeNetworkAcls"),
    ),
    compensation="aws.ec2.restore_subnet_traffic",
    undo=lambda p, r: {
        "subnet_id": p.subnet_id,
        **(
            {"network_acl_id": r.previous_network_acl_id}
            if r is not None and r.previous_network_acl_id and r.previous_network_acl_id[0] != "<"
            else {}
        ),
    },
    idempotent=True,
)
def deny_subnet_traffic(ctx: ActionContext, params: SubnetParams) -> SubnetResult:
    """Stop every packet into and out of a subnet at once, open connections included, by
    associating it with a new network ACL that has no allow rules. Only this subnet moves;
    others sharing its old ACL are untouched."""
    ec2 = ctx.aws("ec2")
    acl, association = _association(ec2, params.subnet_id)
    tags = tag_dict(acl.get("Tags"))
    current = str(acl["NetworkAclId"])
    vpc_id = str(acl.get("VpcId", ""))
    if tags.get(PURPOSE_TAG) == "quarantine":
        return SubnetResult(
            subnet_id=params.subnet_id,
            network_acl_id=current,
            previous_network_acl_id=tags.get(PREVIOUS_ACL_TAG),
            vpc_id=vpc_id,
            already_done=True,
        )
    created = call(
        ec2,
        "CreateNetworkAcl",
        f"a network ACL in {vpc_id}",
        VpcId=vpc_id,
        TagSpecifications=[
            {
                "ResourceType": "network-acl",
                "Tags": tag_list(_quarantine_tags(params.subnet_id, current)),
            }
        ],
    )
    new = str(created["NetworkAcl"]["NetworkAclId"])
    call(
        ec2,
        "ReplaceNetworkAclAssociation",
        f"subnet {params.subnet_id}",
        AssociationId=association,
        NetworkAclId=new,
    )
    ctx.note(f"subnet {params.subnet_id}: network ACL {current} -> {new} (deny all)")
    return SubnetResult(
        subnet_id=params.subnet_id,
        network_acl_id=new,
        previous_network_acl_id=current,
        vpc_id=vpc_id,
    )


@action(
    "aws.ec2.restore_subnet_traffic",
    effect="mutate",
    calls=[
        ("ec2", "DescribeNetworkAcls"),
        ("ec2", "ReplaceNetworkAclAssociation"),
        ("ec2", "DeleteNetworkAcl"),
    ],
    planner=lambda p: [
        _describe_acls(p.subnet_id),
        PlannedCall(
            "ec2",
            "ReplaceNetworkAclAssociation",
            {
                "AssociationId": from_call("ec2:DescribeNetworkAcls"),
                "NetworkAclId": p.network_acl_id
                or from_call("ec2:DescribeNetworkAcls", PREVIOUS_ACL_TAG),
            },
        ),
        PlannedCall(
            "ec2",
            "DeleteNetworkAcl",
            {"NetworkAclId": from_call("ec2:DescribeNetworkAcls")},
            note="deletes irbook's quarantine ACL, which no other subnet uses",
        ),
    ],
    simulate=lambda p, run: SubnetResult(
        subnet_id=p.subnet_id,
        network_acl_id=p.network_acl_id or from_call("ec2:DescribeNetworkAcls"),
        previous_network_acl_id=from_call("ec2:DescribeNetworkAcls"),
    ),
    compensation="aws.ec2.deny_subnet_traffic",
    undo=lambda p, r: {"subnet_id": p.subnet_id},
    idempotent=True,
)
def restore_subnet_traffic(ctx: ActionContext, params: RestoreSubnetParams) -> SubnetResult:
    """Give a subnet its network ACL back and delete irbook's deny-all ACL."""
    ec2 = ctx.aws("ec2")
    acl, association = _association(ec2, params.subnet_id)
    tags = tag_dict(acl.get("Tags"))
    current = str(acl["NetworkAclId"])
    wanted = params.network_acl_id or tags.get(PREVIOUS_ACL_TAG)
    if not wanted:
        raise ActionFailed(
            f"subnet {params.subnet_id} is not under an irbook quarantine ACL; "
            "give network_acl_id to say which ACL to put back"
        )
    result = SubnetResult(
        subnet_id=params.subnet_id,
        network_acl_id=wanted,
        previous_network_acl_id=current,
        vpc_id=str(acl.get("VpcId", "")),
    )
    if current == wanted:
        return result.model_copy(update={"already_done": True})
    call(
        ec2,
        "ReplaceNetworkAclAssociation",
        f"subnet {params.subnet_id}",
        AssociationId=association,
        NetworkAclId=wanted,
    )
    if tags.get(PURPOSE_TAG) == "quarantine" and tags.get(SUBNET_TAG) == params.subnet_id:
        call(ec2, "DeleteNetworkAcl", f"network ACL {current}", NetworkAclId=current)
    ctx.note(f"subnet {params.subnet_id}: network ACL {current} -> {wanted}")
    return result


# --- evidence: volume snapshots ----------------------------------------------------------------


class SnapshotVolumesParams(InstanceParams):
    retention_days: int | None = Field(
        90,
        ge=1,
        le=36500,
        description="days the snapshots stay locked (EBS snapshot lock, compliance mode); "
        "null leaves them unlocked",
    )


class SnapshotVolumesResult(AwsResult):
    instance_id: str
    snapshots: dict[str, str] = Field(default_factory=dict, description="volume id -> snapshot id")
    locked_until: str | None = None


def _snapshot_tags(run: RunInfo, instance_id: str) -> dict[str, str]:
    return {
        "irbook:run-id": run.run_id,
        "irbook:instance-id": instance_id,
        "irbook:incident": run.incident_key,
        PURPOSE_TAG: "evidence",
    }


def _snapshot_filters(run_id: str, instance_id: str) -> list[dict[str, Any]]:
    return [
        {"Name": "tag:irbook:run-id", "Values": [run_id]},
        {"Name": "tag:irbook:instance-id", "Values": [instance_id]},
    ]


def _plan_snapshots(params: SnapshotVolumesParams) -> list[PlannedCall]:
    tags = {
        "irbook:run-id": RUN_ID,
        "irbook:instance-id": params.instance_id,
        "irbook:incident": "<incident key>",
        PURPOSE_TAG: "evidence",
    }
    calls = [
        PlannedCall(
            "ec2",
            "DescribeSnapshots",
            {"OwnerIds": ["self"], "Filters": _snapshot_filters(RUN_ID, params.instance_id)},
            note="snapshots an earlier try of this run took mean done",
        ),
        PlannedCall(
            "ec2",
            "CreateSnapshots",
            {
                "InstanceSpecification": {
                    "InstanceId": params.instance_id,
                    "ExcludeBootVolume": False,
                },
                "Description": f"irbook evidence: {params.instance_id} (run {RUN_ID})",
                "TagSpecifications": [{"ResourceType": "snapshot", "Tags": tag_list(tags)}],
                "CopyTagsFromSource": "volume",
            },
            note="one crash-consistent snapshot per attached EBS volume",
        ),
    ]
    if params.retention_days is not None:
        calls.append(
            PlannedCall(
                "ec2",
                "LockSnapshot",
                {
                    "SnapshotId": from_call("ec2:CreateSnapshots"),
                    "LockMode": "compliance",
                    "LockDuration": params.retention_days,
                },
                note="once per snapshot",
            )
        )
    return calls


@action(
    "aws.ec2.snapshot_volumes",
    effect="mutate",
    calls=[
        ("ec2", "DescribeSnapshots"),
        ("ec2", "CreateSnapshots"),
        ("ec2", "LockSnapshot"),
    ],
    extra_permissions=_TAGGED_AT_CREATION,
    planner=_plan_snapshots,
    simulate=lambda p, run: SnapshotVolumesResult(
        instance_id=p.instance_id,
        snapshots={from_call("ec2:CreateSnapshots"): from_call("ec2:CreateSnapshots")},
        locked_until=None if p.retention_days is None else f"<now + {p.retention_days} days>",
    ),
    irreversible="locked snapshots cannot be deleted until their lock expires",
    idempotent=True,
    evidence=True,
)
def snapshot_volumes(ctx: ActionContext, params: SnapshotVolumesParams) -> SnapshotVolumesResult:
    """Snapshot every EBS volume of an instance at one moment (crash-consistent), tagged
    with the run and incident, and lock the snapshots so they outlive any cleanup."""
    ec2 = ctx.aws("ec2")
    what = f"EC2 instance {params.instance_id}"
    earlier = call(
        ec2,
        "DescribeSnapshots",
        f"snapshots of {what}",
        OwnerIds=["self"],
        Filters=_snapshot_filters(ctx.run.run_id, params.instance_id),
    ).get("Snapshots", [])
    if earlier:
        return SnapshotVolumesResult(
            instance_id=params.instance_id,
            snapshots={str(s["VolumeId"]): str(s["SnapshotId"]) for s in earlier},
            already_done=True,
        )
    tags = _snapshot_tags(ctx.run, params.instance_id)
    created = call(
        ec2,
        "CreateSnapshots",
        what,
        InstanceSpecification={"InstanceId": params.instance_id, "ExcludeBootVolume": False},
        Description=f"irbook evidence: {params.instance_id} (run {ctx.run.run_id})",
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": tag_list(tags)}],
        CopyTagsFromSource="volume",
    ).get("Snapshots", [])
    snapshots = {str(s["VolumeId"]): str(s["SnapshotId"]) for s in created}
    if not snapshots:
        raise ActionFailed(f"{what} has no EBS volumes to snapshot")
    until = None
    if params.retention_days is not None:
        for snapshot in snapshots.values():
            call(
                ec2,
                "LockSnapshot",
                f"snapshot {snapshot} of {what}",
                SnapshotId=snapshot,
                LockMode="compliance",
                LockDuration=params.retention_days,
            )
        until = iso(now() + dt.timedelta(days=params.retention_days))
    ctx.note(
        f"{what}: {len(snapshots)} snapshot(s) {', '.join(snapshots.values())}"
        + (f", locked until {until}" if until else "")
    )
    return SnapshotVolumesResult(
        instance_id=params.instance_id, snapshots=snapshots, locked_until=until
    )
