"""Revoke IAM credentials: access keys, role sessions, whole principals, console passwords
and service-specific credentials (the long-term Amazon Bedrock API keys).

Every containment here has an undo except deleting a key and deleting a console password,
which cannot be restored. Inline deny policies are used because an explicit deny wins over
every allow, applies to sessions already issued, and is removed again in one call.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from irbook.registry import ActionContext, ActionFailed, PlannedCall, RunInfo, action
from irbook_actions.aws._base import (
    ACCESS_KEY_ID,
    IAM_NAME,
    SKIP_DESCRIPTION,
    AwsParams,
    AwsResult,
    blank_to_none,
    call,
    from_call,
    if_set,
    iso,
    now,
    policy_json,
    same_policy,
    short_hash,
)

# --- principals and inline policies (shared with the bedrock module) ----------------------


@dataclass(frozen=True)
class Principal:
    kind: Literal["user", "role"]
    name: str

    @property
    def what(self) -> str:
        return f"IAM {self.kind} {self.name}"

    @property
    def kwargs(self) -> dict[str, str]:
        return {"UserName": self.name} if self.kind == "user" else {"RoleName": self.name}

    def policy_op(self, verb: str) -> str:
        return f"{verb}{'User' if self.kind == 'user' else 'Role'}Policy"

    @property
    def get_op(self) -> str:
        return "GetUser" if self.kind == "user" else "GetRole"


class PrincipalParams(AwsParams):
    user_name: str | None = Field(None, pattern=IAM_NAME, description="an IAM user")
    role_name: str | None = Field(None, pattern=IAM_NAME, description="an IAM role")

    @field_validator("user_name", "role_name", mode="before")
    @classmethod
    def blank_is_none(cls, value: Any) -> Any:
        return blank_to_none(value)

    @model_validator(mode="after")
    def exactly_one(self) -> PrincipalParams:
        if (self.user_name is None) == (self.role_name is None):
            raise ValueError("give exactly one of user_name or role_name")
        return self

    @property
    def principal(self) -> Principal:
        if self.user_name is not None:
            return Principal("user", self.user_name)
        return Principal("role", str(self.role_name))


class ReleaseParams(PrincipalParams):
    skip: str | None = Field(None, description=SKIP_DESCRIPTION)


class InlinePolicyResult(AwsResult):
    principal_type: Literal["user", "role"]
    principal_name: str
    policy_name: str
    status: Literal["attached", "removed"]


def principal_fields(principal: Principal) -> dict[str, str]:
    return {f"{principal.kind}_name": principal.name}


def get_inline(iam: Any, principal: Principal, policy_name: str) -> Any | None:
    """The inline policy's document, or None when the principal has no such policy."""
    answer = call(
        iam,
        principal.policy_op("Get"),
        f"inline policy {policy_name} of {principal.what}",
        absent=("NoSuchEntity",),
        PolicyName=policy_name,
        **principal.kwargs,
    )
    return None if answer is None else answer.get("PolicyDocument")


def principal_exists(iam: Any, principal: Principal) -> bool:
    """Tells "the policy is gone" from "the principal is gone": IAM says NoSuchEntity to both."""
    found = call(
        iam, principal.get_op, principal.what, absent=("NoSuchEntity",), **principal.kwargs
    )
    return found is not None


def attach_deny(
    ctx: ActionContext, principal: Principal, policy_name: str, document: dict[str, Any]
) -> InlinePolicyResult:
    iam = ctx.aws("iam")
    result = InlinePolicyResult(
        principal_type=principal.kind,
        principal_name=principal.name,
        policy_name=policy_name,
        status="attached",
    )
    current = get_inline(iam, principal, policy_name)
    if current is not None and same_policy(current, document):
        return result.model_copy(update={"already_done": True})
    call(
        iam,
        principal.policy_op("Put"),
        principal.what,
        PolicyName=policy_name,
        PolicyDocument=policy_json(document),
        **principal.kwargs,
    )
    ctx.note(f"attached inline deny policy {policy_name} to {principal.what}")
    return result


def remove_deny(
    ctx: ActionContext, principal: Principal, policy_name: str, skip: str | None
) -> InlinePolicyResult:
    result = InlinePolicyResult(
        principal_type=principal.kind,
        principal_name=principal.name,
        policy_name=policy_name,
        status="removed",
    )
    if skip:
        ctx.note(f"nothing to undo for {principal.what}: {skip}")
        return result.model_copy(update={"already_done": True})
    iam = ctx.aws("iam")
    if get_inline(iam, principal, policy_name) is None:
        if not principal_exists(iam, principal):
            raise ActionFailed(f"{principal.what} not found")
        return result.model_copy(update={"already_done": True})
    call(
        iam,
        principal.policy_op("Delete"),
        principal.what,
        PolicyName=policy_name,
        **principal.kwargs,
    )
    ctx.note(f"removed inline policy {policy_name} from {principal.what}")
    return result


