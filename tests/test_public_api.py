"""The public surface, pinned: what `irbook` and its validator modules export, the CLI's
commands (the parser's, README's and `irbook --help`'s lists are one list) and the exit
statuses the README documents. A change here is a change users see: update README.md and
this file together, on purpose."""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from irbook.cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent
IRBOOK = str(Path(sys.executable).parent / "irbook")

EXPORTS = {
    "irbook": ["__version__"],
    "irbook.validate": [
        "FileResult",
        "Report",
        "check_file",
        "check_policy",
        "duplicate_id",
        "find_playbook",
        "resolve_playbook",
        "validate",
    ],
    "irbook.checked": [
        "FileResult",
        "by_id",
        "check_file",
        "find_playbook",
        "is_path",
        "resolve_playbook",
    ],
    "irbook.loader": [
        "Loaded",
        "check_playbook",
        "default_playbook_dirs",
        "find_cycle",
        "load_alert",
        "load_playbook",
        "parse_duration",
        "playbook_files",
        "upstream_of",
    ],
    "irbook.lint": ["RULES", "lint_playbook"],
    "irbook.model": [
        "Acknowledgement",
        "Actor",
        "Alert",
        "Approval",
        "AwsTarget",
        "InputSpec",
        "Metadata",
        "Playbook",
        "Resource",
        "Step",
        "Trigger",
    ],
}

COMMANDS = [
    "actions",
    "approve",
    "audit",
    "cancel",
    "db",
    "deploy",
    "docs",
    "doctor",
    "drill",
    "iam-policy",
    "list",
    "match",
    "plan",
    "rollback",
    "run",
    "runs",
    "sandbox",
    "schema",
    "serve",
    "server",
    "show",
    "validate",
    "warm",
    "worker",
]

# Documented exit statuses beyond "0 success, 1 user error" (README: Commands, `irbook run`).
PLAN_EXITS = "exit 0 the run succeeds, 3 with failed steps, 4 it fails"
MATCH_EXITS = "exit 0 a match, 1 none"
RUN_EXITS = {0, 1, 2, 3, 5, 130, 143}
APPROVE_ONLY_EXITS = {4, 6}  # irbook approve: recorded, too late


def _fresh(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("module", sorted(EXPORTS))
def test_exports_are_pinned(module: str) -> None:
    """`__all__` is the list above, and every name in it exists (fresh interpreter)."""
    out = _fresh(
        "import importlib, json\n"
        f"m = importlib.import_module({module!r})\n"
        "print(json.dumps([sorted(m.__all__), [n for n in m.__all__ if not hasattr(m, n)]]))\n"
    )
    names, missing = json.loads(out)
    assert names == sorted(EXPORTS[module])
    assert missing == []


def test_the_package_exposes_only_its_version() -> None:
    """`import irbook` stays light (the CLI imports it for --help): nothing but the version."""
    out = _fresh(
        "import irbook, json, sys\n"
        "print(json.dumps([sorted(n for n in vars(irbook) if not n.startswith('_')),"
        " sorted(m for m in sys.modules if m.startswith('irbook.'))]))\n"
    )
    public, submodules = json.loads(out)
    assert public == []
    assert submodules == []


def _parser_commands() -> list[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## Commands", 1)[1].split("```", 2)[1]
    names = []
    for line in block.splitlines():
        words = line.split()
        if words[:1] != ["irbook"]:
            continue
        names.append(words[1])
        if words[2:3] == ["|"]:  # irbook list | show PLAYBOOK
            names.append(words[3])
    return sorted(names)


def test_cli_commands_are_pinned_and_documented() -> None:
    assert _parser_commands() == COMMANDS
    assert _readme_commands() == COMMANDS


def test_help_lists_every_command() -> None:
    done = subprocess.run([IRBOOK, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    listed = re.findall(r"^    ([a-z-]+)(?: |$)", done.stdout, re.M)
    assert sorted(listed) == COMMANDS, done.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_a_bad_option_is_a_one_line_user_error(command: str) -> None:
    """Exit 1 with one line on stderr, for every command, before it does anything."""
    verbs = {
        "audit": ["audit", "verify"],
        "server": ["server", "stop"],
        "db": ["db", "status"],
        "warm": ["warm", "status"],
    }
    words = verbs.get(command, [command])
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"}  # never reached
    done = subprocess.run(
        [IRBOOK, *words, "--no-such-option"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("irbook")


def test_documented_exit_statuses() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert PLAN_EXITS in readme and MATCH_EXITS in readme
    help_text = {
        name: parser.description or ""
        for name, parser in next(
            a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
        ).choices.items()
    }
    assert "0 the run succeeds, 3 it succeeds with failed steps, 4 it fails" in help_text["plan"]
    assert "0 a playbook matched, 1 none did" in help_text["match"]
    said = re.search(r"Exit status: (.*?)\(the record", readme, re.S)
    assert said is not None
    assert {int(n) for n in re.findall(r"\b(\d+) ", said.group(1))} == RUN_EXITS
    # irbook run's statuses are the run commands' constants (irbook.cli.common's EXIT_*)
    tree = ast.parse((ROOT / "src" / "irbook" / "cli" / "common.py").read_text(encoding="utf-8"))
    values: set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign):
            names = [n for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
            if names and all(n.id.startswith("EXIT_") for n in names):
                consts = [c for c in ast.walk(node.value) if isinstance(c, ast.Constant)]
                values |= {c.value for c in consts if isinstance(c.value, int)}
    assert values == RUN_EXITS | APPROVE_ONLY_EXITS
