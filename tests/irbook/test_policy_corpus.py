"""The corpus of bad policy files: each pins the exact output of `irbook validate`.

Every `tests/corpus/bad-policy/NAME.yaml` has a sibling `NAME.expected` holding exactly
the stdout lines of `irbook validate tests/corpus/bad-policy/NAME.yaml` run from the
repository root. Regenerate on purpose, then review the diff:

    IRBOOK_REGEN_CORPUS=1 .venv/bin/pytest tests/irbook/test_policy_corpus.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from irbook.validate import validate

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "corpus" / "bad-policy"
CASES = sorted(p.name for p in CORPUS.glob("*.yaml"))
REGEN = os.environ.get("IRBOOK_REGEN_CORPUS") == "1"


def _relative(name: str) -> str:
    return f"tests/corpus/bad-policy/{name}"


def _expected(name: str) -> Path:
    return CORPUS / (Path(name).stem + ".expected")


@pytest.fixture(autouse=True)
def at_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("IRBOOK_NO_CACHE", "1")


@pytest.mark.parametrize("name", CASES)
def test_bad_policy_output_is_pinned(name: str) -> None:
    report = validate([_relative(name)])
    actual = "".join(f"{diag}\n" for diag in report.diagnostics)
    if REGEN:
        _expected(name).write_text(actual, encoding="utf-8")
    assert report.errors and not report.valid
    for diag in report.errors:
        assert diag.location.path == _relative(name) and diag.location.line > 0
    assert actual == _expected(name).read_text(encoding="utf-8")


def test_the_cli_prints_every_expected_line_and_fails() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", "validate", "--no-cache", str(CORPUS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    expected = "".join(_expected(name).read_text(encoding="utf-8") for name in CASES)
    assert done.stdout.replace(str(CORPUS), "tests/corpus/bad-policy") == expected


def test_a_good_policy_validates_and_has_a_json_schema(tmp_path: Path) -> None:
    path = tmp_path / "irbook-policy.yaml"
    path.write_text(
        "apiVersion: irbook/v1\nkind: Policy\n"
        "people: [{name: alice, users: [alice], slack: [U0ALICE]}]\n"
        "groups: [{name: secops, members: [alice], slack_groups: [S0SECOPS]}]\n"
        "roles: [{name: responder, members: [secops], grants: [{allow: [approve]}]}]\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", "validate", "--no-cache", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 valid, 0 error(s)" in done.stderr
    schema = subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", "schema", "--policy"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    data = json.loads(schema.stdout)
    assert data["properties"]["kind"]["const"] == "Policy"
    grants = data["$defs"]["GrantRule"]["properties"]["allow"]["items"]["enum"]
    assert grants == ["run", "run-live", "approve", "approve-irreversible", "rollback", "drill"]
