"""The command implementations behind `irbook validate|list|show|plan|schema|actions`."""

from __future__ import annotations

import argparse
import json
import os
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


def _no_cache(args: argparse.Namespace) -> None:
    if getattr(args, "no_cache", False):
        os.environ["IRBOOK_NO_CACHE"] = "1"


def cmd_validate(args: argparse.Namespace) -> int:
    from irbook.files import default_playbook_dirs
    from irbook.validate import validate

    _no_cache(args)
    paths = args.paths or default_playbook_dirs()
    report = validate(paths)
    if args.format == "json":
        print(json.dumps([d.as_dict() for d in report.diagnostics], indent=2))
    else:
        for diag in report.diagnostics:
            print(diag)
        errors, warnings = len(report.errors), len(report.warnings)
        strict_fail = bool(args.strict and warnings)
        status = "ok" if not errors and not strict_fail else "failed"
        why = " (--strict: warnings fail)" if strict_fail else ""
        print(
            f"{status}: {len(report.files)} file(s), {len(report.valid)} valid, "
            f"{errors} error(s), {warnings} warning(s){why}",
            file=sys.stderr,
        )
    if not report.files:
        print(f"irbook: error: no playbook or drill files in {', '.join(paths)}", file=sys.stderr)
        return 1
    if report.errors or (args.strict and report.warnings):
        return 1
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from irbook.files import default_playbook_dirs
    from irbook.validate import validate

    result = validate(default_playbook_dirs())
    rows = [
        {
            "id": item.playbook.metadata.id,
            "title": item.playbook.metadata.title,
            "severity": item.playbook.metadata.severity,
            "triggers": sorted({t.source or t.format or "" for t in item.playbook.triggers}),
            "path": item.path,
        }
        for item in result.playbooks()
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
    from irbook.checked import resolve_playbook
    from irbook.registry import REGISTRY

    item = resolve_playbook(args.playbook)
    pb = item.playbook
    meta = pb.metadata
    print(f"{meta.id}: {meta.title}")
    print(f"  file: {item.path}")
    print(f"  severity: {meta.severity}   owner: {meta.owner or '-'}   rollback: {pb.rollback}")
    if meta.atlas:
        from irbook.atlas import atlas

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


def cmd_plan(args: argparse.Namespace) -> int:
    """Exit 0 when the planned run succeeds, 3 when it succeeds with failed steps, 4 when
    it fails (Plan.exit_status); 1 for a user error, as every command."""
    from irbook import cache
    from irbook.checked import by_id, is_path
    from irbook.preflight import env_signature

    _no_cache(args)
    params = _params(args.param)
    # By id, finding the playbook validates it: that load is the one planned below.
    found = None if is_path(args.playbook) else by_id(args.playbook)
    path = found.path if found else args.playbook
    entry = None
    if cache.enabled():
        try:
            with open(path, "rb") as handle:
                book = handle.read()
            alert = b""
            if args.alert:
                with open(args.alert, "rb") as handle:
                    alert = handle.read()
        except OSError:
            pass  # the slow path reports it properly
        else:
            entry = cache.key(
                "plan",
                path,
                book,
                args.alert or "",
                alert,
                json.dumps(params, sort_keys=True),
                args.format,
                env_signature(),  # the preflight line depends on the configuration
            )
            hit = cache.get("plan", entry)
            if isinstance(hit, dict) and isinstance(hit.get("exit"), int):
                sys.stdout.write(hit["stdout"])
                sys.stderr.write(hit["stderr"])
                return int(hit["exit"])
    from irbook.loader import load_alert, load_playbook
    from irbook.plan import as_json, build_plan, render_text
    from irbook.preflight import preflight

    item = found.load() if found else load_playbook(path)
    plan = build_plan(item.playbook, load_alert(args.alert) if args.alert else None, params)
    plan.preflight = preflight(plan)
    out = (as_json(plan) if args.format == "json" else render_text(plan)) + "\n"
    err = "".join(f"{warning}\n" for warning in item.warnings)
    sys.stdout.write(out)
    sys.stderr.write(err)
    status = plan.exit_status
    if entry is not None:
        cache.put("plan", entry, {"stdout": out, "stderr": err, "exit": status})
    return status


def cmd_iam_policy(args: argparse.Namespace) -> int:
    from irbook.checked import resolve_playbook
    from irbook.iam import policy_with_notes
    from irbook.loader import load_alert

    item = resolve_playbook(args.playbook)
    alert = load_alert(args.alert) if args.alert else None
    if args.param and alert is None:
        raise IrbookError("--param scopes the policy together with --alert (give both)")
    policy, notes = policy_with_notes(
        item.playbook, rollback=not args.no_rollback, alert=alert, params=_params(args.param)
    )
    print(json.dumps(policy, indent=2))
    for note in notes:  # JSON has no comments: why a statement keeps Resource "*"
        print(f"note: {note}", file=sys.stderr)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    if args.expressions:
        if args.receiver:
            raise IrbookError("--expressions and --receiver are two pages: give one")
        from irbook.docs.reference import expressions_reference

        sys.stdout.write(expressions_reference())
        return 0
    if args.policy:
        if args.receiver or args.expressions:
            raise IrbookError("--policy is a page of its own: give it alone")
        from irbook.policy import policy_schema

        print(json.dumps(policy_schema(), indent=2))
        return 0
    if args.markdown and not args.receiver:
        raise IrbookError(
            "--markdown goes with --receiver (the playbook reference is --expressions)"
        )
    if args.receiver:
        from irbook.triggers.reference import receiver_reference, receiver_schema

        if args.markdown:
            sys.stdout.write(receiver_reference())
        else:
            print(json.dumps(receiver_schema(), indent=2))
        return 0
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
    from irbook.docs.reference import schema_type

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


__all__ = ["LoadFailed"]


def cmd_audit(args: argparse.Namespace) -> int:
    """`irbook audit verify [PATH] [--expect-head SEQ:HASH]...`: exit 0 when the chain holds,
    the runs and steps tables match it and every published head is still in it; else 1,
    naming the first disagreement."""
    import sqlite3
    from pathlib import Path

    from irbook import audit
    from irbook import db as database

    try:
        anchors = tuple(audit.Anchor.parse(text) for text in args.expect_head)
        url = args.path or database.database_url()
        database.check_url(url, "PATH" if args.path else database.URL_ENV)
    except ValueError as exc:
        raise IrbookError(str(exc)) from None
    if database.dialect_of(url) == "postgresql":
        path: Path | str = database.redacted_url(url)
        try:
            verdict = audit.verify(database.open_database(url), anchors)
        except database.DatabaseUrlError as exc:
            raise IrbookError(str(exc)) from None
        except database.errors() as exc:
            why = database.first_line(exc)
            raise IrbookError(f"{path}: cannot read the run record ({why})") from None
    else:
        path = Path(database.sqlite_path(url))
        if not path.is_file():
            raise IrbookError(f"{path}: no such file (no run recorded yet?)")
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
            verdict = audit.verify(db, anchors)
        except sqlite3.DatabaseError as exc:
            raise IrbookError(f"{path}: not an irbook run record ({exc})") from None
    if not verdict.ok:
        what = {
            "chain": f"audit chain BROKEN after {verdict.records} good records",
            "tables": "run record does not match its audit chain",
            "anchor": "audit chain does not hold the published head",
        }[verdict.broken]
        print(f"{path}: {what}: {verdict.problem}")
        return 1
    noun = "record" if verdict.records == 1 else "records"
    runs = f"{verdict.runs} run{'s' * (verdict.runs != 1)}"
    steps = f"{verdict.steps} step{'s' * (verdict.steps != 1)}"
    print(f"{path}: audit chain intact, {verdict.records} {noun}; {runs} and {steps} match it")
    for anchor, newer in zip(anchors, verdict.after_anchor, strict=True):
        print(f"  published head {anchor} holds ({newer} newer records)")
    if verdict.head:
        print(f"  head {verdict.head} (publish it elsewhere; check later with --expect-head)")
    return 0
