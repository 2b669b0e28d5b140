"""build_verifier: a source's auth settings, and one clear line when they are wrong."""

from __future__ import annotations

from typing import Any

import pytest

from irbook.errors import IrbookError
from irbook.triggers.auth import (
    SCHEMES,
    ApiKeyVerifier,
    AuthConfigError,
    BearerVerifier,
    HmacSha256Verifier,
    PagerDutyV3Verifier,
    SlackVerifier,
    StandardWebhooksVerifier,
    build_verifier,
)
from tests.support import signing

WHSEC = signing.new_whsec(b"config")


@pytest.mark.parametrize(
    "config, kind",
    [
        ({"scheme": "hmac_sha256", "secret": "s"}, HmacSha256Verifier),
        ({"scheme": "standard_webhooks", "secret": WHSEC}, StandardWebhooksVerifier),
        ({"scheme": "pagerduty_v3", "secrets": ["a", b"b"]}, PagerDutyV3Verifier),
        ({"scheme": "slack", "secret": b"raw-bytes"}, SlackVerifier),
        ({"scheme": "bearer", "token": "t0k"}, BearerVerifier),
        ({"scheme": "api_key", "tokens": ["k1", "k2"], "header": "X-Splunk-Token"}, ApiKeyVerifier),
    ],
)
def test_each_scheme_builds_from_its_minimal_config(config: dict[str, Any], kind: type) -> None:
    verifier = build_verifier(config)
    assert isinstance(verifier, kind)
    assert verifier.scheme == config["scheme"]


def test_the_scheme_table_lists_every_scheme() -> None:
    assert sorted(SCHEMES) == [
        "api_key",
        "basic",
        "bearer",
        "hmac_sha256",
        "pagerduty_v3",
        "slack",
        "standard_webhooks",
        "url_token",
    ]


@pytest.mark.parametrize(
    "config, field",
    [
        ({}, "auth.scheme"),
        ({"scheme": "hmac"}, "auth.scheme"),
        ({"scheme": ["slack"]}, "auth.scheme"),
        ({"scheme": "slack"}, "auth.secret: is required"),
        ({"scheme": "bearer", "secret": "x"}, "auth.secret: is not a setting"),
        ({"scheme": "slack", "secret": "a", "secrets": ["b"]}, "auth.secrets"),
        ({"scheme": "slack", "secrets": []}, "auth.secrets"),
        ({"scheme": "slack", "secrets": "one-string"}, "auth.secrets"),
        ({"scheme": "slack", "secrets": ["ok", 5]}, "auth.secrets[1]"),
        ({"scheme": "slack", "secrets": ["ok", ""]}, "auth.secrets[1]"),
        ({"scheme": "slack", "secret": ""}, "auth.secret"),
        ({"scheme": "slack", "secret": "s", "tolerance": True}, "auth.tolerance"),
        ({"scheme": "slack", "secret": "s", "tolerance": -1}, "auth.tolerance"),
        ({"scheme": "slack", "secret": "s", "tolerance": "300"}, "auth.tolerance"),
        ({"scheme": "slack", "secret": "s", "tolerance": float("nan")}, "auth.tolerance"),
        ({"scheme": "slack", "secret": "s", "tolerance": 86_400}, "auth.tolerance"),
        ({"scheme": "hmac_sha256", "secret": "s", "hedaer": "X-Sig"}, "auth.hedaer"),
        ({"scheme": "hmac_sha256", "secret": "s", "header": "X Sig"}, "auth.header"),
        ({"scheme": "hmac_sha256", "secret": "s", "header": ""}, "auth.header"),
        ({"scheme": "hmac_sha256", "secret": "s", "header": 7}, "auth.header"),
        ({"scheme": "hmac_sha256", "secret": "s", "prefix": 7}, "auth.prefix"),
        (
            {"scheme": "hmac_sha256", "secret": "s", "delivery_header": "a:b"},
            "auth.delivery_header",
        ),
        ({"scheme": "standard_webhooks", "secret": "whsec_not base64!"}, "auth.secret"),
        ({"scheme": "standard_webhooks", "secrets": [WHSEC, "whsec_%%"]}, "auth.secrets[1]"),
        ({"scheme": "bearer", "token": "has space"}, "auth.token"),
        ({"scheme": "bearer", "tokens": ["ok", " padded"]}, "auth.tokens[1]"),
        ({"scheme": "api_key", "token": "t\u00f6k\u00e9n"}, "auth.token"),
        ({"scheme": "api_key", "token": "k", "header": "X-Key\r\nInjected: 1"}, "auth.header"),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_field(config: dict[str, Any], field: str) -> None:
    with pytest.raises(AuthConfigError) as caught:
        build_verifier(config)
    message = str(caught.value)
    assert field in message
    assert "\n" not in message
    assert isinstance(caught.value, IrbookError)  # the CLI prints it as a user error


def test_config_errors_never_echo_a_secret() -> None:
    secret = "whsec_SuperSecretButNotBase64!!"
    with pytest.raises(AuthConfigError) as caught:
        build_verifier({"scheme": "standard_webhooks", "secret": secret})
    assert "SuperSecret" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_config_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(AuthConfigError, match="auth"):
        build_verifier(["slack"])  # type: ignore[arg-type]


def test_delivery_header_can_be_switched_off() -> None:
    for off in (None, "", False):
        verifier = build_verifier({"scheme": "pagerduty_v3", "secret": "s", "delivery_header": off})
        headers = {"X-PagerDuty-Signature": signing.pagerduty(["s"], b"{}"), "X-Webhook-Id": "w"}
        assert verifier.verify(headers, b"{}", 0).delivery_id is None


def test_tolerance_reaches_the_verifier() -> None:
    verifier = build_verifier({"scheme": "standard_webhooks", "secret": WHSEC, "tolerance": 120})
    assert verifier.tolerance == 120
    assert build_verifier({"scheme": "hmac_sha256", "secret": "s"}).tolerance is None
