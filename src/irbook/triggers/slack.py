"""Slack approval buttons: verify the press, check who pressed, resume the run.

Slack posts a button press to `POST /slack/interactions` as a form field `payload`
holding JSON. Everything in it is attacker-controlled until the signature over the raw
body and timestamp checks out (Slack's signing secret, 5-minute window), and a replayed
request (the same signature again) is refused. Only configured Slack users, or members
of configured user groups, may decide.

What is written to the run record (and so to its audit chain) is only what an
authenticated request caused: decisions, and refusals of signed presses (not an
approver, too late). A request that fails the signature or is a replay is answered with
its reason (`Answer.reason`) for the receiver's metrics and written nowhere: anyone can
send those, so recording them would let anyone grow the audit chain. Signed presses
spend `limiter` (requests that fail authentication have a budget of their own, per
client address, in the HTTP layer).

Resuming a run needs the Prefect API, which the core package does not import: the
caller passes `decide`, the function that resumes a paused flow run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs

from irbook import policy as access
from irbook.runs import RunStore
from irbook.triggers.limits import RateLimiter, retry_after_header

APPROVE, REJECT = "irbook_approve", "irbook_reject"

# flow run id, approved, approver, comment, ticket (the run record's approval request)
Decide = Callable[[str, bool, str, str, int], None]


class Verifier(Protocol):
    """What the interactions handler needs of a signature verifier (see triggers.auth)."""

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Any: ...


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    reason: str | None = None  # why it was refused (a fixed code), for the metrics
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class SlackApprovals:
    """Who may press the buttons: Slack user ids, and user groups whose members may."""

    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    group_members: Callable[[str], set[str]] | None = None

    def allowed(self, user_id: str) -> bool:
        if user_id in self.users:
            return True
        if self.group_members is not None:
            for group in self.groups:
                try:
                    if user_id in self.group_members(group):
                        return True
                except Exception:  # Slack unreachable: nobody gets in through a group
                    return False
        return False


@dataclass
class SlackInteractions:
    verifier: Verifier
    approvals: SlackApprovals
    store: RunStore
    decide: Decide
    seen_before: Callable[[str, float], bool]  # replay guard over delivery ids
    update_message: Callable[[str, str, str], None] | None = None  # channel, ts, text
    clock: Callable[[], float] = field(default=time.time)
    # Signed presses: people pressing buttons, so a few a second is already a lot.
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(10, 50))
    # Who may decide what; None: the allow-list in `approvals` (no policy in force).
    policy: access.Policy | None = None
    # How long to wait for the run's own answer (approved, recorded, refused) before
    # answering Slack "submitted": Slack gives up on an answer after 3 s.
    answer_wait: float = 2.5

    def _members(self, group: str) -> set[str]:
        if self.approvals.group_members is None:
            return set()
        return self.approvals.group_members(group)

    def handle(self, headers: Mapping[str, str], body: bytes) -> Answer:
        now = self.clock()
        try:
            verified = self.verifier.verify(headers, body, now)
        except Exception as exc:  # AuthError: a short reason, never the body
            reason = str(getattr(exc, "reason", "") or "bad-signature")
            return Answer(401, {"error": reason}, reason)
        # A hash of the signed content: a captured request replayed as is, or with
        # unsigned headers rewritten, is the same delivery.
        delivery = str(getattr(verified, "replay_key", "") or "")
        if not delivery:
            lowered = {k.lower(): v for k, v in headers.items()}
            delivery = (
                lowered.get("x-slack-request-timestamp", "")
                + ":"
                + lowered.get("x-slack-signature", "")
            )
        if self.seen_before(delivery, now):
            return Answer(401, {"error": "replayed"}, "replayed")
        wait = self.limiter.check("slack", time.monotonic())
        if wait is not None:
            return Answer(
                429,
                {"error": "too many requests"},
                "rate-limited",
                {"Retry-After": retry_after_header(wait)},
            )
        try:
            form = parse_qs(body.decode("utf-8"), strict_parsing=False)
            payload = json.loads(form["payload"][0])
            user = payload["user"]
            user_id = str(user["id"])
            user_name = str(user.get("username") or user.get("name") or user_id)
            action = payload["actions"][0]
            action_id = str(action["action_id"])
            value = json.loads(action["value"])
            run_id, step = str(value["run_id"]), str(value["step"])
        except (KeyError, IndexError, TypeError, ValueError, UnicodeDecodeError):
            return Answer(400, {"error": "not an irbook approval button press"}, "malformed")
        if action_id not in (APPROVE, REJECT):
            return Answer(400, {"error": "unknown action"}, "unknown-action")
        record = self.store.run(run_id)
        if record is None:
            return Answer(404, {"error": "unknown run"}, "unknown-run")
        approver = f"slack:{user_id}"
        if self.policy is None and not self.approvals.allowed(user_id):
            self.store.event(
                run_id,
                "approval-refused",
                step,
                by=approver,
                name=user_name[:80],
                reason="not an approver",
            )
            return Answer(403, {"error": "you may not approve irbook steps"}, "not-an-approver")
        waiting = [
            s
            for s in self.store.steps(run_id)
            if s["step_id"] == step and s["state"] == "awaiting-approval"
        ]
        if record["state"] != "running" or not waiting or not record.get("flow_run_id"):
            self.store.event(run_id, "approval-late", step, by=approver)
            return Answer(
                409, {"error": "this step is not waiting for a decision", "status": "late"}, "late"
            )
        approved = action_id == APPROVE
        gate = waiting[0].get("approval") or {}
        verdict = access.judge_waiting(
            self.policy,
            gate,
            access.Identity("slack", user_id),
            approved,
            started_by=str(record["started_by"]),
            members=self._members,
        )
        if verdict is not None and verdict.outcome == "refused":  # the run is not resumed
            kind, detail = access.verdict_event(
                verdict, by=approver, approved=approved, name=user_name[:80], via="slack"
            )
            self.store.event(run_id, kind, step, **detail)
            return Answer(403, {"error": verdict.reason, "status": "refused"}, "not-an-approver")
        comment = f"via Slack ({user_name})"
        ticket = self.store.request_approval(run_id, step, approver, approved, comment, "slack")
        try:
            self.decide(str(record["flow_run_id"]), approved, approver, comment, ticket)
        except Exception as exc:  # not paused any more, API away: say so, record it
            self.store.event(run_id, "approval-failed", step, by=approver, error=str(exc)[:200])
            return Answer(409, {"error": "the run could not be resumed"}, "resume-failed")
        self.store.event(run_id, "approval-via-slack", step, by=approver, approved=approved)
        said = self.store.approval_answer(run_id, ticket, self.answer_wait)
        detail = (said or {}).get("detail") or {}
        outcome = detail.get("outcome")
        if said is None:  # Slack wants an answer within 3 s: say what is known
            return Answer(202, {"ok": True, "status": "submitted"})
        if outcome == "refused":
            reason = str(detail.get("reason") or "refused")
            return Answer(403, {"error": reason, "status": "refused"}, "not-an-approver")
        if outcome == "recorded":
            left = detail.get("waiting_for")
            return Answer(200, {"ok": True, "status": "recorded", "waiting_for": left})
        slack_msg = (waiting[0].get("approval") or {}).get("slack") or {}
        if self.update_message is not None and slack_msg.get("channel") and slack_msg.get("ts"):
            verb = "Approved" if approved else "Rejected"
            when = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(now))
            text = f"{verb} by <@{user_id}> at {when}: step {step} of run {run_id}"
            try:
                self.update_message(slack_msg["channel"], slack_msg["ts"], text)
            except Exception as exc:  # the decision stands; the card is cosmetic
                self.store.event(run_id, "slack-update-failed", step, error=str(exc)[:200])
        return Answer(200, {"ok": True, "approved": approved, "status": outcome})
