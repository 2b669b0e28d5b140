"""The playbook document (apiVersion irbook/v1, kind Playbook)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from irbook.model.base import ID_PATTERN, Strict
from irbook.model.inputs import InputSpec
from irbook.model.step import Acknowledgement, AwsTarget, Step
from irbook.model.triggers import Trigger

AtlasId = Annotated[str, StringConstraints(pattern=r"^AML\.T\d{4}(\.\d{3})?$")]
InputName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


MAX_STEPS = 500


class Metadata(Strict):
    id: str = Field(pattern=ID_PATTERN)
    title: str = Field(min_length=1)
    description: str = ""
    severity: Literal["low", "medium", "high", "critical"] = "medium"
    owner: str = ""
    tags: list[str] = Field(default_factory=list)
    # MITRE ATLAS technique ids: AML.T0012, or a sub-technique AML.T0051.000
    atlas: list[AtlasId] = Field(default_factory=list)
    # lint warnings accepted for the whole playbook (no-notification, or every step)
    acknowledge: list[Acknowledgement] = Field(default_factory=list)


class Playbook(Strict):
    api_version: Literal["irbook/v1"] = Field(alias="apiVersion")
    kind: Literal["Playbook"]
    metadata: Metadata
    inputs: dict[InputName, InputSpec] = Field(default_factory=dict)
    triggers: list[Trigger] = Field(default_factory=list)
    rollback: Literal["manual", "auto"] = "manual"
    aws: AwsTarget | None = None
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)
    outputs: dict[InputName, Any] = Field(default_factory=dict)

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)