def plan_attach(
    principal: Principal, policy_name: str, document: dict[str, Any]
) -> list[PlannedCall]:
    return [
        PlannedCall(
            "iam",
            principal.policy_op("Get"),
            {**principal.kwargs, "PolicyName": policy_name},
            note="an identical policy already attached means done",
        ),
        PlannedCall(
            "iam",
            principal.policy_op("Put"),
            {
                **principal.kwargs,
                "PolicyName": policy_name,
                "PolicyDocument": policy_json(document),
            },
        ),
    ]


def plan_remove(principal: Principal, policy_name: str, skip: str | None) -> list[PlannedCall]:
    if skip:
        return []
    return [
        PlannedCall(
            "iam",
            principal.policy_op("Get"),
            {**principal.kwargs, "PolicyName": policy_name},
            note=f"when the policy is already gone, iam:{principal.get_op} checks the "
            f"{principal.kind} exists",
        ),
        PlannedCall(
            "iam",
            principal.policy_op("Delete"),
            {**principal.kwargs, "PolicyName": policy_name},
        ),
    ]


def undo_attach(params: PrincipalParams, result: InlinePolicyResult | None) -> dict[str, Any]:
    out: dict[str, Any] = principal_fields(params.principal)
    if result is not None and result.already_done:
        out["skip"] = f"{result.policy_name} was already attached before this step"
    return out


def inline_calls(verb: str) -> list[tuple[str, str]]:
    """The calls of attaching (`Put`) or removing (`Delete`) an inline policy of a user or role."""
    return [("iam", f"{op}{kind}Policy") for op in ("Get", verb) for kind in ("User", "Role")]


INLINE_DELETE_EXTRA = {
    "iam:GetUser": "tells an already removed policy from a missing user",
    "iam:GetRole": "tells an already removed policy from a missing role",
}


# --- access keys ---------------------------------------------------------------------------


class AccessKeyParams(AwsParams):
    access_key_id: str = Field(pattern=ACCESS_KEY_ID, description="the access key id (AKIA...)")
    user_name: str | None = Field(
        None,
        pattern=IAM_NAME,
        description="the key's user; looked up with iam:GetAccessKeyLastUsed when absent",
    )

    @field_validator("user_name", mode="before")
    @classmethod
    def blank_is_none(cls, value: Any) -> Any:
        return blank_to_none(value)


class ActivateKeyParams(AccessKeyParams):
    skip: str | None = Field(None, description=SKIP_DESCRIPTION)


KeyStatus = Literal["Active", "Inactive"]


class AccessKeyResult(AwsResult):
    access_key_id: str
    user_name: str
    status: KeyStatus | Literal["Deleted"]
    previous_status: KeyStatus


_KEY_OWNER = from_call("iam:GetAccessKeyLastUsed")


def _plan_key(params: AccessKeyParams, last: PlannedCall) -> list[PlannedCall]:
    calls = []
    if params.user_name is None:
        calls.append(
            PlannedCall(
                "iam",
                "GetAccessKeyLastUsed",
                {"AccessKeyId": params.access_key_id},
                note="finds the key's user",
            )
        )
    calls.append(
        PlannedCall(
            "iam",
            "ListAccessKeys",
            {"UserName": params.user_name or _KEY_OWNER},
            note="finds the key and its current status",
        )
    )
    calls.append(last)
    return calls


def _key_owner(iam: Any, access_key_id: str) -> str:
    answer = call(
        iam, "GetAccessKeyLastUsed", f"access key {access_key_id}", AccessKeyId=access_key_id
    )
    user = answer.get("UserName")
    if not user:
        raise ActionFailed(f"access key {access_key_id}: IAM does not say which user owns it")
    return str(user)


def _find_key(ctx: ActionContext, params: AccessKeyParams) -> tuple[Any, str, str]:
    """(client, user, status) of the key, or ActionFailed naming what is missing."""
    iam = ctx.aws("iam")
    user = params.user_name or _key_owner(iam, params.access_key_id)
    keys = call(iam, "ListAccessKeys", f"IAM user {user}", UserName=user)
    for key in keys.get("AccessKeyMetadata", []):
        if key.get("AccessKeyId") == params.access_key_id:
            return iam, user, str(key.get("Status"))
    raise ActionFailed(f"access key {params.access_key_id} not found for IAM user {user}")


def _set_key_status(
    ctx: ActionContext, params: AccessKeyParams, status: KeyStatus
) -> AccessKeyResult:
    iam, user, previous = _find_key(ctx, params)
    result = AccessKeyResult(
        access_key_id=params.access_key_id,
        user_name=user,
        status=status,
        previous_status="Active" if previous == "Active" else "Inactive",
    )
    if previous == status:
        return result.model_copy(update={"already_done": True})
    call(
        iam,
        "UpdateAccessKey",
        f"access key {params.access_key_id}",
        UserName=user,
        AccessKeyId=params.access_key_id,
        Status=status,
    )
    ctx.note(f"access key {params.access_key_id} of {user}: {previous} -> {status}")
    return result


