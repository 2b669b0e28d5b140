"""The `needs` graph of a playbook's steps: what runs before what.

Read by the loader (a cycle is an error) and by lint (rules about what comes before a
step); a module of its own so that neither imports the other for it.
"""

from __future__ import annotations

from collections.abc import Mapping

from irbook.model import Step

__all__ = ["find_cycle", "upstream_of"]


def upstream_of(steps: Mapping[str, Step]) -> dict[str, set[str]]:
    """Every step's transitive `needs` (unknown names and cycles are reported elsewhere):
    what lint's ordering rules and success(), failure() and always() look at."""
    out: dict[str, set[str]] = {}
    for step_id in steps:
        seen: set[str] = set()
        todo = [n for n in steps[step_id].needs if n in steps]
        while todo:
            need = todo.pop()
            if need in seen or need == step_id:
                continue
            seen.add(need)
            todo.extend(n for n in steps[need].needs if n in steps)
        out[step_id] = seen
    return out


def find_cycle(steps: dict[str, Step]) -> list[str] | None:
    """One cycle in `needs`, as the path that closes it, or None. Iterative: no recursion."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in steps:
        if root in state:
            continue
        path: list[str] = [root]
        iters = [iter(steps[root].needs)]
        state[root] = 1
        while path:
            need = next(iters[-1], None)
            if need is None:
                state[path.pop()] = 2
                iters.pop()
                continue
            if need not in steps or need == path[-1]:
                continue  # unknown and self needs are reported on their own
            if state.get(need) == 1:
                return [*path[path.index(need) :], need]
            if need not in state:
                state[need] = 1
                path.append(need)
                iters.append(iter(steps[need].needs))
    return None
