"""A secret input never reaches Prefect's database, irbook's files or the terminal, in
any of the forms a JSON dump or a Python repr gives it (quotes and backslashes escaped,
non-ASCII as \\u00e9 or kept), even when a failing step's message quotes it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def make_secret() -> str:
    # a quote, a backslash and a non-ASCII letter: each encoding writes them differently
    return 's3cr"et\\é-' + uuid.uuid4().hex[:12].upper()


def forms(secret: str) -> dict[str, str]:
    tail = secret.rsplit("-", 1)[1]
    return {
        "raw": secret,
        "json": json.dumps(secret)[1:-1],
        "json-unicode": json.dumps(secret, ensure_ascii=False)[1:-1],
        "repr": repr(secret)[1:-1],
        "ascii": ascii(secret)[1:-1],
        "json-of-repr": json.dumps(repr(secret))[1:-1],
        # any other encoding would still carry the random tail
        "tail": tail,
    }


def leaks(text: str, secret: str) -> list[str]:
    return [name for name, form in forms(secret).items() if form in text]


PLAYBOOK = """\
apiVersion: irbook/v1
kind: Playbook
metadata: {id: secret-test, title: Secret test}
inputs:
  token: {type: string, required: true, secret: true}
steps:
  - id: lookup
    action: rt.lookup
    on_failure: continue
    with: {name: "${{ inputs.token }}"}
  - id: stop
    action: core.fail
    with: {message: "token ${{ inputs.token }} is revoked"}
outputs:
  used: "${{ inputs.token }}"
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def prefect_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session Prefect server's SQLite file (tests/conftest.py starts it)."""
    base = tmp_path_factory.getbasetemp()
    found = {p.resolve() for p in base.glob("prefect-home*/prefect/prefect.db")}
    assert len(found) == 1, found  # one session server
    return found.pop()


def dump(path: Path) -> str:
    """Every value of every table, plus the raw bytes of the file and its WAL (a value
    split over overflow pages is whole in the first; deleted rows linger in the second)."""
    parts: list[str] = []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    if isinstance(value, bytes):
                        parts.append(value.decode("utf-8", "replace"))
                    elif value is not None:
                        parts.append(str(value))
    finally:
        db.close()
    for extra in (path, path.with_name(path.name + "-wal")):
        if extra.exists():
            parts.append(extra.read_bytes().decode("utf-8", "replace"))
    return "\n".join(parts)


def wait_for_prefect(path: Path, flow_run_id: str) -> None:
    """Prefect writes logs and events in batches: wait until this run's failure log and
    its final event are in the database, so the search below sees them."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            logs = db.execute(
                "SELECT count(*) FROM log WHERE flow_run_id = ? AND level >= 40",
                (flow_run_id,),
            ).fetchone()[0]
            events = db.execute(
                "SELECT count(*) FROM events WHERE resource_id = ? AND event LIKE '%.Failed'",
                (f"prefect.flow-run.{flow_run_id}",),
            ).fetchone()[0]
        except sqlite3.OperationalError:  # a table being created or locked
            logs = events = 0
        finally:
            db.close()
        if logs and events:
            return
        time.sleep(0.5)
    raise AssertionError(f"Prefect never recorded flow run {flow_run_id}'s failure")


def files_text(folder: Path) -> str:
    return "\n".join(
        p.read_bytes().decode("utf-8", "replace") for p in sorted(folder.rglob("*")) if p.is_file()
    )


def flow_run_of(home: Path) -> str:
    db = sqlite3.connect(home / "irbook.db")
    try:
        row = db.execute("SELECT flow_run_id FROM runs ORDER BY created_at DESC").fetchone()
    finally:
        db.close()
    assert row and row[0]
    return str(row[0])


@pytest.mark.parametrize("mode", [("--dry-run", "--live-reads"), ("--yes",)])
def test_a_secret_in_failing_steps_reaches_neither_prefect_nor_irbook_files(
    mode: tuple[str, ...], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    secret = make_secret()
    book = tmp_path / "pb.yaml"
    book.write_text(PLAYBOOK)
    done = cli("run", str(book), *mode, "--param", f"token={secret}")
    assert done.returncode == 1, done.stdout + done.stderr
    # both steps ran and failed, and say why with the secret redacted
    assert "failed (step 'stop' failed: token *** is revoked)" in done.stdout
    assert (
        """lookup: failed (ValueError: lookup of '***' failed: {"error": "unknown key ***"})"""
        in (done.stdout)
    )
    assert "Traceback" not in done.stderr
    assert leaks(done.stdout + done.stderr, secret) == []
    home = Path(os.environ["IRBOOK_HOME"])
    assert leaks(files_text(home), secret) == []
    path = prefect_db(tmp_path_factory)
    flow_run_id = flow_run_of(home)
    wait_for_prefect(path, flow_run_id)
    recorded = dump(path)
    assert leaks(recorded, secret) == []
    assert "exception ActionFailed: error: token *** is revoked" in recorded  # the task state


def test_a_drill_report_redacts_the_secret_in_inject_texts(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    secret = make_secret()
    book = tmp_path / "pb.yaml"
    book.write_text(PLAYBOOK)
    quoted = json.dumps(secret, ensure_ascii=False)  # a YAML double-quoted scalar
    scenario = tmp_path / "drill.yaml"
    scenario.write_text(
        textwrap.dedent(
            f"""\
            apiVersion: irbook/v1
            kind: Drill
            metadata: {{id: secret-drill, title: Secret drill}}
            playbook: {book}
            alert: {{normalized: {{id: a-1, title: Key leaked}}}}
            inputs: {{token: {quoted}}}
            injects:
              - {{at_step: lookup, fail: 1, error: {json.dumps("Throttled for " + secret)}}}
              - {{at: 30s, note: {json.dumps("Legal asks about " + secret)}}}
            expect: {{outcome: failed}}
            """
        )
    )
    report = tmp_path / "out" / "report"
    done = cli("drill", str(scenario), "--report", str(report))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "DRILL secret-drill: PASSED" in done.stdout
    assert "Legal asks about ***" in done.stdout
    assert leaks(done.stdout + done.stderr, secret) == []
    written = files_text(tmp_path / "out")
    assert "Throttled for ***" in written and "Legal asks about ***" in written
    assert leaks(written, secret) == []
    home = Path(os.environ["IRBOOK_HOME"])
    assert leaks(files_text(home), secret) == []
    path = prefect_db(tmp_path_factory)
    wait_for_prefect(path, flow_run_of(home))
    assert leaks(dump(path), secret) == []


def test_a_planner_bug_quoting_a_secret_is_a_failing_step_not_an_internal_error(
    tmp_path: Path,
) -> None:
    secret = make_secret()
    book = tmp_path / "badplan.yaml"
    book.write_text(
        "apiVersion: irbook/v1\nkind: Playbook\n"
        "metadata: {id: badplan, title: A planner that raises}\n"
        "inputs:\n  token: {type: string, required: true, secret: true}\n"
        "steps:\n  - id: look\n    action: rt.badplan\n"
        '    with: {name: "${{ inputs.token }}"}\n'
    )
    done = cli("plan", str(book), "--param", f"token={secret}")
    out = done.stdout + done.stderr
    assert "internal error" not in out and "Traceback" not in out
    assert "rt.badplan: planning failed: ValueError: no plan for '***'" in out, out
    assert leaks(out, secret) == []
