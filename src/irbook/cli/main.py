"""`irbook` entry point: argument parsing and error handling shared by all commands.

Every command exits 0 on success and 1 on a user error with a one-line reason on
stderr; a Python traceback is shown only with IRBOOK_DEBUG=1.

The handlers live in this package, one module per concern (playbooks, describe,
reference, match, docs, audit, record, runs, approve, serve, drill, deploy, sandbox,
warm), and import irbook's modules at module level. The parser names each handler `module:function`
and imports the module only when its command runs: `irbook validate` never loads the
modules of `irbook run`, which import irbook_flows (and Prefect, once a flow runs).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from irbook import __version__
from irbook.errors import IrbookError

Handler = Callable[[argparse.Namespace], int]

# The modules of the commands that only read files and irbook's own models: no Prefect, no
# clients, no long-lived process (those keep Python's and pydantic's defaults).
OFFLINE = frozenset(
    f"irbook.cli.{name}"
    for name in ("playbooks", "describe", "reference", "match", "docs", "audit")
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 1 like other user errors
        self.exit(1, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Unparsed:
    """The options of a command this process does not run: not built (see `_Commands`)."""

    def add_argument(self, *args: object, **kwargs: object) -> None:
        return None

    def set_defaults(self, **kwargs: object) -> None:
        return None


class _Commands:
    """The subcommands, each listed (with its help) but only `wanted`'s options built.

    argparse checks every option it is given as it is added; building all the commands'
    options is about 4% of a cold `irbook plan`'s instructions (callgrind), for a
    process that parses one command's. None builds them all (`--help`, tests)."""

    def __init__(self, sub: argparse._SubParsersAction[_Parser], wanted: str | None) -> None:
        self.sub = sub
        self.wanted = wanted

    def add_parser(self, name: str, **kwargs: object) -> _Parser | _Unparsed:
        parser = self.sub.add_parser(name, **kwargs)  # type: ignore[arg-type]
        return parser if self.wanted in (None, name) else _Unparsed()


