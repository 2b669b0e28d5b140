"""The README's playbook catalogue is generated from playbooks/ by `irbook docs`, checked
by `irbook docs --check`, and current in the repository; `irbook show` names the ATLAS
techniques it lists."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from irbook.docs.catalogue import END, START, render_catalogue
from irbook.loader import load_playbook

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOKS = sorted((ROOT / "playbooks").glob("*.y*ml"))


def irbook(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "IRBOOK_PLAYBOOKS"}
    env["PYTHONPATH"] = str(ROOT / "src")
    return subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
    )


def catalogue_of(readme: str) -> str:
    return readme[readme.index(START) : readme.index(END) + len(END)]


def test_the_readme_catalogue_is_current() -> None:
    done = irbook("docs", "--check")
    assert done.returncode == 0, done.stdout + done.stderr
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    items = [load_playbook(str(p)) for p in PLAYBOOKS]
    assert catalogue_of(readme) == render_catalogue(items), (
        "README.md's catalogue is stale: run `irbook docs` and commit README.md"
    )


def test_every_shipped_playbook_has_a_row_with_its_runbook_and_atlas_names() -> None:
    from irbook.atlas import atlas

    block = catalogue_of((ROOT / "README.md").read_text(encoding="utf-8"))
    for path in PLAYBOOKS:
        pb = load_playbook(str(path)).playbook
        row = next(line for line in block.splitlines() if f"`{pb.metadata.id}`" in line)
        assert f"(runbooks/{pb.metadata.id}.md)" in row
        for technique in pb.metadata.atlas:
            assert atlas().label(technique) in row
        gated = [s.action for s in pb.steps if s.needs_approval]
        for action in gated:
            assert f"`{action}` (after approval)" in row


def copy_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "playbooks", repo / "playbooks")
    shutil.copytree(ROOT / "runbooks", repo / "runbooks")
    shutil.copy(ROOT / "README.md", repo / "README.md")
    return repo


def test_check_catches_a_stale_catalogue_and_docs_rewrites_only_the_block(
    tmp_path: Path,
) -> None:
    repo = copy_repo(tmp_path)
    readme = repo / "README.md"
    original = readme.read_text(encoding="utf-8")
    stale = original.replace(END, "| hand | edited | row | here |\n" + END)
    readme.write_text(stale, encoding="utf-8")
    done = irbook("docs", "--check", cwd=repo)
    assert done.returncode == 1
    assert done.stdout == "README.md: out of date\n"
    assert "run `irbook docs`" in done.stderr
    assert readme.read_text(encoding="utf-8") == stale  # --check never writes

    done = irbook("docs", "--out", "runbooks", cwd=repo)
    assert done.returncode == 0, done.stderr
    assert "README.md: written" in done.stdout
    assert readme.read_text(encoding="utf-8") == original
    assert irbook("docs", "--check", cwd=repo).returncode == 0


def test_a_readme_without_the_markers(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path)
    readme = repo / "README.md"
    readme.write_text("# my playbooks\n", encoding="utf-8")
    done = irbook("docs", cwd=repo)
    assert done.returncode == 0 and "README.md" not in done.stdout
    assert readme.read_text(encoding="utf-8") == "# my playbooks\n"  # not ours to edit
    asked = irbook("docs", "--readme", "README.md", cwd=repo)
    assert asked.returncode == 1
    assert asked.stderr.strip() == (
        f"irbook: error: README.md: no {START} ... {END} block to write the catalogue into"
    )


def test_show_names_the_atlas_techniques() -> None:
    from irbook.atlas import atlas

    pb = load_playbook(str(ROOT / "playbooks" / "leaked-model-key.yaml")).playbook
    assert pb.metadata.atlas
    done = irbook("show", "leaked-model-key")
    assert done.returncode == 0, done.stderr
    names = [atlas().techniques[t].name for t in pb.metadata.atlas]
    assert all(names)
    expected = "; ".join(f"{t} {n}" for t, n in zip(pb.metadata.atlas, names, strict=True))
    assert f"  MITRE ATLAS: {expected}\n" in done.stdout
