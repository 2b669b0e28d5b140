"""GuardDuty findings delivered by EventBridge (`detail-type: "GuardDuty Finding"`).

Mapping: id = detail.id (or detail.arn), type = detail.type, severity = detail.severity
(GuardDuty's own 0-10 scale, kept), label from GuardDuty's bands, time = detail.updatedAt.
The actor comes from resource.accessKeyDetails and the remote IP of the action; resources
from every *Details block GuardDuty documents, including AI Protection's
resource.modelDetails (Bedrock / SageMaker models invoked) and
resource.bedrockGuardrailDetails (the guardrail that intervened).

GuardDuty gives a principal *id* (`AROA...:i-0abc`), not an ARN: actor.principal_arn is set
only when the id is itself an ARN, never guessed, since playbooks act on it.

Sample findings (`detail.service.additionalInfo.sample: true`) are normalized like any
other; `irbook.triggers.normalizers.is_sample` reads the flag from `raw`.

Well-formed findings take `_fast`, which reads the dicts directly; everything else takes
the `Node` path below it, which is the reference for what a finding means and the one that
names the bad field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from irbook.model.alert import Alert
from irbook.triggers.normalizers._base import (
    DESCRIPTION_MAX,
    ID_MAX,
    ITEMS_MAX,
    TAG_KEY_MAX,
    TAG_VALUE_MAX,
    TAGS_MAX,
    TEXT_MAX,
    TITLE_MAX,
    Draft,
    Node,
    arn_tail,
    check_payload,
    first_time,
    parse_time,
    resource,
    tags_from_pairs,
)
from irbook.triggers.normalizers._options import read_options, source_name

DETAIL_TYPE = "GuardDuty Finding"
_INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}")
_PARTITION = re.compile(r"aws(-[a-z]+){0,2}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+){1,2}-\d{1,2}")
_ACCOUNT = re.compile(r"\d{12}")

# Service names in ARNs, spelled as AWS spells them in resource type names.
_SERVICES = {"sagemaker": "SageMaker", "bedrock": "Bedrock", "iam": "Iam", "s3": "S3"}
# Actions whose remote IP is the actor's: who called the API, connected, logged in.
_REMOTE_ACTIONS = (
    "awsApiCallAction",
    "kubernetesApiCallAction",
    "rdsLoginAttemptAction",
    "networkConnectionAction",
)
# Blocks naming one resource each: (key in detail.resource, type, id key, ARN key).
_BLOCKS = (
    ("eksClusterDetails", "AwsEksCluster", "name", "arn"),
    ("ecsClusterDetails", "AwsEcsCluster", "name", "arn"),
    ("lambdaDetails", "AwsLambdaFunction", "functionName", "functionArn"),
    ("rdsDbInstanceDetails", "AwsRdsDbInstance", "dbInstanceIdentifier", "dbInstanceArn"),
)


def normalize(payload: Any, options: Mapping[str, Any] | None = None) -> list[Alert]:
    opts = read_options(options)
    source = source_name(opts, "guardduty")
    root = check_payload(payload)
    alerts = _fast(payload, source)
    if alerts is not None:
        return alerts
    root.need_obj()
    detail_type = root.get("detail-type")
    if detail_type.present and detail_type.text() != DETAIL_TYPE:
        raise detail_type.error(f"expected {DETAIL_TYPE!r}")
    detail = root.get("detail")
    detail.need_obj()

    id_node = detail.get("id") if detail.get("id").present else detail.get("arn")
    if not id_node.present:
        raise detail.get("id").error("missing (and no arn either)")
    severity_node = detail.get("severity").required()
    severity = severity_node.number(strings=True)
    assert severity is not None

    draft = Draft(
        id=id_node.ident(),
        source=source,
        raw=payload,
        type=detail.get("type").need_text(),
        title=detail.get("title").text(TITLE_MAX) or "",
        description=detail.get("description").text(DESCRIPTION_MAX) or "",
        severity=severity,
        time=first_time(detail.get("updatedAt"), detail.get("createdAt"), root.get("time")),
        account=detail.get("accountId").text(numbers=True)
        or root.get("account").text(numbers=True),
        region=detail.get("region").text() or root.get("region").text(),
    )
    partition = detail.get("partition").text() or "aws"

    res = detail.get("resource")
    service = detail.get("service")
    _actor(draft, res, service)
    _resources(draft, res, service, partition)
    return [draft.build()]


def _actor(draft: Draft, res: Node, service: Node) -> None:
    keys = res.get("accessKeyDetails")
    draft.access_key_id = keys.get("accessKeyId").text()
    draft.user_name = keys.get("userName").text()
    principal = keys.get("principalId").text()
    if principal and principal.startswith("arn:"):
        draft.principal_arn = principal
    action = service.get("action")
    for name in _REMOTE_ACTIONS:
        ip = action.at(name, "remoteIpDetails", "ipAddressV4").text()
        if ip:
            draft.ip = ip
            return


def _resources(draft: Draft, res: Node, service: Node, partition: str) -> None:
    region = draft.region
    keys = res.get("accessKeyDetails")
    if keys.present:
        draft.add(
            resource(
                "AwsIamAccessKey",
                keys.get("accessKeyId").text(),
                name=keys.get("userName").text(),
                region=region,
            )
        )
    instance = res.get("instanceDetails")
    session = _instance_session(keys)
    if session and not instance.present:
        # Instance-role credentials carry the instance id as their session name
        # (`AROA...:i-0abc...`): the instance whose credentials left is the one to isolate.
        arn = _instance_arn(partition, region, draft.account, session)
        draft.add(resource("AwsEc2Instance", session, arn=arn, region=region))
    if instance.present:
        instance_id = instance.get("instanceId").text()
        arn = _instance_arn(partition, region, draft.account, instance_id)
        draft.add(
            resource(
                "AwsEc2Instance",
                instance_id,
                arn=arn,
                region=region,
                tags=tags_from_pairs(instance.get("tags")),
            )
        )
    for bucket in res.get("s3BucketDetails").items():
        name = bucket.get("name").text()
        draft.add(
            resource(
                "AwsS3Bucket",
                name,
                arn=bucket.get("arn").text(),
                name=name,
                region=region,
                tags=tags_from_pairs(bucket.get("tags")),
            )
        )
    for block, kind, id_key, arn_key in _BLOCKS:
        node = res.get(block)
        if node.present:
            name = node.get(id_key).text()
            draft.add(
                resource(
                    kind,
                    name,
                    arn=node.get(arn_key).text(),
                    name=name,
                    region=region,
                    tags=tags_from_pairs(node.get("tags")),
                )
            )
    _ai_resources(draft, res, service)


def _instance_arn(
    partition: str, region: str | None, account: str | None, instance_id: str | None
) -> str | None:
    """An EC2 instance ARN, built only from parts that look like what they claim to be, so
    a crafted region or account cannot smuggle a different resource into the ARN."""
    if (
        partition
        and _PARTITION.fullmatch(partition)
        and region
        and _REGION.fullmatch(region)
        and account
        and _ACCOUNT.fullmatch(account)
        and instance_id
        and _INSTANCE_ID.fullmatch(instance_id)
    ):
        return f"arn:{partition}:ec2:{region}:{account}:instance/{instance_id}"
    return None


def _instance_session(keys: Node) -> str | None:
    principal = keys.get("principalId").text() or ""
    if keys.get("userType").text() != "AssumedRole" or ":" not in principal:
        return None
    session = principal.rsplit(":", 1)[1]
    return session if _INSTANCE_ID.fullmatch(session) else None


def _ai_resources(draft: Draft, res: Node, service: Node) -> None:
    """AI Protection: the models invoked and the Bedrock guardrail that intervened.

    A model id may be an ARN (whose service and resource type say what it is) or a bare
    Bedrock model id; for bare ids the API call's service name tells Bedrock from SageMaker.
    """
    called = (service.at("action", "awsApiCallAction", "serviceName").text() or "").lower()
    for model in res.get("modelDetails").items():
        model_id = model.get("modelId").text()
        if not model_id:
            continue
        if model_id.startswith("arn:"):
            draft.add(
                resource(_arn_type(model_id), arn_tail(model_id), arn=model_id, region=draft.region)
            )
        else:
            kind = "AwsSageMakerEndpoint" if "sagemaker" in called else "AwsBedrockModel"
            draft.add(resource(kind, model_id, name=model_id, region=draft.region))
    guardrails = res.get("bedrockGuardrailDetails")
    arns = [g.get("arn").text() for g in guardrails.get("guardrails").items()]
    arns.append(guardrails.get("guardrailArn").text())  # deprecated, still sent
    for arn in arns:
        if arn:
            draft.add(resource("AwsBedrockGuardrail", arn_tail(arn), arn=arn, region=draft.region))


def _arn_type(arn: str) -> str:
    """`arn:aws:sagemaker:r:a:endpoint/x` -> AwsSageMakerEndpoint (the Security Hub style)."""
    parts = arn.split(":", 5)
    if len(parts) < 6:
        return "AwsResource"
    service = _SERVICES.get(parts[2], parts[2][:1].upper() + parts[2][1:])
    kind = parts[5].split("/", 1)[0] if "/" in parts[5] else parts[5].split(":", 1)[0]
    words = "".join(w[:1].upper() + w[1:] for w in kind.replace("_", "-").split("-") if w)
    return f"Aws{service}{words}" if words.isalnum() and service.isalnum() else "AwsResource"


# The fast path. It mirrors the Node path above rule for rule, for the findings it accepts:
# a change there (a new block, a new fallback) needs the same change here, and the tests in
# tests/irbook/triggers/test_guardduty_fast.py compare the two on mutated findings.


class _Decline(Exception):
    """The finding is not plainly regular: let the Node path read it.

    Raised only by the fast path's readers and caught only by `_fast`.
    """


_ABSENT: Mapping[str, Any] = MappingProxyType({})  # what an absent object reads as
_NOT_TEXT = frozenset({type(None), bool, int, float, list, dict})  # JSON values but text
_SEVERITY_CAP = 10**300  # Node.number clamps integers beyond this; declined here
_SHORT_INT = 10**100  # str() of anything smaller is short (and never hits the digit limit)


def _fast(payload: Any, source: str) -> list[Alert] | None:
    """The finding's alert read straight from the dicts, or None when in any doubt.

    Why: the webhook receiver is CPU bound (this is its hot path), and the Node path spends
    most of a finding's cost allocating a `Node` per read, for paths it only ever needs to
    name an error. This path takes about half the time; most of what is left is building
    the pydantic models (Alert, Actor, Resources), which it shares with the Node path
    through `resource` and `Draft.build`, so the final rules stay in one place.

    The invariant: the result is exactly the Node path's (the same alert, field for field,
    with the very payload as `raw`), or None, and then the Node path runs as if this one
    did not exist. So it accepts only values the Node path would use unchanged (exact JSON
    types, ASCII text within its limit, lists within their limits, ids that need no hash)
    and declines everything else: the Node path stays the reference, and the one that names
    a bad field. It never raises: values are type-checked before use, and `_Decline`, the
    only exception raised on the way, is caught here.
    """
    try:
        draft = _fast_draft(payload, source)
    except _Decline:
        return None
    return [draft.build()]


def _fast_draft(payload: Any, source: str) -> Draft:
    if type(payload) is not dict:
        raise _Decline
    detail_type = payload.get("detail-type")
    if detail_type is not None and (type(detail_type) is not str or detail_type != DETAIL_TYPE):
        raise _Decline
    detail = payload.get("detail")
    if type(detail) is not dict:
        raise _Decline
    get = detail.get

    id_value = get("id")
    finding_id = _text(get("arn") if id_value is None else id_value, ID_MAX)
    if finding_id is None or not finding_id.strip():
        raise _Decline  # absent or empty (refused), or long or not ASCII (hashed)
    severity = get("severity")
    if type(severity) is int and -_SEVERITY_CAP < severity < _SEVERITY_CAP:
        severity = float(severity)
    elif type(severity) is not float or not math.isfinite(severity):
        raise _Decline  # absent, refused, or a number written as text
    finding_type = _text(get("type"))
    if finding_type is None:
        raise _Decline
    time = parse_time(get("updatedAt"))
    if time is None:
        time = parse_time(get("createdAt"))
        if time is None:
            time = parse_time(payload.get("time"))
    draft = Draft(
        id=finding_id,
        source=source,
        raw=payload,
        type=finding_type,
        title=_text(get("title"), TITLE_MAX) or "",
        description=_text(get("description"), DESCRIPTION_MAX) or "",
        severity=severity,
        time=time,
        # The Node path takes a numeric accountId as text; such findings are declined.
        account=_text(get("accountId")) or _text(payload.get("account")),
        region=_text(get("region")) or _text(payload.get("region")),
    )
    partition = _text(get("partition")) or "aws"
    res = _obj(get("resource"))
    action = _obj(_obj(get("service")).get("action"))
    region = draft.region

    # _actor
    keys = _obj(res.get("accessKeyDetails"))
    draft.access_key_id = _text(keys.get("accessKeyId"))
    draft.user_name = _text(keys.get("userName"))
    principal = _text(keys.get("principalId"))
    if principal and principal.startswith("arn:"):
        draft.principal_arn = principal
    for action_name in _REMOTE_ACTIONS:
        remote = _obj(_obj(action.get(action_name)).get("remoteIpDetails"))
        ip = _text(remote.get("ipAddressV4"))
        if ip:
            draft.ip = ip
            break

    # _resources
    if keys is not _ABSENT:
        key = resource("AwsIamAccessKey", draft.access_key_id, name=draft.user_name, region=region)
        draft.add(key)
    instance = _obj(res.get("instanceDetails"))
    session = None  # _instance_session
    if _text(keys.get("userType")) == "AssumedRole" and principal and ":" in principal:
        tail = principal.rsplit(":", 1)[1]
        session = tail if _INSTANCE_ID.fullmatch(tail) else None
    if session and instance is _ABSENT:
        arn = _instance_arn(partition, region, draft.account, session)
        draft.add(resource("AwsEc2Instance", session, arn=arn, region=region))
    if instance is not _ABSENT:
        instance_id = _text(instance.get("instanceId"))
        arn = _instance_arn(partition, region, draft.account, instance_id)
        tags = _tags(instance.get("tags"))
        draft.add(resource("AwsEc2Instance", instance_id, arn=arn, region=region, tags=tags))
    for item in _list(res.get("s3BucketDetails"), ITEMS_MAX):
        bucket = _obj(item)
        name = _text(bucket.get("name"))
        arn = _text(bucket.get("arn"))
        tags = _tags(bucket.get("tags"))
        draft.add(resource("AwsS3Bucket", name, arn=arn, name=name, region=region, tags=tags))
    for block, kind, id_key, arn_key in _BLOCKS:
        node = _obj(res.get(block))
        if node is not _ABSENT:
            name = _text(node.get(id_key))
            arn = _text(node.get(arn_key))
            tags = _tags(node.get("tags"))
            draft.add(resource(kind, name, arn=arn, name=name, region=region, tags=tags))

    # _ai_resources
    called = (_text(_obj(action.get("awsApiCallAction")).get("serviceName")) or "").lower()
    for item in _list(res.get("modelDetails"), ITEMS_MAX):
        model_id = _text(_obj(item).get("modelId"))
        if not model_id:
            continue
        if model_id.startswith("arn:"):
            model = resource(_arn_type(model_id), arn_tail(model_id), arn=model_id, region=region)
        else:
            kind = "AwsSageMakerEndpoint" if "sagemaker" in called else "AwsBedrockModel"
            model = resource(kind, model_id, name=model_id, region=region)
        draft.add(model)
    guardrails = _obj(res.get("bedrockGuardrailDetails"))
    arns = [_text(_obj(g).get("arn")) for g in _list(guardrails.get("guardrails"), ITEMS_MAX)]
    arns.append(_text(guardrails.get("guardrailArn")))
    for arn in arns:
        if arn:
            draft.add(resource("AwsBedrockGuardrail", arn_tail(arn), arn=arn, region=region))
    return draft


def _obj(value: Any) -> Mapping[str, Any]:
    """An object that may be absent (then an empty one, `_ABSENT`)."""
    if value is None:
        return _ABSENT
    if type(value) is dict:
        return value
    raise _Decline


def _list(value: Any, limit: int) -> list[Any]:
    """A list that may be absent, no longer than the Node path would read of it."""
    if value is None:
        return []
    if type(value) is list and len(value) <= limit:
        return value
    raise _Decline


def _text(value: Any, limit: int = TEXT_MAX) -> str | None:
    """`Node.text(limit)` where it returns the value unchanged (no clip, no repair)."""
    if value is None:
        return None
    if type(value) is str and len(value) <= limit and value.isascii():
        return value
    raise _Decline


def _tags(value: Any) -> dict[str, str]:
    """`tags_from_pairs` where it copies every pair it keeps unchanged."""
    tags: dict[str, str] = {}
    for item in _list(value, TAGS_MAX):
        if type(item) is not dict:
            raise _Decline
        key: Any = item.get("key")
        text: Any = item.get("value")
        if type(key) is not str:
            if type(key) in _NOT_TEXT:
                continue  # skipped there too
            raise _Decline
        kind = type(text)
        if kind is int:
            if not -_SHORT_INT < text < _SHORT_INT:
                raise _Decline
            text = str(text)
        elif kind is float:
            if not math.isfinite(text):
                raise _Decline  # skipped there
            text = repr(text)
        elif kind is not str:
            if kind in _NOT_TEXT:
                continue  # skipped there too (None, bool, list, dict)
            raise _Decline
        if len(key) > TAG_KEY_MAX or len(text) > TAG_VALUE_MAX:
            raise _Decline
        if not key.isascii() or not text.isascii():
            raise _Decline
        tags[key] = text
    return tags
