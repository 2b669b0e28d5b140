"""`--param NAME=VALUE`, as `irbook plan`, `run` and `iam-policy` take it."""

from __future__ import annotations

from irbook.errors import IrbookError


def parse_params(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise IrbookError(f"--param takes NAME=VALUE, got {item!r}")
        out[name.strip()] = value
    return out
