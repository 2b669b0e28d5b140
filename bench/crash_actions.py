"""A mutating action for bench/crash_recovery.py, loaded as a plugin (`irbook.actions`).

`bench.effect` waits, then appends one line (run id, alert id) to $BENCH_EFFECTS: a side
effect outside irbook that the bench can count, so "done twice" is measured on what
really happened, not on irbook's own records.
"""

from __future__ import annotations

import os
import time

from pydantic import BaseModel, ConfigDict

from irbook.registry import REGISTRY, ActionContext, PlannedCall, RunInfo, action


class EffectParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alert_id: str
    seconds: float = 0.0


class EffectResult(BaseModel):
    done: bool = True


def _plan(params: EffectParams) -> list[PlannedCall]:
    return [PlannedCall("bench", "Effect", {"AlertId": params.alert_id})]


def _simulate(params: EffectParams, run: RunInfo) -> EffectResult:
    return EffectResult()


if REGISTRY.find("bench.effect") is None:

    @action(
        "bench.effect",
        effect="mutate",
        calls=[("bench", "Effect")],
        planner=_plan,
        simulate=_simulate,
        irreversible="a line in the bench's effects file",
    )
    def effect(ctx: ActionContext, params: EffectParams) -> EffectResult:
        """Wait, then record the effect (one write, O_APPEND: whole lines)."""
        time.sleep(params.seconds)
        line = f"{ctx.run.run_id} {params.alert_id}\n".encode()
        fd = os.open(os.environ["BENCH_EFFECTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        return EffectResult()
