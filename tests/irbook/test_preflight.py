"""Tell people before, not after: `irbook plan`, the live-run confirmation and dry runs
name every integration a run needs and whether its configuration is here (never a
value), and `plan` exits non-zero when it predicts the run fails."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRETS = ("xoxb-very-secret", "jira-api-token-value", "pw-in-url", "aws-secret-value")

BOOK = """\
apiVersion: irbook/v1
kind: Playbook
metadata: {id: tell-before, title: Tell before}
steps:
  - id: note
    action: core.note
    with: {text: started}
  - id: page
    action: slack.post_message
    with: {channel: "#ir", text: hello}
  - id: ticket
    action: jira.create_issue
    on_failure: abort
    with: {project: SEC, summary: leaked key}
"""


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment without any integration's configuration, and a home without ~/.aws."""
    prefixes = ("AWS_", "SLACK_", "JIRA_", "IRBOOK_SLACK", "IRBOOK_JIRA", "IRBOOK_PAGERDUTY")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env["HOME"] = str(home)
    env.update(extra)
    return env


def irbook(
    *args: str, env: dict[str, str], stdin: int | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=stdin,
    )


@pytest.fixture
def book(tmp_path: Path) -> Path:
    path = tmp_path / "tell-before.yaml"
    path.write_text(BOOK)
    return path


CONFIGURED = {
    "SLACK_BOT_TOKEN": SECRETS[0],
    "JIRA_URL": f"https://bot:{SECRETS[2]}@acme.atlassian.net/jira?token=x",
    "JIRA_EMAIL": "bot@example.com",
    "JIRA_API_TOKEN": SECRETS[1],
    "AWS_SECRET_ACCESS_KEY": SECRETS[3],
}


def test_plan_names_missing_slack_and_jira_and_does_not_say_the_run_succeeds(
    tmp_path: Path, book: Path
) -> None:
    done = irbook("plan", str(book), env=clean_env(tmp_path))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    preflight = next(line for line in lines if line.startswith("Preflight:"))
    assert "slack MISSING (set SLACK_BOT_TOKEN" in preflight
    assert "jira MISSING (cloud: set JIRA_URL and JIRA_EMAIL and JIRA_API_TOKEN)" in preflight
    assert "aws" not in preflight  # no AWS step: nothing asked of AWS
    summary = lines[-1]
    assert not summary.endswith("the run succeeds."), summary
    assert "live here it fails (missing configuration for: page, ticket)" in summary


def test_plan_says_ok_without_printing_a_secret(tmp_path: Path, book: Path) -> None:
    env = clean_env(tmp_path, **CONFIGURED)
    done = irbook("plan", str(book), env=env)
    assert done.returncode == 0, done.stderr
    assert (
        "Preflight: slack ok (SLACK_BOT_TOKEN set); "
        "jira ok (cloud, JIRA_URL=https://acme.atlassian.net, JIRA_EMAIL/API_TOKEN)"
    ) in done.stdout
    assert done.stdout.rstrip().endswith("the run succeeds.")
    as_json = irbook("plan", str(book), "--format", "json", env=env)
    plan = json.loads(as_json.stdout)
    preflight = [line for line in done.stdout.splitlines() if line.startswith("Preflight")]
    shown = json.dumps(plan["preflight"]) + "".join(preflight)
    for secret in SECRETS:
        assert secret not in shown
    assert [(c["integration"], c["status"], c["steps"]) for c in plan["preflight"]] == [
        ("slack", "ok", ["page"]),
        ("jira", "ok", ["ticket"]),
    ]


def test_plan_json_has_the_preflight_when_unconfigured(tmp_path: Path, book: Path) -> None:
    done = irbook("plan", str(book), "--format", "json", env=clean_env(tmp_path))
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert {c["integration"]: c["status"] for c in plan["preflight"]} == {
        "slack": "missing",
        "jira": "missing",
    }
    assert plan["outcome"] == "succeeds"
    assert plan["live_outcome"] == "fails"


def test_aws_preflight_reads_the_credential_chain_offline(tmp_path: Path) -> None:
    path = tmp_path / "aws.yaml"
    path.write_text(
        "apiVersion: irbook/v1\nkind: Playbook\nmetadata: {id: aws-pf, title: AWS}\n"
        "steps:\n  - id: look\n    action: aws.cloudtrail.lookup_events\n"
        "    with: {access_key_id: AKIAABCDEFGHIJKLMNOP, hours: 1}\n"
    )
    bare = irbook("plan", str(path), env=clean_env(tmp_path))
    assert "aws not checked (credentials: none in env or ~/.aws;" in bare.stdout
    aws_dir = tmp_path / "home" / ".aws"
    aws_dir.mkdir(parents=True)
    (aws_dir / "credentials").write_text("[default]\naws_access_key_id = AKIA\n")
    (aws_dir / "config").write_text("[default]\nregion = eu-central-1\n")
    found = irbook("plan", str(path), env=clean_env(tmp_path))
    assert "Preflight: aws ok (~/.aws/credentials, region eu-central-1)" in found.stdout


