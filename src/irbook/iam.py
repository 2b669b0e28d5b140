"""The least-privilege IAM policy a playbook needs, from its actions' declared permissions.

Only AWS actions count (Slack scopes and Jira rights are not IAM). Compensations are
included, since `rollback: auto` and `irbook rollback` run them with the same credentials;
what only they need gets statements of its own (`IrbookRollback...`).

Resources are scoped where the playbook says what a step acts on before it runs: a literal
value in its `with`, or, given an alert (and `--param`s), a value that comes from the
alert or the inputs only, never from an upstream step's output (which only the run knows).
Account, region and partition come from the step's or playbook's `aws:` target, else
from the alert, else stay `*`. What is not known becomes `*` inside the ARN
(`arn:*:iam::*:user/*`): still only IAM users, not every resource.

`"Resource": "*"` stays where it must, and its statement's `Sid` says why (JSON has no
comments; `notes` repeats it in words for stderr):
- `...ApiNeedsAnyResource`: the API has no resource-level permissions (CloudTrail
  LookupEvents, EC2 Describe*), per AWS's Service Authorization Reference;
- `...AnyResource`: irbook does not know the resource before the run (the model artifacts
  an endpoint serves, a resource from an upstream step), or does not scope that action.
A narrower policy that denied a call the playbook makes would be worse than `*`, so every
rule here errs toward the wider pattern.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from irbook import expr
from irbook.model import Playbook
from irbook.model.alert import Alert
from irbook.model.step import Step
from irbook.registry import REGISTRY, Registry

API_NEEDS_ANY = "ApiNeedsAnyResource"
RUN_TIME = "AnyResource"
REASONS = {
    API_NEEDS_ANY: "the API has no resource-level permissions, so IAM requires *",
    RUN_TIME: "the resource is known only when the step runs (or irbook does not scope it)",
}
_ACCOUNT = re.compile(r"\d{12}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
# IAM names may sit under a path (user/team/name): both forms, never a looser prefix.
_NAME = re.compile(r"[\w+=,.@-]{1,128}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_ENDPOINT = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")

# Actions whose APIs take no resource ARN (Service Authorization Reference: no resource
# type listed, so "*").
NO_RESOURCE_LEVEL = frozenset(
    {
        "cloudtrail:LookupEvents",
        "ec2:DescribeTags",
        "ec2:DescribeInstances",
        "ec2:DescribeSnapshots",
        "ec2:DescribeNetworkAcls",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeVolumes",
        "ec2:DescribeSubnets",
    }
)
ACCESS_KEY_ACTIONS = frozenset(
    {"aws.iam.deactivate_access_key", "aws.iam.activate_access_key", "aws.iam.delete_access_key"}
)
ACCESS_KEY_PERMISSIONS = frozenset(
    {"iam:GetAccessKeyLastUsed", "iam:ListAccessKeys", "iam:UpdateAccessKey", "iam:DeleteAccessKey"}
)
EVIDENCE_ACTIONS = frozenset({"aws.sagemaker.snapshot_model", "aws.s3.preserve_objects"})
EVIDENCE_BUCKET_PERMISSIONS = frozenset(
    {
        "s3:GetBucketObjectLockConfiguration",
        "s3:CreateBucket",
        "s3:PutBucketObjectLockConfiguration",
        "s3:PutBucketVersioning",
    }
)
# CopyObject into the evidence bucket: PutObject, and PutObjectTagging for the copied tags
EVIDENCE_OBJECT_PERMISSIONS = frozenset(
    {"s3:PutObject", "s3:PutObjectRetention", "s3:PutObjectTagging"}
)
# Block Public Access of the bucket the step names (DeletePublicAccessBlock is authorised
# as s3:PutBucketPublicAccessBlock), on the bucket's ARN
PUBLIC_ACCESS_ACTIONS = frozenset({"aws.s3.block_public_access", "aws.s3.restore_public_access"})
PUBLIC_ACCESS_PERMISSIONS = frozenset(
    {"s3:GetBucketPublicAccessBlock", "s3:PutBucketPublicAccessBlock"}
)
TAG_ACTIONS = frozenset({"aws.tag_resource", "aws.untag_resource"})
# Tagging permissions that take the tagged resource's own ARN, by the ARN's service and
# resource type (None: any type of that service).
TAG_BY_ARN: dict[str, tuple[str, str | None]] = {
    "iam:ListUserTags": ("iam", "user"),
    "iam:TagUser": ("iam", "user"),
    "iam:UntagUser": ("iam", "user"),
    "iam:ListRoleTags": ("iam", "role"),
    "iam:TagRole": ("iam", "role"),
    "iam:UntagRole": ("iam", "role"),
    "s3:GetBucketTagging": ("s3", None),
    "s3:PutBucketTagging": ("s3", None),
    "sns:ListTagsForResource": ("sns", None),
    "sns:TagResource": ("sns", None),
    "sns:UntagResource": ("sns", None),
    "secretsmanager:DescribeSecret": ("secretsmanager", None),
    "secretsmanager:TagResource": ("secretsmanager", None),
    "secretsmanager:UntagResource": ("secretsmanager", None),
    "lambda:ListTags": ("lambda", None),
    "lambda:TagResource": ("lambda", None),
    "lambda:UntagResource": ("lambda", None),
    "sagemaker:ListTags": ("sagemaker", None),
    "sagemaker:AddTags": ("sagemaker", None),
    "sagemaker:DeleteTags": ("sagemaker", None),
    "ec2:CreateTags": ("ec2", None),
    "ec2:DeleteTags": ("ec2", None),
}
_TAGGABLE_ARN = re.compile(r"arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:(\d{12})?:[^*?\s]+")

Known = Mapping[str, str | None]  # a step's string params; None when unknown until the run


@dataclass(frozen=True)
class _Where:
    partition: str
    account: str
    region: str

    def arn(self, service: str, resource: str, *, regional: bool = True) -> str:
        region = self.region if regional else ""
        account = self.account if service != "s3" else ""
        return f"arn:{self.partition}:{service}:{region}:{account}:{resource}"


def _where(playbook: Playbook, step: Step, alert: Alert | None) -> _Where:
    """The partition, account and region of the step's ARNs: where the engine sends its
    calls (Playbook.aws_for), the alert's account and region where that leaves AWS's
    default, else `*`."""
    dest = playbook.aws_for(step)
    account = region = "*"
    if alert is not None:
        if alert.account and _ACCOUNT.fullmatch(alert.account):
            account = alert.account
        if alert.region and _REGION.fullmatch(alert.region):
            region = alert.region
    account = dest.account or account
    region = dest.region or region
    partition = "*"
    if region != "*":
        partition = "aws-cn" if region.startswith("cn-") else "aws"
        partition = "aws-us-gov" if region.startswith("us-gov-") else partition
    partition = dest.partition or partition
    return _Where(partition, account, region)


def _known(
    step: Step, iterations: list[dict[str, Any]] | None, planned: bool
) -> list[dict[str, str | None]]:
    """The step's string params, once per iteration when the plan knows the items."""
    safe_roots = {"inputs", "alert"}
    if step.for_each is not None and planned:
        each = step.for_each  # a template, or a list that may hold templates
        roots = {r.path[0] for r in _refs(each if isinstance(each, str) else json.dumps(each))}
        if roots <= safe_roots:
            safe_roots = safe_roots | {"item"}
    out: list[dict[str, str | None]] = []
    for params in iterations if iterations else [{}]:
        values: dict[str, str | None] = {}
        for name, raw in step.with_.items():
            if not isinstance(raw, str):
                continue
            if not expr.is_template(raw):
                values[name] = raw
            elif planned and {r.path[0] for r in _refs(raw)} <= safe_roots:
                value = params.get(name)
                values[name] = value if isinstance(value, str) and value else None
            else:
                values[name] = None
        out.append(values)
    return out


