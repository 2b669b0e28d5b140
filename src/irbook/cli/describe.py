"""`irbook show PLAYBOOK` and `irbook iam-policy PLAYBOOK`: what a playbook does, and the
least-privilege IAM policy it needs."""

from __future__ import annotations

import argparse
import json
import sys

from irbook.atlas import atlas
from irbook.checked import resolve_playbook
from irbook.cli.params import parse_params
from irbook.errors import IrbookError
from irbook.iam import policy_with_notes
from irbook.loader import load_alert
from irbook.registry import REGISTRY


def cmd_show(args: argparse.Namespace) -> int:
    item = resolve_playbook(args.playbook)
    pb = item.playbook
    meta = pb.metadata
    print(f"{meta.id}: {meta.title}")
    print(f"  file: {item.path}")
    print(f"  severity: {meta.severity}   owner: {meta.owner or '-'}   rollback: {pb.rollback}")
    if meta.atlas:
        known = atlas()
        print(f"  MITRE ATLAS: {'; '.join(known.label(t) for t in meta.atlas)}")
    if meta.description:
        print(f"  {meta.description.strip()}")
    if pb.triggers:
        print("Triggers:")
        for trig in pb.triggers:
            conds = ", ".join(f"{k} {v}" for k, v in trig.match.items()) or "any alert"
            print(f"  {trig.origin()}: {conds}")
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


def cmd_iam_policy(args: argparse.Namespace) -> int:
    item = resolve_playbook(args.playbook)
    alert = load_alert(args.alert) if args.alert else None
    if args.param and alert is None:
        raise IrbookError("--param scopes the policy together with --alert (give both)")
    policy, notes = policy_with_notes(
        item.playbook, rollback=not args.no_rollback, alert=alert, params=parse_params(args.param)
    )
    print(json.dumps(policy, indent=2))
    for note in notes:  # JSON has no comments: why a statement keeps Resource "*"
        print(f"note: {note}", file=sys.stderr)
    return 0


__all__ = ["cmd_iam_policy", "cmd_show"]
