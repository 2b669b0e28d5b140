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


PG_SERVER = os.environ.get("IRBOOK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A new, empty PostgreSQL database on the machine's server (IRBOOK_TEST_POSTGRES,
    default postgres@127.0.0.1:5432, trust auth), dropped after the test; its URL is what
    a user puts in IRBOOK_DATABASE_URL."""
    import uuid

    import psycopg

    name = f"irbook_t_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_SERVER} is down (.ci/run starts it): {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{PG_SERVER}/{name}"
    yield url
    from irbook import db

    for shared in list(db._shared.values()):
        if shared.url == url:
            shared.close()
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
