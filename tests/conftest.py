"""Shared test setup: every test gets its own irbook home, so caches never leak."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _irbook_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("irbook-home")
    monkeypatch.setenv("IRBOOK_HOME", str(home))
    monkeypatch.delenv("IRBOOK_PLAYBOOKS", raising=False)
    monkeypatch.delenv("IRBOOK_NO_CACHE", raising=False)
    yield home
