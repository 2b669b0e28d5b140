"""Jira actions: one ticket per incident, comments, transitions and evidence links.

Planned calls are `jira:<METHOD> <REST path>`, the path the jira library requests, such
as `jira:POST /rest/api/3/issue` or `jira:GET /rest/api/3/issue/SEC-1/transitions`, so a
recorded live run compares with the plan call by call. Each live call goes through one
library method that makes exactly one request: `create_issue` gets the project and type
as `{"key": …}`/`{"name": …}` objects (strings make it look both up first) and no
prefetch, remote links use `add_simple_link` (`add_remote_link` first lists application
links), and the dedup search calls the library's `_get_json` because `search_issues` also
fetches the field list, and on a client built without server info (irbook's) would use the
search endpoint Jira Cloud has retired.

Flavours, from `$IRBOOK_JIRA_FLAVOR` (default cloud):
- cloud: Jira Cloud, email + API token, REST v3. Rich-text fields (description, comment
  body) are Atlassian Document Format JSON there; a plain string is a 400. Search is
  `GET /rest/api/3/search/jql`.
- server: Jira Server / Data Center, personal access token, REST v2 (there is no v3),
  where the same fields are wiki-markup strings. Search is `GET /rest/api/2/search`.
The client must be built for the flavour: `JIRA(server, options=client_options())`.
An action refuses a client whose REST version disagrees, since the dry run would have
shown other calls than the live run makes.

Dedup: every issue irbook opens carries the incident label (the run's incident key). The
create action first searches
`project = "SEC" AND labels = "<label>" AND statusCategory != Done ORDER BY created ASC`
and comments on the oldest open match instead of opening a second ticket for the same
incident, so re-runs, retries and repeated alerts converge on one ticket. The planner
cannot know whether a match exists; it plans the create and says so in a note.

Priority follows the playbook's severity through `DEFAULT_PRIORITIES`, which
`$IRBOOK_JIRA_PRIORITIES` (a JSON object) overrides per severity; an explicit `priority`
parameter wins.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from irbook.errors import IrbookError
from irbook.registry import ActionContext, ActionFailed, PlannedCall, RunInfo, action
from irbook_actions.notify import redact_url

Flavor = Literal["cloud", "server"]
FLAVOR_ENV = "IRBOOK_JIRA_FLAVOR"
PRIORITIES_ENV = "IRBOOK_JIRA_PRIORITIES"
REST_VERSION: dict[str, str] = {"cloud": "3", "server": "2"}
DEFAULT_PRIORITIES: dict[str, str] = {
    "critical": "Highest",
    "high": "High",
    "medium": "Medium",
    "low": "Low",
}
DRY_RUN_MARK = "DRY RUN"
SIMULATED_SERVER = "https://jira.invalid"

_PROJECT = r"^[A-Z][A-Z0-9_]{1,49}$"
# DRYRUN keys come from simulated create_issue results, so later steps plan too.
_ISSUE = r"^[A-Z][A-Z0-9_]{1,49}-(DRYRUN-)?[1-9][0-9]*$"
_URL_IN_TEXT = re.compile(r"https?://[^\s<>\"']+")


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


# -- configuration -----------------------------------------------------------------------


def flavor() -> Flavor:
    value = (os.environ.get(FLAVOR_ENV) or "cloud").strip().lower()
    if value == "cloud":
        return "cloud"
    if value == "server":
        return "server"
    raise ActionFailed(f"${FLAVOR_ENV} must be 'cloud' or 'server', not {value!r}")


def client_options(kind: Flavor | None = None) -> dict[str, Any]:
    """`options=` for `jira.JIRA` that match the flavour the planner assumes."""
    return {"rest_api_version": REST_VERSION[kind or flavor()]}


def _path(path: str) -> str:
    return f"/rest/api/{REST_VERSION[flavor()]}/{path}"


def priorities() -> dict[str, str]:
    table = dict(DEFAULT_PRIORITIES)
    raw = os.environ.get(PRIORITIES_ENV)
    if raw:
        try:
            extra = json.loads(raw)
        except ValueError:
            extra = None
        if not isinstance(extra, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in extra.items()
        ):
            raise ActionFailed(
                f"${PRIORITIES_ENV} must be a JSON object of severity to Jira priority, "
                'such as {"critical": "P1"}'
            )
        table.update({k.lower(): v for k, v in extra.items()})
    return table


def incident_label(run: RunInfo) -> str:
    """Jira labels cannot hold spaces; without an incident, the run is the unit of dedup."""
    raw = run.incident_key or f"irbook-run-{run.run_id}"
    return re.sub(r"\s+", "-", raw.strip())[:255]


def _jql_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dedup_jql(project: str, label: str) -> str:
    return (
        f"project = {_jql_string(project)} AND labels = {_jql_string(label)} "
        "AND statusCategory != Done ORDER BY created ASC"
    )


# -- rich text ---------------------------------------------------------------------------


def adf(text: str) -> dict[str, Any]:
    """Plain text as an Atlassian Document Format document (REST v3 rich-text fields).

    Blank lines separate paragraphs, single newlines become hard breaks, and URLs become
    links. ADF refuses empty text nodes, so an empty text is an empty document.
    """
    content: list[dict[str, Any]] = []
    for block in re.split(r"\n\s*\n", text.strip()):
        nodes: list[dict[str, Any]] = []
        for number, line in enumerate(block.split("\n")):
            if number:
                nodes.append({"type": "hardBreak"})
            nodes.extend(_adf_text(line))
        if nodes:
            content.append({"type": "paragraph", "content": nodes})
    return {"type": "doc", "version": 1, "content": content}


def _adf_text(line: str) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    at = 0
    for match in _URL_IN_TEXT.finditer(line):
        if match.start() > at:
            nodes.append({"type": "text", "text": line[at : match.start()]})
        url = match.group(0)
        nodes.append(
            {"type": "text", "text": url, "marks": [{"type": "link", "attrs": {"href": url}}]}
        )
        at = match.end()
    if at < len(line):
        nodes.append({"type": "text", "text": line[at:]})
    return nodes


def rich_text(text: str, rest_version: str) -> Any:
    """What a description or comment body must be for the REST version in use."""
    return adf(text) if rest_version == "3" else text


def _footer(run: RunInfo) -> str:
    mode = f"{DRY_RUN_MARK}, nothing was changed" if run.dry_run else "live"
    playbook = run.playbook_id or "-"
    return (
        f"irbook run {run.run_id} (playbook {playbook}, severity {run.severity}, {mode}); "
        f"incident {incident_label(run)}"
    )


def _marked(text: str, run: RunInfo) -> str:
    return f"[{DRY_RUN_MARK}] {text}" if run.dry_run else text


# -- the client and its errors -----------------------------------------------------------


def _client(ctx: ActionContext, what: str) -> tuple[Any, str]:
    try:
        client = ctx.clients.jira()
    except IrbookError as exc:
        raise ActionFailed(f"Jira {what}: {exc.message}") from None
    options = getattr(client, "_options", None)
    version = str(options.get("rest_api_version", "2")) if isinstance(options, dict) else "2"
    kind = flavor()
    if version != REST_VERSION[kind]:
        raise ActionFailed(
            f"Jira {what}: the client speaks REST v{version} but ${FLAVOR_ENV}={kind} needs "
            f"v{REST_VERSION[kind]}; build it with options={client_options(kind)} "
            "(irbook_actions.jira.client_options()) or set the flavour that matches"
        )
    return client, version


def _server(client: Any) -> str:
    return str(getattr(client, "server_url", "") or "").rstrip("/")


def _browse(client: Any, key: str) -> str:
    return f"{_server(client)}/browse/{key}"


@contextmanager
def _errors(what: str) -> Iterator[None]:
    """Library errors as one line. JIRAError's own text includes the request headers,
    which carry the credentials, so only its status and Jira's messages are used."""
    import requests
    from jira.exceptions import JIRAError

    try:
        yield
    except JIRAError as exc:
        raise ActionFailed(f"Jira {what} failed: {_reason(exc)}") from None
    except requests.Timeout:
        raise ActionFailed(f"Jira {what} failed: Jira did not answer in time") from None
    except requests.RequestException as exc:
        raise ActionFailed(
            f"Jira {what} failed: cannot reach Jira ({type(exc).__name__})"
        ) from None
    except ValueError:
        raise ActionFailed(f"Jira {what} failed: Jira's answer is not JSON") from None


