"""Slack actions: the incident card in a channel, and approval requests with buttons.

Planned calls are named after the Slack Web API method a live run requests
(`slack:chat.postMessage`, `slack:chat.update`; the request path is `/api/<method>`), the
same names Slack's docs list next to the `chat:write` scope. Their params are what the
playbook decided (channel, text, thread); the card around the text carries run details
that only exist at run time (severity, run id, mode), so the planned call says so in a
note instead of guessing them.

Slack answers 429 with a Retry-After delay. A notification a few seconds late beats none
during an incident, so we wait what Slack asks and try again, three tries in all, and
give up at once when Slack asks for more than a minute. Every other Slack error becomes
one `ActionFailed` line naming the channel; notify actions default to `on_failure:
continue`, so a Slack outage never stops containment.

Text we build from names (playbook, step, approvers) is escaped, so that a hostile alert
field cannot smuggle `<!channel>` into a card. The playbook's own `text` is sent as
written: authors use mentions on purpose.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from irbook.errors import IrbookError
from irbook.registry import ActionContext, ActionFailed, PlannedCall, RunInfo, action

MAX_TRIES = 3
MAX_RETRY_AFTER = 60.0
DRY_RUN_MARK = "DRY RUN"
SIMULATED_TS = "0000000000.000001"
APPROVE_ACTION_ID = "irbook_approve"
REJECT_ACTION_ID = "irbook_reject"
APPROVAL_BLOCK_ID = "irbook_approval"
MAX_LISTED_CALLS = 20

_TS = r"^\d{1,12}\.\d{1,9}$"
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_SUBTEAM_ID = re.compile(r"^S[A-Z0-9]{2,}$")

# Module-level so that tests can observe the waits instead of sitting through them.
_sleep = time.sleep


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


# -- formatting --------------------------------------------------------------------------


def _escape(text: str) -> str:
    """Slack's three control characters; everything else is literal in mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _marked(text: str, run: RunInfo) -> str:
    return f"[{DRY_RUN_MARK}] {text}" if run.dry_run else text


def _mode(run: RunInfo) -> str:
    return DRY_RUN_MARK if run.dry_run else "LIVE"


def _run_context(run: RunInfo) -> dict[str, Any]:
    parts = [f"irbook run `{_escape(run.run_id)}`"]
    if run.step_id:
        parts.append(f"step `{_escape(run.step_id)}`")
    if run.incident_key:
        parts.append(f"incident `{_escape(run.incident_key)}`")
    if run.dry_run:
        parts.insert(0, f"*{DRY_RUN_MARK}*: nothing was changed")
    return {"type": "context", "elements": [_mrkdwn(" · ".join(parts))]}


def incident_card(text: str, run: RunInfo) -> list[dict[str, Any]]:
    """The Block Kit card a channel sees, so every update from a run looks the same."""
    title = run.title or run.playbook_id or "irbook incident"
    playbook = f"`{_escape(run.playbook_id)}`" if run.playbook_id else "-"
    return [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _clip(_marked(title, run), 150)},
        },
        {"type": "section", "text": _mrkdwn(_clip(text, 3000))},
        {
            "type": "section",
            "fields": [
                _mrkdwn(f"*Playbook*\n{playbook}"),
                _mrkdwn(f"*Severity*\n{_escape(run.severity)}"),
                _mrkdwn(f"*Run*\n`{_escape(run.run_id)}`"),
                _mrkdwn(f"*Mode*\n{_mode(run)}"),
            ],
        },
        _run_context(run),
    ]


def _mention(approver: str) -> str:
    if _USER_ID.match(approver):
        return f"<@{approver}>"
    if _SUBTEAM_ID.match(approver):
        return f"<!subteam^{approver}>"
    return _escape(approver)


