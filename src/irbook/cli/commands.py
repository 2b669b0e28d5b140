"""The command implementations behind `irbook validate|list|show|plan|schema|actions`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from irbook.errors import IrbookError, LoadFailed


def _params(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise IrbookError(f"--param takes NAME=VALUE, got {item!r}")
        out[name.strip()] = value
    return out


def cmd_validate(args: argparse.Namespace) -> int:
    from irbook.loader import default_playbook_dirs, validate_paths

    paths = args.paths or default_playbook_dirs()
    result = validate_paths(paths)
    if args.format == "json":
        print(json.dumps([d.as_dict() for d in result.diagnostics], indent=2))
    else:
        for diag in result.diagnostics:
            print(diag)
        errors, warnings = len(result.errors), len(result.warnings)
        files = len(result.loaded) + len({d.location.path for d in result.errors})
        status = "ok" if not errors else "failed"
        print(
            f"{status}: {files} file(s), {len(result.loaded)} valid, {errors} error(s), "
            f"{warnings} warning(s)",
            file=sys.stderr,
        )
    if not result.loaded and not result.errors:
        print(f"irbook: error: no playbooks found in {', '.join(paths)}", file=sys.stderr)
        return 1
    if result.errors or (args.strict and result.warnings):
        return 1
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from irbook.loader import default_playbook_dirs, validate_paths

    result = validate_paths(default_playbook_dirs())
    rows = [
        {
            "id": item.playbook.metadata.id,
            "title": item.playbook.metadata.title,
            "severity": item.playbook.metadata.severity,
            "triggers": sorted({t.source for t in item.playbook.triggers}),
            "path": item.path,
        }
        for item in result.loaded
    ]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            triggers = ",".join(row["triggers"]) or "manual"
            print(f"{row['id']:<32} {row['severity']:<8} {triggers:<20} {row['title']}")
    for diag in result.errors:
        print(diag, file=sys.stderr)
    return 1 if result.errors else 0


def cmd_show(args: argparse.Namespace) -> int:
    from irbook.loader import resolve_playbook
    from irbook.registry import REGISTRY

    item = resolve_playbook(args.playbook)
    pb = item.playbook
    meta = pb.metadata
    print(f"{meta.id}: {meta.title}")
    print(f"  file: {item.path}")
    print(f"  severity: {meta.severity}   owner: {meta.owner or '-'}   rollback: {pb.rollback}")
    if meta.atlas:
        print(f"  MITRE ATLAS: {', '.join(meta.atlas)}")
    if meta.description:
        print(f"  {meta.description.strip()}")
    if pb.triggers:
        print("Triggers:")
        for trig in pb.triggers:
            conds = ", ".join(f"{k} {v}" for k, v in trig.match.items()) or "any alert"
            print(f"  {trig.source}: {conds}")
    if pb.inputs:
        print("Inputs:")
        for name, inp in pb.inputs.items():
            bits = [inp.type, "required" if inp.required else f"default {inp.default!r}"]
            if inp.from_:
                bits.append(f"from {inp.from_}")
            if inp.secret:
                bits.append("secret")
            print(f"  {name}: {', '.join(bits)}")
    print("Steps:")
    for step in pb.steps:
        spec = REGISTRY.get(step.action)
        extra = []
        if step.needs:
            extra.append(f"needs {', '.join(step.needs)}")
        if step.needs_approval:
            extra.append("approval")
        if step.if_ is not None:
            extra.append(f"if {step.if_}")
        if step.for_each is not None:
            extra.append("for each")
        tail = f" ({'; '.join(extra)})" if extra else ""
        print(f"  {step.id}: {step.action} [{spec.effect}]{tail}")
    for warning in item.warnings:
        print(warning)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from irbook.loader import load_alert, resolve_playbook
    from irbook.plan import as_json, build_plan, render_text

    item = resolve_playbook(args.playbook)
    alert = load_alert(args.alert) if args.alert else None
    plan = build_plan(item.playbook, alert, _params(args.param))
    print(as_json(plan) if args.format == "json" else render_text(plan))
    for warning in item.warnings:
        print(warning, file=sys.stderr)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from irbook.schema import playbook_schema

    print(json.dumps(playbook_schema(), indent=2))
    return 0


def cmd_actions(args: argparse.Namespace) -> int:
    from irbook.registry import REGISTRY

    if args.key:
        spec = REGISTRY.get(args.key)
        info: dict[str, Any] = {
            "key": spec.key,
            "summary": spec.summary,
            "effect": spec.effect,
            "idempotent": spec.idempotent,
            "permissions": list(spec.permissions),
            "compensation": spec.compensation,
            "irreversible": spec.irreversible,
            "params": spec.params.model_json_schema(),
            "outputs": spec.result.model_json_schema(),
        }
        print(json.dumps(info, indent=2))
        return 0
    specs = list(REGISTRY)
    if args.format == "json":
        print(json.dumps([{"key": s.key, "effect": s.effect, "summary": s.summary} for s in specs]))
        return 0
    for spec in specs:
        undo = spec.compensation or ("irreversible" if spec.irreversible else "")
        print(f"{spec.key:<44} {spec.effect:<7} {undo:<36} {spec.summary}")
    return 0


__all__ = ["LoadFailed"]
