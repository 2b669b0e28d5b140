"""A Prefect flow whose plain JSON parameters are stored as they are.

Prefect stores a flow run's parameters through FastAPI's `jsonable_encoder`, imported the
first time a flow run is created: FastAPI and Starlette, about as long as a short step
in a CLI run (bench/live_containment.py), for parameters that are JSON already (irbook's
flows take ids, modes and alert dicts). Values that are not plain JSON still go through
Prefect's own encoding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import Flow


def _plain(value: Any, depth: int = 0) -> bool:
    if value is None or type(value) in (str, int, float, bool):
        return True
    if depth > 32:
        return False
    if type(value) is list:
        return all(_plain(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _plain(v, depth + 1) for k, v in value.items())
    return False


class JsonFlow(Flow[Any, Any]):
    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        if all(_plain(v) for v in parameters.values()):
            return dict(parameters)
        return super().serialize_parameters(parameters)


def json_flow(**options: Any) -> Callable[[Callable[..., Any]], JsonFlow]:
    """`@prefect.flow(**options)`, making a JsonFlow."""

    def decorate(fn: Callable[..., Any]) -> JsonFlow:
        return JsonFlow(fn=fn, **options)

    return decorate
