"""The corpus of bad playbooks: each file pins the exact output of `irbook validate`.

Every `tests/corpus/bad/NAME.yaml` has a sibling `NAME.expected` holding exactly the
stdout lines of `irbook validate tests/corpus/bad/NAME.yaml` run from the repository
root. When a message is improved on purpose, regenerate the expected files and review
the diff:

    IRBOOK_REGEN_CORPUS=1 .venv/bin/pytest tests/test_bad_corpus.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from irbook.loader import validate_paths

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus" / "bad"
CASES = sorted(p.name for p in CORPUS.glob("*.yaml"))
REGEN = os.environ.get("IRBOOK_REGEN_CORPUS") == "1"

# Files whose pinned output is known to be wrong: each entry is an xfail that flips to a
# failing XPASS once the loader is fixed, so the entry must go with the fix.
KNOWN_PROBLEMS: dict[str, str] = {}


def _relative(name: str) -> str:
    return f"tests/corpus/bad/{name}"


def _expected_path(name: str) -> Path:
    return CORPUS / (Path(name).stem + ".expected")


def _output(name: str) -> str:
    """What `irbook validate` prints on stdout for one corpus file (cwd: repo root)."""
    result = validate_paths([_relative(name)])
    return "".join(f"{diag}\n" for diag in result.diagnostics)


@pytest.fixture
def at_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(ROOT)
    return ROOT


@pytest.mark.parametrize("name", CASES)
def test_bad_playbook_output_is_pinned(name: str, at_root: Path) -> None:
    actual = _output(name)
    expected_path = _expected_path(name)
    if REGEN:
        expected_path.write_text(actual, encoding="utf-8")
    assert expected_path.is_file(), (
        f"{expected_path.name} is missing: run IRBOOK_REGEN_CORPUS=1 pytest {__file__}"
    )
    assert actual == expected_path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            name,
            marks=pytest.mark.xfail(strict=True, reason=KNOWN_PROBLEMS[name]),
        )
        if name in KNOWN_PROBLEMS
        else name
        for name in CASES
    ],
)
def test_bad_playbook_is_rejected(name: str, at_root: Path) -> None:
    result = validate_paths([_relative(name)])
    assert result.errors, f"{name} should be rejected"
    assert not result.loaded
    for diag in result.errors:
        assert diag.location.path == _relative(name)
        assert "\n" not in str(diag)


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40


def test_every_expected_file_has_a_playbook() -> None:
    orphans = [
        p.name for p in CORPUS.glob("*.expected") if not (CORPUS / f"{p.stem}.yaml").is_file()
    ]
    assert not orphans


def test_cli_prints_the_expected_lines(at_root: Path) -> None:
    """One real `irbook validate` over the whole folder prints every .expected, in order."""
    done = subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", "validate", "--no-cache", "tests/corpus/bad"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    if REGEN:
        pytest.skip("expected files are being regenerated")
    expected = "".join(_expected_path(name).read_text(encoding="utf-8") for name in CASES)
    assert done.stdout == expected
