"""Sign a Cognito user out everywhere, so stolen refresh tokens stop minting access tokens."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from irbook.registry import ActionContext, PlannedCall, action
from irbook_actions.aws._base import AwsParams, AwsResult, call


class GlobalSignOutParams(AwsParams):
    user_pool_id: str = Field(
        pattern=r"^[\w-]+_[0-9a-zA-Z]+$", description="the user pool, such as us-east-1_AbC123"
    )
    username: str = Field(min_length=1, max_length=128, description="the user's username")


class GlobalSignOutResult(AwsResult):
    user_pool_id: str
    username: str
    status: Literal["signed out"] = "signed out"


@action(
    "aws.cognito.global_sign_out",
    effect="mutate",
    calls=[
        ("cognito-idp", "AdminUserGlobalSignOut"),
    ],
    planner=lambda p: [
        PlannedCall(
            "cognito-idp",
            "AdminUserGlobalSignOut",
            {"UserPoolId": p.user_pool_id, "Username": p.username},
        )
    ],
    simulate=lambda p, run: GlobalSignOutResult(user_pool_id=p.user_pool_id, username=p.username),
    irreversible="revoked refresh tokens cannot be restored; the user signs in again",
    no_evidence="tokens hold no evidence; the user's sign-ins stay in the pool's event history",
    idempotent=True,
)
def global_sign_out(ctx: ActionContext, params: GlobalSignOutParams) -> GlobalSignOutResult:
    """Revoke every refresh token of a user pool user.

    A rerun signs out again, which also revokes anything issued since; Cognito cannot say
    whether a user is "already signed out", so `already_done` stays false.
    """
    call(
        ctx.aws("cognito-idp"),
        "AdminUserGlobalSignOut",
        f"Cognito user {params.username} in user pool {params.user_pool_id}",
        UserPoolId=params.user_pool_id,
        Username=params.username,
    )
    ctx.note(f"signed out Cognito user {params.username} of {params.user_pool_id} everywhere")
    return GlobalSignOutResult(user_pool_id=params.user_pool_id, username=params.username)
