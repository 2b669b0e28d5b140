"""moto in server mode for the AWS actions: one server per session, reset before each test.

Every test runs with fake credentials and with sockets that only reach loopback, so a
service moto does not mock, or a client built without the endpoint, fails loudly instead
of reaching real AWS.
"""

from __future__ import annotations

import logging
import socket
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

from irbook.registry import ActionContext, RunInfo
from tests.support.aws import REGION, RecordingClients

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@pytest.fixture(autouse=True)
def _fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/irbook-test-aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/irbook-test-aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse connections anywhere but this machine."""
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def allowed(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:
            raise ConnectionRefusedError(f"tests/aws may not connect to {address[0]}")

    def guarded(sock: socket.socket, address: Any) -> None:
        allowed(sock, address)
        connect(sock, address)

    def guarded_ex(sock: socket.socket, address: Any) -> int:
        allowed(sock, address)
        return connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_ex)


def _reset(url: str) -> None:
    request = urllib.request.Request(url + "/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    yield url
    _reset(url)  # moto's state is per process: leave none for other tests' servers
    server.stop()


@pytest.fixture(scope="session")
def _clients(moto_url: str) -> RecordingClients:
    """Shared across tests: building boto3 clients is the slow part, and they hold no state."""
    return RecordingClients(region=REGION, aws_endpoint_url=moto_url)


@pytest.fixture
def clients(moto_url: str, _clients: RecordingClients) -> Iterator[RecordingClients]:
    """A fresh fake AWS: the server forgets everything, the recorder too. moto keeps its
    state per process, shared by every moto server in it, so it is cleared afterwards too."""
    _reset(moto_url)
    _clients.calls.clear()
    yield _clients
    _reset(moto_url)


@pytest.fixture
def ctx(clients: RecordingClients) -> ActionContext:
    return ActionContext(run=live_run(), clients=clients, region=REGION)


def live_run(run_id: str = "run-0001") -> RunInfo:
    return RunInfo(
        run_id=run_id,
        playbook_id="leaked-model-key",
        step_id="contain",
        dry_run=False,
        incident_key="INC-42",
        severity="high",
    )


@pytest.fixture
def stub_ctx() -> ActionContext:
    """Clients for Stubber tests: nothing listens at the endpoint, so a call that is not
    stubbed fails instead of reaching anything."""
    clients = RecordingClients(region=REGION, aws_endpoint_url="http://127.0.0.1:9")
    return ActionContext(run=live_run(), clients=clients, region=REGION)
