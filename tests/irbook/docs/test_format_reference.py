"""The format's reference: `irbook schema` accepts what the loader accepts (durations as
text), describes every field, and docs/expressions.md is generated and current."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from irbook import expr
from irbook.docs.reference import NAMES, RUN_FIELDS
from irbook.model import Alert

ROOT = Path(__file__).resolve().parents[3]
REFERENCE = ROOT / "docs" / "expressions.md"
SHIPPED = sorted((ROOT / "playbooks").glob("*.yaml"))


def irbook(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    done = irbook("schema")
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_the_schema_accepts_every_shipped_playbook(
    validator: jsonschema.Draft202012Validator, path: Path
) -> None:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    problems = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert problems == [], problems


def test_durations_are_text_or_seconds_in_the_schema_as_in_the_loader(
    validator: jsonschema.Draft202012Validator, tmp_path: Path
) -> None:
    def book(timeout: Any, approval: Any) -> dict[str, Any]:
        return {
            "apiVersion": "irbook/v1",
            "kind": "Playbook",
            "metadata": {"id": "durations", "title": "Durations"},
            "steps": [
                {
                    "id": "wait",
                    "action": "core.note",
                    "with": {"text": "hi"},
                    "timeout": timeout,
                    "approval": {"timeout": approval},
                }
            ],
        }

    for timeout, approval in (("30s", "15m"), ("1h30m", "500ms"), (90, 2.5)):
        assert list(validator.iter_errors(book(timeout, approval))) == []
        path = tmp_path / "ok.yaml"
        path.write_text(yaml.safe_dump(book(timeout, approval)))
        assert irbook("validate", str(path)).returncode == 0
    for timeout in ("15 minutes", "", -1, True):
        assert list(validator.iter_errors(book(timeout, "15m"))), timeout
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(book(timeout, "15m")))
        assert irbook("validate", str(path)).returncode == 1, timeout


def _undescribed(node: Any, where: str) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for name, prop in (node.get("properties") or {}).items():
            if not (isinstance(prop, dict) and prop.get("description")):
                found.append(f"{where}.{name}")
        for key, value in node.items():
            found += _undescribed(value, f"{where}/{key}")
    elif isinstance(node, list):
        for value in node:
            found += _undescribed(value, where)
    return found


def test_every_field_of_the_schema_has_a_description() -> None:
    done = irbook("schema")
    assert _undescribed(json.loads(done.stdout), "") == []


def test_the_expressions_reference_is_generated_and_current() -> None:
    done = irbook("schema", "--expressions")
    assert done.returncode == 0, done.stderr
    assert REFERENCE.read_text(encoding="utf-8") == done.stdout, (
        "docs/expressions.md is stale: irbook schema --expressions > docs/expressions.md"
    )
    page = done.stdout
    assert set(NAMES) == set(expr.ROOTS)
    for name in expr.ROOTS:
        assert f"| `{name}` |" in page
    for func in expr.FUNCTIONS:
        assert f"| `{func}(" in page
    for field in Alert.model_fields:
        assert f"| `{field}` |" in page
    assert "unless the read is the first argument of `default()`" in page
    assert "`steps.X.status` can always be read" in page


def test_the_run_fields_documented_are_the_ones_a_run_has() -> None:
    done = irbook("plan", "leaked-model-key", "--param", "access_key_id=AKIAABCDEFGHIJKLMNOP")
    plan = json.loads(
        irbook(
            "plan",
            "leaked-model-key",
            "--param",
            "access_key_id=AKIAABCDEFGHIJKLMNOP",
            "--format",
            "json",
        ).stdout
    )
    assert done.returncode == 0, done.stderr
    assert set(RUN_FIELDS) == {*plan["run"], "step"}


def test_markdown_alone_names_both_pages() -> None:
    done = irbook("schema", "--markdown")
    assert done.returncode == 1
    assert "--expressions" in done.stderr
