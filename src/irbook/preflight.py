"""Preflight: which integrations a run will call, and whether their configuration is present.

A plan is made offline, so it used to say "the run succeeds" while SLACK_BOT_TOKEN was
unset, and the live run then failed the Slack step. The preflight looks only at
environment variables and configuration files, the places the live clients
(`irbook_actions.clients.LiveClients`) read; it imports neither boto3 nor Prefect and
makes no call. What cannot be known offline (an EC2 instance role, a Prefect Secret
block) is said to be "not checked" rather than guessed. Values are never shown, except
the non-secret ones that help to spot a wrong target: the region, the Jira flavour, the
scheme and host of JIRA_URL.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

if TYPE_CHECKING:
    from irbook.plan import Plan

Status = Literal["ok", "missing", "unchecked"]

# The order integrations are listed in; "webhook" needs no configuration of its own.
INTEGRATIONS = ("aws", "slack", "jira", "pagerduty", "webhook")

# Every variable the preflight reads: a plan's cache entry depends on their presence.
ENV_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "SLACK_BOT_TOKEN",
    "IRBOOK_SLACK_BASE_URL",
    "IRBOOK_SLACK_APPROVAL_CHANNEL",
    "JIRA_URL",
    "JIRA_EMAIL",
    "JIRA_API_TOKEN",
    "JIRA_PAT",
    "IRBOOK_JIRA_FLAVOR",
    "IRBOOK_PAGERDUTY_ROUTING_KEY",
    "IRBOOK_PAGERDUTY_URL",
)
# Variables whose value (not only presence) the preflight shows or depends on.
_SHOWN = {"AWS_REGION", "AWS_DEFAULT_REGION", "IRBOOK_JIRA_FLAVOR", "JIRA_URL", "AWS_PROFILE"}


class Check(NamedTuple):  # not a dataclass: dataclasses imports inspect, slow to start
    """One integration a run needs: whether its configuration is there, and for which steps."""

    integration: str
    status: Status
    detail: str
    steps: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "integration": self.integration,
            "status": self.status,
            "detail": self.detail,
            "steps": list(self.steps),
        }

    def __str__(self) -> str:
        word = {"ok": "ok", "missing": "MISSING", "unchecked": "not checked"}[self.status]
        return f"{self.integration} {word} ({self.detail})"


def integration_of(action: str) -> str | None:
    """The integration an action calls, from its namespace; None for core actions."""
    if action == "notify.webhook":
        return "webhook"
    head = action.split(".", 1)[0]
    return head if head in INTEGRATIONS else None


def _set(env: Mapping[str, str], name: str) -> bool:
    return bool(env.get(name, "").strip())


def _aws_files(env: Mapping[str, str], home: str) -> tuple[str, str]:
    """~/.aws/credentials and ~/.aws/config, or where AWS_*_FILE put them (os.path, not
    pathlib: `irbook plan` imports this and is benchmarked for start-up)."""
    creds = env.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.join(home, ".aws", "credentials")
    config = env.get("AWS_CONFIG_FILE") or os.path.join(home, ".aws", "config")
    return os.path.expanduser(creds), os.path.expanduser(config)


def _config_region(path: str, profile: str) -> str | None:
    """The region of a profile in ~/.aws/config, read as text (no botocore)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    wanted = ("default",) if profile == "default" else (f"profile {profile}", profile)
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
        elif section in wanted and "=" in line:
            name, _, value = line.partition("=")
            if name.strip() == "region" and value.strip():
                return value.strip()
    return None


def check_aws(env: Mapping[str, str], home: str, regions: set[str]) -> tuple[Status, str]:
    """The boto3 credential chain, approximated: env keys, a profile, web identity,
    container credentials, the shared files; an instance role cannot be seen offline."""
    creds_file, config_file = _aws_files(env, home)
    profile = env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE") or "default"
    if _set(env, "AWS_ACCESS_KEY_ID") and _set(env, "AWS_SECRET_ACCESS_KEY"):
        source = "env credentials"
    elif _set(env, "AWS_WEB_IDENTITY_TOKEN_FILE") and _set(env, "AWS_ROLE_ARN"):
        source = "web identity"
    elif _set(env, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") or _set(
        env, "AWS_CONTAINER_CREDENTIALS_FULL_URI"
    ):
        source = "container credentials"
    elif _set(env, "AWS_PROFILE") or _set(env, "AWS_DEFAULT_PROFILE"):
        source = f"profile {profile}"
    elif os.path.isfile(creds_file):
        source = "~/.aws/credentials"
    else:
        source = ""
    region = (
        env.get("AWS_REGION", "").strip()
        or env.get("AWS_DEFAULT_REGION", "").strip()
        or _config_region(config_file, profile)
    )
    where = sorted(regions | ({region} if region else set()))
    endpoint = ", endpoint $AWS_ENDPOINT_URL" if _set(env, "AWS_ENDPOINT_URL") else ""
    shown = f"region {', '.join(where)}{endpoint}"
    if not where:
        # steps may name their region from the alert: not a certain failure
        shown = f"no default region: set AWS_REGION unless every step names one{endpoint}"
    if not source:
        # ~/.aws/config alone may name SSO or a credential_process: not knowable offline
        found = "~/.aws/config only" if os.path.isfile(config_file) else "none in env or ~/.aws"
        return (
            "unchecked",
            f"credentials: {found}; SSO, processes and instance roles are not checked "
            f"offline; {shown}",
        )
    return ("ok" if where else "unchecked"), f"{source}, {shown}"


