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
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from irbook.model.alert import Alert
from irbook.triggers.normalizers._base import (
    DESCRIPTION_MAX,
    TITLE_MAX,
    Draft,
    Node,
    arn_tail,
    check_payload,
    first_time,
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


def normalize(payload: Any, options: Mapping[str, Any] | None = None) -> list[Alert]:
    opts = read_options(options)
    source = source_name(opts, "guardduty")
    root = check_payload(payload)
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
        account=detail.get("accountId").text(numbers=True) or root.get("account").text(),
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
    for block, kind, id_key, arn_key in (
        ("eksClusterDetails", "AwsEksCluster", "name", "arn"),
        ("ecsClusterDetails", "AwsEcsCluster", "name", "arn"),
        ("lambdaDetails", "AwsLambdaFunction", "functionName", "functionArn"),
        ("rdsDbInstanceDetails", "AwsRdsDbInstance", "dbInstanceIdentifier", "dbInstanceArn"),
    ):
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
    parts = (
        (_PARTITION, partition),
        (_REGION, region),
        (_ACCOUNT, account),
        (_INSTANCE_ID, instance_id),
    )
    if all(value and pattern.fullmatch(value) for pattern, value in parts):
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
