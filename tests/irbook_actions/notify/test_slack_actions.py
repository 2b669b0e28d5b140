"""slack.post_message and slack.request_approval against a local fake Slack."""

from __future__ import annotations

import json
from typing import Any

import pytest

from irbook.registry import REGISTRY, ActionContext, ActionFailed
from tests.support.fakeslack import FakeSlack
from tests.support.notify import SLACK_TOKEN, TestClients, live_run


def post(ctx: ActionContext, **params: Any) -> Any:
    spec = REGISTRY.get("slack.post_message")
    return spec.func(ctx, spec.params.model_validate(params))


def ask(ctx: ActionContext, **params: Any) -> Any:
    spec = REGISTRY.get("slack.request_approval")
    return spec.func(ctx, spec.params.model_validate(params))


def block_text(blocks: list[dict[str, Any]]) -> str:
    """Everything a reader sees in the blocks, as one string."""
    return json.dumps(blocks, ensure_ascii=False)


def planned_names(key: str, **params: Any) -> list[str]:
    spec = REGISTRY.get(key)
    return [c.name for c in spec.plan(spec.params.model_validate(params))]


# -- post_message ------------------------------------------------------------------------


def test_post_builds_an_incident_card_with_the_run_details(
    slack_ctx: ActionContext, fake_slack: FakeSlack
) -> None:
    result = post(slack_ctx, channel="#ir", text="Key AKIA… deactivated")

    (request,) = fake_slack.requests
    assert request.slack_method == "chat.postMessage"
    assert request.headers["authorization"] == f"Bearer {SLACK_TOKEN}"
    sent = request.data
    assert sent["channel"] == "#ir"
    assert sent["text"] == "Key AKIA… deactivated"
    card = block_text(sent["blocks"])
    for shown in (
        "Leaked access key used against a model endpoint",
        "leaked-model-key",
        "high",
        "run-42",
        "LIVE",
        "Key AKIA… deactivated",
    ):
        assert shown in card
    assert "DRY RUN" not in card
    assert result.channel == "CIR"  # Slack's channel ID, which chat.update needs
    assert result.ts == "1700000000.000001"
    assert result.thread_ts is None


def test_a_dry_run_message_is_marked_in_text_and_card(
    slack_client: Any, fake_slack: FakeSlack
) -> None:
    ctx = ActionContext(run=live_run(dry_run=True), clients=TestClients(slack=slack_client))

    post(ctx, channel="#ir", text="Tabletop: key deactivated")

    sent = fake_slack.requests[0].data
    assert sent["text"].startswith("[DRY RUN] ")
    header = sent["blocks"][0]["text"]["text"]
    assert header.startswith("[DRY RUN] ")
    assert "*Mode*\\nDRY RUN" in block_text(sent["blocks"])


def test_own_blocks_are_sent_as_given_and_marked_only_in_a_dry_run(
    slack_client: Any, fake_slack: FakeSlack
) -> None:
    mine = [{"type": "section", "text": {"type": "mrkdwn", "text": "custom"}}]
    live = ActionContext(run=live_run(), clients=TestClients(slack=slack_client))
    drill = ActionContext(run=live_run(dry_run=True), clients=TestClients(slack=slack_client))

    post(live, channel="#ir", text="custom", blocks=mine)
    post(drill, channel="#ir", text="custom", blocks=mine)

    assert fake_slack.requests[0].data["blocks"] == mine
    drill_blocks = fake_slack.requests[1].data["blocks"]
    assert drill_blocks[1:] == mine
    assert "DRY RUN" in block_text(drill_blocks[:1])


def test_thread_replies_go_into_the_thread(slack_ctx: ActionContext, fake_slack: FakeSlack) -> None:
    result = post(slack_ctx, channel="C0IR", text="update", thread="1700000000.000001")

    assert fake_slack.requests[0].data["thread_ts"] == "1700000000.000001"
    assert result.thread_ts == "1700000000.000001"


def test_update_ts_edits_the_card_in_place(slack_ctx: ActionContext, fake_slack: FakeSlack) -> None:
    first = post(slack_ctx, channel="#ir", text="Containment started")
    second = post(slack_ctx, channel=first.channel, text="Contained", update_ts=first.ts)

    assert fake_slack.slack_methods() == ["chat.postMessage", "chat.update"]
    update = fake_slack.requests[1].data
    assert update["channel"] == "CIR"
    assert update["ts"] == first.ts
    assert "Contained" in block_text(update["blocks"])
    assert second.ts == first.ts


@pytest.mark.parametrize(
    "params",
    [
        {"channel": "#ir", "text": "hello"},
        {"channel": "#ir", "text": "hello", "thread": "1700000000.000001"},
        {"channel": "CIR", "text": "hello", "update_ts": "1700000000.000001"},
    ],
)
def test_planned_calls_are_the_calls_made(
    slack_ctx: ActionContext, fake_slack: FakeSlack, params: dict[str, Any]
) -> None:
    post(slack_ctx, **params)

    made = ["slack:" + m for m in fake_slack.slack_methods()]
    assert planned_names("slack.post_message", **params) == made
    assert [c.name for c in slack_ctx.calls] == made


# -- request_approval --------------------------------------------------------------------


