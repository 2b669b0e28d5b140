"""README's two commands are the ones that work: CI runs the same test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.*?)\n```", text, flags=re.S)


def test_ci_runs_the_readme_test_command() -> None:
    test_command = _blocks()[1].strip()
    assert "pytest" in test_command and "mypy" in test_command and "ruff" in test_command
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in [line.strip() for line in ci]


def test_the_main_job_validates_and_plans_the_shipped_example() -> None:
    main_job = _blocks()[0]
    assert "irbook validate playbooks/" in main_job
    assert (
        "irbook plan leaked-model-key --alert runbooks/drills/alerts/leaked-model-key.alert.json"
        in main_job
    )
    assert (ROOT / "runbooks/drills/alerts/leaked-model-key.alert.json").is_file()
