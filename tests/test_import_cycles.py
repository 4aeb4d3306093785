"""No import cycles in the package: facades import parts, parts never import the facade.

The import graph is read from the source with :mod:`ast` (nothing is imported): every module of the package (the
folders of ``pyproject.toml``'s ``package-dir``) is a node, and each import statement executed when the module is
imported is an edge to the most specific module it names. Imports inside ``if TYPE_CHECKING:`` blocks and inside
functions are left out of the run-time graph (they do not run at import); the *full* graph of the core keeps them
too, so a core module that reaches back to its importer even lazily is caught.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def package_modules() -> dict[str, Path]:
    """Module name → source file for every module of the package (``package-dir`` of ``pyproject.toml``)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = config["package-dir"]
    modules: dict[str, Path] = {}
    for package in config["packages"]:
        folder = ROOT / folders.get(package, package.replace(".", "/"))
        for path in folder.glob("*.py"):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            modules[name] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, *, run_time_only: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements of a module; with ``run_time_only`` those that run when the module is imported."""
    stack = list(ast.iter_child_nodes(tree))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
            continue
        if run_time_only and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if run_time_only and isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The package modules an import statement names (the most specific one per name)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            parts = module.split(".")
            anchor = parts if is_package else parts[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    found = set()
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)
    return found


def import_graph(*, run_time_only: bool) -> dict[str, set[str]]:
    """Module → modules of the package it imports."""
    modules = package_modules()
    known = set(modules)
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.stem == "__init__"
        graph[name] = set().union(
            *(_targets(node, name, is_package, known) for node in _imports(tree, run_time_only=run_time_only))
        )
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first == last), or ``None`` when it is acyclic."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for child in sorted(graph.get(node, ())):
            if state.get(child) == 1:
                return [*path[path.index(child) :], child]
            if child not in state and (cycle := visit(child)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_run_time_import_graph_is_acyclic():
    graph = import_graph(run_time_only=True)
    assert "clear_plugins.adapters.bagel.encoders" in graph  # the walk sees the mapped folders
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def cycle_through(graph: dict[str, set[str]], node: str) -> list[str] | None:
    """A shortest import path from ``node`` back to itself, or ``None``."""
    parents: dict[str, str] = {}
    frontier = [node]
    while frontier:
        following = []
        for current in frontier:
            for child in sorted(graph.get(current, ())):
                if child == node:
                    path = [current]
                    while path[-1] != node:
                        path.append(parents[path[-1]])
                    return [node, *reversed(path[:-1]), node]
                if child not in parents:
                    parents[child] = current
                    following.append(child)
        frontier = following
    return None


@pytest.mark.parametrize(
    "prefix",
    [
        "clear_plugins.adapters.bagel.",
        "clear_plugins.hookspecs",
        "clear_plugins.injection",
        "clear_plugins.plugins",
        "clear_plugins.pipeline",
    ],
)
def test_no_part_reaches_back_even_lazily_or_for_types(prefix):
    """With type-only and function-local imports too, no import path leads from a Bagel module or the core's
    hook specs / injection / plugin manager / pipeline back to itself (the facade imports the parts; the parts
    never name the facade; the hook spec does not import its implementation)."""
    graph = import_graph(run_time_only=False)
    modules = [m for m in graph if m.startswith(prefix)]
    assert modules
    cycles = [c for m in modules if (c := cycle_through(graph, m))]
    assert not cycles, "; ".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert cycle_through({"a": {"b", "x"}, "b": {"c"}, "c": {"a"}, "x": set()}, "a") == ["a", "b", "c", "a"]
    assert cycle_through({"a": {"b"}, "b": {"b"}}, "a") is None
