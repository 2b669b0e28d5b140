"""README's "Scale out" commands are the ones that work (#16).

The commands and the receiver's configuration are read from the README between their
markers and run as written, by bash, against the machine's PostgreSQL: a Prefect server
on PostgreSQL, `irbook deploy`, a worker and two receivers, each a plain process. Only
the ports and the database names are replaced (free ports, fresh databases dropped
afterwards), and the home folders are the test's. Then an alert is posted to both
receivers and exactly one run of its playbook must appear, seen by a process that has
only the database URL.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.conftest import PG_SERVER
from tests.support.receiver import body_of, free_port

ROOT = Path(__file__).resolve().parents[4]


def readme_block(name: str, language: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(
        rf"<!-- scale-out:{re.escape(name)} -->\n```{language}\n(.*?)\n```\n<!-- /scale-out:",
        text,
        flags=re.S,
    )
    assert found, f"README.md has no scale-out:{name} block"
    return found.group(1)


def test_the_readme_names_every_process_once() -> None:
    commands = readme_block("commands", "sh")
    services = [line for line in commands.splitlines() if line.rstrip().endswith("&")]
    assert len(services) == 4  # the Prefect server, a worker, two receivers
    assert sum("irbook serve" in line for line in services) == 2
    assert "postgresql+asyncpg://" in commands and "IRBOOK_DATABASE_URL=postgresql://" in commands


def post(port: int, body: bytes) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/hooks/guardduty",
        data=body,
        headers={"Content-Type": "application/json", "X-Irbook-Token": "change-me"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        with exc:  # it holds the connection
            return int(exc.code)


def healthy(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
        return True
    except OSError:
        return False


def test_the_scale_out_commands_start_one_run_per_alert(tmp_path: Path) -> None:
    if not (ROOT / ".venv").is_dir() and Path(sys.executable).parent.name != "bin":
        pytest.skip("the README's commands use .venv/bin")
    suffix = uuid.uuid4().hex[:10]
    irbook_db, prefect_db = f"irbook_readme_{suffix}", f"prefect_readme_{suffix}"
    ports = {"4200": free_port(), "8081": free_port(), "8082": free_port()}
    server = PG_SERVER.removeprefix("postgresql://")  # user@host:port
    user, host_port = server.split("@", 1)
    host, port = host_port.rsplit(":", 1)

    script = readme_block("commands", "sh")
    script = script.replace(
        "-h 127.0.0.1 -U postgres irbook", f"-h {host} -p {port} -U {user} {irbook_db}"
    )
    script = script.replace(
        "-h 127.0.0.1 -U postgres prefect", f"-h {host} -p {port} -U {user} {prefect_db}"
    )
    script = script.replace("postgres@127.0.0.1:5432/irbook", f"{server}/{irbook_db}")
    script = script.replace("postgres@127.0.0.1:5432/prefect", f"{server}/{prefect_db}")
    for old, new in ports.items():
        script = script.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
        script = script.replace(f"--port {old}", f"--port {new}")
    assert irbook_db in script and prefect_db in script

    # The commands' own folder: the configuration, the shipped playbooks and the venv.
    work = tmp_path / "ops"
    work.mkdir()
    (work / "receiver.yaml").write_text(readme_block("receiver.yaml", "yaml") + "\n")
    (work / "playbooks").symlink_to(ROOT / "playbooks")
    (work / ".venv").symlink_to(Path(sys.executable).parent.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IRBOOK_", "PREFECT_"))}
    env.update(IRBOOK_HOME=str(tmp_path / "home"), PREFECT_HOME=str(tmp_path / "prefect"))
    log = open(tmp_path / "commands.log", "w")  # noqa: SIM115 - closed below
    shell = subprocess.Popen(
        ["bash", "-e", "-c", script],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # the services are its children: one group to stop
    )
    url = f"{PG_SERVER}/{irbook_db}"
    try:
        assert shell.wait(timeout=300) == 0, (tmp_path / "commands.log").read_text()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not all(healthy(ports[p]) for p in ("8081", "8082")):
            time.sleep(0.5)
        assert healthy(ports["8081"]) and healthy(ports["8082"]), (
            tmp_path / "commands.log"
        ).read_text()[-4000:]

        body = body_of("readme-scale-out")
        assert post(ports["8081"], body) == 202
        assert post(ports["8082"], body) == 202  # the same alert: attached, not a new run

        third = dict(env)
        third.update(IRBOOK_DATABASE_URL=url, IRBOOK_HOME=str(tmp_path / "third"))
        runs: list[dict[str, object]] = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            done = subprocess.run(
                [sys.executable, "-m", "irbook.cli.main", "runs", "--format", "json"],
                cwd=ROOT,
                env=third,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            runs = json.loads(done.stdout)
            if runs and all(run["state"] not in ("queued", "running") for run in runs):
                break
            time.sleep(1.0)
        assert len(runs) == 1, runs
        (run,) = runs
        assert run["playbook_id"] == "instance-credentials-exfiltrated"
        assert run["mode"] == "dry-run" and run["alert_id"] == "readme-scale-out"
        assert run["state"] not in ("queued", "running"), (tmp_path / "commands.log").read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.killpg(shell.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(shell.pid, signal.SIGKILL)
        log.close()
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
            for name in (irbook_db, prefect_db):
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert "Traceback" not in (tmp_path / "commands.log").read_text()
