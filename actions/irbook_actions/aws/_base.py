"""What every AWS action shares: the params base, one way to call AWS, and small helpers.

Action modules never import boto3 or botocore at module level: `irbook validate` loads the
whole `aws` namespace to check step parameters and must stay fast. botocore is imported
inside `call`, the only place that needs its exception types.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from irbook.registry import ActionContext, ActionFailed, RunInfo

# --- models ----------------------------------------------------------------------------


class AwsParams(BaseModel):
    """Parameters of an AWS action.

    `extra="forbid"` turns a misspelt key into a validation error with a hint;
    `defer_build` postpones building ~60 validators until a model is first used, which
    keeps `irbook validate` start-up fast.
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)


class AwsResult(BaseModel):
    """The outputs of an AWS action; `already_done` is how an idempotent rerun says so."""

    model_config = ConfigDict(defer_build=True)

    already_done: bool = Field(
        False, description="true when the resource was already in the wanted state"
    )


SKIP_DESCRIPTION = (
    "set by the undo of a step that found the resource already in its state: "
    "the reason is recorded and nothing is called"
)


def blank_to_none(value: Any) -> Any:
    """Alert fields rendered into `with:` arrive as "" when the alert lacks them."""
    return None if value == "" else value


# --- calling AWS --------------------------------------------------------------------------

_NOT_FOUND = frozenset(
    {
        "404",
        "NoSuchEntity",
        "NoSuchBucket",
        "NoSuchKey",
        "NotFound",
        "NotFoundException",
        "ResourceNotFoundException",
        "ResourceNotFound",
        "ParameterNotFound",
        "UserNotFoundException",
        "WAFNonexistentItemException",
        "InvalidInstanceID.NotFound",
        "InvalidInstanceID.Malformed",
        "InvalidGroup.NotFound",
        "InvalidGroupId.Malformed",
        "InvalidSubnetID.NotFound",
        "InvalidNetworkAclID.NotFound",
        "InvalidNetworkInterfaceID.NotFound",
        "InvalidSnapshot.NotFound",
        "InvalidVolume.NotFound",
    }
)
_DENIED = frozenset(
    {
        "403",
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "AuthorizationError",
        "AuthorizationErrorException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "ExpiredToken",
        "ExpiredTokenException",
    }
)
_NOT_FOUND_WORDS = ("could not find", "not found", "does not exist", "cannot be found")


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", "")) or type(exc).__name__


def error_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    text = str(response.get("Error", {}).get("Message", "")) or str(exc)
    return " ".join(text.split())


def _matches(exc: BaseException, patterns: Iterable[str]) -> bool:
    """`patterns` are error codes, or "Code:words" when the code alone is too broad."""
    code, message = error_code(exc), error_message(exc).lower()
    for pattern in patterns:
        want, _, words = pattern.partition(":")
        if want == code and (not words or words.lower() in message):
            return True
    return False


def failure(exc: BaseException, operation: str, what: str) -> ActionFailed:
    """One line that names the resource, for an error AWS (or the network) gave."""
    code, message = error_code(exc), error_message(exc)
    lowered = message.lower()
    if code in _NOT_FOUND or (
        code == "ValidationException" and any(w in lowered for w in _NOT_FOUND_WORDS)
    ):
        return ActionFailed(f"{what} not found ({operation}: {code}: {message})")
    if code in _DENIED:
        return ActionFailed(f"access denied to {what} ({operation}: {code}: {message})")
    return ActionFailed(f"{operation} on {what} failed: {code}: {message}")


def _invoke(
    client: Any, operation: str, what: str, expected: Iterable[str], kwargs: dict[str, Any]
) -> tuple[Any, str]:
    from botocore import xform_name
    from botocore.exceptions import BotoCoreError, ClientError

    method = getattr(client, xform_name(operation))
    try:
        return method(**kwargs), ""
    except ClientError as exc:
        if _matches(exc, expected):
            return None, error_code(exc)
        raise failure(exc, operation, what) from None
    except BotoCoreError as exc:  # connection, timeout, credentials, parameter validation
        raise ActionFailed(f"{operation} on {what} failed: {' '.join(str(exc).split())}") from None


def call(
    client: Any,
    operation: str,
    what: str,
    /,
    *,
    absent: Iterable[str] = (),
    **kwargs: Any,
) -> Any:
    """Make one API call by its operation name, the name the planner and IAM use.

    Errors become an `ActionFailed` naming `what`. Errors matching `absent` (codes, or
    "Code:words") return None instead, for calls whose "not found" is an answer
    ("no such inline policy yet"), not a failure.
    """
    return _invoke(client, operation, what, absent, kwargs)[0]


def try_call(
    client: Any, operation: str, what: str, expected: Iterable[str], /, **kwargs: Any
) -> tuple[Any, str]:
    """Like `call`, but an error matching `expected` comes back as (None, its code)."""
    return _invoke(client, operation, what, expected, kwargs)


def client(ctx: ActionContext, service: str, region: str | None = None) -> Any:
    """A client for the step's region, or for `region` when a resource says where it lives."""
    if region:
        return ctx.clients.aws(service, region=region)
    return ctx.aws(service)


# --- values the planner cannot know --------------------------------------------------------


def from_call(name: str, detail: str = "") -> str:
    """A planned parameter that a live run takes from an earlier call's answer."""
    return f"<from {name}{', ' + detail if detail else ''}>"


def if_set(name: str) -> str:
    """A planned parameter that a live run passes only when an earlier answer has it."""
    return f"<from {name}, if set>"


RUN_ID = "<run id>"


# --- small helpers ---------------------------------------------------------------------------


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def policy_json(document: Mapping[str, Any]) -> str:
    """The exact JSON text an inline policy is written with (planner and live agree)."""
    return json.dumps(document, separators=(",", ":"))


def same_policy(current: Any, wanted: Mapping[str, Any]) -> bool:
    """IAM returns policy documents parsed (boto3) or as URL-decoded text (stubs)."""
    if isinstance(current, str):
        try:
            current = json.loads(current)
        except ValueError:
            return False
    return bool(current == wanted)


def run_token(run: RunInfo, *parts: str) -> str:
    """A stable id for this step of this run: reruns reuse it to see their own work."""
    name = "|".join((run.run_id, run.playbook_id, run.step_id, *parts))
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "irbook:" + name))


def short_hash(text: str, length: int = 12) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def key_safe(text: str) -> str:
    """A run id or name as one S3 key segment."""
    return re.sub(r"[^A-Za-z0-9._=-]", "-", text) or "-"


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def tag_dict(tags: Iterable[Mapping[str, Any]] | None) -> dict[str, str]:
    return {str(t["Key"]): str(t.get("Value", "")) for t in tags or ()}


# --- common field constraints --------------------------------------------------------------

IAM_NAME = r"^[\w+=,.@-]{1,64}$"
ACCESS_KEY_ID = r"^[A-Z0-9]{16,128}$"
S3_BUCKET = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
