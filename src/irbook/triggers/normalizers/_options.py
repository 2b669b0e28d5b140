"""Source options: field paths, severity maps, the default severity and the source name.

Options come from the operator's configuration, not from the sender, so a mistake there is
an `OptionsError` naming the option (`options.fields['actor.ip']`). Paths use a small
JSONPath subset: `$`, `.name`, `[0]`, `[-1]` and `['key with.dots']` (or double quotes);
no wildcards, filters or expressions, because a path is only ever looked up, never run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from irbook.triggers.normalizers._base import (
    LABEL_FLOORS,
    Draft,
    Node,
    OptionsError,
    canonical_label,
    child_path,
    clamp_severity,
    missing_severity,
    parse_number,
    parse_time,
    resource,
)

Step = str | int

# Alert fields a `fields` option may fill. `resource.*` builds one resource per post; when
# `resource.id` finds a list, each element becomes a resource of the same type.
TARGETS = frozenset(
    {
        "id",
        "type",
        "title",
        "description",
        "severity",
        "severity_label",
        "time",
        "account",
        "region",
        "actor.user_name",
        "actor.principal_arn",
        "actor.access_key_id",
        "actor.ip",
        "resource.type",
        "resource.id",
        "resource.arn",
        "resource.name",
        "resource.region",
    }
)
_TEXT_LIMITS = {"title": 1_000, "description": 10_000}
_SOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_NAME_CHAR = re.compile(r"[^.\[\]\s]")


@dataclass(frozen=True)
class FieldSpec:
    text: str  # as configured, for messages
    steps: tuple[Step, ...] | None  # a path from the payload root
    bare: str | None = None  # a plain key, where the format allows one (Splunk result fields)


def parse_path(text: str, where: str) -> tuple[Step, ...]:
    """`$.a.b[0]['c.d']` -> ("a", "b", 0, "c.d"); a malformed path is an OptionsError."""
    if not text.startswith("$") or len(text) > 1_000:
        raise OptionsError(where, "a path starts with $ (for example $.detail.id)")
    steps: list[Step] = []
    i = 1
    while i < len(text):
        if len(steps) >= 64:
            raise OptionsError(where, "path has too many steps")
        char = text[i]
        if char == ".":
            j = i + 1
            while j < len(text) and _NAME_CHAR.match(text[j]):
                j += 1
            if j == i + 1:
                raise OptionsError(where, f"empty name at character {i + 1}")
            steps.append(text[i + 1 : j])
            i = j
        elif char == "[" and i + 1 < len(text) and text[i + 1] in "'\"":
            quote, j, name = text[i + 1], i + 2, []
            while j < len(text) and text[j] != quote:
                if text[j] == "\\" and j + 1 < len(text):
                    j += 1
                name.append(text[j])
                j += 1
            if j + 1 >= len(text) or text[j + 1] != "]":
                raise OptionsError(where, f"unclosed quoted key at character {i + 1}")
            steps.append("".join(name))
            i = j + 2
        elif char == "[":
            match = re.compile(r"\[(-?\d{1,9})\]").match(text, i)
            if match is None:
                raise OptionsError(where, f"expected [number] or ['key'] at character {i + 1}")
            steps.append(int(match.group(1)))
            i = match.end()
        else:
            raise OptionsError(where, f"unexpected {char!r} at character {i + 1}")
    return tuple(steps)


def resolve(root: Node, steps: tuple[Step, ...]) -> Node:
    """The value at a path, or an absent node; a path never fails on the payload's shape.

    Whether a missing or mistyped value matters is the caller's decision (only `id` is
    required), and the node's path says where it was looked for.
    """
    value, path = root.value, root.path
    for step in steps:
        path = child_path(path, step)
        if isinstance(step, int):
            if isinstance(value, list) and -len(value) <= step < len(value):
                value = value[step]
            else:
                value = None
        elif isinstance(value, Mapping):
            value = value.get(step)
        else:
            value = None
    return Node(value, path)


def read_options(
    options: Mapping[str, Any] | None, allowed: frozenset[str] = frozenset()
) -> Mapping[str, Any]:
    """The options mapping, with unknown keys refused so a typo is not silently ignored."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise OptionsError("options", "expected a mapping")
    for key in options:
        if not isinstance(key, str) or key not in allowed | {"source"}:
            known = ", ".join(sorted(allowed | {"source"}))
            raise OptionsError(f"options.{key}", f"unknown option (known: {known})")
    return options


