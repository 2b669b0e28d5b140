"""The `core.*` actions: run-record notes, deliberate failure, waiting, human checkpoints."""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field

from irbook.model.base import Duration, format_duration
from irbook.registry import ActionContext, ActionFailed, PlannedCall, RunInfo, action


class _Params(BaseModel):
    # defer_build: a validator is built when a step first uses the action, not at
    # registration (as the action packages do)
    model_config = ConfigDict(extra="forbid", defer_build=True)


class _Result(BaseModel):
    model_config = ConfigDict(defer_build=True)


class NoteParams(_Params):
    text: str = Field(max_length=10_000)


class NoteResult(_Result):
    text: str


@action("core.note", effect="read", pure=True, idempotent=True)
def note(ctx: ActionContext, params: NoteParams) -> NoteResult:
    """Add a line to the run record (a decision, a finding, a hand-off)."""
    ctx.note(params.text)
    return NoteResult(text=params.text)


class FailParams(_Params):
    message: str = Field(min_length=1, max_length=2_000)


class FailResult(_Result):
    message: str


@action("core.fail", effect="read", pure=True, idempotent=True)
def fail(ctx: ActionContext, params: FailParams) -> FailResult:
    """Fail the run on purpose, for example when a guard condition finds a false positive."""
    raise ActionFailed(params.message)


class SleepParams(_Params):
    duration: Duration = Field(le=24 * 3600)


class SleepResult(_Result):
    slept_seconds: float


def _plan_sleep(params: SleepParams) -> list[PlannedCall]:
    return []


def _simulate_sleep(params: SleepParams, run: RunInfo) -> SleepResult:
    return SleepResult(slept_seconds=params.duration)


@action(
    "core.sleep",
    effect="read",
    planner=_plan_sleep,
    simulate=_simulate_sleep,
    idempotent=True,
)
def sleep(ctx: ActionContext, params: SleepParams) -> SleepResult:
    """Wait, for example for a propagation delay; dry runs and drills do not really wait."""
    ctx.note(f"waiting {format_duration(params.duration)}")
    time.sleep(params.duration)
    return SleepResult(slept_seconds=params.duration)


class ApprovalParams(_Params):
    prompt: str = Field(min_length=1, max_length=2_000)


class ApprovalResult(_Result):
    prompt: str


@action("core.approval", effect="read", pure=True, idempotent=True)
def approval(ctx: ActionContext, params: ApprovalParams) -> ApprovalResult:
    """A human checkpoint with no other effect: the run waits for an approver's decision."""
    return ApprovalResult(prompt=params.prompt)
