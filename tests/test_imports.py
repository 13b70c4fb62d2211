"""The house's rooms and the doors between them: each package of mibot_eval imports only the packages
its `__init__` docstring allows (ALLOWED, one table), no module-level import cycle, only the handful of
top-level modules, and nothing below the runner imports it. Every import counts, also those inside
functions (they run too)."""

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


TOP_LEVEL = {"api", "cli", "config", "types", "errors", "exit_codes"}
SUBPACKAGES = {"results.stats", "results.measure", "results.views"}  # rooms of their own inside results/

# room -> the rooms it may import (besides itself). A room is a top-level module, a package of
# mibot_eval (run/ with its backends/, serving/, commands/, suites/, policy/, tiny/, results/), or a
# results sub-package; "mibot_eval" is the package's own __init__.
ALLOWED: dict[str, set[str]] = {
    "types": set(),
    "errors": set(),
    "exit_codes": set(),
    "config": {"errors"},
    "tiny": set(),
    "suites": {"config", "errors", "types"},
    "policy": {"config", "errors", "types", "tiny"},
    "serving": {"config", "errors", "types", "policy"},
    "results.stats": set(),
    "results": {"errors", "types"},
    "results.measure": {"config", "errors", "exit_codes", "types", "results", "results.stats", "suites"},
    "results.views": {"config", "errors", "results", "results.stats", "results.measure"},
    "run": {"config", "errors", "types", "suites", "policy", "serving", "tiny", "results", "results.stats",
            "results.measure"},
    "api": {"config", "errors", "types", "policy", "run", "results", "results.measure"},
    "commands": {"api", "config", "errors", "exit_codes", "types", "tiny", "suites", "policy", "serving",
                 "run", "results", "results.stats", "results.measure", "results.views"},
    "cli": {"mibot_eval", "commands", "errors", "exit_codes"},
    "mibot_eval": {"api"},
}


def room(module: str) -> str:
    """The room a module of mibot_eval lives in (see ALLOWED)."""
    parts = module.split(".")[1:]
    if not parts:
        return "mibot_eval"
    if len(parts) > 1 and f"{parts[0]}.{parts[1]}" in SUBPACKAGES:
        return f"{parts[0]}.{parts[1]}"
    return parts[0]


def wrong_doors(graph: dict[str, set[str]]) -> list[str]:
    """Imports from one room into another that ALLOWED does not list."""
    return sorted(f"{m} imports {d}" for m, deps in graph.items() for d in deps
                  if room(d) != room(m) and room(d) not in ALLOWED[room(m)])


def test_every_room_imports_only_what_it_may() -> None:
    wrong = wrong_doors(import_graph())
    assert not wrong, "\n".join(wrong)


def test_the_rooms_form_no_cycle() -> None:
    assert find_cycle(ALLOWED) is None


def test_only_a_handful_of_modules_at_the_top_level() -> None:
    top = {m.split(".")[1] for m in import_graph() if m.count(".") == 1}
    packages = {name for name in top if (PACKAGE / name / "__init__.py").is_file()}
    assert top - packages == TOP_LEVEL, sorted(top - packages)
    assert {room(m) for m in import_graph()} <= set(ALLOWED), "a new room needs its line in ALLOWED"


def test_every_package_says_what_lives_there_and_what_it_may_import() -> None:
    for init in sorted(PACKAGE.rglob("__init__.py")):
        if "remote_code" in init.parts or init.parent == PACKAGE:
            continue
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        assert "May import" in doc or "may import" in doc, init


def test_the_room_checker_flags_a_wrong_door() -> None:
    assert room("mibot_eval.results.stats.exact") == "results.stats"
    assert room("mibot_eval.results.store") == "results"
    assert room("mibot_eval.run.backends.local") == "run"
    assert room("mibot_eval.config") == "config" and room("mibot_eval") == "mibot_eval"
    graph = {"mibot_eval.results.measure.summary": {"mibot_eval.results.views.report",
                                                     "mibot_eval.results.stats.rates"},
             "mibot_eval.serving.client": {"mibot_eval.run.planning"},
             "mibot_eval.run.backends.local": {"mibot_eval.run.ledger", "mibot_eval.serving.codec"}}
    assert wrong_doors(graph) == [
        "mibot_eval.results.measure.summary imports mibot_eval.results.views.report",
        "mibot_eval.serving.client imports mibot_eval.run.planning"]


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
    above = {"mibot_eval.api", "mibot_eval.commands.latency_sweep"}
    importers = {m for m, deps in graph.items() if "mibot_eval.run.runner" in deps}
    assert importers <= above, importers
    for module, deps in graph.items():
        if module.startswith(("mibot_eval.run.backends", "mibot_eval.serving")):
            assert "mibot_eval.run.runner" not in deps, module


def test_results_views_do_not_import_one_another() -> None:
    graph = import_graph()
    views = {"mibot_eval.results.views.report", "mibot_eval.results.views.leaderboard",
             "mibot_eval.results.views.html"}
    for view in views:
        assert not graph[view] & (views - {view}), (view, graph[view] & views)
