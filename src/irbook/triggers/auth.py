"""Who may post to the webhook receiver: one verifier per authentication scheme.

Every SIEM and chat tool proves itself differently, so each source names a scheme and
its secrets, and the receiver asks that scheme's verifier about the raw request before
it parses a single byte of the body: a JSON parser is attack surface, and re-serialised
JSON no longer matches the bytes that were signed.

Design choices a reviewer should know about:

- Failures raise `AuthError` whose `reason` is a short fixed code (`REASONS`). It feeds
  metrics and the 401 answer, so it never carries a secret, a body or a header value.
- Every secret-dependent comparison goes through `hmac.compare_digest`. Signature
  headers are decoded first (hex or base64), so a malformed header is told apart from
  a wrong one without looking at the secret.
- Every HMAC scheme takes several secrets, so a key can be rotated without dropping
  deliveries: configure old and new, switch the sender, then remove the old one.
  `Verified.key_index` says which one matched, so you can see when the old key is idle.
- Headers are looked up case-insensitively. A header that appears twice with different
  values is refused: two proxies disagreeing about a signature is not something to guess.
- `Verified.replay_key` is what the receiver should hand to `ReplayGuard`: the delivery
  id when the sender signs it (Standard Webhooks), otherwise a digest of the signed
  content, because an unsigned id (GitHub's, PagerDuty's) can be rewritten by whoever
  replays a captured request. Static-token schemes sign nothing, so they only offer an
  (unsigned) delivery id for de-duplication.
- `url_token` is for senders that can set no header at all (Splunk's built-in webhook
  action): the token rides in the URL's query. The HTTP layer moves the query out of the
  request before anything can log it and hands it over as the `QUERY` pseudo-header.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from irbook.errors import IrbookError

DEFAULT_TOLERANCE = 300.0  # seconds; Slack's and Standard Webhooks' recommendation
MAX_ID_LENGTH = 256  # delivery ids end up in the replay table; keep rows small
#: The request's query string, as the HTTP layer hands it to verifiers: a name no HTTP/1
#: client can send as a header (':' is not a header-name character).
QUERY = ":query"

REASONS = frozenset(
    {
        "missing-signature",
        "missing-timestamp",
        "missing-delivery-id",
        "missing-token",
        "malformed-header",
        "bad-signature",
        "bad-token",
        "stale-timestamp",
        "future-timestamp",
    }
)


class AuthError(Exception):
    """A request that failed authentication; `reason` is one of `REASONS`.

    `str()` is the reason alone, so the error can go straight into a log line, a metric
    label or a 401 body without leaking anything the sender did not already know.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class AuthConfigError(IrbookError):
    """A webhook source's auth settings are unusable; the message names the field."""


@dataclass(frozen=True, slots=True)
class Verified:
    """What a successful verification established about a request.

    `delivery_id` is the sender's id when the scheme carries one (signed or not, see
    `delivery_id_signed`); `timestamp` is the signed send time in Unix seconds when the
    scheme signs one; `replay_key` is what to remember to refuse a replay (None when the
    scheme gives nothing to remember); `key_index` is which configured secret matched.
    """

    scheme: str
    delivery_id: str | None = None
    timestamp: int | None = None
    replay_key: str | None = None
    key_index: int = 0
    delivery_id_signed: bool = False


class Verifier(ABC):
    """Checks one request against one source's configured scheme and secrets."""

    scheme: ClassVar[str]
    #: How far a signed timestamp may be from `now`, in seconds; None when unsigned.
    #: A ReplayGuard must remember ids at least this long.
    tolerance: float | None = None

    @abstractmethod
    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Verified:
        """Return what was verified, or raise AuthError."""

    def __repr__(self) -> str:
        # Never the secrets: verifiers end up in debug logs and tracebacks.
        return f"<{type(self).__name__} scheme={self.scheme!r}>"


# -- helpers ---------------------------------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by case-insensitive name; None when absent, refused when ambiguous."""
    wanted = name.lower()
    found: str | None = None
    for key, value in headers.items():
        if not isinstance(key, str) or key.lower() != wanted:
            continue
        if not isinstance(value, str):
            raise AuthError("malformed-header")
        if found is not None and value != found:
            raise AuthError("malformed-header")
        found = value
    return found


