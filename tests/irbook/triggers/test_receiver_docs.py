"""The receiver's documentation is the code's: the reference is generated and current, and
every configuration the docs and README show loads with the receiver's own loader."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from irbook.triggers.app import load_playbooks
from irbook.triggers.auth import SCHEMES
from irbook.triggers.config import LoadedConfig, load_config, route_playbooks
from irbook.triggers.normalizers import NORMALIZERS

ROOT = Path(__file__).resolve().parents[3]
REFERENCE = ROOT / "docs" / "receiver.md"
EXAMPLES = ROOT / "docs" / "receiver-examples.md"
VENDORS = {
    "guardduty",
    "securityhub",
    "splunk",
    "elastic",
    "sentinel",
    "datadog",
    "alertmanager",
    "pagerduty",
}


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


def yaml_blocks(path: Path) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def load_block(tmp_path: Path, text: str, name: str) -> LoadedConfig:
    """The block as `irbook serve --config` reads it, each named variable set."""
    names = re.findall(r"_env: \[?([A-Z0-9_, ]+)\]?", text)
    env = {var.strip(): f"value-of-{var.strip()}" for group in names for var in group.split(",")}
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    loaded = load_config(str(path), env=env)
    assert loaded.warnings == [], loaded.warnings  # no secret written in a documented file
    return loaded


def test_the_reference_is_generated_from_the_code_and_current() -> None:
    done = irbook("schema", "--receiver", "--markdown")
    assert done.returncode == 0, done.stderr
    assert REFERENCE.read_text(encoding="utf-8") == done.stdout, (
        "docs/receiver.md is stale: irbook schema --receiver --markdown > docs/receiver.md"
    )
    for scheme in SCHEMES:
        assert f"### `{scheme}`" in done.stdout
    for name in NORMALIZERS:
        assert f"### `{name}`" in done.stdout


def test_the_receiver_json_schema_lists_formats_and_schemes() -> None:
    done = irbook("schema", "--receiver")
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    source = schema["$defs"]["SourceConfig"]["properties"]
    assert source["format"]["enum"] == list(NORMALIZERS)
    assert schema["$defs"]["AuthSettings"]["properties"]["scheme"]["enum"] == list(SCHEMES)
    assert "dedup_window" in source and "max_body" in source and "rate" in source


def test_markdown_without_receiver_is_a_user_error() -> None:
    done = irbook("schema", "--markdown")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1


@pytest.mark.parametrize("index", range(len(yaml_blocks(EXAMPLES))))
def test_every_vendor_example_loads(tmp_path: Path, index: int) -> None:
    load_block(tmp_path, yaml_blocks(EXAMPLES)[index], f"example-{index}")


def test_the_examples_cover_every_vendor_the_issue_names() -> None:
    formats = set()
    for text in yaml_blocks(EXAMPLES):
        formats |= set(re.findall(r"format: (\w+)", text))
    assert formats >= VENDORS
    schemes = {s for text in yaml_blocks(EXAMPLES) for s in re.findall(r"scheme: (\w+)", text)}
    assert {"api_key", "basic", "url_token", "bearer", "pagerduty_v3"} <= schemes


def test_the_readme_configuration_loads_and_starts_the_shipped_playbook(tmp_path: Path) -> None:
    (block,) = [b for b in yaml_blocks(ROOT / "README.md") if "guardduty-prod:" in b]
    assert "hmac_sha256" not in block  # EventBridge cannot sign; see issue #18
    loaded = load_block(tmp_path, block, "readme")
    routes = route_playbooks(loaded, load_playbooks([str(ROOT / "playbooks")]))
    assert routes.warnings == []
    assert [pb.id for pb in routes.per_source["guardduty-prod"]] == ["leaked-model-key"]
