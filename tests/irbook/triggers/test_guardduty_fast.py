"""The GuardDuty fast path: exactly the Node path's alert, or None (and the Node path runs).

The Node path is the reference. Each test reads a finding twice, once as the receiver does
and once with `_fast` forced to decline, and wants the same outcome: the same alerts, or
the same error. Documented findings must take the fast path (else it would be silently
dead code); mutated ones may take either, but never give a different answer.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from irbook.triggers.normalizers import NORMALIZERS, NormalizeError, guardduty
from irbook.triggers.normalizers._base import vouched
from tests.support.payloads import PAYLOADS, load

DOCS = sorted(path.stem for path in PAYLOADS.glob("guardduty_*.json"))
Outcome = tuple[str, Any]


def _decline(payload: Any, source: str) -> None:
    return None


@contextmanager
def _node_path_only() -> Iterator[None]:
    """`_fast` declines everything, so `normalize` is the Node path alone (the reference)."""
    saved = guardduty._fast
    guardduty._fast = _decline
    try:
        yield
    finally:
        guardduty._fast = saved


def _outcome(payload: Any, *, fast: bool, trusted: bool = False) -> Outcome:
    """What `normalize` gives: the alerts as JSON, or the exception it raised."""
    try:
        with vouched(payload) if trusted else nullcontext():
            if fast:
                alerts = guardduty.normalize(payload, None)
            else:
                with _node_path_only():
                    alerts = guardduty.normalize(payload, None)
    except NormalizeError as error:
        return "refused", (type(error).__name__, error.path, error.reason)
    except Exception as error:  # a bug in both paths still has to be the same bug
        return "raised", (type(error).__name__, str(error))
    assert all(alert.raw is payload for alert in alerts)
    return "alerts", [alert.model_dump(mode="json") for alert in alerts]


def _same_either_way(payload: Any, *, trusted: bool = False) -> Outcome:
    reference = _outcome(payload, fast=False, trusted=trusted)
    assert _outcome(payload, fast=True, trusted=trusted) == reference
    return reference


@pytest.mark.parametrize("name", DOCS)
def test_documented_findings_take_the_fast_path_and_match_the_node_path(name: str) -> None:
    payload = load(name)
    fast = guardduty._fast(payload, "guardduty")
    assert fast is not None, "the fast path declined a documented finding"
    assert all(alert.raw is payload for alert in fast)
    with _node_path_only():
        slow = guardduty.normalize(payload)
    assert [a.model_dump(mode="json") for a in fast] == [a.model_dump(mode="json") for a in slow]
    kind, _ = _same_either_way(payload, trusted=True)
    assert kind == "alerts"


def test_the_documented_samples_are_all_here() -> None:
    assert len(DOCS) >= 4
    assert NORMALIZERS["guardduty"] is guardduty.normalize


def _set(payload: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set a value at a path, making objects along the way where there are none."""
    parent = payload
    for key in path[:-1]:
        child = parent.get(key)
        if not isinstance(child, dict):
            child = parent[key] = {}
        parent = child
    parent[path[-1]] = value


_RES = ("detail", "resource")
_API = ("detail", "service", "action", "awsApiCallAction")

