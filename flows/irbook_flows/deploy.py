"""Scale-out: `irbook deploy`, the flow a Prefect worker runs, and the receiver's starter.

The embedded default runs a playbook in the process that asked for it. With a Prefect
server and process workers, `irbook deploy` registers one deployment per playbook
(`irbook-<playbook id>`) of the one flow every run is (`irbook_flows.flow.run_playbook`,
exposed here as `deployed_playbook`), importable from the installed package (module
entrypoint: no git clone, no image), and the webhook receiver starts
runs through `run_deployment` with an idempotency key, so a redelivered alert or a
restarted dispatcher never creates a second flow run.

A deployed run gets only non-secret parameters (playbook id, normalized alert, mode, run
id, source). The worker loads the playbook from its playbook folders and takes secrets
from its own environment (or Prefect Secret blocks read by the actions' clients), never
from parameters. A playbook with a secret input taken from the alert is refused by the
starter: the alert is a parameter, and parameters are kept in Prefect's database.

A run is recorded `queued` when the receiver creates its flow run, so the run id the
webhook answered with can be looked up, cancelled and approved later at once; the worker
claims that record (`RunStore.claim_queued`) and never starts a cancelled or an already
started run. A deployment carries only what is the same on every machine: the playbook
id, and the playbook's content digest as the deployment's version, so a worker whose copy
of the playbook differs refuses the run instead of running other steps than were
deployed. Paths, credentials and the database come from each worker's own environment.

The flow needs Prefect's settings to be final before Prefect is imported, so it is
imported on first access (`irbook_flows.deploy.deployed_playbook`), as is the worker's
side of a run (`run_deployed`, `Refused`, in flow.py): importing this module for
`irbook deploy` does not import Prefect.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from irbook.db import integrity_errors
from irbook.errors import IrbookError
from irbook_flows import FLOW_NAME
from irbook_flows.start import playbook_digest

if TYPE_CHECKING:
    from irbook.model import Playbook
    from irbook.runs import RunStore
    from irbook.triggers.config import RunnerConfig
    from irbook.triggers.dispatch import StartRequest, StartRun

ENTRYPOINT = "irbook_flows.deploy.deployed_playbook"  # module path: imported, not copied
DEFAULT_PREFIX = "irbook"


def deployment_name(playbook_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The deployment of one playbook: `irbook-leaked-model-key`."""
    return f"{prefix}-{playbook_id}"


