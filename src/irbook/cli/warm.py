"""`irbook warm start|stop|status`, and the hand-over of `irbook run` to the warm runner.

Importing Prefect takes longer than a whole containment made with plain boto3, so a
process that starts cold cannot run a playbook quickly. The warm runner
(irbook_flows.warm) has imported everything once and forks a child per run. `irbook run`
looks for its socket first (`hand_over`, called by irbook.cli.main before anything heavy
is imported); when it answers, the command runs there, with this process's arguments,
working directory, environment, terminal (file descriptors 0, 1 and 2) and user, and
this process only relays signals and the exit status. When there is no warm runner, or
it refuses (its Prefect settings, Python or irbook's code differ from this process's),
the run starts cold here, as it always did. IRBOOK_WARM=0 never asks it; IRBOOK_WARM=1
says on stderr why a run did not go warm.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

from irbook.warm import receive, send, socket_path

CONNECT_TIMEOUT = 2.0
# How long the warm runner may take to check a request and fork (a few ms when idle).
# Past it the run starts cold here: the runner's child does not start until told "go".
READY_TIMEOUT = 30.0
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _say(asked: bool, why: str) -> None:
    if asked:
        print(f"irbook: not run warm: {why}; running cold", file=sys.stderr)


def _streams() -> list[list[str | None]]:
    return [
        [getattr(s, "encoding", None), getattr(s, "errors", None)]
        for s in (sys.stdin, sys.stdout, sys.stderr)
    ]


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
        request = {
            "op": "run",
            "argv": [sys.argv[0] if sys.argv else "irbook", *argv],
            "cwd": os.getcwd(),
            "env": dict(os.environ),
            "executable": sys.executable,
            "prefix": sys.prefix,
            "path": list(sys.path),
            "safe_path": bool(sys.flags.safe_path),
            "streams": _streams(),
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
        while _alive(pid):  # the runner's child may still be running: wait for it
            time.sleep(0.2)
        print(
            f"irbook: the warm runner went away before the run's status came back (pid {pid});"
            " see irbook runs",
            file=sys.stderr,
        )
        return 2
    if code < 0:  # ended by a signal: end the same way, as a cold run would have
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmd_warm(args: argparse.Namespace) -> int:
    """`irbook warm start|stop|status`."""
    from irbook_flows import warm

    if args.verb == "start":
        print(warm.start_warm())
        return 0
    if args.verb == "stop":
        print(warm.stop_warm()[1])
        return 0
    running, line = warm.warm_status()
    print(line)
    return 0 if running else 1


__all__ = ["cmd_warm", "hand_over"]