def _update_call(params: AccessKeyParams, status: KeyStatus) -> PlannedCall:
    return PlannedCall(
        "iam",
        "UpdateAccessKey",
        {
            "UserName": params.user_name or _KEY_OWNER,
            "AccessKeyId": params.access_key_id,
            "Status": status,
        },
        note=f"skipped when the key is already {status.lower()}",
    )


def _plan_deactivate(params: AccessKeyParams) -> list[PlannedCall]:
    return _plan_key(params, _update_call(params, "Inactive"))


def _plan_activate(params: ActivateKeyParams) -> list[PlannedCall]:
    if params.skip:
        return []
    return _plan_key(params, _update_call(params, "Active"))


def _simulate_key(params: AccessKeyParams, status: KeyStatus) -> AccessKeyResult:
    return AccessKeyResult(
        access_key_id=params.access_key_id,
        user_name=params.user_name or _KEY_OWNER,
        status=status,
        previous_status="Active" if status == "Inactive" else "Inactive",
    )


def _key_params(params: AccessKeyParams, result: AccessKeyResult | None) -> dict[str, Any]:
    out: dict[str, Any] = {"access_key_id": params.access_key_id}
    user = result.user_name if result is not None else params.user_name
    if user and not user.startswith("<"):
        out["user_name"] = user
    return out


def _undo_deactivate(params: AccessKeyParams, result: AccessKeyResult | None) -> dict[str, Any]:
    out = _key_params(params, result)
    if result is not None and result.previous_status == "Inactive":
        out["skip"] = "the key was already inactive before this step"
    return out


@action(
    "aws.iam.deactivate_access_key",
    effect="mutate",
    calls=[
        ("iam", "GetAccessKeyLastUsed"),
        ("iam", "ListAccessKeys"),
        ("iam", "UpdateAccessKey"),
    ],
    planner=_plan_deactivate,
    simulate=lambda p, run: _simulate_key(p, "Inactive"),
    compensation="aws.iam.activate_access_key",
    undo=_undo_deactivate,
    idempotent=True,
)
def deactivate_access_key(ctx: ActionContext, params: AccessKeyParams) -> AccessKeyResult:
    """Make an access key unusable at once; the key survives, so the change can be undone."""
    return _set_key_status(ctx, params, "Inactive")


@action(
    "aws.iam.activate_access_key",
    effect="mutate",
    calls=[
        ("iam", "GetAccessKeyLastUsed"),
        ("iam", "ListAccessKeys"),
        ("iam", "UpdateAccessKey"),
    ],
    planner=_plan_activate,
    simulate=lambda p, run: _simulate_key(p, "Active"),
    compensation="aws.iam.deactivate_access_key",
    undo=lambda p, r: _key_params(p, r),
    idempotent=True,
)
def activate_access_key(ctx: ActionContext, params: ActivateKeyParams) -> AccessKeyResult:
    """Give a deactivated key back to its user, for example after a false positive."""
    if params.skip:
        ctx.note(f"nothing to undo for access key {params.access_key_id}: {params.skip}")
        return AccessKeyResult(
            access_key_id=params.access_key_id,
            user_name=params.user_name or "",
            status="Inactive",
            previous_status="Inactive",
            already_done=True,
        )
    return _set_key_status(ctx, params, "Active")


def _plan_delete_key(params: AccessKeyParams) -> list[PlannedCall]:
    return _plan_key(
        params,
        PlannedCall(
            "iam",
            "DeleteAccessKey",
            {"UserName": params.user_name or _KEY_OWNER, "AccessKeyId": params.access_key_id},
        ),
    )


@action(
    "aws.iam.delete_access_key",
    effect="mutate",
    calls=[
        ("iam", "GetAccessKeyLastUsed"),
        ("iam", "ListAccessKeys"),
        ("iam", "DeleteAccessKey"),
    ],
    planner=_plan_delete_key,
    simulate=lambda p, run: _simulate_key(p, "Inactive").model_copy(update={"status": "Deleted"}),
    irreversible="a deleted access key cannot be restored; its user needs a new key",
    no_evidence="a key holds no evidence; its use stays in CloudTrail",
    prefer="aws.iam.deactivate_access_key",
)
def delete_access_key(ctx: ActionContext, params: AccessKeyParams) -> AccessKeyResult:
    """Delete an access key for good.

    Not idempotent on purpose: a key that is not found fails the step, because "already
    deleted" and "a mistyped id while the leaked key stays active" look the same to IAM.
    """
    iam, user, previous = _find_key(ctx, params)
    call(
        iam,
        "DeleteAccessKey",
        f"access key {params.access_key_id}",
        UserName=user,
        AccessKeyId=params.access_key_id,
    )
    ctx.note(f"deleted access key {params.access_key_id} of {user} (was {previous})")
    return AccessKeyResult(
        access_key_id=params.access_key_id,
        user_name=user,
        status="Deleted",
        previous_status="Active" if previous == "Active" else "Inactive",
    )


