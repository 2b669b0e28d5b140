"""`irbook match`: a raw vendor payload, normalized and matched as the receiver would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.irbook.cli.test_cli import ROOT, irbook, no_traceback

PAYLOADS = ROOT / "tests" / "corpus" / "payloads"
# leaked-model-key's raw finding: an IAM user's long-term key called from a Tor exit node
EXFIL = ROOT / "runbooks" / "drills" / "alerts" / "guardduty-leaked-model-key.json"


def _low_severity(tmp_path: Path) -> Path:
    """The finding rated low: leaked-model-key asks for 5 or more."""
    payload = json.loads(EXFIL.read_text())
    payload["detail"]["severity"] = 3
    path = tmp_path / "low.json"
    path.write_text(json.dumps(payload))
    return path


def test_a_raw_guardduty_finding_matches_the_shipped_playbook() -> None:
    done = irbook("match", str(EXFIL), "--from", "guardduty")
    no_traceback(done)
    assert done.returncode == 0, done.stderr
    assert "type: UnauthorizedAccess:IAMUser/TorIPCaller" in done.stdout
    assert "match: leaked-model-key (trigger 0)" in done.stdout


def test_json_shape_one_alert_is_the_object() -> None:
    done = irbook("match", str(EXFIL), "--from", "guardduty", "--format", "json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert set(out) == {"alert", "matches", "near_misses"}
    assert out["alert"]["source"] == "guardduty" and out["alert"]["format"] == "guardduty"
    assert out["alert"]["severity"] == 5
    assert "raw" not in out["alert"]
    assert out["matches"] == [{"playbook": "leaked-model-key", "trigger": 0}]
    # other GuardDuty playbooks are near misses, on the finding type
    assert all(m["why"].startswith("type: ") for m in out["near_misses"])


def test_low_severity_is_a_near_miss_naming_the_severity_condition(tmp_path: Path) -> None:
    low = _low_severity(tmp_path)
    done = irbook("match", str(low), "--from", "guardduty")
    no_traceback(done)
    assert done.returncode == 1
    assert 'near miss: leaked-model-key: severity: expected {"gte": 5}, got 3.0' in done.stdout
    assert "no playbook matched" in done.stdout
    out = json.loads(irbook("match", str(low), "--from", "guardduty", "--format", "json").stdout)
    assert out["matches"] == []
    assert {"playbook": "leaked-model-key", "why": 'severity: expected {"gte": 5}, got 3.0'} in (
        out["near_misses"]
    )


def test_several_alerts_in_one_payload_are_listed_each(tmp_path: Path) -> None:
    done = irbook(
        "match", str(PAYLOADS / "securityhub_findings.json"), "--from", "securityhub",
        "--format", "json",
    )  # fmt: skip
    no_traceback(done)
    out = json.loads(done.stdout)
    assert len(out["alerts"]) == 2
    assert all(set(a) >= {"alert", "matches", "near_misses"} for a in out["alerts"])
    assert all(a["alert"]["format"] == "securityhub" for a in out["alerts"])
    # nothing matches; what nearly does are only playbooks that listen to Security Hub
    assert done.returncode == 1
    assert all(a["matches"] == [] for a in out["alerts"])
    listening = {
        book["metadata"]["id"]
        for book in map(
            yaml.safe_load, (p.read_text() for p in (ROOT / "playbooks").glob("*.yaml"))
        )
        if any(t.get("format") == "securityhub" for t in book.get("triggers", []))
    }
    assert {m["playbook"] for a in out["alerts"] for m in a["near_misses"]} <= listening


def _receiver(tmp_path: Path) -> Path:
    """Two GuardDuty sources; a playbook only gd-prod's alerts start (token unset: offline)."""
    books = tmp_path / "books"
    books.mkdir()
    text = (ROOT / "playbooks" / "leaked-model-key.yaml").read_text()
    text = text.replace("id: leaked-model-key", "id: prod-key").replace(
        "  - format: guardduty    # any configured source of format guardduty",
        "  - source: gd-prod",
    )
    assert "source: gd-prod" in text
    (books / "prod-key.yaml").write_text(text)
    config = tmp_path / "receiver.yaml"
    config.write_text(
        f"playbooks: [{books}]\n"
        "sources:\n"
        "  gd-prod:\n    format: guardduty\n"
        "    auth: {scheme: bearer, token_env: IRBOOK_MATCH_TEST_UNSET}\n"
        "  gd-staging:\n    format: guardduty\n"
        "    auth: {scheme: bearer, token_env: IRBOOK_MATCH_TEST_UNSET}\n"
    )
    return config


def test_config_named_source_gives_the_alert_that_source(tmp_path: Path) -> None:
    config = _receiver(tmp_path)
    done = irbook("match", str(EXFIL), "--from", "gd-prod", "--config", str(config))
    no_traceback(done)
    assert done.returncode == 0, done.stderr
    assert "(source gd-prod, format guardduty)" in done.stdout
    assert "match: prod-key (trigger 0)" in done.stdout
    other = irbook(
        "match", str(EXFIL), "--from", "gd-staging", "--config", str(config), "--format", "json"
    )
    assert other.returncode == 1, other.stderr
    out = json.loads(other.stdout)
    assert out["alert"]["source"] == "gd-staging"
    assert out["matches"] == []
    assert out["near_misses"] == []  # the trigger names another source: not a near miss


