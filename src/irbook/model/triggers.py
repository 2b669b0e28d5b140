"""Triggers: which normalized alerts start a playbook (used by the webhook receiver).

A trigger names where alerts come from by `source:` (a configured receiver source such as
`guardduty-prod`, so two GuardDuty accounts can start different playbooks) and/or by
`format:` (any source of that format, such as every `guardduty` source). The receiver
checks at start-up that some configured source can produce each trigger.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import ConfigDict, Field, field_validator, model_validator

from irbook.model.base import Strict

COMPARISONS = ("gt", "gte", "lt", "lte", "eq", "ne")


class Trigger(Strict):
    model_config = ConfigDict(
        json_schema_extra={"anyOf": [{"required": ["source"]}, {"required": ["format"]}]}
    )

    # For playbooks written before `format` existed, a format name in `source` still
    # matches when no configured source has that name (with a start-up warning).
    source: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description="A source configured in receiver.yaml (guardduty-prod): its alerts only.",
    )
    format: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description="A format (guardduty): alerts from every source of that format.",
    )
    # field path in the normalized alert -> glob, list of globs, or {gt|gte|lt|lte|eq|ne: n}
    match: dict[str, Any] = Field(
        default_factory=dict,
        description="Alert field path -> a glob, a list of globs, or {gt|gte|lt|lte|eq|ne: n}",
    )

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

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        from irbook.triggers.normalizers import NORMALIZERS  # here: it imports the model

        if value is not None and value not in NORMALIZERS:
            close = difflib.get_close_matches(value, list(NORMALIZERS), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "irbook schema --receiver lists them"
            raise ValueError(f"unknown format {value!r}; {hint}")
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
