"""The live client factory (LiveClients) as a user configures it: only environment
variables, against local servers speaking Jira's and Slack's HTTP APIs."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from irbook.registry import REGISTRY, ActionContext, ActionFailed
from irbook_actions.clients import LiveClients
from tests.support.fakejira import API_TOKEN, EMAIL, PAT, FakeJira
from tests.support.fakeslack import FakeSlack
from tests.support.notify import SLACK_TOKEN, live_run


def run_action(key: str, ctx: ActionContext, **params: Any) -> Any:
    spec = REGISTRY.get(key)
    return spec.func(ctx, spec.params.model_validate(params))


@pytest.fixture(params=["cloud", "server"])
def jira(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeJira]:
    """A fake Jira of one flavour, and the variables a user of that flavour sets."""
    flavor = str(request.param)
    server = FakeJira(flavor)
    for name in ("JIRA_EMAIL", "JIRA_API_TOKEN", "JIRA_PAT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JIRA_URL", server.url)
    monkeypatch.setenv("IRBOOK_JIRA_FLAVOR", flavor)
    if flavor == "cloud":
        monkeypatch.setenv("JIRA_EMAIL", EMAIL)
        monkeypatch.setenv("JIRA_API_TOKEN", API_TOKEN)
    else:
        monkeypatch.setenv("JIRA_PAT", PAT)
    yield server
    server.close()


def live_ctx(clients: Any = None) -> ActionContext:
    return ActionContext(run=live_run(), clients=clients or LiveClients())


# -- Jira --------------------------------------------------------------------------------


def test_jira_from_the_environment_makes_exactly_the_planned_calls_with_credentials(
    jira: FakeJira,
) -> None:
    ctx = live_ctx()

    ticket = run_action("jira.create_issue", ctx, project="SEC", summary="Leaked key", labels=["x"])
    run_action("jira.comment", ctx, issue=ticket.key, body="Key deactivated.")
    moved = run_action("jira.transition", ctx, issue=ticket.key, to="Done")
    run_action("jira.link_evidence", ctx, issue=ticket.key, url="https://evidence.test/m.json")

    assert (ticket.key, ticket.created) == ("SEC-1", True)
    assert ticket.url == f"{jira.url}/browse/SEC-1"
    assert (moved.transition, moved.status) == ("Resolve", "Done")
    search = jira.api("search/jql" if jira.flavor == "cloud" else "search")
    assert jira.calls() == [
        f"jira:GET {search}",
        f"jira:POST {jira.api('issue')}",
        f"jira:POST {jira.api('issue/SEC-1/comment')}",
        f"jira:GET {jira.api('issue/SEC-1/transitions')}",
        f"jira:POST {jira.api('issue/SEC-1/transitions')}",
        f"jira:POST {jira.api('issue/SEC-1/remotelink')}",
    ]  # no serverInfo, no field list, no prefetch of the new issue
    assert [c.name for c in ctx.calls] == jira.calls()  # the run record tells the truth
    assert {r.headers["authorization"] for r in jira.requests} == {jira.expected_auth}
    issue = jira.issues["SEC-1"]
    assert issue.status == "Done"
    assert issue.links == [
        {"url": "https://evidence.test/m.json", "title": "https://evidence.test/m.json"}
    ]
    assert "irbook-0123456789ab" in issue.fields["labels"]


def test_wrong_jira_credentials_are_a_401_named_in_one_line(
    jira: FakeJira, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "not-the-token"
    monkeypatch.setenv("JIRA_API_TOKEN" if jira.flavor == "cloud" else "JIRA_PAT", wrong)

    with pytest.raises(ActionFailed) as caught:
        run_action("jira.comment", live_ctx(), issue="SEC-1", body="hi")

    message = caught.value.message
    assert message.startswith("Jira comment on SEC-1 failed: HTTP 401: authentication failed")
    assert wrong not in message and "\n" not in message
    sent = jira.requests[0].headers["authorization"]
    scheme = "Basic" if jira.flavor == "cloud" else "Bearer"
    assert sent.startswith(f"{scheme} ")  # the flavour's scheme, with the wrong secret
    assert len(jira.requests) == 1


def test_each_flavour_uses_its_own_scheme_when_both_credentials_are_set(
    jira: FakeJira, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JIRA_EMAIL", EMAIL)
    monkeypatch.setenv("JIRA_API_TOKEN", API_TOKEN)
    monkeypatch.setenv("JIRA_PAT", PAT)
    jira.add_issue("SEC-9")

    run_action("jira.comment", live_ctx(), issue="SEC-9", body="hi")

    assert jira.requests[0].headers["authorization"] == jira.expected_auth
    if jira.flavor == "cloud":
        basic = base64.b64decode(jira.expected_auth.split()[1]).decode()
        assert basic == f"{EMAIL}:{API_TOKEN}"


def test_a_hung_jira_fails_within_the_steps_timeout_and_is_not_retried(jira: FakeJira) -> None:
    jira.answer_next(201, {"id": "1", "body": "late"}, delay=3)
    clients = LiveClients().with_timeout(0.5)

    with pytest.raises(ActionFailed, match="Jira did not answer in time"):
        run_action("jira.comment", live_ctx(clients), issue="SEC-1", body="hi")

    assert len(jira.requests) == 1  # a timed-out POST is not sent again behind the plan


def test_an_unreachable_jira_is_one_line_after_one_attempt(
    jira: FakeJira, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = jira.url
    jira.close()  # nothing listens there any more
    monkeypatch.setenv("JIRA_URL", url)

    with pytest.raises(ActionFailed, match=r"comment on SEC-1 failed: cannot reach Jira"):
        run_action("jira.comment", live_ctx(), issue="SEC-1", body="hi")


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, "Jira is not configured: set JIRA_URL"),
        ({"JIRA_URL": "https://jira.example.test"}, "Jira credentials missing: set JIRA_EMAIL"),
        (
            {"JIRA_URL": "https://jira.example.test", "JIRA_EMAIL": EMAIL},
            "Jira credentials missing",
        ),
    ],
)
def test_missing_jira_configuration_says_what_to_set(
    variables: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("JIRA_URL", "JIRA_EMAIL", "JIRA_API_TOKEN", "JIRA_PAT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(ActionFailed, match=expected):
        run_action("jira.comment", live_ctx(), issue="SEC-1", body="hi")


# -- Slack -------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["/api/", "/api"])
def test_slack_base_url_from_the_environment_with_or_without_its_slash(
    suffix: str, fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", SLACK_TOKEN)
    monkeypatch.setenv("IRBOOK_SLACK_BASE_URL", fake_slack.url + suffix)

    result = run_action("slack.post_message", live_ctx(), channel="#ir", text="Key deactivated")

    assert result.channel == "CIR"
    [request] = fake_slack.requests
    assert (request.method, request.path) == ("POST", "/api/chat.postMessage")
    assert request.headers["authorization"] == f"Bearer {SLACK_TOKEN}"
