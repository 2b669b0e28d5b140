"""What `irbook sandbox` serves besides moto: CloudTrail's LookupEvents, a Slack and a Jira.

moto has no CloudTrail LookupEvents (it answers with a 500 page), and a demo needs Slack
and Jira to answer too, so one WSGI app sits in front of moto on the sandbox's port:

- CloudTrail `LookupEvents` (JSON protocol, `X-Amz-Target`) answers from events the
  sandbox seeded, each marked as the sandbox's own (`EventId` `sandbox-...`, user agent
  and `additionalEventData` saying so); filtered by attribute and time, paged.
- `/_irbook_sandbox/slack/api/<method>`: Slack's Web API for `chat.postMessage` and
  `chat.update` (a channel name becomes an id, each message a new ts), `{"ok": true}` for
  the rest; the bot token must be the sandbox's.
- `/_irbook_sandbox/jira/rest/api/{2,3}/...`: the Jira REST paths irbook's Jira actions
  call (search, issue create and get, comment, transitions, remote links), Basic auth
  with the sandbox's email and token.

The prefix holds an underscore, which no S3 bucket name can, so no AWS request is taken.
Everything is in memory and lost when the sandbox stops. Messages and tickets are printed
as they arrive, so the demo's terminal shows what Slack and Jira received.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

PREFIX = "/_irbook_sandbox"
SLACK_PREFIX = PREFIX + "/slack/api/"
JIRA_PREFIX = PREFIX + "/jira"
SLACK_TOKEN = "xoxb-irbook-sandbox-not-real"  # noqa: S105 - the sandbox's fake Slack token
JIRA_EMAIL = "oncall@sandbox.irbook.invalid"
JIRA_API_TOKEN = "irbook-sandbox-jira-token-not-real"  # noqa: S105 - the fake Jira's token
MAX_BODY = 1 << 20

StartResponse = Callable[..., Any]
App = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_TRANSITIONS = (
    {"id": "11", "name": "To Do", "to": {"name": "To Do", "statusCategory": {"key": "new"}}},
    {
        "id": "21",
        "name": "Start Progress",
        "to": {"name": "In Progress", "statusCategory": {"key": "indeterminate"}},
    },
    {"id": "31", "name": "Resolve", "to": {"name": "Done", "statusCategory": {"key": "done"}}},
)


def _reply(
    start: StartResponse, status: int, body: Any, content_type: str = "application/json"
) -> list[bytes]:
    raw = b"" if body is None else json.dumps(body).encode()
    reasons = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request"}
    reasons.update({401: "Unauthorized", 404: "Not Found"})
    start(
        f"{status} {reasons.get(status, 'Error')}",
        [("Content-Type", content_type), ("Content-Length", str(len(raw)))],
    )
    return [raw]


def _body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return bytes(environ["wsgi.input"].read(min(length, MAX_BODY))) if length > 0 else b""


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return None


class SandboxApp:
    """The WSGI app in front of moto; `events` holds the seeded CloudTrail events."""

    def __init__(self, aws: App, log: Callable[[str], None] = lambda line: None) -> None:
        self.aws = aws
        self.log = log
        self.events: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.issues: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._ts = 0
        self._ids = 10000
        basic = base64.b64encode(f"{JIRA_EMAIL}:{JIRA_API_TOKEN}".encode()).decode()
        self._jira_auth = f"Basic {basic}"

    def __call__(self, environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if path.startswith(SLACK_PREFIX):
            return self._slack(environ, start, path[len(SLACK_PREFIX) :])
        if path.startswith(JIRA_PREFIX + "/"):
            return self._jira(environ, start, path[len(JIRA_PREFIX) :])
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        if target.startswith("com.amazonaws.cloudtrail.") and target.endswith(".LookupEvents"):
            return self._lookup_events(environ, start)
        return self.aws(environ, start)

    # -- CloudTrail ----------------------------------------------------------------------

    def _lookup_events(self, environ: dict[str, Any], start: StartResponse) -> list[bytes]:
        request = _json(_body(environ))
        if not isinstance(request, dict):
            request = {}
        wanted = {
            "AccessKeyId": "AccessKeyId",
            "Username": "Username",
            "EventName": "EventName",
            "EventSource": "EventSource",
            "EventId": "EventId",
        }
        attributes = request.get("LookupAttributes") or []
        begin = float(request.get("StartTime") or 0)
        end = float(request.get("EndTime") or 1e12)
        hits = []
        for event in self.events:
            if not begin <= float(event["EventTime"]) <= end:
                continue
            if all(
                isinstance(a, dict)
                and event.get(wanted.get(str(a.get("AttributeKey")), "")) == a.get("AttributeValue")
                for a in attributes
            ):
                hits.append(event)
        hits.sort(key=lambda e: -float(e["EventTime"]))  # newest first, as CloudTrail
        size = max(1, min(50, int(request.get("MaxResults") or 50)))
        token = str(request.get("NextToken") or "0")
        offset = int(token) if token.isdigit() else 0
        page: dict[str, Any] = {"Events": hits[offset : offset + size]}
        if offset + size < len(hits):
            page["NextToken"] = str(offset + size)
        return _reply(start, 200, page, "application/x-amz-json-1.1")

    # -- Slack ---------------------------------------------------------------------------

    def _slack(self, environ: dict[str, Any], start: StartResponse, method: str) -> list[bytes]:
        raw = _body(environ)
        if str(environ.get("HTTP_AUTHORIZATION", "")) != f"Bearer {SLACK_TOKEN}":
            return _reply(start, 200, {"ok": False, "error": "invalid_auth"})
        if str(environ.get("CONTENT_TYPE", "")).startswith("application/json"):
            data = _json(raw)
        else:
            data = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        data = data if isinstance(data, dict) else {}
        if method not in ("chat.postMessage", "chat.update"):
            return _reply(start, 200, {"ok": True})
        channel = str(data.get("channel") or "")
        if not channel:
            return _reply(start, 200, {"ok": False, "error": "channel_not_found"})
        with self._lock:
            self._ts += 1
            ts = f"1700000000.{self._ts:06d}"
            if method == "chat.update":
                ts = str(data.get("ts") or ts)
            self.messages.append({"method": method, "channel": channel, **data})
        if channel.startswith("#"):
            channel = "C" + "".join(c for c in channel[1:].upper() if c.isalnum())
        self.log(f"[sandbox slack] {method} {data.get('channel')}: {str(data.get('text'))[:300]}")
        message = {"text": data.get("text"), "ts": ts}
        return _reply(start, 200, {"ok": True, "channel": channel, "ts": ts, "message": message})

    # -- Jira ----------------------------------------------------------------------------

    def _jira(self, environ: dict[str, Any], start: StartResponse, path: str) -> list[bytes]:
        raw = _body(environ)
        if str(environ.get("HTTP_AUTHORIZATION", "")) != self._jira_auth:
            return _reply(start, 401, {"errorMessages": ["You are not authenticated."]})
        found = re.fullmatch(r"/rest/api/(2|3|latest)/(.+)", path)
        if not found:
            return _reply(start, 404, {"errorMessages": [f"No resource at {path}"]})
        version, rest = found.group(1), found.group(2)
        host = str(environ.get("HTTP_HOST") or "127.0.0.1")
        base = f"http://{host}{JIRA_PREFIX}/rest/api/{version}"
        method = str(environ.get("REQUEST_METHOD", "GET"))
        query = {k: v[0] for k, v in parse_qs(str(environ.get("QUERY_STRING", ""))).items()}
        with self._lock:
            return self._jira_route(start, method, rest, base, query, _json(raw))

    def _jira_route(
        self,
        start: StartResponse,
        method: str,
        path: str,
        base: str,
        query: dict[str, str],
        data: Any,
    ) -> list[bytes]:
        data = data if isinstance(data, dict) else {}
        if (method, path) == ("GET", "serverInfo"):
            info = {"baseUrl": base, "deploymentType": "Cloud", "serverTitle": "irbook sandbox"}
            return _reply(start, 200, {**info, "version": "1001.0.0"})
        if (method, path) == ("GET", "field"):
            return _reply(start, 200, [])
        if method == "GET" and path in ("search", "search/jql"):
            jql = query.get("jql", "")
            project = re.search(r'project = "([^"]*)"', jql)
            label = re.search(r'labels = "((?:[^"\\]|\\.)*)"', jql)
            hits = [
                {"id": i["id"], "key": key, "self": f"{base}/issue/{i['id']}"}
                for key, i in self.issues.items()
                if (project is None or i["project"] == project.group(1))
                and (label is None or label.group(1) in i["fields"].get("labels", []))
                and i["status"] != "Done"
            ]
            return _reply(start, 200, {"issues": hits[:1], "isLast": True, "total": len(hits)})
        if (method, path) == ("POST", "issue"):
            fields = data.get("fields") if isinstance(data.get("fields"), dict) else {}
            project = (fields.get("project") or {}).get("key")
            if not isinstance(project, str) or not fields.get("summary"):
                return _reply(start, 400, {"errors": {"project": "project and summary needed"}})
            self._ids += 1
            number = 1 + sum(1 for i in self.issues.values() if i["project"] == project)
            key = f"{project}-{number}"
            issue: dict[str, Any] = {"id": str(self._ids), "project": project, "fields": fields}
            issue["status"] = "To Do"
            self.issues[key] = issue | {"comments": [], "links": []}
            self.log(f"[sandbox jira] {key} created: {fields.get('summary')}")
            return _reply(
                start, 201, {"id": issue["id"], "key": key, "self": f"{base}/issue/{key}"}
            )
        found = re.fullmatch(r"issue/([^/]+)(?:/(comment|transitions|remotelink))?", path)
        known = self.issues.get(found.group(1)) if found else None
        if not found or known is None:
            return _reply(start, 404, {"errorMessages": ["Issue does not exist."]})
        key, what, issue = found.group(1), found.group(2), known
        if what is None and method == "GET":
            body = {"id": issue["id"], "key": key, "self": f"{base}/issue/{key}"}
            return _reply(start, 200, body | {"fields": {**issue["fields"]}})
        if what == "comment" and method == "POST":
            issue["comments"].append(data.get("body"))
            self._ids += 1
            self.log(f"[sandbox jira] {key}: comment added")
            return _reply(start, 201, {"id": str(self._ids), "body": data.get("body")})
        if what == "transitions" and method == "GET":
            return _reply(start, 200, {"transitions": list(_TRANSITIONS)})
        if what == "transitions" and method == "POST":
            wanted = str((data.get("transition") or {}).get("id", ""))
            chosen = next((t for t in _TRANSITIONS if t["id"] == wanted), None)
            if chosen is None:
                return _reply(start, 400, {"errorMessages": [f"No transition {wanted!r}."]})
            issue["status"] = str(chosen["to"]["name"])  # type: ignore[index]
            self.log(f"[sandbox jira] {key} -> {issue['status']}")
            return _reply(start, 204, None)
        if what == "remotelink" and method == "POST":
            issue["links"].append(data.get("object"))
            self._ids += 1
            return _reply(start, 201, {"id": self._ids, "self": f"{base}/issue/{key}/remotelink"})
        return _reply(start, 404, {"errorMessages": [f"No resource at {method} {path}"]})


class SandboxServer:
    """moto's server with `SandboxApp` in front, on loopback, in a thread.

    The same shape as moto's ThreadedMotoServer (start, url, stop), which offers no way
    to put an app in front of moto's.
    """

    def __init__(self, port: int = 0, log: Callable[[str], None] = lambda line: None) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        self.app = SandboxApp(DomainDispatcherApplication(create_backend_app), log)
        self.port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        from moto.moto_server.werkzeug_app import MotoRequestHandler
        from werkzeug.serving import make_server

        self._server = make_server(
            "127.0.0.1", self.port, self.app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self.url

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
