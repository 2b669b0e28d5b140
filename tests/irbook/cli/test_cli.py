"""The `irbook` command as a user runs it: a real process, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
ALERT = ROOT / "runbooks" / "drills" / "alerts" / "guardduty-exfil.json"


def irbook(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stdout + done.stderr


def test_help_for_every_command() -> None:
    every = ("", "validate", "list", "show", "plan", "match", "run", "approve", "runs")
    every += ("rollback", "cancel", "serve", "drill", "deploy", "audit", "server", "sandbox")
    every += ("warm",)
    for command in (*every, "iam-policy", "docs", "schema", "actions"):
        done = irbook(*([command] if command else []), "--help")
        assert done.returncode == 0, done.stderr
        assert "usage: irbook" in done.stdout


def test_unknown_command_is_a_one_line_user_error() -> None:
    done = irbook("frobnicate")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "invalid choice: 'frobnicate'" in done.stderr


def test_validate_the_shipped_playbooks() -> None:
    done = irbook("validate", "playbooks/")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "error" not in done.stdout
    assert "ok:" in done.stderr


def test_validate_reports_every_error_with_location(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: irbook/v1\n"
        "kind: Playbook\n"
        "metadata: {id: bad, title: Bad, severty: high}\n"
        "steps:\n"
        "  - id: a\n"
        "    action: core.notes\n"
        "  - id: b\n"
        "    action: core.note\n"
        "    with: {text: '${{ inputs.missing }}'}\n"
    )
    done = irbook("validate", str(bad))
    assert done.returncode == 1
    no_traceback(done)
    assert done.stdout.splitlines() == [
        f"{bad}:3:33: error: unknown field 'severty' (did you mean 'severity'?)",
        f"{bad}:6:13: error: unknown action 'core.notes' (did you mean 'core.note'?)",
        f"{bad}:9:23: error: unknown input 'missing'",
    ]


def test_validate_json_format(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: irbook/v1\nkind: Playbook\n")
    done = irbook("validate", "--format", "json", str(bad))
    assert done.returncode == 1
    items = json.loads(done.stdout)
    assert {(i["line"], i["message"]) for i in items} == {
        (1, "missing required field 'metadata'"),
        (1, "missing required field 'steps'"),
    }
    assert all(i["severity"] == "error" and i["path"] == str(bad) for i in items)


def test_lint_warnings_exit_zero_unless_strict(tmp_path: Path) -> None:
    book = tmp_path / "quiet.yaml"
    book.write_text(
        "apiVersion: irbook/v1\nkind: Playbook\nmetadata: {id: quiet, title: Quiet}\n"
        "steps:\n  - id: a\n    action: core.note\n    with: {text: hi}\n"
    )
    done = irbook("validate", str(book))
    assert done.returncode == 0
    assert "warning[medium]: no step notifies anyone" in done.stdout
    assert irbook("validate", "--strict", str(book)).returncode == 1


def test_duplicate_ids_across_a_folder(tmp_path: Path) -> None:
    text = (
        "apiVersion: irbook/v1\nkind: Playbook\nmetadata: {id: same, title: Same}\n"
        "steps:\n  - id: a\n    action: core.note\n    with: {text: hi}\n"
    )
    (tmp_path / "a.yaml").write_text(text)
    (tmp_path / "b.yaml").write_text(text)
    done = irbook("validate", str(tmp_path))
    assert done.returncode == 1
    assert f"{tmp_path}/b.yaml:3:16: error: duplicate playbook id 'same' (also in " in done.stdout


@pytest.mark.parametrize("cache", ["", "1"])
def test_validate_gives_the_same_answer_cached_or_not(tmp_path: Path, cache: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: irbook/v2\nkind: Playbook\n")
    env = {"IRBOOK_NO_CACHE": cache}
    first = irbook("validate", str(bad), env=env)
    second = irbook("validate", str(bad), env=env)
    assert first.returncode == second.returncode == 1
    assert first.stdout == second.stdout
    assert "'apiVersion': 'irbook/v2' is not one of 'irbook/v1'" in first.stdout
    # the cache is keyed by content: a fix is seen at once
    bad.write_text(
        "apiVersion: irbook/v1\nkind: Playbook\nmetadata: {id: fixed, title: Fixed}\n"
        "steps:\n  - id: a\n    action: core.note\n    with: {text: hi}\n"
    )
    third = irbook("validate", str(bad), env=env)
    assert third.returncode == 0, third.stdout


def test_validate_checks_drill_scenarios_too() -> None:
    done = irbook("validate", "playbooks/", "runbooks/drills/")
    assert done.returncode == 0, done.stdout + done.stderr
    shipped = len(
        [*(ROOT / "playbooks").glob("*.yaml"), *(ROOT / "runbooks/drills").glob("*.yaml")]
    )
    assert f"ok: {shipped} file(s), {shipped} valid, 0 error(s)" in done.stderr


@pytest.mark.parametrize("name", ["unknown-playbook", "structure", "alert-file-missing"])
def test_validate_gives_a_bad_drill_the_errors_irbook_drill_would(name: str) -> None:
    # The corpus pins what loading the scenario reports (tests/irbook/drill/test_scenario.py).
    relative = f"tests/corpus/drill/bad/{name}.yaml"
    done = irbook("validate", relative)
    assert done.returncode == 1
    no_traceback(done)
    expected = (ROOT / "tests" / "corpus" / "drill" / "bad" / f"{name}.expected").read_text()
    assert done.stdout == expected
    assert "0 valid" in done.stderr


def test_a_drill_is_checked_against_its_playbook_as_it_is_now(tmp_path: Path) -> None:
    # Never cached by the drill's own content: its playbook can change under it.
    book = tmp_path / "book.yaml"
    steps = "steps:\n  - id: a\n    action: core.note\n    with: {text: hi}\n"
    book.write_text(
        "apiVersion: irbook/v1\nkind: Playbook\nmetadata: {id: book, title: Book}\n" + steps
    )
    drill = tmp_path / "drill.yaml"
    drill.write_text(
        "apiVersion: irbook/v1\nkind: Drill\nmetadata: {id: d1, title: D1}\n"
        f"playbook: {book}\nalert: {{file: {ALERT}}}\nexpect: {{steps_run: [a]}}\n"
    )
    first = irbook("validate", str(drill))
    assert first.returncode == 0, first.stdout + first.stderr
    book.write_text(book.read_text().replace("id: a", "id: renamed"))
    second = irbook("validate", str(drill))
    assert second.returncode == 1
    assert f"{drill}:6:" in second.stdout
    assert "unknown step 'a'" in second.stdout


def test_duplicate_drill_ids_across_a_folder(tmp_path: Path) -> None:
    text = (ROOT / "runbooks" / "drills" / "leaked-key-friday-night.yaml").read_text()
    text = text.replace("{file: alerts/", f"{{file: {ALERT.parent}/")
    (tmp_path / "a.yaml").write_text(text)
    (tmp_path / "b.yaml").write_text(text)
    done = irbook("validate", str(tmp_path))
    assert done.returncode == 1, done.stdout
    assert done.stdout.startswith(
        f"{tmp_path}/b.yaml:8:7: error: duplicate drill id 'leaked-key-friday-night' (also in "
    )
    assert "1 valid" in done.stderr


def test_a_drill_in_a_playbook_folder_is_an_error(tmp_path: Path) -> None:
    # The receiver, list and deploy read every file of a playbook folder as a playbook.
    folder = tmp_path / "books"
    folder.mkdir()
    (folder / "leaked-model-key.yaml").write_text(
        (ROOT / "playbooks" / "leaked-model-key.yaml").read_text()
    )
    text = (ROOT / "runbooks" / "drills" / "leaked-key-friday-night.yaml").read_text()
    (folder / "drill.yaml").write_text(text.replace("{file: alerts/", f"{{file: {ALERT.parent}/"))
    done = irbook("validate", env={"IRBOOK_PLAYBOOKS": str(folder)})
    assert done.returncode == 1
    assert done.stdout.startswith(
        f"{folder}/drill.yaml:6:7: error: a drill scenario in a playbook folder ("
    )
    assert "2 file(s), 1 valid, 1 error(s)" in done.stderr


def test_one_bad_drill_does_not_hide_the_other_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("apiVersion: irbook/v1\nkind: Playbook\n")
    shared = tmp_path / "bad-alert.json"
    shared.write_text('{"id": 5}')
    for name, playbook in (("b", '"x\\0.yaml"'), ("c", "leaked-model-key")):
        (tmp_path / f"{name}.yaml").write_text(
            f"apiVersion: irbook/v1\nkind: Drill\nmetadata: {{id: {name}, title: T}}\n"
            f"playbook: {playbook}\nalert: {{file: bad-alert.json}}\n"
        )
    done = irbook("validate", str(tmp_path))
    assert done.returncode == 1
    no_traceback(done)
    lines = done.stdout.splitlines()
    assert any(line.startswith(f"{tmp_path}/a.yaml:") for line in lines)
    assert f"{tmp_path}/b.yaml:4:11: error: playbook 'x\\x00.yaml': not a usable path" in (
        done.stdout
    )
    # the alert file both drills name is reported once
    assert [line for line in lines if line.startswith(f"{shared}:")] == [
        f"{shared}:1:8: error: 'id': expected a string, got number"
    ]


def test_plan_the_example_for_the_example_alert() -> None:
    done = irbook("plan", "leaked-model-key", "--alert", str(ALERT))
    assert done.returncode == 0, done.stderr
    no_traceback(done)
    out = done.stdout
    assert "Plan for leaked-model-key" in out
    assert "call iam:UpdateAccessKey" in out
    assert "revoke  aws.iam.deactivate_access_key  [mutate]  runs, after approval" in out
    assert "why: if ${{ inputs.endpoint_name != '' }} is false" in out
    assert "undo aws.iam.activate_access_key" in out


def test_plan_takes_params_and_json(tmp_path: Path) -> None:
    done = irbook(
        "plan",
        "playbooks/leaked-model-key.yaml",
        "--alert",
        str(ALERT),
        "--param",
        "endpoint_name=fraud-scoring",
        "--format",
        "json",
    )
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    steps = {s["id"]: s for s in plan["steps"]}
    assert steps["snapshot"]["status"] == "run"
    calls = [c["call"] for it in steps["snapshot"]["iterations"] for c in it["calls"]]
    assert "sagemaker:DescribeEndpoint" in calls
    assert plan["inputs"]["endpoint_name"] == "fraud-scoring"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plan", "no-such-playbook"], "no playbook with id 'no-such-playbook' in playbooks"),
        (["plan", "leaked-model-key"], "input 'access_key_id' is required"),
        (
            ["plan", "leaked-model-key", "--param", "access_key_id=oops"],
            "input 'access_key_id': 'oops' does not match",
        ),
        (["plan", "leaked-model-key", "--param", "novalue"], "--param takes NAME=VALUE"),
        (
            ["plan", "leaked-model-key", "--alert", "/nonexistent.json"],
            "/nonexistent.json: error: no such file",
        ),
        (["show", "nope"], "no playbook with id 'nope'"),
        (
            ["actions", "aws.iam.deactivate_key"],
            "unknown action 'aws.iam.deactivate_key' (did you mean",
        ),
    ],
)
def test_user_errors_are_one_line(args: list[str], message: str) -> None:
    done = irbook(*args)
    assert done.returncode == 1, done.stdout
    no_traceback(done)
    assert message in done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr


def test_a_bad_alert_file_names_the_field(tmp_path: Path) -> None:
    alert = tmp_path / "alert.json"
    alert.write_text(json.dumps({"id": "x", "severity": 42, "actor": {"acces_key_id": "A"}}))
    done = irbook("plan", "leaked-model-key", "--alert", str(alert))
    assert done.returncode == 1
    no_traceback(done)
    assert f"{alert}:1:25: error: 'severity': must be at most 10, got 42" in done.stderr
    assert "unknown field 'acces_key_id' (did you mean 'access_key_id'?)" in done.stderr


ALERT_FILE_ERRORS = {
    "oversized": (
        '{"id": "' + "x" * (1024 * 1024) + '"}',
        ": error: file is 1.0 MiB, over the 1 MiB limit for an alert file",
    ),
    "not JSON or YAML": (
        '{"id": [1, 2}',
        ":1:13: error: alert file is not valid JSON or YAML: did not find expected ',' or ']'",
    ),
    "a list": ("[1, 2]", ":1:1: error: an alert file must hold a mapping"),
    "a string": ('"just text"', ":1:1: error: an alert file must hold a mapping"),
    "a control character": (
        '{"id": "a\x07"}',
        ":1:10: error: alert file is not valid JSON or YAML: unprintable character U+0007",
    ),
    "a NUL byte": ('{"id": "a\x00"}', ":1:10: error: alert file: binary file (contains NUL"),
    "empty": ("", ":1:1: error: alert file: empty file"),
}


@pytest.mark.parametrize(
    ("command", "case"),
    [(["plan"], case) for case in ALERT_FILE_ERRORS]
    + [(["run", "--dry-run"], case) for case in ("oversized", "not JSON or YAML", "a list")],
)
def test_a_bad_alert_file_is_called_an_alert_file(
    tmp_path: Path, command: list[str], case: str
) -> None:
    content, message = ALERT_FILE_ERRORS[case]
    alert = tmp_path / "alert.json"
    alert.write_text(content)
    done = irbook(*command, "leaked-model-key", "--alert", str(alert))
    assert done.returncode == 1, done.stdout
    no_traceback(done)
    assert done.stderr.startswith(f"irbook: {alert}{message}"), done.stderr
    assert done.stderr.count("\n") == 1
    assert "playbook" not in done.stderr


# A chain this long is within the 4 KB expression cap; it used to exhaust the recursion
# limit (an internal error that hid every other file's diagnostics).
DEEP_CHAIN = "||".join(["0"] * 1360)


def deep_playbook(folder: Path, name: str = "deep") -> tuple[Path, str]:
    """A playbook whose `if` is DEEP_CHAIN, and where its error is (the 32nd `||`)."""
    path = folder / f"{name}.yaml"
    line = f'    if: "${{{{ {DEEP_CHAIN} }}}}"'
    path.write_text(
        "apiVersion: irbook/v1\nkind: Playbook\n"
        f"metadata: {{id: {name}, title: Deep, severity: low}}\n"
        "steps:\n  - id: a\n    action: core.note\n"
        f"{line}\n"
        "    with: {text: hi}\n"
    )
    col = line.index("||")
    for _ in range(31):
        col = line.index("||", col + 1)
    return path, f"{path}:7:{col + 1}: error: invalid expression: expression nested too deeply"


def test_a_deep_expression_is_a_located_error_that_hides_nothing(tmp_path: Path) -> None:
    _, where = deep_playbook(tmp_path)
    other = tmp_path / "other.yaml"
    other.write_text(
        "apiVersion: irbook/v1\nkind: Playbook\nmetadata: {id: other, title: T}\n"
        "steps:\n  - id: a\n    action: core.note\n    with: {text: '${{ inputs.nope }}'}\n"
    )
    done = irbook("validate", str(tmp_path))
    assert done.returncode == 1
    no_traceback(done)
    assert "internal error" not in done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith(where) for line in lines), done.stdout
    assert f"{other}:7:23: error: unknown input 'nope'" in lines
    assert "2 file(s), 0 valid, 2 error(s)" in done.stderr


@pytest.mark.parametrize(
    "expression",
    [
        "inputs" + ".a" * 2000,
        "inputs" + "[0]" * 1360,
        "!" * 4000 + "true",
        "(" * 2000 + "1" + ")" * 2000,
        "length(" * 500 + "1" + ")" * 500,
    ],
    ids=["properties", "indexes", "nots", "parentheses", "calls"],
)
def test_plan_refuses_a_deep_expression_in_one_line(tmp_path: Path, expression: str) -> None:
    book = tmp_path / "deep.yaml"
    book.write_text(
        "apiVersion: irbook/v1\nkind: Playbook\nmetadata: {id: deep, title: Deep}\n"
        "steps:\n  - id: a\n    action: core.note\n"
        f"    with: {{text: '${{{{ {expression} }}}}'}}\n"
    )
    done = irbook("plan", str(book))
    assert done.returncode == 1, done.stdout
    no_traceback(done)
    assert done.stderr.startswith(f"irbook: {book}:7:"), done.stderr
    assert "error: invalid expression: expression nested too deeply" in done.stderr
    assert done.stderr.strip().count("\n") == 0


def test_serve_refuses_a_deep_expression_with_its_location(tmp_path: Path) -> None:
    folder = tmp_path / "books"
    folder.mkdir()
    _, where = deep_playbook(folder)
    config = tmp_path / "receiver.yaml"
    config.write_text(
        f"playbooks: [{folder}]\n"
        "sources:\n  guardduty:\n    format: guardduty\n    mode: dry-run\n"
        "    auth: {scheme: bearer, token_env: HOOK_TOKEN}\n    playbooks: '*'\n"
    )
    done = irbook("serve", "--config", str(config), "--port", "0", env={"HOOK_TOKEN": "t" * 40})
    assert done.returncode == 1
    no_traceback(done)
    assert done.stderr.startswith(f"irbook: {where}"), done.stderr


def test_plan_of_the_deep_chain_playbook(tmp_path: Path) -> None:
    deep, where = deep_playbook(tmp_path)
    done = irbook("plan", str(deep))
    assert done.returncode == 1
    no_traceback(done)
    assert done.stderr.startswith(f"irbook: {where} (more than 32 levels")


def test_a_deep_from_path_is_refused_when_the_playbook_loads(tmp_path: Path) -> None:
    text = (ROOT / "playbooks" / "leaked-model-key.yaml").read_text()
    assert "    from: alert.actor.access_key_id\n" in text
    book = tmp_path / "deep-from.yaml"
    book.write_text(text.replace("alert.actor.access_key_id\n", "alert" + ".a" * 1900 + "\n", 1))
    line = text[: text.index("    from: alert.actor.access_key_id\n")].count("\n") + 1
    done = irbook("plan", str(book), "--alert", str(ALERT))
    assert done.returncode == 1
    no_traceback(done)
    assert done.stderr.startswith(
        f"irbook: {book}:{line}:11: error: 'inputs.access_key_id.from': expression nested too "
        "deeply"
    ), done.stderr


def test_a_deep_chain_in_alert_data_stays_data(tmp_path: Path) -> None:
    """Alert fields are never parsed: expression text in them, deep or not, is text."""
    alert = json.loads(ALERT.read_text())
    alert["title"] = "${{ " + DEEP_CHAIN + " }}"
    alert["resources"][0]["tags"] = {"team": "${{ inputs" + ".a" * 2000 + " }}"}
    path = tmp_path / "alert.json"
    path.write_text(json.dumps(alert))
    done = irbook("plan", "leaked-model-key", "--alert", str(path), "--format", "json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    ticket = plan["steps"][0]["iterations"][0]["params"]
    assert ticket["description"].startswith(alert["title"] + " (alert arn:aws:guardduty:")


def test_list_show_schema_actions() -> None:
    listing = irbook("list")
    assert listing.returncode == 0
    ids = [line.split()[0] for line in listing.stdout.splitlines()]
    assert "leaked-model-key" in ids and ids == sorted(ids)
    show = irbook("show", "leaked-model-key")
    assert show.returncode == 0
    assert "revoke: aws.iam.deactivate_access_key [mutate] (approval)" in show.stdout
    schema = json.loads(irbook("schema").stdout)
    assert schema["properties"]["apiVersion"]["const"] == "irbook/v1"
    assert "steps" in schema["required"]
    actions = irbook("actions")
    assert "core.note" in actions.stdout and "aws.iam.deactivate_access_key" in actions.stdout
    one = json.loads(irbook("actions", "core.sleep", "--format", "json").stdout)
    assert one["effect"] == "read" and "duration" in one["params"]["properties"]


def test_offline_commands_do_not_import_prefect_or_boto3(tmp_path: Path) -> None:
    code = (
        "import sys, runpy\n"
        "sys.argv = ['irbook', 'plan', 'leaked-model-key', '--alert', sys.argv[1], '--no-cache']\n"
        "try:\n    runpy.run_module('irbook.cli.main', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('prefect', 'boto3', 'botocore', 'slack_sdk', 'jira', 'jinja2')"
        " if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(ALERT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "HEAVY []" in done.stdout, done.stdout + done.stderr


def test_iam_policy_grants_exactly_what_the_playbook_s_actions_declare() -> None:
    from irbook.loader import load_playbook
    from irbook.registry import REGISTRY

    done = irbook("iam-policy", "leaked-model-key")
    assert done.returncode == 0, done.stderr
    policy = json.loads(done.stdout)
    assert policy["Version"] == "2012-10-17"
    granted = {a for s in policy["Statement"] for a in s["Action"]}
    assert all(s["Effect"] == "Allow" for s in policy["Statement"])
    # Resource "*" only where the Sid says why (tests/irbook/test_iam_policy.py checks the ARNs)
    assert all(
        s["Sid"].endswith("AnyResource") for s in policy["Statement"] if s["Resource"] == "*"
    )
    assert all(s["Sid"].isalnum() for s in policy["Statement"])  # valid policy syntax
    book = load_playbook(str(ROOT / "playbooks" / "leaked-model-key.yaml")).playbook
    wanted: set[str] = set()
    for step in book.steps:
        spec = REGISTRY.get(step.action)
        if spec.key.startswith("aws."):
            wanted |= set(spec.permissions)
            if spec.compensation:
                wanted |= set(REGISTRY.get(spec.compensation).permissions)
    assert granted == wanted
    assert {"iam:UpdateAccessKey", "cloudtrail:LookupEvents"} <= granted
    assert not any(a.startswith(("slack:", "jira:")) for a in granted)  # not IAM
    narrow = json.loads(irbook("iam-policy", "leaked-model-key", "--no-rollback").stdout)
    assert {a for s in narrow["Statement"] for a in s["Action"]} <= granted


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("soon", "IRBOOK_STUCK_AFTER must be a number of seconds, not 'soon'"),
        ("5", "IRBOOK_STUCK_AFTER must be at least 10 (Prefect's minimum)"),
    ],
)
def test_deploy_refuses_a_bad_stuck_after_before_asking_prefect(value: str, said: str) -> None:
    """The setting is checked first: with an API that does not answer, the error is still
    about the setting (nothing was created with half a configuration)."""
    done = irbook(
        "deploy", env={"IRBOOK_STUCK_AFTER": value, "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"irbook: error: {said}"]
    no_traceback(done)
