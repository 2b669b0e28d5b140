"""The action registry: what each action does, needs, predicts and undoes.

An action is one typed function plus a spec. Registration checks the spec the way
pluggy checks a hook implementation, and fails with a message naming the action:
a mutating action without a planner, a simulated result, or a compensation (or the
reason it is irreversible) never gets in.

Actions arrive through the `irbook.actions` entry point group, the built-in ones
included. The entry name is the namespace the module provides (`aws` for
`aws.iam.deactivate_access_key`), so a command loads only the modules its playbooks use.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import importlib
import inspect
import re
import threading
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from irbook import permissions as iam_permissions
from irbook import plugins
from irbook.errors import IrbookError
from irbook.plugins import ENTRY_POINT_GROUP

Effect = Literal["read", "mutate", "notify"]
EFFECTS: tuple[str, ...] = ("read", "mutate", "notify")

_KEY = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_PERMISSION = re.compile(r"^[a-z0-9-]+:[A-Za-z0-9*]+$")


class ActionSpecError(IrbookError):
    """An action's declaration is wrong: raised at import, naming the action."""


@dataclass(frozen=True)
class PlannedCall:
    """One API call an action would make, as a dry run shows it and a live run makes it.

    `service` and `operation` use IAM's spelling (`iam`, `UpdateAccessKey`) so that the
    planned calls, the action's declared `calls` (from which its IAM permissions are
    derived) and the recorded botocore calls compare.
    """

    service: str
    operation: str
    params: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def name(self) -> str:
        return f"{self.service}:{self.operation}"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"call": self.name, "params": dict(self.params)}
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class RunInfo:
    """What an action may know about the run it is part of."""

    run_id: str = "plan"
    playbook_id: str = ""
    step_id: str = ""
    dry_run: bool = True
    incident_key: str = ""
    severity: str = "medium"
    title: str = ""


class ClientFactory(Protocol):
    """The swap point for I/O: live clients, dry-run clients, or test clients."""

    def aws(self, service: str, *, region: str | None = None) -> Any: ...

    def slack(self) -> Any: ...

    def jira(self) -> Any: ...


class NoClients:
    """Used by the offline planner and dry runs: any attempt at I/O is a bug."""

    def _refuse(self, what: str) -> Any:
        raise IrbookError(f"no {what} client in this mode (plan or dry run): nothing may call out")

    def aws(self, service: str, *, region: str | None = None) -> Any:
        return self._refuse(f"AWS {service}")

    def slack(self) -> Any:
        return self._refuse("Slack")

    def jira(self) -> Any:
        return self._refuse("Jira")


@dataclass
class ActionContext:
    """Handed to every action call: the run it belongs to, clients, and the run record."""

    run: RunInfo = field(default_factory=RunInfo)
    clients: ClientFactory = field(default_factory=NoClients)
    notes: list[str] = field(default_factory=list)
    calls: list[PlannedCall] = field(default_factory=list)  # real calls, as made
    region: str | None = None

    def note(self, text: str) -> None:
        self.notes.append(text)

    def aws(self, service: str) -> Any:
        return self.clients.aws(service, region=self.region)


_CALLS: contextvars.ContextVar[list[PlannedCall] | None] = contextvars.ContextVar(
    "irbook_calls", default=None
)


@contextlib.contextmanager
def recording_calls() -> Iterator[list[PlannedCall]]:
    """Collect the real API calls made in this context (a step's task, a test)."""
    calls: list[PlannedCall] = []
    token = _CALLS.set(calls)
    try:
        yield calls
    finally:
        _CALLS.reset(token)


def record_call(call: PlannedCall) -> None:
    """Client hooks call this for every real API call; kept when someone is recording."""
    calls = _CALLS.get()
    if calls is not None:
        calls.append(call)


class ActionFailed(IrbookError):
    """An action could not do its work; the message names the resource at fault."""


Planner = Callable[[Any], list[PlannedCall]]
Simulator = Callable[[Any, RunInfo], BaseModel]
Undo = Callable[[Any, Any], dict[str, Any]]