# --- role sessions ----------------------------------------------------------------------------

REVOKE_POLICY = "AWSRevokeOlderSessions"


class RevokeSessionsParams(AwsParams):
    role_name: str = Field(pattern=IAM_NAME, description="the role whose sessions to revoke")
    issued_before: dt.datetime | None = Field(
        None, description="deny sessions issued before this time (UTC when no zone); default now"
    )

    @field_validator("issued_before", mode="before")
    @classmethod
    def blank_is_none(cls, value: Any) -> Any:
        return blank_to_none(value)

    @field_validator("issued_before")
    @classmethod
    def utc_when_naive(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


class RevokeSessionsResult(AwsResult):
    role_name: str
    policy_name: str = REVOKE_POLICY
    issued_before: str = Field(description="sessions issued before this time are denied")
    previous_policy_document: str | None = Field(
        None, description="the revocation policy this step replaced, restored by the undo"
    )


def _revoke_document(cutoff: str, sid: str) -> dict[str, Any]:
    """The policy the IAM console writes for "Revoke active sessions", plus a Sid of ours."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": sid,
                "Effect": "Deny",
                "Action": ["*"],
                "Resource": ["*"],
                "Condition": {"DateLessThan": {"aws:TokenIssueTime": cutoff}},
            }
        ],
    }


def _revocation_sid(run: RunInfo) -> str:
    """Marks the policy as this step's, so a rerun with "now" as cutoff sees it is done."""
    return "IrbookRun" + short_hash(f"{run.run_id}|{run.playbook_id}|{run.step_id}", 16)


def _parse_document(document: Any) -> dict[str, Any]:
    if isinstance(document, str):
        try:
            parsed = json.loads(document)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return document if isinstance(document, dict) else {}


def _revocation_of(document: dict[str, Any]) -> tuple[str | None, dt.datetime | None]:
    """(Sid, cutoff) of a revocation policy; the first statement with a TokenIssueTime."""
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    for statement in statements:
        cond = statement.get("Condition", {}).get("DateLessThan", {})
        value = cond.get("aws:TokenIssueTime")
        if isinstance(value, str):
            try:
                cutoff = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                cutoff = None
            if cutoff is not None and cutoff.tzinfo is None:
                cutoff = cutoff.replace(tzinfo=dt.UTC)
            return statement.get("Sid"), cutoff
    return None, None


def _plan_revoke(params: RevokeSessionsParams) -> list[PlannedCall]:
    cutoff = iso(params.issued_before) if params.issued_before else "<now>"
    document = _revoke_document(cutoff, "IrbookRun<hash of run id>")
    return [
        PlannedCall(
            "iam",
            "GetRolePolicy",
            {"RoleName": params.role_name, "PolicyName": REVOKE_POLICY},
            note="an existing revocation with a later cutoff means done; an earlier one is "
            "recorded for the undo",
        ),
        PlannedCall(
            "iam",
            "PutRolePolicy",
            {
                "RoleName": params.role_name,
                "PolicyName": REVOKE_POLICY,
                "PolicyDocument": policy_json(document),
            },
        ),
    ]


def _simulate_revoke(params: RevokeSessionsParams, run: RunInfo) -> RevokeSessionsResult:
    cutoff = iso(params.issued_before) if params.issued_before else "<now>"
    return RevokeSessionsResult(role_name=params.role_name, issued_before=cutoff)


def _undo_revoke(
    params: RevokeSessionsParams, result: RevokeSessionsResult | None
) -> dict[str, Any]:
    out: dict[str, Any] = {"role_name": params.role_name}
    if result is not None and result.previous_policy_document is not None:
        out["previous_policy_document"] = result.previous_policy_document
    return out


@action(
    "aws.iam.revoke_role_sessions",
    effect="mutate",
    calls=[
        ("iam", "GetRolePolicy"),
        ("iam", "PutRolePolicy"),
    ],
    planner=_plan_revoke,
    simulate=_simulate_revoke,
    compensation="aws.iam.remove_session_revocation",
    undo=_undo_revoke,
    idempotent=True,
)
def revoke_role_sessions(ctx: ActionContext, params: RevokeSessionsParams) -> RevokeSessionsResult:
    """Deny every session of a role issued before a cutoff, as the IAM console's "Revoke
    active sessions" does: stolen temporary credentials stop working, new sessions work."""
    iam = ctx.aws("iam")
    role = Principal("role", params.role_name)
    cutoff = params.issued_before
    if cutoff is None:  # round up, so sessions issued this second are revoked too
        moment = now()
        cutoff = moment.replace(microsecond=0) + dt.timedelta(
            seconds=1 if moment.microsecond else 0
        )
    sid = _revocation_sid(ctx.run)
    previous: str | None = None
    current = get_inline(iam, role, REVOKE_POLICY)
    if current is not None:
        document = _parse_document(current)
        their_sid, their_cutoff = _revocation_of(document)
        ours = their_sid == sid
        later = (
            params.issued_before is not None and their_cutoff is not None and their_cutoff >= cutoff
        )
        if ours or later:
            return RevokeSessionsResult(
                role_name=params.role_name,
                issued_before=iso(their_cutoff) if their_cutoff else iso(cutoff),
                previous_policy_document=None if ours else policy_json(document),
                already_done=True,
            )
        previous = policy_json(document)
    call(
        iam,
        "PutRolePolicy",
        role.what,
        RoleName=params.role_name,
        PolicyName=REVOKE_POLICY,
        PolicyDocument=policy_json(_revoke_document(iso(cutoff), sid)),
    )
    ctx.note(f"sessions of IAM role {params.role_name} issued before {iso(cutoff)} are denied")
    return RevokeSessionsResult(
        role_name=params.role_name, issued_before=iso(cutoff), previous_policy_document=previous
    )


class RemoveRevocationParams(AwsParams):
    role_name: str = Field(pattern=IAM_NAME)
    previous_policy_document: str | None = Field(
        None, description="the revocation policy to put back instead of removing it (JSON)"
    )

    @field_validator("previous_policy_document")
    @classmethod
    def is_json_object(cls, value: str | None) -> str | None:
        if value is not None and not isinstance(_parse_document(value).get("Statement"), list):
            raise ValueError("previous_policy_document must be a JSON policy document")
        return value


class RemoveRevocationResult(AwsResult):
    role_name: str
    policy_name: str = REVOKE_POLICY
    status: Literal["removed", "restored"]
    removed_issued_before: str | None = Field(
        None, description="the cutoff of the revocation this step took away"
    )


def _plan_remove_revocation(params: RemoveRevocationParams) -> list[PlannedCall]:
    base = {"RoleName": params.role_name, "PolicyName": REVOKE_POLICY}
    calls = [PlannedCall("iam", "GetRolePolicy", base, note="nothing to do when it matches")]
    if params.previous_policy_document is None:
        calls.append(PlannedCall("iam", "DeleteRolePolicy", base))
    else:
        document = _parse_document(params.previous_policy_document)
        calls.append(
            PlannedCall(
                "iam",
                "PutRolePolicy",
                {**base, "PolicyDocument": policy_json(document)},
                note="puts back the revocation that was there before",
            )
        )
    return calls


@action(
    "aws.iam.remove_session_revocation",
    effect="mutate",
    calls=[
        ("iam", "GetRolePolicy"),
        ("iam", "DeleteRolePolicy"),
        ("iam", "PutRolePolicy"),
    ],
    extra_permissions={"iam:GetRole": "tells an already removed revocation from a missing role"},
    planner=_plan_remove_revocation,
    simulate=lambda p, run: RemoveRevocationResult(
        role_name=p.role_name,
        status="removed" if p.previous_policy_document is None else "restored",
    ),
    compensation="aws.iam.revoke_role_sessions",
    undo=lambda p, r: {
        "role_name": p.role_name,
        **({"issued_before": r.removed_issued_before} if r and r.removed_issued_before else {}),
    },
    idempotent=True,
)
def remove_session_revocation(
    ctx: ActionContext, params: RemoveRevocationParams
) -> RemoveRevocationResult:
    """Let a role's older sessions work again: removes AWSRevokeOlderSessions, or puts back
    the revocation policy that was there before irbook replaced it."""
    iam = ctx.aws("iam")
    role = Principal("role", params.role_name)
    status: Literal["removed", "restored"] = (
        "removed" if params.previous_policy_document is None else "restored"
    )
    current = get_inline(iam, role, REVOKE_POLICY)
    removed = _revocation_of(_parse_document(current))[1] if current is not None else None
    result = RemoveRevocationResult(
        role_name=params.role_name,
        status=status,
        removed_issued_before=iso(removed) if removed else None,
    )
    if params.previous_policy_document is None:
        if current is None:
            if not principal_exists(iam, role):
                raise ActionFailed(f"{role.what} not found")
            return result.model_copy(update={"already_done": True})
        call(
            iam, "DeleteRolePolicy", role.what, RoleName=params.role_name, PolicyName=REVOKE_POLICY
        )
        ctx.note(f"removed {REVOKE_POLICY} from IAM role {params.role_name}")
        return result
    previous = _parse_document(params.previous_policy_document)
    if current is not None and same_policy(current, previous):
        return result.model_copy(update={"already_done": True, "removed_issued_before": None})
    call(
        iam,
        "PutRolePolicy",
        role.what,
        RoleName=params.role_name,
        PolicyName=REVOKE_POLICY,
        PolicyDocument=policy_json(previous),
    )
    ctx.note(f"restored the earlier {REVOKE_POLICY} of IAM role {params.role_name}")
    return result


# --- quarantine a principal ------------------------------------------------------------------

QUARANTINE_POLICY = "IrbookQuarantineDenyAll"
QUARANTINE_DOCUMENT: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [{"Sid": "IrbookQuarantine", "Effect": "Deny", "Action": "*", "Resource": "*"}],
}


