"""`irbook validate`, `list` and `plan`: the offline commands whose cold start is measured
(bench/cli_startup.py). Their results are cached; behind a cache hit, `plan` imports
neither the loader nor the planner (pydantic's models), so those two are imported after
the cache is asked, the one deferred import of irbook's own modules here."""

from __future__ import annotations

import argparse
import json
import os
import sys

from irbook import cache
from irbook.checked import by_id, is_path
from irbook.cli.params import parse_params
from irbook.files import default_playbook_dirs
from irbook.preflight import env_signature, preflight
from irbook.validate import validate


def _no_cache(args: argparse.Namespace) -> None:
    if getattr(args, "no_cache", False):
        os.environ["IRBOOK_NO_CACHE"] = "1"


def cmd_validate(args: argparse.Namespace) -> int:
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


def cmd_plan(args: argparse.Namespace) -> int:
    """Exit 0 when the planned run succeeds, 3 when it succeeds with failed steps, 4 when
    it fails (Plan.exit_status); 1 for a user error, as every command."""

    _no_cache(args)
    params = parse_params(args.param)
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


__all__ = ["cmd_list", "cmd_plan", "cmd_validate"]
