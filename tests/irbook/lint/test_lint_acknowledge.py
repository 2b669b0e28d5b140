"""Lint that tells people before: an approval that approves itself, an evidence rule that
knows which irreversible actions have evidence to keep, and acknowledged warnings whose
reason the runbook shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from irbook.loader import load_playbook
from irbook.registry import REGISTRY, ActionContext, PlannedCall, Registry, action

ROOT = Path(__file__).resolve().parents[3]

HEAD = (
    "apiVersion: irbook/v1\nkind: Playbook\nmetadata:\n  id: lint-demo\n  title: Lint demo\n"
    "triggers:\n  - format: guardduty\nsteps:\n"
    "  - id: tell\n    action: slack.post_message\n    with: {channel: '#ir', text: hi}\n"
)


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


class P(BaseModel):
    model_config = ConfigDict(extra="forbid")


class R(BaseModel):
    pass


def write(tmp_path: Path, steps: str, name: str = "book.yaml") -> Path:
    path = tmp_path / name
    path.write_text(HEAD + steps)
    return path


def test_approve_on_timeout_of_a_mutating_step_is_a_warning(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  - id: revoke\n    action: aws.iam.deactivate_access_key\n"
        "    approval: {required: true, timeout: 10m, on_timeout: approve}\n"
        "    with: {access_key_id: AKIAABCDEFGHIJKLMNOP, user_name: bob}\n",
    )
    done = irbook("validate", "--strict", str(path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert (
        f"{path}:14:5: warning[high]: step 'revoke' changes production "
        "(aws.iam.deactivate_access_key) and runs unapproved when its approval times out: "
        "use on_timeout: reject [approve-on-timeout]"
    ) in done.stdout.splitlines()
    rejecting = write(
        tmp_path,
        "  - id: revoke\n    action: aws.iam.deactivate_access_key\n"
        "    approval: {required: true, timeout: 10m, on_timeout: reject}\n"
        "    with: {access_key_id: AKIAABCDEFGHIJKLMNOP, user_name: bob}\n",
        "reject.yaml",
    )
    assert irbook("validate", "--strict", str(rejecting)).returncode == 0


def test_rotate_secret_asks_for_no_snapshot_no_action_can_take(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  - id: rotate\n    action: aws.secretsmanager.rotate_secret\n"
        "    approval: {required: true}\n"
        "    with: {secret_id: prod/model-api-key}\n",
    )
    done = irbook("validate", "--strict", str(path))
    assert "irreversible-without-evidence" not in done.stdout
    assert done.returncode == 0, done.stdout + done.stderr


def test_irreversible_without_evidence_still_fires_when_evidence_could_be_kept() -> None:
    """An irreversible action that does not declare `no_evidence` (a plugin's) is warned."""
    registry = Registry()
    for spec in REGISTRY:
        registry.add(spec)

    def wipe(ctx: ActionContext, params: P) -> R:
        return R()

    action(
        "test.wipe_disk",
        effect="mutate",
        calls=[("ec2", "DeleteVolume")],
        planner=lambda p: [PlannedCall("ec2", "DeleteVolume")],
        simulate=lambda p, run: R(),
        irreversible="the disk is gone",
        registry=registry,
    )(wipe)
    book = ROOT / "tests" / "_wipe.yaml"
    try:
        book.write_text(
            HEAD + "  - id: wipe\n    action: test.wipe_disk\n    approval: {required: true}\n"
        )
        codes = [w.code for w in load_playbook(str(book), registry).warnings]
    finally:
        book.unlink()
    assert codes == ["irreversible-without-evidence"]


def test_an_acknowledged_warning_is_not_reported_and_the_runbook_says_why(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "  - id: delete\n    action: aws.iam.delete_access_key\n"
        "    approval: {required: true}\n"
        "    with: {access_key_id: AKIAABCDEFGHIJKLMNOP, user_name: bob}\n"
        "    acknowledge:\n"
        "      - rule: prefer-reversible\n"
        "        reason: the key was published; deactivating would leave it to be re-enabled\n",
    )
    done = irbook("validate", "--strict", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "prefer-reversible" not in done.stdout
    out = tmp_path / "runbooks"
    assert irbook("docs", str(path), "--out", str(out)).returncode == 0
    runbook = (out / "lint-demo.md").read_text()
    assert (
        "- **Lint warning acknowledged:** `prefer-reversible`: the key was published; "
        "deactivating would leave it to be re-enabled"
    ) in runbook
    assert "- **acknowledged `prefer-reversible`** (step `delete`)" in runbook


def test_an_acknowledgement_must_name_a_rule_that_finds_something(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  - id: note\n    action: core.note\n    with: {text: hi}\n"
        "    acknowledge:\n"
        "      - {rule: no-such-rule, reason: typo}\n"
        "      - {rule: prefer-reversible, reason: nothing to prefer}\n",
    )
    done = irbook("validate", str(path))
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert any(
        line.startswith(f"{path}:16:")
        and "acknowledges unknown lint rule 'no-such-rule'" in line
        and line.endswith("[unknown-acknowledgement]")
        for line in lines
    ), lines
    assert any(
        line.startswith(f"{path}:17:") and line.endswith("[unused-acknowledgement]")
        for line in lines
    ), lines
    no_reason = write(
        tmp_path,
        "  - id: note\n    action: core.note\n    with: {text: hi}\n"
        "    acknowledge: [{rule: prefer-reversible}]\n",
        "no-reason.yaml",
    )
    refused = irbook("validate", str(no_reason))
    assert refused.returncode == 1
    assert "reason" in refused.stdout
