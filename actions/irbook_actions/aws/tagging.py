"""Tag any resource an alert names, through that service's own tagging calls.

Each service tags its own way (IAM per user or role, S3 replaces a bucket's whole tag set,
EC2 by resource id), so the ARN's service picks the calls. The previous values of tags we
overwrite are read first and recorded, so `aws.untag_resource` restores them instead of
just deleting keys. ARNs of services not listed here fail with a message naming them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator

from irbook.registry import ActionContext, ActionFailed, PlannedCall, action
from irbook_actions.aws._base import (
    AwsParams,
    AwsResult,
    call,
    client,
    from_call,
    tag_dict,
    tag_list,
)

ARN = r"^arn:aws[a-zA-Z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{0,12}:.+$"

Call = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Target:
    """How to read, add and remove tags of one resource."""

    service: str  # the boto3 client name, which is also the IAM prefix
    region: str | None
    what: str
    read: Call
    parse: Callable[[Any], dict[str, str]]
    tag: Callable[[Mapping[str, str]], Call]
    untag: Callable[[list[str]], Call]
    absent: tuple[str, ...] = ()  # read errors that mean "no tags yet"
    replaces_all: bool = False  # S3: one call writes the whole tag set


def target(arn: str) -> Target:
    """The tagging calls for an ARN, or ActionFailed naming what is not supported."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        raise ActionFailed(f"{arn!r} is not an ARN")
    _, _, service, region, _, resource = parts
    where = region or None
    if service == "iam":
        kind, _, rest = resource.partition("/")
        name = rest.rsplit("/", 1)[-1]
        if kind == "user" and name:
            ids = {"UserName": name}
            return Target(
                "iam",
                None,
                f"IAM user {name}",
                ("ListUserTags", ids),
                lambda a: tag_dict(a.get("Tags")),
                lambda t: ("TagUser", {**ids, "Tags": tag_list(t)}),
                lambda k: ("UntagUser", {**ids, "TagKeys": k}),
            )
        if kind == "role" and name:
            ids = {"RoleName": name}
            return Target(
                "iam",
                None,
                f"IAM role {name}",
                ("ListRoleTags", ids),
                lambda a: tag_dict(a.get("Tags")),
                lambda t: ("TagRole", {**ids, "Tags": tag_list(t)}),
                lambda k: ("UntagRole", {**ids, "TagKeys": k}),
            )
    elif service == "s3" and resource and "/" not in resource:
        bucket = {"Bucket": resource}
        return Target(
            "s3",
            None,
            f"S3 bucket {resource}",
            ("GetBucketTagging", bucket),
            lambda a: tag_dict(a.get("TagSet")),
            lambda t: ("PutBucketTagging", {**bucket, "Tagging": {"TagSet": tag_list(t)}}),
            lambda k: ("DeleteBucketTagging", bucket),
            absent=("NoSuchTagSet",),
            replaces_all=True,
        )
    elif service == "sagemaker":
        ids = {"ResourceArn": arn}
        return Target(
            "sagemaker",
            where,
            f"SageMaker resource {resource}",
            ("ListTags", ids),
            lambda a: tag_dict(a.get("Tags")),
            lambda t: ("AddTags", {**ids, "Tags": tag_list(t)}),
            lambda k: ("DeleteTags", {**ids, "TagKeys": k}),
        )
    elif service == "lambda" and resource.startswith("function:"):
        function_arn = ":".join(arn.split(":")[:7])  # tags belong to the unqualified function
        ids = {"Resource": function_arn}
        return Target(
            "lambda",
            where,
            f"Lambda function {resource.split(':')[1]}",
            ("ListTags", ids),
            lambda a: {str(k): str(v) for k, v in (a.get("Tags") or {}).items()},
            lambda t: ("TagResource", {**ids, "Tags": dict(t)}),
            lambda k: ("UntagResource", {**ids, "TagKeys": k}),
        )
    elif service == "ec2" and re.match(r"^[a-z-]+/[a-z]+-[0-9a-f]+$", resource):
        resource_id = resource.split("/", 1)[1]
        return Target(
            "ec2",
            where,
            f"EC2 resource {resource_id}",
            ("DescribeTags", {"Filters": [{"Name": "resource-id", "Values": [resource_id]}]}),
            lambda a: tag_dict(a.get("Tags")),
            lambda t: ("CreateTags", {"Resources": [resource_id], "Tags": tag_list(t)}),
            lambda k: ("DeleteTags", {"Resources": [resource_id], "Tags": [{"Key": x} for x in k]}),
        )
    elif service == "secretsmanager" and resource.startswith("secret:"):
        ids = {"SecretId": arn}
        return Target(
            "secretsmanager",
            where,
            f"secret {resource.split(':', 1)[1]}",
            ("DescribeSecret", ids),
            lambda a: tag_dict(a.get("Tags")),
            lambda t: ("TagResource", {**ids, "Tags": tag_list(t)}),
            lambda k: ("UntagResource", {**ids, "TagKeys": k}),
        )
    elif service == "sns":
        ids = {"ResourceArn": arn}
        return Target(
            "sns",
            where,
            f"SNS topic {resource}",
            ("ListTagsForResource", ids),
            lambda a: tag_dict(a.get("Tags")),
            lambda t: ("TagResource", {**ids, "Tags": tag_list(t)}),
            lambda k: ("UntagResource", {**ids, "TagKeys": k}),
        )
    elif service == "apigateway":
        ids = {"resourceArn": arn}
        return Target(
            "apigateway",
            where,
            f"API Gateway resource {resource}",
            ("GetTags", ids),
            lambda a: {str(k): str(v) for k, v in (a.get("tags") or {}).items()},
            lambda t: ("TagResource", {**ids, "tags": dict(t)}),
            lambda k: ("UntagResource", {**ids, "tagKeys": k}),
        )
    elif service == "wafv2":
        ids = {"ResourceARN": arn}
        return Target(
            "wafv2",
            where,
            f"WAF resource {resource}",
            ("ListTagsForResource", ids),
            lambda a: tag_dict(a.get("TagInfoForResource", {}).get("TagList")),
            lambda t: ("TagResource", {**ids, "Tags": tag_list(t)}),
            lambda k: ("UntagResource", {**ids, "TagKeys": k}),
        )
    raise ActionFailed(
        f"tagging {arn} is not supported: irbook tags IAM users and roles, S3 buckets, "
        "SageMaker, Lambda functions, EC2, Secrets Manager, SNS, API Gateway and WAF resources"
    )