# Regular shapes beyond the documented samples: each must still take the fast path.
REGULAR: list[tuple[str, tuple[str, ...], Any]] = [
    ("guardduty_credential_exfiltration", ("detail", "severity"), 0),
    ("guardduty_credential_exfiltration", ("detail", "severity"), 12.5),
    ("guardduty_credential_exfiltration", ("detail", "severity"), -3),
    ("guardduty_credential_exfiltration", ("detail", "id"), None),  # falls back to the arn
    ("guardduty_credential_exfiltration", ("detail", "id"), "x" * 512),
    ("guardduty_credential_exfiltration", ("detail", "title"), "t" * 1_000),
    ("guardduty_credential_exfiltration", ("detail", "accountId"), ""),  # root account
    ("guardduty_credential_exfiltration", ("detail", "accountId"), None),
    ("guardduty_credential_exfiltration", ("detail", "region"), ""),
    ("guardduty_credential_exfiltration", ("detail", "partition"), "aws-cn"),
    ("guardduty_credential_exfiltration", ("detail", "partition"), "not a partition"),
    ("guardduty_credential_exfiltration", ("detail", "updatedAt"), "yesterday"),
    ("guardduty_credential_exfiltration", ("detail", "updatedAt"), 1_715_678_459_871),
    ("guardduty_credential_exfiltration", ("detail-type",), None),
    ("guardduty_credential_exfiltration", ("detail", "resource"), None),
    ("guardduty_credential_exfiltration", ("detail", "service"), None),
    ("guardduty_credential_exfiltration", (*_API, "remoteIpDetails"), None),
    (
        "guardduty_credential_exfiltration",
        ("detail", "service", "action", "networkConnectionAction"),
        {"remoteIpDetails": {"ipAddressV4": "203.0.113.9"}},
    ),
    (
        "guardduty_credential_exfiltration",
        (*_RES, "accessKeyDetails", "principalId"),
        "arn:aws:sts::111122223333:assumed-role/r/i-0a1b2c3d4e5f67890",
    ),
    ("guardduty_credential_exfiltration", (*_RES, "accessKeyDetails", "userType"), "IAMUser"),
    (
        "guardduty_credential_exfiltration",
        (*_RES, "accessKeyDetails", "principalId"),
        "arnold:i-0a1b2c3d4e5f67890",  # not an ARN
    ),
    ("guardduty_ai_model_invocation", (*_RES, "modelDetails"), [{"modelId": "arnold"}]),
    ("guardduty_credential_exfiltration", (*_RES, "instanceDetails"), {}),
    (
        "guardduty_credential_exfiltration",
        (*_RES, "instanceDetails"),
        {
            "instanceId": "i-0a1b2c3d4e5f67890",
            "tags": [
                {"key": "env", "value": "prod"},
                {"key": "n", "value": 7},
                {"key": "f", "value": 1.5},
                {"key": "skipped", "value": None},
                {"key": 3, "value": "skipped"},
                {"key": "env", "value": "dev"},
            ],
        },
    ),
    (
        "guardduty_credential_exfiltration",
        (*_RES, "s3BucketDetails"),
        [
            {"name": "a", "arn": "arn:aws:s3:::a", "tags": [{"key": "k", "value": "v"}]},
            {"name": "a", "arn": "arn:aws:s3:::a"},  # the same bucket twice: listed once
            {"arn": "arn:aws:s3:::b"},
            {},
            None,
        ],
    ),
    (
        "guardduty_credential_exfiltration",
        (*_RES, "s3BucketDetails"),
        [{"name": f"bucket-{i}"} for i in range(150)],  # capped at RESOURCES_MAX
    ),
    (
        "guardduty_credential_exfiltration",
        (*_RES, "eksClusterDetails"),
        {"name": "prod", "arn": "arn:aws:eks:us-east-1:111122223333:cluster/prod"},
    ),
    ("guardduty_credential_exfiltration", (*_RES, "ecsClusterDetails"), {"name": "c"}),
    ("guardduty_credential_exfiltration", (*_RES, "lambdaDetails"), {"functionName": "f"}),
    (
        "guardduty_credential_exfiltration",
        (*_RES, "rdsDbInstanceDetails"),
        {"dbInstanceIdentifier": "db", "dbInstanceArn": "arn:aws:rds:us-east-1:1:db:db"},
    ),
    (
        "guardduty_ai_model_invocation",
        (*_RES, "modelDetails"),
        [
            {"modelId": "arn:aws:bedrock:us-west-2::foundation-model/a.b-v1:0"},
            {"modelId": "arn:aws:weird_svc:r:a:some-thing:y"},
            {"modelId": "arn:short"},
            {"modelId": "bare-model"},
            {"modelId": ""},
            {},
            None,
        ],
    ),
    ("guardduty_prompt_injection", (*_API, "serviceName"), "runtime.sagemaker.amazonaws.com"),
    ("guardduty_prompt_injection", (*_API, "serviceName"), "Runtime.SageMaker.amazonaws.com"),
    (
        "guardduty_credential_exfiltration",
        ("detail", "service", "action"),
        {  # an empty IP is no IP: the next action's is the actor's
            "awsApiCallAction": {"remoteIpDetails": {"ipAddressV4": ""}},
            "networkConnectionAction": {"remoteIpDetails": {"ipAddressV4": "203.0.113.9"}},
        },
    ),
    ("guardduty_prompt_injection", (*_RES, "bedrockGuardrailDetails", "guardrails"), None),
    (
        "guardduty_prompt_injection",
        (*_RES, "bedrockGuardrailDetails", "guardrails"),
        [{"arn": "arn:aws:bedrock:us-east-1:1:guardrail/other"}, {}, None],
    ),
]


