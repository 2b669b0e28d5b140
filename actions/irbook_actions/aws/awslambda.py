"""Stop a Lambda function from running, without deleting or changing its code.

Reserved concurrency 0 throttles every invocation (synchronous calls get 429, event source
mappings pause), and putting back the previous value reopens it.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from irbook.registry import ActionContext, PlannedCall, action
from irbook_actions.aws._base import AwsParams, AwsResult, call

FUNCTION = r"^(arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\d{12}:function:)?[a-zA-Z0-9_-]{1,64}$"


class FunctionParams(AwsParams):
    function_name: str = Field(pattern=FUNCTION, description="the function's name or ARN")


class RestoreFunctionParams(FunctionParams):
    reserved_concurrency: int | None = Field(
        None, ge=0, description="the reserved concurrency to restore; none removes it"
    )


class ConcurrencyResult(AwsResult):
    function_name: str
    reserved_concurrency: int | None
    previous_reserved_concurrency: int | None = None


def _current(ctx: ActionContext, name: str) -> tuple[Any, int | None]:
    functions = ctx.aws("lambda")
    answer = call(functions, "GetFunctionConcurrency", f"Lambda function {name}", FunctionName=name)
    value = answer.get("ReservedConcurrentExecutions")
    return functions, None if value is None else int(value)


def _get(params: FunctionParams) -> PlannedCall:
    return PlannedCall(
        "lambda",
        "GetFunctionConcurrency",
        {"FunctionName": params.function_name},
        note="records the current value for the undo",
    )


@action(
    "aws.lambda.block_invocations",
    effect="mutate",
    calls=[
        ("lambda", "GetFunctionConcurrency"),
        ("lambda", "PutFunctionConcurrency"),
    ],
    planner=lambda p: [
        _get(p),
        PlannedCall(
            "lambda",
            "PutFunctionConcurrency",
            {"FunctionName": p.function_name, "ReservedConcurrentExecutions": 0},
            note="skipped when it is already 0",
        ),
    ],
    simulate=lambda p, run: ConcurrencyResult(
        function_name=p.function_name, reserved_concurrency=0
    ),
    compensation="aws.lambda.restore_invocations",
    undo=lambda p, r: {
        "function_name": p.function_name,
        **(
            {"reserved_concurrency": r.previous_reserved_concurrency}
            if r is not None and r.previous_reserved_concurrency is not None
            else {}
        ),
    },
    idempotent=True,
)
def block_invocations(ctx: ActionContext, params: FunctionParams) -> ConcurrencyResult:
    """Throttle every invocation of a function by reserving a concurrency of 0."""
    functions, previous = _current(ctx, params.function_name)
    result = ConcurrencyResult(
        function_name=params.function_name,
        reserved_concurrency=0,
        previous_reserved_concurrency=previous,
    )
    if previous == 0:
        return result.model_copy(update={"already_done": True})
    call(
        functions,
        "PutFunctionConcurrency",
        f"Lambda function {params.function_name}",
        FunctionName=params.function_name,
        ReservedConcurrentExecutions=0,
    )
    ctx.note(f"Lambda function {params.function_name}: reserved concurrency {previous} -> 0")
    return result


def _plan_restore(params: RestoreFunctionParams) -> list[PlannedCall]:
    if params.reserved_concurrency is None:
        change = PlannedCall(
            "lambda",
            "DeleteFunctionConcurrency",
            {"FunctionName": params.function_name},
            note="the function had no reserved concurrency before",
        )
    else:
        change = PlannedCall(
            "lambda",
            "PutFunctionConcurrency",
            {
                "FunctionName": params.function_name,
                "ReservedConcurrentExecutions": params.reserved_concurrency,
            },
        )
    return [_get(params), change]


@action(
    "aws.lambda.restore_invocations",
    effect="mutate",
    calls=[
        ("lambda", "GetFunctionConcurrency"),
        ("lambda", "PutFunctionConcurrency"),
        ("lambda", "DeleteFunctionConcurrency"),
    ],
    planner=_plan_restore,
    simulate=lambda p, run: ConcurrencyResult(
        function_name=p.function_name,
        reserved_concurrency=p.reserved_concurrency,
        previous_reserved_concurrency=0,
    ),
    compensation="aws.lambda.block_invocations",
    undo=lambda p, r: {"function_name": p.function_name},
    idempotent=True,
)
def restore_invocations(ctx: ActionContext, params: RestoreFunctionParams) -> ConcurrencyResult:
    """Put back a function's earlier reserved concurrency (or none), so it runs again."""
    functions, current = _current(ctx, params.function_name)
    result = ConcurrencyResult(
        function_name=params.function_name,
        reserved_concurrency=params.reserved_concurrency,
        previous_reserved_concurrency=current,
    )
    if current == params.reserved_concurrency:
        return result.model_copy(update={"already_done": True})
    what = f"Lambda function {params.function_name}"
    if params.reserved_concurrency is None:
        call(functions, "DeleteFunctionConcurrency", what, FunctionName=params.function_name)
    else:
        call(
            functions,
            "PutFunctionConcurrency",
            what,
            FunctionName=params.function_name,
            ReservedConcurrentExecutions=params.reserved_concurrency,
        )
    ctx.note(f"{what}: reserved concurrency {current} -> {params.reserved_concurrency}")
    return result
