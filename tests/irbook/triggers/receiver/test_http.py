"""`POST /hooks/{source}` over real HTTP: auth, limits, parsing, matching, dedup, metrics."""

from __future__ import annotations

import json
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.irbook.triggers.receiver.conftest import Running
from tests.support import signing
from tests.support.receiver import SECRETS, body_of, payload, wait_for

TOKEN = {"X-Irbook-Token": SECRETS["GD_TOKEN"], "Content-Type": "application/json"}


def fresh_id() -> str:
    return "f-" + uuid.uuid4().hex


def post(r: Running, source: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return r.client.post(f"/hooks/{source}", content=body, headers=headers)


def started_once(r: Running, alert_id: str) -> bool:
    return len(r.starter.for_alert(alert_id)) == 1


# -- the happy path -------------------------------------------------------------------


def test_credential_exfiltration_is_queued_and_started_once(receiver: Running) -> None:
    alert_id = fresh_id()
    response = post(receiver, "gd", body_of(alert_id), TOKEN)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["status"] == "accepted"
    (queued,) = answer["queued"]
    assert queued["playbook_id"] == "cred-exfil"
    assert queued["status"] == "queued"
    assert queued["mode"] == "live"
    assert wait_for(lambda: started_once(receiver, alert_id))
    (call,) = receiver.starter.for_alert(alert_id)
    assert call.run_id == queued["run_id"]
    assert call.mode == "live"
    assert call.source == "gd"
    assert call.playbook_path.endswith("cred-exfil.yaml")
    assert call.alert.actor.access_key_id == "ASIAIOSFODNN7EXAMPLE"
    (row,) = receiver.hooks.queue.rows(run_id=queued["run_id"])
    assert wait_for(
        lambda: receiver.hooks.queue.rows(run_id=queued["run_id"])[0]["status"] == "started"
    )
    assert row["alert_id"] == alert_id


def test_sample_finding_is_forced_to_dry_run(receiver: Running) -> None:
    alert_id = fresh_id()
    data = payload(id=alert_id)
    data["detail"]["service"]["additionalInfo"] = {"sample": True}
    response = post(receiver, "gd", json.dumps(data).encode(), TOKEN)
    assert response.status_code == 202, response.text
    assert response.json()["queued"][0]["mode"] == "dry-run"
    assert wait_for(lambda: started_once(receiver, alert_id))
    assert receiver.starter.for_alert(alert_id)[0].mode == "dry-run"


def test_alert_no_playbook_matches_starts_nothing(receiver: Running) -> None:
    alert_id = fresh_id()
    body = json.dumps(payload("guardduty_sample", id=alert_id)).encode()
    response = post(receiver, "gd", body, TOKEN)
    assert response.status_code == 200
    assert response.json()["status"] == "no-match"
    assert receiver.hooks.queue.rows(alert_id=alert_id) == []


# -- authentication, through HTTP -----------------------------------------------------


def test_api_key_good_and_bad(receiver: Running) -> None:
    body = body_of(fresh_id())
    assert post(receiver, "gd", body, TOKEN).status_code == 202
    bad = post(receiver, "gd", body, {"X-Irbook-Token": "wrong-token-value"})
    assert bad.status_code == 401
    assert bad.json()["reason"] == "bad-token"
    assert post(receiver, "gd", body, {}).json()["reason"] == "missing-token"


def test_hmac_good_bad_and_replayed(receiver: Running) -> None:
    alert_id = fresh_id()
    body = body_of(alert_id)
    headers = {"X-Hub-Signature-256": signing.github(SECRETS["GH_SECRET"], body)}
    first = post(receiver, "gh", body, headers)
    assert first.status_code == 202, first.text
    replay = post(receiver, "gh", body, headers)
    assert replay.status_code == 200
    assert replay.json() == {"status": "duplicate"}
    forged = post(receiver, "gh", body + b" ", headers)
    assert forged.status_code == 401
    assert forged.json()["reason"] == "bad-signature"
    # The replay attached to nothing: one row, count 1, one start.
    (row,) = receiver.hooks.queue.rows(alert_id=alert_id)
    assert row["count"] == 1
    assert wait_for(lambda: started_once(receiver, alert_id))


def standard_headers(
    body: bytes, msg_id: str, ts: int, secret: str = SECRETS["SW_SECRET"]
) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signing.standard(secret, msg_id, str(ts), body),
    }


