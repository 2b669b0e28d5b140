"""The warm runner: a process that has imported Prefect, boto3 and irbook once, and forks
a child for each `irbook run` handed to it (a fork server, like multiprocessing's
forkserver or Gradle's daemon). `irbook warm start` starts it (`start_warm`), `irbook warm
stop` and `irbook server stop` stop it. Its entry point is irbook.cli.warm (the command
line's layer, which this one does not import): `run_zygote` serves, and returns in each
forked child, which then runs `irbook`'s main through `finish`.

Importing Prefect alone takes longer than a plain boto3 script's whole containment, so a
run that starts cold cannot be quick; the warm runner pays it once. Opt-in: without it,
`irbook run` starts cold, as before.

How a run goes (the client side is irbook.cli.warm):

1. The runner (the "zygote") accepts a connection on $IRBOOK_HOME/warm/run.sock (mode
   0600 in a 0700 folder) and forks a supervisor for it, so that it never waits on a
   client itself.
2. The supervisor refuses a peer of another uid (SO_PEERCRED; the client checks the
   socket's process the same way before it sends anything), reads the request
   (argv, working directory, the full environment, sys.path, and file descriptors 0,
   1 and 2) and refuses it when what Prefect pinned at import would differ from a cold
   run's: a PREFECT_* or PYTHON* variable, IRBOOK_HOME, HOME, the Python, sys.path,
   irbook's code (the loaded modules' files, the import path's folders), Prefect's
   settings files, or the local Prefect server's URL; or whose gid or supplementary
   groups are not the runner's (the child acts with the runner's); or that is not an
   `irbook run`. The client then runs cold.
3. Otherwise it forks the run's child, which waits; says "ready" with the child's pid;
   and lets the child go only when the client answers "go". The client runs cold only
   when it never got "ready", so a run never starts twice.
4. The child takes the client's descriptors as 0, 1 and 2, its environment, working
   directory, argv and sys.path, unwinds to the entry point and runs
   `irbook.cli.main.main(argv)` there: the same code as a cold `irbook run`, ending
   as the interpreter's exit would (`finish`), or with cmd_run's os._exit on
   Ctrl-C/SIGTERM.
5. The supervisor waits for the child (pidfd) and sends its exit status back; if the
   client goes away first, the child gets SIGTERM (recorded as cancelled).

The zygote has no threads, database connections or HTTP clients when it forks: nothing
in it opens any (`prepare` checks the thread count and fails the start otherwise).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import gc
import hashlib
import importlib
import io
import json
import logging
import os
import select
import signal
import socket
import stat
import struct
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from irbook.errors import IrbookError
from irbook.warm import alive, peer_credentials, receive, send, socket_path, warm_dir
from irbook_flows import server

START_TIMEOUT = 150.0  # imports, and the local Prefect server's start when there is none
STOP_TIMEOUT = 10.0
REQUEST_TIMEOUT = 10.0
GO_TIMEOUT = 60.0
# Pinned at import by Prefect (its settings), by Python (PYTHON*), or read to find
# irbook's home and Prefect's profiles: a request that differs in one of them runs cold.
PINNED_PREFIXES = ("PREFECT_", "PYTHON")
PINNED_NAMES = ("IRBOOK_HOME", "HOME", "PYDANTIC_DISABLE_PLUGINS")


OWN_PACKAGES = ("irbook", "irbook_actions", "irbook_flows")


def _pinned(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(PINNED_PREFIXES) or k in PINNED_NAMES}


def _user_files() -> list[str]:
    """The source files of the loaded modules that are not the standard library's or an
    installed distribution's (plugins from a source tree), and irbook's three packages'
    wherever they are: an installed irbook edited in place leaves site-packages' own
    stamp (its folder's) as it was."""
    shared = {
        os.path.realpath(p)
        for p in (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"])
    }
    shared |= {os.path.realpath(sysconfig.get_paths()["platlib"])}
    files = []
    for module in list(sys.modules.values()):
        name = getattr(module, "__file__", None)
        if not name:
            continue
        real = os.path.realpath(name)
        ours = getattr(module, "__name__", "").partition(".")[0] in OWN_PACKAGES
        if ours or not any(real.startswith(prefix + os.sep) for prefix in shared):
            files.append(real)
    return sorted(set(files))


def _stamp(paths: list[str]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        try:
            st = os.stat(path)
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
        except OSError:
            digest.update(f"{path}\0-\0".encode())
    return digest.hexdigest()


def _prefect_files(cwd: str) -> str:
    """Prefect's settings files as seen from `cwd`: its .env, prefect.toml and
    pyproject.toml ([tool.prefect]), which Prefect reads at import."""
    digest = hashlib.sha256()
    for name in (".env", "prefect.toml", "pyproject.toml"):
        try:
            text = Path(cwd, name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if name == ".env":
            text = "\n".join(line for line in text.splitlines() if "PREFECT_" in line)
        elif name == "pyproject.toml" and "tool.prefect" not in text:
            continue
        digest.update(f"{name}\0{text}\0".encode())
    return digest.hexdigest()


@dataclass
class Zygote:
    """What a request is checked against: this process as it was prepared."""

    pinned: dict[str, str]
    api_url: str
    local_server: bool
    code_files: list[str]
    code_stamp: str
    path_stamp: str
    prefect_files: str
    profiles: str
    profiles_stamp: str
    since: float = field(default_factory=time.time)
    pid: int = field(default_factory=os.getpid)

    def refusal(self, request: dict[str, Any]) -> str | None:
        """Why `request` must run cold, or None."""
        argv = request.get("argv")
        if not isinstance(argv, list) or argv[1:2] != ["run"]:
            return "not an `irbook run` (the only command the warm runner runs)"
        theirs_python = (os.path.realpath(str(request.get("executable"))), request.get("prefix"))
        if theirs_python != (os.path.realpath(sys.executable), sys.prefix):
            return f"another Python ({request.get('executable')}, warm: {sys.executable})"
        path = list(request.get("path") or [])
        if not request.get("safe_path"):
            path = path[1:]  # the script's folder, or the working directory with -m
        if path != sys.path:
            return "another import path (sys.path)"
        env = request.get("env")
        if not isinstance(env, dict):
            return "no environment"
        theirs = _pinned({str(k): str(v) for k, v in env.items()})
        if theirs != self.pinned:
            names = sorted(
                k for k in set(theirs) | set(self.pinned) if theirs.get(k) != self.pinned.get(k)
            )
            return "another " + ", ".join(names) + " than the warm runner's"
        if _stamp(self.code_files) != self.code_stamp:
            return "irbook's code changed since the warm runner started"
        if _stamp(sys.path) != self.path_stamp:
            return "installed packages changed since the warm runner started"
        if _prefect_files(str(request.get("cwd", ""))) != self.prefect_files:
            return "Prefect's settings files (.env, prefect.toml, pyproject.toml) differ here"
        if _stamp([self.profiles]) != self.profiles_stamp:
            return "Prefect's profiles changed"
        if self.local_server:
            try:
                state = json.loads((server.prefect_home() / "server.json").read_text())
                url = str(state["url"])
            except (OSError, ValueError, KeyError, TypeError):
                url = ""
            if url != self.api_url or not server._healthy(url):
                return f"the local Prefect server it was started for ({self.api_url}) is gone"
        return None


def prepare(preload: Sequence[str] = ()) -> Zygote:
    """Import what a run imports, once (and the modules named in `preload`); the state
    requests are checked against."""
    pinned = _pinned(dict(os.environ))  # before ensure_api sets PREFECT_API_URL and others
    local_server = not os.environ.get("PREFECT_API_URL")
    api_url = server.ensure_api()
    import boto3

    import irbook_flows.flow
    from irbook.registry import REGISTRY

    for name in preload:
        importlib.import_module(name)

    REGISTRY.load_all()
    irbook_flows.flow.quiet_console()
    # The modules a run imports on its way (listed from a run's new sys.modules), so that
    # each child does not import them again.
    for name in (
        "prefect.flow_engine",
        "prefect.task_engine",
        "prefect.client.orchestration",
        "prefect.task_runners",
        "prefect.utilities.visualization",
        "anyio._backends._asyncio",
        "anyio.streams.memory",
        "anyio.streams.stapled",
        "anyio.streams.tls",
        "encodings.ascii",
        "pwd",
        "irbook_flows.start",
        "irbook_flows.executors",
        "irbook_flows.engine",
        "irbook_actions.clients",
        "botocore.client",
        "botocore.endpoint",
        "botocore.httpsession",
        "botocore.credentials",
    ):
        with contextlib.suppress(ImportError):
            __import__(name)
    del boto3
    from prefect.settings import get_current_settings

    profiles = str(get_current_settings().profiles_path)
    if threading.active_count() != 1:
        names = ", ".join(t.name for t in threading.enumerate())
        raise IrbookError(f"the warm runner has threads after its imports ({names})")
    gc.collect()
    gc.freeze()  # the forks share these objects' pages instead of copying them
    files = _user_files()
    return Zygote(
        pinned=pinned,
        api_url=api_url,
        local_server=local_server,
        code_files=files,
        code_stamp=_stamp(files),
        path_stamp=_stamp(list(sys.path)),
        prefect_files=_prefect_files(os.getcwd()),
        profiles=profiles,
        profiles_stamp=_stamp([profiles]),
    )


# -- serving ------------------------------------------------------------------------


@dataclass
class Job:
    """A run handed over: what the forked child becomes."""

    request: dict[str, Any]
    fds: list[int]


class _Stop(Exception):
    pass


def _on_term(signum: int, frame: Any) -> None:
    raise _Stop()


def _own_folder(base: Path) -> None:
    """$IRBOOK_HOME/warm, made this user's only. A link there, or a folder of another user
    (an $IRBOOK_HOME others can write), is refused: chmod would follow the link to a folder
    of this user's elsewhere, and the socket, log and state would go where it points."""
    base.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        base.mkdir(mode=0o700)
    st = os.lstat(base)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise IrbookError(f"{base} is not a folder of this user's (a link, or another's)")
    os.chmod(base, 0o700)


def _listen(path: Path) -> socket.socket:
    _own_folder(path.parent)
    temporary = path.with_name(f"run.{os.getpid()}.sock")
    temporary.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mask = os.umask(0o177)
    try:
        listener.bind(str(temporary))
    finally:
        os.umask(mask)
    os.chmod(temporary, 0o600)
    listener.listen(64)
    os.replace(temporary, path)  # appears whole, already 0600
    return listener


def serve(zygote: Zygote) -> Job:
    """Accept runs until SIGTERM; returns only in a run's child, with its job."""
    path = socket_path()
    listener = _listen(path)
    state = warm_dir() / "warm.json"
    with contextlib.suppress(FileNotFoundError):
        state.unlink()  # written anew, this user's only (never through a link left there)
    fd = os.open(state, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(
            json.dumps(
                {
                    "pid": zygote.pid,
                    "since": zygote.since,
                    "api": zygote.api_url,
                    "socket": str(path),
                    "argv": sys.orig_argv,  # what `stop` recognizes it by
                }
            )
        )
    try:
        signal.signal(signal.SIGTERM, _on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # its own session; stopped by SIGTERM
        print(f"warm runner {zygote.pid} listening on {path}", flush=True)
        while True:
            _reap()
            ready, _, _ = select.select([listener], [], [], 1.0)
            if not ready:
                continue
            try:
                conn, _addr = listener.accept()
            except OSError:
                continue
            try:
                pid = os.fork()
            except OSError as exc:
                print(f"fork failed: {exc}", flush=True)
                conn.close()
                continue
            if pid == 0:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                listener.close()
                job = _supervise(conn, zygote)  # returns in the run's child only
                return job
            conn.close()
    except _Stop:
        pass
    finally:
        if os.getpid() == zygote.pid:
            listener.close()
            if _owns(state, zygote.pid):  # not a newer runner's socket and state
                path.unlink(missing_ok=True)
                state.unlink(missing_ok=True)
    sys.exit(0)


def _owns(state: Path, pid: int) -> bool:
    try:
        return bool(json.loads(state.read_text()).get("pid") == pid)
    except (OSError, ValueError, AttributeError):
        return False


def _reap() -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _supervise(conn: socket.socket, zygote: Zygote) -> Job:
    """In the supervisor: handle one connection, then exit. Returns in the run's child."""
    job: Job | None = None
    try:
        job = _handle(conn, zygote)
    except BaseException as exc:  # this process ends here, whatever it was
        with contextlib.suppress(Exception):
            print(f"request failed: {type(exc).__name__}: {exc}", flush=True)
    if job is None:
        os._exit(0)
    return job


# Linux's SO_PEERGROUPS (4.13): the peer's supplementary groups, as the kernel has them
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)


def _other_groups(conn: socket.socket) -> str | None:
    """Why the peer's group credentials are not this process's, or None. The run's child
    acts with the warm runner's groups: a caller of the same user with fewer or other
    groups (sg, newgrp, setpriv --clear-groups) must not get this process's."""
    _pid, _uid, gid = peer_credentials(conn)
    if gid != os.getgid():
        return f"another group (gid {gid}, the warm runner's {os.getgid()})"
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 1024)
    except OSError as exc:
        return f"the caller's groups cannot be read ({exc.strerror or exc})"
    theirs = set(struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4]))
    if theirs != set(os.getgroups()):
        return "other supplementary groups than the warm runner's"
    return None


def _handle(conn: socket.socket, zygote: Zygote) -> Job | None:
    if peer_credentials(conn)[1] != os.getuid():
        return None  # another user's process: not a word
    conn.settimeout(REQUEST_TIMEOUT)
    request, fds = receive(conn, maxfds=3)
    if request.get("op") == "ping":
        send(conn, {"pid": zygote.pid, "since": zygote.since, "api": zygote.api_url})
        return None
    why = zygote.refusal(request) if request.get("op") == "run" else "an unknown request"
    if why is None:
        why = _other_groups(conn)
    if why is None and len(fds) != 3:
        why = "the terminal's file descriptors did not come"
    if why is not None:
        for fd in fds:
            os.close(fd)
        send(conn, {"ready": False, "why": why})
        return None
    go_read, go_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the run's child: wait to be let go
        # The client forwards Ctrl-C from just before "go"; the warm runner ignores
        # SIGINT, so one that came now would be lost: held until the run starts (finish)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.close(go_write)
        conn.close()
        if os.read(go_read, 1) != b"g":
            os._exit(0)  # the client went away before "go": never run
        os.close(go_read)
        return Job(request, fds)
    os.close(go_read)
    for fd in fds:
        os.close(fd)
    try:
        send(conn, {"ready": True, "pid": pid})
        conn.settimeout(GO_TIMEOUT)
        answer, _ = receive(conn)
        if not answer.get("go"):
            raise ConnectionError("no go")
    except BaseException:
        os.close(go_write)  # the child reads EOF and ends without running
        os.waitpid(pid, 0)
        raise
    os.write(go_write, b"g")
    os.close(go_write)
    conn.settimeout(None)
    code = _wait(pid, conn)
    if code is not None:
        with contextlib.suppress(OSError):
            send(conn, {"code": code})
    return None


def _wait(pid: int, conn: socket.socket) -> int | None:
    """The child's exit status (negative: its signal); None when the client left first
    (the child got SIGTERM, as a terminal closed on a cold run would have sent)."""
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    watching: socket.socket | None = conn
    while True:
        waits: list[Any] = [w for w in (watching, pidfd) if w is not None]
        ready, _, _ = select.select(waits, [], [], None if pidfd is not None else 0.2)
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            if pidfd is not None:
                os.close(pidfd)
            return os.waitstatus_to_exitcode(status) if watching is not None else None
        if watching is not None and watching in ready:
            try:
                data = watching.recv(64)
            except OSError:
                data = b""
            if not data:  # the client is gone: nobody to answer to, end the run
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGTERM)
                watching = None


# -- the run's child ----------------------------------------------------------------

_KEEP: list[Any] = []  # the zygote's own standard streams, never collected (and closed)


def _stream(fd: int, write: bool, encoding: str | None, errors: str | None) -> io.TextIOWrapper:
    tty = os.isatty(fd)
    raw = io.FileIO(fd, "w" if write else "r", closefd=False)
    buffered: Any = io.BufferedWriter(raw) if write else io.BufferedReader(raw)
    return io.TextIOWrapper(
        buffered,
        encoding=encoding or "utf-8",
        errors=errors or "strict",
        line_buffering=tty or fd == 2,  # as Python's own: stderr is always line-buffered
        write_through=fd == 2,
    )


def become(job: Job) -> list[str]:
    """Turn this child into the client's `irbook` process; the arguments of its command."""
    request = job.request
    for signum in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(job.fds):
        os.dup2(fd, target)
    for fd in job.fds:
        if fd > 2:
            os.close(fd)
    old = (sys.stdin, sys.stdout, sys.stderr)
    _KEEP.extend(old)
    streams = request.get("streams") or [[None, None]] * 3
    sys.stdin = _stream(0, False, *streams[0])
    sys.stdout = _stream(1, True, *streams[1])
    sys.stderr = _stream(2, True, *streams[2])
    # what Python's own start-up sets: the originals, which code restores from
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr  # type: ignore[misc]
    _redirect_logging(old)
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in request["env"].items()})
    time.tzset()  # the caller's TZ for local times, not the warm runner's
    tempfile.tempdir = None  # the caller's TMPDIR, should anything have asked already
    os.chdir(request["cwd"])
    if isinstance(request.get("umask"), int):
        os.umask(request["umask"])  # the files the run creates are the caller's kind
    sys.argv = [str(a) for a in request["argv"]]
    sys.path[:] = [str(p) for p in request["path"]]
    return sys.argv[1:]


