"""Shared test helpers for the notify actions: a client factory, a run, a JIRA client."""

from __future__ import annotations

from typing import Any

from irbook.errors import IrbookError
from irbook.registry import RunInfo

SLACK_TOKEN = "xoxb-000-fake-slack-token"
JIRA_SERVER = "https://jira.example.test"
JIRA_EMAIL = "irbook@example.test"
JIRA_TOKEN = "jira-api-token-fake"
JIRA_PAT = "jira-pat-fake"


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


def make_jira(flavor: str) -> Any:
    from jira import JIRA

    auth: dict[str, Any] = (
        {"basic_auth": (JIRA_EMAIL, JIRA_TOKEN)} if flavor == "cloud" else {"token_auth": JIRA_PAT}
    )
    return JIRA(
        server=JIRA_SERVER,
        options={"rest_api_version": "3" if flavor == "cloud" else "2"},
        max_retries=0,
        get_server_info=False,
        **auth,
    )