def _refs(text: str) -> list[expr.Reference]:
    try:
        template = expr.parse_template(text)
    except expr.ExprError:
        return [expr.Reference(("?",), 0)]  # not known: treated as unsafe
    return [ref for node, _ in template.expressions for ref in expr.references(node)]


def _named(value: str | None, pattern: re.Pattern[str]) -> str:
    """A name to put in an ARN, or `*` when it is unknown or does not look like a name
    (a value with `*`, `?` or `:` in it must never widen or bend the pattern)."""
    return value if value is not None and pattern.fullmatch(value) else "*"


def _resources(perm: str, key: str, params: Known, where: _Where) -> list[str] | str:
    """The ARN patterns `perm` needs for a step of action `key`, or the reason for `*`."""
    if key in TAG_ACTIONS:
        return _tag_resources(perm, params.get("arn"))
    if perm in NO_RESOURCE_LEVEL:
        return API_NEEDS_ANY
    if key in ACCESS_KEY_ACTIONS and perm in ACCESS_KEY_PERMISSIONS:
        user = _named(params.get("user_name"), _NAME)
        base = where.arn("iam", "user", regional=False)
        return [f"{base}/*"] if user == "*" else [f"{base}/{user}", f"{base}/*/{user}"]
    if (
        key in EVIDENCE_ACTIONS
        and perm in EVIDENCE_BUCKET_PERMISSIONS | EVIDENCE_OBJECT_PERMISSIONS
    ):
        bucket = where.arn("s3", _named(params.get("evidence_bucket"), _BUCKET), regional=False)
        return [bucket] if perm in EVIDENCE_BUCKET_PERMISSIONS else [f"{bucket}/*"]
    if key in PUBLIC_ACCESS_ACTIONS and perm in PUBLIC_ACCESS_PERMISSIONS:
        return [where.arn("s3", _named(params.get("bucket"), _BUCKET), regional=False)]
    if key == "aws.sagemaker.snapshot_model" and perm.startswith("sagemaker:Describe"):
        if perm == "sagemaker:DescribeEndpoint":
            name = _named(params.get("endpoint_name"), _ENDPOINT)
            # SageMaker writes names into ARNs in lower case
            names = dict.fromkeys([name, name.lower()])
            return [where.arn("sagemaker", f"endpoint/{n}") for n in names]
        kind = {"sagemaker:DescribeEndpointConfig": "endpoint-config"}.get(perm, "model")
        return [where.arn("sagemaker", f"{kind}/*")]  # named by the endpoint, at run time
    return RUN_TIME


