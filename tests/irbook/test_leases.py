"""Telling a dead owner from a slow one: the lease and, on this host, the process itself."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from irbook.leases import _proc_start, owner_gone, process_alive, this_owner


def owner_row(
    pid: int, *, host: str | None = None, expires: float = 0.0, start: Any = None
) -> dict[str, Any]:
    me = this_owner()
    return {
        "id": f"{host or me.host}:{pid}:0000",
        "host": host or me.host,
        "pid": pid,
        "proc_start": start if start is not None else _proc_start(pid),
        "lease_expires": expires,
    }


def test_a_killed_process_is_gone_once_its_lease_expired() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        row = owner_row(child.pid)
        now = time.time()
        assert not owner_gone(row, now)  # alive, lease expired: slow, not dead
        assert not owner_gone({**row, "lease_expires": now + 30}, now)
    finally:
        child.kill()
        child.wait()
    assert owner_gone(row, time.time())
    assert not owner_gone({**row, "lease_expires": time.time() + 30}, time.time())
    assert not process_alive(child.pid, row["proc_start"])


def test_a_reused_pid_does_not_keep_a_dead_owner_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        row = owner_row(child.pid)
        if row["proc_start"] is None:  # no /proc here: the pid is all there is
            return
        assert not owner_gone(row, time.time())
        # Same pid, another start time: the process that registered is gone.
        assert owner_gone({**row, "proc_start": "1"}, time.time())
    finally:
        child.kill()
        child.wait()


def test_another_host_is_judged_by_its_lease_and_this_process_never() -> None:
    now = time.time()
    far = owner_row(1, host="elsewhere")
    assert owner_gone(far, now)
    assert not owner_gone({**far, "lease_expires": now + 5}, now)
    me = this_owner()
    mine = {"id": me.id, "host": me.host, "pid": me.pid, "proc_start": me.proc_start}
    assert not owner_gone({**mine, "lease_expires": 0.0}, now)
    # Our pid under another owner id: an earlier life of this pid (a restarted container).
    assert owner_gone({**mine, "id": "old", "lease_expires": 0.0}, now)
    assert not owner_gone(None, now)  # a run nobody leased is not judged
