"""Whatever arrives, a verifier answers Verified or AuthError, nothing else."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from irbook.triggers.auth import REASONS, AuthError, Verified, Verifier, build_verifier
from tests.support import signing

NOW = 1_700_000_000
WHSEC = signing.new_whsec(b"fuzz")

CONFIGS: list[dict[str, Any]] = [
    {"scheme": "hmac_sha256", "secrets": ["fuzz-a", "fuzz-b"]},
    {"scheme": "hmac_sha256", "secret": "fuzz-a", "prefix": "", "header": "X-Sig"},
    {"scheme": "standard_webhooks", "secrets": [WHSEC]},
    {"scheme": "pagerduty_v3", "secret": "fuzz-a"},
    {"scheme": "slack", "secret": "fuzz-a"},
    {"scheme": "bearer", "tokens": ["fuzz-token"], "delivery_header": "X-Request-Id"},
    {"scheme": "api_key", "token": "fuzz-token", "prefix": "Key "},
]
VERIFIERS = [build_verifier(c) for c in CONFIGS]

NAMES = [
    "X-Hub-Signature-256",
    "X-GitHub-Delivery",
    "X-Sig",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "X-PagerDuty-Signature",
    "X-Webhook-Id",
    "X-Slack-Signature",
    "X-Slack-Request-Timestamp",
    "Authorization",
    "X-API-Key",
    "X-Request-Id",
]
header_names = st.one_of(
    st.sampled_from(NAMES),
    st.sampled_from(NAMES).map(str.upper),
    st.sampled_from(NAMES).map(str.lower),
    st.text(max_size=20),
)
# Values shaped like the real thing are where parsers break, so most are near-misses.
header_values = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda prefix, rest: prefix + rest,
        st.sampled_from(
            ["sha256=", "v1=", "v0=", "v1,", "v1a,", "Bearer ", "bearer ", "Key ", "v1=,", " "]
        ),
        st.one_of(
            st.text(alphabet="0123456789abcdefABCDEF", max_size=70),
            st.text(alphabet="ABCDEFabcdef0123456789+/=", max_size=50),
            st.text(max_size=70),
        ),
    ),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.just(str(NOW)),
)
headers_strategy = st.dictionaries(header_names, header_values, max_size=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    headers=headers_strategy,
    body=st.binary(max_size=256),
    now=st.floats(min_value=0, max_value=4e9, allow_nan=False),
)
def test_random_requests_only_ever_raise_auth_error(
    headers: dict[str, str], body: bytes, now: float
) -> None:
    for verifier in VERIFIERS:
        check(verifier, headers, body, now)


@settings(max_examples=200, deadline=None)
@given(
    body=st.binary(max_size=256),
    other=st.binary(max_size=256),
    ts=st.integers(min_value=NOW - 600, max_value=NOW + 600),
)
def test_a_signature_never_carries_over_to_another_body(body: bytes, other: bytes, ts: int) -> None:
    if body == other:
        return
    cases: list[tuple[Verifier, dict[str, str]]] = [
        (VERIFIERS[0], {"X-Hub-Signature-256": signing.github("fuzz-a", body)}),
        (
            VERIFIERS[2],
            {
                "webhook-id": "msg_1",
                "webhook-timestamp": str(ts),
                "webhook-signature": signing.standard(WHSEC, "msg_1", str(ts), body),
            },
        ),
        (VERIFIERS[3], {"X-PagerDuty-Signature": signing.pagerduty(["fuzz-a"], body)}),
        (
            VERIFIERS[4],
            {
                "X-Slack-Request-Timestamp": str(ts),
                "X-Slack-Signature": signing.slack("fuzz-a", str(ts), body),
            },
        ),
    ]
    for verifier, headers in cases:
        fresh = verifier.tolerance is None or abs(ts - NOW) <= verifier.tolerance
        try:
            verifier.verify(headers, body, NOW)
            assert fresh
        except AuthError as error:
            assert not fresh and error.reason in {"stale-timestamp", "future-timestamp"}
        try:
            verifier.verify(headers, other, NOW)
        except AuthError as error:
            assert error.reason == "bad-signature"
        else:
            raise AssertionError(f"{verifier.scheme} accepted a signature for another body")


def check(verifier: Verifier, headers: dict[str, str], body: bytes, now: float) -> None:
    try:
        result = verifier.verify(headers, body, now)
    except AuthError as error:
        assert error.reason in REASONS
        return
    # Random input that verifies can only be a static token the fuzzer guessed.
    assert isinstance(result, Verified)
    assert result.scheme in {"bearer", "api_key"}