def _read(ctx: ActionContext, where: Target) -> tuple[Any, dict[str, str]]:
    api = client(ctx, where.service, where.region)
    operation, kwargs = where.read
    answer = call(api, operation, where.what, absent=where.absent, **kwargs)
    return api, {} if answer is None else where.parse(answer)


def _do(api: Any, where: Target, step: Call) -> None:
    operation, kwargs = step
    call(api, operation, where.what, **kwargs)


def _planned(where: Target, step: Call, note: str = "") -> PlannedCall:
    return PlannedCall(where.service, step[0], step[1], note=note)


# The calls of reading and tagging, then untagging, each service `target` knows. (S3's
# DeleteBucketTagging, made live when no tag remains, is authorised as PutBucketTagging.)
TAG_CALLS = [
    ("iam", "ListUserTags"),
    ("iam", "TagUser"),
    ("iam", "ListRoleTags"),
    ("iam", "TagRole"),
    ("s3", "GetBucketTagging"),
    ("s3", "PutBucketTagging"),
    ("sagemaker", "ListTags"),
    ("sagemaker", "AddTags"),
    ("lambda", "ListTags"),
    ("lambda", "TagResource"),
    ("ec2", "DescribeTags"),
    ("ec2", "CreateTags"),
    ("secretsmanager", "DescribeSecret"),
    ("secretsmanager", "TagResource"),
    ("sns", "ListTagsForResource"),
    ("sns", "TagResource"),
    ("apigateway", "GetTags"),
    ("apigateway", "TagResource"),
    ("wafv2", "ListTagsForResource"),
    ("wafv2", "TagResource"),
]
UNTAG_CALLS = [
    *TAG_CALLS,
    ("iam", "UntagUser"),
    ("iam", "UntagRole"),
    ("sagemaker", "DeleteTags"),
    ("lambda", "UntagResource"),
    ("ec2", "DeleteTags"),
    ("secretsmanager", "UntagResource"),
    ("sns", "UntagResource"),
    ("apigateway", "UntagResource"),
    ("wafv2", "UntagResource"),
]


def _check_tags(tags: dict[str, str]) -> dict[str, str]:
    for key, value in tags.items():
        if not 1 <= len(key) <= 128 or key.lower().startswith("aws:"):
            raise ValueError(f"tag key {key!r} must be 1-128 characters, not starting with aws:")
        if len(value) > 256:
            raise ValueError(f"the value of tag {key!r} is longer than 256 characters")
    return tags


class TagParams(AwsParams):
    arn: str = Field(pattern=ARN, description="the resource's ARN")
    tags: dict[str, str] = Field(
        max_length=50, description="tag key -> value (empty: nothing to do, as an undo may ask)"
    )

    @field_validator("tags")
    @classmethod
    def valid_tags(cls, tags: dict[str, str]) -> dict[str, str]:
        return _check_tags(tags)


class TagResult(AwsResult):
    arn: str
    tags: dict[str, str] = Field(description="the tags as this step left them")
    added: list[str] = Field(default_factory=list, description="keys the resource did not have")
    replaced: dict[str, str] = Field(
        default_factory=dict, description="keys whose earlier value this step overwrote"
    )


def _plan_tag(params: TagParams) -> list[PlannedCall]:
    if not params.tags:
        return []
    where = target(params.arn)
    read = _planned(where, where.read, note="records values this step overwrites, for the undo")
    if where.replaces_all:
        operation, kwargs = where.tag(params.tags)
        merged = from_call(f"{where.service}:{where.read[0]}", "merged with the new tags")
        return [
            read,
            PlannedCall(where.service, operation, {**kwargs, "Tagging": {"TagSet": merged}}),
        ]
    return [read, _planned(where, where.tag(params.tags), note="skipped when all tags are set")]


