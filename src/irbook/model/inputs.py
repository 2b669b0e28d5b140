"""Playbook inputs: typed, optionally taken from the normalized alert."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from irbook import expr
from irbook.model.base import Strict

InputType = Literal["string", "integer", "number", "boolean", "list", "object"]


class InputSpec(Strict):
    type: InputType = Field(default="string", description="The value's type")
    description: str = Field(default="", description="What the value is, for people")
    required: bool = Field(default=False, description="A run without it is refused")
    default: Any = Field(default=None, description="The value when none is given")
    pattern: str | None = Field(default=None, description="A regular expression it must match")
    enum: list[Any] | None = Field(default=None, description="The values it may take")
    from_: str | None = Field(
        default=None,
        alias="from",
        description="Where in the alert to take it from: alert.actor.access_key_id",
    )
    secret: bool = Field(default=False, description="Redacted from plans, run records and reports")

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    @field_validator("from_")
    @classmethod
    def _from_is_alert_path(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"alert(\.[A-Za-z0-9_-]+|\[\d+\])+", value):
            raise ValueError(
                f"'from' must be a path into the alert such as alert.actor.access_key_id, "
                f"got {value!r}"
            )
        if value is not None:
            try:  # too long or too deep a path is refused here, not when an alert comes
                expr.parse(value)
            except expr.ExprError as exc:
                raise ValueError(exc.message) from None
        return value

    @model_validator(mode="after")
    def _default_fits(self) -> InputSpec:
        if self.required and self.default is not None:
            raise ValueError("an input cannot be both required and have a default")
        value = self.default
        if value is None:
            return self
        expected = {
            "string": (str,),
            "integer": (int,),
            "number": (int, float),
            "boolean": (bool,),
            "list": (list,),
            "object": (dict,),
        }[self.type]
        if (isinstance(value, bool) and self.type != "boolean") or not isinstance(value, expected):
            raise ValueError(f"default {value!r} is not of type {self.type}")
        if self.enum is not None and value not in self.enum:
            raise ValueError(f"default {value!r} is not one of {self.enum}")
        if (
            self.pattern is not None
            and isinstance(value, str)
            and not re.search(self.pattern, value)
            and value != ""
        ):
            raise ValueError(f"default {value!r} does not match {self.pattern}")
        return self