@action(
    "aws.iam.quarantine_principal",
    effect="mutate",
    calls=inline_calls("Put"),
    planner=lambda p: plan_attach(p.principal, QUARANTINE_POLICY, QUARANTINE_DOCUMENT),
    simulate=lambda p, run: InlinePolicyResult(
        principal_type=p.principal.kind,
        principal_name=p.principal.name,
        policy_name=QUARANTINE_POLICY,
        status="attached",
    ),
    compensation="aws.iam.release_principal",
    undo=undo_attach,
    idempotent=True,
)
def quarantine_principal(ctx: ActionContext, params: PrincipalParams) -> InlinePolicyResult:
    """Deny everything to a user or role with an inline policy: an explicit deny beats every
    allow, covers sessions and keys already issued, and is one call to take away again."""
    return attach_deny(ctx, params.principal, QUARANTINE_POLICY, QUARANTINE_DOCUMENT)


@action(
    "aws.iam.release_principal",
    effect="mutate",
    calls=inline_calls("Delete"),
    extra_permissions=INLINE_DELETE_EXTRA,
    planner=lambda p: plan_remove(p.principal, QUARANTINE_POLICY, p.skip),
    simulate=lambda p, run: InlinePolicyResult(
        principal_type=p.principal.kind,
        principal_name=p.principal.name,
        policy_name=QUARANTINE_POLICY,
        status="removed",
        already_done=bool(p.skip),
    ),
    compensation="aws.iam.quarantine_principal",
    undo=lambda p, r: principal_fields(p.principal),
    idempotent=True,
)
def release_principal(ctx: ActionContext, params: ReleaseParams) -> InlinePolicyResult:
    """Take a quarantined user or role back into service."""
    return remove_deny(ctx, params.principal, QUARANTINE_POLICY, params.skip)