@dataclass(frozen=True)
class ActionSpec:
    key: str
    func: Callable[[ActionContext, Any], BaseModel]
    params: type[BaseModel]
    result: type[BaseModel]
    effect: Effect
    # Derived at registration: the IAM actions of `calls`, then `extra_permissions`.
    permissions: tuple[str, ...]
    planner: Planner
    simulate: Simulator | None
    compensation: str | None
    irreversible: str | None
    undo: Undo | None
    idempotent: bool
    pure: bool  # no I/O at all: runs as itself in plans and dry runs
    evidence: bool  # preserves evidence (lint: snapshot before irreversible steps)
    prefer: str | None  # a gentler action to suggest instead (lint)
    on_failure: Literal["abort", "continue"]
    summary: str
    module: str
    sensitive: tuple[str, ...] = ()  # parameters shown as *** in plans and run records
    # Why an irreversible action destroys no evidence a snapshot could keep (lint: then no
    # snapshot step is asked for before it).
    no_evidence: str | None = None
    # The (service, Operation) calls the planner may produce; empty for non-AWS actions.
    calls: tuple[tuple[str, str], ...] = ()
    # Permissions no planned call shows (a branch the planner only notes, a permission AWS
    # checks under another name, a Slack scope), each with its reason: (permission, reason).
    extra_permissions: tuple[tuple[str, str], ...] = ()

    def shown(self, params: dict[str, Any]) -> dict[str, Any]:
        """Parameters as plans, run records and reports may show them."""
        if not self.sensitive:
            return params
        hidden = set(self.sensitive)
        for name, field_info in self.params.model_fields.items():
            if name in hidden and field_info.alias:
                hidden.add(field_info.alias)
        return {k: ("***" if k in hidden and v not in (None, "") else v) for k, v in params.items()}

    def plan(self, params: BaseModel) -> list[PlannedCall]:
        planned = list(self.planner(params))
        if self.calls:
            declared = set(self.calls)
            for call in planned:
                if (call.service, call.operation) not in declared:
                    raise ActionSpecError(
                        f"action {self.key!r}: planned {call.name}, which is not among its "
                        "declared calls, so its IAM permissions would not allow it"
                    )
        return planned

    def simulated(self, params: BaseModel, run: RunInfo) -> BaseModel:
        if self.pure or self.simulate is None:
            return self.func(ActionContext(run=run), params)
        return self.simulate(params, run)

    def compensation_params(self, params: BaseModel, result: BaseModel | None) -> dict[str, Any]:
        if self.undo is not None:
            return self.undo(params, result)
        return params.model_dump(mode="json", exclude_none=True)


class Registry:
    def __init__(self) -> None:
        self._specs: dict[str, ActionSpec] = {}
        self._lock = threading.RLock()
        self._loaded: set[str] = set()
        self._entry_points: dict[str, list[str]] | None = None

    # -- registration ---------------------------------------------------------------

    def add(self, spec: ActionSpec) -> None:
        with self._lock:
            existing = self._specs.get(spec.key)
            if existing is not None and existing.func is not spec.func:
                if existing.module == spec.module and existing.func.__name__ == spec.func.__name__:
                    self._specs[spec.key] = spec  # the same module imported again
                    return
                raise ActionSpecError(
                    f"action {spec.key!r}: registered twice ({existing.module} and {spec.module})"
                )
            self._specs[spec.key] = spec

    def remove(self, key: str) -> None:
        with self._lock:
            self._specs.pop(key, None)

    # -- discovery ------------------------------------------------------------------

    def entry_points(self) -> dict[str, list[str]]:
        if self._entry_points is None:
            self._entry_points = plugins.entry_points(ENTRY_POINT_GROUP)
        return self._entry_points

    def load_namespace(self, namespace: str) -> None:
        with self._lock:
            if namespace in self._loaded:
                return
            self._loaded.add(namespace)
            for module in self.entry_points().get(namespace, []):
                try:
                    importlib.import_module(module)
                except ActionSpecError:
                    raise
                except ImportError as exc:
                    raise IrbookError(
                        f"actions {namespace!r}: cannot import {module}: {exc}"
                    ) from None

    def load_all(self) -> None:
        for namespace in list(self.entry_points()):
            self.load_namespace(namespace)

    # -- lookup ---------------------------------------------------------------------

    def find(self, key: str) -> ActionSpec | None:
        spec = self._specs.get(key)
        if spec is None and "." in key:
            self.load_namespace(key.split(".", 1)[0])
            spec = self._specs.get(key)
        return spec

    def get(self, key: str) -> ActionSpec:
        spec = self.find(key)
        if spec is None:
            raise IrbookError(unknown_action_message(key, self))
        return spec

    def keys(self) -> list[str]:
        self.load_all()
        return sorted(self._specs)

    def __iter__(self) -> Iterator[ActionSpec]:
        return iter([self._specs[k] for k in self.keys()])

    def check(self) -> list[str]:
        """Cross-action checks that need every action loaded: compensations exist."""
        problems: list[str] = []
        for spec in self:
            if spec.compensation is None:
                continue
            undo = self._specs.get(spec.compensation)
            if undo is None:
                problems.append(
                    f"action {spec.key!r}: compensation {spec.compensation!r} is not registered"
                )
            elif undo.effect == "read":
                problems.append(
                    f"action {spec.key!r}: compensation {spec.compensation!r} is a read action"
                )
        return problems


