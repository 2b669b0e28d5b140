"""Tabletop drills: scenario files, expectations and reports (no Prefect here).

Running a drill needs the compiled flow; that part lives in `irbook_flows.drill`.
`load_scenario` and `LoadedScenario` (irbook.drill.scenario) are importable from here;
they are imported on first use, so that `irbook.drill.clock` and friends stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from irbook.drill.scenario import LoadedScenario, load_scenario

__all__ = ["LoadedScenario", "load_scenario"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from irbook.drill import scenario

        return getattr(scenario, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