# --- console passwords -------------------------------------------------------------------------


class ConsoleLoginParams(AwsParams):
    user_name: str = Field(pattern=IAM_NAME, description="the IAM user")


class ConsoleLoginResult(AwsResult):
    user_name: str
    status: Literal["no console password"] = "no console password"


@action(
    "aws.iam.disable_console_login",
    effect="mutate",
    calls=[
        ("iam", "GetLoginProfile"),
        ("iam", "DeleteLoginProfile"),
    ],
    extra_permissions={"iam:GetUser": "tells a user without a password from a missing user"},
    planner=lambda p: [
        PlannedCall(
            "iam",
            "GetLoginProfile",
            {"UserName": p.user_name},
            note="no password means done (iam:GetUser then checks the user exists)",
        ),
        PlannedCall("iam", "DeleteLoginProfile", {"UserName": p.user_name}),
    ],
    simulate=lambda p, run: ConsoleLoginResult(user_name=p.user_name),
    irreversible="the console password is deleted; access needs a new one (iam:CreateLoginProfile)",
    no_evidence="a password holds no evidence; its sign-ins stay in CloudTrail",
    idempotent=True,
)
def disable_console_login(ctx: ActionContext, params: ConsoleLoginParams) -> ConsoleLoginResult:
    """Delete a user's console password, so a phished password no longer signs in."""
    iam = ctx.aws("iam")
    user = Principal("user", params.user_name)
    profile = call(
        iam, "GetLoginProfile", user.what, absent=("NoSuchEntity",), UserName=params.user_name
    )
    if profile is None:
        if not principal_exists(iam, user):
            raise ActionFailed(f"{user.what} not found")
        return ConsoleLoginResult(user_name=params.user_name, already_done=True)
    call(iam, "DeleteLoginProfile", user.what, UserName=params.user_name)
    ctx.note(f"deleted the console password of {user.what}")
    return ConsoleLoginResult(user_name=params.user_name)


# --- service-specific credentials (Amazon Bedrock API keys) ------------------------------------

SERVICE = r"^[a-z0-9-]+(\.[a-z0-9-]+)*\.amazonaws\.com$"
CREDENTIAL_ID = r"^[A-Z0-9]{16,128}$"


