"""Shut an API Gateway REST API's door: disable one API key, or throttle a whole stage to 0.

API Gateway's IAM actions are HTTP verbs on resource paths (apigateway:GET, apigateway:PATCH),
not operation names, so these actions declare verbs.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from irbook.registry import ActionContext, PlannedCall, action
from irbook_actions.aws._base import (
    SKIP_DESCRIPTION,
    AwsParams,
    AwsResult,
    call,
)

API_ID = r"^[A-Za-z0-9]{1,64}$"
STAGE = r"^[A-Za-z0-9_-]{1,128}$"

# --- API keys -----------------------------------------------------------------------------------


class ApiKeyParams(AwsParams):
    api_key_id: str = Field(pattern=API_ID, description="the API key's id (not its value)")


class EnableApiKeyParams(ApiKeyParams):
    skip: str | None = Field(None, description=SKIP_DESCRIPTION)


class ApiKeyResult(AwsResult):
    api_key_id: str
    name: str = ""
    enabled: bool
    previous_enabled: bool


def _patch(enabled: bool) -> list[dict[str, str]]:
    return [{"op": "replace", "path": "/enabled", "value": "true" if enabled else "false"}]


def _plan_key(params: ApiKeyParams, enabled: bool) -> list[PlannedCall]:
    return [
        PlannedCall(
            "apigateway",
            "GetApiKey",
            {"apiKey": params.api_key_id},
            note="reads the key's state, not its value",
        ),
        PlannedCall(
            "apigateway",
            "UpdateApiKey",
            {"apiKey": params.api_key_id, "patchOperations": _patch(enabled)},
            note=f"skipped when the key is already {'enabled' if enabled else 'disabled'}",
        ),
    ]


def _set_key(ctx: ActionContext, params: ApiKeyParams, enabled: bool) -> ApiKeyResult:
    gateway = ctx.aws("apigateway")
    what = f"API Gateway API key {params.api_key_id}"
    key = call(gateway, "GetApiKey", what, apiKey=params.api_key_id)
    previous = bool(key.get("enabled"))
    result = ApiKeyResult(
        api_key_id=params.api_key_id,
        name=str(key.get("name", "")),
        enabled=enabled,
        previous_enabled=previous,
    )
    if previous == enabled:
        return result.model_copy(update={"already_done": True})
    call(
        gateway,
        "UpdateApiKey",
        what,
        apiKey=params.api_key_id,
        patchOperations=_patch(enabled),
    )
    ctx.note(f"{what} ({result.name}) {'enabled' if enabled else 'disabled'}")
    return result


_KEY_CALLS = [("apigateway", "GetApiKey"), ("apigateway", "UpdateApiKey")]


def _undo_disable(params: ApiKeyParams, result: ApiKeyResult | None) -> dict[str, Any]:
    out: dict[str, Any] = {"api_key_id": params.api_key_id}
    if result is not None and not result.previous_enabled:
        out["skip"] = "the key was already disabled before this step"
    return out


@action(
    "aws.apigateway.disable_api_key",
    effect="mutate",
    calls=_KEY_CALLS,
    planner=lambda p: _plan_key(p, enabled=False),
    simulate=lambda p, run: ApiKeyResult(
        api_key_id=p.api_key_id, enabled=False, previous_enabled=True
    ),
    compensation="aws.apigateway.enable_api_key",
    undo=_undo_disable,
    idempotent=True,
)
def disable_api_key(ctx: ActionContext, params: ApiKeyParams) -> ApiKeyResult:
    """Refuse requests made with one API key; other clients of the API are unaffected."""
    return _set_key(ctx, params, enabled=False)


@action(
    "aws.apigateway.enable_api_key",
    effect="mutate",
    calls=_KEY_CALLS,
    planner=lambda p: [] if p.skip else _plan_key(p, enabled=True),
    simulate=lambda p, run: ApiKeyResult(
        api_key_id=p.api_key_id,
        enabled=not p.skip,
        previous_enabled=False,
        already_done=bool(p.skip),
    ),
    compensation="aws.apigateway.disable_api_key",
    undo=lambda p, r: {"api_key_id": p.api_key_id},
    idempotent=True,
)
def enable_api_key(ctx: ActionContext, params: EnableApiKeyParams) -> ApiKeyResult:
    """Accept a disabled API key again."""
    if params.skip:
        ctx.note(f"nothing to undo for API key {params.api_key_id}: {params.skip}")
        return ApiKeyResult(
            api_key_id=params.api_key_id,
            enabled=False,
            previous_enabled=False,
            already_done=True,
        )
    return _set_key(ctx, params, enabled=True)


# --- stage throttling -------------------------------------------------------------------------

RATE_PATH = "/*/*/throttling/rateLimit"
BURST_PATH = "/*/*/throttling/burstLimit"
NO_LIMIT = "-1"  # API Gateway's value for "no method-level limit": the stage's own apply


class StageParams(AwsParams):
    rest_api_id: str = Field(pattern=API_ID, description="the REST API's id")
    stage_name: str = Field(pattern=STAGE, description="the stage, such as prod")


class RestoreStageParams(StageParams):
    rate_limit: float | None = Field(
        None, ge=0, description="requests per second to restore; none removes the limit"
    )
    burst_limit: int | None = Field(
        None, ge=0, description="burst to restore; none removes the limit"
    )


class StageThrottleResult(AwsResult):
    rest_api_id: str
    stage_name: str
    rate_limit: float | None
    burst_limit: int | None
    previous_rate_limit: float | None = None
    previous_burst_limit: int | None = None


def _limits(stage: dict[str, Any]) -> tuple[float | None, int | None]:
    """The stage-wide method limits; API Gateway reports "none" as absent or -1."""
    settings = stage.get("methodSettings", {}).get("*/*", {})
    rate = settings.get("throttlingRateLimit")
    burst = settings.get("throttlingBurstLimit")
    rate_value = float(rate) if rate is not None and float(rate) >= 0 else None
    burst_value = int(burst) if burst is not None and int(burst) >= 0 else None
    return rate_value, burst_value


def _number(value: float | None) -> str:
    return NO_LIMIT if value is None else f"{value:g}"


def _throttle_patch(rate: float | None, burst: int | None) -> list[dict[str, str]]:
    return [
        {"op": "replace", "path": RATE_PATH, "value": _number(rate)},
        {"op": "replace", "path": BURST_PATH, "value": _number(burst)},
    ]


def _plan_stage(params: StageParams, rate: float | None, burst: int | None) -> list[PlannedCall]:
    ids = {"restApiId": params.rest_api_id, "stageName": params.stage_name}
    return [
        PlannedCall("apigateway", "GetStage", ids, note="records the current limits for the undo"),
        PlannedCall(
            "apigateway",
            "UpdateStage",
            {**ids, "patchOperations": _throttle_patch(rate, burst)},
            note="skipped when the limits are already these",
        ),
    ]


def _set_stage(
    ctx: ActionContext, params: StageParams, rate: float | None, burst: int | None
) -> StageThrottleResult:
    gateway = ctx.aws("apigateway")
    what = f"API Gateway stage {params.stage_name} of REST API {params.rest_api_id}"
    stage = call(
        gateway, "GetStage", what, restApiId=params.rest_api_id, stageName=params.stage_name
    )
    old_rate, old_burst = _limits(stage)
    result = StageThrottleResult(
        rest_api_id=params.rest_api_id,
        stage_name=params.stage_name,
        rate_limit=rate,
        burst_limit=burst,
        previous_rate_limit=old_rate,
        previous_burst_limit=old_burst,
    )
    if (old_rate, old_burst) == (rate, burst):
        return result.model_copy(update={"already_done": True})
    call(
        gateway,
        "UpdateStage",
        what,
        restApiId=params.rest_api_id,
        stageName=params.stage_name,
        patchOperations=_throttle_patch(rate, burst),
    )
    ctx.note(
        f"{what}: rate {_number(old_rate)} -> {_number(rate)}, burst {_number(old_burst)} "
        f"-> {_number(burst)}"
    )
    return result


_STAGE_CALLS = [("apigateway", "GetStage"), ("apigateway", "UpdateStage")]


@action(
    "aws.apigateway.throttle_stage",
    effect="mutate",
    calls=_STAGE_CALLS,
    planner=lambda p: _plan_stage(p, 0, 0),
    simulate=lambda p, run: StageThrottleResult(
        rest_api_id=p.rest_api_id, stage_name=p.stage_name, rate_limit=0, burst_limit=0
    ),
    compensation="aws.apigateway.restore_stage_throttle",
    undo=lambda p, r: {
        "rest_api_id": p.rest_api_id,
        "stage_name": p.stage_name,
        **(
            {"rate_limit": r.previous_rate_limit} if r and r.previous_rate_limit is not None else {}
        ),
        **(
            {"burst_limit": r.previous_burst_limit}
            if r and r.previous_burst_limit is not None
            else {}
        ),
    },
    idempotent=True,
)
def throttle_stage(ctx: ActionContext, params: StageParams) -> StageThrottleResult:
    """Throttle every method of a stage to 0 requests per second: callers get 429 at once,
    whatever key or credentials they hold, while the API itself stays deployed."""
    return _set_stage(ctx, params, 0, 0)


@action(
    "aws.apigateway.restore_stage_throttle",
    effect="mutate",
    calls=_STAGE_CALLS,
    planner=lambda p: _plan_stage(p, p.rate_limit, p.burst_limit),
    simulate=lambda p, run: StageThrottleResult(
        rest_api_id=p.rest_api_id,
        stage_name=p.stage_name,
        rate_limit=p.rate_limit,
        burst_limit=p.burst_limit,
        previous_rate_limit=0,
        previous_burst_limit=0,
    ),
    compensation="aws.apigateway.throttle_stage",
    undo=lambda p, r: {"rest_api_id": p.rest_api_id, "stage_name": p.stage_name},
    idempotent=True,
)
def restore_stage_throttle(ctx: ActionContext, params: RestoreStageParams) -> StageThrottleResult:
    """Put back a stage's earlier limits (or none), reopening the API."""
    return _set_stage(ctx, params, params.rate_limit, params.burst_limit)
