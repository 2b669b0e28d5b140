"""The Prefect settings and flow irbook runs a playbook with (irbook_flows.server,
irbook_flows.jsonflow): what they change, and what they leave to the user."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from irbook_flows.server import HEARTBEAT_VARIABLES, leased_run_settings

# Prefect is imported inside the tests, never at collection: Prefect reads its settings
# (the API URL) when first imported, and the session's API (tests/conftest.py) is set
# only when a test asks for it; imported earlier, every later run would start a
# temporary server of its own.


def get_current_settings() -> Any:
    from prefect.settings import get_current_settings as current

    return current()


def heartbeat() -> int | None:
    return get_current_settings().flows.heartbeat_frequency


@pytest.fixture
def no_heartbeat_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in HEARTBEAT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_heartbeat_variables")
def test_a_leased_run_has_no_prefect_heartbeat_and_the_settings_come_back() -> None:
    before = get_current_settings()
    with leased_run_settings(True):
        assert heartbeat() is None
        assert get_current_settings().api.url == before.api.url  # nothing else changes
    assert heartbeat() == before.flows.heartbeat_frequency


@pytest.mark.usefixtures("no_heartbeat_variables")
def test_a_run_without_a_lease_keeps_the_heartbeat() -> None:
    with leased_run_settings(False):
        assert heartbeat() == get_current_settings().flows.heartbeat_frequency is not None


@pytest.mark.parametrize("name", HEARTBEAT_VARIABLES)
def test_a_heartbeat_the_user_sets_wins(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    for other in HEARTBEAT_VARIABLES:
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv(name, "60")
    with leased_run_settings(True):
        assert heartbeat() is not None


def _fn(run_id: str, alert: dict[str, object] | None = None) -> None:
    return None


@pytest.mark.parametrize(
    "parameters",
    [
        {"run_id": "abc123"},
        {"run_id": "abc", "alert": {"id": "a-1", "severity": 8, "tags": ["x", None, 1.5, True]}},
        {"run_id": "abc", "alert": {"when": dt.datetime(2026, 1, 2, tzinfo=dt.UTC)}},
        {"run_id": "abc", "alert": {"id": uuid.UUID(int=7)}},
    ],
)
def test_json_flow_stores_parameters_as_prefect_does(parameters: dict[str, object]) -> None:
    """Plain JSON is kept as it is, without importing FastAPI; anything else still goes
    through Prefect's own encoding. Either way what Prefect stores is the same."""
    from prefect import Flow

    from irbook_flows.jsonflow import JsonFlow

    ours = JsonFlow(fn=_fn, name="json-flow-test").serialize_parameters(dict(parameters))
    theirs = Flow(fn=_fn, name="json-flow-test").serialize_parameters(dict(parameters))
    assert ours == theirs
