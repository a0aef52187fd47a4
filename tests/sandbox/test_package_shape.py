"""The sandbox package stays easy to change: small modules and functions, no import cycles (not
even ones dodged with an import inside a function), nothing imported from the store."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "stripe_sandbox"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = (path, ast.parse(path.read_text(encoding="utf-8")))
    return found


def _imported(name: str, path: Path, node: ast.ImportFrom, modules: dict) -> set[str]:
    """The package's modules an ``from … import …`` statement loads."""
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    if node.level:
        base = base[: len(base) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    submodules = {f"{target}.{alias.name}" for alias in node.names} & set(modules)
    if len(submodules) < len(node.names) and target in modules:
        submodules.add(target)
    return submodules - {name}


def _graph(modules: dict) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, (path, tree) in modules.items():
        edges = graph.setdefault(name, set())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                edges |= _imported(name, path, node, modules)
            elif isinstance(node, ast.Import):
                edges |= {alias.name for alias in node.names} & set(modules)
    return graph


def _cycle_from(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    stack, seen = [(start, [start])], set()
    while stack:
        node, trail = stack.pop()
        for nxt in graph[node]:
            if nxt == start:
                return [*trail, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*trail, nxt]))
    return None


def test_no_module_over_500_lines_and_no_function_over_60():
    too_long = []
    for name, (path, tree) in _modules().items():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{name}: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}.{node.name}: {length} lines")
    assert too_long == []


def test_no_import_cycles_inside_the_package():
    graph = _graph(_modules())
    cycles = [cycle for name in graph if (cycle := _cycle_from(name, graph))]
    assert cycles == []


def test_imports_are_at_module_level_and_nothing_comes_from_the_store():
    problems = []
    for name, (_path, tree) in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else [alias.name for alias in node.names]
                )
                if any(n == "storefront" or n.startswith("storefront.") for n in names):
                    problems.append(f"{name} imports the store: {ast.unparse(node)}")
        for func in ast.walk(tree):
            if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                problems += [
                    f"{name}.{func.name}: {ast.unparse(node)}"
                    for node in ast.walk(func)
                    if isinstance(node, ast.ImportFrom) and node.level
                ]
    assert problems == []
