"""`irbook match`: what a real vendor payload would start, offline.

The payload goes through the receiver's own steps (its JSON parser, the source's
normalizer and options, the source name as the alert's `source`, the playbooks routed to
that source, the same matcher), so a payload that starts nothing here starts nothing in
`irbook serve`, and the near misses say which condition to fix. No network, no Prefect.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from irbook.errors import IrbookError
from irbook.source import default_playbook_dirs
from irbook.triggers.app import _parse_json, load_playbooks
from irbook.triggers.config import MAX_BODY_CEILING, load_config, route_playbooks
from irbook.triggers.match import playbook_verdict
from irbook.triggers.normalizers import (
    NORMALIZERS,
    NormalizeError,
    is_resolved,
    is_sample,
    normalize_as,
)


class _OfflineEnv(Mapping[str, str]):
    """The environment, where a secret the configuration names but that is not set reads
    as a placeholder: matching never checks a signature, so it must not need the secrets."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def __getitem__(self, key: str) -> str:
        return self._env.get(key) or "irbook-match-offline-placeholder-secret-0123456789"

    def __iter__(self) -> Iterator[str]:
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)


def _read_payload(path: str) -> Any:
    try:
        with open(path, "rb") as handle:
            body = handle.read(MAX_BODY_CEILING + 1)
    except OSError as exc:
        raise IrbookError(f"{path}: cannot read the payload: {exc.strerror or exc}") from None
    if len(body) > MAX_BODY_CEILING:
        raise IrbookError(f"{path}: larger than {MAX_BODY_CEILING} bytes, the receiver's ceiling")
    try:
        return _parse_json(body)
    except ValueError as exc:
        raise IrbookError(f"{path}: not a JSON payload: {exc}") from None


def _origin(args: argparse.Namespace) -> tuple[str, Mapping[str, Any] | None, str, list[Any]]:
    """The format, options, alert source and candidate playbooks `--from` stands for."""
    wanted: str = args.from_
    if args.config is None:
        if wanted not in NORMALIZERS:
            close = difflib.get_close_matches(wanted, list(NORMALIZERS), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise IrbookError(
                f"--from {wanted}: unknown format; {hint}(known: {', '.join(sorted(NORMALIZERS))})"
            )
        return wanted, None, wanted, load_playbooks(default_playbook_dirs())
    loaded = load_config(args.config, env=_OfflineEnv(os.environ))
    sources = loaded.sources
    if wanted in sources:
        name = wanted
    else:
        same = sorted(n for n, src in sources.items() if src.config.format == wanted)
        if len(same) != 1:
            configured = ", ".join(
                f"{n} ({src.config.format})" for n, src in sorted(sources.items())
            )
            what = "several sources of" if same else "no source or source of"
            raise IrbookError(
                f"--from {wanted}: {args.config} has {what} that format; name one of:"
                f" {configured or 'none configured'}"
            )
        name = same[0]
    src = sources[name]
    playbooks = load_playbooks(loaded.config.playbooks or default_playbook_dirs())
    routes = route_playbooks(loaded, playbooks)
    for warning in [*loaded.warnings, *routes.warnings]:  # as `irbook serve` says at start-up
        print(f"irbook: warning: {warning}", file=sys.stderr)
    return (
        src.config.format,
        src.config.options,
        src.config.alert_source(name),
        routes.per_source[name],
    )


def _verdicts(alert: Any, playbooks: Sequence[Any]) -> dict[str, Any]:
    data = alert.as_context()
    matched: list[dict[str, Any]] = []
    near: list[dict[str, Any]] = []
    resolved = is_resolved(alert)
    for pb in playbooks:
        verdict = playbook_verdict(pb.triggers, data)
        if verdict.trigger is not None:
            if not resolved:
                matched.append({"playbook": pb.id, "trigger": verdict.trigger})
            continue
        miss = verdict.near()
        if miss is not None:
            near.append({"playbook": pb.id, "why": str(miss)})
    shown = alert.model_dump(mode="json", exclude={"raw"})
    result: dict[str, Any] = {"alert": shown, "matches": matched, "near_misses": near}
    if resolved:
        result["resolved"] = True  # the receiver starts nothing for a resolved alert
    if is_sample(alert):
        result["sample"] = True  # a sample finding only ever starts a dry run
    return result


def _shown(value: Any) -> str:
    """Alert text as one printable line: it is the sender's, and may hold escapes."""
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in str(value))
    return text if len(text) <= 200 else text[:197] + "..."


def _text(result: dict[str, Any]) -> list[str]:
    alert = result["alert"]
    lines = [f"alert {_shown(alert['id'])} (source {alert['source']}, format {alert['format']})"]
    for key in ("type", "title", "severity", "severity_label", "time", "account", "region"):
        if alert.get(key) not in (None, ""):
            lines.append(f"  {key}: {_shown(alert[key])}")
    if result.get("resolved"):
        lines.append("  resolved: the receiver starts nothing for it")
    if result.get("sample"):
        lines.append("  sample finding: the receiver would start a dry run only")
    for m in result["matches"]:
        lines.append(f"  match: {m['playbook']} (trigger {m['trigger']})")
    for n in result["near_misses"]:
        lines.append(f"  near miss: {n['playbook']}: {n['why']}")
    if not result["matches"]:
        lines.append("  no playbook matched")
    return lines


def cmd_match(args: argparse.Namespace) -> int:
    """Exit 0 when some alert of the payload starts a playbook, 1 when none does (or on a
    user error: an unreadable file, an unknown format, a payload the normalizer refuses)."""
    payload = _read_payload(args.file)
    fmt, options, origin, playbooks = _origin(args)
    try:
        alerts = normalize_as(fmt, payload, options, origin)
    except NormalizeError as exc:  # the receiver's 422, with the same path and reason
        raise IrbookError(f"{args.file}: {exc.path}: {exc.reason} (format {fmt})") from None
    except (RecursionError, ValueError, TypeError) as exc:  # the receiver's 422 for a slip
        raise IrbookError(
            f"{args.file}: $: payload could not be normalized ({type(exc).__name__}, format {fmt})"
        ) from None
    results = [_verdicts(alert, playbooks) for alert in alerts]
    if args.format == "json":
        out: Any = results[0] if len(results) == 1 else {"alerts": results}
        print(json.dumps(out, indent=2))
    else:
        if not results:
            print(f"{args.file}: the payload holds no alert")
        for result in results:
            print("\n".join(_text(result)))
    return 0 if any(r["matches"] for r in results) else 1