def approval_card(params: RequestApprovalParams, run: RunInfo) -> list[dict[str, Any]]:
    """Buttons carry {run_id, step} so the interaction handler needs no other state."""
    value = json.dumps({"run_id": run.run_id, "step": params.step}, sort_keys=True)
    shown = params.planned_calls[:MAX_LISTED_CALLS]
    lines = [f"• `{_escape(call)}`" for call in shown]
    if len(params.planned_calls) > len(shown):
        lines.append(f"… and {len(params.planned_calls) - len(shown)} more")
    calls = "\n".join(lines) or "_no API calls_"
    compensation = (
        f"`{_escape(params.compensation)}`"
        if params.compensation
        else "_none: this step cannot be undone automatically_"
    )
    title = run.title or run.playbook_id or "irbook run"
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": _clip(_marked(f"Approval needed: {params.step}", run), 150),
            },
        },
        {
            "type": "section",
            "text": _mrkdwn(
                _clip(
                    f"*{_escape(title)}* wants to run step `{_escape(params.step)}` "
                    f"(severity {_escape(run.severity)}, mode {_mode(run)}).",
                    3000,
                )
            ),
        },
        {"type": "section", "text": _mrkdwn(_clip(f"*Planned calls*\n{calls}", 3000))},
        {"type": "section", "text": _mrkdwn(_clip(f"*Compensation*\n{compensation}", 3000))},
    ]
    if params.approvers:
        who = " ".join(_mention(a) for a in params.approvers)
        blocks.append({"type": "section", "text": _mrkdwn(_clip(f"*Approvers*\n{who}", 3000))})
    blocks.append(
        {
            "type": "actions",
            "block_id": APPROVAL_BLOCK_ID,
            "elements": [
                {
                    "type": "button",
                    "action_id": APPROVE_ACTION_ID,
                    "text": {"type": "plain_text", "text": "Approve"},
                    "style": "primary",
                    "value": value,
                },
                {
                    "type": "button",
                    "action_id": REJECT_ACTION_ID,
                    "text": {"type": "plain_text", "text": "Reject"},
                    "style": "danger",
                    "value": value,
                },
            ],
        }
    )
    blocks.append(_run_context(run))
    return blocks


# -- the Slack call ----------------------------------------------------------------------


def _retry_after(headers: Any) -> float:
    raw = None
    if hasattr(headers, "get"):
        raw = headers.get("Retry-After") or headers.get("retry-after")
    if isinstance(raw, list):  # slack_sdk sometimes keeps header values as lists
        raw = raw[0] if raw else None
    try:
        return max(0.0, float(raw)) if raw is not None else 1.0
    except ValueError:
        return 1.0


def _slack_reason(response: Any) -> str:
    status = getattr(response, "status_code", None)
    data = getattr(response, "data", None)
    error = data.get("error") if isinstance(data, dict) else None
    text = str(error).splitlines()[0] if error else ""
    if status == 429:
        return f"rate limited (HTTP 429) after {MAX_TRIES} tries"
    if status is not None and status != 200:
        return _clip(f"HTTP {status}" + (f": {text}" if text else ""), 200)
    return _clip(text or "unknown error", 200)


def call_slack(ctx: ActionContext, method: str, where: str, body: dict[str, Any]) -> dict[str, Any]:
    """One Web API call with the 429 policy above; errors become one line naming `where`."""
    from slack_sdk.errors import SlackApiError, SlackClientError

    try:
        client = ctx.clients.slack()
    except IrbookError as exc:
        raise ActionFailed(f"Slack {method} to {where}: {exc.message}") from None
    for attempt in range(1, MAX_TRIES + 1):
        try:
            response = client.api_call(method, json=body)
        except SlackApiError as exc:
            if exc.response.status_code == 429 and attempt < MAX_TRIES:
                delay = _retry_after(exc.response.headers)
                if delay > MAX_RETRY_AFTER:
                    raise ActionFailed(
                        f"Slack {method} to {where} failed: rate limited for {delay:g}s"
                    ) from None
                ctx.note(f"Slack rate-limited {method} to {where}; retrying in {delay:g}s")
                _sleep(delay)
                continue
            raise ActionFailed(
                f"Slack {method} to {where} failed: {_slack_reason(exc.response)}"
            ) from None
        except (SlackClientError, OSError, ValueError) as exc:
            raise ActionFailed(
                f"Slack {method} to {where} failed: cannot reach Slack ({type(exc).__name__})"
            ) from None
        data = response.data
        return data if isinstance(data, dict) else {}
    raise AssertionError("unreachable: the loop returns or raises")


# -- slack.post_message ------------------------------------------------------------------


class PostMessageParams(_Params):
    channel: str = Field(min_length=1, max_length=200, description="Channel name or ID")
    text: str = Field(
        min_length=1, max_length=40_000, description="The message; the card's body and fallback"
    )
    blocks: list[dict[str, Any]] | None = Field(
        default=None, max_length=50, description="Your own Block Kit blocks instead of the card"
    )
    thread: str | None = Field(default=None, pattern=_TS, description="Reply in this thread")
    update_ts: str | None = Field(
        default=None, pattern=_TS, description="Update this message in place (chat.update)"
    )


class PostMessageResult(BaseModel):
    channel: str
    ts: str
    thread_ts: str | None = None


