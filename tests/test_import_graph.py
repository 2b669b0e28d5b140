"""The import graph of the three packages, read statically with `ast`: no cycles, and the
layers of ARCHITECTURE.md: irbook.cli -> irbook_flows -> irbook_actions -> irbook (core).

Every `import` counts, at module level or inside a function (a deferred import hides a
cycle from the interpreter, not from a reader); only `if TYPE_CHECKING:` blocks are left
out. A cycle fails with its modules named, so the import graph keeps showing the
architecture: source -> model -> loader -> checked -> validate -> cli.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
# Where each import package lives: one folder per package, as the wheel packs them.
PACKAGES = {"irbook": SRC, "irbook_actions": ROOT / "actions", "irbook_flows": ROOT / "flows"}


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for package, base in PACKAGES.items():
        for path in sorted((base / package).rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def _imports(name: str, path: Path, package: bool, known: set[str]) -> set[str]:
    """The modules of the three packages that `name` imports."""
    found: set[str] = set()

    def visit(nodes: list[ast.stmt] | list[ast.AST]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(list(node.orelse))
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if package else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    module = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    module = node.module or ""
                # `from pkg import sub` is an edge to pkg.sub (pkg's __init__ runs first for
                # any submodule, as for `import pkg.sub`); `from mod import name` is one to mod
                targets = [
                    f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module
                    for alias in node.names
                ]
            else:
                visit(list(ast.iter_child_nodes(node)))
                continue
            for target in targets:
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found.add(target)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return found


def graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, pkg, known) for name, (path, pkg) in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle_among_irbook_modules() -> None:
    found = cycles(graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def layer(module: str) -> int:
    """0 core, 1 actions, 2 flows, 3 the command line (which may import all three)."""
    if module == "irbook.cli" or module.startswith("irbook.cli."):
        return 3
    return {"irbook_flows": 2, "irbook_actions": 1}.get(module.split(".")[0], 0)


def test_imports_go_down_the_layers_only() -> None:
    """irbook.cli -> irbook_flows -> irbook_actions -> irbook: the core never imports the
    actions, the flows or the command line; the flows never import the command line."""
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in graph().items()
        for target in targets
        if layer(target) > layer(module)
    )
    assert not upward, "imports against the layers: " + "; ".join(upward)


def test_the_check_sees_imports_and_cycles() -> None:
    """The reader finds the edges the validator depends on, and the cycle finder finds a
    cycle when there is one (so the test above can fail)."""
    edges = graph()
    assert {"irbook.checked", "irbook.drill.scenario"} <= edges["irbook.validate"]
    assert "irbook.loader" in edges["irbook.checked"]
    assert "irbook.lint" in edges["irbook.loader"]
    assert "irbook.validate" not in edges["irbook.loader"]
    assert {"irbook_flows.start", "irbook.cli.common"} <= edges["irbook.cli.runs"]
    assert "irbook_flows.flow" in edges["irbook.cli.runs"]  # deferred, still an edge
    assert [layer(m) for m in ("irbook.plan", "irbook_actions.aws", "irbook_flows.flow")] == [
        0,
        1,
        2,
    ]
    assert layer("irbook.cli.main") == 3
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


# Imports made inside functions, on purpose: behind the validation cache, a hit never
# imports the loader (pydantic and the models), which is what the cache saves; a drill
# reads the receiver's normalizers and trigger matching only for an alert given as a raw
# vendor payload; the validator reads the policy module only for a policy file.
# The command line's handlers import irbook's modules at the top too, with two exceptions:
# `irbook plan` asks its cache before it imports the loader and the planner, and
# irbook_flows.flow is imported by the commands that run a flow, since importing it
# imports Prefect (irbook.cli.main imports each handler's module when its command runs);
# and irbook.cli.main imports the warm runner's client (irbook.warm: a socket) only for
# `irbook run`, whose first act is to ask it.
CLI_DEFERRED = {
    "irbook.cli.main": {"irbook.warm"},
    "irbook.cli.playbooks": {"irbook.loader", "irbook.plan"},
    "irbook.cli.runs": {"irbook_flows.flow"},
    "irbook.cli.approve": {"irbook_flows.flow"},
    "irbook.cli.serve": {"irbook_flows.flow"},
    "irbook.cli.deploy": {"irbook_flows.flow"},
}
DEFERRED = {
    **{
        name: CLI_DEFERRED.get(name, set()) for name in _modules() if name.startswith("irbook.cli.")
    },
    "irbook.loader": set(),
    "irbook.lint.rules": set(),
    "irbook.needs": set(),
    "irbook.drill.scenario": {"irbook.triggers.normalizers", "irbook.triggers.match"},
    "irbook.checked": {"irbook.loader"},
    "irbook.validate": {"irbook.drill.scenario", "irbook.source", "irbook.policy"},
}


@pytest.mark.parametrize("module", sorted(DEFERRED))
def test_the_validator_imports_irbook_modules_at_the_top(module: str) -> None:
    """The validator's chain and the command line import irbook's modules at module level,
    so the graph above is the one the interpreter follows; the exceptions are listed with
    their reason."""
    path = _modules()[module][0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    deferred = {
        node.module
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(function)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("irbook")
    }
    assert deferred == DEFERRED[module]