def test_approval_request_shows_the_step_its_calls_and_its_undo(
    slack_ctx: ActionContext, fake_slack: FakeSlack
) -> None:
    result = ask(
        slack_ctx,
        channel="#ir-approvals",
        step="revoke",
        planned_calls=["iam:UpdateAccessKey {'Status': 'Inactive'}"],
        compensation="aws.iam.activate_access_key",
        approvers=["U012ABCDEF", "S0ONCALL", "<!channel> mallory"],
    )

    (request,) = fake_slack.requests
    assert request.slack_method == "chat.postMessage"
    sent = request.data
    card = block_text(sent["blocks"])
    assert "revoke" in sent["text"]
    assert "iam:UpdateAccessKey" in card
    assert "aws.iam.activate_access_key" in card
    assert "<@U012ABCDEF>" in card and "<!subteam^S0ONCALL>" in card
    assert "<!channel>" not in card  # a name from outside cannot ping the whole channel
    buttons = next(b for b in sent["blocks"] if b["type"] == "actions")["elements"]
    assert [b["action_id"] for b in buttons] == ["irbook_approve", "irbook_reject"]
    for button in buttons:
        assert json.loads(button["value"]) == {"run_id": "run-42", "step": "revoke"}
    assert result.channel == "CIRAPPROVALS"
    assert result.ts
    assert planned_names("slack.request_approval", channel="#ir-approvals", step="revoke") == [
        "slack:chat.postMessage"
    ]


def test_approval_without_compensation_says_it_cannot_be_undone(
    slack_ctx: ActionContext, fake_slack: FakeSlack
) -> None:
    ask(slack_ctx, channel="#ir", step="delete-endpoint", planned_calls=[])

    card = block_text(fake_slack.requests[0].data["blocks"])
    assert "cannot be undone" in card


# -- rate limits and failures ------------------------------------------------------------


def test_429_waits_the_advertised_delay_then_succeeds(
    slack_ctx: ActionContext, fake_slack: FakeSlack, sleeps: list[float]
) -> None:
    fake_slack.rate_limit_next(retry_after=7)

    result = post(slack_ctx, channel="#ir", text="hello")

    assert fake_slack.slack_methods() == ["chat.postMessage", "chat.postMessage"]
    assert sleeps == [7.0]
    assert result.ts
    assert any("retrying in 7s" in n for n in slack_ctx.notes)
    assert len(slack_ctx.calls) == 1  # one logical call, however many tries


def test_rate_limited_three_times_gives_up(
    slack_ctx: ActionContext, fake_slack: FakeSlack, sleeps: list[float]
) -> None:
    fake_slack.rate_limit_next(retry_after=1, times=5)

    with pytest.raises(ActionFailed, match=r"#ir failed: rate limited") as caught:
        post(slack_ctx, channel="#ir", text="hello")

    assert len(fake_slack.requests) == 3
    assert len(sleeps) == 2
    assert "\n" not in caught.value.message


def test_a_long_rate_limit_fails_at_once_instead_of_stalling_the_run(
    slack_ctx: ActionContext, fake_slack: FakeSlack, sleeps: list[float]
) -> None:
    fake_slack.rate_limit_next(retry_after=600)

    with pytest.raises(ActionFailed, match="rate limited for 600s"):
        post(slack_ctx, channel="#ir", text="hello")

    assert sleeps == []


def test_slack_outage_is_one_clear_line_without_the_token(
    slack_ctx: ActionContext, fake_slack: FakeSlack
) -> None:
    fake_slack.answer_next(503, "<html>\n<body>Service Unavailable</body>\n</html>")

    with pytest.raises(ActionFailed) as caught:
        post(slack_ctx, channel="#ir", text="hello")

    message = caught.value.message
    assert message.startswith("Slack chat.postMessage to #ir failed: HTTP 503")
    assert "\n" not in message
    assert SLACK_TOKEN not in message


def test_slack_api_error_names_the_channel_and_the_error(
    slack_ctx: ActionContext, fake_slack: FakeSlack
) -> None:
    fake_slack.answer_next(200, {"ok": False, "error": "channel_not_found"})

    with pytest.raises(ActionFailed, match=r"to #nope failed: channel_not_found$"):
        post(slack_ctx, channel="#nope", text="hello")


def test_unreachable_slack_fails_cleanly() -> None:
    from slack_sdk import WebClient

    server = FakeSlack()
    url = server.api_url
    server.close()  # nothing listens there any more
    client = WebClient(token=SLACK_TOKEN, base_url=url, timeout=2, retry_handlers=[])
    ctx = ActionContext(run=live_run(), clients=TestClients(slack=client))

    with pytest.raises(ActionFailed, match=r"to #ir failed: cannot reach Slack"):
        post(ctx, channel="#ir", text="hello")


def test_unconfigured_slack_is_an_action_failure() -> None:
    ctx = ActionContext(run=live_run(), clients=TestClients())

    with pytest.raises(ActionFailed, match="SLACK_BOT_TOKEN"):
        post(ctx, channel="#ir", text="hello")


def test_nothing_a_run_keeps_contains_the_token(
    slack_ctx: ActionContext, fake_slack: FakeSlack
) -> None:
    fake_slack.rate_limit_next(retry_after=1)
    result = post(slack_ctx, channel="#ir", text="hello")

    kept = json.dumps(
        [result.model_dump(), [c.as_dict() for c in slack_ctx.calls], slack_ctx.notes]
    )
    assert SLACK_TOKEN not in kept
