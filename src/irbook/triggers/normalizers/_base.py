"""Shared plumbing for normalizers: guarded reads, limits, severities, times.

Every payload is attacker-controlled. Reads go through `Node`, which knows the JSON path
of the value it holds, so a bad field is reported as `NormalizeError(path, message)` and
nothing else escapes. Messages never quote payload values: only paths, which are built
from our own key names and list indexes.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from irbook.errors import IrbookError, Location
from irbook.model.alert import Actor, Alert, Resource

# Clipping limits. Huge payloads are the receiver's size limit's business; these keep one
# absurd field from bloating every run record, log line and Slack message built from it.
ID_MAX = 512  # the Alert model's own limit
TITLE_MAX = 1_000
DESCRIPTION_MAX = 10_000
TEXT_MAX = 2_048  # names, ARNs, labels
TAG_KEY_MAX = 128
TAG_VALUE_MAX = 512
TAGS_MAX = 64
RESOURCES_MAX = 100
ITEMS_MAX = 1_000  # elements of any list we walk, including alerts per post
DEPTH_MAX = 128  # nesting levels a payload may have (pydantic serializes about 250)
NODES_MAX = 2_000_000  # values in one payload; the receiver's size limit comes first

RESOLVED = "resolved"  # severity_label of an alert whose source says it is over
RESOLVED_PREFIX = "[RESOLVED] "

# Lower bound of each band, 0-10. Security Hub's documented Label -> Normalized mapping
# (INFORMATIONAL 0, LOW 1, MEDIUM 40, HIGH 70, CRITICAL 90) divided by ten; it agrees with
# GuardDuty's bands (low 1.0-3.9, medium 4.0-6.9, high 7.0-8.9, critical 9.0-10.0), so a
# trigger on `severity: {gte: 7}` means "high or worse" whatever the source.
LABEL_FLOORS: dict[str, float] = {
    "informational": 0.0,
    "low": 1.0,
    "medium": 4.0,
    "high": 7.0,
    "critical": 9.0,
}
LABEL_ALIASES: dict[str, str] = {
    "info": "informational",
    "information": "informational",
    "informational": "informational",
    "none": "informational",
    "low": "low",
    "minor": "low",
    "medium": "medium",
    "moderate": "medium",
    "warning": "medium",
    "high": "high",
    "major": "high",
    "error": "high",
    "critical": "critical",
    "crit": "critical",
    "severe": "critical",
}

_PLAIN_KEY = re.compile(r"[A-Za-z_@$][A-Za-z0-9_]*")


class NormalizeError(IrbookError):
    """A payload that does not fit its format; `path` is the JSON path of the first bad field.

    The webhook answers 422 with `path` and `reason`, so the sender can see what to fix.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message, Location(path))
        self.path = path
        self.reason = message


class OptionsError(NormalizeError):
    """The source's configured options are wrong: the operator's fault, not the sender's.

    A subclass so that `except NormalizeError` still catches everything normalizers raise,
    while the receiver can answer 500 (or refuse the configuration at load time) instead
    of blaming the sender.
    """


def child_path(path: str, key: str | int) -> str:
    """JSON path of a child, in the syntax the `generic` format's paths accept."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _PLAIN_KEY.fullmatch(key) and len(key) <= 64:
        return f"{path}.{key}"
    shown = key if len(key) <= 64 else key[:64] + "..."
    shown = shown.replace("\\", "\\\\").replace("'", "\\'")
    shown = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in shown)
    return f"{path}['{shown}']"


def clip(text: str, limit: int) -> str:
    if len(text) <= limit and text.isascii():
        return text
    return _valid(text if len(text) <= limit else text[:limit])


def _valid(text: str) -> str:
    """Lone surrogates (JSON allows "\\ud800") become U+FFFD: pydantic refuses them."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def clip_id(text: str) -> str:
    """Keep ids within the model's limit without making two long ids collide.

    A plain cut would let an attacker make distinct findings share a dedup key by padding a
    common prefix; the hash of the whole id keeps them apart and stays stable.
    """
    if len(text) <= ID_MAX and _valid(text) is text:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return _valid(text[: ID_MAX - 17]) + "~" + digest


