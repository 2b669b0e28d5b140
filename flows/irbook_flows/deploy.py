"""Scale-out: `irbook deploy`, the flow a Prefect worker runs, and the receiver's starter.

The embedded default runs a playbook in the process that asked for it. With a Prefect
server and process workers, `irbook deploy` registers one deployment per playbook
(`irbook-<playbook id>`) of the flow `deployed_playbook`, importable from the installed
package (module entrypoint: no git clone, no image), and the webhook receiver starts
runs through `run_deployment` with an idempotency key, so a redelivered alert or a
restarted dispatcher never creates a second flow run.

A deployed run gets only non-secret parameters (playbook id, normalized alert, mode, run
id, source). The worker loads the playbook from its playbook folders and takes secrets
from its own environment (or Prefect Secret blocks read by the actions' clients), never
from parameters. A playbook with a secret input taken from the alert is refused by the
starter: the alert is a parameter, and parameters are kept in Prefect's database.

Like flow.py, the flow itself needs Prefect's settings to be final before Prefect is
imported, so it is built on first access (`irbook_flows.deploy.deployed_playbook`):
importing this module for `irbook deploy` does not import Prefect.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sqlite3
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from irbook.errors import IrbookError
from irbook.model.base import ID_PATTERN

if TYPE_CHECKING:
    from irbook.model import Playbook
    from irbook.triggers.config import RunnerConfig
    from irbook.triggers.dispatch import StartRequest, StartRun
    from irbook_flows.flow import Outcome

FLOW_NAME = "irbook-deployed-playbook"
ENTRYPOINT = "irbook_flows.deploy.deployed_playbook"  # module path: imported, not copied
DEFAULT_PREFIX = "irbook"
MODES = ("live", "dry-run")


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


# -- the deployed flow, on the worker ----------------------------------------------------


def _find_playbook(playbook_id: str) -> str:
    """The path of a playbook by id, searched only in the playbook folders."""
    if not re.match(ID_PATTERN, playbook_id):
        raise IrbookError(f"'{playbook_id}' is not a playbook id")
    from irbook.validate import find_playbook

    return find_playbook(playbook_id)


def run_deployed(
    playbook_id: str, alert: dict[str, Any], mode: str, run_id: str, source: str
) -> Outcome | None:
    """Create the run record under `run_id` and execute the run; None if it exists already.

    The same steps as the receiver's in-process starter and the same engine
    (`irbook_flows.flow.execute`); only the process differs.
    """
    from irbook.loader import load_playbook
    from irbook.model.alert import Alert
    from irbook.plan import build_plan
    from irbook.policy import active as active_policy
    from irbook.registry import REGISTRY, NoClients
    from irbook.runs import RunStore
    from irbook_actions.clients import LiveClients
    from irbook_flows.engine import RunSpec
    from irbook_flows.flow import execute

    if mode not in MODES:
        raise IrbookError(f"mode must be live or dry-run, not {mode!r}")
    REGISTRY.load_all()
    playbook = load_playbook(_find_playbook(playbook_id)).playbook
    alert_obj = Alert.model_validate(alert)
    plan = build_plan(playbook, alert_obj, {})
    dry_run = mode != "live"
    store = RunStore()
    store.hold()  # a worker killed mid-run leaves a run the receiver's reaper settles
    started_by = f"webhook:{source}"
    try:
        store.create_run_for(plan, dry_run=dry_run, started_by=started_by, run_id=run_id)
    except sqlite3.IntegrityError:
        return None  # started before (a retried flow run): never run the steps twice
    spec = RunSpec(
        run_id=run_id,
        playbook=playbook,
        alert=alert_obj,
        inputs=plan.inputs,
        dry_run=dry_run,
        started_by=started_by,
        store=store,
        clients=NoClients() if dry_run else LiveClients(),
        secrets=plan.secrets,
        slack_channel=None if dry_run else os.environ.get("IRBOOK_SLACK_APPROVAL_CHANNEL"),
        policy=active_policy(),
    )
    return execute(spec, [f"source:{source}", "deployment"])


@functools.cache
def _deployed_flow() -> Any:
    from prefect import flow
    from prefect.states import Completed, Failed

    from irbook.runs import verdict_text

    @flow(
        name=FLOW_NAME,
        flow_run_name="{mode} {playbook_id} · {run_id}",
        persist_result=False,
        validate_parameters=False,
        log_prints=False,
    )
    def deployed_playbook(
        playbook_id: str, alert: dict[str, Any], mode: str, run_id: str, source: str
    ) -> Any:
        """Run one playbook for one alert (a flow run of `irbook deploy`'s deployments)."""
        outcome = run_deployed(playbook_id, alert, mode, run_id, source)
        if outcome is None:
            return Failed(message=f"run {run_id} exists already; not started a second time")
        if outcome.state == "succeeded":
            return Completed(message=f"run {run_id} succeeded")
        if outcome.state == "partial":
            said = verdict_text(outcome.state, outcome.message)
            return Completed(message=f"run {run_id} {said}"[:500], name="Partial")
        return Failed(message=f"run {run_id} {outcome.state}: {outcome.message}"[:500])

    return deployed_playbook


def __getattr__(name: str) -> Any:
    # The worker imports `irbook_flows.deploy.deployed_playbook` after its settings are set.
    if name == "deployed_playbook":
        return _deployed_flow()
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


def _prefect_reason(exc: Exception) -> str:
    """One line for a Prefect API failure, for the queue's error column and the log."""
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    if isinstance(exc, ObjectNotFound):
        return "not registered (run: irbook deploy)"
    if isinstance(exc, PrefectHTTPStatusError):
        return f"the Prefect API answered {exc.response.status_code}"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]


