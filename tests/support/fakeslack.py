"""A local HTTP server that records every request: a fake Slack Web API and a webhook sink.

slack-sdk talks through urllib, which `responses` cannot intercept, so tests point a
real `WebClient(base_url=server.api_url)` at this server instead. It answers Slack's
`chat.postMessage` / `chat.update` the way Slack does (a channel name becomes an ID, each
message gets a new ts), and anything else with `{"ok": true}`. Scripted answers (errors,
429 with Retry-After, outages) are queued with `answer_next` and used first.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body or b"null")

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}

    @property
    def data(self) -> dict[str, Any]:
        """The request's parameters, however slack-sdk chose to send them."""
        if self.headers.get("content-type", "").startswith("application/json"):
            value = self.json
            return value if isinstance(value, dict) else {}
        return dict(self.form)

    @property
    def slack_method(self) -> str:
        return self.path.removeprefix("/api/")


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering: a service that hangs


class RecordingServer:
    """A threaded local HTTP server that records each request and answers it with
    `_answer(record)`: the plumbing of every fake service in these tests."""

    content_type = "application/json; charset=utf-8"
    record_type: type[Recorded] = Recorded

    def __init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                record = owner.record_type(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                answer = owner._answer(record)
                if answer.delay:
                    time.sleep(answer.delay)
                try:
                    self.send_response(answer.status)
                    headers = {"Content-Type": owner.content_type, **answer.headers}
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting, as a timeout test wants

            do_GET = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    def _answer(self, record: Any) -> Answer:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class FakeSlack(RecordingServer):
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._scripted: list[Answer] = []
        self._lock = threading.Lock()
        self._ts = 0
        super().__init__()

    @property
    def api_url(self) -> str:
        return self.url + "/api/"

    # -- scripting ----------------------------------------------------------------------

    def answer_next(
        self,
        status: int,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests like this; a str body is sent as is."""
        if body is None:
            raw = b""
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raw = json.dumps(body).encode()
        with self._lock:
            self._scripted.extend(Answer(status, raw, dict(headers or {})) for _ in range(times))

    def rate_limit_next(self, retry_after: int = 1, *, times: int = 1) -> None:
        self.answer_next(
            429,
            {"ok": False, "error": "ratelimited"},
            headers={"Retry-After": str(retry_after)},
            times=times,
        )

    def _answer(self, record: Recorded) -> Answer:
        with self._lock:
            self.requests.append(record)
            if self._scripted:
                return self._scripted.pop(0)
            self._ts += 1
            ts = f"1700000000.{self._ts:06d}"
        if not record.path.startswith("/api/"):
            return Answer(200, b'{"received": true}')
        data = record.data
        channel = str(data.get("channel", ""))
        if channel.startswith("#"):
            channel = "C" + "".join(c for c in channel[1:].upper() if c.isalnum())
        if record.slack_method == "chat.update":
            ts = str(data.get("ts", ts))
        reply = {"ok": True, "channel": channel, "ts": ts, "message": {"text": data.get("text")}}
        return Answer(200, json.dumps(reply).encode())

    # -- reading ------------------------------------------------------------------------

    def slack_methods(self) -> list[str]:
        return [r.slack_method for r in self.requests]