def test_standard_webhooks_good_stale_and_replayed(receiver: Running) -> None:
    body = body_of(fresh_id())
    msg_id = "msg_" + uuid.uuid4().hex
    now = int(time.time())
    assert post(receiver, "sw", body, standard_headers(body, msg_id, now)).status_code == 202
    replay = post(receiver, "sw", body, standard_headers(body, msg_id, now))
    assert (replay.status_code, replay.json()["status"]) == (200, "duplicate")
    stale = post(
        receiver, "sw", body, standard_headers(body, "msg_x" + uuid.uuid4().hex, now - 3600)
    )
    assert stale.status_code == 401
    assert stale.json()["reason"] == "stale-timestamp"
    wrong = standard_headers(body, "msg_y", now, secret=signing.new_whsec(b"other"))
    assert post(receiver, "sw", body, wrong).json()["reason"] == "bad-signature"


def test_pagerduty_good_and_bad(receiver: Running) -> None:
    body = body_of(fresh_id())
    good = {"X-PagerDuty-Signature": signing.pagerduty([SECRETS["PD_SECRET"]], body)}
    assert post(receiver, "pd", body, good).status_code == 202
    bad = {"X-PagerDuty-Signature": signing.pagerduty(["not-the-secret"], body)}
    assert post(receiver, "pd", body, bad).status_code == 401


def test_slack_good_and_stale(receiver: Running) -> None:
    body = body_of(fresh_id())
    now = str(int(time.time()))
    good = {
        "X-Slack-Request-Timestamp": now,
        "X-Slack-Signature": signing.slack(SECRETS["SLACK_SECRET"], now, body),
    }
    assert post(receiver, "sl", body, good).status_code == 202
    old = str(int(time.time()) - 3600)
    stale = {
        "X-Slack-Request-Timestamp": old,
        "X-Slack-Signature": signing.slack(SECRETS["SLACK_SECRET"], old, body),
    }
    response = post(receiver, "sl", body, stale)
    assert (response.status_code, response.json()["reason"]) == (401, "stale-timestamp")


def test_bearer_good_bad_and_replayed_delivery(receiver: Running) -> None:
    body = body_of(fresh_id())
    headers = {"Authorization": f"Bearer {SECRETS['BEARER_TOKEN']}", "X-Delivery": "d-1"}
    assert post(receiver, "br", body, headers).status_code == 202
    assert post(receiver, "br", body, headers).json() == {"status": "duplicate"}
    bad = post(receiver, "br", body, {"Authorization": "Bearer nope-nope"})
    assert bad.status_code == 401


def test_refused_post_is_not_remembered_as_seen(receiver: Running) -> None:
    """A delivery that failed (422) may be fixed and retried: it is not a replay."""
    msg_id = "msg_" + uuid.uuid4().hex
    now = int(time.time())
    broken = b'{"detail-type": "GuardDuty Finding", "detail": []}'
    response = post(receiver, "sw", broken, standard_headers(broken, msg_id, now))
    assert response.status_code == 422
    good = body_of(fresh_id())
    assert post(receiver, "sw", good, standard_headers(good, msg_id, now)).status_code == 202


# -- limits ---------------------------------------------------------------------------


def test_unknown_source_is_404(receiver: Running) -> None:
    assert post(receiver, "nope", b"{}", TOKEN).status_code == 404
    assert receiver.client.get("/hooks/gd").status_code == 405


def test_declared_size_over_limit_is_413_before_reading(receiver: Running) -> None:
    """Content-Length says 10 MB and no body follows: the answer must not wait for it."""
    port = int(receiver.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /hooks/small HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n"
            b"X-API-Key: " + SECRETS["GD_TOKEN"].encode() + b"\r\n\r\n"
        )
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413")


def test_actual_size_over_limit_is_413(receiver: Running) -> None:
    def chunks() -> Any:
        for _ in range(10):
            yield b"x" * 1024

    headers = {"X-API-Key": SECRETS["GD_TOKEN"]}
    response = receiver.client.post("/hooks/small", content=chunks(), headers=headers)
    assert response.status_code == 413
    assert post(receiver, "small", b"y" * 5000, headers).status_code == 413
    assert post(receiver, "small", body_of(fresh_id()), headers).status_code == 202


def test_rate_limit_answers_429_with_retry_after(receiver: Running) -> None:
    headers = {"X-API-Key": SECRETS["GD_TOKEN"]}
    statuses = [post(receiver, "slow", body_of(fresh_id()), headers) for _ in range(4)]
    assert [r.status_code for r in statuses[:2]] == [202, 202]
    limited = statuses[2]
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1