def check_slack(env: Mapping[str, str]) -> tuple[Status, str]:
    if not _set(env, "SLACK_BOT_TOKEN"):
        return (
            "missing",
            "set SLACK_BOT_TOKEN; a Prefect Secret block irbook-slack-bot-token is not checked",
        )
    base = " via $IRBOOK_SLACK_BASE_URL" if _set(env, "IRBOOK_SLACK_BASE_URL") else ""
    return "ok", f"SLACK_BOT_TOKEN set{base}"


def _host_of(url: str) -> str:
    """scheme://host[:port] of a URL: never a user, password, path or query."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(not a URL)"
    return f"{parts.scheme}://{host}{port}" if parts.scheme and host else "(not a URL)"


def check_jira(env: Mapping[str, str]) -> tuple[Status, str]:
    flavor = (env.get("IRBOOK_JIRA_FLAVOR") or "cloud").strip().lower()
    if flavor not in ("cloud", "server"):
        return "missing", f"IRBOOK_JIRA_FLAVOR must be cloud or server, not {flavor!r}"
    missing: list[str] = []
    if not _set(env, "JIRA_URL"):
        missing.append("JIRA_URL")
    basic = _set(env, "JIRA_EMAIL") and _set(env, "JIRA_API_TOKEN")
    bearer = _set(env, "JIRA_PAT")
    if not (basic or bearer):
        missing.append(
            "JIRA_EMAIL and JIRA_API_TOKEN"
            if flavor == "cloud"
            else "JIRA_PAT (or JIRA_EMAIL and JIRA_API_TOKEN)"
        )
    if missing:
        return "missing", f"{flavor}: set {' and '.join(missing)}"
    auth = "JIRA_PAT" if (bearer and (flavor == "server" or not basic)) else "JIRA_EMAIL/API_TOKEN"
    return "ok", f"{flavor}, JIRA_URL={_host_of(env['JIRA_URL'])}, {auth}"


def check_pagerduty(env: Mapping[str, str], keyed_in_playbook: bool) -> tuple[Status, str]:
    url = " via $IRBOOK_PAGERDUTY_URL" if _set(env, "IRBOOK_PAGERDUTY_URL") else ""
    if _set(env, "IRBOOK_PAGERDUTY_ROUTING_KEY"):
        return "ok", f"IRBOOK_PAGERDUTY_ROUTING_KEY set{url}"
    if keyed_in_playbook:
        return "ok", f"routing_key given by the playbook{url}"
    return "missing", "set IRBOOK_PAGERDUTY_ROUTING_KEY or the step's routing_key"


def preflight(
    plan: Plan, env: Mapping[str, str] | None = None, home: str | None = None
) -> list[Check]:
    """The integrations the steps that run in this plan call, each checked."""
    env = os.environ if env is None else env
    home = os.path.expanduser("~") if home is None else home
    steps: dict[str, list[str]] = {}
    regions: set[str] = set()
    pd_keyed = True
    playbook = plan.playbook
    for ps in plan.steps:
        if ps.status == "skip" or ps.status == "blocked":
            continue
        name = integration_of(ps.action)
        if name is None:
            continue
        steps.setdefault(name, []).append(ps.id)
        if name == "aws":
            region = playbook.aws_for(playbook.step(ps.id)).region
            if region:
                regions.add(region)
        if name == "pagerduty":
            pd_keyed = pd_keyed and all("routing_key" in it.params for it in ps.iterations)
    # Approvals go to Slack as buttons when a channel is configured.
    approval_channel = _set(env, "IRBOOK_SLACK_APPROVAL_CHANNEL")
    if approval_channel and any(ps.approval and ps.status == "run" for ps in plan.steps):
        steps.setdefault("slack", []).extend(
            ps.id for ps in plan.steps if ps.approval and ps.status == "run"
        )
    out: list[Check] = []
    for name in INTEGRATIONS:
        if name not in steps:
            continue
        if name == "aws":
            status, detail = check_aws(env, home, regions)
        elif name == "slack":
            status, detail = check_slack(env)
        elif name == "jira":
            status, detail = check_jira(env)
        elif name == "pagerduty":
            status, detail = check_pagerduty(env, pd_keyed)
        else:
            status, detail = "ok", "URL in the step"
        out.append(Check(name, status, detail, tuple(dict.fromkeys(steps[name]))))
    return out


def render(checks: list[Check]) -> str:
    """One line: `Preflight: aws ok (...); slack MISSING (...)`."""
    if not checks:
        return "Preflight: no integration needed (core actions only)"
    return "Preflight: " + "; ".join(str(c) for c in checks)


def missing_steps(checks: list[Check]) -> list[str]:
    """Steps that a live run here would fail for want of configuration."""
    return [step for c in checks if c.status == "missing" for step in c.steps]


def env_signature(env: Mapping[str, str] | None = None, home: str | None = None) -> str:
    """What the preflight depends on, for a cache key: presence of each variable, the
    values it shows, and which AWS files exist. Holds no secret value."""
    env = os.environ if env is None else env
    home = os.path.expanduser("~") if home is None else home
    parts = [
        f"{name}={env.get(name, '') if name in _SHOWN else int(_set(env, name))}"
        for name in ENV_VARS
    ]
    creds, config = _aws_files(env, home)
    parts.append(f"files={int(os.path.isfile(creds))}{int(os.path.isfile(config))}")
    if os.path.isfile(config):
        with contextlib.suppress(OSError):
            parts.append(str(os.stat(config).st_mtime_ns))
    return "\n".join(parts)
