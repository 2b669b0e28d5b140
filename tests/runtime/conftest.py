"""A real local Prefect API for the runtime tests, started once per session.

It is started through irbook's own server manager (irbook_flows.server), which is
what the embedded default does for users; the tests then point PREFECT_API_URL at it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("prefect-home")
    saved = {k: os.environ.get(k) for k in ("IRBOOK_HOME", "PREFECT_API_URL", "PREFECT_HOME")}
    os.environ["IRBOOK_HOME"] = str(home)
    os.environ.pop("PREFECT_API_URL", None)
    os.environ.pop("PREFECT_HOME", None)
    from irbook_flows import server

    url = server.ensure_api()
    os.environ["PREFECT_API_URL"] = url
    state = (Path(home) / "prefect" / "server.json").read_text()
    yield url
    import json
    import signal

    pid = json.loads(state)["pid"]
    with contextlib.suppress(OSError):
        os.killpg(os.getpgid(pid), signal.SIGTERM)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Installs the test actions as a third-party plugin for `irbook` subprocesses."""
    folder = tmp_path_factory.mktemp("plugins")
    dist = folder / "irbook_runtime_tests-0.dist-info"
    dist.mkdir()
    (dist / "entry_points.txt").write_text("[irbook.actions]\nrt = tests.runtime.actions\n")
    return folder


@pytest.fixture(autouse=True)
def _api(prefect_api: str, plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    root = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(plugin_dir), str(root)]))
