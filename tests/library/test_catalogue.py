"""The playbook library as a whole: every shipped playbook (playbooks/*.yaml) has a drill
in runbooks/drills/ that starts from the vendor's raw payload (`alert: {file, from}`),
that payload starts this playbook and no other shipped one through `irbook match`, and
`irbook validate --strict` finds nothing to say about it.

Parametrized over what is in playbooks/ and runbooks/drills/ when the tests are collected:
a new playbook is covered with no edit here. (CI runs every drill:
tests/irbook_flows/test_drills.py; every runbook is current: tests/irbook/docs/test_docs.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = sorted((ROOT / "playbooks").glob("*.y*ml"))
DRILLS = sorted((ROOT / "runbooks" / "drills").glob("*.y*ml"))


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _playbook_id(path: Path) -> str:
    return str(_yaml(path)["metadata"]["id"])


def _drills_of(playbook: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The shipped drills whose `playbook:` is this playbook, by id or by path."""
    pid = _playbook_id(playbook)
    found = []
    for drill in DRILLS:
        data = _yaml(drill)
        ref = str(data.get("playbook", ""))
        if ref.endswith((".yaml", ".yml")) or "/" in ref:
            same = (drill.parent / ref).resolve() == playbook.resolve()
        else:
            same = ref == pid
        if same:
            found.append((drill, data))
    return found


def _raw_fixtures(playbook: Path) -> list[tuple[Path, Path, str]]:
    """(drill, payload file, format) of each drill of the playbook with a raw payload file."""
    out = []
    for drill, data in _drills_of(playbook):
        alert = data.get("alert") or {}
        if isinstance(alert, dict) and alert.get("file") and alert.get("from"):
            out.append((drill, (drill.parent / str(alert["file"])).resolve(), str(alert["from"])))
    return out


def irbook(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "IRBOOK_PLAYBOOKS"}
    return subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,  # the shipped playbooks: ./playbooks
    )


def test_the_library_is_there() -> None:
    assert PLAYBOOKS, "no playbooks/*.yaml"
    assert DRILLS, "no runbooks/drills/*.yaml"


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=[p.stem for p in PLAYBOOKS])
def test_every_playbook_has_a_drill_from_a_raw_vendor_payload(playbook: Path) -> None:
    drills = _drills_of(playbook)
    assert drills, f"{playbook.name}: no drill in runbooks/drills/ names it"
    raw = _raw_fixtures(playbook)
    assert raw, (
        f"{playbook.name}: none of its drills ({', '.join(d.name for d, _ in drills)}) "
        "starts from a raw vendor payload: give one `alert: {file: alerts/X.json, from: FORMAT}`"
    )
    for drill, payload, _ in raw:
        assert payload.is_file(), f"{drill.name}: {payload} does not exist"


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=[p.stem for p in PLAYBOOKS])
def test_its_raw_payload_starts_it_and_no_other_shipped_playbook(playbook: Path) -> None:
    pid = _playbook_id(playbook)
    fixtures = _raw_fixtures(playbook)
    if not fixtures:
        pytest.fail(f"{playbook.name}: no drill with a raw payload (see the test above)")
    for drill, payload, fmt in fixtures:
        done = irbook("match", str(payload), "--from", fmt, "--format", "json")
        assert "Traceback" not in done.stderr, done.stderr
        result = json.loads(done.stdout)
        first = result["alerts"][0] if "alerts" in result else result  # the one drilled
        started = sorted({m["playbook"] for m in first["matches"]})
        assert started == [pid], (
            f"{drill.name}: {payload.name} (--from {fmt}) starts {started or 'nothing'}, "
            f"expected only {pid}; near misses: {first['near_misses']}"
        )
        assert done.returncode == 0


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=[p.stem for p in PLAYBOOKS])
def test_validate_strict_is_clean(playbook: Path) -> None:
    targets = [str(playbook), *(str(d) for d, _ in _drills_of(playbook))]
    done = irbook("validate", "--strict", *targets)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning" not in done.stdout and "error" not in done.stdout, done.stdout