# Variants that need more than one edit.
REGULAR_EDITS: list[tuple[str, list[tuple[tuple[str, ...], Any]]]] = [
    *((name, [(path, value)]) for name, path, value in REGULAR),
    (  # updatedAt unusable, createdAt absent: the event's own time
        "guardduty_credential_exfiltration",
        [(("detail", "updatedAt"), "yesterday"), (("detail", "createdAt"), None)],
    ),
    (  # no usable time at all
        "guardduty_credential_exfiltration",
        [(("detail", "updatedAt"), -1), (("detail", "createdAt"), None), (("time",), "")],
    ),
    (  # the root's account and region when the finding has none
        "guardduty_credential_exfiltration",
        [(("detail", "accountId"), None), (("detail", "region"), None), (("region",), "eu-west-1")],
    ),
]


@pytest.mark.parametrize(("name", "edits"), REGULAR_EDITS)
def test_regular_variants_take_the_fast_path_too(
    name: str, edits: list[tuple[tuple[str, ...], Any]]
) -> None:
    payload = load(name)
    for path, value in edits:
        _set(payload, path, value)
    assert guardduty._fast(payload, "guardduty") is not None
    kind, _ = _same_either_way(payload)
    assert kind == "alerts"


# Irregular shapes: the fast path declines them (and the Node path decides).
IRREGULAR: list[tuple[tuple[str, ...], Any]] = [
    (("detail", "id"), ""),
    (("detail", "id"), "   "),
    (("detail", "id"), "x" * 513),  # hashed by clip_id
    (("detail", "id"), "idé"),
    (("detail", "id"), 42),
    (("detail", "severity"), "8"),  # a number as text: the Node path takes it
    (("detail", "severity"), True),
    (("detail", "severity"), float("inf")),
    (("detail", "severity"), 10**400),
    (("detail", "title"), "t" * 1_001),  # clipped
    (("detail", "accountId"), 111122223333),  # a number as text
    (("detail", "type"), None),
    (("detail-type",), "AWS API Call via CloudTrail"),
    ((*_RES, "accessKeyDetails", "userName"), "ünïcode"),
    ((*_RES, "instanceDetails", "tags"), [{"key": "k", "value": 10**200}]),
    ((*_RES, "instanceDetails", "tags"), [{"key": "k", "value": "v"}] * 65),
    ((*_RES, "instanceDetails", "tags"), [{"key": "k" * 129, "value": "v"}]),  # clipped
    ((*_RES, "instanceDetails", "tags"), [{"key": "k", "value": "v" * 513}]),  # clipped
    ((*_RES, "instanceDetails", "tags"), [{"key": "k", "value": "välue"}]),
    ((*_RES, "instanceDetails", "tags"), [None]),
    ((*_RES, "s3BucketDetails"), [{"name": "b"}] * 1_001),
    ((*_RES, "s3BucketDetails"), {"name": "b"}),
    ((*_RES, "modelDetails"), ["model-id"]),
]


@pytest.mark.parametrize(("path", "value"), IRREGULAR)
def test_irregular_findings_are_declined_and_read_by_the_node_path(
    path: tuple[str, ...], value: Any
) -> None:
    payload = load("guardduty_credential_exfiltration")
    _set(payload, path, value)
    assert guardduty._fast(payload, "guardduty") is None
    _same_either_way(payload)


def _tags_of(outcome: Outcome) -> dict[str, str]:
    kind, alerts = outcome
    assert kind == "alerts", alerts
    assert isinstance(alerts, list)
    return {k: v for resource in alerts[0]["resources"] for k, v in resource["tags"].items()}


