"""pagerduty.trigger: page the on-call through the PagerDuty Events API v2.

The planned call is `pagerduty:POST /v2/enqueue` (the path of the configured endpoint).
The routing key is a write credential for the service, so it is `***` in planned calls
and never returned; it can come from `$IRBOOK_PAGERDUTY_ROUTING_KEY` instead of the
playbook, which keeps it out of YAML and out of the plan's parameter listing.

`dedup_key` defaults to the run's incident key: PagerDuty folds repeated triggers with
one key into one incident, so a re-run or a second alert for the same incident does not
page twice. `$IRBOOK_PAGERDUTY_URL` points at another endpoint (EU service region,
tests); it must be https or loopback http like any webhook.
"""

from __future__ import annotations

import os
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from irbook.registry import ActionContext, ActionFailed, PlannedCall, RunInfo, action
from irbook_actions.notify import REDACTED, check_url, post_json, redact_url

DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
URL_ENV = "IRBOOK_PAGERDUTY_URL"
ROUTING_KEY_ENV = "IRBOOK_PAGERDUTY_ROUTING_KEY"
DEFAULT_SOURCE = "irbook"
TIMEOUT = 10.0


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class TriggerParams(_Params):
    routing_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description=f"Integration key of the service; default ${ROUTING_KEY_ENV}",
    )
    summary: str = Field(min_length=1, max_length=1024, description="What the responder sees")
    severity: Literal["critical", "error", "warning", "info"]
    source: str | None = Field(
        default=None, max_length=255, description=f"Affected system; default {DEFAULT_SOURCE!r}"
    )
    dedup_key: str | None = Field(
        default=None, min_length=1, max_length=255, description="Default: the incident key"
    )


class TriggerResult(BaseModel):
    status: str
    dedup_key: str
    message: str = ""


def endpoint() -> str:
    url = os.environ.get(URL_ENV) or DEFAULT_URL
    try:
        return check_url(url)
    except ValueError as exc:
        raise ActionFailed(f"${URL_ENV}: {exc}") from None


def _trigger_call(params: TriggerParams) -> PlannedCall:
    return PlannedCall(
        service="pagerduty",
        operation=f"POST {urlsplit(endpoint()).path or '/'}",
        params={
            "url": redact_url(endpoint(), keep_path=True),
            "routing_key": REDACTED,
            "event_action": "trigger",
            "dedup_key": params.dedup_key or "(the run's incident key)",
            "payload": {
                "summary": params.summary,
                "severity": params.severity,
                "source": params.source or DEFAULT_SOURCE,
            },
        },
    )


def _plan_trigger(params: TriggerParams) -> list[PlannedCall]:
    return [_trigger_call(params)]


def _dedup_key(params: TriggerParams, run: RunInfo) -> str:
    return params.dedup_key or run.incident_key or f"irbook-run-{run.run_id}"


def _simulate_trigger(params: TriggerParams, run: RunInfo) -> TriggerResult:
    return TriggerResult(
        status="success", dedup_key=_dedup_key(params, run), message="dry run: nobody was paged"
    )


def event(params: TriggerParams, run: RunInfo, routing_key: str) -> dict[str, Any]:
    """The Events v2 body; run details go in custom_details, where responders look."""
    summary = f"[DRY RUN] {params.summary}" if run.dry_run else params.summary
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": _dedup_key(params, run),
        "client": "irbook",
        "payload": {
            "summary": summary[:1024],
            "severity": params.severity,
            "source": params.source or DEFAULT_SOURCE,
            "custom_details": {
                "playbook": run.playbook_id,
                "title": run.title,
                "run_id": run.run_id,
                "step": run.step_id,
                "incident_key": run.incident_key,
                "playbook_severity": run.severity,
                "mode": "dry run" if run.dry_run else "live",
            },
        },
    }


@action(
    "pagerduty.trigger",
    effect="notify",
    extra_permissions={
        "pagerduty:EventsTrigger": "PagerDuty Events API v2 integration key: trigger an incident"
    },
    planner=_plan_trigger,
    simulate=_simulate_trigger,
    idempotent=True,
    sensitive=("routing_key",),
)
def trigger(ctx: ActionContext, params: TriggerParams) -> TriggerResult:
    """Page the on-call engineer for the incident; repeated triggers fold into one incident."""
    routing_key = params.routing_key or os.environ.get(ROUTING_KEY_ENV)
    if not routing_key:
        raise ActionFailed(
            f"pagerduty.trigger needs a routing_key: pass one or set ${ROUTING_KEY_ENV}"
        )
    url = endpoint()
    ctx.calls.append(_trigger_call(params))
    response = post_json(
        ctx,
        url,
        event(params, ctx.run, routing_key),
        what=f"PagerDuty {redact_url(url, keep_path=True)}",
        timeout=TIMEOUT,
    )
    try:
        data = response.json()
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    return TriggerResult(
        status=str(data.get("status") or "success"),
        dedup_key=str(data.get("dedup_key") or _dedup_key(params, ctx.run)),
        message=str(data.get("message") or ""),
    )
