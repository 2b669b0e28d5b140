"""Shared model configuration and small value types (durations, identifiers)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, WithJsonSchema

ID_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$"


class Strict(BaseModel):
    """Playbook parts: unknown fields are errors, values are not silently coerced."""

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, frozen=True, strict=True, defer_build=True
    )


_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$")


def parse_duration(value: Any) -> float:
    """'15m', '1h30m', '30s', '500ms' or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 15m or 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("expected a duration such as 30s, 15m or 1h")
    text = value.strip()
    match = _DURATION.match(text)
    if not text or match is None or not any(match.groups()):
        raise ValueError(f"invalid duration {value!r}: use forms such as 30s, 15m, 1h30m, 500ms")
    h, m, s, ms = (int(g) if g else 0 for g in match.groups())
    return h * 3600 + m * 60 + s + ms / 1000


def format_duration(seconds: float) -> str:
    if seconds < 1 and seconds:
        return f"{int(seconds * 1000)}ms"
    total = int(seconds)
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    out = (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{s}s" if s else "")
    return out or "0s"


# Editors see what the loader accepts: "15m", "1h30m", "500ms" or a number of seconds.
DURATION_SCHEMA = {
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": _DURATION.pattern, "minLength": 1},
    ],
    "examples": ["30s", "15m", "1h30m", 90],
}
Duration = Annotated[float, BeforeValidator(parse_duration), WithJsonSchema(DURATION_SCHEMA)]