def _tag_resources(perm: str, arn: str | None) -> list[str] | str:
    """Tagging calls go to the service the resource's ARN names, on that ARN."""
    if arn is None or not _TAGGABLE_ARN.fullmatch(arn):
        return API_NEEDS_ANY if perm in NO_RESOURCE_LEVEL else RUN_TIME
    parts = arn.split(":", 5)
    if parts[2] != _service(perm):
        return []  # a resource of another service: this call is never made for it
    if perm in NO_RESOURCE_LEVEL:
        return API_NEEDS_ANY
    if perm not in TAG_BY_ARN:
        return RUN_TIME
    service, kind = TAG_BY_ARN[perm]
    if kind and not parts[5].startswith(kind + "/"):
        return []  # an IAM role's tags for a user, or the other way round
    if service == "lambda":
        arn = ":".join(arn.split(":")[:7])  # tags belong to the unqualified function
    return [arn]


def _service(perm: str) -> str:
    return perm.split(":", 1)[0]


def _sid(prefix: str, service: str) -> str:
    return prefix + "".join(part.capitalize() for part in service.replace("_", "-").split("-"))


class _Grants:
    """permission -> ARN patterns, or the reason it needs `*` (which absorbs patterns)."""

    def __init__(self) -> None:
        self.grants: dict[str, set[str] | str] = {}

    def add(self, perm: str, resources: list[str] | str) -> None:
        have = self.grants.get(perm)
        if isinstance(resources, str):
            if not isinstance(have, str) or resources == API_NEEDS_ANY:
                self.grants[perm] = resources
        elif have is None:
            self.grants[perm] = set(resources)
        elif not isinstance(have, str):
            have.update(resources)


