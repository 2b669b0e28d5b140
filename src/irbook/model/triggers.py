"""Triggers: which normalized alerts start a playbook (used by the webhook receiver).

A trigger names where alerts come from by `source:` (a configured receiver source such as
`guardduty-prod`, so two GuardDuty accounts can start different playbooks) and/or by
`format:` (any source of that format, such as every `guardduty` source). The receiver
checks at start-up that some configured source can produce each trigger.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from irbook.model.base import Strict

COMPARISONS = ("gt", "gte", "lt", "lte", "eq", "ne")


class Trigger(Strict):
    # A configured source name (`guardduty-prod`). For playbooks written before `format`
    # existed, a format name here still matches when no configured source has that name.
    source: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    # A source format (`guardduty`): alerts from any source of that format.
    format: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    # field path in the normalized alert -> glob, list of globs, or {gt|gte|lt|lte|eq|ne: n}
    match: dict[str, Any] = Field(default_factory=dict)

    @field_validator("match")
    @classmethod
    def _conditions(cls, value: dict[str, Any]) -> dict[str, Any]:
        for path, cond in value.items():
            if isinstance(cond, dict):
                if not cond:
                    raise ValueError(f"'{path}': empty comparison")
                for op, operand in cond.items():
                    if op not in COMPARISONS:
                        raise ValueError(
                            f"'{path}': unknown comparison {op!r} (use {', '.join(COMPARISONS)})"
                        )
                    if isinstance(operand, bool) or not isinstance(operand, int | float | str):
                        raise ValueError(f"'{path}.{op}': expected a number or string")
            elif isinstance(cond, list):
                if not all(isinstance(c, str | int | float | bool) for c in cond):
                    raise ValueError(f"'{path}': a list of alternatives must hold plain values")
            elif not isinstance(cond, str | int | float | bool):
                raise ValueError(f"'{path}': expected a glob, a list or a comparison")
        return value

    @model_validator(mode="after")
    def _origin(self) -> Trigger:
        if self.source is None and self.format is None:
            raise ValueError("a trigger needs source: (a configured source) or format:")
        return self

    def origin(self) -> str:
        """`source guardduty-prod`, `format guardduty` or both: for messages and docs."""
        parts = []
        if self.source is not None:
            parts.append(f"source {self.source}")
        if self.format is not None:
            parts.append(f"format {self.format}")
        return ", ".join(parts)
