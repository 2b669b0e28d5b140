"""The Prefect API irbook talks to: the user's, or a local server irbook starts once.

A flow run in Prefect's ephemeral mode starts a temporary API server in every process
(measured here: 5-8 s). irbook instead starts `prefect server start` on loopback the
first time it needs one, with its state under $IRBOOK_HOME/prefect, and reuses it from
then on. PREFECT_API_URL set by the user always wins.

Call `ensure_api()` before importing prefect: Prefect reads its settings at import.
It keeps running after the command that started it, so that the next command finds it;
`irbook server stop` stops it (`stop_server`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from irbook.cache import home
from irbook.errors import IrbookError
from irbook.warm import alive

START_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0


def prefect_home() -> Path:
    return home() / "prefect"


def _healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:  # noqa: S310
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _configure(url: str) -> None:
    os.environ["PREFECT_API_URL"] = url
    os.environ.setdefault("PREFECT_HOME", str(prefect_home()))
    # Runs started from a terminal print irbook's own step table, not Prefect's logs.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def ensure_api() -> str:
    """The API URL to use, starting the local server if needed. Idempotent."""
    user = os.environ.get("PREFECT_API_URL")
    if user:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        return user
    base = prefect_home()
    base.mkdir(parents=True, exist_ok=True)
    state_file = base / "server.json"
    with open(base / "server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two commands at once start one server
        try:
            state = json.loads(state_file.read_text())
            url = str(state["url"])
        except (OSError, ValueError, KeyError):
            url = ""
        if url and _healthy(url):
            _configure(url)
            return url
        port = _free_port()
        url = f"http://127.0.0.1:{port}/api"
        env = {
            **os.environ,
            "PREFECT_HOME": str(base),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": os.environ.get("PREFECT_UI_ENABLED", "true"),
        }
        env.pop("PREFECT_API_URL", None)
        prefect_cli = Path(sys.executable).with_name("prefect")
        command = [str(prefect_cli)] if prefect_cli.exists() else [sys.executable, "-m", "prefect"]
        argv = [*command, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
        # posix_spawn with setsid: the server outlives this command and ignores its Ctrl-C,
        # and no Popen object is left to complain that its child still runs.
        pid = os.posix_spawn(
            argv[0],
            argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (
                    os.POSIX_SPAWN_OPEN,
                    1,
                    str(base / "server.log"),
                    os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                    0o600,
                ),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setsid=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            done, _status = os.waitpid(pid, os.WNOHANG)
            if done:
                raise IrbookError(
                    f"the local Prefect server exited at start (see {base / 'server.log'})"
                )
            if _healthy(url, timeout=1.0):
                state_file.write_text(json.dumps({"url": url, "pid": pid}))
                _configure(url)
                return url
            time.sleep(0.3)
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGTERM)
        raise IrbookError(
            f"the local Prefect server did not answer within {START_TIMEOUT:.0f} s "
            f"(see {base / 'server.log'}); or set PREFECT_API_URL"
        )


# Prefect's flow-run heartbeat setting, and the name it had before Prefect 3.2.
HEARTBEAT_VARIABLES = ("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "PREFECT_RUNNER_HEARTBEAT_FREQUENCY")


@contextlib.contextmanager
def leased_run_settings(leased: bool) -> Iterator[None]:
    """Prefect settings for a flow run that this process executes and holds a lease on.

    Prefect's flow-run heartbeat (an event every 180 s by default, for a Prefect
    automation that marks a silent flow run crashed) is turned off for such a run,
    unless the user sets PREFECT_FLOWS_HEARTBEAT_FREQUENCY (or the older
    PREFECT_RUNNER_HEARTBEAT_FREQUENCY), which always wins. irbook does not rely on it:
    the process's lease (irbook.leases) says the run is alive and the reaper settles a
    run whose process died. And it costs every run up to a second at its end: Prefect
    joins the heartbeat thread, which sleeps in 1 s steps (0.5 s on average, measured
    with bench/live_containment.py). Without a lease nothing changes.
    """
    if not leased or any(os.environ.get(name) for name in HEARTBEAT_VARIABLES):
        yield
        return
    from prefect.context import SettingsContext, get_settings_context

    # A copy of the settings in force with one field changed: prefect's
    # temporary_settings would read every settings source again (25-90 ms here).
    context = get_settings_context()
    flows = context.settings.flows.model_copy(update={"heartbeat_frequency": None})
    settings = context.settings.model_copy(update={"flows": flows})
    with SettingsContext(profile=context.profile, settings=settings):
        yield


def ui_url() -> str | None:
    """The Prefect UI address for the API in use, when there is a UI."""
    api = os.environ.get("PREFECT_API_URL", "")
    if api.endswith("/api"):
        return api[: -len("/api")]
    return None


def _is_prefect_server(pid: int) -> bool:
    """Whether `pid` still is the server irbook started, not a process that reused its
    pid after a reboot; without /proc, whether it answers is all there is to go on."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True
    return b"prefect" in b" ".join(argv) and b"server" in argv


def stop_server() -> str:
    """Stop the local Prefect server irbook started; one line saying what happened."""
    base = prefect_home()
    state_file = base / "server.json"
    if not state_file.exists():
        return f"no local Prefect server was started by irbook (no {state_file})"
    base.mkdir(parents=True, exist_ok=True)
    with open(base / "server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # not while another command starts it
        try:
            state = json.loads(state_file.read_text())
            pid, url = int(state["pid"]), str(state["url"])
        except (OSError, ValueError, KeyError, TypeError):
            state_file.unlink(missing_ok=True)
            return f"removed an unreadable {state_file}; no server to stop"
        if not alive(pid) or not _is_prefect_server(pid):
            state_file.unlink(missing_ok=True)
            return f"the local Prefect server (pid {pid}) was not running"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)  # its own session: the server and its workers
        deadline = time.monotonic() + STOP_TIMEOUT
        while alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap it when this process started it
            time.sleep(0.2)
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        state_file.unlink(missing_ok=True)
        return f"stopped the local Prefect server at {url} (pid {pid})"