def _post_method(params: PostMessageParams) -> str:
    return "chat.update" if params.update_ts else "chat.postMessage"


def _post_call(params: PostMessageParams) -> PlannedCall:
    shown: dict[str, Any] = {"channel": params.channel, "text": params.text}
    if params.update_ts:
        shown["ts"] = params.update_ts
    elif params.thread:
        shown["thread_ts"] = params.thread
    note = (
        "your blocks, marked when the run is a dry run"
        if params.blocks
        else "as an incident card with the playbook, severity, run id and mode"
    )
    return PlannedCall(service="slack", operation=_post_method(params), params=shown, note=note)


def _plan_post(params: PostMessageParams) -> list[PlannedCall]:
    return [_post_call(params)]


def _simulate_post(params: PostMessageParams, run: RunInfo) -> PostMessageResult:
    return PostMessageResult(
        channel=params.channel, ts=params.update_ts or SIMULATED_TS, thread_ts=params.thread
    )


@action(
    "slack.post_message",
    effect="notify",
    extra_permissions={"chat:write": "Slack bot token scope: post messages"},
    planner=_plan_post,
    simulate=_simulate_post,
)
def post_message(ctx: ActionContext, params: PostMessageParams) -> PostMessageResult:
    """Post the incident card to a channel or thread, or update an earlier card in place.

    Keep the returned channel (Slack's ID) and ts to update the card as the run goes on.
    """
    run = ctx.run
    if params.blocks is None:
        blocks = incident_card(params.text, run)
    elif run.dry_run:
        blocks = [_run_context(run), *params.blocks]
    else:
        blocks = list(params.blocks)
    body: dict[str, Any] = {
        "channel": params.channel,
        "text": _marked(params.text, run),
        "blocks": blocks,
    }
    if params.update_ts:
        body["ts"] = params.update_ts
    elif params.thread:
        body["thread_ts"] = params.thread
    method = _post_method(params)
    ctx.calls.append(_post_call(params))
    data = call_slack(ctx, method, params.channel, body)
    return PostMessageResult(
        channel=str(data.get("channel") or params.channel),
        ts=str(data.get("ts") or params.update_ts or ""),
        thread_ts=params.thread,
    )


# -- slack.request_approval --------------------------------------------------------------


class RequestApprovalParams(_Params):
    channel: str = Field(min_length=1, max_length=200, description="Channel name or ID")
    step: str = Field(min_length=1, max_length=200, description="The step waiting for a decision")
    planned_calls: list[str] = Field(
        default_factory=list, max_length=500, description="The calls the step would make"
    )
    compensation: str | None = Field(
        default=None, max_length=200, description="The action that undoes the step"
    )
    approvers: list[str] | None = Field(
        default=None, max_length=50, description="Slack user or group IDs (U…, S…) or names"
    )


class RequestApprovalResult(BaseModel):
    channel: str
    ts: str


def _approval_text(params: RequestApprovalParams, run: RunInfo) -> str:
    title = run.title or run.playbook_id or "irbook"
    return _marked(f"Approval needed for step {params.step} of {title} (run {run.run_id})", run)


def _approval_call(params: RequestApprovalParams) -> PlannedCall:
    return PlannedCall(
        service="slack",
        operation="chat.postMessage",
        params={"channel": params.channel, "step": params.step},
        note="Approve/Reject buttons naming the step, its planned calls and its compensation",
    )


def _plan_approval(params: RequestApprovalParams) -> list[PlannedCall]:
    return [_approval_call(params)]


def _simulate_approval(params: RequestApprovalParams, run: RunInfo) -> RequestApprovalResult:
    return RequestApprovalResult(channel=params.channel, ts=SIMULATED_TS)


@action(
    "slack.request_approval",
    effect="notify",
    extra_permissions={"chat:write": "Slack bot token scope: post messages"},
    planner=_plan_approval,
    simulate=_simulate_approval,
)
def request_approval(ctx: ActionContext, params: RequestApprovalParams) -> RequestApprovalResult:
    """Ask a channel to approve or reject a step, showing what it will do and how to undo it.

    Approvers decide from the message alone: the step, every call it makes and its
    compensation are on the card, so nobody has to open the playbook mid-incident.
    """
    body = {
        "channel": params.channel,
        "text": _approval_text(params, ctx.run),
        "blocks": approval_card(params, ctx.run),
    }
    ctx.calls.append(_approval_call(params))
    data = call_slack(ctx, "chat.postMessage", params.channel, body)
    return RequestApprovalResult(
        channel=str(data.get("channel") or params.channel), ts=str(data.get("ts") or "")
    )