def source_name(options: Mapping[str, Any], default: str) -> str:
    """The alert's `source`: the configured source name, which triggers match on."""
    name = options.get("source", default)
    if not isinstance(name, str) or not _SOURCE_NAME.fullmatch(name) or len(name) > 128:
        raise OptionsError("options.source", "expected a name like guardduty-prod")
    return name


def field_map(options: Mapping[str, Any], *, bare_keys: bool = False) -> dict[str, FieldSpec]:
    """Parse `fields: {target: path}`; with `bare_keys`, a value without `$` is a plain key."""
    spec = options.get("fields")
    if spec is None:
        return {}
    if not isinstance(spec, Mapping):
        raise OptionsError("options.fields", "expected a mapping of alert field to path")
    out: dict[str, FieldSpec] = {}
    for target, text in spec.items():
        where = child_path("options.fields", str(target))
        if target not in TARGETS:
            raise OptionsError(where, f"unknown alert field (known: {', '.join(sorted(TARGETS))})")
        if not isinstance(text, str) or not text:
            raise OptionsError(where, "expected a path such as $.alert.id")
        if bare_keys and not text.startswith("$"):
            out[target] = FieldSpec(text, None, text)
        else:
            out[target] = FieldSpec(text, parse_path(text, where))
    return out


def severity_map(options: Mapping[str, Any]) -> dict[str, float]:
    """`severity_map: {label: 0-10}`, keys compared case-insensitively."""
    spec = options.get("severity_map")
    if spec is None:
        return {}
    if not isinstance(spec, Mapping):
        raise OptionsError("options.severity_map", "expected a mapping of label to 0-10")
    out: dict[str, float] = {}
    for label, score in spec.items():
        where = child_path("options.severity_map", str(label))
        if not isinstance(label, str) or isinstance(score, bool):
            raise OptionsError(where, "expected a label mapped to a number from 0 to 10")
        if not isinstance(score, int | float) or not 0 <= score <= 10:
            raise OptionsError(where, "expected a number from 0 to 10")
        out[label.strip().lower()] = float(score)
    return out


def number_option(options: Mapping[str, Any], name: str, default: float, low: float) -> float:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OptionsError(f"options.{name}", "expected a number")
    if not math.isfinite(value) or value < low:
        raise OptionsError(f"options.{name}", "out of range")
    return float(value)


Severity = tuple[float, str | None]  # a 0-10 score, and our label when a word named it


def default_severity(options: Mapping[str, Any], words: Mapping[str, float]) -> Severity | None:
    """`default_severity`: what an alert without a severity gets, instead of a 422.

    A label (`high`), a word of the source's `severity_map`, or a number from 0 to 10.
    None when not configured: then a missing severity is refused (see `settle_severity`).
    """
    value = options.get("default_severity")
    if value is None:
        return None
    where = "options.default_severity"
    if isinstance(value, str):
        word = value.strip().lower()
        if word in words:
            return words[word], None
        label = canonical_label(word)
        if label is not None:
            return LABEL_FLOORS[label], label
        raise OptionsError(where, "unknown label (use informational, low, medium, high, critical)")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OptionsError(where, "expected a label such as high, or a number from 0 to 10")
    if not math.isfinite(value) or not 0 <= value <= 10:
        raise OptionsError(where, "expected a number from 0 to 10")
    return float(value), None


def set_severity(draft: Draft, found: Severity) -> None:
    """Put a severity found (score, label or None) on the alert being built."""
    draft.severity, label = found
    draft.severity_label = label or ""


def settle_severity(
    draft: Draft, default: Severity | None, looked: list[Node], *, mappable: bool = True
) -> None:
    """For an alert whose payload gave no severity: the source's default, else a refusal
    naming the paths looked in. An alert the source calls resolved needs none (it gets 0).
    """
    if draft.resolved:
        return
    if default is None:
        raise missing_severity(looked, mappable=mappable)
    set_severity(draft, default)


def configured_severity(fields: Mapping[str, FieldSpec], root: Node, bare: Node) -> list[Node]:
    """Where the `fields` option told us to look for a severity, for `missing_severity`."""
    return [lookup(fields, t, root, bare) for t in ("severity", "severity_label") if t in fields]