def _reason(exc: Any) -> str:
    status = getattr(exc, "status_code", None)
    text = str(getattr(exc, "text", "") or "").strip()
    first = text.splitlines()[0][:300] if text else ""
    hint = {
        401: "authentication failed (JIRA_EMAIL + JIRA_API_TOKEN, or JIRA_PAT)",
        403: "permission denied",
        404: "not found",
    }.get(status or 0, "")
    parts = [p for p in (f"HTTP {status}" if status else "", hint, first) if p]
    return ": ".join(parts) or "unknown error"


# -- jira.create_issue -------------------------------------------------------------------


class CreateIssueParams(_Params):
    project: str = Field(pattern=_PROJECT, description="Project key, such as SEC")
    summary: str = Field(min_length=1, max_length=240)
    description: str | None = Field(default=None, max_length=30_000)
    issue_type: str = Field(default="Task", min_length=1, max_length=100)
    priority: str | None = Field(
        default=None, max_length=100, description="Overrides the severity's priority"
    )
    labels: list[str] | None = Field(default=None, max_length=50)
    assignee: str | None = Field(
        default=None, max_length=200, description="Account ID (Cloud) or user name (Server)"
    )

    @field_validator("labels")
    @classmethod
    def _labels_have_no_spaces(cls, labels: list[str] | None) -> list[str] | None:
        for label in labels or []:
            if not label or any(c.isspace() for c in label) or len(label) > 255:
                raise ValueError(f"Jira labels are one word of at most 255 characters: {label!r}")
        return labels