def _statements(prefix: str, grants: Mapping[str, set[str] | str]) -> list[dict[str, Any]]:
    by_service: dict[str, dict[tuple[str, ...] | str, list[str]]] = {}
    for perm, resources in grants.items():
        if not isinstance(resources, str) and not resources:
            continue  # needed by no item this policy is for
        group = resources if isinstance(resources, str) else tuple(sorted(resources))
        by_service.setdefault(_service(perm), {}).setdefault(group, []).append(perm)
    out: list[dict[str, Any]] = []
    for service in sorted(by_service):
        base = _sid(prefix, service)
        scoped = 0
        groups = by_service[service]
        for group in sorted(groups, key=lambda g: (isinstance(g, str), str(g))):
            resource: str | list[str]
            if isinstance(group, str):
                sid, resource = base + group, "*"
            else:
                scoped += 1
                sid = base + ("" if scoped == 1 else str(scoped))
                resource = list(group) if len(group) > 1 else group[0]
            out.append(
                {
                    "Sid": sid,
                    "Effect": "Allow",
                    "Action": sorted(groups[group]),
                    "Resource": resource,
                }
            )
    return out


def policy_with_notes(
    playbook: Playbook,
    registry: Registry = REGISTRY,
    *,
    rollback: bool = True,
    alert: Alert | None = None,
    params: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The policy document, and one line per statement left on `*` saying why."""
    iterations: dict[str, list[dict[str, Any]]] = {}
    planned = alert is not None
    if planned:
        from irbook.plan import build_plan

        plan = build_plan(playbook, alert, params, registry=registry)
        for ps in plan.steps:
            if ps.status == "run" and ps.iterations and not any(i.error for i in ps.iterations):
                iterations[ps.id] = [dict(i.params) for i in ps.iterations]
    forward, undo = _Grants(), _Grants()
    for step in playbook.steps:
        spec = registry.get(step.action)
        known_here = planned and step.id in iterations
        values = _known(step, iterations.get(step.id), known_here)
        where = _where(playbook, step, alert)
        keys = [(spec.key, spec.permissions, forward)]
        if rollback and spec.compensation:
            comp = registry.get(spec.compensation)
            keys.append((comp.key, comp.permissions, undo))
        for key, perms, grants in keys:
            if not key.startswith("aws."):
                continue
            for perm in perms:
                for known in values:
                    grants.add(perm, _resources(perm, key, known, where))
    rollback_only = {p: r for p, r in undo.grants.items() if p not in forward.grants}
    for perm, resources in undo.grants.items():
        if perm in forward.grants:
            forward.add(perm, sorted(resources) if not isinstance(resources, str) else resources)
    statements = _statements("Irbook", forward.grants) + _statements(
        "IrbookRollback", rollback_only
    )
    notes = [
        f"{s['Sid']}: Resource * for {', '.join(s['Action'])}: "
        + REASONS[API_NEEDS_ANY if s["Sid"].endswith(API_NEEDS_ANY) else RUN_TIME]
        for s in statements
        if s["Resource"] == "*"
    ]
    return {"Version": "2012-10-17", "Statement": statements}, notes


def policy_for(
    playbook: Playbook,
    registry: Registry = REGISTRY,
    *,
    rollback: bool = True,
    alert: Alert | None = None,
    params: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An IAM policy document: per service, statements of actions that share resources."""
    return policy_with_notes(playbook, registry, rollback=rollback, alert=alert, params=params)[0]


def arn_shape_errors(resources: Iterable[str]) -> list[str]:
    """Resources that are neither `*` nor shaped like an ARN (six colon-separated parts,
    a known partition or `*`, a service, and a resource), for tests and reviewers."""
    shape = re.compile(r"arn:(aws|aws-cn|aws-us-gov|\*):[a-z0-9-]+:([a-z0-9-]*|\*):(\d{12}|\*|):.+")
    return [r for r in resources if r != "*" and not shape.fullmatch(r)]
