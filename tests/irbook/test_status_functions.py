"""success(), failure() and always(): where they may be written (a step's `if`, checked by
`irbook validate` with path:line:col), what they see (the step's transitive needs) and
what still skips a step that calls them (a cancelled upstream, reading a failed step's
outputs without default())."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from irbook import expr
from irbook.loader import load_playbook
from irbook.plan import build_plan, upstream_block

ROOT = Path(__file__).resolve().parents[2]

HEAD = """\
apiVersion: irbook/v1
kind: Playbook
metadata: {id: status-unit, title: Status unit}
inputs:
  fail: {type: boolean, default: true}
steps:
  - id: revoke
    action: core.fail
    if: ${{ inputs.fail }}
    with: {message: AccessDenied}
"""


def write(tmp_path: Path, steps: str, outputs: str = "") -> Path:
    path = tmp_path / "pb.yaml"
    path.write_text(HEAD + steps + outputs)
    return path


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def states(path: Path, **params: str) -> dict[str, tuple[str, str]]:
    plan = build_plan(load_playbook(str(path)).playbook, None, params)
    return {s.id: (s.status, s.reason) for s in plan.steps}


def test_outside_a_steps_if_they_are_errors_at_their_column(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  - id: note\n"
        "    action: core.note\n"
        "    needs: [revoke]\n"
        '    with: {text: "failed: ${{ failure() }}"}\n',
        "outputs:\n  done: ${{ always() }}\n",
    )
    done = validate(path)
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        f"{path}:14:31: error: failure() can only be used in a step's if (it says whether "
        "the steps upstream of the step failed)",
        f"{path}:16:13: error: always() can only be used in a step's if (it says whether "
        "the steps upstream of the step failed)",
    ]


def test_failure_in_a_step_without_needs_is_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  - id: page\n    action: core.note\n    if: ${{ failure() }}\n    with: {text: x}\n",
    )
    done = validate(path)
    assert done.returncode == 1
    assert done.stdout.startswith(
        f"{path}:13:13: error: failure() is never true here: step 'page' has no needs"
    )


def test_evaluated_without_a_step_status_they_are_errors() -> None:
    with pytest.raises(expr.ExprError, match=r"failure\(\) can only be used in a step's if"):
        expr.render("${{ failure() }}", {})
    assert expr.render("${{ failure() || always() }}", {expr.STATUS: "success"}) is True
    assert expr.render("${{ failure() }}", {expr.STATUS: "success"}) is False
    assert expr.render("${{ !success() && true }}", {expr.STATUS: "failure"}) is True
    assert expr.handles_failure("${{ not failure() }}")
    assert not expr.handles_failure("${{ success() }}")
    assert not expr.handles_failure(True)


def test_the_upstream_is_transitive_and_success_is_the_default(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  - {id: snapshot, action: core.note, needs: [revoke], with: {text: s}}\n"
        "  - {id: notify, action: core.note, needs: [snapshot], with: {text: n}}\n"
        "  - id: page\n    action: core.note\n    needs: [snapshot]\n"
        "    if: ${{ failure() }}\n    with: {text: p}\n"
        "  - id: ok\n    action: core.note\n    needs: [snapshot]\n"
        "    if: ${{ success() }}\n    with: {text: o}\n",
    )
    failed = states(path)
    assert failed["snapshot"] == ("blocked", "upstream step 'revoke' failed")
    assert failed["notify"] == ("blocked", "upstream step 'snapshot' skipped")
    assert failed["page"] == ("run", "failure() — step 'revoke' failed")
    assert failed["ok"] == ("blocked", "upstream step 'snapshot' skipped")
    clean = states(path, fail="false")
    assert clean["page"][0] == "skip" and clean["ok"] == ("run", "")


def test_reading_a_failed_steps_outputs_still_skips_a_failure_step(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  - id: page\n    action: core.note\n    needs: [revoke]\n"
        "    if: ${{ failure() }}\n"
        "    with: {text: '${{ steps.revoke.outputs.message }}'}\n"
        "  - id: page-default\n    action: core.note\n    needs: [revoke]\n"
        "    if: ${{ failure() }}\n"
        "    with: {text: \"${{ default(steps.revoke.outputs.message, 'failed') }}\"}\n",
    )
    plan = states(path)
    assert plan["page"] == ("skip", "reads the outputs of step 'revoke', which failed")
    assert plan["page-default"][0] == "run"


def test_a_cancelled_upstream_stops_failure_and_always_steps(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  - id: close\n    action: core.note\n    needs: [revoke]\n"
        "    if: ${{ always() }}\n    with: {text: c}\n",
    )
    step = load_playbook(str(path)).playbook.step("close")
    block = upstream_block(step, {"revoke": "cancelled"}, {}, {})
    assert block == "upstream step 'revoke' cancelled"
    assert upstream_block(step, {"revoke": "rejected"}, {}, {}) is None
    assert upstream_block(step, {"revoke": "failed"}, {}, {"revoke": "abort"}) is None
