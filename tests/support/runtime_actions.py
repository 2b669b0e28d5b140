"""Test-only actions for the runtime tests: flaky, mutating with undo, calling a client."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict

from pydantic import BaseModel, ConfigDict

from irbook.registry import REGISTRY, ActionContext, ActionFailed, PlannedCall, RunInfo, action

CALLS: list[str] = []  # what the mutating test actions really did, in order
ATTEMPTS: dict[str, int] = defaultdict(int)
LOCK = threading.Lock()


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    fail_times: int = 0
    seconds: float = 0.0


class Result(BaseModel):
    name: str
    attempt: int = 0


def _plan(params: Params) -> list[PlannedCall]:
    return [PlannedCall("rt", "Change", {"Name": params.name})]


def _sim(params: Params, run: RunInfo) -> Result:
    return Result(name=params.name)


def _undo_plan(params: Params) -> list[PlannedCall]:
    return [PlannedCall("rt", "Undo", {"Name": params.name})]


def _register() -> None:
    if REGISTRY.find("rt.change") is not None:
        return

    @action(
        "rt.undo",
        effect="mutate",
        calls=[("rt", "Undo")],
        planner=_undo_plan,
        simulate=_sim,
        irreversible="test undo",
    )
    def undo(ctx: ActionContext, params: Params) -> Result:
        with LOCK:
            CALLS.append(f"undo:{params.name}")
        return Result(name=params.name)

    @action(
        "rt.change",
        effect="mutate",
        calls=[("rt", "Change")],
        planner=_plan,
        simulate=_sim,
        compensation="rt.undo",
        undo=lambda p, r: {"name": p.name},
    )
    def change(ctx: ActionContext, params: Params) -> Result:
        """Fails `fail_times` times per name, then changes something (recorded)."""
        with LOCK:
            ATTEMPTS[params.name] += 1
            attempt = ATTEMPTS[params.name]
        if params.seconds:
            time.sleep(params.seconds)
        if attempt <= params.fail_times:
            raise ActionFailed(f"{params.name}: throttled (attempt {attempt})")
        with LOCK:
            CALLS.append(f"change:{params.name}")
        return Result(name=params.name, attempt=attempt)

    @action(
        "rt.whoami",
        effect="read",
        calls=[("sts", "GetCallerIdentity")],
        planner=lambda p: [PlannedCall("sts", "GetCallerIdentity", {})],
        simulate=_sim,
    )
    def whoami(ctx: ActionContext, params: Params) -> Result:
        """Calls AWS STS through the context's clients (pointed at a hung server in tests)."""
        try:
            ctx.aws("sts").get_caller_identity()
        except Exception as exc:
            raise ActionFailed(f"sts: {type(exc).__name__}: {exc}") from None
        return Result(name=params.name)

    def _bad_plan(p: Params) -> list[PlannedCall]:
        raise ValueError(f"no plan for {p.name!r}")  # a planner bug quoting its parameter

    @action(
        "rt.badplan",
        effect="read",
        calls=[("rt", "Lookup")],
        planner=_bad_plan,
        simulate=_sim,
    )
    def badplan(ctx: ActionContext, params: Params) -> Result:
        """An action whose planner raises: the plan says the step fails, never more."""
        return Result(name=params.name)

    @action(
        "rt.lookup",
        effect="read",
        calls=[("rt", "Lookup")],
        planner=lambda p: [PlannedCall("rt", "Lookup", {"Name": p.name})],
        simulate=_sim,
    )
    def lookup(ctx: ActionContext, params: Params) -> Result:
        """Fails quoting its parameter the ways libraries do: repr (a KeyError chained
        under the error) and JSON, as an API's error body would."""
        try:
            raise KeyError(params.name)
        except KeyError as exc:
            body = json.dumps({"error": f"unknown key {params.name}"})
            raise ValueError(f"lookup of {params.name!r} failed: {body}") from exc


_register()


def reset() -> None:
    CALLS.clear()
    ATTEMPTS.clear()
