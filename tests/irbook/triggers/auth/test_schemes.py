"""Every scheme against what a sender (or an attacker) can actually send."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from irbook.triggers.auth import (
    QUERY,
    REASONS,
    AuthError,
    Verified,
    Verifier,
    build_verifier,
)
from irbook.triggers.limits import ReplayGuard
from tests.support import signing

NOW = 1_700_000_000
BODY = b'{"alert":{"id":"a-1","severity":"high","title":"GuardDuty: key used from Tor"}}'


@dataclass(frozen=True)
class Scheme:
    name: str
    secrets: tuple[str, str, str]  # old, new, removed
    config: Callable[[list[str]], dict[str, Any]]
    sign: Callable[[str, bytes, int, str], dict[str, str]]
    auth_header: str
    missing: str
    bad: str
    signs_body: bool = True
    timestamped: bool = False

    def verifier(self, *secrets: str) -> Verifier:
        return build_verifier(self.config(list(secrets or self.secrets[:1])))

    def __str__(self) -> str:
        return self.name


SCHEMES = [
    Scheme(
        name="hmac_sha256",
        secrets=("gh-old-secret", "gh-new-secret", "gh-removed-secret"),
        config=lambda s: {"scheme": "hmac_sha256", "secrets": s},
        sign=lambda secret, body, ts, did: {
            "X-Hub-Signature-256": signing.github(secret, body),
            "X-GitHub-Delivery": did,
            "X-GitHub-Event": "ping",
        },
        auth_header="X-Hub-Signature-256",
        missing="missing-signature",
        bad="bad-signature",
    ),
    Scheme(
        name="pagerduty_v3",
        secrets=("pd-old-secret", "pd-new-secret", "pd-removed-secret"),
        config=lambda s: {"scheme": "pagerduty_v3", "secrets": s},
        sign=lambda secret, body, ts, did: {
            "X-PagerDuty-Signature": signing.pagerduty([secret], body),
            "X-Webhook-Id": did,
        },
        auth_header="X-PagerDuty-Signature",
        missing="missing-signature",
        bad="bad-signature",
    ),
    Scheme(
        name="slack",
        secrets=("slack-old-secret", "slack-new-secret", "slack-removed-secret"),
        config=lambda s: {"scheme": "slack", "secrets": s},
        sign=lambda secret, body, ts, did: {
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": signing.slack(secret, str(ts), body),
        },
        auth_header="X-Slack-Signature",
        missing="missing-signature",
        bad="bad-signature",
        timestamped=True,
    ),
    Scheme(
        name="standard_webhooks",
        secrets=(
            signing.new_whsec(b"old"),
            signing.new_whsec(b"new"),
            signing.new_whsec(b"removed"),
        ),
        config=lambda s: {"scheme": "standard_webhooks", "secrets": s},
        sign=lambda secret, body, ts, did: {
            "webhook-id": did,
            "webhook-timestamp": str(ts),
            "webhook-signature": signing.standard(secret, did, str(ts), body),
        },
        auth_header="webhook-signature",
        missing="missing-signature",
        bad="bad-signature",
        timestamped=True,
    ),
    Scheme(
        name="bearer",
        secrets=("tok-old-0123456789", "tok-new-0123456789", "tok-removed-0123456789"),
        config=lambda s: {"scheme": "bearer", "tokens": s, "delivery_header": "X-Request-Id"},
        sign=lambda secret, body, ts, did: {
            "Authorization": f"Bearer {secret}",
            "X-Request-Id": did,
        },
        auth_header="Authorization",
        missing="missing-token",
        bad="bad-token",
        signs_body=False,
    ),
    Scheme(
        name="api_key",
        secrets=("key-old-0123456789", "key-new-0123456789", "key-removed-0123456789"),
        config=lambda s: {"scheme": "api_key", "tokens": s, "delivery_header": "X-Request-Id"},
        sign=lambda secret, body, ts, did: {"X-API-Key": secret, "X-Request-Id": did},
        auth_header="X-API-Key",
        missing="missing-token",
        bad="bad-token",
        signs_body=False,
    ),
    Scheme(
        name="basic",
        secrets=("pw-old-0123456789", "pw-new-0123456789", "pw-removed-0123456789"),
        config=lambda s: {
            "scheme": "basic",
            "username": "irbook",
            "passwords": s,
            "delivery_header": "X-Request-Id",
        },
        sign=lambda secret, body, ts, did: {
            "Authorization": "Basic " + base64.b64encode(f"irbook:{secret}".encode()).decode(),
            "X-Request-Id": did,
        },
        auth_header="Authorization",
        missing="missing-token",
        bad="bad-token",
        signs_body=False,
    ),
    Scheme(
        name="url_token",
        secrets=("url-old-0123456789", "url-new-0123456789", "url-removed-0123456789"),
        config=lambda s: {"scheme": "url_token", "tokens": s, "delivery_header": "X-Request-Id"},
        sign=lambda secret, body, ts, did: {QUERY: f"a=1&token={secret}", "X-Request-Id": did},
        auth_header=QUERY,
        missing="missing-token",
        bad="bad-token",
        signs_body=False,
    ),
]
SIGNING = [s for s in SCHEMES if s.signs_body]
TIMED = [s for s in SCHEMES if s.timestamped]


def reason(
    verifier: Verifier, headers: dict[str, str], body: bytes = BODY, now: float = NOW
) -> str:
    with pytest.raises(AuthError) as caught:
        verifier.verify(headers, body, now)
    assert caught.value.reason in REASONS
    return caught.value.reason


# -- every scheme ----------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES, ids=str)
def test_a_correctly_signed_request_verifies(scheme: Scheme) -> None:
    old = scheme.secrets[0]
    verified = scheme.verifier().verify(scheme.sign(old, BODY, NOW, "d-1"), BODY, NOW)
    assert verified.scheme == scheme.name
    assert verified.key_index == 0
    assert verified.timestamp == (NOW if scheme.timestamped else None)
    assert verified.replay_key is not None


@pytest.mark.parametrize("scheme", SCHEMES, ids=str)
def test_a_request_signed_with_another_secret_is_refused(scheme: Scheme) -> None:
    headers = scheme.sign(scheme.secrets[2], BODY, NOW, "d-1")
    assert reason(scheme.verifier(), headers) == scheme.bad


@pytest.mark.parametrize("scheme", SCHEMES, ids=str)
def test_a_request_without_the_auth_header_is_refused(scheme: Scheme) -> None:
    headers = scheme.sign(scheme.secrets[0], BODY, NOW, "d-1")
    del headers[scheme.auth_header]
    assert reason(scheme.verifier(), headers) == scheme.missing
    assert reason(scheme.verifier(), {}) == scheme.missing


@pytest.mark.parametrize("scheme", SCHEMES, ids=str)
def test_rotation_accepts_old_and_new_and_forgets_a_removed_key(scheme: Scheme) -> None:
    old, new, _ = scheme.secrets
    during = scheme.verifier(old, new)
    assert during.verify(scheme.sign(old, BODY, NOW, "d-1"), BODY, NOW).key_index == 0
    assert during.verify(scheme.sign(new, BODY, NOW, "d-2"), BODY, NOW).key_index == 1
    after = scheme.verifier(new)
    assert after.verify(scheme.sign(new, BODY, NOW, "d-3"), BODY, NOW).key_index == 0
    assert reason(after, scheme.sign(old, BODY, NOW, "d-4")) == scheme.bad


@pytest.mark.parametrize("scheme", SCHEMES, ids=str)
@pytest.mark.parametrize("case", [str.lower, str.upper, str.swapcase])
def test_header_names_are_case_insensitive(scheme: Scheme, case: Callable[[str], str]) -> None:
    headers = scheme.sign(scheme.secrets[0], BODY, NOW, "d-1")
    recased = {case(k): v for k, v in headers.items()}
    assert scheme.verifier().verify(recased, BODY, NOW).scheme == scheme.name


@pytest.mark.parametrize("scheme", SCHEMES, ids=str)
def test_the_same_header_twice_with_different_values_is_refused(scheme: Scheme) -> None:
    good = scheme.sign(scheme.secrets[0], BODY, NOW, "d-1")
    forged = scheme.sign(scheme.secrets[2], BODY, NOW, "d-1")
    headers = dict(good)
    headers[scheme.auth_header.lower()] = good[scheme.auth_header]
    headers[scheme.auth_header.upper()] = forged[scheme.auth_header]
    assert reason(scheme.verifier(), headers) == "malformed-header"
    # The same value twice (two spellings) is not ambiguous.
    same = dict(good)
    same[scheme.auth_header.upper()] = good[scheme.auth_header]
    assert scheme.verifier().verify(same, BODY, NOW).scheme == scheme.name


@pytest.mark.parametrize("scheme", SCHEMES, ids=str)
def test_no_secret_reaches_an_error_or_a_repr(scheme: Scheme) -> None:
    verifier = scheme.verifier(*scheme.secrets[:2])
    for secret in scheme.secrets[:2]:
        assert secret not in repr(verifier)
    headers = scheme.sign(scheme.secrets[2], BODY, NOW, "d-1")
    with pytest.raises(AuthError) as caught:
        verifier.verify(headers, BODY, NOW)
    text = str(caught.value) + repr(caught.value) + repr(caught.value.args)
    assert text.count(caught.value.reason) >= 1
    for secret in scheme.secrets:
        assert secret not in text
    assert BODY.decode() not in text
    assert headers[scheme.auth_header] not in text


@pytest.mark.parametrize("scheme", SCHEMES, ids=str)
def test_a_replayed_delivery_is_refused_by_the_replay_guard(scheme: Scheme, tmp_path: Path) -> None:
    verifier = scheme.verifier()
    headers = scheme.sign(scheme.secrets[0], BODY, NOW, "d-1")
    with ReplayGuard(tmp_path / "irbook.db") as guard:
        first = verifier.verify(headers, BODY, NOW)
        assert first.replay_key is not None
        assert not guard.seen_before(scheme.name, first.replay_key, NOW)
        again = verifier.verify(headers, BODY, NOW + 30)
        assert again.replay_key is not None
        assert guard.seen_before(scheme.name, again.replay_key, NOW + 30)
        other = scheme.sign(scheme.secrets[0], BODY + b" ", NOW, "d-2")
        fresh = verifier.verify(other, BODY + b" ", NOW)
        assert fresh.replay_key is not None
        assert not guard.seen_before(scheme.name, fresh.replay_key, NOW)


# -- schemes that sign the body ----------------------------------------------------------


@pytest.mark.parametrize("scheme", SIGNING, ids=str)
def test_any_flipped_bit_in_the_body_breaks_the_signature(scheme: Scheme) -> None:
    verifier = scheme.verifier()
    headers = scheme.sign(scheme.secrets[0], BODY, NOW, "d-1")
    for position in range(len(BODY)):
        for bit in (0x01, 0x80):
            changed = bytearray(BODY)
            changed[position] ^= bit
            assert reason(verifier, headers, bytes(changed)) == "bad-signature"
    assert reason(verifier, headers, BODY + b"\n") == "bad-signature"
    assert reason(verifier, headers, BODY[:-1]) == "bad-signature"
    assert reason(verifier, headers, b"") == "bad-signature"


@pytest.mark.parametrize("scheme", SIGNING, ids=str)
def test_a_replay_with_a_new_unsigned_delivery_id_is_still_caught(
    scheme: Scheme, tmp_path: Path
) -> None:
    """Whoever captures a request can rewrite any header the signature does not cover."""
    verifier = scheme.verifier()
    with ReplayGuard(tmp_path / "irbook.db") as guard:
        first = verifier.verify(scheme.sign(scheme.secrets[0], BODY, NOW, "d-1"), BODY, NOW)
        assert first.replay_key is not None
        assert not guard.seen_before("src", first.replay_key, NOW)
        headers = scheme.sign(scheme.secrets[0], BODY, NOW, "d-1")
        for name in ("X-GitHub-Delivery", "X-Webhook-Id"):
            if name in headers:
                headers[name] = "rewritten-by-attacker"
        if scheme.name == "standard_webhooks":
            # The id is signed: changing it breaks the signature instead.
            headers["webhook-id"] = "rewritten-by-attacker"
            assert reason(verifier, headers) == "bad-signature"
            return
        replay = verifier.verify(headers, BODY, NOW + 5)
        assert replay.replay_key is not None
        assert guard.seen_before("src", replay.replay_key, NOW + 5)


@pytest.mark.parametrize("scheme", SIGNING, ids=str)
def test_a_signature_of_the_wrong_length_or_alphabet_is_malformed(scheme: Scheme) -> None:
    headers = scheme.sign(scheme.secrets[0], BODY, NOW, "d-1")
    value = headers[scheme.auth_header]
    for broken in (value[:-2], value + "00", value[:-1] + "!", value + "é", " "):
        headers[scheme.auth_header] = broken
        assert reason(scheme.verifier(), headers) == "malformed-header", broken


# -- schemes with a signed timestamp --------------------------------------------------------


@pytest.mark.parametrize("scheme", TIMED, ids=str)
def test_the_timestamp_must_be_within_five_minutes_either_way(scheme: Scheme) -> None:
    verifier = scheme.verifier()
    headers = scheme.sign(scheme.secrets[0], BODY, NOW, "d-1")
    assert verifier.tolerance == 300
    assert verifier.verify(headers, BODY, NOW + 300).timestamp == NOW
    assert verifier.verify(headers, BODY, NOW - 300).timestamp == NOW
    assert reason(verifier, headers, now=NOW + 301) == "stale-timestamp"
    assert reason(verifier, headers, now=NOW + 86_400) == "stale-timestamp"
    assert reason(verifier, headers, now=NOW - 301) == "future-timestamp"


@pytest.mark.parametrize("scheme", TIMED, ids=str)
def test_the_tolerance_is_configurable(scheme: Scheme) -> None:
    verifier = build_verifier({**scheme.config([scheme.secrets[0]]), "tolerance": 60})
    headers = scheme.sign(scheme.secrets[0], BODY, NOW, "d-1")
    assert verifier.verify(headers, BODY, NOW + 60).timestamp == NOW
    assert reason(verifier, headers, now=NOW + 61) == "stale-timestamp"


@pytest.mark.parametrize("scheme", TIMED, ids=str)
def test_moving_the_timestamp_breaks_the_signature(scheme: Scheme) -> None:
    """The timestamp is signed, so a replayer cannot refresh it."""
    headers = scheme.sign(scheme.secrets[0], BODY, NOW - 3600, "d-1")
    ts_header = next(k for k in headers if "timestamp" in k.lower())
    headers[ts_header] = str(NOW)
    assert reason(scheme.verifier(), headers) == "bad-signature"


@pytest.mark.parametrize("scheme", TIMED, ids=str)
def test_a_forged_old_request_is_reported_as_forged_not_as_old(scheme: Scheme) -> None:
    """The signature is checked first, so 'stale-timestamp' always means a real sender."""
    headers = scheme.sign(scheme.secrets[2], BODY, NOW - 3600, "d-1")
    assert reason(scheme.verifier(), headers) == "bad-signature"


@pytest.mark.parametrize("scheme", TIMED, ids=str)
@pytest.mark.parametrize(
    "value", ["", "abc", "-1700000000", "+1700000000", "1.7e9", "١٢٣", "9" * 40]
)
def test_a_timestamp_that_is_not_unix_seconds_is_malformed(scheme: Scheme, value: str) -> None:
    headers = scheme.sign(scheme.secrets[0], BODY, NOW, "d-1")
    ts_header = next(k for k in headers if "timestamp" in k.lower())
    headers[ts_header] = value
    assert reason(scheme.verifier(), headers) == "malformed-header"


@pytest.mark.parametrize("scheme", TIMED, ids=str)
def test_a_missing_timestamp_is_refused(scheme: Scheme) -> None:
    headers = scheme.sign(scheme.secrets[0], BODY, NOW, "d-1")
    ts_header = next(k for k in headers if "timestamp" in k.lower())
    del headers[ts_header]
    assert reason(scheme.verifier(), headers) == "missing-timestamp"


# -- GitHub-style hmac_sha256 -------------------------------------------------------------


def test_github_documented_test_vector() -> None:
    # docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
    secret = "It's a Secret to Everybody"
    body = b"Hello, World!"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert signing.github(secret, body) == expected
    verifier = build_verifier({"scheme": "hmac_sha256", "secret": secret})
    verified = verifier.verify(
        {"X-Hub-Signature-256": expected, "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab"},
        body,
        NOW,
    )
    assert verified.delivery_id == "72d3162e-cc78-11e3-81ab"
    assert verified.delivery_id_signed is False
    assert reason(verifier, {"X-Hub-Signature-256": expected}, b"Hello, World?") == "bad-signature"


def test_hmac_sha256_header_prefix_and_delivery_header_are_configurable() -> None:
    verifier = build_verifier(
        {
            "scheme": "hmac_sha256",
            "secret": "s3cr3t-value",
            "header": "X-Signature",
            "prefix": "",
            "delivery_header": "X-Event-Id",
        }
    )
    bare = signing.github("s3cr3t-value", BODY).removeprefix("sha256=")
    verified = verifier.verify({"x-signature": bare, "x-event-id": "e-9"}, BODY, NOW)
    assert verified.delivery_id == "e-9"
    upper = verifier.verify({"X-Signature": bare.upper()}, BODY, NOW)
    assert upper.delivery_id is None
    assert reason(verifier, {"X-Hub-Signature-256": "sha256=" + bare}) == "missing-signature"


@pytest.mark.parametrize(
    "value",
    [
        "sha1=" + "0" * 40,
        "0" * 64,
        "sha256=" + "z" * 64,
        "sha256:" + "0" * 64,
        "SHA256=" + "0" * 64,
        "sha256=" + "ab " * 16 + "ab" * 8,  # 64 characters, 24 bytes
    ],
)
def test_hmac_sha256_malformed_headers(value: str) -> None:
    verifier = build_verifier({"scheme": "hmac_sha256", "secret": "s3cr3t-value"})
    assert reason(verifier, {"X-Hub-Signature-256": value}) == "malformed-header"


def test_hmac_sha256_delivery_id_can_be_switched_off_and_is_bounded() -> None:
    headers = {"X-Hub-Signature-256": signing.github("s", BODY), "X-GitHub-Delivery": "d-1"}
    off = build_verifier({"scheme": "hmac_sha256", "secret": "s", "delivery_header": None})
    assert off.verify(headers, BODY, NOW).delivery_id is None
    on = build_verifier({"scheme": "hmac_sha256", "secret": "s"})
    headers["X-GitHub-Delivery"] = "x" * 257
    assert reason(on, headers) == "malformed-header"
    headers["X-GitHub-Delivery"] = "line\nbreak"
    assert reason(on, headers) == "malformed-header"


# -- PagerDuty v3 ---------------------------------------------------------------------------


def test_pagerduty_accepts_any_of_several_signatures_during_its_rotation() -> None:
    verifier = build_verifier({"scheme": "pagerduty_v3", "secret": "pd-current"})
    header = signing.pagerduty(["pd-previous", "pd-current"], BODY)
    assert header.count("v1=") == 2
    verified = verifier.verify({"X-PagerDuty-Signature": header, "X-Webhook-Id": "wh-1"}, BODY, NOW)
    assert verified.delivery_id == "wh-1"
    spaced = header.replace(",", ", ")
    assert verifier.verify({"X-PagerDuty-Signature": spaced}, BODY, NOW).delivery_id is None


def test_pagerduty_ignores_unknown_versions_and_junk_entries_next_to_a_good_one() -> None:
    verifier = build_verifier({"scheme": "pagerduty_v3", "secret": "pd-current"})
    good = signing.pagerduty(["pd-current"], BODY)
    header = f"v2={'0' * 64},v1=nothex,{good},garbage"
    assert verifier.verify({"X-PagerDuty-Signature": header}, BODY, NOW).key_index == 0
    # Only unknown versions: nothing to check, so nothing is authenticated.
    only_v2 = {"X-PagerDuty-Signature": f"v2={'0' * 64}"}
    assert reason(verifier, only_v2) == "bad-signature"
    assert reason(verifier, {"X-PagerDuty-Signature": "v1=nothex,garbage"}) == "malformed-header"


# -- Slack ----------------------------------------------------------------------------------

# api.slack.com/authentication/verifying-requests-from-slack, the worked example.
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TS = "1531420618"
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
    b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
    b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com"
    b"%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


def test_slack_documented_test_vector() -> None:
    assert signing.slack(SLACK_SECRET, SLACK_TS, SLACK_BODY) == SLACK_SIGNATURE
    verifier = build_verifier({"scheme": "slack", "secret": SLACK_SECRET})
    headers = {"X-Slack-Request-Timestamp": SLACK_TS, "X-Slack-Signature": SLACK_SIGNATURE}
    verified = verifier.verify(headers, SLACK_BODY, int(SLACK_TS) + 12)
    assert verified.timestamp == int(SLACK_TS)
    assert verified.delivery_id is None
    assert reason(verifier, headers, SLACK_BODY, now=int(SLACK_TS) + 301) == "stale-timestamp"


@pytest.mark.parametrize(
    "value", ["v1=" + SLACK_SIGNATURE[3:], SLACK_SIGNATURE[3:], "v0=" + "g" * 64, "v0="]
)
def test_slack_malformed_signatures(value: str) -> None:
    verifier = build_verifier({"scheme": "slack", "secret": SLACK_SECRET})
    headers = {"X-Slack-Request-Timestamp": SLACK_TS, "X-Slack-Signature": value}
    assert reason(verifier, headers, SLACK_BODY, now=int(SLACK_TS)) == "malformed-header"


# -- Standard Webhooks ------------------------------------------------------------------------

# The reference implementation's test vector (standard-webhooks/standard-webhooks,
# libraries/python/tests/test_webhooks.py, test_sign_function).
SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SW_TS = 1614265330
SW_BODY = b'{"test": 2432232314}'
SW_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def sw_headers(signature: str = SW_SIGNATURE) -> dict[str, str]:
    return {"webhook-id": SW_ID, "webhook-timestamp": str(SW_TS), "webhook-signature": signature}


def test_standard_webhooks_reference_test_vector() -> None:
    assert signing.standard(SW_SECRET, SW_ID, str(SW_TS), SW_BODY) == SW_SIGNATURE
    verifier = build_verifier({"scheme": "standard_webhooks", "secret": SW_SECRET})
    verified = verifier.verify(sw_headers(), SW_BODY, SW_TS + 1)
    assert verified == Verified(
        scheme="standard_webhooks",
        delivery_id=SW_ID,
        timestamp=SW_TS,
        replay_key="id:" + SW_ID,
        key_index=0,
        delivery_id_signed=True,
    )
    # The reference suite's "invalid signature": one base64 character changed.
    bad = sw_headers("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=")
    assert reason(verifier, bad, SW_BODY, now=SW_TS) == "bad-signature"


def test_standard_webhooks_secret_without_prefix_or_as_raw_bytes() -> None:
    import base64

    for secret in (SW_SECRET.removeprefix("whsec_"), base64.b64decode(SW_SECRET[6:])):
        verifier = build_verifier({"scheme": "standard_webhooks", "secret": secret})
        assert verifier.verify(sw_headers(), SW_BODY, SW_TS).delivery_id == SW_ID


def test_standard_webhooks_one_good_signature_among_several_is_enough() -> None:
    # As in the reference suite: unknown versions and wrong v1 entries around a good one.
    junk = "Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
    header = " ".join([f"v1,{junk}", f"v2,{junk}", SW_SIGNATURE, f"v1,{junk}", "v1a,AAAA"])
    verifier = build_verifier({"scheme": "standard_webhooks", "secret": SW_SECRET})
    assert verifier.verify(sw_headers(header), SW_BODY, SW_TS).timestamp == SW_TS
    assert reason(verifier, sw_headers(f"v1,{junk} v2,{junk}"), SW_BODY, SW_TS) == "bad-signature"
    assert reason(verifier, sw_headers(f"v2,{junk}"), SW_BODY, SW_TS) == "bad-signature"


@pytest.mark.parametrize(
    "signature",
    ["v1" + SW_SIGNATURE[3:], "v1,not base64!", "v1,", SW_SIGNATURE[3:], "v1,AAAA"],
)
def test_standard_webhooks_malformed_signatures(signature: str) -> None:
    verifier = build_verifier({"scheme": "standard_webhooks", "secret": SW_SECRET})
    assert reason(verifier, sw_headers(signature), SW_BODY, SW_TS) == "malformed-header"


def test_standard_webhooks_requires_the_id() -> None:
    verifier = build_verifier({"scheme": "standard_webhooks", "secret": SW_SECRET})
    headers = sw_headers()
    del headers["webhook-id"]
    assert reason(verifier, headers, SW_BODY, SW_TS) == "missing-delivery-id"


def test_standard_webhooks_refuses_ids_that_could_shift_the_signed_fields() -> None:
    """`{id}.{ts}.{body}` only parses one way when the id has no '.'."""
    secret = signing.new_whsec(b"k")
    verifier = build_verifier({"scheme": "standard_webhooks", "secret": secret})
    # A genuine message whose body happens to start with "<digits>.":
    real_ts, body = NOW - 3600, f"{NOW}.payload".encode()
    signature = signing.standard(secret, "msg", str(real_ts), body)
    # ...re-cut so the old timestamp moves into the id and part of the body becomes a
    # fresh timestamp: the signed bytes are identical.
    shifted = {
        "webhook-id": f"msg.{real_ts}",
        "webhook-timestamp": str(NOW),
        "webhook-signature": signature,
    }
    assert reason(verifier, shifted, b"payload") == "malformed-header"


def test_standard_webhooks_signature_covers_id_and_timestamp() -> None:
    verifier = build_verifier({"scheme": "standard_webhooks", "secret": SW_SECRET})
    headers = sw_headers()
    headers["webhook-id"] = SW_ID + "x"
    assert reason(verifier, headers, SW_BODY, SW_TS) == "bad-signature"
    headers = sw_headers()
    headers["webhook-timestamp"] = str(SW_TS + 1)
    assert reason(verifier, headers, SW_BODY, SW_TS) == "bad-signature"


def test_standard_webhooks_retries_of_one_message_share_a_replay_key(tmp_path: Path) -> None:
    """A sender retrying re-signs with a new timestamp but keeps the id."""
    secret = signing.new_whsec(b"k")
    verifier = build_verifier({"scheme": "standard_webhooks", "secret": secret})
    with ReplayGuard(tmp_path / "irbook.db") as guard:
        for attempt, ts in enumerate((NOW, NOW + 5, NOW + 65)):
            headers = {
                "webhook-id": "msg_1",
                "webhook-timestamp": str(ts),
                "webhook-signature": signing.standard(secret, "msg_1", str(ts), BODY),
            }
            key = verifier.verify(headers, BODY, ts).replay_key
            assert key == "id:msg_1"
            assert guard.seen_before("sw", key, ts) is (attempt > 0)


# -- static tokens --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        ("Basic dXNlcjpwYXNz", "malformed-header"),
        ("Token tok-old-0123456789", "malformed-header"),
        ("Bearer", "missing-token"),
        ("Bearer   ", "missing-token"),
        ("", "missing-token"),
        ("Bearer tok-old-012345678", "bad-token"),
        ("Bearer tok-old-0123456789x", "bad-token"),
        ("Bearer TOK-OLD-0123456789", "bad-token"),
    ],
)
def test_bearer_header_forms(value: str, expected: str) -> None:
    verifier = build_verifier({"scheme": "bearer", "token": "tok-old-0123456789"})
    assert reason(verifier, {"Authorization": value}) == expected


def test_bearer_scheme_name_is_case_insensitive() -> None:
    verifier = build_verifier({"scheme": "bearer", "token": "tok-old-0123456789"})
    for name in ("bearer", "BEARER", "Bearer"):
        verified = verifier.verify({"authorization": f"{name} tok-old-0123456789"}, b"", NOW)
        assert verified.replay_key is None  # nothing signed, no delivery header configured


def test_api_key_in_a_vendor_header_with_a_prefix() -> None:
    # e.g. a Datadog webhook or an EventBridge API destination with a custom header.
    verifier = build_verifier(
        {"scheme": "api_key", "header": "DD-Webhook-Token", "prefix": "Token ", "token": "abc123"}
    )
    assert verifier.verify({"dd-webhook-token": "Token abc123"}, BODY, NOW).key_index == 0
    assert reason(verifier, {"DD-Webhook-Token": "abc123"}) == "malformed-header"
    assert reason(verifier, {"DD-Webhook-Token": "Token abc124"}) == "bad-token"
    assert reason(verifier, {"X-API-Key": "Token abc123"}) == "missing-token"


def test_tokens_do_not_bind_the_body() -> None:
    """Documented limit: a static token authenticates the sender, not the content."""
    verifier = build_verifier({"scheme": "api_key", "token": "abc123"})
    assert verifier.verify({"X-API-Key": "abc123"}, b"anything at all", NOW).scheme == "api_key"


def test_verified_is_immutable() -> None:
    verified = Verified(scheme="slack")
    with pytest.raises(AttributeError):
        verified.scheme = "bearer"  # type: ignore[misc]


# -- basic and url_token ------------------------------------------------------------------


def test_basic_compares_the_user_too() -> None:
    verifier = build_verifier({"scheme": "basic", "username": "irbook", "password": "pw"})
    other = base64.b64encode(b"admin:pw").decode()
    assert reason(verifier, {"Authorization": f"Basic {other}"}) == "bad-token"
    ok = base64.b64encode(b"irbook:pw").decode()
    assert verifier.verify({"Authorization": f"bAsIc {ok}"}, BODY, NOW).scheme == "basic"
    for garbled in ("Basic", "Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode()):
        assert reason(verifier, {"Authorization": garbled}) == "malformed-header"


def test_url_token_reads_its_own_parameter_only() -> None:
    verifier = build_verifier({"scheme": "url_token", "token": "t0k", "param": "key"})
    assert verifier.verify({QUERY: "key=t0k"}, BODY, NOW).scheme == "url_token"
    assert reason(verifier, {QUERY: "token=t0k"}) == "missing-token"
    assert reason(verifier, {QUERY: "key=t0k&key=other"}) == "malformed-header"
    assert verifier.verify({QUERY: "key=t0k&key=t0k"}, BODY, NOW).key_index == 0
