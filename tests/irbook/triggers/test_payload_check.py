"""The payload check's quick pass and the receiver's vouching agree with the full walk."""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

import pytest

from irbook.triggers.normalizers import NORMALIZERS, NormalizeError
from irbook.triggers.normalizers._base import (
    DEPTH_MAX,
    _check_slowly,
    check_payload,
    plain_json_body,
    vouched,
)
from tests.support.payloads import load


def nested(levels: int, leaf: Any = 1) -> Any:
    value: Any = leaf
    for _ in range(levels):
        value = {"a": [value]}
    return value


def cyclic() -> Any:
    data: dict[str, Any] = {"a": []}
    data["a"].append(data)
    return data


CASES: list[Any] = [
    {},
    [],
    "text",
    "caf\u00e9",
    "\ud800",
    {"k": "\udfff"},
    {"\ud800": 1},
    [1, "ok", ["\ud83d"]],
    {1: "int key"},
    {"t": (1, 2)},
    {"s": {1, 2}},
    {"b": b"bytes"},
    OrderedDict(a=1),  # a Mapping that is not a dict: the full walk decides
    cyclic(),
    nested(DEPTH_MAX // 2 - 1),
    nested(DEPTH_MAX // 2),
    nested(DEPTH_MAX // 2 + 1),
    nested(DEPTH_MAX // 2, leaf={}),
    nested(DEPTH_MAX // 2, leaf=[[]]),
    load("guardduty_credential_exfiltration"),
]


def outcome(check: Any, payload: Any) -> tuple[str, str] | None:
    try:
        check(payload)
    except NormalizeError as exc:
        return exc.path, exc.reason
    return None


@pytest.mark.parametrize("payload", CASES)
def test_quick_pass_agrees_with_the_full_walk(payload: Any) -> None:
    assert outcome(check_payload, payload) == outcome(_check_slowly, payload)


def test_plain_json_body_vouches_only_for_what_the_walk_accepts() -> None:
    finding = json.dumps(load("guardduty_credential_exfiltration")).encode()
    assert plain_json_body(finding)
    assert not plain_json_body(b'{"a": "\\ud800"}')
    assert not plain_json_body(b'{"a": "\\uD83D\\uDE00"}')  # even a valid pair: walked
    assert plain_json_body(b"[" * DEPTH_MAX + b"]" * DEPTH_MAX)
    assert not plain_json_body(b"[" * (DEPTH_MAX + 1) + b"]" * (DEPTH_MAX + 1))
    # Whatever it accepts, the walk accepts too.
    for body in (finding, b"[" * DEPTH_MAX + b"]" * DEPTH_MAX, b'{"a": "caf\xc3\xa9"}'):
        assert plain_json_body(body)
        _check_slowly(json.loads(body))


def test_vouching_covers_that_object_only() -> None:
    bad = {"detail": {"x": "\ud800"}}
    with vouched(bad):
        assert check_payload(bad).value is bad
        with pytest.raises(NormalizeError) as caught:
            check_payload({"detail": {"x": "\ud800"}})  # an equal, different object
    assert caught.value.path == "$.detail.x"
    with pytest.raises(NormalizeError):
        check_payload(bad)  # outside the block, walked again


def test_a_vouched_payload_normalizes_the_same() -> None:
    payload = load("guardduty_credential_exfiltration")
    plain = NORMALIZERS["guardduty"](payload, None)
    with vouched(payload):
        fast = NORMALIZERS["guardduty"](payload, None)
    assert [a.model_dump() for a in fast] == [a.model_dump() for a in plain]
