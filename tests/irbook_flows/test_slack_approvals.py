"""Slack approval buttons end to end: a live run posts Approve/Reject to (fake) Slack and
pauses; a signed button press over real HTTP to `/slack/interactions` resumes it; forged,
stale, replayed and unauthorized presses are refused; only signed ones are recorded."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from irbook_actions.clients import LiveClients
from tests.support.fakeslack import FakeSlack

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
APPROVER, STRANGER = "U0APPROVER", "U0STRANGER"
FAILED_AUTH = {"per_second": 0.01, "burst": 10}  # unsigned posts per address: 10, then 429


class SlackClients(LiveClients):
    """The live client factory with its Slack at the fake server; nothing else is reachable."""

    def __init__(self, base_url: str) -> None:
        super().__init__(slack_token="xoxb-test", slack_base_url=base_url)

    def aws(self, service: str, *, region: str | None = None) -> Any:
        raise AssertionError("no AWS in this test")

    def jira(self) -> Any:
        raise AssertionError("no Jira in this test")


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    server = FakeSlack()
    yield server
    server.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def receiver(fake_slack: FakeSlack, tmp_path: Path) -> Iterator[str]:
    """`irbook serve`'s app under uvicorn in a thread, Slack approvals configured."""
    import uvicorn

    from irbook.runs import RunStore
    from irbook.triggers.app import create_app
    from irbook.triggers.auth import build_verifier
    from irbook.triggers.config import parse_config
    from irbook.triggers.limits import RateLimiter, ReplayGuard
    from irbook.triggers.slack import SlackApprovals, SlackInteractions
    from irbook_flows.engine import Decision
    from irbook_flows.flow import resume

    clients = SlackClients(fake_slack.api_url)
    guard = ReplayGuard(str(tmp_path / "replay.db"))
    interactions = SlackInteractions(
        verifier=build_verifier({"scheme": "slack", "secret": SECRET}),
        approvals=SlackApprovals(users=frozenset({APPROVER})),
        store=RunStore(),
        decide=lambda fr, ok, who, comment, ticket: resume(
            fr, Decision(ok, who, comment, ticket=ticket), wait_paused=10
        ),
        answer_wait=30,  # the run's own answer, not "submitted"
        seen_before=lambda delivery, now: guard.seen_before("slack", delivery, now),
        update_message=lambda ch, ts, text: clients.slack().chat_update(
            channel=ch, ts=ts, text=text, blocks=[]
        ),
        limiter=RateLimiter(0.01, 10),  # signed presses: 10, then 429
    )
    # A receiver with Slack approvals only: its settings without any source.
    settings = parse_config({"metrics": {"public": True}, "failed_auth": FAILED_AUTH})
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
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def press(
    url: str,
    run_id: str,
    step: str,
    *,
    user: str = APPROVER,
    action: str = "irbook_approve",
    secret: str = SECRET,
    timestamp: int | None = None,
    raw: bytes | None = None,
) -> tuple[int, dict[str, Any], bytes, dict[str, str]]:
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower()},
        "actions": [{"action_id": action, "value": json.dumps({"run_id": run_id, "step": step})}],
    }
    body = raw if raw is not None else urlencode({"payload": json.dumps(payload)}).encode()
    ts = str(timestamp if timestamp is not None else int(time.time()))
    signature = (
        "v0=" + hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    )
    headers = {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }
    return (*send(url, body, headers), body, headers)


