"""The receiver under hostile load, over real HTTP: junk beside a signed sender, alert
storms over the rate limit, a trickled body, and who may read `/metrics`."""

from __future__ import annotations

import json
import socket
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from irbook.triggers.app import WebhookReceiver, create_app
from irbook.triggers.config import ConfigError, load_config
from tests.support import signing
from tests.support.receiver import (
    PLAYBOOK,
    SECRETS,
    RecordingStarter,
    body_of,
    free_port,
    payload,
)

ENV = {**SECRETS, "METRICS_TOKEN": "metrics-token-0123456789"}


def write_config(root: Path, text: str) -> Path:
    books = root / "playbooks"
    books.mkdir(parents=True, exist_ok=True)
    (books / "cred-exfil.yaml").write_text(PLAYBOOK, encoding="utf-8")
    config = root / "receiver.yaml"
    config.write_text(
        f"playbooks: [{json.dumps(str(books))}]\n" + textwrap.dedent(text), encoding="utf-8"
    )
    return config


@contextmanager
def serving(root: Path, text: str) -> Iterator[tuple[httpx.Client, WebhookReceiver, int]]:
    """`irbook serve`'s app with this configuration under uvicorn, on loopback."""
    import uvicorn

    loaded = load_config(str(write_config(root, text)), env=ENV)
    hooks = WebhookReceiver(
        loaded, RecordingStarter(), db_path=str(root / "irbook.db"), poll_interval=0.1
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(hooks=hooks), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the receiver did not start"
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client, hooks, port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def fresh_id() -> str:
    return "h-" + uuid.uuid4().hex


# -- junk does not lock out a signed sender ------------------------------------------


def test_a_junk_flood_beside_a_signed_sender_costs_the_sender_nothing(tmp_path: Path) -> None:
    """400 unsigned or wrongly signed posts interleaved with 20 signed ones: before, the
    junk spent the source's rate (burst 20) and the signed posts were answered 429."""
    config = """\
        failed_auth: {per_second: 1, burst: 10}
        sources:
          gh:
            format: guardduty
            auth: {scheme: hmac_sha256, secret_env: GH_SECRET}
            mode: live
            rate: {per_second: 0.01, burst: 20}
        """
    with serving(tmp_path, config) as (client, hooks, _port):
        junk_statuses: list[int] = []
        signed_statuses: list[int] = []
        for round_ in range(20):
            for i in range(20):
                junk = body_of(fresh_id())
                headers = {} if i % 2 else {"X-Hub-Signature-256": "sha256=" + "0" * 64}
                junk_statuses.append(
                    client.post("/hooks/gh", content=junk, headers=headers).status_code
                )
            body = body_of(f"signed-{round_}-{fresh_id()}")
            signed = {"X-Hub-Signature-256": signing.github(SECRETS["GH_SECRET"], body)}
            signed_statuses.append(
                client.post("/hooks/gh", content=body, headers=signed).status_code
            )
        assert signed_statuses == [202] * 20
        assert set(junk_statuses) == {401, 429}  # past its failure budget, junk gets 429
        assert (
            hooks.metrics.get("irbook_webhook_rejected_total", source="gh", reason="rate-limited")
            == 0
        )
        throttled = hooks.metrics.get("irbook_webhook_auth_throttled_total", source="gh")
        assert throttled == junk_statuses.count(429)
        assert len(hooks.queue.rows(source="gh")) == 20  # no junk stored


# -- storms: duplicates of stored alerts do not spend the rate -----------------------


def test_duplicates_of_a_stored_alert_are_taken_over_the_rate_limit(tmp_path: Path) -> None:
    config = """\
        sources:
          gd:
            format: guardduty
            auth: {scheme: api_key, token_env: GD_TOKEN, header: X-Irbook-Token}
            mode: live
            rate: {per_second: 0.01, burst: 2}
        """
    token = {"X-Irbook-Token": SECRETS["GD_TOKEN"]}
    with serving(tmp_path, config) as (client, hooks, _port):

        def post(body: bytes) -> httpx.Response:
            return client.post("/hooks/gd", content=body, headers=token)

        first, second, third = fresh_id(), fresh_id(), fresh_id()
        assert post(body_of(first)).status_code == 202  # spends 1 of 2
        # duplicates within the budget give their token back
        for _ in range(5):
            answer = post(body_of(first))
            assert answer.status_code == 202
            assert answer.json()["queued"][0]["status"] == "deduplicated"
        assert post(body_of(second)).status_code == 202  # the last token
        limited = post(body_of(third))
        assert limited.status_code == 429  # a new alert over the rate is still refused
        assert int(limited.headers["Retry-After"]) >= 1
        # over the rate: duplicates of stored alerts, the same body or a changed one
        changed = json.dumps(payload(id=first, title="updated finding")).encode()
        for body in [body_of(first)] * 5 + [changed, body_of(second)]:
            answer = post(body)
            assert answer.status_code == 202, answer.text
            assert answer.json()["queued"][0]["status"] == "deduplicated"
        (row,) = hooks.queue.rows(alert_id=first)
        assert row["count"] == 12
        assert hooks.queue.rows(alert_id=third) == []
        assert hooks.metrics.get("irbook_webhook_duplicates_over_rate_total", source="gd") == 7
        # and a new alert is still refused while the storm goes on
        assert post(body_of(third)).status_code == 429


# -- a trickled body -----------------------------------------------------------------


def test_a_body_trickled_past_the_timeout_is_answered_408(tmp_path: Path) -> None:
    config = """\
        body_timeout: 500ms
        sources:
          gd:
            format: guardduty
            auth: {scheme: api_key, token_env: GD_TOKEN, header: X-Irbook-Token}
        """
    with serving(tmp_path, config) as (client, hooks, port):
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(
                b"POST /hooks/gd HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                b"X-Irbook-Token: " + SECRETS["GD_TOKEN"].encode() + b"\r\n\r\n{"
            )
            sock.settimeout(0.1)
            reply = b""
            for _ in range(300):  # a byte each time nothing came back: never the whole body
                try:
                    chunk = sock.recv(4096)
                except TimeoutError:
                    sock.sendall(b" ")
                    continue
                reply += chunk
                if not chunk or b"\r\n\r\n" in reply:
                    break
        assert reply.startswith(b"HTTP/1.1 408"), reply[:100]
        assert b"connection: close" in reply.lower()
        reason = {"source": "gd", "reason": "body-timeout"}
        assert hooks.metrics.get("irbook_webhook_rejected_total", **reason) == 1
        # the receiver still answers everyone else
        token = {"X-Irbook-Token": SECRETS["GD_TOKEN"]}
        assert (
            client.post("/hooks/gd", content=body_of(fresh_id()), headers=token).status_code == 202
        )


def test_a_stalled_slack_interaction_is_answered_408(tmp_path: Path) -> None:
    """`/slack/interactions` reads its body under the same deadline."""
    import uvicorn

    from irbook.runs import RunStore
    from irbook.triggers.auth import build_verifier
    from irbook.triggers.config import parse_config
    from irbook.triggers.slack import SlackApprovals, SlackInteractions

    def decide(flow_run_id: str, approved: bool, approver: str, comment: str) -> None:
        raise AssertionError("nothing is decided here")

    interactions = SlackInteractions(
        verifier=build_verifier({"scheme": "slack", "secret": "slack-secret"}),
        approvals=SlackApprovals(),
        store=RunStore(str(tmp_path / "runs.db")),
        decide=decide,
        seen_before=lambda delivery, now: False,
    )
    settings = parse_config({"body_timeout": "500ms", "metrics": {"public": True}})
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(slack=interactions, config=settings),
            host="127.0.0.1",
            port=port,
            log_level="error",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(
                b"POST /slack/interactions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n\r\npayload="
            )
            reply = sock.recv(4096)  # nothing more is sent: the answer must still come
        assert reply.startswith(b"HTTP/1.1 408"), reply[:100]
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
        assert 'irbook_slack_rejected_total{reason="body-timeout"} 1' in text
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# -- who may read /metrics -----------------------------------------------------------

SOURCE = textwrap.dedent(
    """\
    sources:
      secret-siem-name:
        format: guardduty
        auth: {scheme: api_key, token_env: GD_TOKEN}
    """
)


def test_metrics_are_off_unless_configured(tmp_path: Path) -> None:
    with serving(tmp_path, SOURCE) as (client, _hooks, _port):
        response = client.get("/metrics")
        assert response.status_code == 404
        assert "secret-siem-name" not in response.text


def test_metrics_behind_a_token(tmp_path: Path) -> None:
    with serving(tmp_path, "metrics: {token_env: METRICS_TOKEN}\n" + SOURCE) as (
        client,
        _hooks,
        _port,
    ):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "metrics-token"}):
            response = client.get("/metrics", headers=headers)
            assert response.status_code == 401
            assert "secret-siem-name" not in response.text
        good = {"Authorization": f"Bearer {ENV['METRICS_TOKEN']}"}
        response = client.get("/metrics", headers=good)
        assert response.status_code == 200
        assert "irbook_webhook_queue_depth" in response.text


def test_metrics_public_when_said_so(tmp_path: Path) -> None:
    with serving(tmp_path, "metrics: {public: true}\n" + SOURCE) as (client, _hooks, _port):
        client.post("/hooks/secret-siem-name", content=b"{}")
        response = client.get("/metrics")
        assert response.status_code == 200
        assert 'source="secret-siem-name"' in response.text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("metrics: {}\n", "metrics: give either token_env or public: true"),
        ("metrics: {token_env: NOT_SET_ANYWHERE}\n", "environment variable NOT_SET_ANYWHERE"),
        ("metrics: {token_env: M, public: true}\n", "give either token_env or public"),
        ("body_timeout: 0\n", "body_timeout"),
        ("failed_auth: {per_second: 0, burst: 1}\n", "failed_auth.per_second"),
    ],
)
def test_receiver_wide_settings_are_checked(tmp_path: Path, text: str, message: str) -> None:
    path = write_config(tmp_path, text + SOURCE)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), env=ENV)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
