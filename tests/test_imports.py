"""The package's import graph flows one way: no cycle among mibot_eval's modules, and nothing below
the runner imports it. Every import counts, also those inside functions (they run too)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mibot_eval"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the mibot_eval modules it imports (`from pkg import sub` -> the submodule)."""
    modules = _modules()

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                         for a in node.names]
            else:
                continue
            deps |= {o for n in names if n.split(".")[0] == "mibot_eval" and (o := owner(n))}
        deps.discard(module)
        graph[module] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 40 and "mibot_eval.run.runner" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_nothing_below_the_runner_imports_it() -> None:
    graph = import_graph()
    above = {"mibot_eval.cli", "mibot_eval.api", "mibot_eval.commands.latency_sweep", "mibot_eval"}
    importers = {m for m, deps in graph.items() if "mibot_eval.run.runner" in deps}
    assert importers <= above, importers
    for module, deps in graph.items():
        if module.startswith("mibot_eval.run.backends") or module == "mibot_eval.serving.server":
            assert "mibot_eval.run.runner" not in deps, module


def test_results_views_do_not_import_one_another() -> None:
    graph = import_graph()
    views = {"mibot_eval.results.report", "mibot_eval.results.leaderboard", "mibot_eval.results.html"}
    for view in views:
        assert "mibot_eval.results.summary" in graph[view], view
        assert not graph[view] & (views - {view}), (view, graph[view] & views)