def send(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"{url}/slack/interactions", data=body, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def start_gated_run(
    tmp_path: Path, fake_slack: FakeSlack
) -> tuple[Any, threading.Thread, dict[str, Any]]:
    from irbook.loader import load_playbook
    from irbook.plan import manual_alert
    from irbook.registry import REGISTRY
    from irbook.runs import RunStore
    from irbook_flows.engine import RunSpec
    from irbook_flows.flow import execute, quiet_console

    quiet_console()
    REGISTRY.load_namespace("slack")
    path = tmp_path / "gated.yaml"
    path.write_text(
        "apiVersion: irbook/v1\nkind: Playbook\nmetadata: {id: gated, title: Gated}\nsteps:\n"
        + textwrap.indent(
            textwrap.dedent(
                """\
                - id: revoke
                  action: core.approval
                  approval: {timeout: 2m}
                  with: {prompt: "revoke the key?"}
                - {id: after, action: core.note, needs: [revoke], with: {text: done}}
                """
            ),
            "  ",
        )
    )
    book = load_playbook(str(path)).playbook
    store = RunStore()
    run_id = store.create_run(
        playbook_id="gated",
        playbook_title="Gated",
        mode="live",
        started_by="test",
        inputs={},
        rollback="manual",
    )
    spec = RunSpec(
        run_id=run_id,
        playbook=book,
        alert=manual_alert(),
        inputs={},
        dry_run=False,
        started_by="test",
        store=store,
        clients=SlackClients(fake_slack.api_url),
        slack_channel="#ir-approvals",
    )
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(outcome=execute(spec)), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = [s for s in store.steps(run_id) if s["state"] == "awaiting-approval"]
        flow_run = (store.run(run_id) or {}).get("flow_run_id")
        if rows and flow_run:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the run never waited for approval")
    return (store, run_id), thread, result


def test_a_signed_button_press_resumes_the_run(
    tmp_path: Path, fake_slack: FakeSlack, receiver: str
) -> None:
    (store, run_id), thread, result = start_gated_run(tmp_path, fake_slack)
    assert "chat.postMessage" in fake_slack.slack_methods()  # the buttons were posted
    posted = fake_slack.requests[0].data
    assert "revoke" in json.dumps(posted)

    # refusals first: each is recorded, none resumes the run
    status, body, raw, headers = press(receiver, run_id, "revoke", secret="wrong-secret")
    assert (status, body) == (401, {"error": "bad-signature"})
    status, body, *_ = press(receiver, run_id, "revoke", timestamp=int(time.time()) - 600)
    assert status == 401 and body["error"] == "stale-timestamp"
    status, body, *_ = press(receiver, run_id, "revoke", user=STRANGER)
    assert status == 403
    status, body, *_ = press(receiver, "nosuchrun", "revoke")
    assert status == 404
    assert store.run(run_id)["state"] == "running"

    status, body, raw, headers = press(receiver, run_id, "revoke")
    assert (status, body) == (200, {"ok": True, "approved": True, "status": "approved"})
    assert send(receiver, raw, headers)[0] == 401  # the very same request again: a replay

    thread.join(timeout=60)
    outcome = result["outcome"]
    assert outcome.state == "succeeded", outcome.message
    steps = {s["step_id"]: s for s in store.steps(run_id)}
    assert steps["revoke"]["approval"]["by"] == f"slack:{APPROVER}"
    assert steps["after"]["state"] == "succeeded"
    kinds = [e["kind"] for e in store.events(run_id)]
    assert "approval-refused" in kinds and "approval-via-slack" in kinds  # signed ones
    assert store.events("receiver") == []  # unsigned, stale and replayed: no rows
    text = metrics(receiver)
    for reason in ("bad-signature", "stale-timestamp", "replayed"):
        assert f'irbook_slack_rejected_total{{reason="{reason}"}} 1' in text
    update = [r for r in fake_slack.requests if r.slack_method == "chat.update"]
    assert update and f"Approved by <@{APPROVER}>" in update[-1].data["text"]


def test_a_rejection_from_slack_stops_the_gated_step(
    tmp_path: Path, fake_slack: FakeSlack, receiver: str
) -> None:
    (store, run_id), thread, result = start_gated_run(tmp_path, fake_slack)
    status, body, *_ = press(receiver, run_id, "revoke", action="irbook_reject")
    assert (status, body) == (200, {"ok": True, "approved": False, "status": "rejected"})
    thread.join(timeout=60)
    assert result["outcome"].state == "rejected"
    steps = {s["step_id"]: s for s in store.steps(run_id)}
    assert steps["after"]["state"] == "skipped"
    # a late press after the decision is refused, not applied twice
    assert press(receiver, run_id, "revoke")[0] == 409


def metrics(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        return str(response.read().decode())


def record_size(store: Any) -> tuple[int, int]:
    """Rows in the run record's events and its audit chain."""
    import sqlite3

    with sqlite3.connect(store.path) as db:
        events = db.execute("SELECT count(*) FROM events").fetchone()[0]
        audit = db.execute("SELECT count(*) FROM audit").fetchone()[0]
    return int(events), int(audit)


def test_unsigned_posts_write_nothing_are_counted_and_a_flood_gets_429(receiver: str) -> None:
    """Before, each unsigned post appended a row to the run record and its audit chain,
    with no limit at all."""
    from irbook.runs import RunStore

    store = RunStore()
    before = record_size(store)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    statuses = []
    for i in range(100):
        headers = dict(form)
        if i % 2:
            headers["X-Slack-Request-Timestamp"] = str(int(time.time()))
            headers["X-Slack-Signature"] = "v0=" + "0" * 64
        statuses.append(send(receiver, f"payload=junk-{i}".encode(), headers)[0])
    assert set(statuses) == {401, 429}
    assert statuses[:10] == [401] * 10  # then the address's failure budget is spent
    assert record_size(store) == before
    text = metrics(receiver)
    counted = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("irbook_slack_rejected_total{")
    ]
    assert sum(counted) == 100
    assert f'irbook_slack_rejected_total{{reason="auth-throttled"}} {statuses.count(429)}' in text
    assert "irbook_slack_requests_total 100" in text
    # a signed press still gets through after the flood, and signed presses have a budget
    signed = [press(receiver, f"no-run-{i}", "step")[0] for i in range(15)]
    assert signed[:10] == [404] * 10
    assert set(signed[10:]) == {429}
    assert record_size(store) == before
    text = metrics(receiver)
    assert 'irbook_slack_rejected_total{reason="unknown-run"} 10' in text
    assert 'irbook_slack_rejected_total{reason="rate-limited"} 5' in text


def test_malformed_and_oversized_bodies(receiver: str) -> None:
    status, _body, *_ = press(receiver, "r", "s", raw=b"payload=%7Bnot-json")
    assert status == 400
    # a declared size over 1 MiB is refused before a byte of the body is read
    import http.client

    host, port = receiver.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", "/slack/interactions")
    conn.putheader("Content-Length", str(1024 * 1024 + 1))
    conn.putheader("Content-Type", "application/x-www-form-urlencoded")
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413
    conn.close()


def test_one_thread_per_run_and_the_card_follows_the_steps(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    from irbook.loader import load_playbook
    from irbook.plan import manual_alert
    from irbook.registry import REGISTRY
    from irbook.runs import RunStore
    from irbook_flows.engine import RunSpec
    from irbook_flows.flow import execute, quiet_console

    quiet_console()
    REGISTRY.load_namespace("slack")
    path = tmp_path / "notify.yaml"
    path.write_text(
        "apiVersion: irbook/v1\nkind: Playbook\nmetadata: {id: chatty, title: Chatty}\nsteps:\n"
        "  - {id: card, action: slack.post_message, with: {channel: '#ir', text: Incident}}\n"
        "  - {id: work, action: core.note, needs: [card], with: {text: working}}\n"
        "  - {id: update, action: slack.post_message, needs: [work],"
        " with: {channel: '#ir', text: 'Key revoked'}}\n"
    )
    store = RunStore()
    run_id = store.create_run(
        playbook_id="chatty",
        playbook_title="Chatty",
        mode="live",
        started_by="test",
        inputs={},
        rollback="manual",
    )
    spec = RunSpec(
        run_id=run_id,
        playbook=load_playbook(str(path)).playbook,
        alert=manual_alert(),
        inputs={},
        dry_run=False,
        started_by="test",
        store=store,
        clients=SlackClients(fake_slack.api_url),
    )
    assert execute(spec).state == "succeeded"
    posts = [r.data for r in fake_slack.requests if r.slack_method == "chat.postMessage"]
    updates = [r.data for r in fake_slack.requests if r.slack_method == "chat.update"]
    first_ts = next(s["outputs"]["ts"] for s in store.steps(run_id) if s["step_id"] == "card")
    assert len(posts) == 2
    assert "thread_ts" not in posts[0]
    assert posts[1]["thread_ts"] == first_ts  # the later message went into the thread
    assert updates and all(u["ts"] == first_ts for u in updates)
    assert "✓ work: succeeded" in updates[-1]["text"]
    assert "✓ update: succeeded" in updates[-1]["text"]
