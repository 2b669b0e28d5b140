"""No circular imports among irbook's modules, read statically with `ast`.

Every `import` counts, at module level or inside a function (a deferred import hides a
cycle from the interpreter, not from a reader); only `if TYPE_CHECKING:` blocks are left
out. A cycle fails with its modules named, so the import graph keeps showing the
architecture: source -> model -> loader -> checked -> validate -> cli.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in sorted((SRC / "irbook").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if package else parts)] = (path, package)
    return out


def _imports(name: str, path: Path, package: bool, known: set[str]) -> set[str]:
    """The irbook modules `name` imports (a `from pkg import sub` counts pkg.sub)."""
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
                targets = [module, *(f"{module}.{alias.name}" for alias in node.names)]
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


def test_the_check_sees_imports_and_cycles() -> None:
    """The reader finds the edges the validator depends on, and the cycle finder finds a
    cycle when there is one (so the test above can fail)."""
    edges = graph()
    assert {"irbook.checked", "irbook.drill.scenario"} <= edges["irbook.validate"]
    assert "irbook.loader" in edges["irbook.checked"]
    assert "irbook.lint" in edges["irbook.loader"]
    assert "irbook.validate" not in edges["irbook.loader"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


# Imports made inside functions, on purpose: behind the validation cache, a hit never
# imports the loader (pydantic and the models), which is what the cache saves; a drill
# reads the receiver's normalizers and trigger matching only for an alert given as a raw
# vendor payload; the validator reads the policy module only for a policy file.
DEFERRED = {
    "irbook.loader": set(),
    "irbook.lint.rules": set(),
    "irbook.needs": set(),
    "irbook.drill.scenario": {"irbook.triggers.normalizers", "irbook.triggers.match"},
    "irbook.checked": {"irbook.loader"},
    "irbook.validate": {"irbook.drill.scenario", "irbook.source", "irbook.policy"},
}


@pytest.mark.parametrize("module", sorted(DEFERRED))
def test_the_validator_imports_irbook_modules_at_the_top(module: str) -> None:
    """The validator's chain imports irbook's modules at module level, so the graph above
    is the one the interpreter follows; the exceptions are listed with their reason."""
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
