"""`irbook drill SCENARIO [--report PATH]`: a tabletop drill, refereed by its scenario;
exit 0 when it passes, 1 when it fails, 5 when the policy refuses it."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from irbook import policy as access
from irbook.cli.common import EXIT_REFUSED, refuse
from irbook.drill.report import write_report
from irbook.drill.scenario import load_scenario
from irbook.errors import IrbookError
from irbook.runs import RunStore
from irbook_flows.drill import EXIT_FAILED, EXIT_PASSED, run_drill, summary
from irbook_flows.server import ensure_api


def cmd_drill(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    loaded = load_scenario(args.scenario)  # LoadFailed: file:line:col lines, exit 1
    rules = access.active()
    book = loaded.playbook.playbook.metadata
    scope = access.Scope(book.id, book.severity, "dry-run")
    ruling = access.decide(rules, access.cli_identity(), "drill", scope)
    if not ruling.allowed:
        refuse(RunStore(), ruling, "drill")
        return EXIT_REFUSED
    ensure_api()
    result = run_drill(loaded, rules)
    out.write(summary(result) + "\n")
    if args.report:
        try:
            written = write_report(result, args.report)
        except OSError as exc:  # the summary above and the run record are kept
            why = exc.strerror or str(exc)
            raise IrbookError(f"--report {args.report}: cannot write the report: {why}") from None
        for path in written:
            out.write(f"  report: {path}\n")
    return EXIT_PASSED if result.passed else EXIT_FAILED


__all__ = ["cmd_drill"]
