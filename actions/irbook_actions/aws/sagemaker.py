"""Isolate a SageMaker inference endpoint, put it back, and keep its model as evidence.

Isolation has two strengths. `drain` sets every production variant's weight and instance
count to zero with UpdateEndpointWeightsAndCapacities: the endpoint and its configuration
stay, and the recorded weights and counts restore it. Real SageMaker accepts an instance
count of zero only for endpoints with inference components and managed instance scaling
down to zero; for other endpoints use `delete`, which deletes the endpoint after checking
its endpoint config still exists, and records config name and tags to create it again.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from irbook.registry import ActionContext, ActionFailed, PlannedCall, RunInfo, action
from irbook_actions.aws import _evidence
from irbook_actions.aws._base import (
    RUN_ID,
    AwsParams,
    AwsResult,
    call,
    from_call,
    short_hash,
    tag_dict,
    tag_list,
)

ENDPOINT = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"
MISSING = ("ValidationException:could not find",)


class VariantCapacity(AwsParams):
    variant_name: str
    weight: float = Field(ge=0)
    instance_count: int | None = Field(None, ge=0)


class EndpointParams(AwsParams):
    endpoint_name: str = Field(pattern=ENDPOINT, description="the inference endpoint")
    mode: Literal["drain", "delete"] = Field(
        "drain", description="drain: weights and capacity to zero; delete: delete the endpoint"
    )


class RestoreEndpointParams(EndpointParams):
    variants: list[VariantCapacity] = Field(
        default_factory=list, description="drain: the weights and counts to put back"
    )
    endpoint_config_name: str | None = Field(
        None, min_length=1, max_length=63, description="delete: the config to create it from"
    )
    tags: dict[str, str] = Field(default_factory=dict, description="delete: the endpoint's tags")

    @model_validator(mode="after")
    def enough_to_restore(self) -> RestoreEndpointParams:
        if self.mode == "drain" and not self.variants:
            raise ValueError("mode drain needs the variants to restore")
        if self.mode == "delete" and self.endpoint_config_name is None:
            raise ValueError("mode delete needs endpoint_config_name")
        return self


class EndpointResult(AwsResult):
    endpoint_name: str
    mode: Literal["drain", "delete"]
    status: Literal["drained", "deleted", "restored", "created"]
    endpoint_arn: str = ""
    endpoint_config_name: str = ""
    variants: list[VariantCapacity] = Field(
        default_factory=list, description="variant weights and counts before this step"
    )
    tags: dict[str, str] = Field(default_factory=dict)


def _describe(sm: Any, name: str, *, missing_ok: bool = False) -> dict[str, Any] | None:
    answer = call(
        sm,
        "DescribeEndpoint",
        f"SageMaker endpoint {name}",
        absent=MISSING if missing_ok else (),
        EndpointName=name,
    )
    return None if answer is None else dict(answer)


def _capacities(endpoint: dict[str, Any]) -> list[VariantCapacity]:
    return [
        VariantCapacity(
            variant_name=str(v["VariantName"]),
            weight=float(v.get("CurrentWeight", v.get("DesiredWeight", 0.0))),
            instance_count=v.get("CurrentInstanceCount", v.get("DesiredInstanceCount")),
        )
        for v in endpoint.get("ProductionVariants", [])
    ]


def _desired(variants: list[VariantCapacity]) -> list[dict[str, Any]]:
    out = []
    for variant in variants:
        item: dict[str, Any] = {
            "VariantName": variant.variant_name,
            "DesiredWeight": variant.weight,
        }
        if variant.instance_count is not None:  # serverless variants have no instances
            item["DesiredInstanceCount"] = variant.instance_count
        out.append(item)
    return out


def _list_tags(sm: Any, arn: str, what: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    token: str | None = None
    for _ in range(20):
        kwargs: dict[str, Any] = {"ResourceArn": arn}
        if token:
            kwargs["NextToken"] = token
        page = call(sm, "ListTags", what, **kwargs)
        tags.update(tag_dict(page.get("Tags")))
        token = page.get("NextToken")
        if not token:
            break
    return tags


def _plan_isolate(params: EndpointParams) -> list[PlannedCall]:
    name = {"EndpointName": params.endpoint_name}
    describe = PlannedCall("sagemaker", "DescribeEndpoint", name, note="records variants")
    if params.mode == "drain":
        return [
            describe,
            PlannedCall(
                "sagemaker",
                "UpdateEndpointWeightsAndCapacities",
                {
                    **name,
                    "DesiredWeightsAndCapacities": from_call(
                        "sagemaker:DescribeEndpoint", "every variant at weight 0 and 0 instances"
                    ),
                },
                note="skipped when every variant is already at zero",
            ),
        ]
    return [
        describe,
        PlannedCall(
            "sagemaker",
            "DescribeEndpointConfig",
            {"EndpointConfigName": from_call("sagemaker:DescribeEndpoint")},
            note="the endpoint is only deleted when its config remains to create it again",
        ),
        PlannedCall(
            "sagemaker",
            "ListTags",
            {"ResourceArn": from_call("sagemaker:DescribeEndpoint")},
            note="recorded for re-creation",
        ),
        PlannedCall("sagemaker", "DeleteEndpoint", name),
    ]


def _simulate_isolate(params: EndpointParams, run: RunInfo) -> EndpointResult:
    return EndpointResult(
        endpoint_name=params.endpoint_name,
        mode=params.mode,
        status="drained" if params.mode == "drain" else "deleted",
        endpoint_config_name=from_call("sagemaker:DescribeEndpoint"),
        variants=[VariantCapacity(variant_name="AllTraffic", weight=1.0, instance_count=1)],
    )


def _undo_isolate(params: EndpointParams, result: EndpointResult | None) -> dict[str, Any]:
    out: dict[str, Any] = {"endpoint_name": params.endpoint_name, "mode": params.mode}
    if result is not None:
        if params.mode == "drain":
            out["variants"] = [v.model_dump() for v in result.variants]
        else:
            out["endpoint_config_name"] = result.endpoint_config_name
            if result.tags:
                out["tags"] = dict(result.tags)
    return out


@action(
    "aws.sagemaker.isolate_endpoint",
    effect="mutate",
    calls=[
        ("sagemaker", "DescribeEndpoint"),
        ("sagemaker", "UpdateEndpointWeightsAndCapacities"),
        ("sagemaker", "DescribeEndpointConfig"),
        ("sagemaker", "ListTags"),
        ("sagemaker", "DeleteEndpoint"),
    ],
    planner=_plan_isolate,
    simulate=_simulate_isolate,
    compensation="aws.sagemaker.restore_endpoint",
    undo=_undo_isolate,
    idempotent=True,
)
def isolate_endpoint(ctx: ActionContext, params: EndpointParams) -> EndpointResult:
    """Stop an inference endpoint from serving, keeping what is needed to bring it back."""
    sm = ctx.aws("sagemaker")
    what = f"SageMaker endpoint {params.endpoint_name}"
    endpoint = _describe(sm, params.endpoint_name) or {}
    variants = _capacities(endpoint)
    result = EndpointResult(
        endpoint_name=params.endpoint_name,
        mode=params.mode,
        status="drained" if params.mode == "drain" else "deleted",
        endpoint_arn=str(endpoint.get("EndpointArn", "")),
        endpoint_config_name=str(endpoint.get("EndpointConfigName", "")),
        variants=variants,
    )
    if params.mode == "drain":
        if all(v.weight == 0 and not v.instance_count for v in variants):
            return result.model_copy(update={"already_done": True})
        zero = [
            v.model_copy(
                update={"weight": 0.0, "instance_count": None if v.instance_count is None else 0}
            )
            for v in variants
        ]
        call(
            sm,
            "UpdateEndpointWeightsAndCapacities",
            what,
            EndpointName=params.endpoint_name,
            DesiredWeightsAndCapacities=_desired(zero),
        )
        ctx.note(f"{what}: {len(variants)} variant(s) drained to weight 0 and 0 instances")
        return result
    if endpoint.get("EndpointStatus") == "Deleting":
        return result.model_copy(update={"already_done": True})
    config = result.endpoint_config_name
    found = call(
        sm,
        "DescribeEndpointConfig",
        f"endpoint config {config} of {what}",
        absent=MISSING,
        EndpointConfigName=config,
    )
    if found is None:
        raise ActionFailed(
            f"endpoint config {config} of {what} no longer exists, so a deleted endpoint could "
            "not be created again; use mode: drain"
        )
    tags = _list_tags(sm, result.endpoint_arn, what)
    call(sm, "DeleteEndpoint", what, EndpointName=params.endpoint_name)
    ctx.note(f"deleted {what}; endpoint config {config} kept to create it again")
    return result.model_copy(update={"tags": tags})


def _plan_restore(params: RestoreEndpointParams) -> list[PlannedCall]:
    name = {"EndpointName": params.endpoint_name}
    if params.mode == "drain":
        return [
            PlannedCall(
                "sagemaker", "DescribeEndpoint", name, note="nothing to do when it matches"
            ),
            PlannedCall(
                "sagemaker",
                "UpdateEndpointWeightsAndCapacities",
                {**name, "DesiredWeightsAndCapacities": _desired(params.variants)},
            ),
        ]
    create: dict[str, Any] = {**name, "EndpointConfigName": params.endpoint_config_name}
    if params.tags:
        create["Tags"] = tag_list(params.tags)
    return [
        PlannedCall("sagemaker", "DescribeEndpoint", name, note="an existing endpoint means done"),
        PlannedCall("sagemaker", "CreateEndpoint", create),
    ]


@action(
    "aws.sagemaker.restore_endpoint",
    effect="mutate",
    calls=[
        ("sagemaker", "DescribeEndpoint"),
        ("sagemaker", "UpdateEndpointWeightsAndCapacities"),
        ("sagemaker", "CreateEndpoint"),
    ],
    extra_permissions={"sagemaker:AddTags": "CreateEndpoint with Tags needs it"},
    planner=_plan_restore,
    simulate=lambda p, run: EndpointResult(
        endpoint_name=p.endpoint_name,
        mode=p.mode,
        status="restored" if p.mode == "drain" else "created",
        endpoint_config_name=p.endpoint_config_name or "",
        variants=list(p.variants),
        tags=dict(p.tags),
    ),
    compensation="aws.sagemaker.isolate_endpoint",
    undo=lambda p, r: {"endpoint_name": p.endpoint_name, "mode": p.mode},
    idempotent=True,
)
def restore_endpoint(ctx: ActionContext, params: RestoreEndpointParams) -> EndpointResult:
    """Bring an isolated endpoint back: the recorded weights and counts, or a new endpoint
    from the recorded config (which takes the minutes an endpoint takes to create)."""
    sm = ctx.aws("sagemaker")
    what = f"SageMaker endpoint {params.endpoint_name}"
    result = EndpointResult(
        endpoint_name=params.endpoint_name,
        mode=params.mode,
        status="restored" if params.mode == "drain" else "created",
        endpoint_config_name=params.endpoint_config_name or "",
        variants=list(params.variants),
        tags=dict(params.tags),
    )
    if params.mode == "drain":
        endpoint = _describe(sm, params.endpoint_name) or {}
        current = {v.variant_name: v for v in _capacities(endpoint)}
        if all(current.get(v.variant_name) == v for v in params.variants):
            return result.model_copy(update={"already_done": True})
        call(
            sm,
            "UpdateEndpointWeightsAndCapacities",
            what,
            EndpointName=params.endpoint_name,
            DesiredWeightsAndCapacities=_desired(params.variants),
        )
        ctx.note(f"{what}: variant weights and counts restored")
        return result
    existing = _describe(sm, params.endpoint_name, missing_ok=True)
    if existing is not None:
        if existing.get("EndpointStatus") == "Deleting":
            raise ActionFailed(f"{what} is still being deleted; retry in a few minutes")
        return result.model_copy(update={"already_done": True})
    kwargs: dict[str, Any] = {
        "EndpointName": params.endpoint_name,
        "EndpointConfigName": params.endpoint_config_name,
    }
    if params.tags:
        kwargs["Tags"] = tag_list(params.tags)
    answer = call(sm, "CreateEndpoint", what, **kwargs)
    ctx.note(f"creating {what} again from endpoint config {params.endpoint_config_name}")
    return result.model_copy(update={"endpoint_arn": str(answer.get("EndpointArn", ""))})


# --- evidence: the model behind an endpoint --------------------------------------------------


class SnapshotModelParams(AwsParams):
    endpoint_name: str = Field(pattern=ENDPOINT, description="the inference endpoint")
    evidence_bucket: str = Field(
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="S3 bucket with Object Lock for evidence (created when absent)",
    )
    retention_days: int = Field(
        90, ge=1, le=36500, description="days the copies stay under COMPLIANCE lock"
    )


class SnapshotModelResult(_evidence.EvidenceResult):
    endpoint_name: str
    models: list[str] = Field(default_factory=list, description="models the endpoint serves")


def _s3_location(uri: str) -> tuple[str, str] | None:
    if not uri.startswith("s3://"):
        return None
    bucket, _, key = uri[5:].partition("/")
    return (bucket, key) if bucket else None


def _containers(model: dict[str, Any]) -> list[dict[str, Any]]:
    found = [model["PrimaryContainer"]] if model.get("PrimaryContainer") else []
    return found + list(model.get("Containers", []))


def _hide_environment(model: dict[str, Any]) -> dict[str, Any]:
    """Container environments often hold API keys; locked evidence must not keep them.

    Each value becomes its SHA-256, which still shows whether it changed.
    """
    out = dict(model)
    for name in ("PrimaryContainer", "Containers"):
        value = out.get(name)
        containers = [value] if isinstance(value, dict) else value
        if not isinstance(containers, list):
            continue
        hidden = []
        for container in containers:
            container = dict(container)
            if isinstance(container.get("Environment"), dict):
                container["Environment"] = {
                    k: "sha256:" + short_hash(str(v), 64)
                    for k, v in container["Environment"].items()
                }
            hidden.append(container)
        out[name] = hidden[0] if isinstance(value, dict) else hidden
    return out


def _clean(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k != "ResponseMetadata"}


def _plan_snapshot(params: SnapshotModelParams) -> list[PlannedCall]:
    prefix = _evidence.prefix_for(RUN_ID, "sagemaker", params.endpoint_name)
    model = from_call("sagemaker:DescribeModel", "ModelDataUrl")
    return [
        *_evidence.plan_open(params.evidence_bucket, prefix),
        PlannedCall("sagemaker", "DescribeEndpoint", {"EndpointName": params.endpoint_name}),
        PlannedCall(
            "sagemaker",
            "DescribeEndpointConfig",
            {"EndpointConfigName": from_call("sagemaker:DescribeEndpoint")},
        ),
        PlannedCall(
            "sagemaker",
            "DescribeModel",
            {"ModelName": from_call("sagemaker:DescribeEndpointConfig")},
            note="once per model the endpoint serves",
        ),
        PlannedCall(
            "s3",
            "HeadObject",
            {"Bucket": model, "Key": model},
            note="once per object; for a model whose artifacts are an S3 prefix "
            "(ModelDataSource), s3:ListObjectsV2 lists them instead",
        ),
        *_evidence.plan_copy(
            params.evidence_bucket,
            prefix,
            model,
            model,
            from_call("s3:HeadObject", "ETag"),
            params.retention_days,
        ),
        _evidence.plan_manifest(params.evidence_bucket, prefix, params.retention_days),
    ]


def _simulate_snapshot(params: SnapshotModelParams, run: RunInfo) -> SnapshotModelResult:
    prefix = _evidence.prefix_for(run.run_id, "sagemaker", params.endpoint_name)
    base = _evidence.simulated(params.evidence_bucket, prefix, params.retention_days)
    return SnapshotModelResult(
        **base.model_dump(),
        endpoint_name=params.endpoint_name,
        models=[from_call("sagemaker:DescribeEndpointConfig")],
    )


@action(
    "aws.sagemaker.snapshot_model",
    effect="mutate",
    calls=[
        ("sagemaker", "DescribeEndpoint"),
        ("sagemaker", "DescribeEndpointConfig"),
        ("sagemaker", "DescribeModel"),
        ("s3", "GetObjectLockConfiguration"),
        ("s3", "CopyObject"),
        ("s3", "HeadObject"),
        ("s3", "PutObject"),
        ("s3", "PutObjectRetention"),
    ],
    extra_permissions={
        **_evidence.EVIDENCE_EXTRA_PERMISSIONS,
        "s3:ListBucket": "lists artifacts given as an S3 prefix (ModelDataSource); "
        "without it S3 answers 403 instead of 404 for a missing artifact",
    },
    planner=_plan_snapshot,
    simulate=_simulate_snapshot,
    irreversible="evidence copies are kept under S3 Object Lock until their retention ends",
    idempotent=True,
    evidence=True,
)
def snapshot_model(ctx: ActionContext, params: SnapshotModelParams) -> SnapshotModelResult:
    """Preserve what an endpoint serves before anyone changes it: the endpoint, config and
    model descriptions and every model artifact, copied under S3 Object Lock with SHA-256
    digests and a manifest that ties them to this run."""
    prefix = _evidence.prefix_for(ctx.run.run_id, "sagemaker", params.endpoint_name)
    evidence = _evidence.Evidence.open(ctx, params.evidence_bucket, prefix, params.retention_days)
    earlier = evidence.existing()
    if earlier is not None:
        return SnapshotModelResult(**earlier.model_dump(), endpoint_name=params.endpoint_name)
    sm = ctx.aws("sagemaker")
    endpoint = _clean(_describe(sm, params.endpoint_name) or {})
    config_name = str(endpoint.get("EndpointConfigName", ""))
    config = _clean(
        call(
            sm,
            "DescribeEndpointConfig",
            f"endpoint config {config_name} of SageMaker endpoint {params.endpoint_name}",
            EndpointConfigName=config_name,
        )
    )
    variants = list(config.get("ProductionVariants", [])) + list(
        config.get("ShadowProductionVariants", [])
    )
    names = list(dict.fromkeys(str(v["ModelName"]) for v in variants if v.get("ModelName")))
    notes: list[str] = []
    if not names:
        notes.append("the endpoint's variants name no model (inference components?)")
    models = {}
    for name in names:
        models[name] = _clean(call(sm, "DescribeModel", f"SageMaker model {name}", ModelName=name))
    s3 = evidence.s3
    copied: set[str] = set()
    for name, model in models.items():
        sources = 0
        for container in _containers(model):
            data_source = container.get("ModelDataSource", {}).get("S3DataSource", {})
            uri = container.get("ModelDataUrl") or data_source.get("S3Uri")
            location = _s3_location(str(uri or ""))
            if location is None:
                continue
            sources += 1
            bucket, key = location
            if data_source.get("S3DataType") == "S3Prefix" and not container.get("ModelDataUrl"):
                listing = _evidence.list_objects(s3, bucket, key, limit=1000)
            else:
                head = call(
                    s3, "HeadObject", f"model artifact s3://{bucket}/{key}", Bucket=bucket, Key=key
                )
                listing = [(key, str(head["ETag"]), int(head["ContentLength"]))]
            for object_key, etag, size in listing:
                if f"{bucket}/{object_key}" in copied:
                    continue
                copied.add(f"{bucket}/{object_key}")
                evidence.copy(bucket, object_key, etag, size)
        if not sources:
            notes.append(f"model {name} has no S3 artifacts (a model package or image only)")
    for text in notes:
        ctx.note(text)
    result = evidence.finish(
        ctx.run,
        subject={
            "kind": "sagemaker-endpoint",
            "endpoint_name": params.endpoint_name,
            "region": getattr(getattr(sm, "meta", None), "region_name", None),
        },
        descriptions={
            "endpoint": endpoint,
            "endpoint_config": config,
            "models": {n: _hide_environment(m) for n, m in models.items()},
        },
        notes=notes,
    )
    return SnapshotModelResult(
        **result.model_dump(), endpoint_name=params.endpoint_name, models=names
    )
