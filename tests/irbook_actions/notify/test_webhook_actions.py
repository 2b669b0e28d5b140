"""notify.webhook and pagerduty.trigger: a local receiver, and `responses` for https."""

from __future__ import annotations

import json
from typing import Any

import pytest
import responses
from pydantic import ValidationError

from irbook.registry import REGISTRY, ActionContext, ActionFailed
from tests.support.fakeslack import FakeSlack
from tests.support.notify import TestClients, live_run

ROUTING_KEY = "R0UTINGKEY0123456789abcdefABCDEF"


def run_action(key: str, ctx: ActionContext, **params: Any) -> Any:
    spec = REGISTRY.get(key)
    return spec.func(ctx, spec.params.model_validate(params))


def plan(key: str, **params: Any) -> list[dict[str, Any]]:
    spec = REGISTRY.get(key)
    return [c.as_dict() for c in spec.plan(spec.params.model_validate(params))]


@pytest.fixture
def ctx() -> ActionContext:
    return ActionContext(run=live_run(), clients=TestClients())


# -- notify.webhook ----------------------------------------------------------------------


def test_webhook_posts_the_json_with_its_headers(ctx: ActionContext, fake_slack: FakeSlack) -> None:
    url = fake_slack.url + "/hooks/T0/B0/s3cr3t-path"
    message = {"text": "Key deactivated", "run": "run-42"}

    result = run_action(
        "notify.webhook", ctx, url=url, json=message, headers={"X-Api-Key": "hunter2"}
    )

    (request,) = fake_slack.requests
    assert (request.method, request.path) == ("POST", "/hooks/T0/B0/s3cr3t-path")
    assert request.json == message
    assert request.headers["x-api-key"] == "hunter2"
    assert "x-irbook-dry-run" not in request.headers
    assert result.status_code == 200
    assert "s3cr3t" not in result.url


def test_webhook_plan_redacts_secrets_but_shows_the_message() -> None:
    url = "https://user:pw@hooks.example.com/services/T0/B0/s3cr3t?sig=abc&v=1"

    (call,) = plan("notify.webhook", url=url, json={"text": "hi"}, headers={"X-Api-Key": "hunter2"})

    assert call["call"] == "webhook:POST /services/***"
    assert call["params"] == {
        "url": "https://***@hooks.example.com/services/***?sig=***&v=***",
        "json": {"text": "hi"},
        "headers": {"X-Api-Key": "***"},
    }


def test_webhook_planned_call_is_the_call_made(ctx: ActionContext, fake_slack: FakeSlack) -> None:
    url = fake_slack.url + "/teams/incoming/abc"

    run_action("notify.webhook", ctx, url=url, json={"text": "hi"})

    request = fake_slack.requests[0]
    assert [c["call"] for c in plan("notify.webhook", url=url, json={"text": "hi"})] == [
        f"webhook:{request.method} /teams/***"
    ]
    assert [c.as_dict() for c in ctx.calls] == plan("notify.webhook", url=url, json={"text": "hi"})


def test_a_dry_run_webhook_says_so_in_a_header(fake_slack: FakeSlack) -> None:
    ctx = ActionContext(run=live_run(dry_run=True), clients=TestClients())

    run_action("notify.webhook", ctx, url=fake_slack.url + "/hook", json={"text": "drill"})

    assert fake_slack.requests[0].headers["x-irbook-dry-run"] == "true"


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",
        "ftp://127.0.0.1/x",
        "https:///nohost",
        "http://10.0.0.8/internal",
    ],
)
def test_webhook_refuses_anything_but_https_or_loopback(url: str) -> None:
    with pytest.raises(ValidationError, match="https"):
        REGISTRY.get("notify.webhook").params.model_validate({"url": url, "json": {}})


def test_webhook_allows_loopback_http_and_https() -> None:
    model = REGISTRY.get("notify.webhook").params
    for url in ("http://127.0.0.1:8080/x", "http://localhost/x", "http://[::1]/x", "https://a.b/c"):
        model.model_validate({"url": url, "json": {}})


def test_webhook_params_survive_the_engines_json_round_trip() -> None:
    model = REGISTRY.get("notify.webhook").params
    params = model.model_validate({"url": "https://a.b/c", "json": {"k": 1}, "headers": {"A": "b"}})

    again = model.model_validate(params.model_dump(mode="json", exclude_none=True))

    assert again == params


def test_webhook_error_names_the_redacted_url(ctx: ActionContext, fake_slack: FakeSlack) -> None:
    fake_slack.answer_next(500, "boom\ntrace")

    with pytest.raises(ActionFailed) as caught:
        run_action("notify.webhook", ctx, url=fake_slack.url + "/hooks/s3cr3t", json={})

    assert caught.value.message == (f"webhook {fake_slack.url}/hooks/*** answered HTTP 500: boom")


def test_webhook_429_is_retried_after_the_advertised_delay(
    ctx: ActionContext, fake_slack: FakeSlack, sleeps: list[float]
) -> None:
    fake_slack.answer_next(429, {"error": "slow down"}, headers={"Retry-After": "3"})

    result = run_action("notify.webhook", ctx, url=fake_slack.url + "/hook", json={})

    assert result.status_code == 200
    assert len(fake_slack.requests) == 2
    assert sleeps == [3.0]


