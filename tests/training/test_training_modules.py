"""The training package's modules import one another in one direction: no circle, function-level
imports included (``dbcli.training.loop`` at the top, the records of ``state`` and the settings of
``config`` below the rest)."""

from __future__ import annotations

import ast
from pathlib import Path

import dbcli.training

PACKAGE = Path(dbcli.training.__file__).parent


def training_imports(source: str) -> set[str]:
    """The ``dbcli.training`` modules a module's source imports, anywhere in it (short names)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found |= {n.split(".")[2] for n in names if n.startswith("dbcli.training.")}
    return found


def circle(graph: dict[str, set[str]]) -> list[str]:
    """One circle of ``graph`` (module -> the modules it imports) as a path, or [] when there is none."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str]:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return []
        for nxt in sorted(graph.get(node, ())):
            found = visit(nxt, path + [node])
            if found:
                return found
        done.add(node)
        return []

    for start in sorted(graph):
        found = visit(start, [])
        if found:
            return found
    return []


def test_the_check_finds_a_circle_through_a_function_level_import():
    graph = {"a": training_imports("from dbcli.training.b import x\n"),
             "b": training_imports("def f():\n    import dbcli.training.c\n"),
             "c": training_imports("def g():\n    from dbcli.training import a\n")}
    assert circle(graph) == ["a", "b", "c", "a"]
    assert circle({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_training_modules_import_in_one_direction():
    graph = {p.stem: training_imports(p.read_text(encoding="utf-8")) - {p.stem} for p in PACKAGE.glob("*.py")}
    assert {"loop", "data", "checkpoints", "schedule", "validation"} <= graph.keys()
    assert circle(graph) == [], " -> ".join(circle(graph))
    assert not any("loop" in imported for imported in graph.values())  # the loop is the top: nothing imports it
