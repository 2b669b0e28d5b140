"""Documented sample payloads for the normalizer tests, loaded fresh for each use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PAYLOADS = Path(__file__).resolve().parents[1] / "corpus" / "payloads"


def load(name: str) -> Any:
    """A new copy each time, so a test may mutate it freely."""
    return json.loads((PAYLOADS / f"{name}.json").read_text(encoding="utf-8"))
