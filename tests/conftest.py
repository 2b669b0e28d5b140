"""Shared test setup: every test gets its own irbook home, so caches never leak; one real
local Prefect API for the whole session (`prefect_api`), started through irbook's own
server manager (irbook_flows.server), which is what the embedded default does for
users; the tests that use it point PREFECT_API_URL at it. It is defined here, once: a
session fixture imported into two conftest files is two fixtures, and two servers."""

from __future__ import annotations

import contextlib
import os
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
