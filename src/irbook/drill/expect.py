"""A drill's expectations, checked against what the drill did: one precise line each.

- steps_run, steps_succeeded: each listed step did that (others may have run too);
- steps_skipped, steps_failed, steps_rejected: exactly these (an empty list: none);
- calls_include, calls_exclude: the API calls the live run would have made, as planned
  by the steps that ran ('iam:UpdateAccessKey');
- contained_within: the incident counts as contained when every mutating step that the
  playbook meant to run (not skipped by its own `if` or an empty `for_each`) succeeded;
  the time is when the last of them ended, in drill time;
- outcome: the run's end state.
"""

from __future__ import annotations

from irbook.drill.result import ExpectationResult, StepRecord
from irbook.model.base import format_duration
from irbook.model.scenario import Expect

RAN = ("succeeded", "failed")


def containment_time(steps: list[StepRecord]) -> float | None:
    """When the last containing (mutating) step ended; None if one did not succeed."""
    ends: list[float] = []
    for step in steps:
        if step.effect != "mutate":
            continue
        if step.state == "skipped" and not step.reason.startswith("upstream"):
            continue  # the playbook chose not to run it for this alert
        if step.state != "succeeded" or step.end is None:
            return None
        ends.append(step.end)
    return max(ends) if ends else None


def planned_calls(steps: list[StepRecord]) -> list[str]:
    seen: list[str] = []
    for step in steps:
        if step.state in RAN:
            seen.extend(c for c in step.planned_calls if c not in seen)
    return seen


def _why(step: StepRecord) -> str:
    return f"{step.state}" + (f" ({step.reason})" if step.reason else "")


def evaluate(
    expect: Expect, steps: list[StepRecord], outcome: str, contained_at: float | None
) -> list[ExpectationResult]:
    by_id = {s.id: s for s in steps}
    out: list[ExpectationResult] = []

    def listed(name: str, wanted: list[str] | None, states: tuple[str, ...], exact: bool) -> None:
        if wanted is None:
            return
        actual = [s.id for s in steps if s.state in states]
        missing = [w for w in wanted if w not in actual]
        extra = [a for a in actual if a not in wanted] if exact else []
        problems = [f"'{m}' {_why(by_id[m])}" if m in by_id else f"'{m}' unknown" for m in missing]
        problems += [f"'{e}' {_why(by_id[e])}, not expected" for e in extra]
        out.append(
            ExpectationResult(
                name,
                not problems,
                ", ".join(wanted) or "none",
                ", ".join(actual) or "none",
                "; ".join(problems),
            )
        )

    listed("steps_run", expect.steps_run, RAN, exact=False)
    listed("steps_succeeded", expect.steps_succeeded, ("succeeded",), exact=False)
    listed("steps_skipped", expect.steps_skipped, ("skipped",), exact=True)
    listed("steps_failed", expect.steps_failed, ("failed",), exact=True)
    listed("steps_rejected", expect.steps_rejected, ("rejected",), exact=True)
    calls = planned_calls(steps)
    if expect.calls_include:
        missing = [c for c in expect.calls_include if c not in calls]
        out.append(
            ExpectationResult(
                "calls_include",
                not missing,
                ", ".join(expect.calls_include),
                ", ".join(calls) or "none",
                ("not planned by any step that ran: " + ", ".join(missing)) if missing else "",
            )
        )
    if expect.calls_exclude:
        present = [c for c in expect.calls_exclude if c in calls]
        out.append(
            ExpectationResult(
                "calls_exclude",
                not present,
                "none of " + ", ".join(expect.calls_exclude),
                ", ".join(calls) or "none",
                ("planned although excluded: " + ", ".join(present)) if present else "",
            )
        )
    if expect.contained_within is not None:
        limit = expect.contained_within
        if contained_at is None:
            bad = [
                s
                for s in steps
                if s.effect == "mutate"
                and s.state != "succeeded"
                and not (s.state == "skipped" and not s.reason.startswith("upstream"))
            ]
            detail = "not contained" + (
                f": '{bad[0].id}' {_why(bad[0])}" if bad else ": no containment step ran"
            )
            out.append(
                ExpectationResult(
                    "contained_within", False, format_duration(limit), "not contained", detail
                )
            )
        else:
            ok = contained_at <= limit
            shown = format_duration(contained_at)
            detail = (
                "" if ok else f"contained at {shown}, {format_duration(contained_at - limit)} late"
            )
            out.append(
                ExpectationResult("contained_within", ok, format_duration(limit), shown, detail)
            )
    if expect.outcome is not None:
        ok = outcome == expect.outcome
        out.append(
            ExpectationResult(
                "outcome",
                ok,
                expect.outcome,
                outcome,
                "" if ok else f"the run ended {outcome}, expected {expect.outcome}",
            )
        )
    return out
