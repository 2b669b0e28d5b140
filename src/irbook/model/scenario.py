"""A tabletop drill scenario (apiVersion irbook/v1, kind Drill).

A drill runs one playbook in dry-run mode for one alert, with chosen step outputs,
injected failures and outages, timed notes for the facilitator, and the approvers'
decisions on a simulated clock; `expect` says what the team expects to happen.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from irbook.model.base import ID_PATTERN, Duration, Strict, format_duration

# partial: succeeded with failed steps (on_failure: continue)
OUTCOMES = ("succeeded", "partial", "failed", "rejected")


class DrillMetadata(Strict):
    id: str = Field(pattern=ID_PATTERN)
    title: str = ""
    facilitator: str = ""
    description: str = ""


class AlertRef(Strict):
    """The alert the drill injects: a file (a normalized alert, or a raw vendor payload
    when `from` names its format, read by the receiver's normalizer for that format as
    `irbook match FILE --from FORMAT` reads it), or the same inline (`normalized`, `raw`).
    A raw payload must start the drilled playbook: one of its triggers must match."""

    file: str | None = None
    normalized: dict[str, Any] | None = None
    raw: Any = None
    from_: str | None = Field(default=None, alias="from")  # guardduty, securityhub, ...

    @model_validator(mode="after")
    def _one_kind(self) -> AlertRef:
        given = [k for k in ("file", "normalized", "raw") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of file, normalized or raw")
        if self.raw is not None and not self.from_:
            raise ValueError("a raw payload needs 'from': the format that reads it")
        if self.normalized is not None and self.from_:
            raise ValueError("'from' is for raw payloads; a normalized alert has its own")
        return self


class Inject(Strict):
    """One thing the facilitator does to the run. Exactly one kind per entry:
    - fail: the step's first N attempts fail with `error` (then it succeeds, retries
      permitting);
    - outage: every call to a namespace (slack, jira, aws, aws.iam, ...) fails, for the
      step `at_step` only, or for the whole drill;
    - delay: the step takes this long in drill time (past its timeout, it times out);
    - note: a message for the team at a drill time, shown on the timeline.
    """

    at_step: str | None = None
    fail: int | None = Field(default=None, ge=1, le=100)
    error: str | None = Field(default=None, max_length=500)
    outage: str | None = Field(default=None, pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")
    delay: Duration | None = None
    at: Duration | None = None
    note: str | None = Field(default=None, max_length=2000)

    @property
    def kind(self) -> str:
        for name in ("fail", "outage", "delay", "note"):
            if getattr(self, name) is not None:
                return name
        return ""

    @model_validator(mode="after")
    def _one_kind(self) -> Inject:
        kinds = [k for k in ("fail", "outage", "delay", "note") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("an inject is exactly one of fail, outage, delay or note")
        kind = kinds[0]
        if kind in ("fail", "delay") and not self.at_step:
            raise ValueError(f"a '{kind}' inject needs 'at_step'")
        if kind == "note":
            if self.at is None:
                raise ValueError("a 'note' inject needs 'at' (a drill time such as 90s)")
            if self.at_step is not None:
                raise ValueError("a 'note' inject takes 'at', not 'at_step'")
        elif self.at is not None:
            article = "an" if kind == "outage" else "a"
            raise ValueError(f"'at' is for notes; {article} '{kind}' inject takes 'at_step'")
        if self.error is not None and kind not in ("fail", "outage"):
            raise ValueError("'error' goes with fail or outage")
        return self

    def describe(self) -> str:
        if self.kind == "fail":
            return f"{self.at_step}: fails {self.fail}x ({self.error or 'injected failure'})"
        if self.kind == "outage":
            where = f" at step {self.at_step}" if self.at_step else ""
            return f"outage of {self.outage}{where}"
        if self.kind == "delay":
            return f"{self.at_step}: takes {format_duration(self.delay or 0)}"
        return f"at {format_duration(self.at or 0)}: {self.note}"


class ApproverDecision(Strict):
    """Who decides an approval gate, what, and how long after it was asked (drill time).
    A gate with no approver entry waits out its timeout and follows its on_timeout."""

    step: str
    decision: Literal["approve", "reject"]
    after: Duration = 0.0
    by: str = Field(default="drill-approver", min_length=1, max_length=200)
    comment: str = Field(default="", max_length=2000)


class Expect(Strict):
    steps_run: list[str] | None = None  # ran (succeeded or failed after starting)
    steps_succeeded: list[str] | None = None
    steps_skipped: list[str] | None = None  # exactly these were skipped
    steps_failed: list[str] | None = None
    steps_rejected: list[str] | None = None
    calls_include: list[str] = Field(default_factory=list)  # "iam:UpdateAccessKey"
    calls_exclude: list[str] = Field(default_factory=list)
    contained_within: Duration | None = None
    outcome: Literal["succeeded", "partial", "failed", "rejected"] | None = None


class Drill(Strict):
    api_version: Literal["irbook/v1"] = Field(alias="apiVersion")
    kind: Literal["Drill"]
    metadata: DrillMetadata
    playbook: str = Field(min_length=1)  # a playbook id, or a path relative to this file
    alert: AlertRef
    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)  # step id -> its drill result
    injects: list[Inject] = Field(default_factory=list, max_length=200)
    approvers: list[ApproverDecision] = Field(default_factory=list, max_length=200)
    expect: Expect = Field(default_factory=Expect)
