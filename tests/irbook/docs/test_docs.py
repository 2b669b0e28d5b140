"""`irbook docs`: the Markdown runbooks a responder follows when automation is down."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from irbook.cli.main import main
from irbook.docs import render_runbook
from irbook.loader import load_playbook
from irbook.plan import execution_order

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOKS = sorted((ROOT / "playbooks").glob("*.y*ml"))
EXAMPLE = ROOT / "playbooks" / "leaked-model-key.yaml"


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _mermaid(text: str) -> list[str]:
    block = re.search(r"```mermaid\n(.*?)\n```", text, re.S)
    assert block, "no mermaid block"
    return block.group(1).splitlines()


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=lambda p: p.name)
def test_shipped_runbooks_are_up_to_date(playbook: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from irbook.cli.docs import _drills

    monkeypatch.chdir(ROOT)  # runbooks name their drills relative to the repository
    loaded = load_playbook(str(playbook))
    drills = _drills("runbooks/drills").get(loaded.playbook.metadata.id, [])
    assert drills, f"{playbook.name} has no drill in runbooks/drills"
    runbook = ROOT / "runbooks" / f"{loaded.playbook.metadata.id}.md"
    fix = "run `irbook docs` and commit runbooks/"
    assert runbook.is_file(), f"{runbook.name} is missing: {fix}"
    committed = runbook.read_text(encoding="utf-8")
    assert committed == render_runbook(loaded, drills=drills), (
        f"{runbook.name} is out of date: {fix}"
    )


def test_rendering_is_deterministic_and_path_independent(tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere.yaml"
    copy.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    first = render_runbook(load_playbook(str(EXAMPLE)))
    assert render_runbook(load_playbook(str(EXAMPLE))) == first
    moved = render_runbook(load_playbook(str(copy)))
    assert moved == first.replace("`leaked-model-key.yaml`", "`elsewhere.yaml`")
    assert str(ROOT) not in first


def test_example_steps_in_execution_order_with_their_details() -> None:
    loaded = load_playbook(str(EXAMPLE))
    text = render_runbook(loaded)
    order = [s.id for s in execution_order(loaded.playbook)]
    headings = re.findall(r"^### (\d+)\. `([a-z0-9-]+)`", text, re.M)
    assert [sid for _, sid in headings] == order
    assert [int(n) for n, _ in headings] == list(range(1, len(order) + 1))
    # 'snapshot' needs 'revoke': it must come later, not in file order by accident
    assert order.index("snapshot") > order.index("revoke")

    revoke = text[text.index("`revoke`\n") : text.index("### 4.")]
    assert "**Action:** `aws.iam.deactivate_access_key`: Make an access key unusable" in revoke
    assert "waits 15m, then **rejects** on timeout" in revoke
    assert "**Retries:** 2 (2s apart); **timeout:** 30s" in revoke
    assert "`iam:UpdateAccessKey`" in revoke
    assert "compensated by `aws.iam.activate_access_key`" in revoke
    assert "| `user_name` | `${{ alert.actor.user_name }}` |" in revoke

    snapshot = text[text.index("### 4.") : text.index("### 5.")]
    assert "**Runs only if:** `${{ inputs.endpoint_name != '' }}`" in snapshot
    assert "**irreversible**: evidence copies are kept under S3 Object Lock" in snapshot
    tag = text[text.index("### 5.") : text.index("### 6.")]
    assert "**Once for each item of:** `${{ where(alert.resources, 'arn') }}`" in tag


def test_a_steps_aws_target_is_where_the_engine_sends_its_calls(tmp_path: Path) -> None:
    """Playbook.aws_for: a step that sets only a region still acts as the playbook's role,
    and the runbook says so (a responder doing it by hand needs that role)."""
    path = tmp_path / "where.yaml"
    path.write_text(
        "apiVersion: irbook/v1\nkind: Playbook\nmetadata: {id: where, title: Where}\n"
        'aws: {region: eu-west-1, role_arn: "arn:aws:iam::111122223333:role/ir",'
        " external_id: ir-ext-1}\n"
        "steps:\n"
        "  - id: revoke\n"
        "    action: aws.iam.deactivate_access_key\n"
        "    aws: {region: us-east-2}\n"
        "    with: {access_key_id: AKIAIOSFODNN7EXAMPLE, user_name: ml-svc}\n"
    )
    text = render_runbook(load_playbook(str(path)))
    assert (
        "- **AWS target:** region `us-east-2`, as role `arn:aws:iam::111122223333:role/ir`"
        in text.splitlines()
    )


def test_example_header_triggers_inputs_and_policy() -> None:
    text = render_runbook(load_playbook(str(EXAMPLE)))
    assert text.startswith("# Leaked access key used against a model endpoint\n")
    assert "| Severity | high |" in text
    assert "| Owner | ml-platform-oncall |" in text
    assert (
        "| MITRE ATLAS | AML.T0012 Valid Accounts, AML.T0040 ML Model Inference API Access |"
        in text
    )
    assert "preserve the model and its artifacts under Object Lock" in _section(text, "## Purpose")
    triggers = _section(text, "## Triggers")
    assert "`guardduty` alerts from any source of that format where `type` is one of" in triggers
    assert "`actor.access_key_id` matches `AKIA*`" in triggers
    assert "`severity` >= `5`" in triggers
    inputs = _section(text, "## Inputs")
    # the pattern's own '|' is escaped so the row keeps its six cells
    assert "must match `^AKIA[A-Z0-9]{16}$`" in inputs
    assert "| `access_key_id` | string | required | alert: `alert.actor.access_key_id` |" in inputs
    assert "| `evidence_bucket` | string | default `ir-evidence` |" in inputs
    policy = _section(text, "## Least-privilege IAM policy")
    assert '"iam:UpdateAccessKey"' in policy
    assert '"Sid": "IrbookRollbackEc2AnyResource"' in policy
    assert '"Resource": "arn:*:iam::*:user/*"' in policy
    assert "None." in _section(text, "## Lint warnings")


def test_rollback_lists_compensations_newest_first_and_calls_out_irreversible() -> None:
    text = render_runbook(load_playbook(str(EXAMPLE)))
    rollback = _section(text, "## How to roll back")
    items = [line for line in rollback.splitlines() if line.startswith("1. ")]
    assert items == [
        "1. Undo `tag-each` with `aws.untag_resource`: Remove the tags a tagging step "
        "added and put back the values it overwrote.",
        "1. **Cannot be undone:** `snapshot` (`aws.sagemaker.snapshot_model`): evidence "
        "copies are kept under S3 Object Lock until their retention ends",
        "1. Undo `revoke` with `aws.iam.activate_access_key`: Give a deactivated key back "
        "to its user, for example after a false positive.",
    ]


def test_mermaid_has_one_node_per_step_and_one_edge_per_need() -> None:
    loaded = load_playbook(str(EXAMPLE))
    lines = _mermaid(render_runbook(loaded))
    steps = loaded.playbook.steps
    assert lines[0] == "flowchart TD"
    nodes = [m.group(1) for line in lines if (m := re.match(r"\s+(s_\w+)\[", line))]
    assert sorted(nodes) == sorted("s_" + s.id.replace("-", "_") for s in steps)
    edges = re.findall(r"^\s+(s_\w+) (-->|-\.->)(?:\|([^|]*)\|)? (s_\w+)$", "\n".join(lines), re.M)
    expected = {
        ("s_" + n.replace("-", "_"), "s_" + s.id.replace("-", "_")) for s in steps for n in s.needs
    }
    assert {(a, b) for a, _, _, b in edges} == expected
    assert len(edges) == sum(len(s.needs) for s in steps)
    # the conditional step's edge is dashed and labelled; the loop's edge is labelled
    assert ("s_revoke", "-.->", "if", "s_snapshot") in edges
    assert ("s_revoke", "-->", "for each", "s_tag_each") in edges
    # steps without needs hang off the start node; the approval gate is marked
    assert "    start --> s_revoke" in lines
    assert "    class s_revoke approval" in lines
    assert any("s_revoke[" in line and "approval (15m)" in line for line in lines)


BAD_TEXT = "split | here and `tick` and ``double``"


def _tricky(tmp_path: Path) -> Path:
    book = tmp_path / "tricky.yaml"
    book.write_text(
        "apiVersion: irbook/v1\nkind: Playbook\n"
        "metadata: {id: tricky, title: '# Tricky # title #', description: '# not a heading'}\n"
        "steps:\n"
        "  - id: first-step\n"
        "    action: core.note\n"
        f"    description: '{BAD_TEXT}'\n"
        f"    with: {{text: '{BAD_TEXT}'}}\n"
        "  - id: end\n"  # a Mermaid keyword as a step id
        "    action: jira.comment\n"
        "    needs: [first-step]\n"
        "    with: {issue: SEC-1, body: '`starts with a backtick'}\n",
        encoding="utf-8",
    )
    return book


def _cells(row: str) -> list[str]:
    assert row.startswith("| ") and row.endswith(" |")
    return [c.strip() for c in re.split(r"(?<!\\)\|", row[1:-1])]


def test_pipes_and_backticks_do_not_break_tables_or_code_spans(tmp_path: Path) -> None:
    text = render_runbook(load_playbook(str(_tricky(tmp_path))))
    overview = _section(text, "## Steps")
    row = next(line for line in overview.splitlines() if line.startswith("| 1 |"))
    cells = _cells(row)
    assert len(cells) == 7  # #, step, action, effect, needs, gates, description
    assert cells[6] == "split \\| here and \\`tick\\` and \\`\\`double\\`\\`"
    param = next(line for line in text.splitlines() if line.startswith("| `text` |"))
    assert _cells(param)[1] == "``` split \\| here and `tick` and ``double`` ```"
    body = next(line for line in text.splitlines() if line.startswith("| `body` |"))
    assert _cells(body)[1] == "`` `starts with a backtick ``"
    # free text that looks like Markdown block syntax stays text
    assert "\n\\# not a heading\n" in text
    assert text.startswith("# # Tricky # title \\#\n")
    assert "    s_end[" in text and "    s_first_step --> s_end" in text


def test_escaping_renders_as_written_with_a_real_markdown_parser(tmp_path: Path) -> None:
    markdown_it = pytest.importorskip("markdown_it")
    text = render_runbook(load_playbook(str(_tricky(tmp_path))))
    html = markdown_it.MarkdownIt("commonmark").enable("table").render(text)
    assert "<td>split | here and `tick` and ``double``</td>" in html
    assert "<td><code>split | here and `tick` and ``double``</code></td>" in html
    assert "<td><code>`starts with a backtick</code></td>" in html
    assert "<h1># Tricky # title #</h1>" in html
    assert "<p># not a heading</p>" in html


# --- the command ------------------------------------------------------------------------


def _docs(*args: str) -> int:
    return main(["docs", *args])


def test_docs_writes_then_check_passes_and_catches_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IRBOOK_PLAYBOOKS", str(ROOT / "playbooks"))
    out = tmp_path / "books"
    assert _docs("--check", "--out", str(out)) == 1
    captured = capsys.readouterr()
    assert f"{out}/leaked-model-key.md: missing" in captured.out
    assert not out.exists()  # --check never writes

    assert _docs("--out", str(out)) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(
        ["atlas.md", *(f"{load_playbook(str(p)).playbook.metadata.id}.md" for p in PLAYBOOKS)]
    )
    assert _docs("--check", "--out", str(out)) == 0
    assert "up to date" in capsys.readouterr().err

    target = out / "leaked-model-key.md"
    target.write_text(target.read_text(encoding="utf-8") + "hand edit\n", encoding="utf-8")
    assert _docs("--check", "--out", str(out)) == 1
    captured = capsys.readouterr()
    assert captured.out == f"{target}: out of date\n"
    assert f"run `irbook docs --out {out}`" in captured.err
    assert target.read_text(encoding="utf-8").endswith("hand edit\n")

    assert _docs("leaked-model-key", "--out", str(out)) == 0
    assert _docs("--check", "--out", str(out)) == 0


def test_docs_for_one_playbook_by_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    book = _tricky(tmp_path)
    assert _docs(str(book), "--out", str(tmp_path / "out")) == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["tricky.md"]
    assert capsys.readouterr().out == f"{tmp_path / 'out' / 'tricky.md'}: written\n"


def test_unknown_playbook_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _docs("no-such-playbook", "--out", str(tmp_path)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "no playbook with id 'no-such-playbook'" in err
    assert list(tmp_path.iterdir()) == []


def test_invalid_playbook_folder_fails_without_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "books"
    folder.mkdir()
    (folder / "bad.yaml").write_text("apiVersion: irbook/v1\nkind: Playbook\n")
    monkeypatch.setenv("IRBOOK_PLAYBOOKS", str(folder))
    assert _docs("--out", str(tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert "missing required field 'metadata'" in err
    assert "fix them (irbook validate) first" in err
    assert not (tmp_path / "out").exists()


def test_docs_as_a_process_imports_neither_prefect_nor_boto3(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from irbook.cli.main import main\n"
        f"code = main(['docs', '--out', {str(tmp_path)!r}])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'boto3'))\n"
        "print(code, heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={**os.environ, "IRBOOK_PLAYBOOKS": str(ROOT / "playbooks")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in done.stderr
    assert done.stdout.splitlines()[-1] == "0 []"


@pytest.mark.parametrize(
    "text",
    ["1. not a list", "- not a bullet", "> not a quote", "# not a heading", "a *b* [c](d) <e>"],
)
def test_free_text_stays_text(text: str) -> None:
    markdown_it = pytest.importorskip("markdown_it")
    from irbook.docs.runbook import prose

    html = markdown_it.MarkdownIt("commonmark").render(prose(text))
    expected = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert html == f"<p>{expected}</p>\n"