def full_name(playbook_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """What `run_deployment` takes: `<flow name>/<deployment name>`."""
    return f"{FLOW_NAME}/{deployment_name(playbook_id, prefix)}"


def idempotency_key(request: StartRequest) -> str:
    """One flow run per queued alert, whoever asks and however often.

    The alert key (source/playbook/alert id) names the alert for its playbook; the run id
    the queue assigned names this occurrence of it. A redelivery inside the dedup window
    and a restarted dispatcher reuse the same row, so the same run id and key; the same
    alert after its window has ended (and its run has ended) is a new run on purpose, as
    in the embedded runner, and must not be folded into the old flow run.
    """
    return f"irbook/{request.alert_key}/{request.run_id}"


def flow_parameters(request: StartRequest) -> dict[str, Any]:
    """The deployed flow's parameters for a request: nothing secret, all JSON."""
    return {
        "playbook_id": request.playbook_id,
        "alert": request.alert.model_dump(mode="json"),
        "mode": request.mode,
        "run_id": request.run_id,
        "source": request.source,
    }


@functools.cache
def _deployed_flow() -> Any:
    """The one flow of every run (irbook_flows.flow.run_playbook), imported once Prefect's
    settings are final."""
    from irbook_flows.flow import run_playbook

    return run_playbook


_ON_WORKER = ("Refused", "prefect_state", "run_deployed")  # in irbook_flows.flow


def __getattr__(name: str) -> Any:
    # The worker imports `irbook_flows.deploy.deployed_playbook` after its settings are set.
    if name == "deployed_playbook":
        return _deployed_flow()
    if name in _ON_WORKER:  # a worker's side of a deployed run, where Prefect is imported
        from irbook_flows import flow

        return getattr(flow, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- the receiver's starter -----------------------------------------------------------


def _secret_inputs_in_alert(playbook: Playbook, request: StartRequest) -> list[str]:
    """Secret inputs this alert fills: their values would become a Prefect parameter."""
    from irbook import expr

    context = request.alert.as_context()
    found = []
    for name, spec in playbook.inputs.items():
        if spec.secret and spec.from_ is not None:
            value = expr.evaluate(expr.parse(spec.from_), {"alert": context})
            if value not in (None, ""):
                found.append(name)
    return found


def prefect_reason(exc: Exception) -> str:
    """One line for a Prefect API failure, for the queue's error column and the log."""
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    if isinstance(exc, ObjectNotFound):
        return "not registered (run: irbook deploy)"
    if isinstance(exc, PrefectHTTPStatusError):
        return f"the Prefect API answered {exc.response.status_code}"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]


def deployments_starter(runner: RunnerConfig, store: RunStore | None = None) -> StartRun:
    """Start each run as a flow run of its playbook's deployment, at most once.

    The flow run is created Scheduled, as `run_deployment(timeout=0)` does, and a worker
    polling the deployment's pool runs it; each deployment's id is looked up once, so a
    run costs one API call (bench/worker_burst.py measures the path). The idempotency key
    makes a repeated call return the flow run it created the first time. Before the flow
    run exists the run is recorded `queued` in `store` (the receiver's), so its id is
    known from the moment the alert is accepted; a worker claims that record. Prefect
    failures are raised as `StartFailed`, which the dispatcher retries with backoff; a run
    that would put a secret into the flow run's parameters is refused (`StartRefused`),
    which no retry can change.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Scheduled

    from irbook.loader import load_playbook
    from irbook.plan import build_plan
    from irbook.runs import RunStore
    from irbook.triggers.dispatch import AlreadyStarted, StartFailed, StartRefused

    if TYPE_CHECKING:
        from prefect.client.schemas.objects import FlowRun

    prefix = runner.prefix
    runs = store if store is not None else RunStore()
    deployment_ids: dict[str, Any] = {}

    def create_flow_run(name: str, request: StartRequest) -> FlowRun:
        with get_client(sync_client=True) as api:
            if name not in deployment_ids:
                deployment_ids[name] = api.read_deployment_by_name(name).id
            try:
                flow_run: FlowRun = api.create_flow_run_from_deployment(
                    deployment_ids[name],
                    parameters=flow_parameters(request),
                    state=Scheduled(),
                    idempotency_key=idempotency_key(request),
                    tags=["irbook", f"source:{request.source}", request.mode],
                )
            except ObjectNotFound:  # deleted, or deployed again under a new id
                deployment_ids.pop(name, None)
                raise
        return flow_run

    def record_queued(playbook: Playbook, request: StartRequest) -> None:
        try:
            plan = build_plan(playbook, request.alert, {})
        except IrbookError as exc:
            raise StartRefused(f"playbook {request.playbook_id} cannot run: {exc}") from None
        try:
            runs.create_run_for(
                plan,
                dry_run=request.mode != "live",
                started_by=f"webhook:{request.source}",
                run_id=request.run_id,
                state="queued",
            )
        except integrity_errors():
            record = runs.run(request.run_id)
            if record is None or record["state"] != "queued":
                raise AlreadyStarted(request.run_id) from None
            # queued by a dispatcher that died before its flow run existed: create it now

    def start(request: StartRequest) -> str:
        playbook = load_playbook(request.playbook_path).playbook
        leaking = _secret_inputs_in_alert(playbook, request)
        if leaking:
            raise StartRefused(
                f"playbook {playbook.metadata.id} takes secret input(s) "
                f"{', '.join(leaking)} from the alert, which a deployment would keep in "
                "Prefect's database; use runner: embedded for it"
            )
        record_queued(playbook, request)
        name = full_name(request.playbook_id, prefix)
        try:
            flow_run = create_flow_run(name, request)
        except Exception as exc:  # httpx, the API's status errors, ObjectNotFound...
            raise StartFailed(f"deployment {name}: {prefect_reason(exc)}") from exc
        runs.set_flow_run(request.run_id, str(flow_run.id))
        return str(flow_run.id)

    return start


def check_deployments(runner: RunnerConfig, playbook_ids: list[str]) -> list[str]:
    """Warnings for `irbook serve`: playbooks without a deployment, or in another pool.

    Not fatal: the Prefect API may be briefly away, and a run that cannot start is
    retried and then kept as failed in the queue, with its reason.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    warnings: list[str] = []
    missing: list[str] = []
    try:
        with get_client(sync_client=True) as client:
            for playbook_id in playbook_ids:
                try:
                    deployment = client.read_deployment_by_name(
                        full_name(playbook_id, runner.prefix)
                    )
                except ObjectNotFound:
                    missing.append(playbook_id)
                    continue
                pool = deployment.work_pool_name
                if runner.pool is not None and pool != runner.pool:
                    warnings.append(
                        f"deployment {deployment_name(playbook_id, runner.prefix)} is in"
                        f" work pool {pool!r}, not {runner.pool!r}"
                    )
    except Exception as exc:  # unreachable API: the dispatcher retries each start
        return [f"could not read deployments from the Prefect API ({prefect_reason(exc)})"]
    if missing:
        warnings.append(
            f"no deployment for playbook(s) {', '.join(missing)}; run: irbook deploy"
            + (f" --pool {runner.pool}" if runner.pool else "")
        )
    return warnings


# -- irbook deploy ----------------------------------------------------------------------


def _playbooks() -> Iterator[tuple[Playbook, str]]:
    from irbook.loader import default_playbook_dirs
    from irbook.registry import REGISTRY
    from irbook.validate import validate

    folders = [f for f in default_playbook_dirs() if os.path.isdir(f)]
    if not folders:
        raise IrbookError(
            f"no playbook folder ({', '.join(default_playbook_dirs())}); set IRBOOK_PLAYBOOKS"
        )
    REGISTRY.load_all()
    result = validate(folders)
    if result.errors:
        first = result.errors[0]
        more = f" (and {len(result.errors) - 1} more; see irbook validate)"
        raise IrbookError(
            f"not deploying invalid playbooks: {first}" + (more if len(result.errors) > 1 else "")
        )
    for item in result.playbooks():
        yield item.playbook, item.path


def ensure_pool(client: Any, pool: str) -> bool:
    """Create the process work pool if missing; True if it was created."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    try:
        existing = client.read_work_pool(pool)
    except ObjectNotFound:
        try:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        except ObjectAlreadyExists:  # created meanwhile by another `irbook deploy`
            return False
        return True
    if existing.type != "process":
        raise IrbookError(f"work pool '{pool}' exists with type {existing.type}, not process")
    return False


# A worker killed between claiming a flow run (Pending) and starting it (Running) leaves it
# Pending for good: no other worker takes a Pending run. Prefect's own answer is a
# proactive automation (the absence of an expected event): a flow run of irbook's that is
# Pending and neither runs nor ends within STUCK_AFTER is put back to Scheduled, where any
# live worker takes it. A slow start that then runs anyway cannot run the steps twice: the
# run record is claimed once (`RunStore.claim_queued`).
STUCK_AFTER = 90.0
RESCHEDULE_AUTOMATION = "irbook: reschedule runs a lost worker claimed"
_STARTED_OR_ENDED = (
    "Running",
    "Completed",
    "Failed",
    "Cancelled",
    "Cancelling",
    "Crashed",
    "Scheduled",
    "Paused",
)


def reschedule_automation(stuck_after: float = STUCK_AFTER) -> Any:
    """The automation `irbook deploy` keeps: irbook's Pending flow runs that a worker
    never started go back to Scheduled after `stuck_after` seconds (at least 10)."""
    from datetime import timedelta

    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    return AutomationCore(
        name=RESCHEDULE_AUTOMATION,
        description=(
            "A flow run of an irbook deployment stayed Pending (claimed by a worker that"
            f" did not start it) for {stuck_after:g} s: put it back to Scheduled so that a"
            " live worker runs it. Kept by irbook deploy."
        ),
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.id": "prefect.tag.irbook"},
            after={"prefect.flow-run.Pending"},
            expect={f"prefect.flow-run.{name}" for name in _STARTED_OR_ENDED},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=max(10.0, stuck_after)),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.SCHEDULED,
                name="Rescheduled",
                message=(
                    f"no worker started this run within {stuck_after:g} s of claiming it"
                    " (a lost worker); rescheduled by irbook's automation"
                ),
                force=True,
            )
        ],
    )


def ensure_automations(client: Any, stuck_after: float = STUCK_AFTER) -> None:
    """Create or replace irbook's automations on the Prefect server (idempotent)."""
    for existing in client.read_automations_by_name(RESCHEDULE_AUTOMATION):
        client.delete_automation(existing.id)
    client.create_automation(reschedule_automation(stuck_after))


def register(pool: str, prefix: str = DEFAULT_PREFIX) -> list[tuple[str, str]]:
    """Ensure the pool and one deployment per playbook; (playbook id, deployment id).

    A deployment names its playbook by id and carries the playbook's digest as its
    version, nothing of this machine: no paths, no home, no credentials. Each worker's own
    environment says where its playbooks and its state are (IRBOOK_PLAYBOOKS, IRBOOK_HOME
    or the database URL) and holds its credentials; a worker whose playbook differs from
    the deployed digest refuses the run.
    """
    from prefect.client.orchestration import get_client
    from prefect.types.entrypoint import EntrypointType

    stuck_after = stuck_after_setting()  # a bad value stops here, before the pool is touched
    flow_obj = _deployed_flow()
    playbooks = list(_playbooks())
    out: list[tuple[str, str]] = []
    with get_client(sync_client=True) as client:
        ensure_pool(client, pool)
        ensure_automations(client, stuck_after)
    for playbook, path in playbooks:
        pid = playbook.metadata.id
        deployment = flow_obj.to_deployment(
            name=deployment_name(pid, prefix),
            description=f"{playbook.metadata.title} (irbook playbook {pid})",
            tags=["irbook", f"playbook:{pid}"],
            work_pool_name=pool,
            version=playbook_digest(path),
            entrypoint_type=EntrypointType.MODULE_PATH,
            enforce_parameter_schema=False,
        )
        deployment.entrypoint = ENTRYPOINT
        deployment_id = deployment.apply(work_pool_name=pool)
        out.append((pid, str(deployment_id)))
    return out


def stuck_after_setting() -> float:
    """IRBOOK_STUCK_AFTER: seconds a claimed flow run may take to start (default 90)."""
    raw = os.environ.get("IRBOOK_STUCK_AFTER", "")
    if not raw:
        return STUCK_AFTER
    try:
        value = float(raw)
    except ValueError:
        raise IrbookError(f"IRBOOK_STUCK_AFTER must be a number of seconds, not {raw!r}") from None
    if value < 10:
        raise IrbookError("IRBOOK_STUCK_AFTER must be at least 10 (Prefect's minimum)")
    return value


def check_api_reachable(url: str) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        problem = client.api_healthcheck()
    if problem is not None:
        reason = str(problem).splitlines()[0] if str(problem) else type(problem).__name__
        raise IrbookError(f"the Prefect API at {url} is unreachable ({reason[:200]})")


def check_pool_exists(url: str, pool: str) -> None:
    """A worker started for a pool that does not exist polls nothing for ever (Prefect's
    worker waits for someone to create it, and irbook's never creates one): say so."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            client.read_work_pool(pool)
    except ObjectNotFound:
        raise IrbookError(
            f"work pool {pool!r} does not exist on {url}: run irbook deploy --pool {pool}"
        ) from None


__all__ = [
    "DEFAULT_PREFIX",
    "ENTRYPOINT",
    "FLOW_NAME",
    "RESCHEDULE_AUTOMATION",
    "check_api_reachable",
    "check_deployments",
    "check_pool_exists",
    "deployment_name",
    "deployments_starter",
    "flow_parameters",
    "full_name",
    "idempotency_key",
    "playbook_digest",
    "prefect_reason",
    "register",
]