@action(
    "aws.tag_resource",
    effect="mutate",
    calls=TAG_CALLS,
    planner=_plan_tag,
    simulate=lambda p, run: TagResult(arn=p.arn, tags=dict(p.tags), added=list(p.tags)),
    compensation="aws.untag_resource",
    undo=lambda p, r: {
        "arn": p.arn,
        "tag_keys": list(r.added) if r is not None else list(p.tags),
        "restore": dict(r.replaced) if r is not None else {},
    },
    idempotent=True,
)
def tag_resource(ctx: ActionContext, params: TagParams) -> TagResult:
    """Mark a resource as part of an incident, so that owners, cost reports and later
    automation see it; the earlier values of overwritten tags are kept for the undo."""
    if not params.tags:
        return TagResult(arn=params.arn, tags={}, already_done=True)
    where = target(params.arn)
    api, current = _read(ctx, where)
    added = [k for k in params.tags if k not in current]
    replaced = {k: current[k] for k, v in params.tags.items() if k in current and current[k] != v}
    result = TagResult(arn=params.arn, tags=dict(params.tags), added=added, replaced=replaced)
    if not added and not replaced:
        return result.model_copy(update={"already_done": True})
    _do(api, where, where.tag({**current, **params.tags} if where.replaces_all else params.tags))
    ctx.note(f"tagged {where.what}: {', '.join(f'{k}={v}' for k, v in params.tags.items())}")
    return result


class UntagParams(AwsParams):
    arn: str = Field(pattern=ARN, description="the resource's ARN")
    tag_keys: list[str] = Field(default_factory=list, max_length=50, description="tags to remove")
    restore: dict[str, str] = Field(
        default_factory=dict, max_length=50, description="tags to set back to these values"
    )

    @field_validator("restore")
    @classmethod
    def valid_tags(cls, tags: dict[str, str]) -> dict[str, str]:
        return _check_tags(tags)


class UntagResult(AwsResult):
    arn: str
    removed: dict[str, str] = Field(
        default_factory=dict, description="removed keys and the values they had"
    )
    restored: dict[str, str] = Field(default_factory=dict, description="keys set back")
    replaced: dict[str, str] = Field(
        default_factory=dict, description="the values the restored keys had before"
    )


def _plan_untag(params: UntagParams) -> list[PlannedCall]:
    if not params.tag_keys and not params.restore:
        return []
    where = target(params.arn)
    calls = [_planned(where, where.read, note="records removed values, for the undo")]
    if where.replaces_all:
        operation, kwargs = where.tag({})
        rest = from_call(f"{where.service}:{where.read[0]}", "without the removed tags")
        calls.append(
            PlannedCall(
                where.service,
                operation,
                {**kwargs, "Tagging": {"TagSet": rest}},
                note="s3:DeleteBucketTagging instead when no tags remain",
            )
        )
        return calls
    if params.tag_keys:
        calls.append(_planned(where, where.untag(list(params.tag_keys))))
    if params.restore:
        calls.append(_planned(where, where.tag(params.restore), note="puts back earlier values"))
    return calls


@action(
    "aws.untag_resource",
    effect="mutate",
    calls=UNTAG_CALLS,
    planner=_plan_untag,
    simulate=lambda p, run: UntagResult(
        arn=p.arn,
        removed={k: "<current value>" for k in p.tag_keys},
        restored=dict(p.restore),
        already_done=not p.tag_keys and not p.restore,
    ),
    compensation="aws.tag_resource",
    undo=lambda p, r: {
        "arn": p.arn,
        "tags": {**r.removed, **r.replaced} if r is not None else {},
    },
    idempotent=True,
)
def untag_resource(ctx: ActionContext, params: UntagParams) -> UntagResult:
    """Remove the tags a tagging step added and put back the values it overwrote."""
    if not params.tag_keys and not params.restore:
        return UntagResult(arn=params.arn, already_done=True)
    where = target(params.arn)
    api, current = _read(ctx, where)
    removed = {k: current[k] for k in params.tag_keys if k in current and k not in params.restore}
    restore = {k: v for k, v in params.restore.items() if current.get(k) != v}
    result = UntagResult(
        arn=params.arn,
        removed=removed,
        restored=restore,
        replaced={k: current[k] for k in restore if k in current},
    )
    if not removed and not restore:
        return result.model_copy(update={"already_done": True})
    if where.replaces_all:
        remaining = {k: v for k, v in current.items() if k not in removed}
        remaining.update(restore)
        _do(api, where, where.tag(remaining) if remaining else where.untag([]))
    else:
        if removed:
            _do(api, where, where.untag(list(removed)))
        if restore:
            _do(api, where, where.tag(restore))
    ctx.note(f"untagged {where.what}: removed {sorted(removed)}, restored {sorted(restore)}")
    return result
