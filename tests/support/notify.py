"""Shared test helpers for the notify actions: a client factory, a run, a JIRA client."""

from __future__ import annotations

import os
from typing import Any
from unittest import mock

from irbook.errors import IrbookError
from irbook.registry import RunInfo

SLACK_TOKEN = "xoxb-000-fake-slack-token"
JIRA_SERVER = "https://jira.example.test"
JIRA_EMAIL = "irbook@example.test"
JIRA_TOKEN = "jira-api-token-fake"
JIRA_PAT = "jira-pat-fake"
JIRA_VARIABLES = frozenset(
    {"JIRA_URL", "JIRA_EMAIL", "JIRA_API_TOKEN", "JIRA_PAT", "IRBOOK_JIRA_FLAVOR"}
)


class TestClients:
    """The ClientFactory for these tests: the fake Slack's WebClient and a mocked JIRA."""

    __test__ = False

    def __init__(self, slack: Any = None, jira: Any = None) -> None:
        self._slack = slack
        self._jira = jira

    def aws(self, service: str, *, region: str | None = None) -> Any:
        raise AssertionError("notify actions never call AWS")

    def slack(self) -> Any:
        if self._slack is None:
            raise IrbookError("Slack is not configured: set SLACK_BOT_TOKEN")
        return self._slack

    def jira(self) -> Any:
        if self._jira is None:
            raise IrbookError("Jira is not configured: set JIRA_URL")
        return self._jira


def live_run(**changes: Any) -> RunInfo:
    values: dict[str, Any] = {
        "run_id": "run-42",
        "playbook_id": "leaked-model-key",
        "step_id": "notify",
        "dry_run": False,
        "incident_key": "irbook-0123456789ab",
        "severity": "high",
        "title": "Leaked access key used against a model endpoint",
    }
    values.update(changes)
    return RunInfo(**values)


def jira_env(flavor: str, server: str = JIRA_SERVER) -> dict[str, str]:
    """What a user sets for Jira Cloud or Server, and nothing else."""
    env = {"JIRA_URL": server, "IRBOOK_JIRA_FLAVOR": flavor}
    if flavor == "cloud":
        env.update(JIRA_EMAIL=JIRA_EMAIL, JIRA_API_TOKEN=JIRA_TOKEN)
    else:
        env["JIRA_PAT"] = JIRA_PAT
    return env


def make_jira(flavor: str, server: str = JIRA_SERVER) -> Any:
    """The client irbook's own factory (LiveClients) builds from a user's variables."""
    from irbook_actions.clients import LiveClients

    with mock.patch.dict(os.environ, jira_env(flavor, server)):
        for name in JIRA_VARIABLES - jira_env(flavor).keys():
            os.environ.pop(name, None)  # patch.dict puts them back afterwards
        return LiveClients().jira()