def test_a_huge_integer_tag_value_is_text_either_way() -> None:
    # str() refuses integers over 4,300 digits (a ValueError used to escape); such a value
    # is written as Node.text(numbers=True) writes it. json.loads refuses such numbers
    # itself, so only a Python caller can hand one over; the fast path declines it.
    payload = load("guardduty_sample")
    _set(payload, (*_RES, "instanceDetails", "tags"), [{"key": "k", "value": 10**5_000}])
    tags = _tags_of(_same_either_way(payload))
    assert tags["k"].startswith("0x")


def test_tag_values_that_are_not_finite_are_skipped_either_way() -> None:
    payload = load("guardduty_sample")
    pairs = [{"key": "nan", "value": float("nan")}, {"key": "inf", "value": float("inf")}]
    pairs.append({"key": "big", "value": 1e300})
    _set(payload, (*_RES, "instanceDetails", "tags"), pairs)
    assert _tags_of(_same_either_way(payload)) == {"big": "1e+300"}


@pytest.mark.parametrize("where", [("detail", "accountId"), ("account",)])
def test_a_numeric_account_id_is_read_as_text_wherever_it_is(where: tuple[str, ...]) -> None:
    # EventBridge sends both as text; a forwarder that turned one into a number is read
    # the same way at either place (it used to be refused at the root only).
    payload = load("guardduty_credential_exfiltration")
    _set(payload, ("detail", "accountId"), None)
    _set(payload, where, 111122223333)
    kind, alerts = _same_either_way(payload)
    assert kind == "alerts", alerts
    assert isinstance(alerts, list)
    assert alerts[0]["account"] == "111122223333"


# --- Property: random mutations of the documented findings ---------------------------

_ACTIONS = [
    "awsApiCallAction",
    "kubernetesApiCallAction",
    "rdsLoginAttemptAction",
    "networkConnectionAction",
]
_BLOCK_KEYS = {
    "eksClusterDetails": ("name", "arn"),
    "ecsClusterDetails": ("name", "arn"),
    "lambdaDetails": ("functionName", "functionArn"),
    "rdsDbInstanceDetails": ("dbInstanceIdentifier", "dbInstanceArn"),
}
PATHS: list[tuple[str, ...]] = [
    ("detail-type",),
    ("detail",),
    ("time",),
    ("account",),
    ("region",),
    *(
        ("detail", key)
        for key in (
            "id",
            "arn",
            "type",
            "severity",
            "title",
            "description",
            "updatedAt",
            "createdAt",
            "accountId",
            "region",
            "partition",
            "resource",
            "service",
        )
    ),
    ("detail", "service", "action"),
    *(("detail", "service", "action", name) for name in _ACTIONS),
    *(("detail", "service", "action", name, "remoteIpDetails") for name in _ACTIONS),
    *(("detail", "service", "action", name, "remoteIpDetails", "ipAddressV4") for name in _ACTIONS),
    (*_API, "serviceName"),
    (*_RES, "accessKeyDetails"),
    *((*_RES, "accessKeyDetails", key) for key in ("accessKeyId", "principalId", "userType")),
    (*_RES, "accessKeyDetails", "userName"),
    (*_RES, "instanceDetails"),
    (*_RES, "instanceDetails", "instanceId"),
    (*_RES, "instanceDetails", "tags"),
    (*_RES, "s3BucketDetails"),
    *((*_RES, block) for block in _BLOCK_KEYS),
    *((*_RES, block, key) for block, keys in _BLOCK_KEYS.items() for key in (*keys, "tags")),
    (*_RES, "modelDetails"),
    (*_RES, "bedrockGuardrailDetails"),
    (*_RES, "bedrockGuardrailDetails", "guardrails"),
    (*_RES, "bedrockGuardrailDetails", "guardrailArn"),
]


class _Text(str):
    """Text that is not exactly `str` (the Node path takes it; the fast path declines)."""


