"""The runtime tests' setup: the session's real local Prefect API (`prefect_api`, in
tests/conftest.py), and the test actions installed as a plugin for subprocesses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Installs the test actions as a third-party plugin for `irbook` subprocesses."""
    folder = tmp_path_factory.mktemp("plugins")
    dist = folder / "irbook_runtime_tests-0.dist-info"
    dist.mkdir()
    (dist / "entry_points.txt").write_text("[irbook.actions]\nrt = tests.support.runtime_actions\n")
    return folder


@pytest.fixture(autouse=True)
def _api(prefect_api: str, plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    root = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(plugin_dir), str(root)]))
