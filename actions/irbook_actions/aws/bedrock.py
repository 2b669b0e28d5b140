"""Stop a principal from invoking Amazon Bedrock models, and only that.

Narrower than `aws.iam.quarantine_principal`: the workload keeps its other permissions,
so a compromised model-calling role can be cut off from Bedrock without taking down the
rest of the service. `bedrock:CallWithBearerToken` covers Bedrock API keys, which call
models with a bearer token instead of SigV4.
"""

from __future__ import annotations

from typing import Any

from irbook.registry import ActionContext, action
from irbook_actions.aws.iam import (
    INLINE_DELETE_EXTRA,
    InlinePolicyResult,
    PrincipalParams,
    ReleaseParams,
    attach_deny,
    inline_calls,
    plan_attach,
    plan_remove,
    principal_fields,
    remove_deny,
    undo_attach,
)

DENY_POLICY = "IrbookDenyBedrockInvocation"
DENIED_ACTIONS = (
    "bedrock:InvokeModel",
    "bedrock:InvokeModelWithResponseStream",
    "bedrock:CallWithBearerToken",
)
DENY_DOCUMENT: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "IrbookDenyBedrockInvocation",
            "Effect": "Deny",
            "Action": list(DENIED_ACTIONS),
            "Resource": "*",
        }
    ],
}


def _simulated(params: PrincipalParams, status: str, done: bool = False) -> InlinePolicyResult:
    return InlinePolicyResult(
        principal_type=params.principal.kind,
        principal_name=params.principal.name,
        policy_name=DENY_POLICY,
        status="attached" if status == "attached" else "removed",
        already_done=done,
    )


@action(
    "aws.bedrock.deny_model_invocation",
    effect="mutate",
    calls=inline_calls("Put"),
    planner=lambda p: plan_attach(p.principal, DENY_POLICY, DENY_DOCUMENT),
    simulate=lambda p, run: _simulated(p, "attached"),
    compensation="aws.bedrock.allow_model_invocation",
    undo=undo_attach,
    idempotent=True,
)
def deny_model_invocation(ctx: ActionContext, params: PrincipalParams) -> InlinePolicyResult:
    """Deny model invocation (streaming and bearer-token calls included) to a user or role."""
    return attach_deny(ctx, params.principal, DENY_POLICY, DENY_DOCUMENT)


@action(
    "aws.bedrock.allow_model_invocation",
    effect="mutate",
    calls=inline_calls("Delete"),
    extra_permissions=INLINE_DELETE_EXTRA,
    planner=lambda p: plan_remove(p.principal, DENY_POLICY, p.skip),
    simulate=lambda p, run: _simulated(p, "removed", bool(p.skip)),
    compensation="aws.bedrock.deny_model_invocation",
    undo=lambda p, r: principal_fields(p.principal),
    idempotent=True,
)
def allow_model_invocation(ctx: ActionContext, params: ReleaseParams) -> InlinePolicyResult:
    """Remove irbook's Bedrock deny policy; the principal's own permissions apply again."""
    return remove_deny(ctx, params.principal, DENY_POLICY, params.skip)
