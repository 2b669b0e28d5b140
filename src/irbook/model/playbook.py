"""The playbook document (apiVersion irbook/v1, kind Playbook)."""

from __future__ import annotations

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

    def aws_for(self, step: Step) -> AwsTarget:
        """Where a step's AWS calls go when it runs: its own `aws:` region and role, each
        else the playbook's; the external id of whichever `aws:` is there (the step's
        first). Used by the engine's live calls and by the clients built before a run."""
        own, book = step.aws, self.aws
        target = own or book
        return AwsTarget.model_construct(
            region=(own.region if own else None) or (book.region if book else None),
            role_arn=(own.role_arn if own else None) or (book.role_arn if book else None),
            external_id=target.external_id if target else None,
        )
