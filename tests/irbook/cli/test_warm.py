"""`irbook warm start|stop|status`, and `irbook run` through the warm runner, as a user
runs them: subprocesses of the `irbook` script, the session's real Prefect API, moto's
server for the live run. A run that went warm is told from a cold one by the process the
run record names (its `cli-process` event): the client's own pid when cold, the warm
runner's child when warm."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import signal
import stat
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
IRBOOK = str(Path(sys.executable).parent / "irbook")
WARM_LOG_HINT = "not run warm"


def irbook(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [IRBOOK, *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [IRBOOK, *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def playbook(tmp_path: Path, steps: str, name: str = "pb.yaml") -> Path:
    path = tmp_path / name
    path.write_text(
        "apiVersion: irbook/v1\nkind: Playbook\n"
        "metadata: {id: warm-test, title: Warm runner test}\n"
        "steps:\n" + textwrap.indent(textwrap.dedent(steps), "  ")
    )
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop_warm(home: Path) -> None:
    """Stop the warm runner of `home`, through the CLI, and for sure."""
    irbook("warm", "stop", env={"IRBOOK_HOME": str(home)})
    state = home / "warm" / "warm.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        pid = int(json.loads(state.read_text())["pid"])
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def api(prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    monkeypatch.delenv("IRBOOK_WARM", raising=False)
    return prefect_api


@pytest.fixture
def warm(api: str, _irbook_home: Path) -> Iterator[Path]:
    """A warm runner for this test's IRBOOK_HOME, stopped after it."""
    done = irbook("warm", "start")
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith("warm runner started (pid "), done.stdout
        yield _irbook_home
    finally:
        _stop_warm(_irbook_home)


def run_pid(run_id: str) -> int:
    """The pid of the process that ran `run_id`, as its record says."""
    from irbook.runs import RunStore

    events = [e for e in RunStore().events(run_id) if e["kind"] == "cli-process"]
    assert events, run_id
    return int(events[-1]["detail"]["pid"])


def run_id_of(out: str) -> str:
    found = re.search(r"run ([0-9a-f]{12}) of", out)
    assert found, out
    return found.group(1)


def normalized(out: str) -> str:
    out = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "UUID", out)
    out = re.sub(r"\b[0-9a-f]{12}\b", "RUN", out)
    return re.sub(r"\d+\.\ds", "T", out)


def wait_for(run_state: str, step: str, timeout: float = 90) -> str:
    """The id of the newest run once `step` is in `step_state`."""
    from irbook.runs import RunStore

    store = RunStore()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for row in store.recent_runs(3):
            states = {s["step_id"]: s["state"] for s in store.steps(row["id"])}
            if states.get(step) == run_state:
                return str(row["id"])
        time.sleep(0.1)
    raise AssertionError(f"no run with step {step} {run_state} within {timeout} s")


