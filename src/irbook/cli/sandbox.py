"""`irbook sandbox`: a local fake AWS (moto's server), Slack and Jira, seeded with a small
AI deployment and a GuardDuty finding about its leaked key.

It prints the environment that points irbook at it (and writes it to
$IRBOOK_HOME/sandbox/env.sh, removed when the sandbox stops), so that the worked example
can be run live against it for a demo or a rehearsal, and stops with Ctrl-C. Nothing here
can reach a real AWS account, Slack or Jira: everything answers on loopback with fixed
fake credentials.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import shlex
import sys
import time

from irbook.cache import home
from irbook.errors import IrbookError
from irbook.triggers.normalizers import guardduty
from irbook_actions import sandbox_fakes as fakes
from irbook_actions.aws import sandbox


def _say(line: str) -> None:
    """What the fake Slack and Jira received, on the terminal: text from alerts, so no
    control characters (a crafted title could otherwise drive the terminal)."""
    print("".join(c if c.isprintable() else " " for c in line), flush=True)


def cmd_sandbox(args: argparse.Namespace) -> int:
    try:
        import moto.moto_server.werkzeug_app  # noqa: F401 - only to check it is there
    except ImportError:
        raise IrbookError(
            "the sandbox needs moto's server: pip install 'irbook[sandbox]'"
        ) from None

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log on the terminal
    server = fakes.SandboxServer(port=args.port, log=_say)
    try:
        url = server.start()
    except OSError as exc:
        raise IrbookError(f"the sandbox cannot listen on port {args.port}: {exc}") from None
    folder = home() / "sandbox"
    env_file = folder / "env.sh"
    try:
        created = sandbox.seed(url, region=args.region)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        server.app.events.extend(sandbox.cloudtrail_events(created, now.timestamp()))
        finding = sandbox.guardduty_finding(created, now.isoformat().replace("+00:00", "Z"))
        (alert,) = guardduty.normalize(finding)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "guardduty-finding.json").write_text(json.dumps(finding, indent=2) + "\n")
        alert_file = folder / "alert.json"
        alert_file.write_text(
            json.dumps(alert.model_dump(mode="json", exclude={"raw"}), indent=2) + "\n"
        )
        env = {
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": sandbox.FAKE_KEY,
            "AWS_SECRET_ACCESS_KEY": sandbox.FAKE_KEY,
            "AWS_REGION": args.region,
            "AWS_DEFAULT_REGION": args.region,  # what boto3 itself reads
            "SLACK_BOT_TOKEN": fakes.SLACK_TOKEN,
            "IRBOOK_SLACK_BASE_URL": url + fakes.SLACK_PREFIX,
            "JIRA_URL": url + fakes.JIRA_PREFIX,
            "JIRA_EMAIL": fakes.JIRA_EMAIL,
            "JIRA_API_TOKEN": fakes.JIRA_API_TOKEN,
            "IRBOOK_JIRA_FLAVOR": "cloud",
            "IRBOOK_SANDBOX_ALERT": str(alert_file),
        }
        lines = [f"export {key}={shlex.quote(value)}" for key, value in env.items()]
        header = "# irbook sandbox: a fake AWS, Slack and Jira on this machine; not real ones"
        env_file.write_text("\n".join([header, *lines]) + "\n")
        print("# irbook sandbox: a fake AWS, Slack and Jira are running; point irbook at them")
        print(f"# with these lines (also in {env_file}, until the sandbox stops):")
        for line in lines:
            print(line)
        print("# what the sandbox holds:")
        for key, value in created.items():
            print(f"#   {key} = {value}")
        print(f"#   cloudtrail events = {len(server.app.events)} (the sandbox's own, seeded)")
        print(
            f"#   guardduty finding = {folder / 'guardduty-finding.json'} (as EventBridge posts it)"
        )
        print(f"#   its alert         = {alert_file} (irbook run --alert)")
        if args.once:
            return 0
        print("# Ctrl-C stops it", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("sandbox stopped", file=sys.stderr)
        return 0
    finally:
        with contextlib.suppress(OSError):
            env_file.unlink()
        server.stop()
