"""The shape of the code, checked statically (issue 11's "Done means"): small modules and functions,
services that never reach into the web layer, a Stripe sandbox that stands alone, and no import
cycles. Read with ``ast`` only: nothing here imports the code it checks.

Imports anywhere in a module count (inside a function too: an import moved into a function to dodge a
cycle is still a cycle), except under ``if TYPE_CHECKING:``, which never runs.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("storefront", "stripe_sandbox")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


@cache
def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the checked packages."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


@cache
def tree(name: str) -> ast.Module:
    return ast.parse(modules()[name].read_text(encoding="utf-8"), filename=str(modules()[name]))


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(module: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except those in the body of ``if TYPE_CHECKING:``."""
    skipped = {
        id(inner)
        for node in ast.walk(module)
        if isinstance(node, ast.If) and _is_type_checking(node)
        for statement in node.body
        for inner in ast.walk(statement)
    }
    return [
        node for node in ast.walk(module) if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in skipped
    ]


def imports_of(name: str) -> set[str]:
    """The modules ``name`` imports (dotted, absolute): for ``from X import y``, ``X.y`` when that is
    a module of ours, else ``X``."""
    is_package = modules()[name].name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _import_nodes(tree(name)):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join(anchor + ([base] if base else []))
        for alias in node.names:
            candidate = f"{base}.{alias.name}"
            targets.add(candidate if candidate in modules() else base)
    return targets


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


# --- size ---------------------------------------------------------------------------------------------


def long_modules() -> list[str]:
    lengths = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in modules().items()}
    return [
        f"{modules()[name].relative_to(ROOT)}: {n} lines" for name, n in sorted(lengths.items()) if n > MAX_MODULE_LINES
    ]


def long_functions() -> list[str]:
    found = []
    for name, path in modules().items():
        for node in ast.walk(tree(name)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}(): {length} lines")
    return found


def test_no_module_is_over_500_lines() -> None:
    assert long_modules() == []


def test_no_function_is_over_60_lines() -> None:
    assert long_functions() == []


# --- boundaries ---------------------------------------------------------------------------------------


def forbidden_imports(importer: str, imported: str) -> list[str]:
    return [
        f"{name} imports {target}"
        for name in modules()
        if _within(name, importer)
        for target in sorted(imports_of(name))
        if _within(target, imported)
    ]


def test_services_import_nothing_from_the_web_layer() -> None:
    assert forbidden_imports("storefront.services", "storefront.web") == []


def test_the_sandbox_imports_nothing_from_the_store() -> None:
    assert forbidden_imports("stripe_sandbox", "storefront") == []


# --- cycles -------------------------------------------------------------------------------------------


def import_cycles(package: str) -> list[list[str]]:
    """The strongly connected components (two modules or more, or a module importing itself) of the
    import graph inside ``package`` (Tarjan's algorithm)."""
    graph = {
        name: sorted(t for t in imports_of(name) if _within(t, package) and t in modules())
        for name in modules()
        if _within(name, package)
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                cycles.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return sorted(cycles)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycles(package: str) -> None:
    assert import_cycles(package) == []


def test_the_checks_see_the_code() -> None:
    """Guards the checks above against passing vacuously (a wrong root, a resolver that finds nothing)."""
    assert {"storefront", "storefront.services", "stripe_sandbox", "stripe_sandbox.api"} <= set(modules())
    assert "storefront.extensions" in imports_of("storefront.models.order")
    assert len(modules()) > 40