class CreateIssueResult(BaseModel):
    key: str
    url: str
    created: bool


def _create_calls(params: CreateIssueParams) -> list[PlannedCall]:
    fields: dict[str, Any] = {
        "project": params.project,
        "issuetype": params.issue_type,
        "summary": params.summary,
        "labels": ["(incident label)", *(params.labels or [])],
        "priority": params.priority or "(from the playbook severity)",
    }
    if params.assignee:
        fields["assignee"] = params.assignee
    return [
        PlannedCall(
            service="jira",
            operation=f"GET {_path('search/jql' if flavor() == 'cloud' else 'search')}",
            params={"jql": dedup_jql(params.project, "(incident label)"), "maxResults": 1},
            note="finds an open issue already opened for this incident",
        ),
        PlannedCall(
            service="jira",
            operation=f"POST {_path('issue')}",
            params=fields,
            note="when the search finds an open issue: "
            f"POST {_path('issue/{key}/comment')} on it instead",
        ),
    ]


def _plan_create(params: CreateIssueParams) -> list[PlannedCall]:
    return _create_calls(params)


def _simulate_create(params: CreateIssueParams, run: RunInfo) -> CreateIssueResult:
    key = f"{params.project}-DRYRUN-1"
    server = (os.environ.get("JIRA_URL") or SIMULATED_SERVER).rstrip("/")
    return CreateIssueResult(key=key, url=f"{server}/browse/{key}", created=True)


def _priority(params: CreateIssueParams, run: RunInfo) -> str | None:
    return params.priority or priorities().get(run.severity.lower())


# Jira project permissions, not AWS calls: the rights the Jira account needs.
_BROWSE = {"jira:BrowseProjects": "Jira project permission: see the project and its issues"}


