"""`metadata.atlas`: ids checked against the shipped MITRE ATLAS list, names in the
runbook, and the generated coverage page (runbooks/atlas.md)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from irbook.atlas import DATA_PATH
from irbook.docs.coverage import render_coverage
from irbook.loader import load_playbook

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = sorted((ROOT / "playbooks").glob("*.y*ml"))
EXAMPLE = ROOT / "playbooks" / "leaked-model-key.yaml"


def irbook(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", *args],
        cwd=cwd,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_data_file_has_the_fields_and_no_duplicates() -> None:
    data = json.loads(Path(DATA_PATH).read_text(encoding="utf-8"))
    assert data["source"].startswith("https://github.com/mitre-atlas/atlas-data/")
    assert data["atlas_version"] and "Apache-2.0" in data["license"]
    licence = Path(DATA_PATH).with_name("ATLAS-LICENSE.txt").read_text(encoding="utf-8")
    assert "Apache License, Version 2.0" in licence and "MITRE" in licence

    tactic_ids = [t["id"] for t in data["tactics"]]
    assert len(tactic_ids) == len(set(tactic_ids))
    assert all(
        re.fullmatch(r"AML\.TA\d{4}", t) and n
        for t, n in ((t["id"], t["name"]) for t in data["tactics"])
    )
    ids = [t["id"] for t in data["techniques"]]
    assert len(ids) == len(set(ids)), "duplicate technique ids"
    for technique in data["techniques"]:
        assert set(technique) <= {"id", "name", "tactics", "parent"}, technique
        assert re.fullmatch(r"AML\.T\d{4}(\.\d{3})?", technique["id"]), technique
        assert technique["name"].strip() == technique["name"] != ""
        assert technique["tactics"] and set(technique["tactics"]) <= set(tactic_ids), technique
        if "parent" in technique:
            assert technique["id"].startswith(technique["parent"] + ".")
            assert technique["parent"] in ids
    by_id = {t["id"]: t for t in data["techniques"]}
    assert by_id["AML.T0012"]["name"] == "Valid Accounts"
    assert by_id["AML.T0040"]["name"] == "ML Model Inference API Access"
    assert by_id["AML.T0051.000"] == {  # LLM techniques: ATLAS 4.5 or later
        "id": "AML.T0051.000",
        "name": "Direct",
        "parent": "AML.T0051",
        "tactics": by_id["AML.T0051"]["tactics"],
    }


def test_unknown_atlas_id_is_a_located_error_with_a_hint(tmp_path: Path) -> None:
    book = tmp_path / "typo.yaml"
    atlas_line = "  atlas: [AML.T0012, AML.T0041.000, AML.T0042]\n"
    book.write_text(
        "apiVersion: irbook/v1\nkind: Playbook\nmetadata:\n  id: typo\n  title: Typo\n"
        + atlas_line
        + "steps:\n  - id: a\n    action: core.note\n    with: {text: hello}\n",
        encoding="utf-8",
    )
    done = irbook("validate", str(book))
    assert done.returncode == 1, done.stdout + done.stderr
    col = atlas_line.index("AML.T0041.000") + 1
    assert done.stdout.splitlines()[0] == (
        f"{book}:6:{col}: error: unknown MITRE ATLAS technique 'AML.T0041.000' (ATLAS 4.5.2)"
        " (did you mean 'AML.T0041', Physical Environment Access?)"
    )
    assert "Traceback" not in done.stderr
    assert done.stdout.count("unknown MITRE ATLAS technique") == 1  # the real ids pass


def test_shipped_playbooks_validate_with_their_atlas_ids() -> None:
    done = irbook("validate", *(str(p) for p in PLAYBOOKS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert load_playbook(str(EXAMPLE)).playbook.metadata.atlas == ["AML.T0012", "AML.T0040"]


def test_data_is_read_only_for_playbooks_with_atlas_ids(tmp_path: Path) -> None:
    book = tmp_path / "plain.yaml"
    book.write_text(
        "apiVersion: irbook/v1\nkind: Playbook\nmetadata: {id: plain, title: Plain}\n"
        "steps:\n  - id: a\n    action: core.note\n    with: {text: hello}\n",
        encoding="utf-8",
    )
    code = (
        "import sys\n"
        "from irbook.atlas import atlas\n"
        "from irbook.validate import validate\n"
        "assert not validate([sys.argv[1]]).errors\n"
        "print(atlas.cache_info().currsize == 1)\n"
        "validate([sys.argv[2]])\n"
        "print(atlas.cache_info().currsize == 1)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(book), str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.split() == ["False", "True"], done.stderr


def test_runbook_names_the_techniques() -> None:
    text = (ROOT / "runbooks" / "leaked-model-key.md").read_text(encoding="utf-8")
    assert (
        "| MITRE ATLAS | AML.T0012 Valid Accounts, AML.T0040 ML Model Inference API Access |"
        in text
    )


def test_coverage_page_is_current_and_groups_by_tactic() -> None:
    loaded = sorted(
        (load_playbook(str(p)) for p in PLAYBOOKS), key=lambda item: item.playbook.metadata.id
    )
    page = ROOT / "runbooks" / "atlas.md"
    assert page.is_file(), "runbooks/atlas.md is missing: run `irbook docs`"
    text = page.read_text(encoding="utf-8")
    assert text == render_coverage(loaded), "runbooks/atlas.md is out of date: run `irbook docs`"

    initial = text[text.index("### Initial Access (AML.TA0004)") :]
    initial = initial[: initial.index("\n### ")]
    [valid] = [
        row for row in initial.splitlines() if row.startswith("| AML.T0012 Valid Accounts |")
    ]
    # other playbooks may map the technique too: this one is listed in its row
    assert "[Leaked access key used against a model endpoint](leaked-model-key.md)" in valid
    assert "| AML.T0010 ML Supply Chain Compromise | none |" in initial


def test_docs_check_reports_a_stale_coverage_page(tmp_path: Path) -> None:
    out = tmp_path / "books"
    assert irbook("docs", "--out", str(out)).returncode == 0
    assert (out / "atlas.md").is_file()
    assert irbook("docs", "--check", "--out", str(out)).returncode == 0
    (out / "atlas.md").write_text("stale\n", encoding="utf-8")
    done = irbook("docs", "--check", "--out", str(out))
    assert done.returncode == 1
    assert done.stdout == f"{out / 'atlas.md'}: out of date\n"


def test_changed_atlas_data_invalidates_cached_validations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The validate cache keys on the code that judges; the ATLAS list judges too."""
    from irbook import cache

    monkeypatch.setattr(cache, "_fingerprint", None)
    before = cache.fingerprint()
    st = os.stat(DATA_PATH)
    try:
        os.utime(DATA_PATH, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        monkeypatch.setattr(cache, "_fingerprint", None)
        assert cache.fingerprint() != before
    finally:
        os.utime(DATA_PATH, ns=(st.st_atime_ns, st.st_mtime_ns))
