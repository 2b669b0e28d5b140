"""notify.webhook: POST JSON to Teams, PagerDuty, a chat bridge or anything else.

Planned calls are `webhook:POST <path>` with the URL in params, both redacted. Webhook
URLs are usually the credential themselves (Slack's `/services/T…/B…/secret`, Teams'
`/webhookb2/…`, signed `?sig=` queries), and planned calls end up in run records,
runbooks and tabletop reports. So only the scheme, host and first path segment are
shown; the rest of the path, every query value and any user:password become `***`.
Header values are never shown for the same reason.

Only https is accepted, except for loopback hosts, which local receivers and tests use:
an incident message sent in clear text over the internet leaks the incident. Redirects
are not followed, since a redirected POST can land somewhere nobody reviewed.

The HTTP helpers here are shared with `pagerduty.trigger`.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from irbook.registry import ActionContext, ActionFailed, PlannedCall, RunInfo, action

REDACTED = "***"
CONNECT_TIMEOUT = 5.0
DEFAULT_TIMEOUT = 10.0
MAX_TRIES = 3
MAX_RETRY_AFTER = 60.0
DRY_RUN_HEADER = "X-Irbook-Dry-Run"

# Module-level so that tests can observe the waits instead of sitting through them.
_sleep = time.sleep


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


# -- URLs --------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> str:
    """Refuse anything but https (http on loopback): the message is incident data."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host:
        raise ValueError(f"{redact_url(url)!r} has no host")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and is_loopback(host):
        return url
    raise ValueError(
        f"{redact_url(url)!r} must use https (plain http only to 127.0.0.1 or localhost)"
    )


def redact_url(url: str, *, keep_path: bool = False) -> str:
    """The URL with credentials, query values and (unless `keep_path`) the path tail hidden."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host + (f":{port}" if port is not None else "")
    if parts.username is not None or parts.password is not None:
        netloc = f"{REDACTED}@{netloc}"
    path = parts.path if keep_path else redact_path(parts.path)
    query = "&".join(
        f"{pair.split('=', 1)[0]}={REDACTED}" for pair in parts.query.split("&") if pair
    )
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def redact_path(path: str) -> str:
    segments = [s for s in path.split("/") if s]
    if len(segments) <= 1:
        return path
    return f"/{segments[0]}/{REDACTED}"


def redact_headers(headers: dict[str, str] | None) -> dict[str, str]:
    return {name: REDACTED for name in headers or {}}


# -- POST --------------------------------------------------------------------------------


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 1.0
    except ValueError:
        return 1.0


def _reason(response: Any) -> str:
    """The receiver's own words: JSON `message`/`error` and `errors`, else the first line."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        said = [str(data[k]) for k in ("message", "error") if isinstance(data.get(k), str)]
        errors = data.get("errors")
        if isinstance(errors, list):
            said += [str(e) for e in errors]
        if said:
            return "; ".join(said).replace("\n", " ")[:200]
    lines = str(response.text or "").strip().splitlines()
    return lines[0][:200] if lines else ""


def post_json(
    ctx: ActionContext,
    url: str,
    body: Any,
    *,
    what: str,
    headers: dict[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Any:
    """POST JSON; 429 is retried after Retry-After (three tries), anything else but 2xx fails.

    `what` names the target in errors (already redacted): requests' own messages can
    carry the full URL, so they never reach the user.
    """
    import requests

    for attempt in range(1, MAX_TRIES + 1):
        try:
            response = requests.post(
                url,
                json=body,
                headers=headers,
                timeout=(min(CONNECT_TIMEOUT, timeout), timeout),
                allow_redirects=False,
            )
        except requests.Timeout:
            raise ActionFailed(f"{what} did not answer within {timeout:g}s") from None
        except (requests.RequestException, ValueError) as exc:
            raise ActionFailed(f"cannot reach {what} ({type(exc).__name__})") from None
        with response:
            status = response.status_code
            if status == 429 and attempt < MAX_TRIES:
                delay = _retry_after(response.headers.get("Retry-After"))
                if delay > MAX_RETRY_AFTER:
                    raise ActionFailed(f"{what} rate-limited us for {delay:g}s")
                ctx.note(f"{what} answered 429; retrying in {delay:g}s")
                _sleep(delay)
                continue
            if 300 <= status < 400:
                raise ActionFailed(f"{what} answered HTTP {status} (redirects are not followed)")
            if status >= 400:
                detail = _reason(response)
                raise ActionFailed(
                    f"{what} answered HTTP {status}" + (f": {detail}" if detail else "")
                )
            return response
    raise ActionFailed(f"{what} rate-limited us {MAX_TRIES} times")


# -- notify.webhook ----------------------------------------------------------------------


class WebhookParams(_Params):
    url: str = Field(min_length=1, max_length=4096, description="https URL (or loopback http)")
    payload: dict[str, Any] | list[Any] = Field(
        alias="json",
        validation_alias=AliasChoices("json", "payload"),
        description="The JSON body",
    )
    headers: dict[str, str] | None = Field(
        default=None, max_length=50, description="Extra headers; never shown in plans"
    )
    timeout: float = Field(default=DEFAULT_TIMEOUT, gt=0, le=120, description="Seconds")

    @field_validator("url")
    @classmethod
    def _https_only(cls, url: str) -> str:
        return check_url(url)

    @field_validator("headers")
    @classmethod
    def _one_line_headers(cls, headers: dict[str, str] | None) -> dict[str, str] | None:
        for name, value in (headers or {}).items():
            if any(c in name + value for c in "\r\n\0"):
                raise ValueError(f"header {name.strip()!r} contains a line break")
        return headers


class WebhookResult(BaseModel):
    status_code: int
    url: str


def _webhook_call(params: WebhookParams) -> PlannedCall:
    shown: dict[str, Any] = {"url": redact_url(params.url), "json": params.payload}
    if params.headers:
        shown["headers"] = redact_headers(params.headers)
    return PlannedCall(
        service="webhook",
        operation=f"POST {redact_path(urlsplit(params.url).path) or '/'}",
        params=shown,
    )


def _plan_webhook(params: WebhookParams) -> list[PlannedCall]:
    return [_webhook_call(params)]


def _simulate_webhook(params: WebhookParams, run: RunInfo) -> WebhookResult:
    return WebhookResult(status_code=200, url=redact_url(params.url))


@action(
    "notify.webhook",
    effect="notify",
    planner=_plan_webhook,
    simulate=_simulate_webhook,
    sensitive=("url", "headers"),  # webhook paths and auth headers are credentials
)
def webhook(ctx: ActionContext, params: WebhookParams) -> WebhookResult:
    """POST a JSON message to a webhook, for chat tools and services without their own action.

    The body is the receiver's format, so a dry run cannot mark it; it sends
    `X-Irbook-Dry-Run: true` instead, and the playbook should say so in the text.
    """
    shown = redact_url(params.url)
    headers = dict(params.headers or {})
    if ctx.run.dry_run:
        headers[DRY_RUN_HEADER] = "true"
    ctx.calls.append(_webhook_call(params))
    response = post_json(
        ctx,
        params.url,
        params.payload,
        what=f"webhook {shown}",
        headers=headers,
        timeout=params.timeout,
    )
    return WebhookResult(status_code=response.status_code, url=shown)