@action(
    "jira.create_issue",
    effect="notify",
    extra_permissions={
        **_BROWSE,
        "jira:CreateIssues": "Jira project permission: create the incident issue",
        "jira:AddComments": "Jira project permission: comment on the issue",
    },
    planner=_plan_create,
    simulate=_simulate_create,
    idempotent=True,
)
def create_issue(ctx: ActionContext, params: CreateIssueParams) -> CreateIssueResult:
    """Open the incident's ticket, or comment on the one already open for this incident."""
    run = ctx.run
    what = f"create_issue in project {params.project}"
    client, version = _client(ctx, what)
    label = incident_label(run)
    search_path = "search/jql" if flavor() == "cloud" else "search"
    planned = _create_calls(params)
    ctx.calls.append(planned[0])
    with _errors(f"search for the open issue of {label} in project {params.project}"):
        found = client._get_json(
            search_path,
            params={"jql": dedup_jql(params.project, label), "fields": "key", "maxResults": 1},
        )
    issues = found.get("issues") if isinstance(found, dict) else None
    body = "\n\n".join(p for p in (params.description, _footer(run)) if p)
    if issues:
        key = str(issues[0].get("key") or issues[0].get("id"))
        ctx.calls.append(
            PlannedCall(service="jira", operation=f"POST {_path(f'issue/{key}/comment')}")
        )
        text = _marked(f"Seen again: {params.summary}", run) + "\n\n" + body
        with _errors(f"comment on {key}"):
            client.add_comment(key, rich_text(text, version))
        ctx.note(f"Jira: {key} is already open for incident {label}; commented on it")
        return CreateIssueResult(key=key, url=_browse(client, key), created=False)

    fields: dict[str, Any] = {
        "project": {"key": params.project},
        "issuetype": {"name": params.issue_type},
        "summary": _marked(params.summary, run)[:255],
        "description": rich_text(body, version),
        "labels": list(dict.fromkeys([label, *(params.labels or [])])),
    }
    priority = _priority(params, run)
    if priority:
        fields["priority"] = {"name": priority}
    if params.assignee:
        who = "accountId" if version == "3" else "name"
        fields["assignee"] = {who: params.assignee}
    ctx.calls.append(planned[1])
    with _errors(what):
        issue = client.create_issue(fields=fields, prefetch=False)
    key = str(issue.key)
    return CreateIssueResult(key=key, url=_browse(client, key), created=True)


# -- jira.comment ------------------------------------------------------------------------


class CommentParams(_Params):
    issue: str = Field(pattern=_ISSUE, description="Issue key, such as SEC-12")
    body: str = Field(min_length=1, max_length=30_000)


class CommentResult(BaseModel):
    issue: str
    comment_id: str
    url: str


def _comment_call(params: CommentParams) -> PlannedCall:
    return PlannedCall(
        service="jira",
        operation=f"POST {_path(f'issue/{params.issue}/comment')}",
        params={"body": params.body},
    )


def _plan_comment(params: CommentParams) -> list[PlannedCall]:
    return [_comment_call(params)]


def _simulate_comment(params: CommentParams, run: RunInfo) -> CommentResult:
    server = (os.environ.get("JIRA_URL") or SIMULATED_SERVER).rstrip("/")
    return CommentResult(
        issue=params.issue, comment_id="DRYRUN-1", url=f"{server}/browse/{params.issue}"
    )


@action(
    "jira.comment",
    effect="notify",
    extra_permissions={
        **_BROWSE,
        "jira:AddComments": "Jira project permission: comment on the issue",
    },
    planner=_plan_comment,
    simulate=_simulate_comment,
)
def comment(ctx: ActionContext, params: CommentParams) -> CommentResult:
    """Add a comment to an issue, so the ticket tells the incident's story as it happens."""
    what = f"comment on {params.issue}"
    client, version = _client(ctx, what)
    ctx.calls.append(_comment_call(params))
    with _errors(what):
        made = client.add_comment(params.issue, rich_text(_marked(params.body, ctx.run), version))
    comment_id = str(getattr(made, "id", "") or "")
    url = _browse(client, params.issue)
    if comment_id:
        url += f"?focusedCommentId={comment_id}"
    return CommentResult(issue=params.issue, comment_id=comment_id, url=url)


# -- jira.transition ---------------------------------------------------------------------


class TransitionParams(_Params):
    issue: str = Field(pattern=_ISSUE, description="Issue key, such as SEC-12")
    to: str = Field(
        min_length=1, max_length=100, description="Transition or target status name, any case"
    )


class TransitionResult(BaseModel):
    issue: str
    transition: str
    status: str


def _transition_calls(params: TransitionParams) -> list[PlannedCall]:
    path = _path(f"issue/{params.issue}/transitions")
    return [
        PlannedCall(service="jira", operation=f"GET {path}"),
        PlannedCall(service="jira", operation=f"POST {path}", params={"to": params.to}),
    ]


def _plan_transition(params: TransitionParams) -> list[PlannedCall]:
    return _transition_calls(params)


def _simulate_transition(params: TransitionParams, run: RunInfo) -> TransitionResult:
    return TransitionResult(issue=params.issue, transition=params.to, status=params.to)