def test_plan_exit_status_says_the_run_fails(tmp_path: Path) -> None:
    failing = tmp_path / "failing.yaml"
    failing.write_text(
        "apiVersion: irbook/v1\nkind: Playbook\nmetadata: {id: failing, title: Fails}\n"
        "steps:\n  - id: stop\n    action: core.fail\n    with: {message: nope}\n"
    )
    done = irbook("plan", str(failing), env=clean_env(tmp_path))
    assert "the run fails." in done.stdout
    assert done.returncode == 4, done.stdout + done.stderr
    soft = tmp_path / "soft.yaml"
    soft.write_text(
        "apiVersion: irbook/v1\nkind: Playbook\nmetadata: {id: soft, title: Soft}\n"
        "steps:\n  - id: stop\n    action: core.fail\n    on_failure: continue\n"
        "    with: {message: nope}\n"
    )
    done = irbook("plan", str(soft), env=clean_env(tmp_path))
    assert "the run succeeds with 1 failed step." in done.stdout
    assert done.returncode == 3, done.stdout + done.stderr
    # the cached answer exits the same way
    again = irbook("plan", str(soft), env=clean_env(tmp_path))
    assert (again.returncode, again.stdout) == (3, done.stdout)


def test_dry_run_shows_the_preflight(tmp_path: Path, book: Path) -> None:
    env = clean_env(tmp_path, PREFECT_HOME=str(tmp_path / "prefect"))
    done = irbook("run", str(book), "--dry-run", "--plain", "--quiet", env=env)
    assert done.stdout.startswith("Preflight: slack MISSING"), done.stdout + done.stderr


def test_live_confirmation_says_what_is_missing_before_asking(tmp_path: Path) -> None:
    path = tmp_path / "live.yaml"
    path.write_text(
        "apiVersion: irbook/v1\nkind: Playbook\nmetadata: {id: live, title: Live}\n"
        "steps:\n  - id: revoke\n    action: aws.iam.deactivate_access_key\n"
        "    with: {access_key_id: AKIAABCDEFGHIJKLMNOP, user_name: bob}\n"
        "  - id: page\n    action: slack.post_message\n    needs: [revoke]\n"
        "    with: {channel: '#ir', text: done}\n"
    )
    controller, terminal = pty.openpty()
    try:
        os.write(controller, b"n\n")
        done = irbook("run", str(path), "--quiet", env=clean_env(tmp_path), stdin=terminal)
    finally:
        os.close(controller)
        os.close(terminal)
    out = done.stdout
    assert "LIVE run of live: proceed? [y/N]" in out, out + done.stderr
    ask = out.index("proceed?")
    assert 0 <= out.index("Preflight: aws not checked") < ask
    assert 0 <= out.index("not configured here: slack (steps page)") < ask
    assert "not started" in out


def test_validate_strict_says_why_it_fails(tmp_path: Path) -> None:
    path = tmp_path / "warned.yaml"
    path.write_text(
        "apiVersion: irbook/v1\nkind: Playbook\nmetadata: {id: warned, title: Warned}\n"
        "steps:\n  - id: note\n    action: core.note\n    with: {text: hi}\n"
    )
    plain = irbook("validate", str(path), env=clean_env(tmp_path))
    assert plain.returncode == 0
    assert plain.stderr.splitlines()[-1].startswith("ok: 1 file(s), 1 valid, 0 error(s), 1 warn")
    strict = irbook("validate", "--strict", str(path), env=clean_env(tmp_path))
    assert strict.returncode == 1
    assert strict.stderr.splitlines()[-1] == (
        "failed: 1 file(s), 1 valid, 0 error(s), 1 warning(s) (--strict: warnings fail)"
    )


def test_pagerduty_and_webhook_are_named_too(tmp_path: Path) -> None:
    path = tmp_path / "page.yaml"
    path.write_text(
        "apiVersion: irbook/v1\nkind: Playbook\nmetadata: {id: page, title: Page}\n"
        "steps:\n  - id: page\n    action: pagerduty.trigger\n"
        "    with: {summary: leaked key, severity: critical}\n"
        "  - id: hook\n    action: notify.webhook\n"
        "    with: {url: 'https://hooks.example.com/T/secret-path', json: {text: hi}}\n"
    )
    bare = irbook("plan", str(path), env=clean_env(tmp_path))
    assert (
        "Preflight: pagerduty MISSING (set IRBOOK_PAGERDUTY_ROUTING_KEY or the step's "
        "routing_key); webhook ok (URL in the step)"
    ) in bare.stdout, bare.stdout + bare.stderr
    keyed = irbook(
        "plan", str(path), env=clean_env(tmp_path, IRBOOK_PAGERDUTY_ROUTING_KEY="R" * 32)
    )
    assert "Preflight: pagerduty ok (IRBOOK_PAGERDUTY_ROUTING_KEY set)" in keyed.stdout
    assert "R" * 32 not in keyed.stdout
