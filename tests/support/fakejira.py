"""A local fake Jira (Cloud or Server) speaking the REST paths the jira library requests.

Tests point irbook's own client factory at it through the variables a user sets
(`JIRA_URL=fake.url`, `JIRA_EMAIL` + `JIRA_API_TOKEN` or `JIRA_PAT`), in-process or from an
`irbook run` subprocess, and then read `requests` to see what arrived.

It is strict where real Jira is, so that a client built wrong fails here as it would there:
- only the flavour's REST version answers (`/rest/api/3` Cloud, `/rest/api/2` Server);
  the other is 404, as v3 is on Server;
- every request needs the flavour's credentials: Basic email:token on Cloud, Bearer PAT
  on Server; anything else is 401 with Jira's own message;
- rich-text fields must be Atlassian Document Format on v3 and strings on v2 (400);
- Cloud's retired `GET /rest/api/3/search` is 410, as on Jira Cloud;
- any path it does not know is 404, so a stray extra call shows up as a failure.

Known paths: serverInfo, field, search (`search/jql` on Cloud), issue create and get,
comment, transitions (list and do) and remotelink. Issues live in memory; `add_issue`
seeds one (for dedup), and `answer_next` scripts the next answers (errors, outages).
"""

from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from tests.support.fakeslack import Answer, Recorded, RecordingServer

EMAIL = "irbook@example.test"
API_TOKEN = "jira-api-token-fake"
PAT = "jira-pat-fake"

TRANSITIONS = (
    {"id": "11", "name": "To Do", "to": {"name": "To Do", "statusCategory": {"key": "new"}}},
    {
        "id": "21",
        "name": "Start Progress",
        "to": {"name": "In Progress", "statusCategory": {"key": "indeterminate"}},
    },
    {"id": "31", "name": "Resolve", "to": {"name": "Done", "statusCategory": {"key": "done"}}},
)


class Request(Recorded):
    @property
    def call(self) -> str:
        """As irbook names the call in plans and run records: `jira:POST /rest/api/3/issue`."""
        return f"jira:{self.method} {self.path}"


@dataclass
class Issue:
    key: str
    id: str
    project: str
    fields: dict[str, Any]
    status: str = "To Do"
    comments: list[Any] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)