def pick_transition(available: list[dict[str, Any]], to: str) -> dict[str, Any] | None:
    """By transition name first, then by the status it leads to: people say 'Done'
    where the workflow's transition is called 'Resolve'."""
    wanted = to.strip().casefold()
    for t in available:
        if str(t.get("name", "")).casefold() == wanted:
            return t
    for t in available:
        target = t.get("to")
        if isinstance(target, dict) and str(target.get("name", "")).casefold() == wanted:
            return t
    return None


@action(
    "jira.transition",
    effect="notify",
    extra_permissions={
        **_BROWSE,
        "jira:TransitionIssues": "Jira project permission: move the issue through its workflow",
    },
    planner=_plan_transition,
    simulate=_simulate_transition,
)
def transition(ctx: ActionContext, params: TransitionParams) -> TransitionResult:
    """Move an issue through its workflow by name, so playbooks need no transition IDs."""
    what = f"transition of {params.issue} to {params.to!r}"
    client, _version = _client(ctx, what)
    get_call, post_call = _transition_calls(params)
    ctx.calls.append(get_call)
    with _errors(f"list of transitions of {params.issue}"):
        available = list(client.transitions(params.issue))
    chosen = pick_transition(available, params.to)
    if chosen is None:
        names = ", ".join(sorted({str(t.get("name")) for t in available})) or "none"
        raise ActionFailed(
            f"Jira issue {params.issue} has no transition {params.to!r}; available: {names}"
        )
    ctx.calls.append(post_call)
    with _errors(what):
        client.transition_issue(params.issue, str(chosen["id"]))
    target = chosen.get("to")
    status = str(target.get("name")) if isinstance(target, dict) else params.to
    return TransitionResult(issue=params.issue, transition=str(chosen.get("name")), status=status)


# -- jira.link_evidence ------------------------------------------------------------------


class LinkEvidenceParams(_Params):
    issue: str = Field(pattern=_ISSUE, description="Issue key, such as SEC-12")
    url: str = Field(min_length=1, max_length=4096, description="http(s) URL of the evidence")
    title: str | None = Field(default=None, max_length=255)

    @field_validator("url")
    @classmethod
    def _web_url(cls, url: str) -> str:
        if not re.match(r"^https?://[^/\s]+", url):
            raise ValueError("must be an http(s) URL")
        return url


class LinkEvidenceResult(BaseModel):
    issue: str
    url: str
    link_id: str


def _title(params: LinkEvidenceParams) -> str:
    # A presigned URL's signature must not become the link text everyone sees.
    return params.title or redact_url(params.url, keep_path=True)


def _link_call(params: LinkEvidenceParams) -> PlannedCall:
    return PlannedCall(
        service="jira",
        operation=f"POST {_path(f'issue/{params.issue}/remotelink')}",
        params={"url": redact_url(params.url, keep_path=True), "title": _title(params)},
    )


def _plan_link(params: LinkEvidenceParams) -> list[PlannedCall]:
    return [_link_call(params)]


def _simulate_link(params: LinkEvidenceParams, run: RunInfo) -> LinkEvidenceResult:
    return LinkEvidenceResult(
        issue=params.issue, url=redact_url(params.url, keep_path=True), link_id="DRYRUN-1"
    )


@action(
    "jira.link_evidence",
    effect="notify",
    extra_permissions={
        **_BROWSE,
        "jira:LinkIssues": "Jira project permission: add the evidence link",
    },
    planner=_plan_link,
    simulate=_simulate_link,
)
def link_evidence(ctx: ActionContext, params: LinkEvidenceParams) -> LinkEvidenceResult:
    """Link evidence (a snapshot manifest, a log query) from the issue, where reviewers look."""
    what = f"link of evidence to {params.issue}"
    client, _version = _client(ctx, what)
    ctx.calls.append(_link_call(params))
    with _errors(what):
        link = client.add_simple_link(
            params.issue, {"url": params.url, "title": _marked(_title(params), ctx.run)}
        )
    return LinkEvidenceResult(
        issue=params.issue,
        url=redact_url(params.url, keep_path=True),
        link_id=str(getattr(link, "id", "") or ""),
    )