def severity_of(
    node: Node, mapping: Mapping[str, float] | None = None, scale: float = 10.0
) -> tuple[float, str | None] | None:
    """A 0-10 score (and our label, when the source named one) from a number or a word.

    Numbers are read on the source's scale (`scale` is its maximum). Words go through the
    source's `severity_map`, then the common names (low, high, critical...). An unknown
    word is refused rather than guessed: a guess could start, or fail to start, a playbook.
    """
    value = node.value
    if isinstance(value, list) and value:
        node = Node(value[0], child_path(node.path, 0))
        value = node.value
    if value is None:
        return None
    if isinstance(value, str):
        word = value.strip().lower()
        if mapping and word in mapping:
            return mapping[word], None  # the label follows the mapped score
        number = parse_number(value)
        if number is not None:
            return clamp_severity(number * 10.0 / scale), None
        label = canonical_label(word)
        if label is None:
            raise node.error("unknown severity label (map it with the severity_map option)")
        return LABEL_FLOORS[label], label
    number = node.number()
    assert number is not None
    return clamp_severity(number * 10.0 / scale), None


def lookup(fields: Mapping[str, FieldSpec], target: str, root: Node, bare_root: Node) -> Node:
    spec = fields.get(target)
    if spec is None:
        return Node(None, "$")
    if spec.bare is not None:
        return resolve(bare_root, (spec.bare,))
    assert spec.steps is not None
    return resolve(root, spec.steps)


def apply_fields(
    draft: Draft,
    fields: Mapping[str, FieldSpec],
    root: Node,
    *,
    bare_root: Node | None = None,
    mapping: Mapping[str, float] | None = None,
    scale: float = 10.0,
) -> bool:
    """Overwrite the draft with every configured field found in the payload; True when a
    configured severity (or severity_label) was found.

    A field that is configured but absent leaves the format's default in place; one that
    is present but of the wrong kind (an object where text belongs) is a NormalizeError at
    its path. `id` is the caller's business: it decides whether it is required.
    """
    found_severity = False
    bare = bare_root if bare_root is not None else root

    def text(target: str) -> str | None:
        if target not in fields:
            return None
        return lookup(fields, target, root, bare).first_text(_TEXT_LIMITS.get(target, 2_048))

    for target, attr in (
        ("type", "type"),
        ("title", "title"),
        ("description", "description"),
        ("account", "account"),
        ("region", "region"),
        ("actor.user_name", "user_name"),
        ("actor.principal_arn", "principal_arn"),
        ("actor.access_key_id", "access_key_id"),
        ("actor.ip", "ip"),
    ):
        value = text(target)
        if value is not None:
            setattr(draft, attr, value)

    if "severity" in fields:
        found = severity_of(lookup(fields, "severity", root, bare), mapping, scale)
        if found is not None:
            set_severity(draft, found)
            found_severity = True
    label_text = text("severity_label")
    if label_text is not None:
        found_severity = True
        label = canonical_label(label_text)
        if label is None:
            raise lookup(fields, "severity_label", root, bare).error("unknown severity label")
        draft.severity_label = label
        if "severity" not in fields:
            draft.severity = LABEL_FLOORS[label]
    if "time" in fields:
        node = lookup(fields, "time", root, bare)
        value = node.value[0] if isinstance(node.value, list) and node.value else node.value
        when = parse_time(value)
        if when is not None:
            draft.time = when

    if "resource.id" in fields or "resource.arn" in fields:
        _add_mapped_resources(draft, fields, root, bare, text)
    return found_severity


def _add_mapped_resources(
    draft: Draft,
    fields: Mapping[str, FieldSpec],
    root: Node,
    bare: Node,
    text: Callable[[str], str | None],
) -> None:
    kind = text("resource.type") or "Resource"
    arn = text("resource.arn")
    name = text("resource.name")
    region = text("resource.region") or draft.region
    ids = lookup(fields, "resource.id", root, bare)
    if isinstance(ids.value, list):
        for item in ids.items(limit=100):
            value = item.text(numbers=True) if not isinstance(item.value, list) else None
            if value:
                draft.add(resource(kind, value, region=region))
        return
    value = ids.text(numbers=True)
    draft.add(resource(kind, value or "", arn=arn, name=name, region=region))
