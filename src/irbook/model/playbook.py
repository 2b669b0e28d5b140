"""The playbook document (apiVersion irbook/v1, kind Playbook)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from irbook.model.base import ID_PATTERN, Strict
from irbook.model.inputs import InputSpec
from irbook.model.step import Acknowledgement, AwsTarget, Step
from irbook.model.triggers import Trigger

ATLAS_ID_PATTERN = r"AML\.T\d{4}(\.\d{3})?"  # a technique or sub-technique id
AtlasId = Annotated[str, StringConstraints(pattern=f"^{ATLAS_ID_PATTERN}$")]
InputName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


MAX_STEPS = 500


class Metadata(Strict):
    id: str = Field(
        pattern=ID_PATTERN, description="Unique across the playbook folders; irbook plan ID"
    )
    title: str = Field(min_length=1, description="What the playbook responds to")
    description: str = Field(default="", description="The situation and the approach")
    severity: Literal["low", "medium", "high", "critical"] = Field(
        default="medium", description="Of the incident; expressions read run.severity"
    )
    owner: str = Field(default="", description="The team that maintains the playbook")
    tags: list[str] = Field(default_factory=list, description="Free-form labels")
    atlas: list[AtlasId] = Field(
        default_factory=list,
        description="MITRE ATLAS technique ids: AML.T0012, or a sub-technique AML.T0051.000",
    )
    acknowledge: list[Acknowledgement] = Field(
        default_factory=list,
        description="Lint warnings accepted for the whole playbook, with reasons",
    )


class Playbook(Strict):
    api_version: Literal["irbook/v1"] = Field(
        alias="apiVersion", description="The format's version: irbook/v1"
    )
    kind: Literal["Playbook"] = Field(description="Playbook")
    metadata: Metadata = Field(description="Who, what and how severe")
    inputs: dict[InputName, InputSpec] = Field(
        default_factory=dict, description="Typed values a run takes (--param, the alert)"
    )
    triggers: list[Trigger] = Field(
        default_factory=list, description="Which alerts start it (irbook serve); none: by hand"
    )
    rollback: Literal["manual", "auto"] = Field(
        default="manual",
        description="After a failed run: undo the changes at once (auto) or on request",
    )
    aws: AwsTarget | None = Field(
        default=None, description="Region and role of every AWS step (a step may override)"
    )
    steps: list[Step] = Field(
        min_length=1, max_length=MAX_STEPS, description="What to do, in dependency order"
    )
    outputs: dict[InputName, Any] = Field(
        default_factory=dict, description="Values the run reports at the end (expressions)"
    )

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def aws_for(self, step: Step) -> AwsDestination:
        """Where a step's AWS calls go: the one rule for the engine's live calls, the
        clients built before a run, `irbook iam-policy`, preflight and the runbook.

        The region is the step's, else the playbook's. The role and its external id go
        together: both from the step's `aws:` when it sets role_arn, else both from the
        playbook's (a step that only changes the region keeps the playbook's role and
        the external id its trust policy asks for)."""
        own, book = step.aws, self.aws
        region = (own.region if own else None) or (book.region if book else None)
        role = own if own is not None and own.role_arn else book
        if role is None or not role.role_arn:
            return AwsDestination(region)
        return AwsDestination(region, role.role_arn, role.external_id)


@dataclass(frozen=True, slots=True)
class AwsDestination:
    """Where one step's AWS calls go (Playbook.aws_for): None is AWS's own default (the
    region of AWS_REGION, the caller's credentials with no role assumed)."""

    region: str | None = None
    role_arn: str | None = None
    external_id: str | None = None

    @property
    def account(self) -> str | None:
        """The account the role is in; None without a role (the credentials' own)."""
        return self.role_arn.split(":")[4] if self.role_arn else None

    @property
    def partition(self) -> str | None:
        """The role's partition (aws, aws-cn, aws-us-gov); None without a role."""
        return self.role_arn.split(":")[1] if self.role_arn else None