def unknown_action_message(key: str, registry: Registry) -> str:
    close = difflib.get_close_matches(key, registry.keys(), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown action '{key}'{hint}"


REGISTRY = Registry()


def _model_of(func: Callable[..., Any], key: str) -> tuple[type[BaseModel], type[BaseModel]]:
    try:
        hints = typing.get_type_hints(func)
    except Exception as exc:  # unresolvable annotations: say which action
        raise ActionSpecError(f"action {key!r}: cannot read type hints: {exc}") from None
    params = list(inspect.signature(func).parameters)
    if len(params) != 2:
        raise ActionSpecError(
            f"action {key!r}: the function must take (ctx, params), got ({', '.join(params)})"
        )
    p_model = hints.get(params[1])
    r_model = hints.get("return")
    if not (isinstance(p_model, type) and issubclass(p_model, BaseModel)):
        raise ActionSpecError(f"action {key!r}: 'params' must be annotated with a pydantic model")
    if not (isinstance(r_model, type) and issubclass(r_model, BaseModel)):
        raise ActionSpecError(f"action {key!r}: the return must be annotated with a pydantic model")
    if p_model.model_config.get("extra") != "forbid":
        raise ActionSpecError(
            f"action {key!r}: {p_model.__name__} must set extra='forbid' "
            "so that a misspelt parameter is an error"
        )
    return p_model, r_model


def action(
    key: str,
    *,
    effect: Effect,
    calls: Sequence[tuple[str, str]] = (),
    extra_permissions: Mapping[str, str] | None = None,
    planner: Planner | None = None,
    simulate: Simulator | None = None,
    compensation: str | None = None,
    irreversible: str | None = None,
    undo: Undo | None = None,
    idempotent: bool = False,
    pure: bool = False,
    evidence: bool = False,
    prefer: str | None = None,
    on_failure: Literal["abort", "continue"] | None = None,
    sensitive: tuple[str, ...] = (),
    no_evidence: str | None = None,
    registry: Registry | None = None,
    permissions: object = None,
) -> Callable[[Callable[[ActionContext, Any], Any]], Callable[[ActionContext, Any], Any]]:
    """Declare an action. The function takes `(ctx, params)` and returns its result model.

    `calls` are the (service, Operation) pairs of the AWS calls its planner may produce;
    its permissions are derived from them (`irbook.permissions`), then `extra_permissions`
    (permission -> why no planned call shows it) are added. `permissions=` (a hand-kept
    list, before calls were declared) is refused with a message saying what to write.
    """

    def register(func: Callable[[ActionContext, Any], Any]) -> Callable[[ActionContext, Any], Any]:
        if not _KEY.match(key):
            raise ActionSpecError(
                f"action {key!r}: keys are dotted lowercase names such as 'aws.iam.deactivate_key'"
            )
        if effect not in EFFECTS:
            raise ActionSpecError(
                f"action {key!r}: effect must be one of {', '.join(EFFECTS)}, got {effect!r}"
            )
        if permissions is not None:
            raise ActionSpecError(
                f"action {key!r}: permissions= is no longer taken: declare the calls its "
                "planner makes (calls=[('iam', 'UpdateAccessKey'), ...]), from which its IAM "
                "permissions are derived, and extra_permissions={'svc:Action': 'why'} for "
                "any that no call shows"
            )
        p_model, r_model = _model_of(func, key)
        derived = _permissions(key, calls, extra_permissions or {})
        if pure:
            if effect != "read":
                raise ActionSpecError(f"action {key!r}: a pure action cannot {effect}")
            if derived:
                raise ActionSpecError(f"action {key!r}: a pure action needs no permissions")
        else:
            if key.startswith("aws.") and not calls:
                raise ActionSpecError(
                    f"action {key!r}: an AWS action must declare the calls its planner "
                    "makes (calls=[('iam', 'UpdateAccessKey'), ...]): its IAM permissions "
                    "come from them"
                )
            if planner is None:
                raise ActionSpecError(
                    f"action {key!r}: needs a planner that predicts its calls for dry runs"
                )
            if simulate is None:
                raise ActionSpecError(
                    f"action {key!r}: needs a simulated result for dry runs (simulate=...)"
                )
        if effect == "mutate":
            if compensation is None and irreversible is None:
                raise ActionSpecError(
                    f"action {key!r}: a mutating action must name its compensation "
                    "or say why it is irreversible (irreversible='...')"
                )
            if compensation is not None and irreversible is not None:
                raise ActionSpecError(
                    f"action {key!r}: has both a compensation and an irreversible reason"
                )
        elif compensation is not None or irreversible is not None or undo is not None:
            raise ActionSpecError(f"action {key!r}: only mutating actions have compensations")
        if no_evidence is not None and irreversible is None:
            raise ActionSpecError(f"action {key!r}: no_evidence=... is for irreversible actions")
        if undo is not None and compensation is None:
            raise ActionSpecError(f"action {key!r}: undo=... needs compensation=...")
        unknown = [n for n in sensitive if n not in p_model.model_fields]
        if unknown:
            raise ActionSpecError(
                f"action {key!r}: sensitive names unknown parameters: {', '.join(unknown)}"
            )
        doc = inspect.getdoc(func) or ""
        spec = ActionSpec(
            key=key,
            func=func,
            params=p_model,
            result=r_model,
            effect=effect,
            permissions=derived,
            planner=planner if planner is not None else (lambda _params: []),
            simulate=simulate,
            compensation=compensation,
            irreversible=irreversible,
            undo=undo,
            idempotent=idempotent,
            pure=pure,
            evidence=evidence,
            prefer=prefer,
            on_failure=on_failure or ("continue" if effect == "notify" else "abort"),
            summary=doc.split("\n\n")[0].replace("\n", " "),
            module=func.__module__,
            sensitive=tuple(sensitive),
            no_evidence=no_evidence,
            calls=tuple(calls),
            extra_permissions=tuple((extra_permissions or {}).items()),
        )
        (registry or REGISTRY).add(spec)
        return func

    return register


def _permissions(
    key: str, calls: Sequence[tuple[str, str]], extra: Mapping[str, str]
) -> tuple[str, ...]:
    """The IAM actions of `calls` in their order, then the explained extras."""
    derived: dict[str, None] = {}
    seen: set[tuple[str, str]] = set()
    for call in calls:
        problem = iam_permissions.call_problem(call)
        if problem is not None:
            raise ActionSpecError(f"action {key!r}: {problem}")
        if call in seen:
            raise ActionSpecError(f"action {key!r}: call {call[0]}:{call[1]} is declared twice")
        seen.add(call)
        for perm in iam_permissions.iam_actions(*call) or ():
            derived[perm] = None
    for perm, reason in extra.items():
        if not _PERMISSION.match(perm):
            raise ActionSpecError(
                f"action {key!r}: permission {perm!r} is not of the form 'service:Action'"
            )
        if not isinstance(reason, str) or not reason.strip():
            raise ActionSpecError(
                f"action {key!r}: extra permission {perm!r} needs its reason "
                "(extra_permissions={'service:Action': 'why no planned call shows it'})"
            )
        if perm in derived:
            raise ActionSpecError(
                f"action {key!r}: extra permission {perm!r} already comes from a declared call"
            )
        derived[perm] = None
    return tuple(derived)
