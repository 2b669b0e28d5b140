"""Signers written from each sender's documentation, independently of irbook's code.

A verifier tested only against its own signer can agree with itself about a wrong
algorithm; these follow the documented recipe step by step, and the published test
vectors in the tests pin the recipes themselves.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def github(secret: str, body: bytes) -> str:
    """docs.github.com, "Validating webhook deliveries": sha256= + hex HMAC of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def pagerduty(secrets: list[str], body: bytes) -> str:
    """PagerDuty developer docs, "Verifying Signatures": v1=<hex> per secret, comma-joined."""
    return ",".join("v1=" + hmac.new(s.encode(), body, hashlib.sha256).hexdigest() for s in secrets)


def slack(secret: str, timestamp: str, body: bytes) -> str:
    """api.slack.com, "Verifying requests from Slack": v0= + hex HMAC of v0:ts:body."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def standard(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """Standard Webhooks 1.0: v1, + base64 HMAC of id.ts.body, key = base64 after whsec_."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def new_whsec(seed: bytes) -> str:
    """A Standard Webhooks secret: whsec_ + base64 of 32 key bytes."""
    return "whsec_" + base64.b64encode(hashlib.sha256(seed).digest()).decode()