class ServiceCredentialsParams(AwsParams):
    user_name: str = Field(pattern=IAM_NAME, description="the IAM user the credentials belong to")
    service: str = Field(
        "bedrock.amazonaws.com",
        pattern=SERVICE,
        description="the service the credentials are for; Bedrock API keys by default",
    )
    service_specific_credential_id: str | None = Field(
        None, pattern=CREDENTIAL_ID, description="one credential; default every active one"
    )

    @field_validator("service_specific_credential_id", mode="before")
    @classmethod
    def blank_is_none(cls, value: Any) -> Any:
        return blank_to_none(value)


class ActivateCredentialsParams(AwsParams):
    user_name: str = Field(pattern=IAM_NAME)
    service: str = Field("bedrock.amazonaws.com", pattern=SERVICE)
    service_specific_credential_ids: list[str] = Field(
        default_factory=list, description="the credentials to reactivate"
    )


class ServiceCredentialsResult(AwsResult):
    user_name: str
    service: str
    changed: list[str] = Field(default_factory=list, description="credential ids this step changed")
    unchanged: list[str] = Field(
        default_factory=list, description="credential ids already in the wanted state"
    )


def _list_credentials(iam: Any, user_name: str, service: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    marker: str | None = None
    for _ in range(100):
        kwargs: dict[str, Any] = {"UserName": user_name, "ServiceName": service}
        if marker:
            kwargs["Marker"] = marker
        page = call(iam, "ListServiceSpecificCredentials", f"IAM user {user_name}", **kwargs)
        found.extend(page.get("ServiceSpecificCredentials", []))
        marker = page.get("Marker") if page.get("IsTruncated") else None
        if not marker:
            break
    return found


def _set_credentials(
    ctx: ActionContext,
    user_name: str,
    service: str,
    ids: list[str] | None,
    status: KeyStatus,
) -> ServiceCredentialsResult:
    iam = ctx.aws("iam")
    creds = {
        str(c["ServiceSpecificCredentialId"]): str(c.get("Status"))
        for c in _list_credentials(iam, user_name, service)
    }
    wanted = list(creds) if ids is None else ids
    for cred in wanted:
        if cred not in creds:
            raise ActionFailed(
                f"service-specific credential {cred} for {service} not found for IAM user "
                f"{user_name}"
            )
    changed = [c for c in wanted if creds[c] != status]
    for cred in changed:
        call(
            iam,
            "UpdateServiceSpecificCredential",
            f"service-specific credential {cred} of IAM user {user_name}",
            UserName=user_name,
            ServiceSpecificCredentialId=cred,
            Status=status,
        )
    if changed:
        ctx.note(f"{service} credentials of {user_name} set {status}: {', '.join(changed)}")
    return ServiceCredentialsResult(
        user_name=user_name,
        service=service,
        changed=changed,
        unchanged=[c for c in wanted if c not in changed],
        already_done=not changed,
    )


def _plan_credentials(
    user_name: str, service: str, ids: list[str] | None, status: KeyStatus
) -> list[PlannedCall]:
    calls = [
        PlannedCall(
            "iam",
            "ListServiceSpecificCredentials",
            {
                "UserName": user_name,
                "ServiceName": service,
                "Marker": if_set("iam:ListServiceSpecificCredentials"),
            },
            note="finds the credentials and their status (repeated with Marker when many)",
        )
    ]
    update = {"UserName": user_name, "Status": status}
    if ids is None:
        calls.append(
            PlannedCall(
                "iam",
                "UpdateServiceSpecificCredential",
                {
                    **update,
                    "ServiceSpecificCredentialId": from_call("iam:ListServiceSpecificCredentials"),
                },
                note=f"once per credential for the service not already {status.lower()}",
            )
        )
        return calls
    for cred in ids:
        calls.append(
            PlannedCall(
                "iam",
                "UpdateServiceSpecificCredential",
                {**update, "ServiceSpecificCredentialId": cred},
                note=f"skipped when already {status.lower()}",
            )
        )
    return calls


def _credential_ids(params: ServiceCredentialsParams) -> list[str] | None:
    return (
        None
        if params.service_specific_credential_id is None
        else [params.service_specific_credential_id]
    )


@action(
    "aws.iam.deactivate_service_credentials",
    effect="mutate",
    calls=[
        ("iam", "ListServiceSpecificCredentials"),
        ("iam", "UpdateServiceSpecificCredential"),
    ],
    planner=lambda p: _plan_credentials(p.user_name, p.service, _credential_ids(p), "Inactive"),
    simulate=lambda p, run: ServiceCredentialsResult(
        user_name=p.user_name,
        service=p.service,
        changed=_credential_ids(p) or [from_call("iam:ListServiceSpecificCredentials")],
    ),
    compensation="aws.iam.activate_service_credentials",
    undo=lambda p, r: {
        "user_name": p.user_name,
        "service": p.service,
        "service_specific_credential_ids": list(r.changed) if r is not None else [],
    },
    idempotent=True,
)
def deactivate_service_credentials(
    ctx: ActionContext, params: ServiceCredentialsParams
) -> ServiceCredentialsResult:
    """Deactivate a user's service-specific credentials; Amazon Bedrock's long-term API keys
    are of this kind, so a leaked Bedrock key stops working while it can be restored."""
    return _set_credentials(
        ctx, params.user_name, params.service, _credential_ids(params), "Inactive"
    )


@action(
    "aws.iam.activate_service_credentials",
    effect="mutate",
    calls=[
        ("iam", "ListServiceSpecificCredentials"),
        ("iam", "UpdateServiceSpecificCredential"),
    ],
    planner=lambda p: (
        _plan_credentials(p.user_name, p.service, p.service_specific_credential_ids, "Active")
        if p.service_specific_credential_ids
        else []
    ),
    simulate=lambda p, run: ServiceCredentialsResult(
        user_name=p.user_name,
        service=p.service,
        changed=list(p.service_specific_credential_ids),
        already_done=not p.service_specific_credential_ids,
    ),
    compensation="aws.iam.deactivate_service_credentials",
    undo=lambda p, r: {
        "user_name": p.user_name,
        "service": p.service,
        **(
            {"service_specific_credential_id": r.changed[0]}
            if r is not None and len(r.changed) == 1
            else {}
        ),
    },
    idempotent=True,
)
def activate_service_credentials(
    ctx: ActionContext, params: ActivateCredentialsParams
) -> ServiceCredentialsResult:
    """Reactivate exactly the credentials a containment step deactivated, no others."""
    if not params.service_specific_credential_ids:
        return ServiceCredentialsResult(
            user_name=params.user_name, service=params.service, already_done=True
        )
    return _set_credentials(
        ctx, params.user_name, params.service, params.service_specific_credential_ids, "Active"
    )


# --- instance profiles ------------------------------------------------------------------------

# An instance profile's ARN (with its path) or its bare name, as GuardDuty's EC2 findings
# give it in resource.instanceDetails.iamInstanceProfile.arn.
INSTANCE_PROFILE = (
    r"^(arn:aws(-[a-z]+){0,2}:iam::\d{12}:instance-profile/([\w+=,.@-]+/){0,32})?"
    r"[\w+=,.@-]{1,128}$"
)


class InstanceProfileParams(AwsParams):
    instance_profile: str = Field(
        pattern=INSTANCE_PROFILE,
        description="the instance profile's ARN (as a GuardDuty EC2 finding names it) or name",
    )

    @property
    def name(self) -> str:
        return self.instance_profile.rsplit("/", 1)[-1]

    @property
    def arn(self) -> str | None:
        return self.instance_profile if self.instance_profile.startswith("arn:") else None


class InstanceProfileRolesResult(AwsResult):
    instance_profile: str = Field(description="the instance profile's name")
    instance_profile_arn: str | None = None
    roles: list[str] = Field(
        default_factory=list,
        description="names of the roles the profile hands its instances (AWS allows one); "
        "empty in a dry run, which does not ask IAM: a drill names them in its outputs",
    )
    role_arns: list[str] = Field(default_factory=list)
    status: Literal["found", "simulated"] = "found"


@action(
    "aws.iam.instance_profile_roles",
    effect="read",
    calls=[
        ("iam", "GetInstanceProfile"),
    ],
    planner=lambda p: [
        PlannedCall("iam", "GetInstanceProfile", {"InstanceProfileName": p.name}),
    ],
    simulate=lambda p, run: InstanceProfileRolesResult(
        instance_profile=p.name, instance_profile_arn=p.arn, status="simulated"
    ),
    idempotent=True,
)
def instance_profile_roles(
    ctx: ActionContext, params: InstanceProfileParams
) -> InstanceProfileRolesResult:
    """The role behind an EC2 instance profile: findings about an instance name its profile,
    while sessions are revoked per role."""
    what = f"IAM instance profile {params.name}"
    answer = call(ctx.aws("iam"), "GetInstanceProfile", what, InstanceProfileName=params.name)
    profile = answer["InstanceProfile"]
    arn = str(profile.get("Arn", ""))
    if params.arn is not None and arn != params.arn:
        # GetInstanceProfile reads this account's profile of that name: one of another
        # account (or path) is not the instance's, and its role is not the one to revoke
        raise ActionFailed(f"{what} is {arn}, not {params.arn}: not the instance's profile")
    roles = profile.get("Roles", [])
    return InstanceProfileRolesResult(
        instance_profile=params.name,
        instance_profile_arn=arn or None,
        roles=[str(r["RoleName"]) for r in roles],
        role_arns=[str(r["Arn"]) for r in roles],
    )