def deployments_starter(runner: RunnerConfig) -> StartRun:
    """Start each run as a flow run of its playbook's deployment, at most once.

    `timeout=0` returns as soon as the flow run exists (Scheduled); a worker polling the
    deployment's pool runs it. The idempotency key makes a repeated call return the flow
    run it created the first time. Prefect failures are raised as `StartFailed`, which the
    dispatcher retries with backoff; a run that would put a secret into the flow run's
    parameters is refused (`StartRefused`), which no retry can change.
    """
    from prefect.deployments import run_deployment

    from irbook.loader import load_playbook
    from irbook.triggers.dispatch import StartFailed, StartRefused

    if TYPE_CHECKING:
        from prefect.client.schemas.objects import FlowRun

    prefix = runner.prefix

    def start(request: StartRequest) -> str:
        playbook = load_playbook(request.playbook_path).playbook
        leaking = _secret_inputs_in_alert(playbook, request)
        if leaking:
            raise StartRefused(
                f"playbook {playbook.metadata.id} takes secret input(s) "
                f"{', '.join(leaking)} from the alert, which a deployment would keep in "
                "Prefect's database; use runner: embedded for it"
            )
        name = full_name(request.playbook_id, prefix)
        try:
            flow_run: FlowRun = run_deployment(  # type: ignore[assignment]  # sync here
                name=name,
                parameters=flow_parameters(request),
                idempotency_key=idempotency_key(request),
                timeout=0,
                as_subflow=False,
                tags=["irbook", f"source:{request.source}", request.mode],
            )
        except Exception as exc:  # httpx, the API's status errors, ObjectNotFound...
            raise StartFailed(f"deployment {name}: {_prefect_reason(exc)}") from exc
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
        return [f"could not read deployments from the Prefect API ({_prefect_reason(exc)})"]
    if missing:
        warnings.append(
            f"no deployment for playbook(s) {', '.join(missing)}; run: irbook deploy"
            + (f" --pool {runner.pool}" if runner.pool else "")
        )
    return warnings


# -- irbook deploy ----------------------------------------------------------------------


