"""The corpus of bad playbooks: each file pins the exact output of `irbook validate`.

Every `tests/corpus/bad/NAME.yaml` has a sibling `NAME.expected` holding exactly the
stdout lines of `irbook validate tests/corpus/bad/NAME.yaml` run from the repository
root. When a message is improved on purpose, regenerate the expected files and review
the diff:

    IRBOOK_REGEN_CORPUS=1 .venv/bin/pytest tests/irbook/test_bad_corpus.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "corpus" / "bad"
CASES = sorted(p.name for p in CORPUS.glob("*.yaml"))
REGEN = os.environ.get("IRBOOK_REGEN_CORPUS") == "1"
IRBOOK = str(Path(sys.executable).parent / "irbook")  # the console script users run

# Files whose pinned output is known to be wrong: each entry is an xfail that flips to a
# failing XPASS once the loader is fixed, so the entry must go with the fix.
KNOWN_PROBLEMS: dict[str, str] = {}


def _relative(name: str) -> str:
    return f"tests/corpus/bad/{name}"


def _expected_path(name: str) -> Path:
    return CORPUS / (Path(name).stem + ".expected")


def _validate(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`irbook validate ARGS` from the repository root, as a user runs it (cache on)."""
    env = {k: v for k, v in os.environ.items() if k not in ("IRBOOK_NO_CACHE", "IRBOOK_PLAYBOOKS")}
    return subprocess.run(
        [IRBOOK, "validate", *args],
        cwd=ROOT,
        env={**env, "IRBOOK_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    """The whole corpus through `irbook validate`: text (a cold cache, then the same command
    again from the cache it filled) and --format json."""
    home = tmp_path_factory.mktemp("corpus-home")
    return {
        "text": _validate(home, "tests/corpus/bad"),
        "cached": _validate(home, "tests/corpus/bad"),
        "json": _validate(home, "--format", "json", "--no-cache", "tests/corpus/bad"),
    }


def _lines_of(stdout: str, name: str) -> str:
    """The lines `irbook validate` printed about one file: each starts with its path."""
    prefix = f"{_relative(name)}:"
    return "".join(f"{line}\n" for line in stdout.splitlines() if line.startswith(prefix))


@pytest.mark.parametrize("name", CASES)
def test_bad_playbook_output_is_pinned(
    name: str, runs: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    actual = _lines_of(runs["text"].stdout, name)
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
def test_bad_playbook_is_rejected(
    name: str, runs: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    found = [d for d in json.loads(runs["json"].stdout) if d["path"] == _relative(name)]
    assert any(d["severity"] == "error" for d in found), f"{name} should be rejected"
    # one line per finding, even for a message quoting a newline from the file
    assert len(_lines_of(runs["text"].stdout, name).splitlines()) == len(found)


def test_every_error_stands_in_its_file_and_no_file_is_valid(
    runs: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    found = json.loads(runs["json"].stdout)
    assert runs["json"].returncode == 1
    assert {d["path"] for d in found} == {_relative(name) for name in CASES}
    summary = runs["text"].stderr.strip().splitlines()[-1]
    assert summary.startswith(f"failed: {len(CASES)} file(s), 0 valid, "), summary


def test_cached_run_prints_the_same(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    """The cache wraps the validator: a second run, served from it, says the same."""
    first, again = runs["text"], runs["cached"]
    assert (again.returncode, again.stdout, again.stderr) == (
        first.returncode,
        first.stdout,
        first.stderr,
    )


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40


def test_every_expected_file_has_a_playbook() -> None:
    orphans = [
        p.name for p in CORPUS.glob("*.expected") if not (CORPUS / f"{p.stem}.yaml").is_file()
    ]
    assert not orphans


def test_cli_prints_the_expected_lines(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    """The folder's output is every .expected, in order, and nothing else: no line that
    names no corpus file, no traceback."""
    done = runs["text"]
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    if REGEN:
        pytest.skip("expected files are being regenerated")
    expected = "".join(_expected_path(name).read_text(encoding="utf-8") for name in CASES)
    assert done.stdout == expected


@pytest.mark.parametrize("name", CASES[:: max(1, len(CASES) // 3)])
def test_one_file_prints_its_expected_lines(name: str, tmp_path: Path) -> None:
    """A file on its own prints what the folder run printed for it (its .expected)."""
    done = _validate(tmp_path, _relative(name))
    assert done.returncode == 1
    assert done.stdout == _expected_path(name).read_text(encoding="utf-8")
