"""Fixtures for the notify actions: a fake Slack server, Jira behind `responses`, a run.

Clients come from irbook's own factory (LiveClients) and the variables a user sets.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
import responses

from irbook.registry import ActionContext
from tests.support.fakeslack import FakeSlack
from tests.support.notify import SLACK_TOKEN, TestClients, live_run, make_jira

_ENV = (
    "IRBOOK_JIRA_FLAVOR",
    "IRBOOK_JIRA_PRIORITIES",
    "IRBOOK_PAGERDUTY_URL",
    "IRBOOK_PAGERDUTY_ROUTING_KEY",
    "JIRA_URL",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retry waits are recorded, not slept: tests check the delay Slack asked for."""
    waited: list[float] = []
    monkeypatch.setattr("irbook_actions.slack._sleep", waited.append)
    monkeypatch.setattr("irbook_actions.notify._sleep", waited.append)
    return waited


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    server = FakeSlack()
    yield server
    server.close()


@pytest.fixture
def slack_client(fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The WebClient irbook's own factory builds from a user's variables."""
    from irbook_actions.clients import LiveClients

    monkeypatch.setenv("SLACK_BOT_TOKEN", SLACK_TOKEN)
    monkeypatch.setenv("IRBOOK_SLACK_BASE_URL", fake_slack.api_url)
    return LiveClients().slack()


@pytest.fixture
def slack_ctx(slack_client: Any) -> ActionContext:
    return ActionContext(run=live_run(), clients=TestClients(slack=slack_client))


@pytest.fixture
def jira_http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture(params=["cloud", "server"])
def flavor(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    value = str(request.param)
    monkeypatch.setenv("IRBOOK_JIRA_FLAVOR", value)
    return value


@pytest.fixture
def jira_ctx(flavor: str, jira_http: responses.RequestsMock) -> ActionContext:
    return ActionContext(run=live_run(), clients=TestClients(jira=make_jira(flavor)))


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Any attempt to open a connection is recorded and refused."""
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise OSError("network is off in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts
