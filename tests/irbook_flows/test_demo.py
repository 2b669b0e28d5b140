"""The README demo, followed literally: its shell blocks, run as written, in order.

`irbook sandbox` (fake AWS, Slack and Jira) in one process; the env file it writes
sourced and the worked example run live in another; `irbook approve` from a third.
Every step must succeed (exit 0), and what the run did is read back from the fake AWS
with boto3, from the fake Jira and Slack through the sandbox's own output.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_ENV = ("AWS_", "SLACK_", "JIRA_", "IRBOOK_SLACK_", "IRBOOK_JIRA_", "IRBOOK_SANDBOX")


def demo_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index("### Demo")
    end = min(i for i in (text.find("\n## ", start), text.find("\n### ", start + 1)) if i > 0)
    return re.findall(r"```sh\n(.*?)\n```", text[start:end], flags=re.S)


def clean_env() -> dict[str, str]:
    """The environment of a terminal that knows nothing of AWS, Slack or Jira."""
    return {k: v for k, v in os.environ.items() if not k.startswith(PRODUCT_ENV)}


def shell(command: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["bash", "-c", command],
        cwd=ROOT,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **kwargs,
    )


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    blocks = demo_blocks()
    assert blocks[0].strip() == ".venv/bin/irbook sandbox", blocks
    proc = shell(blocks[0])
    env_file = Path(os.environ["IRBOOK_HOME"]) / "sandbox" / "env.sh"
    deadline = time.monotonic() + 120
    while not env_file.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert env_file.exists(), proc.communicate(timeout=10) if proc.poll() is not None else ""
    exports = dict(
        line.removeprefix("export ").split("=", 1)
        for line in env_file.read_text().splitlines()
        if line.startswith("export ")
    )
    yield proc, exports
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as the README says
    proc.communicate(timeout=30)
    assert not env_file.exists()  # a stopped sandbox leaves no environment to source


def boto(service: str, exports: dict[str, str]) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=exports["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_the_readme_demo_runs_every_step_of_the_worked_example_green(
    sandbox: tuple[subprocess.Popen[str], dict[str, str]],
) -> None:
    sandbox_proc, exports = sandbox
    blocks = demo_blocks()
    alert = json.loads(Path(exports["IRBOOK_SANDBOX_ALERT"]).read_text())
    user = alert["actor"]["user_name"]
    key_id = alert["actor"]["access_key_id"]
    # what the GuardDuty normalizer makes of the finding: an access key without an ARN
    assert any(r["type"] == "AwsIamAccessKey" and not r["arn"] for r in alert["resources"])

    # a user's own boto3 check in the sandbox's environment finds its region
    check = subprocess.run(
        [
            "bash",
            "-c",
            f'. "$IRBOOK_HOME/sandbox/env.sh" && {ROOT}/.venv/bin/python -c '
            "\"import boto3; print(boto3.client('sagemaker').describe_endpoint("
            "EndpointName='fraud-scoring')['EndpointStatus'])\"",
        ],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stderr

    run = shell(blocks[1])
    from irbook.runs import RunStore

    store = RunStore()
    deadline = time.monotonic() + 120
    run_id = None
    while time.monotonic() < deadline and run_id is None and run.poll() is None:
        for row in store.recent_runs(3):
            if any(s["state"] == "awaiting-approval" for s in store.steps(row["id"])):
                run_id = row["id"]
        time.sleep(0.2)
    assert run_id is not None, run.communicate(timeout=10) if run.poll() is not None else ""
    iam = boto("iam", exports)
    keys = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
    assert {k["Status"] for k in keys} == {"Active"}  # nothing changed before the decision

    approve = shell(blocks[2].replace("RUN_ID", run_id))
    _, approve_err = approve.communicate(timeout=60)
    assert approve.returncode == 0, approve_err
    out, err = run.communicate(timeout=240)
    assert "Traceback" not in out + err
    steps = {s["step_id"]: s for s in store.steps(run_id)}
    assert {k: s["state"] for k, s in steps.items()} == {
        **{k: "succeeded" for k in ("ticket", "activity", "revoke", "snapshot", "tag-each")},
        "notify": "succeeded",
        "not-contained": "skipped",  # it speaks only when containment failed
    }, steps
    assert run.returncode == 0, out + err

    # the key is inactive, the model bucket the finding names is tagged
    keys = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
    assert next(k for k in keys if k["AccessKeyId"] == key_id)["Status"] == "Inactive"
    s3 = boto("s3", exports)
    tags = s3.get_bucket_tagging(Bucket="irbook-sandbox-models")["TagSet"]
    assert any(t["Key"] == "irbook-incident" for t in tags)
    manifest_uri = steps["snapshot"]["outputs"]["manifest_uri"]
    bucket, key_name = manifest_uri.removeprefix("s3://").split("/", 1)
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=key_name)["Body"].read())
    assert manifest["run"]["run_id"] == run_id
    # CloudTrail answered with the sandbox's seeded events of that key, labelled as such
    activity = steps["activity"]["outputs"]
    assert activity["events"] > 0 and activity["principal"] == key_id
    assert all("irbook-sandbox" in agent for agent in activity["user_agents"])
    assert "198.51.100.23" in activity["source_ips"]
    # the ticket and the Slack message reached the sandbox's Jira and Slack
    ticket = steps["ticket"]["outputs"]["key"]
    assert ticket == "SEC-1"
    planned = [c["call"] for c in steps["revoke"]["planned_calls"]]
    real = [c["call"] for c in steps["revoke"]["real_calls"]]
    assert planned == real, (planned, real)

    # the policy `irbook iam-policy` scopes to this alert allows every call the run made
    policy = subprocess.run(
        [
            "bash",
            "-c",
            f'. "$IRBOOK_HOME/sandbox/env.sh" && {ROOT}/.venv/bin/irbook iam-policy '
            'leaked-model-key --alert "$IRBOOK_SANDBOX_ALERT" --param endpoint_name=fraud-scoring '
            "--param evidence_bucket=irbook-sandbox-evidence",
        ],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert policy.returncode == 0, policy.stderr
    statements = json.loads(policy.stdout)["Statement"]
    calls = [
        c
        for s in steps.values()
        for c in s["real_calls"] or []  # a skipped step made none
        if not c["call"].startswith(("jira:", "slack:"))
    ]
    assert len(calls) > 10
    for call in calls:
        for action, resource in authorized(call, user):
            assert any(
                action in st["Action"]
                and any(
                    fnmatch.fnmatchcase(resource, pattern)
                    for pattern in (
                        [st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"]
                    )
                )
                for st in statements
            ), (action, resource, call)

    os.killpg(sandbox_proc.pid, signal.SIGINT)
    said, _ = sandbox_proc.communicate(timeout=30)
    assert f"[sandbox jira] {ticket} created" in said, said
    assert f"[sandbox slack] chat.postMessage #ir: Key {key_id} deactivated (ticket {ticket})" in (
        said
    ), said


S3_ACTIONS = {
    "HeadObject": "GetObject",
    "ListObjectsV2": "ListBucket",
    "GetObjectLockConfiguration": "GetBucketObjectLockConfiguration",
    "DeleteBucketTagging": "PutBucketTagging",
}


def authorized(call: dict[str, Any], user: str) -> list[tuple[str, str]]:
    """The IAM actions and resource ARNs AWS checks for one recorded call (the ones this
    playbook makes; a call no rule knows is checked against Resource "*")."""
    service, operation = call["call"].split(":", 1)
    params = call.get("params") or {}
    account, region = "123456789012", "us-east-1"
    if service == "iam":
        name = params.get("UserName", user)  # GetAccessKeyLastUsed: the key's owner
        return [(call["call"], f"arn:aws:iam::{account}:user/{name}")]
    if service == "s3":
        bucket = f"arn:aws:s3:::{params.get('Bucket')}"
        obj = f"{bucket}/{params['Key']}" if "Key" in params else bucket
        if operation == "CopyObject":
            source = params["CopySource"]
            source = source if isinstance(source, str) else f"{source['Bucket']}/{source['Key']}"
            return [("s3:GetObject", f"arn:aws:s3:::{source}"), ("s3:PutObject", obj)]
        action = S3_ACTIONS.get(operation, operation)
        bucket_level = "Bucket" in action or action in ("ListBucket", "CreateBucket")
        return [(f"s3:{action}", bucket if bucket_level else obj)]
    if service == "sagemaker":
        kinds = {"DescribeEndpoint": "endpoint", "DescribeEndpointConfig": "endpoint-config"}
        kind = kinds.get(operation, "model")
        name = next(iter(v for k, v in params.items() if k.endswith("Name")), "?")
        return [(call["call"], f"arn:aws:sagemaker:{region}:{account}:{kind}/{name}")]
    return [(call["call"], "*")]