class FakeJira(RecordingServer):
    content_type = "application/json;charset=UTF-8"
    record_type = Request

    def __init__(
        self,
        flavor: str = "cloud",
        *,
        email: str = EMAIL,
        api_token: str = API_TOKEN,
        pat: str = PAT,
    ) -> None:
        if flavor not in ("cloud", "server"):
            raise ValueError(f"flavor must be cloud or server, not {flavor!r}")
        self.flavor = flavor
        self.version = "3" if flavor == "cloud" else "2"
        if flavor == "cloud":
            credentials = base64.b64encode(f"{email}:{api_token}".encode()).decode()
            self.expected_auth = f"Basic {credentials}"
        else:
            self.expected_auth = f"Bearer {pat}"
        self.requests: list[Request] = []
        self.issues: dict[str, Issue] = {}
        self._scripted: list[Answer] = []
        self._lock = threading.Lock()
        self._ids = 10000
        super().__init__()

    # -- scripting and seeding ----------------------------------------------------------

    def answer_next(
        self, status: int, body: Any = None, *, times: int = 1, delay: float = 0.0
    ) -> None:
        """Answer the next `times` requests like this (after the auth check), `delay`
        seconds late."""
        raw = b"" if body is None else json.dumps(body).encode()
        with self._lock:
            self._scripted.extend(Answer(status, raw, {}, delay) for _ in range(times))

    def add_issue(
        self, key: str, *, labels: list[str] | None = None, status: str = "To Do"
    ) -> Issue:
        project = key.rsplit("-", 1)[0]
        with self._lock:
            self._ids += 1
            issue = Issue(key, str(self._ids), project, {"labels": list(labels or [])}, status)
            self.issues[key] = issue
        return issue

    # -- reading ------------------------------------------------------------------------

    def calls(self) -> list[str]:
        return [r.call for r in self.requests]

    def api(self, path: str) -> str:
        return f"/rest/api/{self.version}/{path}"

    # -- answering ----------------------------------------------------------------------

    def _answer(self, request: Request) -> Answer:
        with self._lock:
            self.requests.append(request)
            if request.headers.get("authorization") != self.expected_auth:
                # Jira's words; the header proves the client sent credentials at all
                return _json(
                    401,
                    {"errorMessages": ["You are not authenticated. Authentication required."]},
                    {"WWW-Authenticate": 'Basic realm="protected-area"'},
                )
            if self._scripted:
                return self._scripted.pop(0)
            return self._route(request)

    def _route(self, request: Request) -> Answer:
        match = re.fullmatch(r"/rest/api/(\d+|latest)/(.+)", request.path)
        if not match or match.group(1) not in (self.version, "latest"):
            return _not_found(request)
        path = unquote(match.group(2))
        method = request.method
        if (method, path) == ("GET", "serverInfo"):
            return _json(200, self._server_info())
        if (method, path) == ("GET", "field"):
            return _json(200, _FIELDS)
        if method == "GET" and path in ("search", "search/jql"):
            return self._search(request, path)
        if (method, path) == ("POST", "issue"):
            return self._create(request)
        found = re.fullmatch(r"issue/([^/]+)(?:/(comment|transitions|remotelink))?", path)
        if not found:
            return _not_found(request)
        issue = self.issues.get(found.group(1))
        if issue is None:
            return _json(
                404,
                {
                    "errorMessages": [
                        "Issue does not exist or you do not have permission to see it."
                    ],
                    "errors": {},
                },
            )
        what = found.group(2)
        if what is None and method == "GET":
            return _json(200, self._issue_json(issue))
        if what == "comment" and method == "POST":
            return self._comment(request, issue)
        if what == "transitions" and method == "GET":
            return _json(200, {"expand": "transitions", "transitions": list(TRANSITIONS)})
        if what == "transitions" and method == "POST":
            return self._transition(request, issue)
        if what == "remotelink" and method == "POST":
            return self._link(request, issue)
        return _not_found(request)

    def _server_info(self) -> dict[str, Any]:
        cloud = self.flavor == "cloud"
        return {
            "baseUrl": self.url,
            "version": "1001.0.0-SNAPSHOT" if cloud else "9.12.0",
            "versionNumbers": [1001, 0, 0] if cloud else [9, 12, 0],
            "deploymentType": "Cloud" if cloud else "Server",
            "serverTitle": "Fake Jira",
        }

    def _self(self, path: str) -> str:
        return f"{self.url}{self.api(path)}"

    def _issue_json(self, issue: Issue) -> dict[str, Any]:
        return {
            "id": issue.id,
            "key": issue.key,
            "self": self._self(f"issue/{issue.id}"),
            "fields": {**issue.fields, "status": {"name": issue.status}},
        }

    def _search(self, request: Request, path: str) -> Answer:
        if self.flavor == "cloud" and path == "search":
            return _json(
                410,
                {
                    "errorMessages": [
                        "The requested API has been removed. Please migrate to the "
                        "/rest/api/3/search/jql API."
                    ],
                    "errors": {},
                },
            )
        if self.flavor == "server" and path == "search/jql":
            return _not_found(request)
        jql = (request.query.get("jql") or [""])[0]
        project = re.search(r'project = "([^"]*)"', jql)
        label = re.search(r'labels = "((?:[^"\\]|\\.)*)"', jql)
        open_only = "statusCategory != Done" in jql
        hits = [
            i
            for i in self.issues.values()
            if (project is None or i.project == project.group(1))
            and (label is None or label.group(1) in i.fields.get("labels", []))
            and not (open_only and i.status == "Done")
        ]
        limit = int((request.query.get("maxResults") or ["50"])[0])
        issues = [{"id": i.id, "key": i.key, "self": self._self(f"issue/{i.id}")} for i in hits]
        if self.flavor == "cloud":
            return _json(200, {"issues": issues[:limit], "isLast": True})
        return _json(
            200, {"startAt": 0, "maxResults": limit, "total": len(hits), "issues": issues[:limit]}
        )

    def _rich_text_error(self, name: str, value: Any) -> str | None:
        if self.version == "3" and not (isinstance(value, dict) and value.get("type") == "doc"):
            return f"{name}: Operation value must be an Atlassian Document (see the ADF spec)"
        if self.version == "2" and not isinstance(value, str):
            return f"{name}: Operation value must be a string"
        return None

    def _create(self, request: Request) -> Answer:
        try:
            fields = request.json["fields"]
        except (ValueError, KeyError, TypeError):
            return _json(400, {"errorMessages": ["Can not deserialize the request."]})
        errors: dict[str, str] = {}
        project = fields.get("project")
        if not (isinstance(project, dict) and isinstance(project.get("key"), str)):
            errors["project"] = "project is required"
        issuetype = fields.get("issuetype")
        if not (isinstance(issuetype, dict) and isinstance(issuetype.get("name"), str)):
            errors["issuetype"] = "Specify an issue type"
        if not fields.get("summary"):
            errors["summary"] = "You must specify a summary of the issue."
        if "description" in fields:
            problem = self._rich_text_error("description", fields["description"])
            if problem:
                errors["description"] = problem
        if errors:
            return _json(400, {"errorMessages": [], "errors": errors})
        key_project = str(project["key"])
        number = 1 + sum(1 for i in self.issues.values() if i.project == key_project)
        self._ids += 1
        issue = Issue(f"{key_project}-{number}", str(self._ids), key_project, dict(fields))
        self.issues[issue.key] = issue
        return _json(
            201, {"id": issue.id, "key": issue.key, "self": self._self(f"issue/{issue.id}")}
        )

    def _comment(self, request: Request, issue: Issue) -> Answer:
        body = request.json.get("body") if isinstance(request.json, dict) else None
        problem = self._rich_text_error("body", body)
        if problem:
            return _json(400, {"errorMessages": [], "errors": {"comment": problem}})
        self._ids += 1
        issue.comments.append(body)
        return _json(
            201,
            {
                "id": str(self._ids),
                "body": body,
                "self": self._self(f"issue/{issue.id}/comment/{self._ids}"),
            },
        )

    def _transition(self, request: Request, issue: Issue) -> Answer:
        data = request.json if isinstance(request.json, dict) else {}
        wanted = str((data.get("transition") or {}).get("id", ""))
        chosen = next((t for t in TRANSITIONS if t["id"] == wanted), None)
        if chosen is None:
            return _json(
                400,
                {"errorMessages": [f"Transition id '{wanted}' is not valid for this issue."]},
            )
        issue.status = str(chosen["to"]["name"])  # type: ignore[index]
        return Answer(204, b"")  # Jira answers a transition with no content

    def _link(self, request: Request, issue: Issue) -> Answer:
        data = request.json if isinstance(request.json, dict) else {}
        target = data.get("object")
        if not (isinstance(target, dict) and target.get("url") and target.get("title")):
            return _json(400, {"errorMessages": [], "errors": {"object": "url and title"}})
        self._ids += 1
        issue.links.append(target)
        return _json(
            201,
            {"id": self._ids, "self": self._self(f"issue/{issue.key}/remotelink/{self._ids}")},
        )


_FIELDS = [
    {"id": "summary", "name": "Summary", "custom": False, "clauseNames": ["summary"]},
    {"id": "labels", "name": "Labels", "custom": False, "clauseNames": ["labels"]},
    {"id": "priority", "name": "Priority", "custom": False, "clauseNames": ["priority"]},
]


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Answer:
    return Answer(status, json.dumps(body).encode(), dict(headers or {}))


def _not_found(request: Request) -> Answer:
    return _json(404, {"errorMessages": [f"No resource at {request.method} {request.path}"]})
