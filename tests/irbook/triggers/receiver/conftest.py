"""A receiver under uvicorn in a thread, shared by a module's tests (alert ids differ)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from irbook.triggers.app import WebhookReceiver, create_app
from irbook.triggers.config import load_config
from tests.support.receiver import SECRETS, RecordingStarter, free_port, write_fixture


@dataclass
class Running:
    url: str
    hooks: WebhookReceiver
    starter: RecordingStarter
    client: httpx.Client
    root: Path


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    import uvicorn

    root = tmp_path_factory.mktemp("receiver")
    config_path, _ = write_fixture(root)
    loaded = load_config(str(config_path), env=SECRETS)
    starter = RecordingStarter()
    hooks = WebhookReceiver(loaded, starter, db_path=str(root / "irbook.db"), poll_interval=0.1)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(hooks=hooks), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the receiver did not start"
    url = f"http://127.0.0.1:{port}"
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    with httpx.Client(base_url=url, timeout=30, limits=limits) as client:
        yield Running(url, hooks, starter, client, root)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def hooks(tmp_path: Path) -> Iterator[WebhookReceiver]:
    """A receiver of its own (no HTTP server), for tests that call it directly."""
    config_path, _ = write_fixture(tmp_path)
    receiver = WebhookReceiver(
        load_config(str(config_path), env=SECRETS),
        RecordingStarter(),
        db_path=str(tmp_path / "irbook.db"),
    )
    try:
        yield receiver
    finally:
        receiver.stop()
