"""Sources as a user configures them, over HTTP to a real receiver process: triggers that
tell two sources of one format apart, HTTP Basic and URL-token senders, and what the
receiver's logs and metrics show of their credentials."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.receiver import body_of, free_port, wait_for

ROOT = Path(__file__).resolve().parents[4]

SECRETS = {
    "GD_PROD_TOKEN": "prod-token-0123456789",
    "GD_DEV_TOKEN": "dev-token-0123456789",
    "EB_PASSWORD": "eventbridge-password-0123",
    "SPLUNK_URL_TOKEN": "splunk-url-token-7Hq2xZ",
}

PLAYBOOK = """\
apiVersion: irbook/v1
kind: Playbook
metadata:
  id: {id}
  title: {id}
triggers:
  - {origin}
    match:
      type: "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.*"
steps:
  - id: note
    action: core.note
    with: {{text: "alert ${{{{ alert.id }}}}"}}
"""

CONFIG = """\
metrics: {public: true}
sources:
  guardduty-prod:
    format: guardduty
    auth: {scheme: api_key, token_env: GD_PROD_TOKEN}
  guardduty-dev:
    format: guardduty
    auth: {scheme: api_key, token_env: GD_DEV_TOKEN}
  eventbridge:
    format: guardduty
    auth: {scheme: basic, username: irbook, password_env: EB_PASSWORD}
  splunk-hook:
    format: guardduty
    auth: {scheme: url_token, token_env: SPLUNK_URL_TOKEN}
"""


def write_playbooks(root: Path, triggers: dict[str, str]) -> Path:
    books = root / "playbooks"
    books.mkdir(parents=True, exist_ok=True)
    for pid, origin in triggers.items():
        text = PLAYBOOK.format(id=pid, origin=origin)
        (books / f"{pid}.yaml").write_text(text, encoding="utf-8")
    return books


class Receiver:
    """tests.support.receiver_launcher in a process of its own, uvicorn's access log on."""

    def __init__(
        self,
        root: Path,
        triggers: dict[str, str] | None = None,
        sources: str = CONFIG,
    ) -> None:
        books = write_playbooks(
            root,
            triggers
            or {"prod-only": "source: guardduty-prod", "any-guardduty": "format: guardduty"},
        )
        config = root / "receiver.yaml"
        config.write_text(f"playbooks: [{json.dumps(str(books))}]\n{sources}", encoding="utf-8")
        self.log = root / "server.log"
        self.port = free_port()
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.support.receiver_launcher",
                    str(config),
                    "--db",
                    str(root / "irbook.db"),
                    "--starts",
                    str(root / "starts.db"),
                    "--port",
                    str(self.port),
                    "--log-level",
                    "info",
                ],
                cwd=ROOT,
                env={**os.environ, **SECRETS},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.url = f"http://127.0.0.1:{self.port}"
        assert wait_for(self._healthy, timeout=30), "the receiver process did not come up"

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            output = self.log.read_text(errors="replace")
            raise AssertionError(f"receiver exited with {self.proc.returncode}: {output}")
        try:
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def post(self, path: str, alert_id: str, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(self.url + path, content=body_of(alert_id), headers=headers, timeout=30)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    running = Receiver(tmp_path_factory.mktemp("sources"))
    yield running
    running.stop()


def started(response: httpx.Response) -> set[str]:
    return {item["playbook_id"] for item in response.json().get("queued", [])}


def basic(user: str, password: str, word: str = "Basic") -> dict[str, str]:
    pair = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"{word} {pair}"}


# -- which source an alert came from --------------------------------------------------------


def test_a_trigger_on_a_source_name_starts_only_from_that_source(receiver: Receiver) -> None:
    prod = receiver.post("/hooks/guardduty-prod", "rt-1", {"X-API-Key": SECRETS["GD_PROD_TOKEN"]})
    assert prod.status_code == 202, prod.text
    assert started(prod) == {"prod-only", "any-guardduty"}
    dev = receiver.post("/hooks/guardduty-dev", "rt-2", {"X-API-Key": SECRETS["GD_DEV_TOKEN"]})
    assert dev.status_code == 202, dev.text
    assert started(dev) == {"any-guardduty"}  # same format, another source


