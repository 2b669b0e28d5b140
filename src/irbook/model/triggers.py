"""Triggers: which normalized alerts start a playbook (used by the webhook receiver)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from irbook.model.base import Strict

COMPARISONS = ("gt", "gte", "lt", "lte", "eq", "ne")


class Trigger(Strict):
    source: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
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
