"""What becomes of a run whose process died: crashed, started again, or handed to a human.

`irbook serve` runs a reaper at start-up and then every few seconds; `irbook runs` runs one
before it lists. A run is an orphan when its owner is gone (irbook.leases: lease expired
and process not alive, never a guess from the run's age). For each orphan the reaper:

1. looks at its steps: in a live run, a step that mutates or notifies which had begun
   (running, waiting, or done) means something outside irbook may have changed, and
   running the playbook again could do it twice. The run becomes `needs-human`, with the
   step(s) in flight, and is never re-run automatically;
2. otherwise, when a queued alert started it, the alert is started again as a new run in
   the same queue row (`AlertQueue.restart_run`, atomic and idempotent: a second reaper
   gets the same new run): repeats of the alert attach to the new run, and the crashed
   one says which run replaced it. At most `max_restarts` times: an alert whose runs keep
   dying while they run (one that kills its process?) goes to a human instead; a crash
   before any step began is not counted. A row the dispatcher still has in hand (queued
   or starting again after a restart) is left for the next pass;
3. takes the run over (compare-and-set on its owner: two reapers never both settle it)
   and marks it `crashed` (or `needs-human`) with an event naming the last step known.

A dry run mutates and notifies nothing (its calls are simulated), so it is always
restarted.

With workers (`runner: deployments`) a run is recorded `queued` until a worker claims it.
Given `flow_run_end` (what Prefect says of a flow run), the reaper also settles queued
runs whose flow run ended without any worker starting them (a flow-run process that
crashed before the flow began, a run cancelled or deleted in Prefect): no step began, so
the run is `crashed` and its alert started again (not counted), or `needs-human` when no
alert row can start it; the alert is never absorbed by a flow run that will not run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from irbook.runs import RunStore, step_label

log = logging.getLogger("irbook.runs")

SIDE_EFFECTS = ("mutate", "notify")
NOT_BEGUN = ("pending", "skipped")
IN_FLIGHT = ("running", "awaiting-approval")
MAX_RESTARTS = 2
PRUNE_AFTER = 7 * 86_400  # owners gone this long, with no run left running, are forgotten

#: (crashed run id, new run id, max restarts, counted) -> (outcome, run id):
#: AlertQueue.restart_run
Restart = Callable[[str, str, int, bool], tuple[str, str]]
#: flow run id -> (final state name, message) once the flow run has ended, else None
FlowRunEnd = Callable[[str], tuple[str, str] | None]
QUEUED_GRACE = 10.0  # a queued run younger than this is not asked about


@dataclass(frozen=True, slots=True)
class Reaped:
    run_id: str
    state: str  # crashed | needs-human
    message: str
    restarted_as: str | None = None
    in_flight: list[str] = field(default_factory=list)
    flow_run_ended: bool = False  # Prefect says how its flow run ended already


def _label(step: dict[str, Any]) -> str:
    return step_label(step["step_id"], step["item"])


def judge(record: dict[str, Any], steps: list[dict[str, Any]]) -> tuple[list[str], str | None]:
    """(the side-effecting steps that had begun, the last step known) of a crashed run."""
    begun = [
        f"{_label(s)} ({s['action']}, {s['state']})"
        for s in steps
        if record["mode"] == "live" and s["effect"] in SIDE_EFFECTS and s["state"] not in NOT_BEGUN
    ]
    # A step still in flight is the last one known; a gate waiting for approval has no
    # start time, and waits after every step it needs has ended.
    in_flight = [s for s in steps if s["state"] in IN_FLIGHT]
    started = in_flight or [s for s in steps if s["started_at"] is not None]
    last = None
    if started:
        step = max(
            started,
            key=lambda s: (s["started_at"] is None, float(s["started_at"] or 0)),
        )
        last = f"{_label(step)} ({step['state']})"
    return begun, last


class Reaper:
    """Finds and settles the runs of dead processes in one store (see the module)."""

    def __init__(
        self,
        store: RunStore,
        *,
        restart: Restart | None = None,
        new_run_id: Callable[[], str] | None = None,
        max_restarts: int = MAX_RESTARTS,
        flow_run_end: FlowRunEnd | None = None,
    ) -> None:
        self.store = store
        self.flow_run_end = flow_run_end
        self.restart = restart
        self.new_run_id = new_run_id
        self.max_restarts = max_restarts
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pruned = False

    def reap(self) -> list[Reaped]:
        """Settle every orphan found now; returns what became of each."""
        if not self._pruned:
            self._pruned = True
            try:
                self.store.prune_owners(time.time() - PRUNE_AFTER)
            except Exception:  # housekeeping only
                log.exception("could not prune old run owners")
        done = self._reap_queued()
        orphans = self.store.orphaned_runs()
        if not orphans:
            return done
        me = self.store.hold()  # a reaper killed half-way is reaped in turn
        for orphan in orphans:
            try:
                reaped = self._settle(orphan["run_id"], orphan["owner"], me)
            except Exception:  # the next pass tries again
                log.exception("could not settle crashed run %s", orphan["run_id"])
                continue
            if reaped is not None:
                done.append(reaped)
        return done

    def _reap_queued(self) -> list[Reaped]:
        if self.flow_run_end is None:
            return []
        done = []
        for row in self.store.queued_runs(time.time() - QUEUED_GRACE):
            try:
                ended = self.flow_run_end(row["flow_run_id"])
                if ended is not None:
                    reaped = self._settle_queued(row["id"], row["flow_run_id"], *ended)
                    if reaped is not None:
                        done.append(reaped)
            except Exception:  # the Prefect API may be away; the next pass asks again
                log.exception("could not settle queued run %s", row["id"])
        return done

    def _settle_queued(
        self, run_id: str, flow_run_id: str, flow_state: str, why: str
    ) -> Reaped | None:
        said = f": {why}" if why else ""
        died = f"its flow run {flow_run_id} ended {flow_state} before any worker started it{said}"
        state, message, restarted_as = "needs-human", f"{died}; post the alert again", None
        if self.restart is not None and self.new_run_id is not None:
            outcome, run = self.restart(run_id, self.new_run_id(), self.max_restarts, False)
            if outcome == "pending":
                return None
            if outcome == "restarted":
                state, restarted_as = "crashed", run
                message = f"{died}; its alert was started again as run {run}"
        if not self.store.fail_queued(run_id, message, state):
            return None  # a worker claimed it meanwhile, or another reaper settled it
        self.store.event(run_id, "crashed", None, flow_run=flow_run_id, restarted_as=restarted_as)
        log.warning("run %s %s: %s", run_id, state, message)
        return Reaped(run_id, state, message, restarted_as, flow_run_ended=True)

    def _settle(self, run_id: str, owner: str, me: str) -> Reaped | None:
        record = self.store.run(run_id) or {}
        steps = self.store.steps(run_id)
        begun, last = judge(record, steps)
        in_flight = [_label(s) for s in steps if s["state"] in IN_FLIGHT]
        where = f"; last step: {last}" if last else "; no step had started"
        died = f"the process running it ({owner}) died{where}"
        restarted_as = None
        if begun:
            state = "needs-human"
            message = (
                f"{died}; not re-run automatically because {', '.join(begun)} had begun:"
                " check what it did, then re-run by hand if needed"
            )
        else:
            state, message = "crashed", died
            if self.restart is not None and self.new_run_id is not None:
                # Only a crash while the run's steps ran counts towards the bound.
                outcome, run = self.restart(
                    run_id, self.new_run_id(), self.max_restarts, last is not None
                )
                if outcome == "pending":
                    return None  # the dispatcher holds the row; it will say 'started'
                if outcome == "restarted":
                    restarted_as = run
                    message = f"{died}; its alert was started again as run {run}"
                elif outcome == "exhausted":
                    state = "needs-human"
                    message = (
                        f"{died}; its alert's runs crashed {self.max_restarts + 1} times"
                        " while running, so it is not started again automatically"
                    )
        if not self.store.take_over(run_id, owner, me):
            return None  # another reaper settled it
        self.store.event(
            run_id,
            "crashed",
            None,
            owner=owner,
            last_step=last,
            in_flight=in_flight,
            side_effects_begun=begun,
            restarted_as=restarted_as,
        )
        for step in steps:  # nothing is running any more; say so on the steps too
            if step["state"] in IN_FLIGHT or step["state"] == "pending":
                self.store.upsert_step(
                    run_id,
                    step["step_id"],
                    step["item"],
                    state="crashed" if step["state"] in IN_FLIGHT else "cancelled",
                    reason="the run's process died" if step["state"] in IN_FLIGHT else None,
                    finished_at=time.time(),
                )
        self.store.finish_run(run_id, state, message)
        log.warning("run %s %s: %s", run_id, state, message)
        return Reaped(run_id, state, message, restarted_as, in_flight)

    # -- in the background (irbook serve) -------------------------------------------------

    def start(
        self, interval: float, on_reaped: Callable[[list[Reaped]], None] | None = None
    ) -> None:
        """Reap every `interval` seconds in a daemon thread until `stop`."""
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    reaped = self.reap()
                except Exception:  # a locked file, a full disk: the next pass retries
                    log.exception("reaping crashed runs failed")
                    continue
                if reaped and on_reaped is not None:
                    on_reaped(reaped)

        self._thread = threading.Thread(target=loop, name="irbook-reaper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None


__all__ = ["MAX_RESTARTS", "Reaped", "Reaper", "judge"]