def test_non_json_is_400_and_wrong_type_415(receiver: Running) -> None:
    response = post(receiver, "gd", b"not json {", TOKEN)
    assert response.status_code == 400
    assert post(receiver, "gd", b"NaN", TOKEN).status_code == 400
    xml = {**TOKEN, "Content-Type": "application/xml"}
    assert post(receiver, "gd", b"<a/>", xml).status_code == 415


def test_format_error_is_422_with_path_and_dead_letter(receiver: Running) -> None:
    data = payload(id=fresh_id())
    data["detail"]["severity"] = {"high": True}
    body = json.dumps(data).encode()
    response = post(receiver, "gd", body, TOKEN)
    assert response.status_code == 422
    assert response.json()["path"] == "$.detail.severity"
    letters = receiver.hooks.queue.dead_letters("gd")
    assert any(
        letter["body"] == body and letter["path"] == "$.detail.severity" for letter in letters
    )


# -- dedup ----------------------------------------------------------------------------


def test_concurrent_identical_posts_start_one_run(receiver: Running) -> None:
    alert_id = fresh_id()
    body = body_of(alert_id)
    with ThreadPoolExecutor(32) as pool:
        responses = list(pool.map(lambda _: post(receiver, "gd", body, TOKEN), range(200)))
    assert {r.status_code for r in responses} == {202}
    run_ids = {r.json()["queued"][0]["run_id"] for r in responses}
    assert len(run_ids) == 1
    statuses = sorted(r.json()["queued"][0]["status"] for r in responses)
    assert statuses.count("queued") == 1
    (row,) = receiver.hooks.queue.rows(alert_id=alert_id)
    assert row["count"] == 200
    assert wait_for(lambda: receiver.hooks.queue.depth() == 0)
    assert len(receiver.starter.for_alert(alert_id)) == 1


# -- hostile input never 500s ---------------------------------------------------------


def test_hostile_payloads_are_refused_or_kept_as_data(receiver: Running) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    assert post(receiver, "gd", deep, TOKEN).status_code == 400
    deep_obj = b'{"a":' * 5_000 + b"1" + b"}" * 5_000
    assert post(receiver, "gd", deep_obj, TOKEN).status_code in (400, 422)
    assert post(receiver, "gd", b"9" * 100_000, TOKEN).status_code == 400
    huge = payload(id=fresh_id(), title="T" * 900_000)
    assert post(receiver, "gd", json.dumps(huge).encode(), TOKEN).status_code == 202
    wrong_types: list[Any] = [[], "text", 1, None, {"detail": "x"}, {"detail": {"id": {"a": 1}}}]
    for wrong in wrong_types:
        status = post(receiver, "gd", json.dumps(wrong).encode(), TOKEN).status_code
        assert status == 422, wrong
    template_id = "${{ secrets.aws_key }}{{7*7}}" + fresh_id()
    response = post(receiver, "gd", body_of(template_id), TOKEN)
    assert response.status_code == 202
    assert wait_for(lambda: started_once(receiver, template_id))
    assert receiver.starter.for_alert(template_id)[0].alert.id == template_id
    assert post(receiver, "gd", b"\xff\xfe\x00garbage", TOKEN).status_code == 400
    dup_headers = [("X-Irbook-Token", "a-token"), ("X-Irbook-Token", SECRETS["GD_TOKEN"])]
    conflicting = receiver.client.post("/hooks/gd", content=b"{}", headers=dup_headers)
    assert conflicting.status_code == 401


# -- the other endpoints --------------------------------------------------------------


def test_metrics_openapi_and_health(receiver: Running) -> None:
    post(receiver, "gd", body_of(fresh_id()), TOKEN)
    post(receiver, "gd", body_of(fresh_id()), {"X-Irbook-Token": "wrong-token-value"})
    assert wait_for(lambda: receiver.hooks.queue.depth() == 0)
    text = receiver.client.get("/metrics").text
    assert 'irbook_webhook_received_total{source="gd"}' in text
    assert 'irbook_webhook_rejected_total{reason="bad-token",source="gd"}' in text
    assert 'irbook_webhook_runs_started_total{source="gd"}' in text
    assert "irbook_webhook_alerts_queued_total" in text
    assert "irbook_webhook_queue_depth 0" in text
    assert "irbook_webhook_request_duration_seconds_count" in text
    assert wait_for(
        lambda: (
            receiver.hooks.metrics.get("irbook_webhook_runs_started_total", source="gd")
            == len([c for c in receiver.starter.calls if c.source == "gd"])
        )
    )
    spec = receiver.client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    assert "/hooks/{source}" in spec["paths"]
    assert receiver.client.get("/healthz").text == "ok"
