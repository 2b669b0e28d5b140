"""Every integration end to end, the way a user runs it: `irbook run PLAYBOOK --alert FILE
--yes` as a subprocess, configured only by the environment variables the README names,
against local servers speaking each vendor's HTTP API (a fake Jira Cloud and Server, a
fake Slack, a PagerDuty and webhook sink, moto's server for AWS).

Each test checks what the server received (method, path, credentials, body) and what
irbook said and returned; and that each step's recorded real calls are the requests that
arrived, so the run record is as honest as the dry run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from irbook.runs import RunStore
from tests.support.fakejira import API_TOKEN, EMAIL, PAT, FakeJira
from tests.support.fakeslack import FakeSlack

ROOT = Path(__file__).resolve().parents[2]
IRBOOK = Path(sys.executable).with_name("irbook")  # the console script users run
ALERT = ROOT / "runbooks/drills/alerts/guardduty-exfil.json"
SLACK_TOKEN = "xoxb-e2e-fake-bot-token"
ROUTING_KEY = "pd-e2e-routing-key-0123456789"

# whatever the developer's shell has for these must not reach the runs under test
_INTEGRATION_PREFIXES = (
    "JIRA_",
    "SLACK_",
    "AWS_",
    "IRBOOK_JIRA",
    "IRBOOK_SLACK",
    "IRBOOK_PAGERDUTY",
)


def playbook(tmp_path: Path, steps: str) -> Path:
    path = tmp_path / "playbook.yaml"
    path.write_text(
        "apiVersion: irbook/v1\nkind: Playbook\n"
        "metadata: {id: e2e, title: Integration end to end, severity: high}\n"
        "rollback: manual\nsteps:\n" + textwrap.indent(textwrap.dedent(steps), "  ")
    )
    return path


def irbook_run(path: Path, env: dict[str, str], alert: Path = ALERT) -> tuple[int, str, str]:
    """`irbook run` with the test's Prefect API and irbook home plus `env`, nothing else."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(_INTEGRATION_PREFIXES)}
    proc = subprocess.run(
        [str(IRBOOK), "run", str(path), "--alert", str(alert), "--yes", "--plain"],
        cwd=ROOT,
        env={**base, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


def last_run_steps() -> dict[str, dict[str, Any]]:
    [run] = RunStore().recent_runs(1)
    return {s["step_id"]: s for s in RunStore().steps(run["id"])}


def real_calls(steps: dict[str, dict[str, Any]], *ids: str) -> list[str]:
    return [c["call"] for step in ids for c in steps[step]["real_calls"]]


# -- Jira --------------------------------------------------------------------------------

JIRA_STEPS = """
- id: ticket
  action: jira.create_issue
  with:
    project: SEC
    summary: "Leaked key ${{ alert.actor.access_key_id }}"
    description: "${{ alert.title }}"
    labels: [credential-compromise]
- id: update
  action: jira.comment
  needs: [ticket]
  with: {issue: "${{ steps.ticket.outputs.key }}", body: "Key deactivated by irbook."}
- id: resolve
  action: jira.transition
  needs: [update]
  with: {issue: "${{ steps.ticket.outputs.key }}", to: Done}
- id: evidence
  action: jira.link_evidence
  needs: [resolve]
  with: {issue: "${{ steps.ticket.outputs.key }}", url: "https://evidence.example.test/m.json"}
"""


@pytest.fixture
def jira_cloud() -> Iterator[FakeJira]:
    server = FakeJira("cloud")
    yield server
    server.close()


@pytest.fixture
def jira_server() -> Iterator[FakeJira]:
    server = FakeJira("server")
    yield server
    server.close()


def check_jira_run(jira: FakeJira, code: int, out: str) -> dict[str, Any]:
    """The whole ticket lifecycle arrived at the fake, authenticated, in the flavour's
    REST version; returns the created issue's fields."""
    assert code == 0, out
    search = "search/jql" if jira.flavor == "cloud" else "search"
    assert jira.calls() == [
        f"jira:GET {jira.api(search)}",
        f"jira:POST {jira.api('issue')}",
        f"jira:POST {jira.api('issue/SEC-1/comment')}",
        f"jira:GET {jira.api('issue/SEC-1/transitions')}",
        f"jira:POST {jira.api('issue/SEC-1/transitions')}",
        f"jira:POST {jira.api('issue/SEC-1/remotelink')}",
    ]
    assert {r.headers.get("authorization") for r in jira.requests} == {jira.expected_auth}
    steps = last_run_steps()
    assert {s: steps[s]["state"] for s in steps} == dict.fromkeys(
        ("ticket", "update", "resolve", "evidence"), "succeeded"
    )
    assert real_calls(steps, "ticket", "update", "resolve", "evidence") == jira.calls()
    assert steps["ticket"]["outputs"]["key"] == "SEC-1"
    assert steps["ticket"]["outputs"]["url"] == f"{jira.url}/browse/SEC-1"
    issue = jira.issues["SEC-1"]
    assert issue.status == "Done"
    assert issue.links == [
        {
            "url": "https://evidence.example.test/m.json",
            "title": "https://evidence.example.test/m.json",
        }
    ]
    created = jira.requests[1].json["fields"]
    assert created["project"] == {"key": "SEC"}
    assert created["summary"] == "Leaked key AKIAIOSFODNN7EXAMPLE"
    assert created["priority"] == {"name": "High"}
    assert "credential-compromise" in created["labels"]
    return dict(created)


def test_jira_cloud_from_environment_variables(tmp_path: Path, jira_cloud: FakeJira) -> None:
    code, out, _ = irbook_run(
        playbook(tmp_path, JIRA_STEPS),
        {"JIRA_URL": jira_cloud.url, "JIRA_EMAIL": EMAIL, "JIRA_API_TOKEN": API_TOKEN},
    )

    created = check_jira_run(jira_cloud, code, out)
    assert created["description"]["type"] == "doc"  # ADF on REST v3
    assert jira_cloud.requests[2].json["body"]["type"] == "doc"


def test_jira_server_from_environment_variables(tmp_path: Path, jira_server: FakeJira) -> None:
    code, out, _ = irbook_run(
        playbook(tmp_path, JIRA_STEPS),
        {"JIRA_URL": jira_server.url, "JIRA_PAT": PAT, "IRBOOK_JIRA_FLAVOR": "server"},
    )

    created = check_jira_run(jira_server, code, out)
    assert created["description"].startswith("Credentials for instance role ml-inference")
    assert jira_server.requests[2].json["body"] == "Key deactivated by irbook."


def test_a_second_run_for_the_same_alert_comments_on_the_open_ticket(
    tmp_path: Path, jira_server: FakeJira
) -> None:
    path = playbook(
        tmp_path,
        """
        - id: ticket
          action: jira.create_issue
          with: {project: SEC, summary: "Leaked key ${{ alert.actor.access_key_id }}"}
        """,
    )
    env = {"JIRA_URL": jira_server.url, "JIRA_PAT": PAT, "IRBOOK_JIRA_FLAVOR": "server"}

    first = irbook_run(path, env)
    second = irbook_run(path, env)

    assert (first[0], second[0]) == (0, 0), first[1] + second[1]
    assert jira_server.calls() == [
        f"jira:GET {jira_server.api('search')}",
        f"jira:POST {jira_server.api('issue')}",
        f"jira:GET {jira_server.api('search')}",
        f"jira:POST {jira_server.api('issue/SEC-1/comment')}",
    ]
    assert list(jira_server.issues) == ["SEC-1"]
    [comment] = jira_server.issues["SEC-1"].comments
    assert comment.startswith("Seen again: Leaked key AKIAIOSFODNN7EXAMPLE")
    outputs = last_run_steps()["ticket"]["outputs"]
    assert (outputs["key"], outputs["created"]) == ("SEC-1", False)


def test_jira_with_a_wrong_token_fails_the_step_and_says_why(
    tmp_path: Path, jira_cloud: FakeJira
) -> None:
    _code, out, err = irbook_run(
        playbook(tmp_path, JIRA_STEPS),
        {"JIRA_URL": jira_cloud.url, "JIRA_EMAIL": EMAIL, "JIRA_API_TOKEN": "wrong-token"},
    )

    # a notification that fails does not stop the run (on_failure: continue), so the
    # exit status stays 0; the step says what failed and why
    assert "ticket: failed (Jira search for the open issue" in out
    assert "HTTP 401: authentication failed" in out
    assert "wrong-token" not in out + err
    assert jira_cloud.calls() == [f"jira:GET {jira_cloud.api('search/jql')}"]  # then it stopped
    assert jira_cloud.requests[0].headers["authorization"].startswith("Basic ")
    assert last_run_steps()["ticket"]["state"] == "failed"
    assert not jira_cloud.issues


# -- Slack -------------------------------------------------------------------------------


@pytest.fixture
def sink() -> Iterator[FakeSlack]:
    """The fake Slack Web API; any path outside /api/ is a webhook sink answering 200."""
    server = FakeSlack()
    yield server
    server.close()


def test_slack_from_environment_variables(tmp_path: Path, sink: FakeSlack) -> None:
    path = playbook(
        tmp_path,
        """
        - id: tell
          action: slack.post_message
          with: {channel: "#ir", text: "Key ${{ alert.actor.access_key_id }} is leaked"}
        """,
    )

    code, out, _ = irbook_run(
        path, {"SLACK_BOT_TOKEN": SLACK_TOKEN, "IRBOOK_SLACK_BASE_URL": sink.api_url}
    )

    assert code == 0, out
    # the post, then the run's verdict on the same card (the card is the run's thread)
    request, verdict = sink.requests
    assert (request.method, request.path) == ("POST", "/api/chat.postMessage")
    assert verdict.path == "/api/chat.update"
    assert verdict.data["text"].endswith(": succeeded")
    assert request.headers["authorization"] == f"Bearer {SLACK_TOKEN}"
    assert request.data["channel"] == "#ir"
    assert "AKIAIOSFODNN7EXAMPLE" in request.data["text"]
    steps = last_run_steps()
    assert steps["tell"]["outputs"]["channel"] == "CIR"
    assert real_calls(steps, "tell") == ["slack:chat.postMessage"]


# -- PagerDuty and webhooks --------------------------------------------------------------


def test_pagerduty_from_environment_variables(tmp_path: Path, sink: FakeSlack) -> None:
    sink.answer_next(
        202, {"status": "success", "message": "Event processed", "dedup_key": "pd-dedup-1"}
    )
    path = playbook(
        tmp_path,
        """
        - id: page
          action: pagerduty.trigger
          with: {summary: "Leaked key ${{ alert.actor.access_key_id }}", severity: critical}
        """,
    )

    code, out, _ = irbook_run(
        path,
        {
            "IRBOOK_PAGERDUTY_URL": f"{sink.url}/v2/enqueue",
            "IRBOOK_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        },
    )

    assert code == 0, out
    [request] = sink.requests
    assert (request.method, request.path) == ("POST", "/v2/enqueue")
    event = request.json
    assert event["routing_key"] == ROUTING_KEY
    assert event["event_action"] == "trigger"
    assert event["payload"]["summary"] == "Leaked key AKIAIOSFODNN7EXAMPLE"
    assert event["payload"]["severity"] == "critical"
    steps = last_run_steps()
    assert steps["page"]["outputs"]["dedup_key"] == "pd-dedup-1"
    assert real_calls(steps, "page") == ["pagerduty:POST /v2/enqueue"]
    assert ROUTING_KEY not in json.dumps(steps["page"]) + out  # a write credential


def test_outbound_webhook(tmp_path: Path, sink: FakeSlack) -> None:
    path = playbook(
        tmp_path,
        f"""
        - id: hook
          action: notify.webhook
          with:
            url: "{sink.url}/hooks/teams/secret-path"
            json: {{text: "Leaked key ${{{{ alert.actor.access_key_id }}}}"}}
            headers: {{Authorization: "Bearer hook-secret"}}
        """,
    )

    code, out, _ = irbook_run(path, {})

    assert code == 0, out
    [request] = sink.requests
    assert (request.method, request.path) == ("POST", "/hooks/teams/secret-path")
    assert request.headers["authorization"] == "Bearer hook-secret"
    assert "x-irbook-dry-run" not in request.headers
    assert request.json == {"text": "Leaked key AKIAIOSFODNN7EXAMPLE"}
    steps = last_run_steps()
    assert steps["hook"]["outputs"]["status_code"] == 200
    assert real_calls(steps, "hook") == ["webhook:POST /hooks/***"]
    assert "secret-path" not in out and "hook-secret" not in out


# -- AWS ---------------------------------------------------------------------------------


@pytest.fixture
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    # moto's state is per process, shared by every server in it: start from nothing
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))
    yield url
    server.stop()


def test_aws_from_environment_variables(tmp_path: Path, moto_url: str) -> None:
    import boto3

    iam = boto3.client(
        "iam",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    iam.create_user(UserName="ml-inference-svc")
    key_id = iam.create_access_key(UserName="ml-inference-svc")["AccessKey"]["AccessKeyId"]
    alert = json.loads(ALERT.read_text())
    alert["actor"]["access_key_id"] = key_id
    alert_file = tmp_path / "alert.json"
    alert_file.write_text(json.dumps(alert))
    path = playbook(
        tmp_path,
        """
        - id: revoke
          action: aws.iam.deactivate_access_key
          with:
            access_key_id: "${{ alert.actor.access_key_id }}"
            user_name: "${{ alert.actor.user_name }}"
        """,
    )

    code, out, _ = irbook_run(
        path,
        {
            "AWS_ENDPOINT_URL": moto_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
        },
        alert=alert_file,
    )

    assert code == 0, out
    [key] = iam.list_access_keys(UserName="ml-inference-svc")["AccessKeyMetadata"]
    assert (key["AccessKeyId"], key["Status"]) == (key_id, "Inactive")
    steps = last_run_steps()
    planned = [c["call"] for c in steps["revoke"]["planned_calls"]]
    assert "iam:UpdateAccessKey" in real_calls(steps, "revoke")
    assert real_calls(steps, "revoke") == planned


def test_a_step_in_another_region_assumes_the_playbooks_role_with_its_external_id(
    tmp_path: Path, moto_url: str
) -> None:
    """A step's `aws: {region}` under a playbook's `aws: {role_arn, external_id}` acts
    through that role, and asks for it WITH the external id: the role's trust policy
    requires it, and an AssumeRole without it is refused (Playbook.aws_for)."""
    import boto3
    from moto.sts.models import sts_backends

    account, external_id = "111122223333", "ir-ext-42"
    role_arn = f"arn:aws:iam::{account}:role/ir-responder"
    base = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    sts = boto3.client("sts", endpoint_url=moto_url, region_name="us-east-1", **base)
    seed = sts.assume_role(RoleArn=role_arn, RoleSessionName="seed")["Credentials"]
    iam = boto3.client(  # the role's account, where the leaked key is
        "iam",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id=seed["AccessKeyId"],
        aws_secret_access_key=seed["SecretAccessKey"],
        aws_session_token=seed["SessionToken"],
    )
    iam.create_user(UserName="ml-inference-svc")
    key_id = iam.create_access_key(UserName="ml-inference-svc")["AccessKey"]["AccessKeyId"]
    path = playbook(
        tmp_path,
        f"""
        - id: revoke
          action: aws.iam.deactivate_access_key
          aws: {{region: us-east-2}}
          with: {{access_key_id: {key_id}, user_name: ml-inference-svc}}
        """,
    )
    text = path.read_text().replace(
        "steps:\n", f'aws: {{role_arn: "{role_arn}", external_id: {external_id}}}\nsteps:\n', 1
    )
    path.write_text(text)

    code, out, _ = irbook_run(
        path,
        {
            "AWS_ENDPOINT_URL": moto_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
        },
    )

    assert code == 0, out
    [key] = iam.list_access_keys(UserName="ml-inference-svc")["AccessKeyMetadata"]
    assert key["Status"] == "Inactive"  # changed in the role's account
    # what moto's STS was asked: the run's AssumeRole (session "irbook") carried the id
    asked = [
        (r.role_arn, r.external_id)
        for r in sts_backends[account]["aws"].assumed_roles
        if r.session_name == "irbook"
    ]
    assert asked == [(role_arn, external_id)]
