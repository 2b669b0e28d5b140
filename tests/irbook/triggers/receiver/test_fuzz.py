"""Random bodies, authenticated so they reach the parser and the normalizer: never a 5xx."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.irbook.triggers.receiver.conftest import Running
from tests.support.receiver import SECRETS, payload

TOKEN = {"X-Irbook-Token": SECRETS["GD_TOKEN"], "Content-Type": "application/json"}

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)


def mutated_finding(value: Any, key: str) -> bytes:
    """The real finding with one of its fields replaced: gets further than random JSON."""
    data = payload(id="fuzz")
    data["detail"][key] = value
    return json.dumps(data).encode()


bodies = (
    st.binary(max_size=2_000)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.builds(
        mutated_finding,
        json_values,
        st.sampled_from(["id", "type", "severity", "resource", "service", "title", "region"]),
    )
)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies)
def test_random_bodies_never_5xx(receiver: Running, body: bytes) -> None:
    response = receiver.client.post("/hooks/gd", content=body, headers=TOKEN)
    assert response.status_code < 500, (response.status_code, response.text)
