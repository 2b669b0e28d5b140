"""`irbook schema` and `irbook actions`: the formats irbook reads (JSON Schema, Markdown
references) and the registered actions."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from irbook.docs.reference import expressions_reference, schema_type
from irbook.errors import IrbookError
from irbook.policy import policy_schema
from irbook.registry import REGISTRY
from irbook.schema import playbook_schema
from irbook.triggers.reference import receiver_reference, receiver_schema


def cmd_schema(args: argparse.Namespace) -> int:
    if args.expressions:
        if args.receiver:
            raise IrbookError("--expressions and --receiver are two pages: give one")
        sys.stdout.write(expressions_reference())
        return 0
    if args.policy:
        if args.receiver or args.expressions:
            raise IrbookError("--policy is a page of its own: give it alone")
        print(json.dumps(policy_schema(), indent=2))
        return 0
    if args.markdown and not args.receiver:
        raise IrbookError(
            "--markdown goes with --receiver (the playbook reference is --expressions)"
        )
    if args.receiver:
        if args.markdown:
            sys.stdout.write(receiver_reference())
        else:
            print(json.dumps(receiver_schema(), indent=2))
        return 0
    print(json.dumps(playbook_schema(), indent=2))
    return 0


def cmd_actions(args: argparse.Namespace) -> int:
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
        if spec.no_evidence is not None:
            info["no_evidence"] = spec.no_evidence
        if args.format == "json":
            print(json.dumps(info, indent=2))
        else:
            sys.stdout.write(_describe_action(spec))
        return 0
    specs = list(REGISTRY)
    if args.format == "json":
        print(json.dumps([{"key": s.key, "effect": s.effect, "summary": s.summary} for s in specs]))
        return 0
    for spec in specs:
        undo = spec.compensation or ("irreversible" if spec.irreversible else "")
        print(f"{spec.key:<44} {spec.effect:<7} {undo:<36} {spec.summary}")
    return 0


def _columns(rows: list[tuple[str, ...]]) -> list[str]:
    """Aligned columns; the last one (a description) runs on."""
    widths = [max(len(row[i]) for row in rows) + 2 for i in range(len(rows[0]) - 1)]
    return [
        "  " + "".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + row[-1]
        for row in rows
    ]


def _describe_action(spec: Any) -> str:
    """`irbook actions KEY` for people: what it does, may do, needs and undoes; its
    parameters and outputs as tables (the JSON Schema is `--format json`)."""
    lines = [f"{spec.key}  [{spec.effect}]", f"  {spec.summary}", ""]
    if spec.compensation:
        undo = f"{spec.compensation}"
    elif spec.irreversible:
        undo = f"irreversible: {spec.irreversible}"
    else:
        undo = "nothing to undo (it changes no resource)"
    facts = [
        ("effect", spec.effect),
        ("idempotent", "yes" if spec.idempotent else "no"),
        ("on failure", f"{spec.on_failure} (a step may set on_failure)"),
        ("permissions", ", ".join(spec.permissions) or "none"),
        ("undo", undo),
    ]
    if spec.no_evidence:
        facts.append(("evidence", f"none to keep first: {spec.no_evidence}"))
    if spec.prefer:
        facts.append(("prefer", f"{spec.prefer} (can be undone)"))
    width = max(len(name) for name, _ in facts)
    lines += [f"  {name + ':':<{width + 1}} {value}" for name, value in facts]
    for title, model, with_default in (
        ("Parameters", spec.params, True),
        ("Outputs", spec.result, False),
    ):
        schema = model.model_json_schema(by_alias=True)
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        lines += ["", f"{title}:"]
        if not props:
            lines.append("  none")
            continue
        header: tuple[str, ...] = ("name", "type", "default", "description")
        if not with_default:
            header = ("name", "type", "description")
        rows: list[tuple[str, ...]] = []
        for name, prop in props.items():
            text = str(prop.get("description") or "").replace("\n", " ")
            if name in spec.sensitive:
                text = (text + " " if text else "") + "(secret: shown as ***)"
            kind = schema_type(prop, bar=" | ")
            if with_default:
                default = "required" if name in required else json.dumps(prop.get("default"))
                rows.append((name, kind, default, text))
            else:
                rows.append((name, kind, text))
        lines += _columns([header, *rows])
    return "\n".join(line.rstrip() for line in lines) + "\n"


__all__ = ["cmd_actions", "cmd_schema"]