def _playbooks() -> Iterator[Playbook]:
    from irbook.loader import default_playbook_dirs, validate_paths
    from irbook.registry import REGISTRY

    folders = [f for f in default_playbook_dirs() if os.path.isdir(f)]
    if not folders:
        raise IrbookError(
            f"no playbook folder ({', '.join(default_playbook_dirs())}); set IRBOOK_PLAYBOOKS"
        )
    REGISTRY.load_all()
    result = validate_paths(folders)
    if result.errors:
        first = result.errors[0]
        more = f" (and {len(result.errors) - 1} more; see irbook validate)"
        raise IrbookError(
            f"not deploying invalid playbooks: {first}" + (more if len(result.errors) > 1 else "")
        )
    for item in result.loaded:
        yield item.playbook


def _job_env() -> dict[str, str]:
    """The environment a worker's flow run gets from the deployment.

    The playbook folders, made absolute: a process worker runs each flow run in a
    directory of its own, where the default `playbooks/` would not be found. IRBOOK_HOME
    only when set here explicitly; otherwise the worker's own default applies.
    """
    from irbook.loader import default_playbook_dirs

    folders = [os.path.abspath(f) for f in default_playbook_dirs() if os.path.isdir(f)]
    env = {"IRBOOK_PLAYBOOKS": os.pathsep.join(folders)}
    if os.environ.get("IRBOOK_HOME"):
        env["IRBOOK_HOME"] = os.path.abspath(os.environ["IRBOOK_HOME"])
    return env


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


def register(pool: str, prefix: str = DEFAULT_PREFIX) -> list[tuple[str, str]]:
    """Ensure the pool and one deployment per playbook; (playbook id, deployment id)."""
    from prefect.client.orchestration import get_client
    from prefect.types.entrypoint import EntrypointType

    flow_obj = _deployed_flow()
    env = _job_env()
    playbooks = list(_playbooks())
    out: list[tuple[str, str]] = []
    with get_client(sync_client=True) as client:
        ensure_pool(client, pool)
    for playbook in playbooks:
        pid = playbook.metadata.id
        deployment = flow_obj.to_deployment(
            name=deployment_name(pid, prefix),
            description=f"{playbook.metadata.title} (irbook playbook {pid})",
            tags=["irbook", f"playbook:{pid}"],
            work_pool_name=pool,
            job_variables={"env": env},
            entrypoint_type=EntrypointType.MODULE_PATH,
            enforce_parameter_schema=False,
        )
        deployment.entrypoint = ENTRYPOINT
        deployment_id = deployment.apply(work_pool_name=pool)
        out.append((pid, str(deployment_id)))
    return out


def _api_reachable(url: str) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        problem = client.api_healthcheck()
    if problem is not None:
        reason = str(problem).splitlines()[0] if str(problem) else type(problem).__name__
        raise IrbookError(f"the Prefect API at {url} is unreachable ({reason[:200]})")


def cmd_deploy(args: argparse.Namespace) -> int:
    """`irbook deploy [--pool NAME]`: register the playbooks as Prefect deployments."""
    from irbook_flows.server import ensure_api

    pool = str(args.pool)
    if not pool.strip():
        raise IrbookError("--pool needs a name")
    url = ensure_api()  # PREFECT_API_URL when set, else irbook's local server
    _api_reachable(url)
    try:
        registered = register(pool)
    except IrbookError:
        raise
    except Exception as exc:  # the API went away, refused a payload...
        raise IrbookError(f"registering deployments failed: {_prefect_reason(exc)}") from None
    if not registered:
        print("no playbooks to deploy")
        return 0
    for pid, deployment_id in registered:
        print(f"deployed {full_name(pid)}  ({deployment_id}) -> pool {pool}")
    print(
        f"{len(registered)} deployment(s) in work pool '{pool}' on {url}\n"
        f"  start a worker: prefect worker start --pool {pool}\n"
        "  and set the receiver's runner: {type: deployments, pool: " + pool + "}"
    )
    return 0


__all__ = [
    "DEFAULT_PREFIX",
    "ENTRYPOINT",
    "FLOW_NAME",
    "check_deployments",
    "cmd_deploy",
    "deployment_name",
    "deployments_starter",
    "flow_parameters",
    "full_name",
    "idempotency_key",
    "register",
    "run_deployed",
]
