"""Shared pieces of the receiver tests: playbook and config fixtures, payloads, HTTP."""

from __future__ import annotations

import copy
import json
import socket
import sqlite3
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

from irbook.triggers.dispatch import Dispatcher, StartRequest
from irbook.triggers.queue import AlertQueue

PAYLOADS = Path(__file__).resolve().parents[1] / "corpus" / "payloads"

PLAYBOOK = textwrap.dedent(
    """\
    apiVersion: irbook/v1
    kind: Playbook
    metadata:
      id: cred-exfil
      title: Instance credentials used outside AWS
    triggers:
      - source: guardduty
        match:
          type: "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.*"
          severity: {gte: 7}
    steps:
      - id: note
        action: core.note
        with: {text: "alert ${{ alert.id }}"}
      - id: confirm
        action: core.approval
        needs: [note]
        with: {prompt: "Contain the key?"}
    """
)

SECRETS = {
    "GD_TOKEN": "gd-token-0123456789",
    "GH_SECRET": "github-secret",
    "SW_SECRET": "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "PD_SECRET": "pagerduty-secret",
    "SLACK_SECRET": "slack-signing-secret",
    "BEARER_TOKEN": "bearer-token-abcdef",
}


def config_yaml(mode: str = "live") -> str:
    fast = "rate: {per_second: 10000, burst: 10000}"
    return textwrap.dedent(
        f"""\
        metrics: {{public: true}}
        sources:
          gd:
            format: guardduty
            auth: {{scheme: api_key, token_env: GD_TOKEN, header: X-Irbook-Token}}
            mode: {mode}
            {fast}
          gh:
            format: guardduty
            auth: {{scheme: hmac_sha256, secret_env: GH_SECRET}}
            mode: {mode}
            {fast}
          sw:
            format: guardduty
            auth: {{scheme: standard_webhooks, secret_env: SW_SECRET}}
            mode: {mode}
            {fast}
          pd:
            format: guardduty
            auth: {{scheme: pagerduty_v3, secret_env: PD_SECRET}}
            mode: {mode}
            {fast}
          sl:
            format: guardduty
            auth: {{scheme: slack, secret_env: SLACK_SECRET}}
            mode: {mode}
            {fast}
          br:
            format: guardduty
            auth: {{scheme: bearer, token_env: BEARER_TOKEN, delivery_header: X-Delivery}}
            mode: {mode}
            {fast}
          slow:
            format: guardduty
            auth: {{scheme: api_key, token_env: GD_TOKEN}}
            rate: {{per_second: 0.01, burst: 2}}
          small:
            format: guardduty
            auth: {{scheme: api_key, token_env: GD_TOKEN}}
            max_body: 4096
            {fast}
        """
    )


def write_fixture(root: Path, mode: str = "live") -> tuple[Path, Path]:
    """A playbook folder and a config file under root; returns (config, playbooks)."""
    books = root / "playbooks"
    books.mkdir(parents=True, exist_ok=True)
    (books / "cred-exfil.yaml").write_text(PLAYBOOK, encoding="utf-8")
    text = f"playbooks: [{json.dumps(str(books))}]\n" + config_yaml(mode)
    config = root / "receiver.yaml"
    config.write_text(text, encoding="utf-8")
    return config, books


def payload(name: str = "guardduty_credential_exfiltration", **detail: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text(encoding="utf-8"))
    data = copy.deepcopy(data)
    data["detail"].update(detail)
    return data


def body_of(finding_id: str, name: str = "guardduty_credential_exfiltration") -> bytes:
    return json.dumps(payload(name, id=finding_id)).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RecordingStarter:
    """A StartRun that keeps every request, and refuses a run id twice like RunStore."""

    def __init__(self) -> None:
        self.calls: list[StartRequest] = []
        self._lock = threading.Lock()

    def __call__(self, request: StartRequest) -> str:
        with self._lock:
            if any(c.run_id == request.run_id for c in self.calls):
                raise sqlite3.IntegrityError("UNIQUE constraint failed: runs.id")
            self.calls.append(request)
        return "flow-" + request.run_id

    def for_alert(self, alert_id: str) -> list[StartRequest]:
        with self._lock:
            return [c for c in self.calls if c.alert.id == alert_id]


def wait_for(predicate: Any, timeout: float = 20.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def drain(queue: AlertQueue, starter: Any, **options: Any) -> None:
    """Run a dispatcher on `queue` until no alert waits, then stop it; the test fails if
    the queue does not empty."""
    dispatcher = Dispatcher(queue, starter, **options)
    dispatcher.start()
    try:
        assert wait_for(lambda: queue.depth() == 0)
    finally:
        dispatcher.stop()