def _exit(code: Any) -> NoReturn:
    """End the run's child as the interpreter's exit would, less its teardown.

    What a cold process does at exit that anyone can see is kept: it waits for its
    non-daemon threads, runs the atexit functions (Prefect's and irbook's), flushes its
    output. Tearing down the modules and collecting the heap is left out: in a fork it
    would write to every page shared with the warm runner, copying the whole heap (it
    measured 0.5 s of a 1 s run) to free memory the kernel frees anyway."""
    if isinstance(code, SystemExit):
        code = code.code
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)
        status = 1
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        with contextlib.suppress(Exception):
            shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status & 0xFF)


def _redirect_logging(old: tuple[Any, ...]) -> None:
    """Handlers that write to the zygote's stdout or stderr write to the client's."""
    new = {id(old[1]): sys.stdout, id(old[2]): sys.stderr}
    loggers: list[Any] = [logging.getLogger()]
    loggers += [
        x for x in logging.Logger.manager.loggerDict.values() if isinstance(x, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            stream = getattr(handler, "stream", None)
            if stream is not None and id(stream) in new:
                handler.stream = new[id(stream)]
                console = getattr(handler, "console", None)
                if console is not None and getattr(console, "file", None) is stream:
                    console.file = new[id(stream)]


# -- start, stop, status (the CLI's side) ---------------------------------------------


def _state() -> dict[str, Any] | None:
    try:
        state = json.loads((warm_dir() / "warm.json").read_text())
        return state if isinstance(state, dict) else None
    except (OSError, ValueError):
        return None


def ping(timeout: float = 5.0) -> dict[str, Any] | None:
    """What the warm runner says about itself, or None when nothing answers."""
    path = socket_path()
    if not path.exists():
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
            if peer_credentials(sock)[1] != os.getuid():
                return None  # another user's socket is not this user's warm runner
            send(sock, {"op": "ping"})
            said, _ = receive(sock)
        except (OSError, ValueError):
            return None
    return said


def _since(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when))


def warm_status() -> tuple[bool, str]:
    said = ping()
    if said is None:
        return False, "warm runner: not running"
    return True, (
        f"warm runner: running (pid {said['pid']}, since {_since(float(said['since']))},"
        f" Prefect API {said['api']})"
    )


def _is_warm_runner(pid: int, argv: list[str]) -> bool:
    """Whether `pid` still is the warm runner, not a process that reused its pid."""
    try:
        running = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True
    return [a.decode(errors="replace") for a in running if a] == argv


def start_warm(argv: list[str]) -> str:
    """Start the warm runner (one, however many starts race); one line saying what."""
    base = warm_dir()
    _own_folder(base)
    with open(base / "warm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        said = ping()
        if said is not None:
            return f"warm runner already running (pid {said['pid']}, Prefect API {said['api']})"
        socket_path().unlink(missing_ok=True)  # stale: nothing answers on it
        log = base / "warm.log"
        pid = os.posix_spawn(
            argv[0],
            argv,
            dict(os.environ),  # the caller's: what its runs will be checked against
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setsid=True,  # outlives this command, ignores its terminal's Ctrl-C
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            done, _status = os.waitpid(pid, os.WNOHANG)
            if done:
                tail = _tail(log)
                raise IrbookError(f"the warm runner exited at start: {tail} (see {log})")
            said = ping(timeout=1.0)
            if said is not None:
                return f"warm runner started (pid {pid}, Prefect API {said['api']})"
            time.sleep(0.1)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        raise IrbookError(f"the warm runner did not start within {START_TIMEOUT:.0f} s (see {log})")


def _tail(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1] if lines else "no output"


def stop_warm() -> tuple[bool, str]:
    """Stop the warm runner; (whether one was running, one line). Runs it started go on."""
    base = warm_dir()
    if not base.exists():
        return False, "no warm runner was started"
    with open(base / "warm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = _state()
        pid = int(state["pid"]) if state and isinstance(state.get("pid"), int) else None
        argv = [str(a) for a in (state or {}).get("argv") or []]
        if pid is None or not alive(pid) or not _is_warm_runner(pid, argv):
            socket_path().unlink(missing_ok=True)
            (base / "warm.json").unlink(missing_ok=True)
            return False, "warm runner: not running"
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # the zygote only: runs in progress finish
        deadline = time.monotonic() + STOP_TIMEOUT
        while alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.05)
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        socket_path().unlink(missing_ok=True)
        (base / "warm.json").unlink(missing_ok=True)
        return True, f"stopped the warm runner (pid {pid})"


def run_zygote(preload: Sequence[str] = ()) -> list[str]:
    """Prepare and serve; returns only in a run's child, as the client's process: the
    arguments of its `irbook` command."""
    try:
        zygote = prepare(preload)
    except IrbookError as exc:
        print(f"irbook: {exc}", flush=True)
        sys.exit(1)
    return become(serve(zygote))


def finish(command: Callable[[], Any]) -> NoReturn:
    """Run `command` (irbook's main) in a run's child and end the child as a process
    that ran it would end: its exit status, its traceback if it raised."""
    try:  # a Ctrl-C held since the fork (_handle) arrives here, before anything ran
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    except KeyboardInterrupt:
        print("irbook: interrupted", file=sys.stderr)  # as a cold run's before it starts
        _exit(130)
    try:
        code: Any = command()
    except SystemExit as exc:
        code = exc
    except KeyboardInterrupt:
        # as Python ends on an uncaught Ctrl-C: the traceback, then killed by SIGINT
        sys.excepthook(*sys.exc_info())
        atexit._run_exitfuncs()
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        code = 130
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    _exit(code)
