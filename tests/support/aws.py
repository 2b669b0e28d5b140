"""Running actions against moto and holding their live calls up against their plans."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from pydantic import BaseModel

from irbook.permissions import IAM_PREFIX
from irbook.registry import REGISTRY, ActionContext, ActionSpec, PlannedCall
from irbook_actions.clients import LiveClients

REGION = "us-east-1"


class RecordingClients(LiveClients):
    """LiveClients whose every API call is recorded as it is made, with its parameters."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: list[PlannedCall] = []
        self._hooked: set[int] = set()

    def aws(self, service: str, *, region: str | None = None) -> Any:
        client = super().aws(service, region=region)
        if id(client) not in self._hooked:
            self._hooked.add(id(client))
            # first, so parameters are seen as the action passed them (before botocore's
            # own handlers rewrite CopySource and friends)
            client.meta.events.register_first("before-parameter-build.*.*", self._record)
        return client

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        name = model.service_model.service_name
        self.calls.append(
            PlannedCall(IAM_PREFIX.get(name, name), model.name, copy.deepcopy(dict(params)))
        )


def spec(key: str) -> ActionSpec:
    return REGISTRY.get(key)


def aws_keys() -> list[str]:
    every = REGISTRY.keys()  # loads every namespace, as `irbook actions` does
    return [key for key in every if key.startswith("aws.")]


def model(key: str, params: dict[str, Any]) -> BaseModel:
    return spec(key).params.model_validate(params)


def run(ctx: ActionContext, key: str, **params: Any) -> tuple[Any, list[PlannedCall]]:
    """Run an action live; its result and the API calls it made, in order."""
    recorder = ctx.clients
    assert isinstance(recorder, RecordingClients)
    recorder.calls.clear()
    action = spec(key)
    result = action.func(ctx, model(key, params))
    assert isinstance(result, action.result)
    return result, list(recorder.calls)


def undo_params(key: str, params: dict[str, Any], result: Any) -> dict[str, Any]:
    return spec(key).compensation_params(model(key, params), result)


def undo(ctx: ActionContext, key: str, params: dict[str, Any], result: Any) -> Any:
    """Run the compensation the way a rollback does: with the params the undo derives."""
    compensation = spec(key).compensation
    assert compensation is not None, f"{key} has no compensation"
    return run(ctx, compensation, **undo_params(key, params, result))[0]


# --- plans against live calls --------------------------------------------------------------

_PLACEHOLDER = re.compile(r"<[^<>]*>")


def _fits(planned: Any, actual: Any) -> bool:
    """A planned value fits an actual one; "<...>" stands for what the planner cannot know."""
    if isinstance(planned, str):
        if _PLACEHOLDER.fullmatch(planned):
            return True
        if not isinstance(actual, str):
            return False
        if planned.startswith("{") and actual.startswith("{"):
            return _fits(json.loads(planned), json.loads(actual))
        if "<" in planned:
            pattern = ".+?".join(re.escape(part) for part in _PLACEHOLDER.split(planned))
            return re.fullmatch(pattern, actual, re.S) is not None
        return planned == actual
    if isinstance(planned, dict):
        if not isinstance(actual, dict):
            return False
        optional = {k for k, v in planned.items() if isinstance(v, str) and v.endswith(", if set>")}
        if set(actual) - set(planned) or set(planned) - set(actual) - optional:
            return False
        return all(_fits(planned[k], actual[k]) for k in actual)
    if isinstance(planned, list | tuple):
        return (
            isinstance(actual, list | tuple)
            and len(planned) == len(actual)
            and all(_fits(p, a) for p, a in zip(planned, actual, strict=True))
        )
    return bool(planned == actual)


def repeat_key(note: str) -> str:
    """Notes starting "once per ..." or "repeated ..." mark calls a live run makes once per
    item the planner cannot count; consecutive calls with the same mark repeat together."""
    if note.startswith(("once per", "repeated")):
        return note.split(";")[0].split(" (")[0].strip()
    return ""


def _groups(planned: list[PlannedCall]) -> list[tuple[list[PlannedCall], str]]:
    groups: list[tuple[list[PlannedCall], str]] = []
    for call in planned:
        key = repeat_key(call.note)
        if key and groups and groups[-1][1] == key:
            groups[-1][0].append(call)
        else:
            groups.append(([call], key))
    return groups


def _pair(
    groups: list[tuple[list[PlannedCall], str]], actual: list[PlannedCall]
) -> list[tuple[PlannedCall, PlannedCall]] | None:
    """Planned calls paired with live ones by name, repeating marked groups as needed."""
    if not groups:
        return [] if not actual else None
    (calls, key), rest = groups[0], groups[1:]
    width = len(calls)
    most = len(actual) // width if key else 1
    for times in range(most, 0, -1):
        segment = actual[: width * times]
        if len(segment) < width * times:
            continue
        expected = calls * times
        if [c.name for c in expected] != [c.name for c in segment]:
            continue
        tail = _pair(rest, actual[width * times :])
        if tail is not None:
            return list(zip(expected, segment, strict=True)) + tail
    return None


def differences(planned: list[PlannedCall], actual: list[PlannedCall]) -> list[str]:
    pairs = _pair(_groups(planned), actual)
    if pairs is None:
        return [
            f"planned calls {[c.name for c in planned]}",
            f"live calls    {[c.name for c in actual]}",
        ]
    return [
        f"{p.name}: planned {dict(p.params)!r}, live {dict(a.params)!r}"
        for p, a in pairs
        if not _fits(dict(p.params), dict(a.params))
    ]


def assert_honest(key: str, params: dict[str, Any], actual: list[PlannedCall]) -> None:
    """The dry run's promise: the live run made exactly the planned calls, in order."""
    problems = differences(spec(key).plan(model(key, params)), actual)
    assert not problems, f"{key}: the plan is not what ran\n" + "\n".join(problems)
