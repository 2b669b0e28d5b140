"""The warm runner's client and wire: where its socket is, how a message crosses it,
and how `irbook run` hands itself over (`hand_over`).

Importing Prefect takes longer than a whole containment made with plain boto3, so a
process that starts cold cannot run a playbook quickly. The warm runner
(irbook_flows.warm, started by `irbook warm start`) has imported everything once and
forks a child per run. `irbook run` looks for its socket first (irbook.cli.main calls
`hand_over` before anything heavy is imported; this module imports nothing heavy); when
it answers, the command runs there, with this process's arguments, working directory,
environment, terminal (file descriptors 0, 1 and 2) and user (the socket's process must
be this user's before anything is sent: the environment holds AWS keys), and this process only
relays signals and the exit status. When there is no warm runner, or it refuses (its
Prefect settings, Python or irbook's code differ from this process's), the run starts
cold here, as it always did. IRBOOK_WARM=0 never asks it; IRBOOK_WARM=1 says on stderr
why a run did not go warm.

A message is a 4-byte big-endian length and that many bytes of JSON; the first message
of a run also carries the client's file descriptors 0, 1 and 2 (SCM_RIGHTS).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MAX_MESSAGE = 16 * 1024 * 1024  # an environment of a few KB; anything near this is not ours
_HEADER = struct.Struct("!I")


def warm_dir() -> Path:
    """$IRBOOK_HOME/warm: the socket, the state file, the lock and the log."""
    env = os.environ.get("IRBOOK_HOME")
    return (Path(env) if env else Path.home() / ".irbook") / "warm"


def socket_path() -> Path:
    return warm_dir() / "run.sock"


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a connected Unix socket, as
    the kernel recorded them (SO_PEERCRED): for a listening socket's, when it listened."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", creds)
    return int(pid), int(uid), int(gid)


def send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    payload = _HEADER.pack(len(data)) + data
    if fds:
        sent = socket.send_fds(sock, [payload], fds)
        payload = payload[sent:]
    if payload:
        sock.sendall(payload)


def _exactly(sock: socket.socket, size: int, fds: list[int], maxfds: int) -> bytes:
    chunks: list[bytes] = []
    left = size
    while left:
        if maxfds and not fds:
            data, got, _flags, _addr = socket.recv_fds(sock, left, maxfds)
            fds.extend(got)
        else:
            data = sock.recv(left)
        if not data:
            raise ConnectionError("the other end closed the connection")
        chunks.append(data)
        left -= len(data)
    return b"".join(chunks)


def receive(sock: socket.socket, maxfds: int = 0) -> tuple[dict[str, Any], list[int]]:
    """One message, and the file descriptors that came with it (at most `maxfds`)."""
    fds: list[int] = []
    try:
        (size,) = _HEADER.unpack(_exactly(sock, _HEADER.size, fds, maxfds))
        if size > MAX_MESSAGE:
            raise ValueError(f"a message of {size} bytes")
        message = json.loads(_exactly(sock, size, fds, 0))
        if not isinstance(message, dict):
            raise ValueError("a message that is not an object")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return message, fds


CONNECT_TIMEOUT = 2.0
# How long the warm runner may take to check a request and fork (a few ms when idle, its
# local server's health check included). Past it the run starts cold here, which costs
# the cold start on top: a wedged runner must not hold an incident's run for long. The
# runner's child does not start until told "go", so a late runner starts nothing.
READY_TIMEOUT = 10.0
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _say(asked: bool, why: str) -> None:
    if asked:
        print(f"irbook: not run warm: {why}; running cold", file=sys.stderr)


def _streams() -> list[list[str | None]]:
    return [
        [getattr(s, "encoding", None), getattr(s, "errors", None)]
        for s in (sys.stdin, sys.stdout, sys.stderr)
    ]


def _umask() -> int:
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def hand_over(argv: Sequence[str]) -> int | None:
    """Run `irbook ARGV` in the warm runner: its exit status, or None to run it here.

    None is returned only before the runner's child was told to start, so a run is
    never started twice; after that, whatever happens, the status is the run's (or 2
    with one line, when the runner vanished before saying it)."""
    asked = os.environ.get("IRBOOK_WARM", "") == "1"
    path = socket_path()
    if not path.exists():
        _say(asked, "no warm runner (irbook warm start)")
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(str(path))
        except OSError:
            _say(asked, f"the warm runner does not answer at {path} (stale: irbook warm start)")
            return None
        # Before a byte of this process's environment (its AWS credentials) goes out: the
        # socket's process must be this user's. $IRBOOK_HOME may be a folder others write.
        _pid, uid, _gid = peer_credentials(sock)
        if uid != os.getuid():
            _say(asked, f"the socket at {path} belongs to a process of another user (uid {uid})")
            return None
        try:
            cwd = os.getcwd()
        except OSError:  # the folder was deleted under the shell: the cold run says so
            _say(asked, "the current folder no longer exists")
            return None
        request = {
            "op": "run",
            "argv": [sys.argv[0] if sys.argv else "irbook", *argv],
            "cwd": cwd,
            "env": dict(os.environ),
            "executable": sys.executable,
            "prefix": sys.prefix,
            "path": list(sys.path),
            "safe_path": bool(sys.flags.safe_path),
            "streams": _streams(),
            "umask": _umask(),
        }
        try:
            send(sock, request, fds=[0, 1, 2])
            sock.settimeout(READY_TIMEOUT)
            reply, _ = receive(sock)
        except (OSError, ValueError) as exc:
            _say(asked, f"the warm runner failed before the run started ({exc})")
            return None
        if not reply.get("ready"):
            _say(asked, str(reply.get("why", "refused")))
            return None
        return _relay(sock, int(reply["pid"]))
    finally:
        sock.close()


def _relay(sock: socket.socket, pid: int) -> int:
    """Past the point of no return: start the run, relay signals, return its status."""

    def forward(signum: int, frame: Any) -> None:
        with contextlib.suppress(OSError):
            os.kill(pid, signum)

    for signum in FORWARDED:  # Ctrl-C at the terminal reaches this process, not the runner
        signal.signal(signum, forward)
    try:
        sock.settimeout(None)
        send(sock, {"go": True})
        said, _ = receive(sock)
        code = int(said["code"])
    except (OSError, ValueError, KeyError, TypeError):
        while alive(pid):  # the runner's child may still be running: wait for it
            time.sleep(0.2)
        print(
            f"irbook: the warm runner went away before the run's status came back (pid {pid});"
            " see irbook runs",
            file=sys.stderr,
        )
        return 2
    if code < 0:  # ended by a signal: end the same way, as a cold run would have
        with contextlib.suppress(OSError, ValueError):  # SIGKILL's cannot be set (nor need be)
            signal.signal(-code, signal.SIG_DFL)
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


def alive(pid: int) -> bool:
    """Whether process `pid` still runs: not gone, and not a zombie (ended, only its
    parent's wait missing). Someone else's process counts as running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


__all__ = ["alive", "hand_over", "peer_credentials", "receive", "send", "socket_path", "warm_dir"]
