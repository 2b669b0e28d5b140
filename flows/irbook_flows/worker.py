"""`irbook worker`: a Prefect worker that runs irbook's flow runs in its own process.

Prefect's process worker starts a new Python process for every flow run (`python -m
prefect.engine`), which imports Prefect, irbook, boto3 and the flow again: about 1.5-2 s
of CPU per run. A burst of alerts then costs as many process starts at once, and on a
small machine the burst queues behind them (bench/worker_burst.py measures it). This
worker is a Prefect worker like any other (`prefect.workers.base.BaseWorker`: it polls the
work pool, claims flow runs by proposing Pending, sends heartbeats, honours `--limit` and
cancellation), whose infrastructure is a thread of the worker itself: the deployed flow
is imported once, and each flow run is executed by Prefect's own engine
(`prefect.flow_engine.run_flow`) on a thread.

It runs only flow runs of irbook's deployed flow (`irbook_flows.deploy.deployed_playbook`);
a flow run of any other deployment in the pool is marked Crashed with the reason.
Everything else is as with a process worker: the run record is claimed once, a stale
playbook copy is refused, and a worker killed mid-run leaves runs the receiver's reaper
and irbook deploy's automation settle.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

WORKER_TYPE = "irbook"


def worker_class() -> type[Any]:
    import anyio
    import anyio.abc
    from prefect.workers.base import (
        BaseJobConfiguration,
        BaseVariables,
        BaseWorker,
        BaseWorkerResult,
    )

    from irbook_flows.deploy import ENTRYPOINT, _deployed_flow

    class InThreadResult(BaseWorkerResult):
        """A flow run executed on one of the worker's threads."""

    class IrbookWorker(BaseWorker[BaseJobConfiguration, BaseVariables, InThreadResult]):
        type = WORKER_TYPE
        job_configuration = BaseJobConfiguration
        job_configuration_variables = BaseVariables
        _description = "Runs irbook's deployed flow runs on threads of the worker process."

        async def run(
            self,
            flow_run: FlowRun,
            configuration: BaseJobConfiguration,
            task_status: anyio.abc.TaskStatus[int] | None = None,
        ) -> InThreadResult:
            deployment = (
                await self.client.read_deployment(flow_run.deployment_id)
                if flow_run.deployment_id
                else None
            )
            if deployment is None or deployment.entrypoint != ENTRYPOINT:
                raise RuntimeError(
                    f"irbook worker runs only {ENTRYPOINT}; flow run {flow_run.id} is of"
                    f" {getattr(deployment, 'entrypoint', None) or 'no deployment'}"
                )
            if task_status is not None:
                task_status.started(os.getpid())
            flow = _deployed_flow()

            def execute() -> None:
                from prefect.flow_engine import run_flow

                # the flow's end (completed, failed, cancelled) is its state in Prefect
                parameters = flow_run.parameters
                run_flow(flow, flow_run=flow_run, parameters=parameters, return_type="state")

            try:
                # a limiter of its own: the worker's --limit already bounds the runs
                await anyio.to_thread.run_sync(execute, limiter=anyio.CapacityLimiter(1))
            except Exception:  # the engine itself broke: the worker marks the run Crashed
                self.get_flow_run_logger(flow_run).exception("irbook's flow run broke")
                return InThreadResult(identifier=str(flow_run.id), status_code=1)
            return InThreadResult(identifier=str(flow_run.id), status_code=0)

    return IrbookWorker


__all__ = ["WORKER_TYPE", "worker_class"]
