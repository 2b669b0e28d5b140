"""What the run commands share: their exit statuses, the terminal and the live step table,
finding a run, a refusal in the audit chain, and the reaper of crashed runs."""

from __future__ import annotations

import getpass
import os
import socket
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

from irbook.errors import IrbookError
from irbook.reaper import Reaper
from irbook.triggers.queue import AlertQueue, new_run_id

EXIT_OK, EXIT_FAILED, EXIT_REJECTED, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a killed command
# `irbook approve`: the decision was recorded but the step needs more approvers; it was
# refused (no grant, separation of duties, approved already); it came too late.
# `irbook run`, `rollback` and `drill` exit EXIT_REFUSED when the policy refuses them.
EXIT_RECORDED, EXIT_REFUSED, EXIT_LATE = 4, 5, 6
# A run's exit status from its final state: each verdict its own.
EXIT_FOR_STATE = {"succeeded": EXIT_OK, "partial": EXIT_PARTIAL, "rejected": EXIT_REJECTED}

STATE_MARK = {
    "queued": "·",
    "pending": "·",
    "running": "…",
    "awaiting-approval": "?",
    "succeeded": "✓",
    "failed": "✗",
    "skipped": "-",
    "rejected": "⊘",
    "cancelled": "⊘",
    "crashed": "☠",
    "needs-human": "!",
}


class Output(Protocol):
    def write(self, text: str, /) -> int: ...
    def flush(self) -> None: ...


def first_line(text: str, limit: int = 200) -> str:
    """A failure text as one readable line: an API's 500 page stays whole in the record
    (`irbook runs show RUN_ID --format json`) but is cut here."""
    lines = text.strip().splitlines()
    line = lines[0] if lines else ""
    more = len(lines) > 1 or len(line) > limit
    return line[: limit - 1] + "…" if more else line


class Terminal:
    """stdout for a run: a closed pipe (`irbook run ... | head`) ends the display, never
    the run; the incident response goes on and its record says how it ended."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.broken = False

    def isatty(self) -> bool:
        try:
            return self.out.isatty()
        except (OSError, ValueError):
            return False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self.out.write(text)
            except (OSError, ValueError):
                self._closed()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self.out.flush()
            except (OSError, ValueError):
                self._closed()

    def _closed(self) -> None:
        self.broken = True
        # what is still buffered must not fail again at exit: send it nowhere
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.out.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass


def user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class StepTable:
    """The live view of a run: redrawn in place on a terminal, one line per change otherwise."""

    def __init__(self, steps: list[str], out: Output, live: bool) -> None:
        self.steps = steps
        self.state = dict.fromkeys(steps, "pending")
        self.detail = dict.fromkeys(steps, "")
        self.out = out
        self.live = live
        self.drawn = 0
        self.started = time.monotonic()
        self.lock = threading.Lock()

    def event(self, kind: str, step: str, state: str, detail: str) -> None:
        with self.lock:
            detail = first_line(detail)
            if kind == "undo":
                self._line(f"  undo {step}: {state} {detail}")
                return
            if step not in self.state:
                return
            self.state[step], self.detail[step] = state, detail
            if self.live:
                self._redraw()
            else:
                elapsed = time.monotonic() - self.started
                text = f" ({detail})" if detail else ""
                self._line(f"  {elapsed:6.1f}s {STATE_MARK.get(state, ' ')} {step}: {state}{text}")

    def _line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()
        self.drawn = 0

    def _redraw(self) -> None:
        if self.drawn:
            self.out.write(f"\x1b[{self.drawn}F")
        width = max(len(s) for s in self.steps)
        for step in self.steps:
            state = self.state[step]
            detail = f"  {self.detail[step]}" if self.detail[step] else ""
            self.out.write(
                f"\x1b[2K  {STATE_MARK.get(state, ' ')} {step:<{width}}  {state}{detail[:80]}\n"
            )
        self.out.flush()
        self.drawn = len(self.steps)


def refuse(store: Any, ruling: Any, what: str, run_id: str | None = None) -> None:
    """Record a refused start, rollback or drill in the audit chain and say why. A start
    has no run yet: its refusal is chained under the id the run would have had."""
    import uuid

    store.event(
        run_id or uuid.uuid4().hex[:12],
        f"{what}-refused",
        None,
        by=ruling.who,
        principal=ruling.principal,
        grant=ruling.grant,
        reason=ruling.reason,
    )
    print(f"irbook: refused: {ruling.reason}", file=sys.stderr)


def find_run(store: Any, run_id: str) -> dict[str, Any]:
    record: dict[str, Any] | None = store.find_run(run_id)
    if record is None:
        raise IrbookError(f"no run '{run_id}' (see: irbook runs)")
    return record


def when(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def cli_process(store: Any, run_id: str) -> tuple[int | None, bool]:
    """(pid, alive) of the `irbook run` that executes run_id on this host; (None, False)
    when the run did not start here (a receiver, a deployment, another host)."""
    rows = [e for e in store.events(run_id) if e["kind"] == "cli-process"]
    if not rows or rows[-1]["detail"].get("host") != socket.gethostname():
        return None, False
    pid = int(rows[-1]["detail"]["pid"])
    try:  # the pid may have been reused since: only an irbook process counts
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            alive = b"irbook" in handle.read()
    except FileNotFoundError:
        alive = False
    except OSError:  # no /proc here: cannot tell
        return None, False
    return pid, alive and pid != os.getpid()


def _flow_run_end(flow_run_id: str) -> tuple[str, str] | None:
    """(state name, message) of a flow run that has ended in Prefect, else None; a flow
    run Prefect no longer has counts as ended (deleted)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            flow_run = client.read_flow_run(UUID(flow_run_id))
        except ObjectNotFound:
            return "Deleted", "Prefect has no such flow run any more"
    state = flow_run.state
    if state is None or not state.is_final():
        return None
    return state.name or state.type.value, (state.message or "")[:300]


def crash_reaper(store: Any, queue: Any, *, workers: bool = False) -> Any:
    """The reaper of crashed runs in `store`; their alerts are started again through
    `queue` (an AlertQueue), or through one opened on first need when None. With
    `workers` (runner: deployments) it also settles queued runs whose flow run ended
    before a worker started it."""

    def restart(run_id: str, new_id: str, max_restarts: int, counted: bool) -> tuple[str, str]:
        nonlocal queue
        if queue is None:
            queue = AlertQueue(store.path)
        outcome: tuple[str, str] = queue.restart_run(run_id, new_id, max_restarts, counted=counted)
        return outcome

    return Reaper(
        store,
        restart=restart,
        new_run_id=new_run_id,
        flow_run_end=_flow_run_end if workers else None,
    )
