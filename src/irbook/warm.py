"""The warm runner's wire: where its socket is, and how a message crosses it.

The warm runner (irbook_flows.warm, started by `irbook warm start`) is a process that has
already imported Prefect, boto3 and irbook and forks one child per `irbook run`. The
client (irbook.cli.warm) and the server share this module, which imports nothing heavy:
the client runs it before any of irbook's run machinery is imported.

A message is a 4-byte big-endian length and that many bytes of JSON; the first message
of a run also carries the client's file descriptors 0, 1 and 2 (SCM_RIGHTS).
"""

from __future__ import annotations

import json
import os
import socket
import struct
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


__all__ = ["receive", "send", "socket_path", "warm_dir"]