class Node:
    """A value from the payload and the JSON path it was found at.

    Missing keys and JSON nulls are both "absent" (value None). Asking an absent node for a
    child gives another absent node, so optional chains read naturally; asking a present
    non-object for a child is a type error reported at this node's path.

    The path text is built only when someone asks for it (an error, mostly): a node made
    by `get` or `items` remembers its parent and key, which is all the path needs.
    """

    __slots__ = ("_key", "_parent", "_path", "value")

    def __init__(self, value: Any, path: str = "$") -> None:
        self.value = value
        self._path: str | None = path
        self._parent: Node | None = None
        self._key: str | int = ""

    @classmethod
    def _child(cls, value: Any, parent: Node, key: str | int) -> Node:
        node = cls.__new__(cls)
        node.value = value
        node._path = None
        node._parent = parent
        node._key = key
        return node

    @property
    def path(self) -> str:
        path = self._path
        if path is None:
            parent = self._parent
            assert parent is not None
            path = self._path = child_path(parent.path, self._key)
        return path

    def error(self, message: str) -> NormalizeError:
        return NormalizeError(self.path, message)

    @property
    def present(self) -> bool:
        return self.value is not None

    def required(self) -> Node:
        if self.value is None:
            raise self.error("missing")
        return self

    def obj(self) -> Mapping[str, Any] | None:
        if self.value is None:
            return None
        if not isinstance(self.value, Mapping):
            raise self.error("expected an object")
        return self.value

    def need_obj(self) -> Mapping[str, Any]:
        mapping = self.required().obj()
        assert mapping is not None
        return mapping

    def get(self, key: str) -> Node:
        value = self.value
        if value is None:
            return Node._child(None, self, key)
        if type(value) is not dict and not isinstance(value, Mapping):
            raise self.error("expected an object")
        return Node._child(value.get(key), self, key)

    def at(self, *keys: str) -> Node:
        node = self
        for key in keys:
            node = node.get(key)
        return node

    def items(self, limit: int = ITEMS_MAX, *, strict: bool = False) -> list[Node]:
        """Elements of a list; beyond `limit` they are ignored, or refused when `strict`."""
        if self.value is None:
            return []
        if isinstance(self.value, str | bytes) or not isinstance(self.value, Sequence):
            raise self.error("expected a list")
        if strict and len(self.value) > limit:
            raise self.error(f"more than {limit} elements")
        return [Node._child(v, self, i) for i, v in enumerate(self.value[:limit])]

    def entries(self, limit: int = ITEMS_MAX) -> list[tuple[str, Node]]:
        mapping = self.obj()
        if mapping is None:
            return []
        out: list[tuple[str, Node]] = []
        for key, value in mapping.items():
            if len(out) >= limit:
                break
            if not isinstance(key, str):
                raise self.error("object keys must be strings")
            out.append((key, Node._child(value, self, key)))
        return out

    def text(self, limit: int = TEXT_MAX, *, numbers: bool = False) -> str | None:
        """A string, clipped; numbers are accepted (as text) only where vendors send both."""
        value = self.value
        if value is None:
            return None
        if isinstance(value, str):
            return clip(value, limit)
        if numbers and isinstance(value, int | float) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                raise self.error("expected a finite number")
            return clip(_number_text(value), limit)
        raise self.error("expected a string")

    def need_text(self, limit: int = TEXT_MAX, *, numbers: bool = False) -> str:
        value = self.required().text(limit, numbers=numbers)
        assert value is not None
        return value

    def ident(self, *, numbers: bool = False) -> str:
        """A required, non-empty id, clipped with a hash of the whole so it stays unique."""
        value = self.required().value
        # Not clipped before hashing; numbers are short and anything else is refused.
        text = value if isinstance(value, str) else self.need_text(numbers=numbers)
        if not text.strip():
            raise self.error("must not be empty")
        return clip_id(text)

    def number(self, *, strings: bool = False) -> float | None:
        value = self.value
        if value is None:
            return None
        if isinstance(value, bool):
            raise self.error("expected a number")
        if isinstance(value, int):
            if abs(value) >= 10**300:
                return 1e300 if value > 0 else -1e300
            return float(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise self.error("expected a finite number")
            return value
        if strings and isinstance(value, str):
            number = parse_number(value)
            if number is None:
                raise self.error("expected a number")
            return number
        raise self.error("expected a number")

    def first_text(self, limit: int = TEXT_MAX) -> str | None:
        """A string, or the first string of a list (multi-value fields in SIEM results)."""
        if isinstance(self.value, list):
            for item in self.items(limit=16):
                if isinstance(item.value, str):
                    return clip(item.value, limit)
            return None
        return self.text(limit, numbers=True)


def _number_text(value: int | float) -> str:
    if isinstance(value, int):
        return str(value) if abs(value) < 10**100 else hex(value)
    return repr(value)


def parse_number(text: str) -> float | None:
    text = text.strip()
    if not text or len(text) > 64:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


_NO_SEVERITY_WORDS = frozenset({"", "unknown", "unknownfuturevalue", "other"})


def missing_severity(looked: Sequence[Node], *, mappable: bool = True) -> NormalizeError:
    """The refusal of an alert whose severity is absent (or a word nobody mapped) when the
    source has no `default_severity`.

    Severity 0 would be silent: no `severity: {gte: n}` trigger fires and nobody is told.
    The message names where the normalizer looked, so the sender (the 422) and the
    operator (the dead letter, `irbook match`) can see which template field is missing.
    `mappable`: whether the source's `severity_map` applies to the words looked at.
    """
    for node in looked:
        value = node.value
        if isinstance(value, str) and value.strip().lower() not in _NO_SEVERITY_WORDS:
            # A word, but not one this source knows; "unknown" itself says there is none.
            fix = "map it with options.severity_map, or set" if mappable else "set"
            return NormalizeError(node.path, f"unknown severity ({fix} options.default_severity)")
    where = ", ".join(node.path for node in looked)
    return NormalizeError(
        looked[0].path if looked else "$",
        f"no severity (looked in {where}); send one, or set options.default_severity",
    )


def clamp_severity(score: float) -> float:
    return min(10.0, max(0.0, score))


def label_for(score: float) -> str:
    """The band a 0-10 score falls in; anything above zero is at least "low"."""
    for name in ("critical", "high", "medium"):
        if score >= LABEL_FLOORS[name]:
            return name
    return "low" if score > 0 else "informational"


def canonical_label(text: str | None) -> str | None:
    """Our label for a vendor's severity word, or None when the word is unknown."""
    if text is None:
        return None
    return LABEL_ALIASES.get(text.strip().lower())


# ISO 8601 with more than microsecond precision (Sentinel: 7 digits, SecOps: 9) is cut to
# six digits; Python's parser refuses anything finer.
_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(value: Any) -> datetime | None:
    """A UTC datetime from ISO 8601 text or epoch seconds/millis/micros; None if unusable.

    Time is never essential to an alert, so a bad one is dropped rather than refused.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 64:
            return None
        number = parse_number(text) if text[0].isdigit() and "-" not in text else None
        if number is not None:
            return _from_epoch(number)
        if _FRACTION.search(text) is not None:  # a search is ten times cheaper than sub
            text = _FRACTION.sub(r"\1", text)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        try:
            return parsed.astimezone(UTC)
        except (OverflowError, ValueError):
            return None
    if isinstance(value, int) and abs(value) > 10**20:
        return None  # float() of a huge int raises; no epoch is that large anyway
    if isinstance(value, int | float):
        return _from_epoch(float(value))
    return None


def _from_epoch(number: float) -> datetime | None:
    if not math.isfinite(number) or number < 0:
        return None
    if number >= 1e17:  # nanoseconds
        number /= 1e9
    elif number >= 1e14:  # microseconds
        number /= 1e6
    elif number >= 1e11:  # milliseconds: 1e11 seconds is the year 5138
        number /= 1e3
    try:
        return datetime.fromtimestamp(number, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def first_time(*nodes: Node) -> datetime | None:
    for node in nodes:
        parsed = parse_time(node.value)
        if parsed is not None:
            return parsed
    return None


def tags_from_pairs(node: Node, key: str = "key", value: str = "value") -> dict[str, str]:
    """AWS-style `[{key, value}]` tag lists; entries that are not text pairs are skipped."""
    tags: dict[str, str] = {}
    for item in node.items(limit=TAGS_MAX):
        if not isinstance(item.value, Mapping):
            continue
        k, text = item.value.get(key), _tag_text(item.value.get(value))
        if isinstance(k, str) and text is not None:
            tags[clip(k, TAG_KEY_MAX)] = clip(text, TAG_VALUE_MAX)
    return tags


def tags_from_object(node: Node) -> dict[str, str]:
    tags: dict[str, str] = {}
    for k, v in node.entries(limit=TAGS_MAX):
        text = _tag_text(v.value)
        if text is not None:
            tags[clip(k, TAG_KEY_MAX)] = clip(text, TAG_VALUE_MAX)
    return tags


def _tag_text(value: Any) -> str | None:
    """A tag value as text: strings, and numbers written as `text(numbers=True)` writes
    them (an integer of any size; not NaN or infinity, which no JSON holds). None: skip."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return _number_text(value)
    return None


def resource(
    type: str,
    id: str | None,
    *,
    arn: str | None = None,
    name: str | None = None,
    region: str | None = None,
    tags: dict[str, str] | None = None,
) -> Resource:
    return Resource(
        type=clip(type, TEXT_MAX),
        id=clip(id or "", TEXT_MAX),
        arn=clip(arn, TEXT_MAX) if arn else None,
        name=clip(name, TEXT_MAX) if name else None,
        region=clip(region, TEXT_MAX) if region else None,
        tags=tags or {},
    )


def arn_tail(text: str) -> str:
    """The resource id part of an ARN (`arn:aws:ec2:r:a:instance/i-1` -> `i-1`)."""
    if not text.startswith("arn:"):
        return text
    rest = text.split(":", 5)[-1]
    for sep in ("/", ":"):
        if sep in rest:
            return rest.rsplit(sep, 1)[-1]
    return rest


@dataclass
class Draft:
    """An alert being assembled; `build` applies the rules every format shares."""

    id: str
    source: str
    raw: Any
    type: str = ""
    title: str = ""
    description: str = ""
    severity: float = 0.0
    severity_label: str = ""
    time: datetime | None = None
    account: str | None = None
    region: str | None = None
    user_name: str | None = None
    principal_arn: str | None = None
    access_key_id: str | None = None
    ip: str | None = None
    resources: list[Resource] = field(default_factory=list)
    resolved: bool = False

    def add(self, res: Resource) -> None:
        """Add a resource once; an empty or repeated one is dropped, the count is capped."""
        if not (res.id or res.arn or res.name) or len(self.resources) >= RESOURCES_MAX:
            return
        if any(r.type == res.type and r.id == res.id and r.arn == res.arn for r in self.resources):
            return
        self.resources.append(res)

    def build(self) -> Alert:
        """Resolved alerts keep their type but get severity 0, label "resolved" and a title
        prefix: no `severity >= n` trigger fires on them, and people see why."""
        severity = clamp_severity(self.severity)
        label = self.severity_label or label_for(severity)
        title = clip(self.title, TITLE_MAX)
        if self.resolved:
            severity, label = 0.0, RESOLVED
            title = clip(RESOLVED_PREFIX + title, TITLE_MAX)

        def opt(text: str | None) -> str | None:
            return clip(text, TEXT_MAX) if text else None

        try:
            return Alert(
                id=clip_id(self.id),
                source=self.source,
                type=clip(self.type, TEXT_MAX),
                title=title,
                description=clip(self.description, DESCRIPTION_MAX),
                severity=round(severity, 3),
                severity_label=label,
                time=self.time,
                account=opt(self.account),
                region=opt(self.region),
                actor=Actor(
                    user_name=opt(self.user_name),
                    principal_arn=opt(self.principal_arn),
                    access_key_id=opt(self.access_key_id),
                    ip=opt(self.ip),
                ),
                resources=self.resources,
                raw=self.raw,
            )
        except ValidationError:
            # Every field was checked on the way in; this is a last line of defence so that
            # nothing but NormalizeError ever leaves a normalizer.
            raise NormalizeError("$", "does not fit the alert model") from None


def check_payload(payload: Any) -> Node:
    """The payload as a root node, once it is known to be plain JSON data of sane depth.

    Alerts keep the payload as `raw`, and pydantic refuses to serialize data nested deeper
    than about 250 levels, or text with lone surrogates (JSON's "\\ud800" escapes): such a
    payload would break every run record built from it, so it is refused here, at the path
    of the problem. The walk is iterative (depth cannot crash it) and also refuses what JSON
    cannot hold, such as cycles.

    Every post goes through here, so the common case is a quick pass (`_plain_json`) that
    only says yes or no; a payload it does not vouch for is walked again, slowly, to find
    the path of the first problem.
    """
    if _VOUCHED.get() is payload or _plain_json(payload):
        return Node(payload)
    _check_slowly(payload)
    return Node(payload)


# The payload a caller has vouched for (see `vouched`): compared by identity.
_VOUCHED: ContextVar[object] = ContextVar("irbook_vouched_payload", default=None)


def plain_json_body(body: bytes) -> bool:
    """Whether `json.loads` of this body (strict UTF-8) is sure to pass `check_payload`.

    json.loads only makes dicts, lists, text keys and JSON scalars. Nesting needs one
    bracket per level, so at most DEPTH_MAX of them bound the depth (brackets in strings
    only make the count larger). Valid UTF-8 holds no surrogates, so a lone one can only
    come from a `\\uDxxx` escape; a body with any such escape is walked as usual.
    """
    return (
        body.count(b"{") + body.count(b"[") <= DEPTH_MAX
        and b"\\ud" not in body
        and b"\\uD" not in body
    )


class vouched:
    """Within this block, `check_payload(payload)` trusts the caller for this very object.

    For the receiver, which has just parsed the payload from a body `plain_json_body`
    accepted: the whole-payload walk would find nothing, so it is skipped. A class rather
    than a generator-based context manager: it is entered on every post.
    """

    __slots__ = ("_payload", "_token")

    def __init__(self, payload: Any) -> None:
        self._payload = payload

    def __enter__(self) -> None:
        self._token = _VOUCHED.set(self._payload)

    def __exit__(self, *exc: object) -> None:
        _VOUCHED.reset(self._token)


_SCALARS = frozenset({int, float, bool, type(None)})


def _plain_json(payload: Any) -> bool:
    """True when the payload is plain JSON data (dicts, lists, scalars; text keys; no lone
    surrogates), at most DEPTH_MAX deep and NODES_MAX values; False means "not sure".

    The same limits as `_check_slowly`, with exact types instead of ABC checks and no path
    bookkeeping. Depth is bounded, so a cycle ends as "too deep", never as a loop.
    """
    scalars = _SCALARS
    first = type(payload)
    if first is str:
        return payload.isascii() or _encodable(payload)
    if first in scalars:
        return True
    if first is not dict and first is not list:
        return False
    stack: list[tuple[Any, int]] = [(payload, 0)]
    pop, push = stack.pop, stack.append
    nodes = 1
    while stack:
        value, depth = pop()
        if depth >= DEPTH_MAX:
            return False  # a child would be too deep (if there is one): let the slow walk say
        children = value.values() if type(value) is dict else value
        if type(value) is dict:
            for key in value:
                if type(key) is not str or not (key.isascii() or _encodable(key)):
                    return False
        nodes += len(value)
        if nodes > NODES_MAX:
            return False
        for child in children:
            kind = type(child)
            if kind is str:
                if not child.isascii() and not _encodable(child):
                    return False
            elif kind is dict or kind is list:
                if child:
                    push((child, depth + 1))
            elif kind not in scalars:
                return False
    return True


def _check_slowly(payload: Any) -> None:
    """The reference walk: raises NormalizeError at the path of the first problem."""
    stack: list[tuple[Any, int, int]] = [(payload, 0, -1)]
    crumbs: list[tuple[int, str | int]] = []  # (parent crumb, key) to rebuild a path
    nodes = 0
    while stack:
        value, depth, crumb = stack.pop()
        nodes += 1
        if depth > DEPTH_MAX or nodes > NODES_MAX:
            problem = "nested too deeply" if depth > DEPTH_MAX else "too many values"
            raise NormalizeError(_crumb_path(crumbs, crumb), problem)
        if isinstance(value, Mapping):
            for key, child in value.items():
                if not isinstance(key, str) or not _encodable(key):
                    raise NormalizeError(_crumb_path(crumbs, crumb), "object keys must be text")
                if isinstance(child, str) and not _encodable(child):
                    crumbs.append((crumb, key))
                    raise NormalizeError(_crumb_path(crumbs, len(crumbs) - 1), _BAD_TEXT)
                if isinstance(child, Mapping | list):
                    crumbs.append((crumb, key))
                    stack.append((child, depth + 1, len(crumbs) - 1))
                elif not isinstance(child, str | int | float | bool | None):
                    crumbs.append((crumb, key))
                    raise NormalizeError(_crumb_path(crumbs, len(crumbs) - 1), "not JSON data")
        elif isinstance(value, list):
            for index, child in enumerate(value):
                if isinstance(child, str) and not _encodable(child):
                    crumbs.append((crumb, index))
                    raise NormalizeError(_crumb_path(crumbs, len(crumbs) - 1), _BAD_TEXT)
                if isinstance(child, Mapping | list):
                    crumbs.append((crumb, index))
                    stack.append((child, depth + 1, len(crumbs) - 1))
                elif not isinstance(child, str | int | float | bool | None):
                    crumbs.append((crumb, index))
                    raise NormalizeError(_crumb_path(crumbs, len(crumbs) - 1), "not JSON data")
        elif isinstance(value, str) and not _encodable(value):
            raise NormalizeError("$", _BAD_TEXT)
        elif not isinstance(value, str | int | float | bool | None):
            raise NormalizeError("$", "not JSON data")


_BAD_TEXT = "text is not valid Unicode (lone surrogate)"


def _encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _crumb_path(crumbs: list[tuple[int, str | int]], crumb: int) -> str:
    keys: list[str | int] = []
    while crumb >= 0 and len(keys) <= DEPTH_MAX + 1:
        crumb, key = crumbs[crumb]
        keys.append(key)
    path = "$"
    for key in reversed(keys):
        path = child_path(path, key)
    return path


def stable_hash(value: Any, path: str = "$", *, max_nodes: int = 200_000) -> str:
    """A hash of JSON data that ignores key order; iterative, so depth cannot crash it."""
    digest = hashlib.sha256()
    stack: list[Any] = [(value, 0)]
    nodes = 0
    while stack:
        item = stack.pop()
        if isinstance(item, bytes):
            digest.update(item)
            continue
        current, depth = item
        nodes += 1
        if nodes > max_nodes or depth > 512:
            raise NormalizeError(path, "too large or too deeply nested")
        if current is None:
            digest.update(b"n")
        elif isinstance(current, bool):
            digest.update(b"t" if current else b"f")
        elif isinstance(current, int):
            digest.update(b"i" + hex(current).encode() + b";")
        elif isinstance(current, float):
            digest.update(b"d" + repr(current).encode() + b";")
        elif isinstance(current, str):
            data = current.encode("utf-8", "surrogatepass")
            digest.update(b"s" + str(len(data)).encode() + b":" + data)
        elif isinstance(current, Mapping):
            keys = list(current.keys())
            if not all(isinstance(k, str) for k in keys):
                raise NormalizeError(path, "object keys must be strings")
            stack.append(b"}")
            for key in sorted(keys, reverse=True):
                encoded = key.encode("utf-8", "surrogatepass")
                stack.append((current[key], depth + 1))
                stack.append(b"k" + str(len(encoded)).encode() + b":" + encoded)
            stack.append(b"{")
        elif isinstance(current, list | tuple):
            stack.append(b"]")
            for element in reversed(current):
                stack.append((element, depth + 1))
            stack.append(b"[")
        else:
            raise NormalizeError(path, "not JSON data")
    return digest.hexdigest()[:24]