def test_webhook_does_not_follow_redirects(ctx: ActionContext, fake_slack: FakeSlack) -> None:
    fake_slack.answer_next(302, "", headers={"Location": "http://elsewhere.example/"})

    with pytest.raises(ActionFailed, match=r"HTTP 302 \(redirects are not followed\)"):
        run_action("notify.webhook", ctx, url=fake_slack.url + "/hook", json={})

    assert len(fake_slack.requests) == 1


def test_unreachable_webhook_fails_cleanly(ctx: ActionContext) -> None:
    server = FakeSlack()
    url = server.url + "/hook/s3cr3t"
    server.close()

    with pytest.raises(
        ActionFailed, match=r"^error: cannot reach webhook http://127.0.0.1:\d+/hook/\*\*\*"
    ):
        run_action("notify.webhook", ctx, url=url, json={})


# -- pagerduty.trigger -------------------------------------------------------------------


@pytest.fixture
def pagerduty(fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch) -> FakeSlack:
    monkeypatch.setenv("IRBOOK_PAGERDUTY_URL", fake_slack.url + "/v2/enqueue")
    return fake_slack


def test_trigger_sends_an_events_v2_trigger_deduped_by_incident(
    ctx: ActionContext, pagerduty: FakeSlack
) -> None:
    pagerduty.answer_next(
        202,
        {"status": "success", "message": "Event processed", "dedup_key": "irbook-0123456789ab"},
    )

    result = run_action(
        "pagerduty.trigger",
        ctx,
        routing_key=ROUTING_KEY,
        summary="Leaked key AKIAEXAMPLE used against a model endpoint",
        severity="critical",
    )

    (request,) = pagerduty.requests
    assert (request.method, request.path) == ("POST", "/v2/enqueue")
    event = request.json
    assert event["routing_key"] == ROUTING_KEY
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == "irbook-0123456789ab"
    assert event["payload"]["severity"] == "critical"
    assert event["payload"]["summary"] == "Leaked key AKIAEXAMPLE used against a model endpoint"
    assert event["payload"]["source"] == "irbook"
    assert event["payload"]["custom_details"]["run_id"] == "run-42"
    assert result.dedup_key == "irbook-0123456789ab"
    assert result.status == "success"
    kept = json.dumps([result.model_dump(), [c.as_dict() for c in ctx.calls], ctx.notes])
    assert ROUTING_KEY not in kept


def test_trigger_plan_hides_the_routing_key_and_matches_the_call(
    ctx: ActionContext, pagerduty: FakeSlack
) -> None:
    params = {"routing_key": ROUTING_KEY, "summary": "s", "severity": "error", "dedup_key": "k1"}

    (call,) = plan("pagerduty.trigger", **params)
    run_action("pagerduty.trigger", ctx, **params)

    assert call["call"] == "pagerduty:POST /v2/enqueue"
    assert call["params"]["routing_key"] == "***"
    assert ROUTING_KEY not in json.dumps(call)
    assert pagerduty.requests[0].json["dedup_key"] == "k1"
    assert [c.as_dict() for c in ctx.calls] == [call]


def test_trigger_goes_to_pagerduty_by_default(ctx: ActionContext) -> None:
    with responses.RequestsMock() as mock:
        mock.post(
            "https://events.pagerduty.com/v2/enqueue",
            status=202,
            json={"status": "success", "message": "Event processed", "dedup_key": "x"},
        )
        run_action("pagerduty.trigger", ctx, routing_key=ROUTING_KEY, summary="s", severity="info")
        assert len(mock.calls) == 1


def test_trigger_reads_the_routing_key_from_the_environment(
    ctx: ActionContext, pagerduty: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IRBOOK_PAGERDUTY_ROUTING_KEY", ROUTING_KEY)

    run_action("pagerduty.trigger", ctx, summary="s", severity="warning")

    assert pagerduty.requests[0].json["routing_key"] == ROUTING_KEY


def test_trigger_without_a_routing_key_says_where_to_put_one(ctx: ActionContext) -> None:
    with pytest.raises(ActionFailed, match=r"set \$IRBOOK_PAGERDUTY_ROUTING_KEY"):
        run_action("pagerduty.trigger", ctx, summary="s", severity="warning")


def test_a_rejected_event_fails_with_pagerdutys_reason(
    ctx: ActionContext, pagerduty: FakeSlack
) -> None:
    pagerduty.answer_next(
        400,
        {"status": "invalid event", "message": "Event object is invalid", "errors": ["bad key"]},
    )

    with pytest.raises(
        ActionFailed, match=r"/v2/enqueue answered HTTP 400: Event object is invalid; bad key$"
    ):
        run_action("pagerduty.trigger", ctx, routing_key="short", summary="s", severity="info")


def test_a_dry_run_page_is_marked(pagerduty: FakeSlack) -> None:
    ctx = ActionContext(run=live_run(dry_run=True), clients=TestClients())

    run_action("pagerduty.trigger", ctx, routing_key=ROUTING_KEY, summary="drill", severity="info")

    event = pagerduty.requests[0].json
    assert event["payload"]["summary"] == "[DRY RUN] drill"
    assert event["payload"]["custom_details"]["mode"] == "dry run"


def test_a_plaintext_pagerduty_endpoint_is_refused(
    ctx: ActionContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IRBOOK_PAGERDUTY_URL", "http://events.example.com/v2/enqueue")

    with pytest.raises(ActionFailed, match=r"IRBOOK_PAGERDUTY_URL: .* must use https"):
        run_action("pagerduty.trigger", ctx, routing_key=ROUTING_KEY, summary="s", severity="info")