def test_config_format_with_two_sources_asks_for_one(tmp_path: Path) -> None:
    config = _receiver(tmp_path)
    done = irbook("match", str(EXFIL), "--from", "guardduty", "--config", str(config))
    no_traceback(done)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "gd-prod (guardduty), gd-staging (guardduty)" in done.stderr


def test_bad_input_is_one_line_exit_1(tmp_path: Path) -> None:
    malformed = tmp_path / "malformed.json"
    malformed.write_text('{"detail": {"id": "x", "type": 5}}')
    truncated = tmp_path / "truncated.json"
    truncated.write_text('{"detail": ')
    cases = [
        ((str(malformed), "--from", "guardduty"), f"irbook: error: {malformed}: $.detail."),
        ((str(truncated), "--from", "guardduty"), f"irbook: error: {truncated}: not a JSON"),
        ((str(tmp_path / "none.json"), "--from", "guardduty"), "irbook: error: "),
        ((str(EXFIL), "--from", "guardduy"), "irbook: error: --from guardduy: unknown format"),
    ]
    for argv, start in cases:
        done = irbook("match", *argv)
        no_traceback(done)
        assert done.returncode == 1, (argv, done.stderr)
        assert done.stdout == ""
        assert done.stderr.startswith(start), done.stderr
        assert done.stderr.count("\n") == 1, done.stderr


def test_alert_text_cannot_write_terminal_escapes(tmp_path: Path) -> None:
    payload = json.loads(EXFIL.read_text())
    payload["detail"]["title"] = "evil\x1b]0;owned\x07 title"
    path = tmp_path / "escape.json"
    path.write_text(json.dumps(payload))
    done = irbook("match", str(path), "--from", "guardduty")
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout
    assert "title: evil\\x1b]0;owned\\x07 title" in done.stdout


def test_match_imports_neither_prefect_nor_boto3() -> None:
    code = (
        "import sys, runpy\n"
        "sys.argv = ['irbook', 'match', sys.argv[1], '--from', 'guardduty']\n"
        "try:\n    runpy.run_module('irbook.cli.main', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('prefect', 'boto3', 'botocore', 'slack_sdk', 'jira',"
        " 'starlette') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(EXFIL)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "match: leaked-model-key" in done.stdout, done.stdout + done.stderr
    assert "HEAVY []" in done.stdout, done.stdout + done.stderr


def test_a_resolved_alert_starts_nothing_as_in_the_receiver(tmp_path: Path) -> None:
    text = (ROOT / "playbooks" / "leaked-model-key.yaml").read_text()
    start = text.index("  - format: guardduty    # any configured source of format guardduty\n")
    end = text.index("rollback: manual")
    text = (
        text[:start]
        + "  - format: alertmanager\n    match:\n      type: ModelEndpointTokenSpike\n"
        + text[end:]
    )
    assert "format: alertmanager" in text
    (tmp_path / "spike.yaml").write_text(text)
    done = irbook(
        "match", str(PAYLOADS / "alertmanager_group.json"), "--from", "alertmanager",
        "--format", "json", env={"IRBOOK_PLAYBOOKS": str(tmp_path)},
    )  # fmt: skip
    no_traceback(done)
    assert done.returncode == 0, done.stderr
    firing, resolved = json.loads(done.stdout)["alerts"]
    assert firing["matches"] == [{"playbook": "leaked-model-key", "trigger": 0}]
    assert "resolved" not in firing
    assert resolved["resolved"] is True
    assert resolved["matches"] == []


def test_a_sample_finding_is_marked_as_the_receiver_treats_it() -> None:
    done = irbook("match", str(PAYLOADS / "guardduty_sample.json"), "--from", "guardduty")
    assert "sample finding: the receiver would start a dry run only" in done.stdout
    out = json.loads(
        irbook(
            "match", str(PAYLOADS / "guardduty_sample.json"), "--from", "guardduty",
            "--format", "json",
        ).stdout
    )  # fmt: skip
    assert out["sample"] is True


def test_config_warns_as_serve_does_of_a_format_written_as_source(tmp_path: Path) -> None:
    books = tmp_path / "books"
    books.mkdir()
    text = (ROOT / "playbooks" / "leaked-model-key.yaml").read_text()
    text = text.replace(
        "  - format: guardduty    # any configured source of format guardduty",
        "  - source: guardduty",
    )
    (books / "old.yaml").write_text(text)
    config = tmp_path / "receiver.yaml"
    config.write_text(
        f"playbooks: [{books}]\nsources:\n  gd-prod:\n    format: guardduty\n"
        "    auth: {scheme: bearer, token_env: IRBOOK_MATCH_TEST_UNSET}\n"
    )
    done = irbook("match", str(EXFIL), "--from", "guardduty", "--config", str(config))
    no_traceback(done)
    assert done.returncode == 0, done.stderr
    assert "match: leaked-model-key (trigger 0)" in done.stdout
    assert done.stderr.startswith("irbook: warning: playbook leaked-model-key triggers[0]:")
    assert "(deprecated: write format: guardduty" in done.stderr
