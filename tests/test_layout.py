"""The tree reads as the pipeline: no import cycles, and each stage imports only the stages
below it (spec -> store -> results -> running -> CLI; `trainables` never imports `sweeps`)."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sweeps", "trainables")
# Stages of `sweeps/`, lowest first: a module may import its own stage and the ones before it.
STAGES = ["sweeps.errors", "sweeps.spec", "sweeps.store", "sweeps.results", "sweeps.running"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere (function-level imports included)."""
    modules = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            found: list[str] = []
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            targets |= {t for t in found if t in modules and t != name}
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def stage(module: str) -> int | None:
    return next(
        (i for i, s in enumerate(STAGES) if module == s or module.startswith(s + ".")), None
    )


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    planted = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(planted) == ["a", "b", "c", "a"]


def test_no_import_cycle_in_sweeps_or_trainables() -> None:
    assert find_cycle(import_graph()) is None


def test_trainables_never_import_sweeps() -> None:
    graph = import_graph()
    # Control: the graph does see imports across the two packages, the other way round.
    assert "trainables.config" in graph["sweeps.spec.spec"]
    wrong = sorted(
        (m, t) for m, ts in graph.items() if m.startswith("trainables") for t in ts
        if t.startswith("sweeps")
    )  # fmt: skip
    assert not wrong


@pytest.mark.parametrize("module", sorted(m for m in import_graph() if stage(m) is not None))
def test_a_stage_imports_only_the_stages_below_it(module: str) -> None:
    mine = stage(module)
    assert mine is not None
    upward = sorted(t for t in import_graph()[module] if (s := stage(t)) is not None and s > mine)
    assert not upward