def test_two_sources_of_one_format_start_their_own_playbooks(tmp_path: Path) -> None:
    """What the issue reported: `source: guardduty-prod` never matched (alerts carried the
    format name), and the post got 200 no-match."""
    two = CONFIG.split("  eventbridge:")[0]  # the two GuardDuty sources, header tokens
    running = Receiver(
        tmp_path, {"prod-book": "source: guardduty-prod", "dev-book": "source: guardduty-dev"}, two
    )
    try:
        prod = running.post(
            "/hooks/guardduty-prod", "two-1", {"X-API-Key": SECRETS["GD_PROD_TOKEN"]}
        )
        dev = running.post("/hooks/guardduty-dev", "two-2", {"X-API-Key": SECRETS["GD_DEV_TOKEN"]})
    finally:
        running.stop()
    assert prod.status_code == 202, prod.text
    assert started(prod) == {"prod-book"}
    assert dev.status_code == 202, dev.text
    assert started(dev) == {"dev-book"}


# -- HTTP Basic (an EventBridge API destination's Basic connection) ---------------------------


@pytest.mark.parametrize("word", ["Basic", "basic", "BASIC"])
def test_basic_credentials_are_accepted_whatever_the_scheme_word_case(
    receiver: Receiver, word: str
) -> None:
    headers = basic("irbook", SECRETS["EB_PASSWORD"], word)
    answer = receiver.post("/hooks/eventbridge", f"ba-{word}", headers)
    assert answer.status_code == 202, answer.text
    assert started(answer) == {"any-guardduty"}


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (basic("irbook", "wrong-password"), "bad-token"),
        (basic("someone", SECRETS["EB_PASSWORD"]), "bad-token"),
        ({}, "missing-token"),
        ({"Authorization": "Bearer " + SECRETS["EB_PASSWORD"]}, "malformed-header"),
        ({"Authorization": "Basic not-base64!"}, "malformed-header"),
    ],
    ids=["bad-password", "bad-user", "missing", "not-basic", "garbled"],
)
def test_bad_or_missing_basic_credentials_are_refused(
    receiver: Receiver, headers: dict[str, str], reason: str
) -> None:
    answer = receiver.post("/hooks/eventbridge", "ba-bad", headers)
    assert answer.status_code == 401
    assert answer.json()["reason"] == reason


# -- a token in the URL (Splunk's built-in webhook action) ----------------------------------


@pytest.mark.parametrize(
    ("query", "status"),
    [
        (f"?token={SECRETS['SPLUNK_URL_TOKEN']}", 202),
        ("?token=not-the-token", 401),
        ("", 401),
        ("?tok=" + SECRETS["SPLUNK_URL_TOKEN"], 401),
    ],
    ids=["good", "bad", "missing", "other-param"],
)
def test_a_url_token_authenticates_a_sender_that_sets_no_header(
    receiver: Receiver, query: str, status: int
) -> None:
    answer = receiver.post("/hooks/splunk-hook" + query, f"ut-{status}-{len(query)}", {})
    assert answer.status_code == status, answer.text


