"""`irbook server stop` stops the local Prefect server irbook started, and only that."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def irbook(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_server_stop_stops_the_server_irbook_started(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_HOME", raising=False)
    nothing = irbook("server", "stop")
    assert nothing.returncode == 0, nothing.stderr
    assert "no local Prefect server" in nothing.stdout

    from irbook_flows import server

    url = server.ensure_api()  # what `irbook run` does first
    state_file = Path(os.environ["IRBOOK_HOME"]) / "prefect" / "server.json"
    pid = json.loads(state_file.read_text())["pid"]
    try:
        done = irbook("server", "stop")
        assert done.returncode == 0, done.stderr
        assert f"stopped the local Prefect server at {url} (pid {pid})" in done.stdout
        assert not state_file.exists()
        os.waitpid(pid, 0)  # this test started it: reap it, then it is gone
        assert not alive(pid)
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{url}/health", timeout=2)
    finally:
        if alive(pid):
            os.killpg(pid, 9)
            os.waitpid(pid, 0)
