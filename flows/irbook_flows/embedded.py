"""The receiver's in-process starter (`runner: embedded`): a run per alert, in a thread.

The run record is created first, under the run id the queue assigned and this process's
lease (irbook.leases), so a run id that exists already raises the database's integrity error (the
dispatcher reads that as "already started": a restarted receiver starts nothing twice),
and a run whose process dies is found by the reaper instead of staying 'running'.

The flow then runs in a daemon thread, which always leaves the record final:
- when Prefect could not create the flow run (its API answered 5xx, or could not be
  reached) and so no step began, it is tried again after each of `retry_delays`, then
  the run is marked failed with the reason;
- any other way the flow ends without recording an outcome marks the run failed.

`running` counts the runs going on in this process; the dispatcher starts no more than
`runner.max_concurrent_runs` at once and leaves the rest queued in the store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from irbook.runs import RunStore
    from irbook.triggers.dispatch import StartRequest
    from irbook_flows.engine import RunSpec

log = logging.getLogger("irbook.webhooks")


class EmbeddedStarter:
    """A `StartRun` that runs the flow in this process (see the module)."""

    def __init__(
        self,
        slack_channel: str | None,
        *,
        retry_delays: Sequence[float] = (2.0, 10.0, 30.0),
        store: RunStore | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from irbook.runs import RunStore

        self.slack_channel = slack_channel
        self.retry_delays = tuple(retry_delays)
        self.store = store or RunStore()
        self.store.hold()
        self.sleep = sleep
        #: called (on the run's thread) when a run ends: the dispatcher may start another
        self.on_finished: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._running = 0

    def running(self) -> int:
        with self._lock:
            return self._running

    def __call__(self, request: StartRequest) -> str:
        from irbook.loader import load_playbook
        from irbook.policy import active as active_policy
        from irbook_flows.start import start_run

        start_run(
            load_playbook(request.playbook_path).playbook,
            request.alert,
            mode=request.mode,
            started_by=f"webhook:{request.source}",
            store=self.store,
            run_id=request.run_id,  # recorded here, before the thread: a duplicate raises
            execute=self._spawn,
            tags=[f"source:{request.source}"],
            slack_channel=self.slack_channel,
            policy=active_policy(),
        )
        return request.run_id

    def _spawn(self, spec: RunSpec, tags: list[str]) -> None:
        """Execute the recorded run in a thread of its own (see the module)."""
        with self._lock:
            self._running += 1
        try:
            threading.Thread(
                target=self._run, args=(spec, tags), daemon=True, name=f"run-{spec.run_id}"
            ).start()
        except BaseException:
            self._finished()
            raise

    def _finished(self) -> None:
        with self._lock:
            self._running -= 1
        if self.on_finished is not None:
            try:
                self.on_finished()
            except Exception:
                log.exception("on_finished failed")

    def _run(self, spec: RunSpec, tags: list[str]) -> None:
        try:
            self._run_with_retries(spec, tags)
        except Exception:  # the record is what users see; this is for the logs
            log.exception("run %s: could not record its outcome", spec.run_id)
        finally:
            self._finished()

    def _run_with_retries(self, spec: RunSpec, tags: list[str]) -> None:
        from irbook.plan import redact
        from irbook_flows.flow import execute

        store, run_id = spec.store, spec.run_id
        attempts = len(self.retry_delays) + 1
        error = ""
        for attempt in range(1, attempts + 1):
            try:
                execute(spec, tags)
                return  # execute leaves the record final
            except Exception as exc:
                error = redact(f"{type(exc).__name__}: {exc}", spec.secrets)[:500]
            record = store.run(run_id) or {}
            if record.get("state") != "running":
                return  # it ended (cancelled, or finished before the error)
            began = bool(record.get("flow_run_id")) or bool(store.steps(run_id))
            if began:
                store.finish_run(run_id, "failed", f"the flow run crashed: {error}")
                return
            if attempt == attempts:
                break
            delay = self.retry_delays[attempt - 1]
            store.event(
                run_id, "flow-run-retry", None, attempt=attempt, error=error, retry_in=delay
            )
            log.warning(
                "run %s: Prefect could not create its flow run (%s); retrying in %gs",
                run_id,
                error,
                delay,
            )
            self.sleep(delay)
        store.finish_run(
            run_id,
            "failed",
            f"Prefect could not create the flow run after {attempts} attempts: {error}",
        )
        log.error("run %s failed: Prefect could not create its flow run: %s", run_id, error)


__all__ = ["EmbeddedStarter"]