def _delivery_id(headers: Mapping[str, str], name: str | None) -> str | None:
    if not name:
        return None
    value = _header(headers, name)
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > MAX_ID_LENGTH or not value.isprintable():
        raise AuthError("malformed-header")
    return value


def _hmac(key: bytes, *parts: bytes) -> bytes:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(part)
    return mac.digest()


def _content_key(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return "sha256:" + digest.hexdigest()


def _hex_digest(text: str) -> bytes | None:
    """A SHA-256 digest written in hex, or None when it is not one."""
    text = text.strip()
    if len(text) != 64 or not text.isascii():
        return None
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    return raw if len(raw) == 32 else None  # fromhex skips spaces: "ab cd ..." is short


def _b64_digest(text: str) -> bytes | None:
    """A SHA-256 digest written in standard base64, or None when it is not one."""
    if not text.isascii():
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


def _match(expected: Sequence[bytes], offered: Sequence[bytes]) -> int | None:
    """Index of the first expected digest any offered digest equals, in constant time.

    Every pair is compared, so the time taken does not depend on which key matched.
    """
    found: int | None = None
    for index, want in enumerate(expected):
        for got in offered:
            if hmac.compare_digest(want, got) and found is None:
                found = index
    return found


def _timestamp(value: str | None) -> tuple[int, str]:
    """The timestamp as a number, and as the exact text that was signed."""
    if value is None:
        raise AuthError("missing-timestamp")
    value = value.strip()
    # Unix seconds as ASCII digits only: no sign, no exponent, no 10_000-digit integer.
    if not (value.isascii() and value.isdigit() and len(value) <= 12):
        raise AuthError("malformed-header")
    return int(value), value


def _check_fresh(timestamp: int, now: float, tolerance: float) -> None:
    if timestamp < now - tolerance:
        raise AuthError("stale-timestamp")
    if timestamp > now + tolerance:
        raise AuthError("future-timestamp")


# -- schemes ---------------------------------------------------------------------------


class HmacSha256Verifier(Verifier):
    """GitHub-style: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.

    Nothing but the body is signed: there is no timestamp, and the delivery id header is
    not covered by the signature. The replay key is therefore a digest of the body.
    """

    scheme = "hmac_sha256"

    def __init__(
        self,
        secrets: Sequence[bytes],
        *,
        header: str = "X-Hub-Signature-256",
        prefix: str = "sha256=",
        delivery_header: str | None = "X-GitHub-Delivery",
    ) -> None:
        self._keys = tuple(secrets)
        self.header = header
        self.prefix = prefix
        self.delivery_header = delivery_header

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Verified:
        value = _header(headers, self.header)
        if value is None:
            raise AuthError("missing-signature")
        value = value.strip()
        if not value.startswith(self.prefix):
            raise AuthError("malformed-header")
        offered = _hex_digest(value[len(self.prefix) :])
        if offered is None:
            raise AuthError("malformed-header")
        index = _match([_hmac(key, body) for key in self._keys], [offered])
        if index is None:
            raise AuthError("bad-signature")
        return Verified(
            scheme=self.scheme,
            delivery_id=_delivery_id(headers, self.delivery_header),
            replay_key=_content_key(body),
            key_index=index,
        )


class StandardWebhooksVerifier(Verifier):
    """Standard Webhooks 1.0 (standardwebhooks.com), symmetric `v1` signatures.

    HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}`, base64, in a
    space-separated `webhook-signature` list (several during the sender's rotation).
    Asymmetric `v1a` entries and unknown versions are skipped: only symmetric secrets
    are configured here, and any one matching `v1` entry authenticates the request.
    """

    scheme = "standard_webhooks"

    def __init__(self, secrets: Sequence[bytes], *, tolerance: float = DEFAULT_TOLERANCE) -> None:
        self._keys = tuple(secrets)
        self._tolerance = tolerance
        self.tolerance = tolerance

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Verified:
        msg_id = _header(headers, "webhook-id")
        raw_ts = _header(headers, "webhook-timestamp")
        signature = _header(headers, "webhook-signature")
        if signature is None:
            raise AuthError("missing-signature")
        if msg_id is None:
            raise AuthError("missing-delivery-id")
        timestamp, ts_text = _timestamp(raw_ts)
        msg_id = msg_id.strip()
        # A '.' in the id would let a replayer move the field boundaries of the signed
        # content ("a.1700000000" + "." + ts ...) and still match the signature.
        if not msg_id or "." in msg_id or len(msg_id) > MAX_ID_LENGTH or not msg_id.isprintable():
            raise AuthError("malformed-header")
        entries = signature.split()
        offered: list[bytes] = []
        malformed = not entries
        for entry in entries:
            version, sep, value = entry.partition(",")
            if not sep:
                malformed = True
            elif version == "v1":
                digest = _b64_digest(value)
                if digest is None:
                    malformed = True
                else:
                    offered.append(digest)
        if not offered:
            raise AuthError("malformed-header" if malformed else "bad-signature")
        signed_prefix = f"{msg_id}.{ts_text}.".encode("utf-8", "surrogatepass")
        index = _match([_hmac(key, signed_prefix, body) for key in self._keys], offered)
        if index is None:
            raise AuthError("bad-signature")
        _check_fresh(timestamp, now, self._tolerance)
        return Verified(
            scheme=self.scheme,
            delivery_id=msg_id,
            timestamp=timestamp,
            replay_key="id:" + msg_id,
            key_index=index,
            delivery_id_signed=True,
        )


class PagerDutyV3Verifier(Verifier):
    """PagerDuty v3: `X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]` over the body.

    PagerDuty signs with every active subscription secret during its own rotation, so
    the header may list several; one match suffices. `X-Webhook-Id` is repeated on
    retries (PagerDuty's documented de-duplication key) but is not signed.
    """

    scheme = "pagerduty_v3"

    def __init__(
        self, secrets: Sequence[bytes], *, delivery_header: str | None = "X-Webhook-Id"
    ) -> None:
        self._keys = tuple(secrets)
        self.delivery_header = delivery_header

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Verified:
        value = _header(headers, "X-PagerDuty-Signature")
        if value is None:
            raise AuthError("missing-signature")
        offered: list[bytes] = []
        malformed = False
        for entry in value.split(","):
            version, sep, text = entry.strip().partition("=")
            if not sep:
                malformed = True
            elif version == "v1":
                digest = _hex_digest(text)
                if digest is None:
                    malformed = True
                else:
                    offered.append(digest)
        if not offered:
            raise AuthError("malformed-header" if malformed else "bad-signature")
        index = _match([_hmac(key, body) for key in self._keys], offered)
        if index is None:
            raise AuthError("bad-signature")
        return Verified(
            scheme=self.scheme,
            delivery_id=_delivery_id(headers, self.delivery_header),
            replay_key=_content_key(body),
            key_index=index,
        )


class SlackVerifier(Verifier):
    """Slack request signing: `X-Slack-Signature: v0=<hex>` over `v0:{ts}:{body}`.

    Slack sends no delivery id, so the replay key is a digest of the signed content:
    a captured button press re-sent within the tolerance has the same one.
    """

    scheme = "slack"

    def __init__(self, secrets: Sequence[bytes], *, tolerance: float = DEFAULT_TOLERANCE) -> None:
        self._keys = tuple(secrets)
        self._tolerance = tolerance
        self.tolerance = tolerance

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Verified:
        value = _header(headers, "X-Slack-Signature")
        if value is None:
            raise AuthError("missing-signature")
        timestamp, ts_text = _timestamp(_header(headers, "X-Slack-Request-Timestamp"))
        value = value.strip()
        if not value.startswith("v0="):
            raise AuthError("malformed-header")
        offered = _hex_digest(value[3:])
        if offered is None:
            raise AuthError("malformed-header")
        base = b"v0:" + ts_text.encode() + b":"
        index = _match([_hmac(key, base, body) for key in self._keys], [offered])
        if index is None:
            raise AuthError("bad-signature")
        _check_fresh(timestamp, now, self._tolerance)
        return Verified(
            scheme=self.scheme,
            timestamp=timestamp,
            replay_key=_content_key(base, body),
            key_index=index,
        )


def _token_verified(
    scheme: str, headers: Mapping[str, str], delivery_header: str | None, index: int
) -> Verified:
    """A matched static secret: replays are told apart by the sender's delivery id, if any."""
    delivery_id = _delivery_id(headers, delivery_header)
    return Verified(
        scheme=scheme,
        delivery_id=delivery_id,
        replay_key=None if delivery_id is None else "id:" + delivery_id,
        key_index=index,
    )


class _TokenVerifier(Verifier):
    """A static shared token; compared as SHA-256 digests so length does not leak."""

    def __init__(
        self, tokens: Sequence[bytes], *, header: str, prefix: str, delivery_header: str | None
    ) -> None:
        self._digests = tuple(hashlib.sha256(token).digest() for token in tokens)
        self.header = header
        self.prefix = prefix
        self.delivery_header = delivery_header

    def _token(self, value: str) -> str:
        if not value.startswith(self.prefix):
            raise AuthError("malformed-header")
        return value[len(self.prefix) :]

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Verified:
        value = _header(headers, self.header)
        if value is None or not value.strip():
            raise AuthError("missing-token")
        token = self._token(value.strip()).strip()
        if not token:
            raise AuthError("missing-token")
        offered = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        index = _match(self._digests, [offered])
        if index is None:
            raise AuthError("bad-token")
        return _token_verified(self.scheme, headers, self.delivery_header, index)


class BearerVerifier(_TokenVerifier):
    """`Authorization: Bearer <token>` (RFC 6750; the scheme name is case-insensitive)."""

    scheme = "bearer"

    def __init__(self, tokens: Sequence[bytes], *, delivery_header: str | None = None) -> None:
        super().__init__(tokens, header="Authorization", prefix="", delivery_header=delivery_header)

    def _token(self, value: str) -> str:
        name, _, token = value.partition(" ")
        if name.lower() != "bearer":
            raise AuthError("malformed-header")
        return token


class ApiKeyVerifier(_TokenVerifier):
    """A static token in a header of the sender's choosing (X-API-Key, a custom
    header set on a Splunk, Datadog or EventBridge API destination, ...)."""

    scheme = "api_key"

    def __init__(
        self,
        tokens: Sequence[bytes],
        *,
        header: str = "X-API-Key",
        prefix: str = "",
        delivery_header: str | None = None,
    ) -> None:
        super().__init__(tokens, header=header, prefix=prefix, delivery_header=delivery_header)


class BasicVerifier(Verifier):
    """`Authorization: Basic base64(user:password)` (RFC 7617; the scheme word is
    case-insensitive): what an EventBridge API destination's Basic connection sends.

    User and password are both compared as SHA-256 digests with `compare_digest`, and
    both always compared, so neither their lengths nor which one was wrong leaks.
    """

    scheme = "basic"

    def __init__(
        self, username: str, passwords: Sequence[bytes], *, delivery_header: str | None = None
    ) -> None:
        self._user = hashlib.sha256(username.encode("utf-8")).digest()
        self._digests = tuple(hashlib.sha256(password).digest() for password in passwords)
        self.delivery_header = delivery_header

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Verified:
        value = _header(headers, "Authorization")
        if value is None or not value.strip():
            raise AuthError("missing-token")
        word, _, encoded = value.strip().partition(" ")
        if word.lower() != "basic" or not encoded.strip():
            raise AuthError("malformed-header")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise AuthError("malformed-header") from None
        user, sep, password = decoded.partition(":")
        if not sep:
            raise AuthError("malformed-header")
        user_ok = hmac.compare_digest(self._user, hashlib.sha256(user.encode("utf-8")).digest())
        offered = hashlib.sha256(password.encode("utf-8", "surrogatepass")).digest()
        index = _match(self._digests, [offered])
        if not user_ok or index is None:
            raise AuthError("bad-token")
        return _token_verified(self.scheme, headers, self.delivery_header, index)


class UrlTokenVerifier(_TokenVerifier):
    """A static token in the URL's query (`/hooks/splunk?token=...`), for senders that
    can set no header, such as Splunk's built-in webhook alert action.

    A URL travels further than a header (proxy logs, browser history, the sender's own
    configuration screen), so prefer a header scheme whenever the sender allows one. The
    receiver removes the query from the request before uvicorn's access log sees it.
    """

    scheme = "url_token"

    def __init__(
        self, tokens: Sequence[bytes], *, param: str = "token", delivery_header: str | None = None
    ) -> None:
        super().__init__(tokens, header=QUERY, prefix="", delivery_header=delivery_header)
        self.param = param

    def _token(self, value: str) -> str:
        try:
            pairs = urllib.parse.parse_qsl(value, keep_blank_values=True, max_num_fields=64)
        except ValueError:
            raise AuthError("malformed-header") from None
        found = {v for k, v in pairs if k == self.param}
        if len(found) > 1:
            raise AuthError("malformed-header")
        if not found:
            raise AuthError("missing-token")
        return found.pop()


# -- configuration ---------------------------------------------------------------------


def _fail(field: str, problem: str) -> AuthConfigError:
    return AuthConfigError(f"auth.{field}: {problem}")


class _Fields:
    """Reads and checks one setting at a time, naming it in any error."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config

    def get(self, name: str) -> Any:
        return self.config.get(name)

    def header(self, name: str, default: str) -> str:
        value = self.get(name)
        if value is None:
            return default
        if not isinstance(value, str) or not _is_token(value):
            raise _fail(name, "must be an HTTP header name such as X-Signature")
        return value

    def optional_header(self, name: str, default: str | None) -> str | None:
        """A header that can be switched off with null, "" or false."""
        if name in self.config and self.config[name] in (None, "", False):
            return None
        value = self.config.get(name, default)
        if value is None:
            return None
        if not isinstance(value, str) or not _is_token(value):
            raise _fail(name, "must be an HTTP header name such as X-Delivery-Id")
        return value

    def prefix(self, name: str, default: str) -> str:
        value = self.get(name)
        if value is None:
            return default
        if not isinstance(value, str) or not value.isascii() or "\n" in value:
            raise _fail(name, "must be an ASCII string")
        return value

    def tolerance(self) -> float:
        value = self.get("tolerance")
        if value is None:
            return DEFAULT_TOLERANCE
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not 1 <= value <= 3600
        ):
            raise _fail("tolerance", "must be a number of seconds between 1 and 3600")
        return float(value)

    def secrets(
        self, singular: str, plural: str, decode: Callable[[str, str], bytes]
    ) -> list[bytes]:
        one, many = self.get(singular), self.get(plural)
        if one is not None and many is not None:
            raise _fail(plural, f"give either {singular} or {plural}, not both")
        if one is None and many is None:
            raise _fail(singular, "is required")
        field = singular if one is not None else plural
        values = [one] if one is not None else many
        if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
            raise _fail(field, "must be a non-empty list")
        out: list[bytes] = []
        for position, value in enumerate(values):
            where = field if one is not None else f"{field}[{position}]"
            if isinstance(value, bytes):
                key = value
            elif isinstance(value, str):
                key = decode(where, value)
            else:
                raise _fail(where, "must be a string or bytes")
            if not key:
                raise _fail(where, "must not be empty")
            out.append(key)
        return out


def _is_token(name: str) -> bool:
    """An RFC 9110 field name: visible ASCII without separators."""
    return bool(name) and all(c.isascii() and (c.isalnum() or c in "!#$%&'*+-.^_`|~") for c in name)


def _utf8(where: str, value: str) -> bytes:
    return value.encode("utf-8")


def _token_bytes(where: str, value: str) -> bytes:
    # Visible ASCII only: header values reach us decoded as Latin-1 by most servers, so
    # any other character could never compare equal to its UTF-8 configuration.
    if not all("!" <= c <= "~" for c in value):
        raise _fail(where, "must be visible ASCII without spaces")
    return value.encode("ascii")


def _whsec(where: str, value: str) -> bytes:
    """Standard Webhooks secrets are `whsec_` + base64 of the key bytes."""
    text = value.strip().removeprefix("whsec_")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _fail(where, "must be whsec_ followed by base64") from None


def _build_hmac(f: _Fields) -> Verifier:
    return HmacSha256Verifier(
        f.secrets("secret", "secrets", _utf8),
        header=f.header("header", "X-Hub-Signature-256"),
        prefix=f.prefix("prefix", "sha256="),
        delivery_header=f.optional_header("delivery_header", "X-GitHub-Delivery"),
    )


def _build_standard(f: _Fields) -> Verifier:
    return StandardWebhooksVerifier(f.secrets("secret", "secrets", _whsec), tolerance=f.tolerance())


def _build_pagerduty(f: _Fields) -> Verifier:
    return PagerDutyV3Verifier(
        f.secrets("secret", "secrets", _utf8),
        delivery_header=f.optional_header("delivery_header", "X-Webhook-Id"),
    )


def _build_slack(f: _Fields) -> Verifier:
    return SlackVerifier(f.secrets("secret", "secrets", _utf8), tolerance=f.tolerance())


def _build_bearer(f: _Fields) -> Verifier:
    return BearerVerifier(
        f.secrets("token", "tokens", _token_bytes),
        delivery_header=f.optional_header("delivery_header", None),
    )


def _build_basic(f: _Fields) -> Verifier:
    username = f.get("username")
    if not isinstance(username, str) or not username or ":" in username:
        raise _fail("username", "is required: a user name without ':'")
    return BasicVerifier(
        username,
        f.secrets("password", "passwords", _utf8),
        delivery_header=f.optional_header("delivery_header", None),
    )


def _build_url_token(f: _Fields) -> Verifier:
    param = f.get("param")
    if param is None:
        param = "token"
    if not isinstance(param, str) or not param or not all(c.isalnum() or c in "_-." for c in param):
        raise _fail("param", "must be a query parameter name such as token")
    return UrlTokenVerifier(
        f.secrets("token", "tokens", _token_bytes),
        param=param,
        delivery_header=f.optional_header("delivery_header", None),
    )


def _build_api_key(f: _Fields) -> Verifier:
    return ApiKeyVerifier(
        f.secrets("token", "tokens", _token_bytes),
        header=f.header("header", "X-API-Key"),
        prefix=f.prefix("prefix", ""),
        delivery_header=f.optional_header("delivery_header", None),
    )


_HMAC = ("secret", "secrets")
_TOKENS = ("token", "tokens")

#: scheme name -> (builder, the settings it takes besides `scheme`)
SCHEMES: dict[str, tuple[Callable[[_Fields], Verifier], tuple[str, ...]]] = {
    "hmac_sha256": (_build_hmac, (*_HMAC, "header", "prefix", "delivery_header")),
    "standard_webhooks": (_build_standard, (*_HMAC, "tolerance")),
    "pagerduty_v3": (_build_pagerduty, (*_HMAC, "delivery_header")),
    "slack": (_build_slack, (*_HMAC, "tolerance")),
    "bearer": (_build_bearer, (*_TOKENS, "delivery_header")),
    "api_key": (_build_api_key, (*_TOKENS, "header", "prefix", "delivery_header")),
    "basic": (_build_basic, ("username", "password", "passwords", "delivery_header")),
    "url_token": (_build_url_token, (*_TOKENS, "param", "delivery_header")),
}

#: scheme name -> its verifier class, whose docstring is the scheme's reference.
VERIFIERS: dict[str, type[Verifier]] = {
    "hmac_sha256": HmacSha256Verifier,
    "standard_webhooks": StandardWebhooksVerifier,
    "pagerduty_v3": PagerDutyV3Verifier,
    "slack": SlackVerifier,
    "bearer": BearerVerifier,
    "api_key": ApiKeyVerifier,
    "basic": BasicVerifier,
    "url_token": UrlTokenVerifier,
}


def build_verifier(config: Mapping[str, Any]) -> Verifier:
    """A verifier from a source's `auth:` settings, e.g.
    `{"scheme": "hmac_sha256", "secret": "...", "header": "X-Signature"}`.

    Unknown settings are errors rather than ignored: a misspelt `header` would
    otherwise silently verify against the default one.
    """
    if not isinstance(config, Mapping):
        raise AuthConfigError("auth: must be a mapping with a scheme")
    scheme = config.get("scheme")
    if not isinstance(scheme, str) or scheme not in SCHEMES:
        raise _fail("scheme", "must be one of " + ", ".join(sorted(SCHEMES)))
    build, settings = SCHEMES[scheme]
    unknown = sorted(str(key) for key in config if key != "scheme" and key not in settings)
    if unknown:
        raise _fail(
            unknown[0], f"is not a setting of scheme {scheme} (it takes: {', '.join(settings)})"
        )
    return build(_Fields(config))


__all__ = [
    "DEFAULT_TOLERANCE",
    "QUERY",
    "REASONS",
    "SCHEMES",
    "VERIFIERS",
    "ApiKeyVerifier",
    "AuthConfigError",
    "AuthError",
    "BasicVerifier",
    "BearerVerifier",
    "HmacSha256Verifier",
    "PagerDutyV3Verifier",
    "SlackVerifier",
    "StandardWebhooksVerifier",
    "UrlTokenVerifier",
    "Verified",
    "Verifier",
    "build_verifier",
]