def _command(argv: Sequence[str]) -> str | None:
    """The command `argv` names, when its first word is one (else None: build all)."""
    first = argv[0] if argv else ""
    return first if first and not first.startswith("-") else None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `irbook` parser; with `command`, other commands' options are left out."""
    parser = _Parser(
        prog="irbook",
        description="Incident-response playbooks for AI deployments: validate, plan, run.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub: Any = _Commands(
        parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser), command
    )

    p = sub.add_parser(
        "validate", help="check playbooks, drills and policies; errors as path:line:col"
    )
    p.add_argument(
        "paths", nargs="*", metavar="PATH", help="files or folders (default: playbooks/)"
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--strict", action="store_true", help="lint warnings fail too")
    p.add_argument("--no-cache", action="store_true", help="ignore cached results")
    p.set_defaults(handler="irbook.cli.playbooks:cmd_validate")

    p = sub.add_parser("list", help="list the playbooks in the playbook folders")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(handler="irbook.cli.playbooks:cmd_list")

    p = sub.add_parser("show", help="describe one playbook")
    p.add_argument("playbook", metavar="PLAYBOOK", help="a playbook id or path")
    p.set_defaults(handler="irbook.cli.describe:cmd_show")

    p = sub.add_parser(
        "plan",
        help="what a run would do for an alert, offline",
        description="What a run would do for an alert, offline. Exit status: 0 the run "
        "succeeds, 3 it succeeds with failed steps, 4 it fails, 1 a user error.",
    )
    p.add_argument("playbook", metavar="PLAYBOOK", help="a playbook id or path")
    p.add_argument("--alert", metavar="FILE", help="a normalized alert, JSON or YAML")
    p.add_argument(
        "--param", action="append", default=[], metavar="K=V", help="set an input (repeatable)"
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--no-cache", action="store_true", help="ignore cached results")
    p.set_defaults(handler="irbook.cli.playbooks:cmd_plan")

    p = sub.add_parser(
        "match",
        help="which playbooks a raw vendor payload would start, offline",
        description="Normalize a raw payload as the receiver would and show the playbooks its"
        " triggers start, and the near misses. Exit status: 0 a playbook matched, 1 none did"
        " (or a user error).",
    )
    p.add_argument("file", metavar="FILE", help="the payload as the vendor posts it (JSON)")
    p.add_argument(
        "--from",
        dest="from_",
        required=True,
        metavar="FORMAT",
        help="the payload's format (guardduty), or with --config a configured source",
    )
    p.add_argument("--config", metavar="RECEIVER.yaml", help="irbook serve's configuration")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(handler="irbook.cli.match:cmd_match")

    p = sub.add_parser("run", help="run a playbook as a Prefect flow (live or --dry-run)")
    p.add_argument("playbook", metavar="PLAYBOOK", help="a playbook id or path")
    p.add_argument("--alert", metavar="FILE", help="a normalized alert, JSON or YAML")
    p.add_argument(
        "--param", action="append", default=[], metavar="K=V", help="set an input (repeatable)"
    )
    p.add_argument("--dry-run", action="store_true", help="change nothing; simulate every effect")
    p.add_argument(
        "--live-reads", action="store_true", help="with --dry-run: let read actions call out"
    )
    p.add_argument(
        "--ask-approvals", action="store_true", help="with --dry-run: wait for real approvals"
    )
    p.add_argument("--yes", action="store_true", help="do not ask before a live run")
    p.add_argument("--plain", action="store_true", help="one line per change, no live table")
    p.add_argument("--quiet", action="store_true", help="do not print the plan first")
    p.add_argument("--started-by", metavar="WHO", help=argparse.SUPPRESS)
    p.set_defaults(handler="irbook.cli.runs:cmd_run")

    p = sub.add_parser("approve", help="approve (or --reject) the step a run waits on")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--step", metavar="ID", help="the step expected to be waiting")
    p.add_argument("--reject", action="store_true")
    p.add_argument("--by", metavar="NAME", help="who decides (default: cli:$USER)")
    p.add_argument("--comment", metavar="TEXT")
    p.set_defaults(handler="irbook.cli.approve:cmd_approve")

    p = sub.add_parser("runs", help="recent runs, or one run's record (runs show RUN_ID)")
    p.add_argument("action", nargs="?", choices=("list", "show"), default="list")
    p.add_argument("run_id", nargs="?", metavar="RUN_ID")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(handler="irbook.cli.record:cmd_runs")

    p = sub.add_parser("rollback", help="run the compensations of a run, newest first")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--dry-run", action="store_true", help="show the calls, change nothing")
    p.add_argument("--yes", action="store_true", help="do not ask before a live rollback")
    p.add_argument("--force", action="store_true", help="roll back again a rolled back run")
    p.set_defaults(handler="irbook.cli.runs:cmd_rollback")

    p = sub.add_parser("cancel", help="end a run wherever it is (and its Prefect flow run)")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--by", metavar="NAME", help="who cancels (default: cli:$USER)")
    p.add_argument("--comment", metavar="TEXT")
    p.set_defaults(handler="irbook.cli.runs:cmd_cancel")

    p = sub.add_parser("serve", help="the HTTP receiver: SIEM webhooks and Slack approvals")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--config", metavar="FILE", help="the webhook sources (YAML)")
    p.set_defaults(handler="irbook.cli.serve:cmd_serve")

    p = sub.add_parser("drill", help="run a tabletop drill scenario in dry-run; exit 1 if it fails")
    p.add_argument("scenario", metavar="SCENARIO", help="a Drill YAML file")
    p.add_argument("--report", metavar="PATH", help="also write the report: PATH.md and PATH.html")
    p.set_defaults(handler="irbook.cli.drill:cmd_drill")

    p = sub.add_parser("deploy", help="register the playbook flow as Prefect deployments")
    p.add_argument("--pool", metavar="NAME", default="irbook", help="work pool (default irbook)")
    p.set_defaults(handler="irbook.cli.deploy:cmd_deploy")

    p = sub.add_parser("worker", help="run deployed flow runs in this process (a Prefect worker)")
    p.add_argument("--pool", metavar="NAME", default="irbook", help="work pool (default irbook)")
    p.add_argument("--limit", type=int, metavar="N", help="flow runs at once (default: no limit)")
    p.add_argument("--name", metavar="NAME", help="the worker's name in Prefect")
    p.set_defaults(handler="irbook.cli.deploy:cmd_worker")

    p = sub.add_parser("audit", help="check the run record's audit chain (audit verify)")
    p.add_argument("verb", choices=("verify",), metavar="verify")
    p.add_argument(
        "path",
        nargs="?",
        metavar="PATH",
        help="a SQLite file or a database URL (default: IRBOOK_DATABASE_URL, else"
        " $IRBOOK_HOME/irbook.db)",
    )
    p.add_argument(
        "--expect-head",
        action="append",
        default=[],
        metavar="SEQ:HASH",
        help="a head printed earlier and kept elsewhere: fail unless the chain still holds it"
        " (repeatable)",
    )
    p.set_defaults(handler="irbook.cli.audit:cmd_audit")

    p = sub.add_parser("db", help="the database's schema version (db status), or upgrade it")
    p.add_argument("verb", choices=("status", "upgrade"), metavar="status|upgrade")
    p.add_argument(
        "url",
        nargs="?",
        metavar="URL",
        help="a SQLite file or a database URL (default: IRBOOK_DATABASE_URL, else"
        " $IRBOOK_HOME/irbook.db)",
    )
    p.set_defaults(handler="irbook.cli.database:cmd_db")

    p = sub.add_parser(
        "doctor", help="check the database, the Prefect API and the work pool; exit 1 if not"
    )
    p.add_argument(
        "--config", metavar="PATH", help="the receiver's configuration: its runner and work pool"
    )
    p.add_argument(
        "--pool", metavar="NAME", help="a work pool to check (default: the configuration's)"
    )
    p.set_defaults(handler="irbook.cli.doctor:cmd_doctor")

    p = sub.add_parser("server", help="stop the local Prefect server irbook started (server stop)")
    p.add_argument("verb", choices=("stop",), metavar="stop")
    p.set_defaults(handler="irbook.cli.deploy:cmd_server")

    p = sub.add_parser(
        "warm",
        help="a warm runner that starts `irbook run` without importing Prefect again (opt-in)",
        description="start: a background process that has imported Prefect, boto3 and irbook"
        " once and runs each `irbook run` of this user in a fork of itself, with the caller's"
        " environment and terminal; stop: stop it (irbook server stop does too); status: one"
        " line, exit 0 when it runs, 1 when not. IRBOOK_WARM=0 makes a run start cold.",
    )
    p.add_argument("verb", choices=("start", "stop", "status"), metavar="start|stop|status")
    p.set_defaults(handler="irbook.cli.warm:cmd_warm")

    p = sub.add_parser("sandbox", help="a local fake AWS, Slack and Jira for demos")
    p.add_argument("--port", type=int, default=0, help="default: a free port")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--once", action="store_true", help="seed, print, stop (for scripts)")
    p.set_defaults(handler="irbook.cli.sandbox:cmd_sandbox")

    p = sub.add_parser("iam-policy", help="the least-privilege IAM policy a playbook needs")
    p.add_argument("playbook", metavar="PLAYBOOK", help="a playbook id or path")
    p.add_argument("--no-rollback", action="store_true", help="leave out what compensations need")
    p.add_argument("--alert", metavar="FILE", help="scope resources to this alert's (and inputs')")
    p.add_argument(
        "--param", action="append", default=[], metavar="K=V", help="with --alert: set an input"
    )
    p.set_defaults(handler="irbook.cli.describe:cmd_iam_policy")

    p = sub.add_parser("docs", help="write a Markdown runbook per playbook (or --check them)")
    p.add_argument("playbook", nargs="?", metavar="PLAYBOOK", help="an id or path (default: all)")
    p.add_argument("--out", metavar="DIR", default="runbooks", help="default: runbooks/")
    p.add_argument(
        "--readme",
        metavar="PATH",
        help="the README whose <!-- catalogue:start/end --> block lists the playbooks "
        "(default: README.md, when it has that block)",
    )
    p.add_argument("--check", action="store_true", help="exit 1 if a runbook is stale; no writes")
    p.set_defaults(handler="irbook.cli.docs:cmd_docs")

    p = sub.add_parser("schema", help="print the JSON Schema of the playbook format")
    p.add_argument("--receiver", action="store_true", help="of irbook serve's --config instead")
    p.add_argument(
        "--expressions",
        action="store_true",
        help="the expressions, alert and field reference in Markdown (docs/expressions.md)",
    )
    p.add_argument(
        "--markdown", action="store_true", help="with --receiver: the reference (docs/receiver.md)"
    )
    p.add_argument(
        "--policy", action="store_true", help="of the policy file (irbook-policy.yaml) instead"
    )
    p.set_defaults(handler="irbook.cli.reference:cmd_schema")

    p = sub.add_parser("actions", help="list the registered actions, or describe one")
    p.add_argument("key", nargs="?", metavar="ACTION")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(handler="irbook.cli.reference:cmd_actions")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # the `irbook` process itself (the warm runner's child passes argv)
        argv = sys.argv[1:]
        if argv[:1] == ["run"] and os.environ.get("IRBOOK_WARM", "") != "0":
            from irbook.warm import hand_over

            try:
                code = hand_over(argv)  # None: no warm runner, or it refused; run here
            except KeyboardInterrupt:  # before the run was let go: it never starts
                print("irbook: interrupted", file=sys.stderr)
                return 130
            if code is not None:
                return code
    argv = list(argv)
    parser = build_parser(_command(argv))
    args = parser.parse_args(argv)
    if args.version:
        print(f"irbook {__version__}")
        return 0
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    module_name, func_name = args.handler.split(":")
    if module_name in OFFLINE:
        # The offline commands validate irbook's own models: pydantic plugins (tracing
        # hooks found through entry points) have nothing of the user's to observe there,
        # and looking for them reads every installed distribution's metadata, 10-20 ms
        # of a cold `irbook validate` or `plan`. A value you set yourself wins.
        os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
        # A short run that builds pydantic's validators (tens of thousands of objects
        # that live until exit) is 3-5% garbage collection at the default 700; the
        # collector still runs every 100,000 allocations, which bounds the memory.
        gc.set_threshold(100_000, 20, 100)
    try:
        handler: Handler = getattr(importlib.import_module(module_name), func_name)
        return handler(args)
    except IrbookError as exc:
        print(f"irbook: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("irbook: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if os.environ.get("IRBOOK_DEBUG"):
            raise
        database = sys.modules.get("irbook.db")  # loaded by whatever touched a database
        if database is not None and isinstance(exc, database.unreachable_errors()):
            # a database URL irbook cannot use, or a server that went away: not a bug
            print(f"irbook: {database.first_line(exc)}", file=sys.stderr)
            return 1
        print(
            f"irbook: internal error: {type(exc).__name__}: {exc} "
            "(a bug: rerun with IRBOOK_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
