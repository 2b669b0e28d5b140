"""The jira.* actions against Jira Cloud (REST v3, ADF) and Server (REST v2, wiki) shapes."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from irbook.registry import REGISTRY, ActionContext, ActionFailed
from tests.support.notify import (
    JIRA_EMAIL,
    JIRA_PAT,
    JIRA_SERVER,
    JIRA_TOKEN,
    TestClients,
    live_run,
    make_jira,
)


def run_action(key: str, ctx: ActionContext, **params: Any) -> Any:
    spec = REGISTRY.get(key)
    return spec.func(ctx, spec.params.model_validate(params))


def planned(key: str, **params: Any) -> list[str]:
    spec = REGISTRY.get(key)
    return [c.name for c in spec.plan(spec.params.model_validate(params))]


def api(flavor: str, path: str) -> str:
    return f"{JIRA_SERVER}/rest/api/{'3' if flavor == 'cloud' else '2'}/{path}"


def search_url(flavor: str) -> str:
    return api(flavor, "search/jql" if flavor == "cloud" else "search")


def made(mock: responses.RequestsMock) -> list[str]:
    return [f"jira:{c.request.method} {urlsplit(str(c.request.url)).path}" for c in mock.calls]


def sent(mock: responses.RequestsMock, index: int) -> Any:
    body = mock.calls[index].request.body
    return json.loads(body.decode() if isinstance(body, bytes) else str(body))


def adf_text(doc: dict[str, Any]) -> str:
    return "".join(
        node.get("text", "\n" if node["type"] == "hardBreak" else "")
        for para in doc["content"]
        for node in para["content"]
    )


def no_open_issue(mock: responses.RequestsMock, flavor: str) -> None:
    mock.get(search_url(flavor), json={"issues": [], "total": 0, "isLast": True})


# -- create_issue ------------------------------------------------------------------------


def test_create_opens_an_issue_in_the_flavours_format(
    flavor: str, jira_ctx: ActionContext, jira_http: responses.RequestsMock
) -> None:
    no_open_issue(jira_http, flavor)
    jira_http.post(api(flavor, "issue"), status=201, json={"id": "10007", "key": "SEC-7"})

    result = run_action(
        "jira.create_issue",
        jira_ctx,
        project="SEC",
        summary="Leaked key AKIAEXAMPLE",
        description="GuardDuty: credential exfiltration\nfrom 203.0.113.9\n\n"
        "Finding: https://console.aws.amazon.com/guardduty/f1",
        labels=["credential-compromise"],
        assignee="oncall-1",
    )

    assert (result.key, result.created) == ("SEC-7", True)
    assert result.url == f"{JIRA_SERVER}/browse/SEC-7"
    fields = sent(jira_http, 1)["fields"]
    assert fields["project"] == {"key": "SEC"}
    assert fields["issuetype"] == {"name": "Task"}
    assert fields["summary"] == "Leaked key AKIAEXAMPLE"
    assert fields["priority"] == {"name": "High"}  # the playbook's severity is high
    assert fields["labels"] == ["irbook-0123456789ab", "credential-compromise"]
    description = fields["description"]
    if flavor == "cloud":
        assert description["type"] == "doc" and description["version"] == 1
        first, second, *_ = description["content"]
        assert [n["type"] for n in first["content"]] == ["text", "hardBreak", "text"]
        link = second["content"][1]
        assert link["marks"] == [
            {"type": "link", "attrs": {"href": "https://console.aws.amazon.com/guardduty/f1"}}
        ]
        assert "irbook run run-42" in adf_text(description)
        assert fields["assignee"] == {"accountId": "oncall-1"}
    else:
        assert isinstance(description, str)
        assert description.startswith("GuardDuty: credential exfiltration\nfrom 203.0.113.9")
        assert "irbook run run-42" in description
        assert fields["assignee"] == {"name": "oncall-1"}
    assert made(jira_http) == planned(
        "jira.create_issue", project="SEC", summary="Leaked key AKIAEXAMPLE"
    )
    assert [c.name for c in jira_ctx.calls] == made(jira_http)


def test_create_authenticates_the_flavours_way(
    flavor: str, jira_ctx: ActionContext, jira_http: responses.RequestsMock
) -> None:
    no_open_issue(jira_http, flavor)
    jira_http.post(api(flavor, "issue"), status=201, json={"id": "1", "key": "SEC-1"})

    run_action("jira.create_issue", jira_ctx, project="SEC", summary="s")

    auth = jira_http.calls[1].request.headers["Authorization"]
    if flavor == "cloud":
        assert auth == "Basic " + base64.b64encode(f"{JIRA_EMAIL}:{JIRA_TOKEN}".encode()).decode()
    else:
        assert auth == f"Bearer {JIRA_PAT}"


def test_an_open_issue_for_the_incident_gets_a_comment_not_a_twin(
    flavor: str, jira_ctx: ActionContext, jira_http: responses.RequestsMock
) -> None:
    jira_http.get(search_url(flavor), json={"issues": [{"id": "10003", "key": "SEC-3"}]})
    jira_http.post(api(flavor, "issue/SEC-3/comment"), status=201, json={"id": "500"})

    result = run_action(
        "jira.create_issue", jira_ctx, project="SEC", summary="Leaked key again", description="d"
    )

    assert (result.key, result.created) == ("SEC-3", False)
    assert result.url == f"{JIRA_SERVER}/browse/SEC-3"
    assert made(jira_http) == [
        f"jira:GET {urlsplit(search_url(flavor)).path}",
        f"jira:POST {urlsplit(api(flavor, 'issue/SEC-3/comment')).path}",
    ]
    jql = parse_qs(urlsplit(str(jira_http.calls[0].request.url)).query)["jql"][0]
    assert jql == (
        'project = "SEC" AND labels = "irbook-0123456789ab" '
        "AND statusCategory != Done ORDER BY created ASC"
    )
    body = sent(jira_http, 1)["body"]
    text = adf_text(body) if flavor == "cloud" else body
    assert "Leaked key again" in text and "run-42" in text
    assert any("SEC-3" in note for note in jira_ctx.notes)


def test_without_an_incident_key_the_run_is_the_dedup_unit(
    flavor: str, jira_http: responses.RequestsMock
) -> None:
    ctx = ActionContext(run=live_run(incident_key=""), clients=TestClients(jira=make_jira(flavor)))
    no_open_issue(jira_http, flavor)
    jira_http.post(api(flavor, "issue"), status=201, json={"id": "1", "key": "SEC-1"})

    run_action("jira.create_issue", ctx, project="SEC", summary="s")

    assert sent(jira_http, 1)["fields"]["labels"] == ["irbook-run-run-42"]


@pytest.mark.parametrize(
    ("severity", "env", "explicit", "expected"),
    [
        ("critical", None, None, "Highest"),
        ("low", None, None, "Low"),
        ("critical", '{"critical": "P1"}', None, "P1"),
        ("high", '{"critical": "P1"}', None, "High"),  # the rest of the table stays
        ("critical", '{"critical": "P1"}', "Medium", "Medium"),
        ("unheard-of", None, None, None),  # Jira's default priority
    ],
)
def test_priority_follows_the_severity_table(
    monkeypatch: pytest.MonkeyPatch,
    jira_http: responses.RequestsMock,
    severity: str,
    env: str | None,
    explicit: str | None,
    expected: str | None,
) -> None:
    if env:
        monkeypatch.setenv("IRBOOK_JIRA_PRIORITIES", env)
    ctx = ActionContext(
        run=live_run(severity=severity), clients=TestClients(jira=make_jira("cloud"))
    )
    no_open_issue(jira_http, "cloud")
    jira_http.post(api("cloud", "issue"), status=201, json={"id": "1", "key": "SEC-1"})
    extra = {"priority": explicit} if explicit else {}

    run_action("jira.create_issue", ctx, project="SEC", summary="s", **extra)

    fields = sent(jira_http, 1)["fields"]
    assert fields.get("priority") == ({"name": expected} if expected else None)


def test_a_broken_priority_table_is_reported_before_any_call(
    monkeypatch: pytest.MonkeyPatch, jira_http: responses.RequestsMock
) -> None:
    monkeypatch.setenv("IRBOOK_JIRA_PRIORITIES", '["High"]')
    ctx = ActionContext(run=live_run(), clients=TestClients(jira=make_jira("cloud")))
    no_open_issue(jira_http, "cloud")

    with pytest.raises(ActionFailed, match="IRBOOK_JIRA_PRIORITIES must be a JSON object"):
        run_action("jira.create_issue", ctx, project="SEC", summary="s")


def test_a_dry_run_issue_is_marked(flavor: str, jira_http: responses.RequestsMock) -> None:
    ctx = ActionContext(run=live_run(dry_run=True), clients=TestClients(jira=make_jira(flavor)))
    no_open_issue(jira_http, flavor)
    jira_http.post(api(flavor, "issue"), status=201, json={"id": "1", "key": "SEC-1"})

    run_action("jira.create_issue", ctx, project="SEC", summary="Leaked key")

    fields = sent(jira_http, 1)["fields"]
    assert fields["summary"] == "[DRY RUN] Leaked key"
    description = fields["description"]
    text = adf_text(description) if flavor == "cloud" else description
    assert "DRY RUN, nothing was changed" in text


# -- comment, transition, link_evidence --------------------------------------------------


def test_comment_body_matches_the_flavour(
    flavor: str, jira_ctx: ActionContext, jira_http: responses.RequestsMock
) -> None:
    jira_http.post(api(flavor, "issue/SEC-12/comment"), status=201, json={"id": "10100"})

    result = run_action(
        "jira.comment", jira_ctx, issue="SEC-12", body="Key deactivated.\nBy irbook."
    )

    body = sent(jira_http, 0)["body"]
    if flavor == "cloud":
        assert body == {
            "type": "doc",
            "version": 1,
            "content": [
                {
                    "type": "paragraph",
                    "content": [
                        {"type": "text", "text": "Key deactivated."},
                        {"type": "hardBreak"},
                        {"type": "text", "text": "By irbook."},
                    ],
                }
            ],
        }
    else:
        assert body == "Key deactivated.\nBy irbook."
    assert result.comment_id == "10100"
    assert result.url == f"{JIRA_SERVER}/browse/SEC-12?focusedCommentId=10100"
    assert made(jira_http) == planned("jira.comment", issue="SEC-12", body="x")


TRANSITIONS = {
    "transitions": [
        {"id": "11", "name": "Start Progress", "to": {"name": "In Progress"}},
        {"id": "31", "name": "Resolve", "to": {"name": "Done"}},
    ]
}


@pytest.mark.parametrize(
    ("to", "expected_id"), [("resolve", 31), ("DONE", 31), ("Start progress", 11)]
)
def test_transition_by_name_or_target_status_in_any_case(
    flavor: str,
    jira_ctx: ActionContext,
    jira_http: responses.RequestsMock,
    to: str,
    expected_id: int,
) -> None:
    url = api(flavor, "issue/SEC-12/transitions")
    jira_http.get(url, json=TRANSITIONS)
    jira_http.post(url, status=204)

    result = run_action("jira.transition", jira_ctx, issue="SEC-12", to=to)

    assert sent(jira_http, 1)["transition"] == {"id": expected_id}
    assert result.status in ("Done", "In Progress")
    assert made(jira_http) == planned("jira.transition", issue="SEC-12", to=to)


def test_unknown_transition_lists_the_available_ones(
    flavor: str, jira_ctx: ActionContext, jira_http: responses.RequestsMock
) -> None:
    jira_http.get(api(flavor, "issue/SEC-12/transitions"), json=TRANSITIONS)

    with pytest.raises(ActionFailed) as caught:
        run_action("jira.transition", jira_ctx, issue="SEC-12", to="Closed")

    assert caught.value.message == (
        "Jira issue SEC-12 has no transition 'Closed'; available: Resolve, Start Progress"
    )
    assert len(jira_http.calls) == 1  # nothing was posted


def test_evidence_link_keeps_the_signed_url_out_of_results(
    flavor: str, jira_ctx: ActionContext, jira_http: responses.RequestsMock
) -> None:
    jira_http.post(api(flavor, "issue/SEC-12/remotelink"), status=201, json={"id": 10000})
    signed = "https://ir-evidence.s3.amazonaws.com/run-42/manifest.json?X-Amz-Signature=abc123"

    result = run_action("jira.link_evidence", jira_ctx, issue="SEC-12", url=signed)

    link = sent(jira_http, 0)["object"]
    assert link["url"] == signed  # the ticket's link must work
    assert "abc123" not in link["title"]
    assert result.link_id == "10000"
    assert "abc123" not in result.url
    assert "abc123" not in json.dumps([c.as_dict() for c in jira_ctx.calls])
    assert made(jira_http) == planned("jira.link_evidence", issue="SEC-12", url=signed)


# -- failures ----------------------------------------------------------------------------


def test_auth_failure_is_one_line_without_credentials(
    flavor: str, jira_ctx: ActionContext, jira_http: responses.RequestsMock
) -> None:
    jira_http.post(
        api(flavor, "issue/SEC-12/comment"),
        status=401,
        json={"errorMessages": ["You are not authenticated."], "errors": {}},
    )

    with pytest.raises(ActionFailed) as caught:
        run_action("jira.comment", jira_ctx, issue="SEC-12", body="hi")

    message = caught.value.message
    assert message.startswith("Jira comment on SEC-12 failed: HTTP 401: authentication failed")
    assert "You are not authenticated." in message
    assert "\n" not in message
    for secret in (JIRA_TOKEN, JIRA_PAT, "Authorization"):
        assert secret not in message


def test_validation_errors_from_jira_reach_the_user(
    jira_ctx: ActionContext, flavor: str, jira_http: responses.RequestsMock
) -> None:
    no_open_issue(jira_http, flavor)
    jira_http.post(
        api(flavor, "issue"),
        status=400,
        json={"errorMessages": [], "errors": {"priority": "Priority name 'High' is not valid"}},
    )

    with pytest.raises(ActionFailed, match=r"in project SEC failed: HTTP 400: Priority name"):
        run_action("jira.create_issue", jira_ctx, project="SEC", summary="s")


def test_unreachable_jira_names_the_issue(
    flavor: str, jira_ctx: ActionContext, jira_http: responses.RequestsMock
) -> None:
    jira_http.get(api(flavor, "issue/SEC-12/transitions"), body=requests.ConnectionError("refused"))

    with pytest.raises(ActionFailed, match=r"transitions of SEC-12 failed: cannot reach Jira"):
        run_action("jira.transition", jira_ctx, issue="SEC-12", to="Done")


def test_a_client_for_the_other_flavour_is_refused_before_any_call(
    monkeypatch: pytest.MonkeyPatch, jira_http: responses.RequestsMock
) -> None:
    monkeypatch.setenv("IRBOOK_JIRA_FLAVOR", "cloud")
    ctx = ActionContext(run=live_run(), clients=TestClients(jira=make_jira("server")))

    with pytest.raises(ActionFailed, match=r"speaks REST v2 but \$IRBOOK_JIRA_FLAVOR=cloud"):
        run_action("jira.comment", ctx, issue="SEC-1", body="hi")

    assert len(jira_http.calls) == 0


def test_unconfigured_jira_is_an_action_failure() -> None:
    ctx = ActionContext(run=live_run(), clients=TestClients())

    with pytest.raises(ActionFailed, match="JIRA_URL"):
        run_action("jira.comment", ctx, issue="SEC-1", body="hi")


# -- ADF ---------------------------------------------------------------------------------


def test_adf_never_holds_empty_text_nodes() -> None:
    from irbook_actions.jira import adf

    doc = adf("\n\nfirst\n\n\n\nsecond line https://x.test/a then more\n\n")

    assert [p["type"] for p in doc["content"]] == ["paragraph", "paragraph"]
    texts = [n for p in doc["content"] for n in p["content"] if n["type"] == "text"]
    assert all(n["text"] for n in texts)
    assert [n["text"] for n in texts] == ["first", "second line ", "https://x.test/a", " then more"]
    assert adf("") == {"type": "doc", "version": 1, "content": []}