def test_no_credential_reaches_the_logs_or_the_metrics(tmp_path: Path) -> None:
    """uvicorn's access log prints each request's path and query; the token must not be
    in it, nor anywhere else in the server's output or its metrics."""
    running = Receiver(tmp_path)
    try:
        token, password = SECRETS["SPLUNK_URL_TOKEN"], SECRETS["EB_PASSWORD"]
        assert running.post(f"/hooks/splunk-hook?token={token}", "leak-1", {}).status_code == 202
        assert running.post("/hooks/splunk-hook?token=wrong", "leak-2", {}).status_code == 401
        answer = running.post("/hooks/eventbridge", "leak-3", basic("irbook", password))
        assert answer.status_code == 202
        # Mistyped URLs a sender may be configured with: still no token in the log.
        slash = running.post(f"/hooks/splunk-hook/?token={token}", "leak-4", {})
        assert slash.status_code == 307  # Starlette's redirect, without the query
        assert token not in slash.headers["location"]
        assert httpx.get(f"{running.url}/hooks/splunk-hook?token={token}").status_code == 405
        metrics = httpx.get(running.url + "/metrics", timeout=10).text
    finally:
        output = running.stop()
    assert "/hooks/splunk-hook" in output  # the access log is on: the grep means something
    assert 'irbook_webhook_received_total{source="splunk-hook"} 2' in metrics
    for secret in (token, password, base64.b64encode(f"irbook:{password}".encode()).decode()):
        assert secret not in output
        assert secret not in metrics
    assert "wrong" not in output


# -- start-up -------------------------------------------------------------------------------


def irbook_serve(root: Path, config: str, **env: str) -> subprocess.CompletedProcess[str]:
    path = root / "receiver.yaml"
    path.write_text(config, encoding="utf-8")
    home = root / "home"
    port = str(free_port())
    return subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", "serve", "--port", port, "--config", str(path)],
        cwd=root,
        env={**{k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}, **env}
        | {"IRBOOK_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture
def no_prefect(tmp_path: Path) -> Iterator[Path]:
    """The test's folder; whatever Prefect server a broken `irbook serve` started is
    stopped afterwards (the server outlives the command by design)."""
    yield tmp_path
    state = tmp_path / "home" / "prefect" / "server.json"
    if state.exists():
        pid = int(json.loads(state.read_text())["pid"])
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGTERM)


def assert_refused_before_prefect(done: subprocess.CompletedProcess[str], root: Path) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert not (root / "home" / "prefect").exists(), "a Prefect server was started"
    return lines[0]


def test_serve_refuses_a_trigger_no_configured_source_can_produce(no_prefect: Path) -> None:
    books = write_playbooks(no_prefect, {"prod-only": "source: guardduty-prod"})
    config = f"playbooks: [{json.dumps(str(books))}]\n" + textwrap.dedent(
        """\
        sources:
          guardduty-dev:
            format: guardduty
            auth: {scheme: api_key, token_env: GD_DEV_TOKEN}
        """
    )
    done = irbook_serve(no_prefect, config, **SECRETS)
    line = assert_refused_before_prefect(done, no_prefect)
    assert "prod-only.yaml:7:5: error: playbook prod-only triggers[0]" in line  # the trigger
    assert "guardduty-prod" in line  # what the trigger wants
    assert "guardduty-dev" in line  # what is configured


def test_serve_refuses_a_trigger_on_a_format_no_source_has(no_prefect: Path) -> None:
    books = write_playbooks(no_prefect, {"splunk-book": "format: splunk"})
    config = f"playbooks: [{json.dumps(str(books))}]\n" + textwrap.dedent(
        """\
        sources:
          guardduty-dev:
            format: guardduty
            auth: {scheme: api_key, token_env: GD_DEV_TOKEN}
        """
    )
    line = assert_refused_before_prefect(irbook_serve(no_prefect, config, **SECRETS), no_prefect)
    assert "format splunk" in line
    assert "guardduty-dev (format guardduty)" in line


def test_serve_reports_a_config_typo_at_once_without_starting_prefect(no_prefect: Path) -> None:
    config = textwrap.dedent(
        """\
        sources:
          guardduty-prod:
            format: guardduty
            auth: {scheme: api_key, token_evn: GD_PROD_TOKEN}
        """
    )
    line = assert_refused_before_prefect(irbook_serve(no_prefect, config, **SECRETS), no_prefect)
    assert "receiver.yaml:4:" in line
    assert "token_evn" in line