def test_status_start_stop(api: str, _irbook_home: Path) -> None:
    done = irbook("warm", "status")
    assert (done.returncode, done.stdout) == (1, "warm runner: not running\n"), done.stderr
    try:
        started = irbook("warm", "start")
        assert started.returncode == 0, started.stdout + started.stderr
        again = irbook("warm", "start")  # one runner, however many starts
        assert again.returncode == 0
        assert again.stdout.startswith("warm runner already running (pid "), again.stdout
        status = irbook("warm", "status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.startswith("warm runner: running (pid "), status.stdout
        assert status.stdout.count("\n") == 1
        assert f"Prefect API {api})" in status.stdout
        sock = _irbook_home / "warm" / "run.sock"  # this user's only
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        pid = int(json.loads((_irbook_home / "warm" / "warm.json").read_text())["pid"])
        stopped = irbook("warm", "stop")
        assert stopped.returncode == 0
        assert stopped.stdout == f"stopped the warm runner (pid {pid})\n"
        assert not sock.exists()
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid)
        done = irbook("warm", "status")
        assert (done.returncode, done.stdout) == (1, "warm runner: not running\n")
    finally:
        _stop_warm(_irbook_home)


def test_dry_run_warm_is_the_cold_run(warm: Path, tmp_path: Path) -> None:
    path = playbook(tmp_path, "- {id: hello, action: core.note, with: {text: hi}}\n")
    cold = irbook("run", str(path), "--dry-run", "--plain", env={"IRBOOK_WARM": "0"})
    hot = irbook("run", str(path), "--dry-run", "--plain", env={"IRBOOK_WARM": "1"})
    assert cold.returncode == hot.returncode == 0, cold.stderr + hot.stderr
    assert WARM_LOG_HINT not in hot.stderr
    assert normalized(hot.stdout) == normalized(cold.stdout)
    assert hot.stderr == cold.stderr
    cold_id, hot_id = run_id_of(cold.stdout), run_id_of(hot.stdout)
    assert cold_id != hot_id
    shown = json.loads(irbook("runs", "show", hot_id, "--format", "json").stdout)
    assert shown["run"]["state"] == "succeeded"
    assert shown["run"]["mode"] == "dry-run"
    assert [s["step_id"] for s in shown["steps"]] == ["hello"]


def test_a_failing_runs_status_comes_through(warm: Path, tmp_path: Path) -> None:
    path = playbook(tmp_path, '- {id: boom, action: core.fail, with: {message: "stop here"}}\n')
    cold = irbook("run", str(path), "--yes", "--plain", "--quiet", env={"IRBOOK_WARM": "0"})
    hot = irbook("run", str(path), "--yes", "--plain", "--quiet", env={"IRBOOK_WARM": "1"})
    assert cold.returncode != 0
    assert hot.returncode == cold.returncode, hot.stdout + hot.stderr
    assert WARM_LOG_HINT not in hot.stderr
    assert normalized(hot.stdout) == normalized(cold.stdout)
    # a user error (bad argument) is the same one line too
    cold = irbook("run", str(tmp_path / "missing.yaml"), env={"IRBOOK_WARM": "0"})
    hot = irbook("run", str(tmp_path / "missing.yaml"), env={"IRBOOK_WARM": "1"})
    assert (hot.returncode, hot.stdout, hot.stderr) == (cold.returncode, cold.stdout, cold.stderr)
    assert hot.returncode == 1


def test_runs_warm_in_the_warm_runner_and_cold_when_told(warm: Path, tmp_path: Path) -> None:
    path = playbook(tmp_path, "- {id: hello, action: core.note, with: {text: hi}}\n")
    proc = start("run", str(path), "--dry-run", "--plain", "--quiet")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, out + err
    assert run_pid(run_id_of(out)) != proc.pid  # the warm runner's child ran it
    # IRBOOK_WARM=0: cold, and not a word about it
    proc = start("run", str(path), "--dry-run", "--plain", "--quiet", env={"IRBOOK_WARM": "0"})
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, out + err
    assert run_pid(run_id_of(out)) == proc.pid
    assert WARM_LOG_HINT not in err


def test_another_prefect_setting_runs_cold(warm: Path, tmp_path: Path) -> None:
    """Prefect pinned its settings when the warm runner imported it: a run with other
    PREFECT_* values must not use them, so it runs cold (and says why, when asked)."""
    path = playbook(tmp_path, "- {id: hello, action: core.note, with: {text: hi}}\n")
    for env in ({"PREFECT_LOGGING_LEVEL": "ERROR"}, {"PREFECT_CLIENT_MAX_RETRIES": "2"}):
        proc = start("run", str(path), "--dry-run", "--plain", "--quiet", env=env)
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, out + err
        assert run_pid(run_id_of(out)) == proc.pid
        assert WARM_LOG_HINT not in err  # silent unless IRBOOK_WARM=1
    told = irbook(
        "run",
        str(path),
        "--dry-run",
        "--plain",
        "--quiet",
        env={"PREFECT_LOGGING_LEVEL": "ERROR", "IRBOOK_WARM": "1"},
    )
    assert told.returncode == 0
    assert (
        "irbook: not run warm: another PREFECT_LOGGING_LEVEL than the warm runner's;"
        " running cold" in told.stderr
    )


def test_stopped_warm_runner_means_cold_runs(warm: Path, tmp_path: Path) -> None:
    path = playbook(tmp_path, "- {id: hello, action: core.note, with: {text: hi}}\n")
    assert irbook("warm", "stop").returncode == 0
    proc = start("run", str(path), "--dry-run", "--plain", "--quiet", env={"IRBOOK_WARM": "1"})
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, out + err
    assert run_pid(run_id_of(out)) == proc.pid
    assert err.count("not run warm: no warm runner (irbook warm start)") == 1


@pytest.mark.parametrize(
    ("signum", "code", "how", "message"),
    [
        (signal.SIGINT, 130, "Ctrl-C", "cancelled with Ctrl-C"),
        (signal.SIGTERM, 143, "SIGTERM", "cancelled by SIGTERM"),
    ],
)
def test_a_signal_to_the_client_cancels_the_warm_run(
    warm: Path, tmp_path: Path, signum: int, code: int, how: str, message: str
) -> None:
    path = playbook(tmp_path, "- {id: wait, action: core.sleep, with: {duration: 60s}}\n")
    proc = start("run", str(path), "--plain", "--quiet", env={"IRBOOK_WARM": "1"})
    try:
        run_id = wait_for("running", "wait")
        time.sleep(0.5)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code, out + err
    assert "Traceback" not in out + err
    assert f"cancelled ({how}): run {run_id} is marked cancelled" in out
    assert run_pid(run_id) != proc.pid  # it was the warm runner's child
    from irbook.runs import RunStore

    store = RunStore()
    record = store.run(run_id)
    assert record is not None
    assert (record["state"], record["message"]) == ("cancelled", message)
    assert {s["step_id"]: s["state"] for s in store.steps(run_id)}["wait"] == "cancelled"


def test_a_live_run_uses_the_callers_credentials(
    api: str, _irbook_home: Path, tmp_path: Path
) -> None:
    """The warm runner was started with no AWS settings at all; the run makes its real
    calls with the caller's (moto's server, its endpoint, region and keys)."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    aws = {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    bare = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    try:
        urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))
        iam = boto3.client("iam", **_boto(aws))
        iam.create_user(UserName="ml-svc")
        key = iam.create_access_key(UserName="ml-svc")["AccessKey"]["AccessKeyId"]
        started = subprocess.run(
            [IRBOOK, "warm", "start"], cwd=ROOT, env=bare, capture_output=True, text=True
        )
        assert started.returncode == 0, started.stdout + started.stderr
        path = playbook(
            tmp_path,
            "- id: revoke\n  action: aws.iam.deactivate_access_key\n"
            f"  with: {{access_key_id: {key}, user_name: ml-svc}}\n",
        )
        proc = subprocess.Popen(
            [IRBOOK, "run", str(path), "--yes", "--plain", "--quiet"],
            cwd=ROOT,
            env={**bare, **aws, "IRBOOK_WARM": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, out + err
        assert WARM_LOG_HINT not in err
        run_id = run_id_of(out)
        assert run_pid(run_id) != proc.pid
        keys = iam.list_access_keys(UserName="ml-svc")["AccessKeyMetadata"]
        assert [(k["AccessKeyId"], k["Status"]) for k in keys] == [(key, "Inactive")]
        shown = json.loads(irbook("runs", "show", run_id, "--format", "json").stdout)
        calls = [c["call"] for s in shown["steps"] for c in s["real_calls"] or []]
        assert "iam:UpdateAccessKey" in calls
    finally:
        _stop_warm(_irbook_home)
        server.stop()


def _boto(aws: dict[str, str]) -> dict[str, Any]:
    return {
        "endpoint_url": aws["AWS_ENDPOINT_URL"],
        "region_name": aws["AWS_DEFAULT_REGION"],
        "aws_access_key_id": aws["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": aws["AWS_SECRET_ACCESS_KEY"],
    }


def test_server_stop_stops_the_warm_runner_too(
    _irbook_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without PREFECT_API_URL the warm runner starts irbook's local server and is pinned
    to its URL: `irbook server stop` stops both."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_HOME", raising=False)
    server_state = _irbook_home / "prefect" / "server.json"
    try:
        started = irbook("warm", "start")
        assert started.returncode == 0, started.stdout + started.stderr
        warm_pid = int(json.loads((_irbook_home / "warm" / "warm.json").read_text())["pid"])
        done = irbook("server", "stop")
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines[0] == f"stopped the warm runner (pid {warm_pid})"
        assert lines[1].startswith("stopped the local Prefect server at ")
        assert irbook("warm", "status").returncode == 1
    finally:
        _stop_warm(_irbook_home)
        with contextlib.suppress(OSError, ValueError, KeyError, UnboundLocalError):
            pid = int(json.loads(server_state.read_text())["pid"])
            os.killpg(pid, signal.SIGKILL)


GATED = """\
- {id: hello, action: core.note, with: {text: hi}}
- id: gate
  action: core.note
  needs: [hello]
  approval: {required: true, timeout: 5m, on_timeout: reject}
  with: {text: approved}
"""


def test_a_terminal_prompt_answered_in_the_warm_runner(warm: Path, tmp_path: Path) -> None:
    """The warm runner's child has the caller's terminal: the live step table, and the
    approval prompt that reads the answer from it."""
    path = playbook(tmp_path, GATED)
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [IRBOOK, "run", str(path), "--dry-run", "--ask-approvals", "--quiet"],
        cwd=ROOT,
        env={**os.environ, "IRBOOK_WARM": "1"},
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
    )
    os.close(terminal)
    seen = b""
    answered = False
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(controller, 4096)
            except OSError:  # the terminal's last writer is gone
                break
            if not data:
                break
            seen += data
            if not answered and b"Approve? [y/N]" in seen:
                os.write(controller, b"y\n")
                answered = True
        assert proc.wait(timeout=60) == 0, seen.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(controller)
    text = seen.decode(errors="replace")
    assert answered, text
    assert "not run warm" not in text
    run_id = run_id_of(text)
    assert run_pid(run_id) != proc.pid
    assert "\x1b[" in text  # the live table: the child saw a terminal
    from irbook.runs import RunStore

    store = RunStore()
    record = store.run(run_id)
    assert record is not None and record["state"] == "succeeded"
    gate = {s["step_id"]: s for s in store.steps(run_id)}["gate"]
    assert gate["state"] == "succeeded"


def test_irbook_cancel_ends_a_warm_run(warm: Path, tmp_path: Path) -> None:
    """`irbook cancel` signals the process the record names: the warm runner's child;
    its client ends with the run's status."""
    path = playbook(tmp_path, "- {id: wait, action: core.sleep, with: {duration: 60s}}\n")
    proc = start("run", str(path), "--plain", "--quiet", env={"IRBOOK_WARM": "1"})
    try:
        run_id = wait_for("running", "wait")
        time.sleep(0.5)
        done = irbook("cancel", run_id, "--by", "alice")
        assert done.returncode == 0, done.stdout + done.stderr
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, out + err
    from irbook.runs import RunStore

    record = RunStore().run(run_id)
    assert record is not None
    assert (record["state"], record["message"]) == ("cancelled", "cancelled by alice")


PEER = """\
import ctypes, os, socket, sys
from irbook.warm import receive, send

if sys.argv[2] == "other":
    os.seteuid(65534)  # another user to the socket's peer check (SO_PEERCRED: the euid)
    ctypes.CDLL(None, use_errno=True).setfsuid(0)  # still root to the file system
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
    sock.settimeout(30)
    sock.connect(sys.argv[1])
    try:  # refused: closed before or after the request went out (EPIPE or EOF)
        send(sock, {"op": "ping"})
        said, _ = receive(sock)
    except ConnectionError:
        print("refused")
    else:
        print("answered", said["pid"])
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another user")
def test_another_users_process_is_not_answered(warm: Path) -> None:
    """The socket is 0600 in a 0700 folder; a process of another uid that reaches it all
    the same (here: root's file access, another effective uid) gets no answer."""
    sock = str(warm / "warm" / "run.sock")
    for who, expected in (("same", "answered"), ("other", "refused")):
        done = subprocess.run(
            [sys.executable, "-c", PEER, sock, who],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split()[0] == expected, (who, done.stdout, done.stderr)


def test_a_killed_client_cancels_its_warm_run(warm: Path, tmp_path: Path) -> None:
    """Nobody is left to show the run or to press Ctrl-C: the warm runner ends it with
    SIGTERM, recorded as cancelled, rather than let it run on unseen."""
    path = playbook(tmp_path, "- {id: wait, action: core.sleep, with: {duration: 60s}}\n")
    proc = start("run", str(path), "--plain", "--quiet", env={"IRBOOK_WARM": "1"})
    try:
        run_id = wait_for("running", "wait")
        proc.kill()
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    from irbook.runs import RunStore

    store = RunStore()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (store.run(run_id) or {}).get("state") == "running":
        time.sleep(0.2)
    record = store.run(run_id)
    assert record is not None
    assert (record["state"], record["message"]) == ("cancelled", "cancelled by SIGTERM")


def test_a_lost_warm_runner_never_starts_the_run_twice(warm: Path, tmp_path: Path) -> None:
    """The warm runner's supervisor of a run dies after the hand-over: the client waits
    for the run's process, says it lost the status, exits 2, and does not run it cold."""
    # long enough that a loaded machine kills the supervisor while the step still runs
    path = playbook(tmp_path, "- {id: wait, action: core.sleep, with: {duration: 10s}}\n")
    proc = start("run", str(path), "--plain", "--quiet", env={"IRBOOK_WARM": "1"})
    try:
        run_id = wait_for("running", "wait")
        child = run_pid(run_id)
        supervisor = int(Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[1])
        os.kill(supervisor, signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 2, out + err
    assert "the warm runner went away before the run's status came back" in err
    from irbook.runs import RunStore

    store = RunStore()
    assert [r["id"] for r in store.recent_runs(5)] == [run_id]
    record = store.run(run_id)
    assert record is not None and record["state"] == "succeeded"


FAKE_RUNNER = """\
import os, socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
os.seteuid(65534)  # listens as another user: what SO_PEERCRED tells a client
sock.listen(1)
print("listening", flush=True)
sock.settimeout(120)
conn, _ = sock.accept()
conn.settimeout(60)
got = b""
while True:
    data = conn.recv(65536)
    if not data:
        break
    got += data
print(len(got), flush=True)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to listen as another user")
def test_a_socket_of_another_user_gets_no_environment(
    api: str, _irbook_home: Path, tmp_path: Path
) -> None:
    """$IRBOOK_HOME/warm/run.sock answered by another user's process (a home others can
    write): the client sends it nothing, not its environment (AWS keys), and runs cold."""
    sock = _irbook_home / "warm" / "run.sock"
    sock.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    fake = subprocess.Popen(
        [sys.executable, "-c", FAKE_RUNNER, str(sock)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert fake.stdout is not None
        assert fake.stdout.readline() == "listening\n", fake.stderr
        path = playbook(tmp_path, "- {id: hello, action: core.note, with: {text: hi}}\n")
        proc = start(
            "run",
            str(path),
            "--dry-run",
            "--plain",
            "--quiet",
            env={"IRBOOK_WARM": "1", "AWS_SECRET_ACCESS_KEY": "not-for-others"},
        )
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, out + err
        assert "belongs to a process of another user (uid 65534)" in err
        assert run_pid(run_id_of(out)) == proc.pid  # cold
        said, _ = fake.communicate(timeout=60)
        assert said.strip() == "0"  # not a byte
    finally:
        if fake.poll() is None:
            fake.kill()
            fake.communicate()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as another group")
def test_a_caller_of_another_group_runs_cold(warm: Path, tmp_path: Path) -> None:
    """The run's child would act with the warm runner's groups: a caller of the same user
    with another group (sg, newgrp) runs cold, with its own."""
    path = playbook(tmp_path, "- {id: hello, action: core.note, with: {text: hi}}\n")
    for how in ({"group": 65534}, {"extra_groups": [65534]}):
        proc = subprocess.Popen(
            [IRBOOK, "run", str(path), "--dry-run", "--plain", "--quiet"],
            cwd=ROOT,
            env={**os.environ, "IRBOOK_WARM": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **how,  # type: ignore[call-overload]
        )
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, out + err
        assert "group" in err and WARM_LOG_HINT in err, (how, err)
        assert run_pid(run_id_of(out)) == proc.pid, how  # cold


def test_a_warm_run_killed_with_sigkill_kills_its_client_alike(warm: Path, tmp_path: Path) -> None:
    """The run's process killed with SIGKILL (the OOM killer, kill -9): the client ends
    killed by SIGKILL as a cold run's process would be, without a traceback."""
    path = playbook(tmp_path, "- {id: wait, action: core.sleep, with: {duration: 60s}}\n")
    proc = start("run", str(path), "--plain", "--quiet", env={"IRBOOK_WARM": "1"})
    try:
        run_id = wait_for("running", "wait")
        child = run_pid(run_id)
        assert child != proc.pid
        os.kill(child, signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL, out + err
    assert "Traceback" not in err, err


def _fds(pid: int) -> dict[int, str]:
    fds = {}
    for entry in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            fds[int(entry.name)] = os.readlink(entry)
    return fds


def test_the_run_gets_no_descriptor_of_the_warm_runner(warm: Path, tmp_path: Path) -> None:
    """Beyond 0, 1 and 2 (the caller's), the run's process holds nothing the warm runner
    had open: not its listening socket, its log, its lock."""
    path = playbook(tmp_path, "- {id: wait, action: core.sleep, with: {duration: 60s}}\n")
    proc = start("run", str(path), "--plain", "--quiet", env={"IRBOOK_WARM": "1"})
    try:
        run_id = wait_for("running", "wait")
        child = run_pid(run_id)
        runner = int(json.loads((warm / "warm" / "warm.json").read_text())["pid"])
        theirs = {n: t for n, t in _fds(runner).items() if n > 2}
        mine = _fds(child)
        client = _fds(proc.pid)
    finally:
        proc.kill()
        proc.communicate()
    assert [mine[n] for n in (0, 1, 2)] == [client[n] for n in (0, 1, 2)]
    shared = set(theirs.values()) & {t for n, t in mine.items() if n > 2}
    assert not shared, (shared, mine)
    assert not [t for t in mine.values() if str(warm / "warm") in t], mine


def test_a_stale_warm_runner_runs_nothing(warm: Path, tmp_path: Path) -> None:
    """What the warm runner imported is what a cold run would import, or the run goes
    cold: irbook's code changed (a loaded module's file), installed packages changed (a
    folder on the import path), Prefect's settings file where the run starts."""
    path = playbook(tmp_path, "- {id: hello, action: core.note, with: {text: hi}}\n")
    site = next(Path(p) for p in sys.path if p.endswith("site-packages"))
    code = ROOT / "src" / "irbook" / "cli" / "main.py"
    for changed, why in (
        (code, "irbook's code changed since the warm runner started"),
        (site, "installed packages changed since the warm runner started"),
    ):
        before = changed.stat()
        os.utime(changed, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
        try:
            proc = start(
                "run", str(path), "--dry-run", "--plain", "--quiet", env={"IRBOOK_WARM": "1"}
            )
            out, err = proc.communicate(timeout=180)
        finally:
            os.utime(changed, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert proc.returncode == 0, out + err
        assert f"not run warm: {why}" in err, err
        assert run_pid(run_id_of(out)) == proc.pid  # cold
    here = tmp_path / "elsewhere"
    here.mkdir()
    (here / "prefect.toml").write_text('[logging]\nlevel = "ERROR"\n')
    proc = subprocess.Popen(
        [IRBOOK, "run", str(path), "--dry-run", "--plain", "--quiet"],
        cwd=here,
        env={**os.environ, "IRBOOK_WARM": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, out + err
    assert "not run warm: Prefect's settings files" in err, err
    # and once all is as it was, warm again
    proc = start("run", str(path), "--dry-run", "--plain", "--quiet", env={"IRBOOK_WARM": "1"})
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, out + err
    assert WARM_LOG_HINT not in err
    assert run_pid(run_id_of(out)) != proc.pid


def test_two_runs_at_once_through_one_warm_runner(warm: Path, tmp_path: Path) -> None:
    """Each run has its own child: two at once both run warm, to their own end."""
    path = playbook(tmp_path, "- {id: wait, action: core.sleep, with: {duration: 2s}}\n")
    procs = [
        start("run", str(path), "--yes", "--plain", "--quiet", env={"IRBOOK_WARM": "1"})
        for _ in range(2)
    ]
    try:
        done = [p.communicate(timeout=180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert [p.returncode for p in procs] == [0, 0], done
    runs = [run_id_of(out) for out, _err in done]
    assert len(set(runs)) == 2
    children = {run_pid(r) for r in runs}
    assert len(children) == 2 and not children & {p.pid for p in procs}
    from irbook.runs import RunStore

    store = RunStore()
    assert [(store.run(r) or {}).get("state") for r in runs] == ["succeeded", "succeeded"]


def test_a_link_in_place_of_the_warm_folder_is_refused(
    api: str, _irbook_home: Path, tmp_path: Path
) -> None:
    """$IRBOOK_HOME/warm made a link (by whoever can write $IRBOOK_HOME): `irbook warm
    start` says so in one line and changes nothing where it points."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    elsewhere.chmod(0o755)
    _irbook_home.mkdir(parents=True, exist_ok=True)
    (_irbook_home / "warm").symlink_to(elsewhere)
    try:
        done = irbook("warm", "start")
        assert done.returncode == 1, done.stdout + done.stderr
        why = "is not a folder of this user's (a link, or another's)"
        assert done.stderr == f"irbook: error: {_irbook_home / 'warm'} {why}\n"
        assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o755
        assert list(elsewhere.iterdir()) == []
    finally:
        _stop_warm(_irbook_home)