TEXTS = st.sampled_from(
    [
        "",
        " ",
        "\t",
        "x",
        "GuardDuty Finding",
        "AssumedRole",
        "IAMUser",
        "aws",
        "aws-us-gov",
        "us-east-1",
        "eu-central-2",
        "111122223333",
        "1111222233334",
        "i-0a1b2c3d4e5f67890",
        "i-9999",
        "AROAEXAMPLE:i-0a1b2c3d4e5f67890",
        "AROAEXAMPLE:i-0a1b2c3d4e5f67890:extra",
        "a:b:i-0123abcd",
        "AROAEXAMPLE:chat-frontend",
        "arn:aws:iam::111122223333:role/x",
        "arn:",
        "arnold",
        "arn:aws:s3:::bucket",
        "arn:aws:sagemaker:us-west-2:111122223333:endpoint/fraud-scoring",
        "arn:aws:bedrock:us-east-1:111122223333:guardrail/abc123def456",
        "arn:aws:bedrock:us-west-2::foundation-model/a.b-v1:0",
        "arn:aws:weird_svc:r:a:some-thing:y",
        "runtime.sagemaker.amazonaws.com",
        "Runtime.SageMaker.amazonaws.com",
        "bedrock.amazonaws.com",
        "198.51.100.23",
        "8",
        " 7.5 ",
        "1e999",
        "2024-05-14T09:20:59.871Z",
        "2024-05-14T09:20:59.8712345+02:00",
        "1715678459",
        "not a time",
        "ünïcode",
        "日本語",
        "x" * 513,
        "x" * 1_001,
        "x" * 2_049,
        "x" * 10_001,
    ]
) | st.text(max_size=12)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**12), max_value=10**13)
    | st.sampled_from([0, -1, 10**100, 10**300, -(10**301), 1_715_678_459_871])
    | st.floats(allow_nan=True, allow_infinity=True)
    | TEXTS
    | TEXTS.map(_Text)
)
TAG = st.fixed_dictionaries({}, optional={"key": SCALARS, "value": SCALARS})
TAGS = st.lists(TAG | SCALARS, max_size=4) | st.builds(
    lambda tag, n: [tag] * n, TAG, st.integers(60, 70)
)
ITEM = st.fixed_dictionaries(
    {},
    optional={
        "name": TEXTS,
        "arn": SCALARS,
        "modelId": SCALARS,
        "tags": TAGS,
        "instanceId": TEXTS,
        "remoteIpDetails": st.fixed_dictionaries({}, optional={"ipAddressV4": SCALARS}),
    },
)
LISTS = (
    st.lists(ITEM | SCALARS, max_size=5)
    | st.builds(lambda item, n: [item] * n, ITEM, st.sampled_from([2, 99, 101, 1_000, 1_001]))
    | st.builds(
        lambda n: [{"name": f"b{i}", "modelId": f"m{i}"} for i in range(n)],
        st.sampled_from([99, 100, 101, 150]),
    )
)
# Plain text and lists of items twice as likely as the rest: they keep more findings
# well-formed, so the fast path is taken often enough to be compared.
VALUES = st.one_of(
    TEXTS,
    TEXTS,
    LISTS,
    LISTS,
    SCALARS,
    ITEM,
    ITEM.map(OrderedDict),
    st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3), max_leaves=5),
)


_DOC_PAYLOADS = {name: load(name) for name in DOCS}


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """A documented finding with one to four values at GuardDuty paths replaced or removed."""
    payload = copy.deepcopy(_DOC_PAYLOADS[draw(st.sampled_from(DOCS))])
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(PATHS))
        if draw(st.integers(0, 4)) == 0:
            parent: Any = payload
            for key in path[:-1]:
                parent = parent.get(key) if isinstance(parent, dict) else None
            if isinstance(parent, dict):
                parent.pop(path[-1], None)
        else:
            _set(payload, path, draw(VALUES))
    return payload


@settings(max_examples=300, deadline=None, database=None)
@given(payload=mutated(), trusted=st.booleans())
def test_mutated_findings_give_the_same_outcome_either_way(payload: Any, trusted: bool) -> None:
    guardduty._fast(payload, "guardduty")  # never raises, whatever it is given
    _same_either_way(payload, trusted=trusted)


@settings(max_examples=100, deadline=None, database=None)
@given(payload=VALUES)
def test_the_fast_path_never_raises_on_any_value(payload: Any) -> None:
    guardduty._fast(payload, "guardduty")
    guardduty._fast({"detail": payload}, "guardduty")
    _same_either_way({"detail": payload})
